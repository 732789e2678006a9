//! Request ids: one name per request, in logs, in the recent-queries ring and on the wire
//! (`x-request-id`), carried through every call a request makes to other nodes by a
//! task-local.

use std::fmt;
use std::sync::Arc;

/// The longest request id taken from a client.
pub const REQUEST_ID_MAX_LEN: usize = 64;

/// Names one request in logs, in the recent-queries ring and (gRPC) in the response's
/// `x-request-id` metadata. Generated ids are 64 random bits, printed as 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    Generated(u64),
    /// Sent by the client (`x-request-id`), checked by [`RequestId::from_client`].
    Given(Arc<str>),
}

tokio::task_local! {
    /// The id of the request the current task is handling (see [`RequestId::scope`]).
    static CURRENT_REQUEST: RequestId;
}

impl RequestId {
    /// Runs `future` as the handling of this request: every gRPC call it makes to another
    /// node carries the id in `x-request-id` (`grpc::client::TracedChannel`), so one id
    /// follows a query from the gateway through the resolver to each authority.
    pub async fn scope<F: std::future::Future>(self, future: F) -> F::Output {
        CURRENT_REQUEST.scope(self, future).await
    }

    /// The id of the request the current task is handling, if any.
    pub fn current() -> Option<RequestId> {
        CURRENT_REQUEST.try_with(Clone::clone).ok()
    }

    pub fn generate() -> RequestId {
        RequestId::Generated(rand::random())
    }

    /// A client's id, if it is 1 to 64 characters of letters, digits and `-_.:`; anything
    /// else is ignored (and a new id generated), so logs never carry arbitrary bytes.
    pub fn from_client(value: &[u8]) -> Option<RequestId> {
        let valid = !value.is_empty()
            && value.len() <= REQUEST_ID_MAX_LEN
            && value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        let text = std::str::from_utf8(value).ok().filter(|_| valid)?;
        Some(RequestId::Given(Arc::from(text)))
    }
}

/// A generated id's 16 hex digits, as `Display` writes them, without the formatting
/// machinery: the gRPC door writes one on every response.
pub fn hex_digits(id: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (index, digit) in digits.iter_mut().enumerate() {
        *digit = HEX[((id >> (60 - 4 * index)) & 0xf) as usize];
    }
    digits
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Generated(id) => write!(f, "{id:016x}"),
            RequestId::Given(id) => f.write_str(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_checked() {
        assert_eq!(
            RequestId::from_client(b"abc-123_x.y:z").map(|id| id.to_string()),
            Some("abc-123_x.y:z".to_string())
        );
        assert!(RequestId::from_client(b"").is_none());
        assert!(RequestId::from_client(b"has space").is_none());
        assert!(RequestId::from_client(b"new\nline").is_none());
        assert!(RequestId::from_client(&[b'a'; 65]).is_none());
        assert_eq!(RequestId::Generated(0xab).to_string(), "00000000000000ab");
    }

    #[test]
    fn hex_digits_are_the_text_of_a_generated_id() {
        for id in [0, 0xab, 0x0123_4567_89ab_cdef, u64::MAX] {
            assert_eq!(
                std::str::from_utf8(&hex_digits(id)).unwrap(),
                RequestId::Generated(id).to_string()
            );
        }
    }
}
