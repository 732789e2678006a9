//! Federation tests: root, acme and finance.acme (two servers) as real nodes on 127.0.0.1:0,
//! and a resolver node with no zones of its own that recurses from the root. Upstream queries
//! are counted at the authorities; cache time is a manual clock moved by hand.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aop::grpc::{RegistryClient, pb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;

use crate::support::{
    AgentSpec, DelegationSpec, Federation, FederationBuilder, Link, ZoneSpec, connect,
};

/// The federation of these tests, its resolver node's cache on a manual clock.
async fn federation(max_stale: Duration) -> Federation {
    build(max_stale, false).await
}

/// The same, with a [`Link`] in front of each finance.acme server.
async fn linked_federation() -> Federation {
    build(Duration::from_secs(86_400), true).await
}

async fn build(max_stale: Duration, finance_through_links: bool) -> Federation {
    let mut finance = ZoneSpec::new("finance.acme")
        .servers(2)
        .delegation_ttl(3600)
        .ttl(300)
        .negative_ttl(60)
        .agent(AgentSpec::new("analyst").ttl(120))
        .alias("loop-b", "loop-a.acme.")
        .alias("scribe", "writer.acme.");
    if finance_through_links {
        finance = finance.through_links();
    }
    FederationBuilder::new()
        .zone(ZoneSpec::root().ttl(3600))
        .zone(
            ZoneSpec::new("acme")
                .ttl(300)
                .agent(AgentSpec::new("writer"))
                .alias("loop-a", "loop-b.finance.acme.")
                .alias("pen", "scribe.finance.acme.")
                // A delegation whose server is this node again: it can only refer back to itself.
                .delegation(DelegationSpec::to_servers_of("lame", "acme"))
                // A delegation to a server that never answers.
                .delegation(DelegationSpec::to_black_hole("slow")),
        )
        .zone(finance)
        .manual_clock()
        .max_stale(max_stale)
        .start()
        .await
}

/// Upstream queries received by (root, acme, the running finance servers).
fn upstream_counts(fed: &Federation) -> (u64, u64, u64) {
    (
        fed.resolve_requests("."),
        fed.resolve_requests("acme"),
        fed.resolve_requests("finance.acme"),
    )
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
    assert_eq!(upstream_counts(&fed), (1, 1, 1));

    fed.clock().advance(Duration::from_secs(20));
    let warm = resolve(&mut client, "analyst.finance.acme", true)
        .await
        .unwrap();
    assert_eq!(warm.outcome(), pb::Outcome::Answer);
    assert!(!warm.authoritative, "a cached answer is not authoritative");
    assert_eq!(warm.ttl, 100, "the remaining TTL counts down");
    assert_eq!(warm.trace.len(), 1);
    assert!(warm.trace[0].cached);
    assert_eq!(
        upstream_counts(&fed),
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
        upstream_counts(&fed),
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
    let after_first = upstream_counts(&fed).2;

    fed.clock().advance(Duration::from_secs(59));
    let cached = resolve(&mut client, "nobody.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(cached.outcome(), pb::Outcome::Nxdomain);
    assert_eq!(cached.ttl, 1);
    assert_eq!(upstream_counts(&fed).2, after_first, "still cached at 59 s");

    fed.clock().advance(Duration::from_secs(1));
    let refetched = resolve(&mut client, "nobody.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(refetched.outcome(), pb::Outcome::Nxdomain);
    assert_eq!(refetched.ttl, 60);
    assert_eq!(
        upstream_counts(&fed).2,
        after_first + 1,
        "refetched at 60 s"
    );

    // Positive answers likewise expire on their own TTL (120 s for the analyst).
    resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap();
    let before = upstream_counts(&fed).2;
    fed.clock().advance(Duration::from_secs(119));
    resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(upstream_counts(&fed).2, before);
    fed.clock().advance(Duration::from_secs(1));
    resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(upstream_counts(&fed).2, before + 1);
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
    let survivor_before = fed.server("finance.acme", 1 - stop).resolve_requests();
    fed.stop("finance.acme", stop).await;
    for stream in streams {
        for outcome in stream.await.unwrap() {
            assert_eq!(outcome.expect("no query fails"), pb::Outcome::Nxdomain);
        }
    }
    let survivor_after = fed.server("finance.acme", 1 - stop).resolve_requests();
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
    fed.stop("finance.acme", 0).await;
    fed.stop("finance.acme", 1).await;

    // Past the 120 s TTL: every server fails, the expired answer is served stale.
    fed.clock().advance(Duration::from_secs(121));
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
    fed.clock().advance(Duration::from_secs(600));
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
    assert_eq!(upstream_counts(&fed), (1, 1, 1));
    assert_eq!(fed.resolver().resolve_requests(), 100);
    fed.shutdown().await;
}

#[tokio::test]
async fn the_callers_deadline_travels_and_a_node_without_roots_says_how_to_fix_it() {
    let fed = federation(Duration::from_secs(86_400)).await;
    // A node with zones but no root hints cannot resolve outside them.
    let mut acme = connect(&fed.server("acme", 0).grpc_url()).await.unwrap();
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
        .resolver()
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
    fed.stop("finance.acme", 0).await;
    fed.stop("finance.acme", 1).await;
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

#[tokio::test]
async fn a_partitioned_link_to_one_finance_server_fails_over_and_heals() {
    let fed = linked_federation().await;
    let mut client = fed.client().await;
    // Warm the cut: the resolver knows finance.acme's two servers (the links in front).
    let warm = resolve(&mut client, "analyst.finance.acme", false)
        .await
        .unwrap();
    assert_eq!(warm.outcome(), pb::Outcome::Answer);
    let count = |index: usize| fed.server("finance.acme", index).resolve_requests();

    // The path to finance-1 partitioned: every query is answered, by finance-2 (after one
    // attempt at finance-1 runs into its timeout, the resolver holds finance-1 off).
    fed.link("finance.acme", 0).partition();
    let (first, second) = (count(0), count(1));
    for i in 0..5 {
        let answer = resolve(&mut client, &format!("p{i}.finance.acme"), false)
            .await
            .expect("answered through the other server");
        assert_eq!(answer.outcome(), pb::Outcome::Nxdomain);
    }
    assert_eq!(count(0), first, "nothing crossed the partition");
    assert!(count(1) >= second + 5, "finance-2 answered");

    // Healed, and the path to finance-2 partitioned instead: once the resolver's hold-off
    // ends (on its clock), finance-1 answers again.
    fed.link("finance.acme", 0).heal();
    fed.link("finance.acme", 1).partition();
    fed.clock().advance(Duration::from_secs(31));
    let (first, second) = (count(0), count(1));
    for i in 0..5 {
        let answer = resolve(&mut client, &format!("h{i}.finance.acme"), false)
            .await
            .expect("answered through the healed link");
        assert_eq!(answer.outcome(), pb::Outcome::Nxdomain);
    }
    assert!(count(0) >= first + 5, "finance-1 answers again");
    assert_eq!(count(1), second, "nothing crossed the second partition");
    fed.link("finance.acme", 1).heal();
    fed.shutdown().await;
}

// The link itself, against an echo server.

/// An echo server on a free port; it serves every connection until its client ends it.
async fn echo_server() -> std::net::SocketAddr {
    let listener = crate::support::free_listener().await;
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

/// Sends `message` and reads the echo within `limit`; `None` when nothing (or an error) comes
/// back in time.
async fn echo(stream: &mut TcpStream, message: &[u8], limit: Duration) -> Option<Vec<u8>> {
    stream.write_all(message).await.ok()?;
    let mut back = vec![0u8; message.len()];
    match tokio::time::timeout(limit, stream.read_exact(&mut back)).await {
        Ok(Ok(_)) => Some(back),
        _ => None,
    }
}

#[tokio::test]
async fn a_link_forwards_delays_partitions_cuts_and_heals() {
    const IN_TIME: Duration = Duration::from_secs(5);
    /// How long a test waits to see that nothing comes back.
    const SILENCE: Duration = Duration::from_millis(300);
    let link = Link::start(echo_server().await).await;
    let mut stream = TcpStream::connect(link.addr()).await.unwrap();
    assert_eq!(echo(&mut stream, b"up", IN_TIME).await.unwrap(), b"up");

    // Delayed: each chunk waits, either way.
    link.delay(Duration::from_millis(150));
    let started = Instant::now();
    assert_eq!(echo(&mut stream, b"slow", IN_TIME).await.unwrap(), b"slow");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    link.heal();

    // Partitioned: nothing comes back, on an open connection or a new one...
    link.partition();
    assert_eq!(echo(&mut stream, b"lost", SILENCE).await, None);
    let mut during = TcpStream::connect(link.addr())
        .await
        .expect("a partition still takes connections");
    assert_eq!(echo(&mut during, b"held", SILENCE).await, None);
    // ...until healed, when what was held goes through.
    link.heal();
    let mut back = [0u8; 4];
    tokio::time::timeout(IN_TIME, stream.read_exact(&mut back))
        .await
        .expect("held bytes delivered after the heal")
        .unwrap();
    assert_eq!(&back, b"lost");
    tokio::time::timeout(IN_TIME, during.read_exact(&mut back))
        .await
        .expect("a held connection goes through after the heal")
        .unwrap();
    assert_eq!(&back, b"held");

    // Cut: open connections are severed, a new one is reset.
    link.cut();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(IN_TIME, stream.read(&mut byte))
        .await
        .expect("the severed connection ends");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let accepted = link.accepted();
    let mut refused = TcpStream::connect(link.addr()).await.unwrap();
    let read = tokio::time::timeout(IN_TIME, refused.read(&mut byte))
        .await
        .expect("a new connection is reset");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(link.accepted(), accepted + 1);

    // Healed after the cut: new connections go through again.
    link.heal();
    let mut fresh = TcpStream::connect(link.addr()).await.unwrap();
    assert_eq!(echo(&mut fresh, b"again", IN_TIME).await.unwrap(), b"again");
}
