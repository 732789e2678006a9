//! Federation tests: root, acme and finance.acme (two servers) as real nodes on 127.0.0.1:0,
//! and a resolver node with no zones of its own that recurses from the root. Upstream queries
//! are counted at the authorities; cache time is a manual clock moved by hand.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aop::clock::ManualClock;
use aop::grpc::{RegistryClient, pb};

/// The generated client on one connection (these tests exercise the wire itself).
async fn connect(url: &str) -> Result<aop::grpc::RegistryClient, aop::grpc::ClientError> {
    aop::grpc::connect(url).await.map(|client| client.raw())
}
use aop::node::{GrpcListener, NodeHandle, ServeOptions};
use aop::record::ServerAddress;
use aop::zone::file;
use tonic::Code;

struct Federation {
    /// Accepts TCP connections into its backlog and never answers.
    _black_hole: std::net::TcpListener,
    root: NodeHandle,
    acme: NodeHandle,
    finance: Vec<Option<NodeHandle>>,
    resolver: NodeHandle,
    clock: Arc<ManualClock>,
}

async fn bind() -> GrpcListener {
    GrpcListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("bind a free port")
}

fn zone(text: &str) -> aop::zone::ZoneSnapshot {
    file::parse(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

async fn federation(max_stale: Duration) -> Federation {
    let (root, acme, fin1, fin2, resolver) = (
        bind().await,
        bind().await,
        bind().await,
        bind().await,
        bind().await,
    );
    let (root_url, acme_url, fin1_url, fin2_url) = (root.url(), acme.url(), fin1.url(), fin2.url());
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let black_hole_url = format!("http://{}", black_hole.local_addr().unwrap());
    let root_zone = zone(&format!(
        r#"
[zone]
origin = "."
serial = 1
ttl = 3600
servers = [{{ grpc = "{root_url}" }}]

[[delegation]]
zone = "acme"
servers = [{{ grpc = "{acme_url}" }}]
"#
    ));
    let acme_zone = zone(&format!(
        r#"
[zone]
origin = "acme"
serial = 1
ttl = 300
servers = [{{ grpc = "{acme_url}" }}]

[[agent]]
name = "writer"
endpoints = [{{ url = "http://127.0.0.1:9/mcp" }}]

[[alias]]
name = "loop-a"
target = "loop-b.finance.acme."

[[alias]]
name = "pen"
target = "scribe.finance.acme."

[[delegation]]
zone = "finance"
servers = [{{ grpc = "{fin1_url}" }}, {{ grpc = "{fin2_url}" }}]
ttl = 3600

# A delegation whose server is this node again: it can only refer back to itself.
[[delegation]]
zone = "lame"
servers = [{{ grpc = "{acme_url}" }}]

# A delegation to a server that never answers.
[[delegation]]
zone = "slow"
servers = [{{ grpc = "{black_hole_url}" }}]
"#
    ));
    let finance_zone = format!(
        r#"
[zone]
origin = "finance.acme"
serial = 1
ttl = 300
negative_ttl = 60
servers = [{{ grpc = "{fin1_url}" }}, {{ grpc = "{fin2_url}" }}]

[[agent]]
name = "analyst"
ttl = 120
endpoints = [{{ url = "http://127.0.0.1:9/mcp" }}]

[[alias]]
name = "loop-b"
target = "loop-a.acme."

[[alias]]
name = "scribe"
target = "writer.acme."
"#
    );
    let clock = ManualClock::new();
    let mut resolver_options = ServeOptions::new(Vec::new())
        .node_id("resolver")
        .roots(vec![ServerAddress::new(&root_url, None).unwrap()]);
    resolver_options.clock = clock.clone();
    resolver_options.resolver.cache.max_stale_age = max_stale;
    Federation {
        _black_hole: black_hole,
        root: root
            .serve_with(ServeOptions::new(vec![root_zone]).node_id("root"))
            .expect("node serves"),
        acme: acme
            .serve_with(ServeOptions::new(vec![acme_zone]).node_id("acme"))
            .expect("node serves"),
        finance: vec![
            Some(
                fin1.serve_with(ServeOptions::new(vec![zone(&finance_zone)]).node_id("finance-1"))
                    .expect("node serves"),
            ),
            Some(
                fin2.serve_with(ServeOptions::new(vec![zone(&finance_zone)]).node_id("finance-2"))
                    .expect("node serves"),
            ),
        ],
        resolver: resolver.serve_with(resolver_options).expect("node serves"),
        clock,
    }
}

impl Federation {
    async fn client(&self) -> RegistryClient {
        connect(&self.resolver.grpc_url())
            .await
            .expect("connect to the resolver")
    }

    /// Upstream queries received by (root, acme, both finance servers).
    fn upstream_counts(&self) -> (u64, u64, u64) {
        let finance = self
            .finance
            .iter()
            .flatten()
            .map(NodeHandle::resolve_requests)
            .sum();
        (
            self.root.resolve_requests(),
            self.acme.resolve_requests(),
            finance,
        )
    }

    async fn stop_finance(&mut self, index: usize) {
        if let Some(node) = self.finance[index].take() {
            node.shutdown().await.expect("clean shutdown");
        }
    }

    async fn shutdown(mut self) {
        self.stop_finance(0).await;
        self.stop_finance(1).await;
        for node in [self.root, self.acme, self.resolver] {
            node.shutdown().await.expect("clean shutdown");
        }
    }
}

async fn resolve(
    client: &mut RegistryClient,
    name: &str,
    trace: bool,
) -> Result<pb::ResolveResponse, tonic::Status> {
    client
        .resolve(pb::ResolveRequest {
            name: name.to_string(),
            recursive: true,
            trace,
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn cold_resolution_walks_three_levels_and_warm_is_served_from_cache() {
    let fed = federation(Duration::from_secs(86_400)).await;
    let mut client = fed.client().await;

    let cold = resolve(&mut client, "analyst.finance.acme", true)
        .await
        .unwrap();
    assert_eq!(cold.outcome(), pb::Outcome::Answer);
    assert_eq!(cold.agent.as_ref().unwrap().name, "analyst.finance.acme");
    assert_eq!(cold.served_by, "resolver");
    assert!(cold.recursion_available);
    assert_eq!(cold.ttl, 120);
    assert!(!cold.stale);
    let hops: Vec<(&str, &str, pb::Outcome)> = cold
        .trace
        .iter()
        .map(|s| (s.server.as_str(), s.zone.as_str(), s.outcome()))
        .collect();
    assert_eq!(
        hops[0],
        ("resolver", ".", pb::Outcome::Referral),
        "the resolver's own step first"
    );
    assert_eq!(hops[1], ("root", ".", pb::Outcome::Referral));
    assert_eq!(hops[2], ("acme", "acme", pb::Outcome::Referral));
    assert!(hops[3].0.starts_with("finance-"), "{hops:?}");
    assert_eq!(
        (hops[3].1, hops[3].2),
        ("finance.acme", pb::Outcome::Answer)
    );
    assert!(cold.trace[3].authoritative);
    assert_eq!(fed.upstream_counts(), (1, 1, 1));

    fed.clock.advance(Duration::from_secs(20));
    let warm = resolve(&mut client, "analyst.finance.acme", true)
        .await
        .unwrap();
    assert_eq!(warm.outcome(), pb::Outcome::Answer);
    assert!(!warm.authoritative, "a cached answer is not authoritative");
    assert_eq!(warm.ttl, 100, "the remaining TTL counts down");
    assert_eq!(warm.trace.len(), 1);
    assert!(warm.trace[0].cached);
    assert_eq!(
        fed.upstream_counts(),
        (1, 1, 1),
        "no upstream query when warm"
    );

    // Another name in the same zone starts from the cached cut: one query, to finance only.
    let other = resolve(&mut client, "scribe.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(
        other.outcome(),
        pb::Outcome::Answer,
        "cross-zone alias chased to writer.acme"
    );
    assert_eq!(other.agent.unwrap().name, "writer.acme");
    assert_eq!(other.aliases[0].name, "scribe.finance.acme");
    assert_eq!(
        fed.upstream_counts(),
        (1, 2, 2),
        "finance for the alias, acme (cached cut) for its target"
    );

    let stats = client
        .get_cache_stats(pb::GetCacheStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let answers = stats.levels.iter().find(|l| l.level == "answers").unwrap();
    assert!(answers.hits >= 1 && answers.inserts >= 2, "{answers:?}");
    let delegations = stats
        .levels
        .iter()
        .find(|l| l.level == "delegations")
        .unwrap();
    assert!(
        delegations.entries >= 2,
        "acme and finance.acme cuts: {delegations:?}"
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn negative_answers_are_cached_for_exactly_the_negative_ttl_then_refetched() {
    let fed = federation(Duration::from_secs(86_400)).await;
    let mut client = fed.client().await;
    let first = resolve(&mut client, "nobody.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(first.outcome(), pb::Outcome::Nxdomain);
    assert_eq!(first.ttl, 60, "min(zone ttl 300, negative_ttl 60)");
    let after_first = fed.upstream_counts().2;

    fed.clock.advance(Duration::from_secs(59));
    let cached = resolve(&mut client, "nobody.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(cached.outcome(), pb::Outcome::Nxdomain);
    assert_eq!(cached.ttl, 1);
    assert_eq!(fed.upstream_counts().2, after_first, "still cached at 59 s");

    fed.clock.advance(Duration::from_secs(1));
    let refetched = resolve(&mut client, "nobody.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(refetched.outcome(), pb::Outcome::Nxdomain);
    assert_eq!(refetched.ttl, 60);
    assert_eq!(
        fed.upstream_counts().2,
        after_first + 1,
        "refetched at 60 s"
    );

    // Positive answers likewise expire on their own TTL (120 s for the analyst).
    resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap();
    let before = fed.upstream_counts().2;
    fed.clock.advance(Duration::from_secs(119));
    resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(fed.upstream_counts().2, before);
    fed.clock.advance(Duration::from_secs(1));
    resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(fed.upstream_counts().2, before + 1);
    fed.shutdown().await;
}

#[tokio::test]
async fn one_finance_server_stopped_mid_stream_fails_no_query() {
    let mut fed = federation(Duration::from_secs(86_400)).await;
    let client = fed.client().await;
    // Warm the cut so the stream goes straight to the finance servers.
    let warm = resolve(&mut client.clone(), "analyst.finance.acme", true)
        .await
        .unwrap();
    let preferred = warm.trace.last().unwrap().server.clone();
    let stop = if preferred == "finance-1" { 0 } else { 1 };

    let completed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut streams = Vec::new();
    for stream in 0..4 {
        let mut client = client.clone();
        let completed = Arc::clone(&completed);
        streams.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for i in 0..60 {
                // Distinct names: every query goes to a finance server.
                let name = format!("q{stream}-{i}.finance.acme");
                outcomes.push(
                    resolve(&mut client, &name, false)
                        .await
                        .map(|r| r.outcome()),
                );
                completed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            outcomes
        }));
    }
    // Stop the preferred server once the stream is well under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while completed.load(std::sync::atomic::Ordering::SeqCst) < 60 {
        assert!(Instant::now() < deadline, "the stream did not get going");
        tokio::task::yield_now().await;
    }
    let survivor_before = fed.finance[1 - stop].as_ref().unwrap().resolve_requests();
    fed.stop_finance(stop).await;
    for stream in streams {
        for outcome in stream.await.unwrap() {
            assert_eq!(outcome.expect("no query fails"), pb::Outcome::Nxdomain);
        }
    }
    let survivor_after = fed.finance[1 - stop].as_ref().unwrap().resolve_requests();
    assert!(
        survivor_after > survivor_before,
        "the other server took over"
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn both_finance_servers_stopped_serve_stale_within_the_window_then_unavailable() {
    let mut fed = federation(Duration::from_secs(600)).await;
    let mut client = fed.client().await;
    resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap();
    fed.stop_finance(0).await;
    fed.stop_finance(1).await;

    // Past the 120 s TTL: every server fails, the expired answer is served stale.
    fed.clock.advance(Duration::from_secs(121));
    let stale = resolve(&mut client, "analyst.finance.acme", true)
        .await
        .unwrap();
    assert_eq!(stale.outcome(), pb::Outcome::Answer);
    assert!(stale.stale);
    assert_eq!(stale.ttl, 30, "stale answers carry the stale TTL");
    assert!(
        stale.trace.iter().any(|s| !s.error.is_empty()),
        "the trace shows the failures"
    );

    // A name never cached has nothing stale to fall back on.
    let status = resolve(&mut client, "never.finance.acme", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);

    // Past the stale window: a clear UNAVAILABLE naming the zone.
    fed.clock.advance(Duration::from_secs(600));
    let status = resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .starts_with("every server of zone finance.acme failed"),
        "{}",
        status.message()
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn cross_zone_alias_loop_and_delegation_loop_end_quickly_with_clear_errors() {
    let fed = federation(Duration::from_secs(86_400)).await;
    let mut client = fed.client().await;

    let started = Instant::now();
    let status = resolve(&mut client, "loop-a.acme", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status.message(),
        "alias loop across zones: loop-a.acme -> loop-b.finance.acme -> loop-a.acme"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let status = resolve(&mut client, "x.lame.acme", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status
            .message()
            .contains("every server of zone lame.acme failed"),
        "{}",
        status.message()
    );
    assert!(
        status
            .message()
            .contains("(a lame delegation or a delegation loop)"),
        "{}",
        status.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn a_hundred_identical_cold_queries_cost_one_upstream_query_per_hop() {
    let fed = federation(Duration::from_secs(86_400)).await;
    let client = fed.client().await;
    let mut queries = Vec::new();
    for _ in 0..100 {
        let mut client = client.clone();
        queries.push(tokio::spawn(async move {
            resolve(&mut client, "analyst.finance.acme", false).await
        }));
    }
    for query in queries {
        let answer = query.await.unwrap().expect("every query is answered");
        assert_eq!(answer.outcome(), pb::Outcome::Answer);
    }
    assert_eq!(fed.upstream_counts(), (1, 1, 1));
    assert_eq!(fed.resolver.resolve_requests(), 100);
    fed.shutdown().await;
}

#[tokio::test]
async fn the_callers_deadline_travels_and_a_node_without_roots_says_how_to_fix_it() {
    let fed = federation(Duration::from_secs(86_400)).await;
    // A node with zones but no root hints cannot resolve outside them.
    let mut acme = connect(&fed.acme.grpc_url()).await.unwrap();
    let status = resolve(&mut acme, "something.globex", false)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("--root"), "{}", status.message());
    // ...but it follows its own delegations downwards.
    let answer = resolve(&mut acme, "analyst.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(answer.outcome(), pb::Outcome::Answer);

    // The caller's deadline bounds every hop: a server that never answers costs the
    // remaining budget (300 ms), not the 1.5 s a single attempt may otherwise take.
    let name = aop::name::Name::parse("x.slow.acme").unwrap();
    let options = aop::resolver::ResolveOptions {
        deadline: Some(tokio::time::Instant::now() + Duration::from_millis(300)),
        trace: false,
    };
    let started = Instant::now();
    let error = fed
        .resolver
        .resolver()
        .resolve(&name, options)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(error, aop::resolver::ResolveError::DeadlineExceeded { .. }),
        "{error}"
    );
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(1400),
        "took {elapsed:?}"
    );
    fed.shutdown().await;
}

#[tokio::test]
async fn zone_listings_reach_any_zone_through_a_resolver_node() {
    let mut fed = federation(Duration::from_secs(3600)).await;
    let mut client = fed.client().await;
    // The resolver serves no zone: it finds finance.acme's servers from the root down.
    let header = client
        .get_zone(pb::GetZoneRequest {
            zone: "finance.acme".into(),
            recursive: true,
        })
        .await
        .expect("GetZone forwarded to a finance.acme server")
        .into_inner();
    assert_eq!(header.origin, "finance.acme");
    assert!(
        header.served_by.starts_with("finance"),
        "{}",
        header.served_by
    );
    let page = client
        .list_agents(pb::ListAgentsRequest {
            zone: "finance.acme".into(),
            page_size: 10,
            cursor: String::new(),
            recursive: true,
        })
        .await
        .expect("ListAgents forwarded")
        .into_inner();
    assert!(page.agents.iter().any(|a| a.name == "analyst.finance.acme"));
    assert_eq!(page.zone_serial, header.serial);

    // Without `recursive`, the node says it does not serve the zone.
    let status = client
        .get_zone(pb::GetZoneRequest {
            zone: "finance.acme".into(),
            recursive: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    // A name inside a zone is not a zone; a missing one does not exist.
    let status = client
        .get_zone(pb::GetZoneRequest {
            zone: "analyst.finance.acme".into(),
            recursive: true,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(
        status.message().contains("not a zone"),
        "{}",
        status.message()
    );
    let status = client
        .get_zone(pb::GetZoneRequest {
            zone: "nowhere.acme".into(),
            recursive: true,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // Both finance servers down: UNAVAILABLE, naming the zone.
    fed.stop_finance(0).await;
    fed.stop_finance(1).await;
    let status = client
        .list_agents(pb::ListAgentsRequest {
            zone: "finance.acme".into(),
            page_size: 10,
            cursor: String::new(),
            recursive: true,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("finance.acme"),
        "{}",
        status.message()
    );
    fed.shutdown().await;
}
