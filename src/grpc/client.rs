//! Connecting to a node's gRPC door, with errors that say which address failed and why.

use std::task::{Context, Poll};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::admin::metrics::RequestId;

pub type RegistryClient = super::pb::registry_client::RegistryClient<TracedChannel>;

/// The header carrying a request's id from node to node.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A channel that sends the id of the request being handled ([`RequestId::current`]) with
/// every call, unless the call already names one: a query keeps one id from the gateway
/// through the resolver to each authority it reaches, in every node's logs and recent
/// queries.
#[derive(Debug, Clone)]
pub struct TracedChannel(Channel);

impl TracedChannel {
    pub fn new(channel: Channel) -> TracedChannel {
        TracedChannel(channel)
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for TracedChannel {
    type Response = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if !request.headers().contains_key(REQUEST_ID_HEADER)
            && let Some(id) = RequestId::current()
            && let Ok(value) = http::HeaderValue::from_str(&id.to_string())
        {
            request.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        tower::Service::call(&mut self.0, request)
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The endpoint for `url` with this project's connection settings (one place, so TLS slots
/// in here later).
pub fn endpoint(url: &str) -> Result<Endpoint, ClientError> {
    let invalid = |reason: String| ClientError::InvalidUrl {
        url: url.to_string(),
        reason,
    };
    let parsed = url::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            parsed.scheme()
        )));
    }
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| invalid(e.to_string()))?;
    Ok(endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_adaptive_window(true))
}

/// Opens one HTTP/2 connection to the node at `url`.
pub async fn connect(url: &str) -> Result<RegistryClient, ClientError> {
    let channel = endpoint(url)?
        .connect()
        .await
        .map_err(|error| ClientError::Unreachable {
            url: url.to_string(),
            reason: error_chain(&error),
        })?;
    Ok(RegistryClient::new(TracedChannel::new(channel)))
}

/// An error and its sources, joined: tonic's top-level "transport error" says little alone.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
