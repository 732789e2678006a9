//! The gRPC door's listener: the tonic server with its layers (the observer outermost, then
//! the request size limit), the registry and health services, served on a bound socket until
//! shutdown. The one place a gRPC server is built, so TLS and connection limits slot in here.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use super::RegistryService;
use super::limit::RequestSizeLimitLayer;
use super::observe::{GrpcMetrics, ObserveLayer};
use super::pb::registry_server::RegistryServer;
use crate::record::limits::GRPC_REQUEST_MAX_BYTES;
use crate::telemetry::RecentQueries;

/// What the door records of its traffic.
pub struct Observers {
    pub metrics: Arc<GrpcMetrics>,
    pub recent: Arc<RecentQueries>,
}

/// Serves `service` on `listener` until `shutdown`, draining requests in flight; the task
/// ends with the server's error, if it failed.
pub fn serve(
    listener: TcpListener,
    service: RegistryService,
    observers: Observers,
    shutdown: CancellationToken,
) -> JoinHandle<Result<(), String>> {
    let addr = listener.local_addr().ok();
    let registry = RegistryServer::new(service)
        // Our own layer enforces the contract's limit with the contract's status; this is
        // only a backstop above it.
        .max_decoding_message_size(2 * GRPC_REQUEST_MAX_BYTES);
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let observer = ObserveLayer::new(observers.metrics, observers.recent);
    tokio::spawn(async move {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<RegistryServer<RegistryService>>()
            .await;
        if let Some(addr) = addr {
            tracing::info!(%addr, "gRPC door listening");
        }
        tonic::transport::Server::builder()
            // Outermost, so it sees (and counts) what the size limit refuses.
            .layer(observer)
            .layer(RequestSizeLimitLayer::new(GRPC_REQUEST_MAX_BYTES))
            .add_service(health_service)
            .add_service(registry)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
            .map_err(|error| super::client::error_chain(&error))
    })
}
