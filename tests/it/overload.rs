//! Overload at the doors (docs/protocol.md §8.3): the gRPC door sheds requests past
//! `--max-concurrent` at once with RESOURCE_EXHAUSTED and answers again when the load goes,
//! and the DNS door's response-rate limit holds one client network to its rate without
//! touching another.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use aop::dns::DnsListener;
use aop::grpc::pb;
use aop::grpc::server::ServerLimits;
use aop::node::ServeOptions;
use aop::record::ServerAddress;
use aop::resolver::ResolverConfig;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;
use tonic::Code;

use crate::support::{BlackHole, bind, connect, eventually, loopback, zone};

const ACME: &str = r#"
[zone]
origin = "acme"
serial = 1
ttl = 300
negative_ttl = 60
servers = [{ grpc = "http://127.0.0.1:7101", dns = "127.0.0.1:5301" }]

[[agent]]
name = "writer"
description = "Writes."
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]
"#;

fn resolve(name: &str, recursive: bool) -> pb::ResolveRequest {
    pb::ResolveRequest {
        name: name.into(),
        recursive,
        trace: false,
    }
}

#[tokio::test]
async fn a_burst_over_max_concurrent_is_shed_at_once_and_the_node_answers_after() {
    // Recursion into a root that never answers holds a request in flight for a minute: two
    // of them take both places of a node with --max-concurrent 2.
    let root = BlackHole::new();
    let resolver = ResolverConfig {
        roots: vec![ServerAddress::new(&root.url(), None).unwrap()],
        max_time: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(60),
        ..ResolverConfig::default()
    };
    let limits = ServerLimits {
        max_concurrent: 2,
        ..ServerLimits::default()
    };
    let options = ServeOptions {
        resolver,
        ..ServeOptions::new(vec![zone(ACME)])
    };
    let node = bind()
        .await
        .serve_with(options.grpc_limits(limits))
        .expect("node serves");
    let url = node.grpc_url();

    let mut holders = tokio::task::JoinSet::new();
    for index in 0..2 {
        let mut client = connect(&url).await.unwrap();
        holders.spawn(async move {
            client
                .resolve(resolve(&format!("agent{index}.elsewhere"), true))
                .await
        });
    }
    let mut probe = connect(&url).await.unwrap();
    let shed = |status: &tonic::Status| {
        status.code() == Code::ResourceExhausted
            && status
                .message()
                .contains("limit of 2 requests in flight (--max-concurrent)")
    };
    eventually(Duration::from_secs(10), "both places taken", || {
        let mut probe = probe.clone();
        async move {
            match probe.resolve(resolve("writer.acme", false)).await {
                Err(status) => shed(&status),
                Ok(_) => false,
            }
        }
    })
    .await;

    // A burst while both are held: every request is refused, none waits for a place (the
    // holders keep theirs for a minute, far past this test's deadlines).
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let mut client = probe.clone();
        burst.spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                client.resolve(resolve("writer.acme", false)),
            )
            .await
        });
    }
    let mut refused = 0;
    while let Some(outcome) = burst.join_next().await {
        let outcome = outcome.unwrap().expect("shed at once, not queued");
        let status = outcome.expect_err("no place was free");
        assert!(shed(&status), "{status:?}");
        refused += 1;
    }
    assert_eq!(refused, 32);
    assert!(
        holders.try_join_next().is_none(),
        "the held requests are still in flight"
    );

    // The load goes (the holders' clients give up): the node answers again.
    holders.shutdown().await;
    eventually(Duration::from_secs(10), "answers after the load", || {
        let mut probe = probe.clone();
        async move {
            probe
                .resolve(resolve("writer.acme", false))
                .await
                .is_ok_and(|answer| answer.into_inner().outcome() == pb::Outcome::Answer)
        }
    })
    .await;
    let answer = probe
        .resolve(resolve("writer.acme", false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.outcome(), pb::Outcome::Answer);
    node.shutdown().await.unwrap();
}

fn query(id: u16) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = id;
    message.add_query(Query::query(
        Name::from_ascii("writer.acme.").unwrap(),
        RecordType::TXT,
    ));
    message.to_vec().unwrap()
}

/// A UDP socket on `ip` (any loopback address: Linux routes all of 127/8 to `lo`).
async fn client_on(ip: Ipv4Addr) -> UdpSocket {
    UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .await
        .unwrap()
}

/// The next response within `wait`, if one comes.
async fn receive(socket: &UdpSocket, wait: Duration) -> Option<Message> {
    let mut buffer = vec![0u8; 65_535];
    let received = tokio::time::timeout(wait, socket.recv(&mut buffer)).await;
    let len = received.ok()?.unwrap();
    Some(Message::from_vec(&buffer[..len]).unwrap())
}

#[tokio::test]
async fn the_dns_rate_limit_holds_one_slash_24_and_not_another() {
    let dns = DnsListener::bind(loopback())
        .await
        .unwrap()
        .with_rate_limit(Some(2));
    let addr = dns.local_addr();
    let node = bind()
        .await
        .serve_with(ServeOptions::new(vec![zone(ACME)]).dns(dns))
        .expect("node serves");

    // 127.0.0.0/24 sends 12 queries back to back: at most 2 a second are answered in full,
    // so some come back truncated (every second refused one), the rest not at all.
    let noisy = client_on(Ipv4Addr::new(127, 0, 0, 1)).await;
    noisy.connect(addr).await.unwrap();
    for id in 0..12 {
        noisy.send(&query(id)).await.unwrap();
    }
    let counters = node.dns_counters();
    let (mut full, mut truncated) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // Until every query is accounted for: answered, truncated, or counted as dropped.
    while full + truncated + counters.rate_limited_dropped.load(Ordering::Relaxed) < 12 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "queries unaccounted for"
        );
        let Some(response) = receive(&noisy, Duration::from_millis(100)).await else {
            continue;
        };
        if response.metadata.truncation {
            assert!(response.answers.is_empty());
            assert_eq!(response.queries.len(), 1, "the question is echoed");
            truncated += 1;
        } else {
            assert_eq!(response.answers.len(), 1);
            full += 1;
        }
    }
    assert!(full >= 1, "the first queries are answered");
    assert!(truncated >= 1, "past the rate, answers are truncated");
    assert!(full < 12, "not every query was answered in full");

    // 127.0.1.0/24 is another network: its first query is answered in full at once.
    let quiet = client_on(Ipv4Addr::new(127, 0, 1, 1)).await;
    quiet.connect(addr).await.unwrap();
    quiet.send(&query(100)).await.unwrap();
    let response = receive(&quiet, Duration::from_secs(10))
        .await
        .expect("an answer for another /24");
    assert_eq!(response.metadata.id, 100);
    assert!(!response.metadata.truncation);
    assert_eq!(response.answers.len(), 1);

    let limited = counters.rate_limited_truncated.load(Ordering::Relaxed)
        + counters.rate_limited_dropped.load(Ordering::Relaxed);
    assert!(limited >= 1, "the refused queries are counted");
    assert!(counters.rate_limited_truncated.load(Ordering::Relaxed) >= 1);
    node.shutdown().await.unwrap();
}
