//! A bare `aop.v1.Registry` server answering Resolve from a `HashMap` of prebuilt responses:
//! the floor that tonic, HTTP/2 and protobuf set on one machine, to put `aop node`'s
//! figures in proportion (`bench/resolve.sh` runs the same load against both).
//!
//!     cargo run --release --example bare_resolve_server -- \
//!         --names bench/out/names.txt --listen 127.0.0.1:7191
//!
//! Every name of the names file (one per line) answers OUTCOME_ANSWER with an agent of the
//! same shape as the generated zone's (one endpoint, the default input schema), so the
//! response is about as many bytes as the registry's; any other string answers NXDOMAIN.
//! The lookup is by the exact query string: no name parsing, no zone search, no conversion.
//! Every other RPC answers UNIMPLEMENTED.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use aop::grpc::pb;
use aop::grpc::pb::registry_server::{Registry, RegistryServer};
use tonic::{Request, Response, Status};

const ORIGIN: &str = "bench";
const SERIAL: u32 = 1;
const TTL: u32 = 300;

struct BareRegistry {
    answers: Arc<HashMap<String, pb::ResolveResponse>>,
    served_by: String,
}

fn answer(name: &str, served_by: &str, schema: &str) -> pb::ResolveResponse {
    let label = name.split('.').next().unwrap_or(name);
    pb::ResolveResponse {
        name: name.to_string(),
        outcome: pb::Outcome::Answer as i32,
        zone: ORIGIN.to_string(),
        ttl: TTL,
        authoritative: true,
        served_by: served_by.to_string(),
        zone_serial: SERIAL,
        agent: Some(pb::Agent {
            name: name.to_string(),
            description: "Invoice assistant: summarizes invoices for auditors.".to_string(),
            tags: vec!["finance".to_string(), "documents".to_string()],
            capabilities: vec!["summarize".to_string()],
            version: "1.2.3".to_string(),
            ttl: 0,
            timeout_ms: 30_000,
            max_retries: 2,
            endpoints: vec![pb::Endpoint {
                url: "http://127.0.0.1:24242/mcp".to_string(),
                tool: label.to_string(),
                priority: 10,
                weight: 1,
                health: None,
            }],
            input_schema_json: schema.to_string(),
            output_schema_json: String::new(),
            metadata_json: String::new(),
            health_checks_off: false,
        }),
        ..pb::ResolveResponse::default()
    }
}

#[tonic::async_trait]
impl Registry for BareRegistry {
    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let request = request.into_inner();
        let response = match self.answers.get(&request.name) {
            Some(response) => response.clone(),
            None => pb::ResolveResponse {
                name: request.name,
                outcome: pb::Outcome::Nxdomain as i32,
                zone: ORIGIN.to_string(),
                ttl: 60,
                authoritative: true,
                served_by: self.served_by.clone(),
                zone_serial: SERIAL,
                ..pb::ResolveResponse::default()
            },
        };
        Ok(Response::new(response))
    }

    async fn get_zone(
        &self,
        _request: Request<pb::GetZoneRequest>,
    ) -> Result<Response<pb::GetZoneResponse>, Status> {
        Err(only_resolve())
    }

    async fn list_agents(
        &self,
        _request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        Err(only_resolve())
    }

    async fn get_cache_stats(
        &self,
        _request: Request<pb::GetCacheStatsRequest>,
    ) -> Result<Response<pb::GetCacheStatsResponse>, Status> {
        Err(only_resolve())
    }

    type TransferStream = futures::stream::Empty<Result<pb::TransferChunk, Status>>;
    type WatchStream = futures::stream::Empty<Result<pb::WatchEvent, Status>>;

    async fn register(
        &self,
        _request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Err(only_resolve())
    }

    async fn renew(
        &self,
        _request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        Err(only_resolve())
    }

    async fn deregister(
        &self,
        _request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        Err(only_resolve())
    }

    async fn transfer(
        &self,
        _request: Request<pb::TransferRequest>,
    ) -> Result<Response<Self::TransferStream>, Status> {
        Err(only_resolve())
    }

    async fn notify(
        &self,
        _request: Request<pb::NotifyRequest>,
    ) -> Result<Response<pb::NotifyResponse>, Status> {
        Err(only_resolve())
    }

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(only_resolve())
    }

    async fn search(
        &self,
        _request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        Err(only_resolve())
    }
}

fn only_resolve() -> Status {
    Status::unimplemented("the bare server only answers Resolve")
}

fn usage() -> ! {
    eprintln!("usage: bare_resolve_server --names FILE --listen ADDR");
    std::process::exit(2);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut names_path = None;
    let mut listen: Option<SocketAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--names" => names_path = Some(args.next().unwrap_or_else(|| usage())),
            "--listen" => listen = Some(args.next().unwrap_or_else(|| usage()).parse()?),
            _ => usage(),
        }
    }
    let (Some(names_path), Some(listen)) = (names_path, listen) else {
        usage()
    };

    let served_by = listen.to_string();
    let schema = aop::record::default_input_schema();
    let text = std::fs::read_to_string(&names_path)?;
    let answers: HashMap<String, pb::ResolveResponse> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|name| (name.to_string(), answer(name, &served_by, schema.text())))
        .collect();
    eprintln!("{} names loaded from {names_path}", answers.len());

    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = BareRegistry {
        answers: Arc::new(answers),
        served_by,
    };
    println!("listening on {local}");
    tonic::transport::Server::builder()
        .add_service(RegistryServer::new(service))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
