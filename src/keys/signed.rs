//! What an update's signature covers and how it travels: the canonical byte string of the
//! request's fields ([`SignedFields`]) and the proof ([`Proof`]: key, time, nonce, MAC).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore as _;

use super::*;
use crate::name::Name;

/// The canonical byte string of an update's fields: what a [`Proof`] signs.
///
/// It starts with the version line `aop-update-v1\n`, then field `op`, then the fields in the
/// order the caller puts them. Each field is written as
/// `<field>=<decimal byte length>:<value bytes>\n`, netstring-like: a reader knows where every
/// value ends from its length, so no value can be confused with another, whatever bytes it
/// holds (`=`, `:` or newlines included).
///
/// Field names are chosen by code, not by peers, and must be lowercase ASCII letters, digits,
/// `_` or `-` (a name containing `=` or a newline could forge a field boundary). Numbers are
/// decimal text ([`SignedFields::put_u64`]). A list `tags` of two items is written as the
/// count field `tags#=1:2\n` followed by `tags[0]=...\n` and `tags[1]=...\n`
/// ([`SignedFields::put_list`]).
///
/// Signer and verifier must put the same fields in the same order; the MAC then also appends
/// fields `key`, `time` and `nonce` (see [`UpdateKey::sign`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedFields {
    bytes: Vec<u8>,
}

impl SignedFields {
    /// Starts the string for an update `operation` (such as `register`): the version line, then
    /// field `op`.
    pub fn new(operation: &str) -> SignedFields {
        let mut fields = SignedFields {
            bytes: VERSION_LINE.to_vec(),
        };
        fields.put("op", operation);
        fields
    }

    /// Appends a text field.
    pub fn put(&mut self, field: &str, value: &str) -> &mut Self {
        debug_assert!(is_field_name(field), "bad signed field name {field:?}");
        self.push(field, value.as_bytes());
        self
    }

    /// Appends a number as decimal text.
    pub fn put_u64(&mut self, field: &str, value: u64) -> &mut Self {
        debug_assert!(is_field_name(field), "bad signed field name {field:?}");
        self.push(field, value.to_string().as_bytes());
        self
    }

    /// Appends a list: field `<field>#` with the item count, then `<field>[<i>]` for each item
    /// in order.
    pub fn put_list(&mut self, field: &str, items: &[String]) -> &mut Self {
        debug_assert!(is_field_name(field), "bad signed field name {field:?}");
        self.push(&format!("{field}#"), items.len().to_string().as_bytes());
        for (index, item) in items.iter().enumerate() {
            self.push(&format!("{field}[{index}]"), item.as_bytes());
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn push(&mut self, field: &str, value: &[u8]) {
        self.bytes.extend_from_slice(field.as_bytes());
        self.bytes.push(b'=');
        self.bytes
            .extend_from_slice(value.len().to_string().as_bytes());
        self.bytes.push(b':');
        self.bytes.extend_from_slice(value);
        self.bytes.push(b'\n');
    }
}

impl fmt::Debug for SignedFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SignedFields")
            .field(&String::from_utf8_lossy(&self.bytes))
            .finish()
    }
}

pub(super) fn is_field_name(field: &str) -> bool {
    !field.is_empty()
        && field
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What a proof's MAC covers beyond the request's fields: key name, time and nonce, as further
/// canonical fields.
pub(super) fn proof_trailer(key: &str, time: u64, nonce: &str) -> SignedFields {
    let mut trailer = SignedFields { bytes: Vec::new() };
    trailer
        .put("key", key)
        .put_u64("time", time)
        .put("nonce", nonce);
    trailer
}

/// The proof an update carries: which key signed it, when, with which nonce, and the MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The key's canonical name.
    pub key: String,
    /// Signing time, seconds since the Unix epoch.
    pub time: u64,
    /// 8 to 64 characters of `0-9A-Za-z_-`, never reused with the same key.
    pub nonce: String,
    /// Standard base64 of the 32-byte HMAC-SHA256.
    pub signature: String,
}

impl Proof {
    /// A new random nonce: 16 bytes as 32 lowercase hex characters.
    pub fn new_nonce() -> String {
        let mut bytes = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads the four proof entries an update carried (in gRPC metadata, say): `values`
    /// gives every value of an entry, `None` for a value that is not printable ASCII.
    /// `Ok(None)` when no entry is present; an error when some are present but one is
    /// missing, repeated or invalid.
    pub fn from_entries<'a>(
        values: impl Fn(&'static str) -> Vec<Option<&'a str>>,
    ) -> Result<Option<Proof>, AuthError> {
        if PROOF_ENTRIES.iter().all(|entry| values(entry).is_empty()) {
            return Ok(None);
        }
        let header = |name: &'static str| one_value(name, values(name));
        let key_text = header(KEY_HEADER)?;
        let key = match Name::parse(key_text) {
            Ok(name) if !name.is_root() => name.as_str().to_string(),
            Ok(_) => return Err(malformed(format!("{KEY_HEADER} \".\" is not a key name"))),
            Err(error) => return Err(malformed(format!("{KEY_HEADER}: {error}"))),
        };
        let time_text = header(TIME_HEADER)?;
        let time = parse_time(time_text).ok_or_else(|| {
            malformed(format!(
                "{TIME_HEADER} {:?} is not a decimal number of seconds since the Unix epoch",
                abbreviate(time_text)
            ))
        })?;
        let nonce = header(NONCE_HEADER)?;
        check_nonce(nonce)?;
        let signature = header(SIGNATURE_HEADER)?;
        decode_signature(signature)?;
        Ok(Some(Proof {
            key,
            time,
            nonce: nonce.to_string(),
            signature: signature.to_string(),
        }))
    }

    /// The four proof entries, as an update carries them.
    pub fn entries(&self) -> [(&'static str, String); 4] {
        [
            (KEY_HEADER, self.key.clone()),
            (TIME_HEADER, self.time.to_string()),
            (NONCE_HEADER, self.nonce.clone()),
            (SIGNATURE_HEADER, self.signature.clone()),
        ]
    }
}

/// The entries of a proof, in the order they are read and written.
pub const PROOF_ENTRIES: [&str; 4] = [KEY_HEADER, TIME_HEADER, NONCE_HEADER, SIGNATURE_HEADER];

pub(super) fn malformed(reason: String) -> AuthError {
    AuthError::Malformed { reason }
}

/// The one value of a proof entry, as text.
fn one_value<'a>(name: &'static str, values: Vec<Option<&'a str>>) -> Result<&'a str, AuthError> {
    let mut values = values.into_iter();
    let Some(value) = values.next() else {
        return Err(malformed(format!(
            "{name} is missing (an update proof is the four entries {KEY_HEADER}, {TIME_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER})"
        )));
    };
    if values.next().is_some() {
        return Err(malformed(format!("{name} is given more than once")));
    }
    value.ok_or_else(|| malformed(format!("{name} is not printable ASCII")))
}

pub(super) fn parse_time(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

pub(super) fn check_nonce(nonce: &str) -> Result<(), AuthError> {
    let ok_chars = nonce
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok_chars && (NONCE_MIN_LEN..=NONCE_MAX_LEN).contains(&nonce.len()) {
        return Ok(());
    }
    Err(malformed(format!(
        "{NONCE_HEADER} {:?} must be {NONCE_MIN_LEN} to {NONCE_MAX_LEN} characters of 0-9, A-Z, a-z, _ and - (it has {} bytes)",
        abbreviate(nonce),
        nonce.len()
    )))
}

pub(super) fn decode_signature(signature: &str) -> Result<Vec<u8>, AuthError> {
    let wrong = || {
        malformed(format!(
            "{SIGNATURE_HEADER} must be the standard base64 of a {MAC_LEN}-byte HMAC-SHA256 ({SIGNATURE_TEXT_LEN} characters)"
        ))
    };
    // Length first, so a huge value is refused without decoding it.
    if signature.len() != SIGNATURE_TEXT_LEN {
        return Err(wrong());
    }
    match BASE64.decode(signature) {
        Ok(tag) if tag.len() == MAC_LEN => Ok(tag),
        _ => Err(wrong()),
    }
}

/// Keeps messages readable when a peer sends a huge value.
pub(super) fn abbreviate(text: &str) -> String {
    const KEEP: usize = 64;
    if text.chars().count() <= KEEP {
        text.to_string()
    } else {
        let head: String = text.chars().take(KEEP).collect();
        format!("{head}...")
    }
}
