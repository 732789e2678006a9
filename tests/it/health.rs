//! Endpoint health end to end (docs/protocol.md §9.1): a node probing a real MCP agent and an
//! address where nothing listens, over real sockets; what gRPC and DNS answer as the probes
//! conclude. (Bounds and damping on virtual time are the unit tests of `src/health`.)

use std::net::SocketAddr;
use std::time::Duration;

use aop::admin::AdminListener;
use aop::agent::AgentKind;
use aop::dns::DnsListener;
use aop::grpc::pb;
use aop::node::ServeOptions;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

use crate::support::{
    agent, bind, connect, dead_url, eventually, loopback, parse_exposition, zone,
};

/// The endpoints a non-recursive Resolve of `name` gives, with their health.
async fn endpoints(client: &mut aop::grpc::RegistryClient, name: &str) -> Vec<(String, i32)> {
    let answer = client
        .resolve(pb::ResolveRequest {
            name: name.to_string(),
            recursive: false,
            trace: false,
        })
        .await
        .unwrap_or_else(|status| panic!("resolve {name}: {status}"))
        .into_inner();
    answer
        .agent
        .unwrap_or_else(|| panic!("no agent in the answer for {name}"))
        .endpoints
        .into_iter()
        .map(|e| (e.url, e.health.map_or(0, |h| h.state)))
        .collect()
}

/// The `url=` strings of the agent's TXT record over UDP.
async fn txt_urls(server: SocketAddr, name: &str) -> Vec<String> {
    let mut message = Message::query();
    message.add_query(Query::query(
        Name::from_ascii(name).unwrap(),
        RecordType::TXT,
    ));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&message.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 65_535];
    let Ok(Ok((len, _))) =
        tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer)).await
    else {
        return Vec::new();
    };
    let answer = Message::from_vec(&buffer[..len]).unwrap();
    answer
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|string| String::from_utf8_lossy(string).into_owned())
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .filter(|string| string.starts_with("url"))
        .collect()
}

const UP: i32 = pb::HealthState::HealthUp as i32;
const DOWN: i32 = pb::HealthState::HealthDown as i32;

#[tokio::test]
async fn a_dead_endpoint_leaves_grpc_and_dns_answers_and_when_all_are_dead_all_come_back_marked_down()
 {
    let (_echo, server) = agent(AgentKind::Echo, "echo").await;
    let live = server.url();
    let dead = dead_url();
    let text = format!(
        r#"
        [zone]
        origin = "finance.acme"
        serial = 1
        servers = [{{ grpc = "http://127.0.0.1:7102" }}]
        health = {{ interval = "200ms", timeout = "150ms", down_after = 2, up_after = 1 }}
        [[agent]]
        name = "analyst"
        endpoints = [{{ url = "{dead}", tool = "echo" }}, {{ url = "{live}", tool = "echo" }}]
        "#
    );
    let dns = DnsListener::bind(loopback()).await.unwrap();
    let dns_addr = dns.local_addr();
    let admin = AdminListener::bind(loopback()).await.unwrap();
    let metrics_url = format!("{}metrics", admin.url());
    let node = bind()
        .await
        .serve_with(ServeOptions::new(vec![zone(&text)]).dns(dns).admin(admin))
        .expect("node serves");
    let client = connect(&node.grpc_url()).await.unwrap();
    let name = "analyst.finance.acme";

    // The dead one is left out, the live one is up, over gRPC and DNS alike.
    eventually(
        Duration::from_secs(10),
        "only the live endpoint, up",
        || {
            let mut client = client.clone();
            let live = live.clone();
            async move { endpoints(&mut client, name).await == [(live, UP)] }
        },
    )
    .await;
    assert_eq!(txt_urls(dns_addr, name).await, [format!("url={live}")]);
    let text = crate::support::http()
        .get(&metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metrics = parse_exposition(&text);
    let count = |state: &str| {
        metrics[&format!("aop_endpoints{{zone=\"finance.acme\",health=\"{state}\"}}")]
    };
    assert_eq!((count("up"), count("down")), (1.0, 1.0), "{text}");
    assert!(metrics["aop_health_probes_total{result=\"failed\"}"] >= 2.0);

    // The only live endpoint goes away: both come back, marked down, so callers still have
    // somewhere to try.
    server.shutdown().await;
    eventually(Duration::from_secs(10), "both endpoints, down", || {
        let mut client = client.clone();
        let (live, dead) = (live.clone(), dead.clone());
        async move { endpoints(&mut client, name).await == [(dead, DOWN), (live, DOWN)] }
    })
    .await;
    let mut urls = txt_urls(dns_addr, name).await;
    urls.sort();
    assert_eq!(urls.len(), 2, "{urls:?}");
    node.shutdown().await.unwrap();
}
