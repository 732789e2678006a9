//! The resolver's [`Upstream`] over gRPC: non-recursive Resolve calls to other nodes, one
//! pooled HTTP/2 channel per server, the remaining budget sent as the gRPC deadline.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Code;

use crate::answer::Answer;
use crate::grpc::client::{RegistryClient, endpoint};
use crate::grpc::pb;
use crate::name::Name;
use crate::record::ServerAddress;
use crate::resolver::{Upstream, UpstreamError};

#[derive(Default)]
pub struct GrpcUpstream {
    // std Mutex: held only to look up or insert a channel, never across an await.
    clients: Mutex<HashMap<String, RegistryClient>>,
}

impl GrpcUpstream {
    pub fn new() -> GrpcUpstream {
        GrpcUpstream::default()
    }

    /// The pooled channel to `server`, made (lazily connecting) on first use.
    pub fn client(&self, server: &ServerAddress) -> Result<RegistryClient, UpstreamError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&server.grpc) {
            return Ok(client.clone());
        }
        let channel = endpoint(&server.grpc)
            .map_err(|error| UpstreamError::Unreachable {
                server: server.grpc.clone(),
                reason: error.to_string(),
            })?
            .connect_lazy();
        let client = RegistryClient::new(crate::grpc::client::TracedChannel::new(channel));
        clients.insert(server.grpc.clone(), client.clone());
        Ok(client)
    }
}

impl Upstream for GrpcUpstream {
    fn query<'a>(
        &'a self,
        server: &'a ServerAddress,
        name: &'a Name,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, UpstreamError>> {
        Box::pin(async move {
            let mut client = self.client(server)?;
            let mut request = tonic::Request::new(pb::ResolveRequest {
                name: name.to_string(),
                recursive: false,
                trace: false,
            });
            request.set_timeout(timeout);
            let response = match tokio::time::timeout(timeout, client.resolve(request)).await {
                Err(_) => {
                    return Err(UpstreamError::Timeout {
                        server: server.grpc.clone(),
                        timeout,
                    });
                }
                Ok(Err(status)) => return Err(status_error(server, &status, timeout)),
                Ok(Ok(response)) => response.into_inner(),
            };
            Answer::try_from(response).map_err(|error| UpstreamError::BadAnswer {
                server: server.grpc.clone(),
                reason: error.to_string(),
            })
        })
    }
}

fn status_error(
    server: &ServerAddress,
    status: &tonic::Status,
    timeout: Duration,
) -> UpstreamError {
    let server = server.grpc.clone();
    match status.code() {
        Code::Unavailable => UpstreamError::Unreachable {
            server,
            reason: status.message().to_string(),
        },
        Code::DeadlineExceeded | Code::Cancelled => UpstreamError::Timeout { server, timeout },
        code => UpstreamError::Refused {
            server,
            reason: format!("{code:?}: {}", status.message()),
        },
    }
}
