//! The resolver against an in-memory federation (`twins`): failover between a zone's
//! servers, stale answers when every server is down, the caller's deadline against a black
//! hole, all on paused tokio time and a manual clock, without sockets.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::twins::{Link, Links, MemoryUpstream};
use crate::zone::ZoneSnapshot;

const ROOT: &str = "http://10.0.0.1:7100";
const ACME_1: &str = "http://10.0.0.2:7101";
const ACME_2: &str = "http://10.0.0.3:7101";

fn zone(text: &str) -> ZoneSnapshot {
    crate::zone::file::parse(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

struct World {
    resolver: Resolver,
    links: Arc<Links>,
    clock: Arc<ManualClock>,
}

/// Root (one server) delegating `acme` to two servers, which hold `analyst.acme`.
fn world(max_stale: Duration) -> World {
    let root = zone(&format!(
        r#"
        [zone]
        origin = "."
        serial = 1
        servers = [{{ grpc = "{ROOT}" }}]
        [[delegation]]
        zone = "acme"
        servers = [{{ grpc = "{ACME_1}" }}, {{ grpc = "{ACME_2}" }}]
        ttl = 3600
        "#
    ));
    let acme_text = format!(
        r#"
        [zone]
        origin = "acme"
        serial = 7
        ttl = 60
        servers = [{{ grpc = "{ACME_1}" }}, {{ grpc = "{ACME_2}" }}]
        [[agent]]
        name = "analyst"
        description = "Numbers."
        endpoints = [{{ url = "http://127.0.0.1:9/mcp" }}]
        "#
    );
    let links = Links::new();
    let upstream = MemoryUpstream::new(Arc::clone(&links));
    upstream.add(ROOT, Arc::new(Catalog::new("root", vec![root])));
    upstream.add(
        ACME_1,
        Arc::new(Catalog::new("acme-1", vec![zone(&acme_text)])),
    );
    upstream.add(
        ACME_2,
        Arc::new(Catalog::new("acme-2", vec![zone(&acme_text)])),
    );
    let clock = ManualClock::new();
    let config = ResolverConfig {
        roots: vec![ServerAddress::new(ROOT, None).unwrap()],
        cache: CacheConfig {
            max_stale_age: max_stale,
            ..CacheConfig::default()
        },
        ..ResolverConfig::default()
    };
    let resolver = Resolver::new(
        Arc::new(Catalog::new("resolver", Vec::new())),
        config,
        upstream,
        Arc::clone(&clock) as Arc<dyn Clock>,
    );
    World {
        resolver,
        links,
        clock,
    }
}

fn name(text: &str) -> Name {
    Name::parse(text).unwrap()
}

fn options() -> ResolveOptions {
    ResolveOptions {
        deadline: None,
        trace: true,
    }
}

/// Makes `url` look much faster than its sibling (unknown servers are ordered at random).
fn prefer(resolver: &Resolver, url: &str) {
    resolver
        .servers()
        .record_success(url, Duration::from_micros(10));
    let other = if url == ACME_1 { ACME_2 } else { ACME_1 };
    resolver
        .servers()
        .record_success(other, Duration::from_millis(50));
}

fn failures(resolver: &Resolver, label: &str) -> u64 {
    resolver
        .upstream_failures()
        .into_iter()
        .find(|(reason, _)| *reason == label)
        .map_or(0, |(_, count)| count)
}

#[tokio::test(start_paused = true)]
async fn a_dead_server_is_skipped_for_its_sibling() {
    let world = world(Duration::from_secs(3600));
    // The first server is known to be the faster, so it is asked first.
    prefer(&world.resolver, ACME_1);
    world.links.set(ACME_1, Link::Down);
    let answer = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .expect("the second server answers");
    assert!(matches!(answer.outcome, Outcome::Answer(_)));
    assert!(!answer.stale);
    assert_eq!(world.links.delivered(ACME_2), 1);
    assert_eq!(failures(&world.resolver, "unreachable"), 1);
    // The trace shows the failed server, then the one that answered.
    let servers: Vec<&str> = answer.trace.iter().map(|s| s.server.as_str()).collect();
    assert!(servers.contains(&ACME_1), "{servers:?}");
    assert!(servers.contains(&"acme-2"), "{servers:?}");
    // The dead server is now ordered after its sibling: the next lookup goes straight there.
    let acme_2_before = world.links.delivered(ACME_2);
    world
        .resolver
        .resolve(&name("other.acme"), options())
        .await
        .expect("NXDOMAIN is an answer");
    assert_eq!(world.links.delivered(ACME_2), acme_2_before + 1);
    assert_eq!(
        failures(&world.resolver, "unreachable"),
        1,
        "not asked again"
    );
}

/// (hits, misses) over every cache level.
async fn cache_lookups(resolver: &Resolver) -> (u64, u64) {
    resolver
        .cache_stats()
        .await
        .iter()
        .fold((0, 0), |(hits, misses), level| {
            (hits + level.hits, misses + level.misses)
        })
}

#[tokio::test(start_paused = true)]
async fn an_answer_from_the_nodes_own_zone_skips_the_caches() {
    let world = world(Duration::from_secs(3600));
    let remote = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .unwrap();
    assert!(remote.authoritative, "straight from acme's server");
    // The node starts serving acme itself (a secondary's first transfer), with newer data,
    // while the walk's answer is still fresh in its cache.
    world.resolver.catalog.upsert(zone(
        r#"
        [zone]
        origin = "acme"
        serial = 8
        ttl = 60
        servers = [{ grpc = "http://10.0.0.2:7101" }]
        [[agent]]
        name = "analyst"
        description = "Numbers, revised."
        endpoints = [{ url = "http://127.0.0.1:9/mcp" }]
        "#,
    ));
    let lookups = cache_lookups(&world.resolver).await;
    let own = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .unwrap();
    assert!(own.authoritative && own.recursion_available);
    assert_eq!(own.zone_serial, 8, "its own data, not the cached answer");
    let Outcome::Answer(agent) = &own.outcome else {
        panic!("{:?}", own.outcome)
    };
    assert_eq!(agent.description, "Numbers, revised.");
    assert_eq!(own.served_by.as_ref(), "resolver");
    assert_eq!(own.trace.len(), 1);
    assert!(own.trace[0].authoritative && !own.trace[0].cached);
    assert_eq!(
        cache_lookups(&world.resolver).await,
        lookups,
        "no cache lookup for an answer of its own"
    );
}

#[tokio::test(start_paused = true)]
async fn every_server_down_serves_the_expired_answer_marked_stale_within_the_window() {
    let world = world(Duration::from_secs(600));
    let fresh = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .unwrap();
    assert_eq!(fresh.ttl, 60);
    world.links.set(ACME_1, Link::Down);
    world.links.set(ACME_2, Link::Down);
    // Within the TTL: the cache answers, nobody is asked.
    let cached = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .unwrap();
    assert!(!cached.stale && !cached.authoritative);
    // Past the TTL, every server down: the expired answer, marked stale, with the stale TTL.
    world.clock.advance(Duration::from_secs(61));
    let stale = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .expect("a stale answer");
    assert!(stale.stale);
    assert_eq!(stale.ttl, ResolverConfig::default().stale_ttl);
    assert!(matches!(stale.outcome, Outcome::Answer(_)));
    // Past the stale window: no answer at all, naming the servers that failed.
    world.clock.advance(Duration::from_secs(600));
    let error = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .expect_err("nothing left to serve");
    assert!(matches!(error, ResolveError::Unavailable { .. }), "{error}");
    let text = error.to_string();
    assert!(text.contains(ACME_1) && text.contains(ACME_2), "{text}");
    // A server back: fresh answers again once the failed servers' hold-off has passed.
    world.links.set(ACME_2, Link::Up);
    world.clock.advance(Duration::from_secs(5));
    let back = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .unwrap();
    assert!(!back.stale);
}

#[tokio::test(start_paused = true)]
async fn a_black_hole_costs_its_servers_attempt_timeout_then_the_sibling_answers() {
    let world = world(Duration::from_secs(600));
    prefer(&world.resolver, ACME_1);
    world.links.set(ACME_1, Link::BlackHole);
    // ACME_1 was measured at microseconds: its attempt timeout is the floor, far below the
    // ceiling a fixed timeout would wait.
    let config = ResolverConfig::default();
    let hedge = world.resolver.servers().attempt_timeout(
        ACME_1,
        config.attempt_timeout_floor,
        config.attempt_timeout,
    );
    assert_eq!(hedge, config.attempt_timeout_floor);
    let started = tokio::time::Instant::now();
    let answer = world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .expect("the sibling answers");
    assert!(matches!(answer.outcome, Outcome::Answer(_)));
    let took = started.elapsed();
    assert!(
        took >= hedge && took < hedge + Duration::from_millis(20),
        "{took:?}"
    );
    assert_eq!(failures(&world.resolver, "timeout"), 1);
    // The trace names the silent server and says another answered first.
    let silent = answer
        .trace
        .iter()
        .find(|step| step.server == ACME_1)
        .and_then(|step| step.error.clone())
        .expect("the silent server is in the trace");
    assert!(silent.contains("another server answered first"), "{silent}");

    // With both in a black hole, the caller's deadline bounds the whole resolution.
    world.links.set(ACME_2, Link::BlackHole);
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_millis(700);
    let error = world
        .resolver
        .resolve(
            &name("nobody.acme"),
            ResolveOptions {
                deadline: Some(deadline),
                trace: false,
            },
        )
        .await
        .expect_err("out of time");
    assert!(
        matches!(error, ResolveError::DeadlineExceeded { .. }),
        "{error}"
    );
    assert!(started.elapsed() <= Duration::from_millis(700));
}

#[tokio::test(start_paused = true)]
async fn the_hedge_waits_as_long_as_the_servers_own_rtt_says() {
    let world = world(Duration::from_secs(600));
    // ACME_1 answers in about 600 ms (a far-away server), steadily; ACME_2 is slower still.
    for _ in 0..20 {
        world
            .resolver
            .servers()
            .record_success(ACME_1, Duration::from_millis(600));
        world
            .resolver
            .servers()
            .record_success(ACME_2, Duration::from_millis(900));
    }
    let config = ResolverConfig::default();
    let hedge = world.resolver.servers().attempt_timeout(
        ACME_1,
        config.attempt_timeout_floor,
        config.attempt_timeout,
    );
    assert!(
        hedge > Duration::from_millis(600) && hedge < config.attempt_timeout,
        "{hedge:?}"
    );
    world.links.set(ACME_1, Link::BlackHole);
    let started = tokio::time::Instant::now();
    world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .expect("the sibling answers");
    let took = started.elapsed();
    assert!(
        took >= hedge && took < hedge + Duration::from_millis(20),
        "{took:?} against a hedge after {hedge:?}"
    );
}

/// Issue 17's resolve failure: a zone server's link is cut while many lookups are in flight.
/// Each of them pays one attempt timeout of that server (its SRTT-based one, not the fixed
/// ceiling), and lookups after the first failure skip the server until its hold-off ends.
#[tokio::test(start_paused = true)]
async fn concurrent_lookups_meeting_a_cut_server_each_wait_only_its_attempt_timeout() {
    let world = world(Duration::from_secs(600));
    prefer(&world.resolver, ACME_1);
    // Warm the delegation so every lookup goes straight to the zone's servers.
    world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .unwrap();
    prefer(&world.resolver, ACME_1);
    world.links.set(ACME_1, Link::BlackHole);
    let started = tokio::time::Instant::now();
    let lookups = (0..20).map(|i| {
        let resolver = &world.resolver;
        async move {
            let asked = tokio::time::Instant::now();
            let result = resolver
                .resolve(&name(&format!("agent{i}.acme")), options())
                .await;
            (result, asked.elapsed())
        }
    });
    let results = futures::future::join_all(lookups).await;
    let floor = ResolverConfig::default().attempt_timeout_floor;
    for (result, took) in &results {
        let answer = result
            .as_ref()
            .expect("NXDOMAIN from the sibling is an answer");
        assert_eq!(answer.outcome, Outcome::NxDomain);
        assert!(*took <= floor + Duration::from_millis(20), "{took:?}");
    }
    assert!(started.elapsed() < ResolverConfig::default().attempt_timeout);
    // Later lookups do not ask the cut server at all while it is held off.
    let before = failures(&world.resolver, "timeout");
    let asked = tokio::time::Instant::now();
    world
        .resolver
        .resolve(&name("later.acme"), options())
        .await
        .unwrap();
    assert!(asked.elapsed() < Duration::from_millis(5));
    assert_eq!(failures(&world.resolver, "timeout"), before);
}

/// A server that refuses at once is not waited on: the next one is asked at once.
#[tokio::test(start_paused = true)]
async fn a_refused_first_server_moves_on_at_once() {
    let world = world(Duration::from_secs(600));
    prefer(&world.resolver, ACME_1);
    world.links.set(ACME_1, Link::Down);
    let started = tokio::time::Instant::now();
    world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .expect("the sibling answers");
    assert!(started.elapsed() < Duration::from_millis(5));
    assert_eq!(failures(&world.resolver, "unreachable"), 1);
    assert_eq!(failures(&world.resolver, "timeout"), 0);
}

/// With every server of the zone silent and an expired answer cached, the caller still gets
/// the stale answer before its deadline (RFC 8767's client response timer), not at it.
#[tokio::test(start_paused = true)]
async fn a_stale_answer_arrives_before_the_callers_deadline() {
    let world = world(Duration::from_secs(600));
    world
        .resolver
        .resolve(&name("analyst.acme"), options())
        .await
        .unwrap();
    world.clock.advance(Duration::from_secs(61));
    world.links.set(ACME_1, Link::BlackHole);
    world.links.set(ACME_2, Link::BlackHole);
    // A deadline shorter than an attempt: the walk would run right up to it.
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_secs(1);
    let answer = world
        .resolver
        .resolve(
            &name("analyst.acme"),
            ResolveOptions {
                deadline: Some(deadline),
                trace: false,
            },
        )
        .await
        .expect("the stale answer");
    assert!(answer.stale);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1) - STALE_ANSWER_MARGIN
    );
}

const FINANCE: &str = "http://10.0.0.4:7102";

/// Root -> `acme` (one server, holding the agent `desk.acme`) -> `finance.acme` (one server,
/// holding `agent0` .. `agent{count}`), every link answering after 20 ms, nothing cached.
fn deep_world(count: usize) -> (Resolver, Arc<Links>) {
    let root = zone(&format!(
        r#"
        [zone]
        origin = "."
        serial = 1
        servers = [{{ grpc = "{ROOT}" }}]
        [[delegation]]
        zone = "acme"
        servers = [{{ grpc = "{ACME_1}" }}]
        "#
    ));
    let acme = zone(&format!(
        r#"
        [zone]
        origin = "acme"
        serial = 1
        servers = [{{ grpc = "{ACME_1}" }}]
        [[agent]]
        name = "desk"
        endpoints = [{{ url = "http://127.0.0.1:9/mcp" }}]
        [[delegation]]
        zone = "finance"
        servers = [{{ grpc = "{FINANCE}" }}]
        "#
    ));
    let mut finance = format!(
        r#"
        [zone]
        origin = "finance.acme"
        serial = 1
        servers = [{{ grpc = "{FINANCE}" }}]
        "#
    );
    for i in 0..count {
        finance.push_str(&format!(
            "[[agent]]\nname = \"agent{i}\"\nendpoints = [{{ url = \"http://127.0.0.1:9/mcp\" }}]\n"
        ));
    }
    let links = Links::new();
    let upstream = MemoryUpstream::new(Arc::clone(&links));
    upstream.add(ROOT, Arc::new(Catalog::new("root", vec![root])));
    upstream.add(ACME_1, Arc::new(Catalog::new("acme", vec![acme])));
    upstream.add(
        FINANCE,
        Arc::new(Catalog::new("finance", vec![zone(&finance)])),
    );
    for url in [ROOT, ACME_1, FINANCE] {
        links.set(url, Link::Slow(Duration::from_millis(20)));
    }
    let config = ResolverConfig {
        roots: vec![ServerAddress::new(ROOT, None).unwrap()],
        ..ResolverConfig::default()
    };
    let resolver = Resolver::new(
        Arc::new(Catalog::new("resolver", Vec::new())),
        config,
        upstream,
        ManualClock::new() as Arc<dyn Clock>,
    );
    (resolver, links)
}

fn untraced() -> ResolveOptions {
    ResolveOptions {
        deadline: None,
        trace: false,
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_cold_misses_under_one_cut_share_one_walk_to_it() {
    let (resolver, links) = deep_world(50);
    let names: Vec<Name> = (0..50)
        .map(|i| name(&format!("agent{i}.finance.acme")))
        .collect();
    let answers =
        futures::future::join_all(names.iter().map(|n| resolver.resolve(n, untraced()))).await;
    for (asked, answer) in names.iter().zip(answers) {
        let answer = answer.unwrap_or_else(|e| panic!("{asked}: {e}"));
        assert_eq!(&answer.name, asked);
        let Outcome::Answer(agent) = &answer.outcome else {
            panic!("{asked}: {:?}", answer.outcome)
        };
        assert_eq!(&agent.name, asked);
    }
    // One question to the root and one to acme for all fifty; each name its own final one.
    assert_eq!(links.delivered(ROOT), 1);
    assert_eq!(links.delivered(ACME_1), 1);
    assert_eq!(links.delivered(FINANCE), 50);
}

#[tokio::test(start_paused = true)]
async fn a_shared_question_whose_answer_is_not_a_referral_is_asked_again() {
    let (resolver, links) = deep_world(1);
    // Both names are asked of acme under the branch `desk.acme`: the answer about `desk.acme`
    // (its agent) says nothing about `a.desk.acme`, which acme must answer itself.
    let desk = name("desk.acme");
    let below = name("a.desk.acme");
    let (desk_answer, below_answer) = futures::future::join(
        resolver.resolve(&desk, untraced()),
        resolver.resolve(&below, untraced()),
    )
    .await;
    let desk_answer = desk_answer.unwrap();
    assert!(matches!(desk_answer.outcome, Outcome::Answer(_)));
    assert_eq!(desk_answer.name, desk);
    let below_answer = below_answer.unwrap();
    assert_eq!(below_answer.name, below);
    assert!(
        matches!(below_answer.outcome, Outcome::NxDomain),
        "{:?}",
        below_answer.outcome
    );
    assert_eq!(links.delivered(ROOT), 1);
    assert_eq!(links.delivered(ACME_1), 2);
}
