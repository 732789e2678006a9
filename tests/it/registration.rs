//! Live registration over real gRPC: signed updates, per-endpoint leases, resolution from
//! another node, refused updates that change nothing, and secondaries that follow their
//! primary through NOTIFY, through polling when NOTIFY is lost, and incrementally after a
//! restart. Lease time is a manual clock; waits are on conditions with deadlines.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aop::clock::{Clock, ManualClock};
use aop::grpc::update::{deregister_fields, register_fields, renew_fields, signed, write_proof};
use aop::grpc::{RegistryClient, pb};
use aop::keys::{Proof, SignedFields, UpdateKey};
use aop::name::Name;
use aop::node::{NodeHandle, ServeOptions};
use aop::record::ServerAddress;
use tonic::Code;

use crate::support::{bind, connect, eventually, zone};

fn acme_zone(url: &str, refresh: u32) -> String {
    format!(
        r#"
[zone]
origin = "acme"
serial = 100
ttl = 1
negative_ttl = 1
refresh = {refresh}
retry = 1
expire = 3
servers = [{{ grpc = "{url}" }}]

[[agent]]
name = "writer"
description = "Writes reports"
endpoints = [{{ url = "http://127.0.0.1:9/mcp" }}]

[[alias]]
name = "scribe"
target = "writer"

[[delegation]]
zone = "eu"
servers = [{{ grpc = "http://127.0.0.1:9" }}]
"#
    )
}

fn key() -> UpdateKey {
    UpdateKey::new("ci-bot", "acme", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==").expect("a key")
}

/// The time a signature carries, in Unix seconds: the primary's clock, by which it judges a
/// signature's age (its manual clock stands still, or jumps, while the system's runs on).
fn unix_secs(clock: &ManualClock) -> u64 {
    clock.unix_ms() / 1000
}

/// `body` signed with `key` at `clock`'s time.
fn signed_at<T>(
    body: T,
    fields: &SignedFields,
    key: &UpdateKey,
    clock: &ManualClock,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    write_proof(
        &key.sign(fields, unix_secs(clock), &Proof::new_nonce()),
        request.metadata_mut(),
    );
    request
}

fn register_body(name: &str, url: &str, lease: u32) -> pb::RegisterRequest {
    pb::RegisterRequest {
        zone: "acme".into(),
        name: name.into(),
        endpoint: Some(pb::Endpoint {
            url: url.into(),
            tool: String::new(),
            priority: 10,
            weight: 1,
            health: None,
        }),
        lease_seconds: lease,
        fields: Some(pb::AgentFields {
            description: Some("Forecasts quarters".into()),
            tags: Some(pb::Labels {
                items: vec!["finance".into()],
            }),
            ..pb::AgentFields::default()
        }),
    }
}

async fn register(
    client: &mut RegistryClient,
    clock: &ManualClock,
    name: &str,
    url: &str,
    lease: u32,
) -> Result<pb::RegisterResponse, tonic::Status> {
    let body = register_body(name, url, lease);
    let fields = register_fields(&body);
    client
        .register(signed_at(body, &fields, &key(), clock))
        .await
        .map(tonic::Response::into_inner)
}

async fn outcome(client: &mut RegistryClient, name: &str, recursive: bool) -> pb::ResolveResponse {
    client
        .resolve(pb::ResolveRequest {
            name: name.into(),
            recursive,
            trace: false,
        })
        .await
        .expect("resolve answers")
        .into_inner()
}

async fn serial(client: &mut RegistryClient, zone: &str) -> u32 {
    client
        .get_zone(pb::GetZoneRequest {
            zone: zone.into(),
            recursive: false,
        })
        .await
        .expect("zone served")
        .into_inner()
        .serial
}

struct Primary {
    node: NodeHandle,
    url: String,
    clock: Arc<ManualClock>,
}

async fn primary(refresh: u32, notify: bool) -> Primary {
    let listener = bind().await;
    let url = listener.url();
    let clock = ManualClock::new();
    let node = listener
        .serve_with(
            ServeOptions::new(vec![zone(&acme_zone(&url, refresh))])
                .node_id("acme-primary")
                .update_key(key())
                .update_key(
                    UpdateKey::new(
                        "other-bot",
                        "globex",
                        "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==",
                    )
                    .expect("a key"),
                )
                .notify(notify)
                .clock(clock.clone()),
        )
        .expect("node serves");
    Primary { node, url, clock }
}

#[tokio::test]
async fn registration_is_seen_from_another_node_and_deregistration_removes_it() {
    let acme = primary(60, true).await;
    // A root that delegates acme, and a resolver node with no zones of its own.
    let root = bind().await;
    let root_url = root.url();
    let root = root
        .serve(
            Some("root".into()),
            vec![zone(&format!(
                "[zone]\norigin = \".\"\nserial = 1\nttl = 60\nservers = [{{ grpc = \"{root_url}\" }}]\n\n[[delegation]]\nzone = \"acme\"\nttl = 60\nservers = [{{ grpc = \"{}\" }}]\n",
                acme.url
            ))],
        )
        .expect("node serves");
    let resolver = bind()
        .await
        .serve_with(
            ServeOptions::new(Vec::new())
                .node_id("resolver")
                .roots(vec![ServerAddress {
                    grpc: root_url.clone(),
                    dns: None,
                }]),
        )
        .expect("node serves");
    let mut at_resolver = connect(&resolver.grpc_url()).await.expect("connect");
    let mut at_primary = connect(&acme.url).await.expect("connect");

    let before = outcome(&mut at_resolver, "forecaster.acme", true).await;
    assert_eq!(before.outcome, pb::Outcome::Nxdomain as i32);
    let serial_before = serial(&mut at_primary, "acme").await;

    // Sent to the resolver node, which passes it on to the zone's primary.
    let response = register(
        &mut at_resolver,
        &acme.clock,
        "forecaster.acme",
        "http://127.0.0.1:9201/mcp",
        60,
    )
    .await
    .expect("registered through another node");
    assert!(response.changed);
    assert_eq!(response.served_by, "acme-primary");
    assert_eq!(response.serial, serial_before + 1);
    assert_eq!(serial(&mut at_primary, "acme").await, serial_before + 1);

    // The negative answer was cached for negative_ttl (1 s): the agent shows within it.
    eventually(
        Duration::from_secs(3),
        "registered agent resolves at the resolver",
        || {
            let mut client = at_resolver.clone();
            async move {
                let answer = outcome(&mut client, "forecaster.acme", true).await;
                answer.outcome == pb::Outcome::Answer as i32
                    && answer.agent.is_some_and(|a| {
                        a.description == "Forecasts quarters"
                            && a.tags == ["finance"]
                            && a.endpoints[0].url == "http://127.0.0.1:9201/mcp"
                    })
            }
        },
    )
    .await;
    // The node that took the update answers at once (its cache was invalidated).
    let here = outcome(&mut at_primary, "forecaster.acme", true).await;
    assert_eq!(here.outcome, pb::Outcome::Answer as i32);

    // Registering the same endpoint again renews it: same serial.
    let again = register(
        &mut at_primary,
        &acme.clock,
        "forecaster.acme",
        "http://127.0.0.1:9201/mcp",
        60,
    )
    .await
    .expect("renewed");
    assert!(!again.changed);
    assert_eq!(again.serial, serial_before + 1);

    let body = pb::DeregisterRequest {
        zone: "acme".into(),
        name: "forecaster.acme".into(),
        url: String::new(),
    };
    let fields = deregister_fields(&body);
    let removed = at_primary
        .deregister(signed_at(body, &fields, &key(), &acme.clock))
        .await
        .expect("deregistered")
        .into_inner();
    assert!(removed.agent_removed);
    assert_eq!(removed.serial, serial_before + 2);
    assert_eq!(
        outcome(&mut at_primary, "forecaster.acme", false)
            .await
            .outcome,
        pb::Outcome::Nxdomain as i32
    );
    eventually(
        Duration::from_secs(3),
        "removed agent is gone at the resolver (TTL 1 s)",
        || {
            let mut client = at_resolver.clone();
            async move {
                outcome(&mut client, "forecaster.acme", true).await.outcome
                    == pb::Outcome::Nxdomain as i32
            }
        },
    )
    .await;
    drop(root);
}

#[tokio::test]
async fn bad_updates_are_refused_and_change_nothing() {
    let acme = primary(60, true).await;
    let mut client = connect(&acme.url).await.expect("connect");
    let serial_before = serial(&mut client, "acme").await;
    let body = register_body("intruder.acme", "http://127.0.0.1:9301/mcp", 60);
    let fields = register_fields(&body);

    let mut refusals = Vec::new();
    // Unsigned.
    refusals.push((
        "unsigned",
        client.register(signed(body.clone(), &fields, None)).await,
        Code::Unauthenticated,
    ));
    // Right name, wrong secret.
    let forged = UpdateKey::new("ci-bot", "acme", "Zm9yZ2VkLWZvcmdlZC1mb3JnZWQtZm9yZ2VkIQ==")
        .expect("a key");
    refusals.push((
        "wrong key",
        client
            .register(signed_at(body.clone(), &fields, &forged, &acme.clock))
            .await,
        Code::Unauthenticated,
    ));
    // A key the node knows, for another zone.
    let other = UpdateKey::new(
        "other-bot",
        "globex",
        "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==",
    )
    .expect("a key");
    refusals.push((
        "another zone's key",
        client
            .register(signed_at(body.clone(), &fields, &other, &acme.clock))
            .await,
        Code::PermissionDenied,
    ));
    // Outside the 300 s window, either way, of the node's clock (not the system's: a second
    // boundary between the two would make 301 s exactly 300 s).
    let now = unix_secs(&acme.clock);
    for (what, time) in [("301 s old", now - 301), ("301 s ahead", now + 301)] {
        let mut request = tonic::Request::new(body.clone());
        write_proof(
            &key().sign(&fields, time, &Proof::new_nonce()),
            request.metadata_mut(),
        );
        refusals.push((what, client.register(request).await, Code::Unauthenticated));
    }
    // A field changed after signing.
    let mut tampered = body.clone();
    tampered.endpoint.as_mut().expect("endpoint").url = "http://evil.example/mcp".into();
    refusals.push((
        "tampered",
        client
            .register(signed_at(tampered, &fields, &key(), &acme.clock))
            .await,
        Code::Unauthenticated,
    ));
    for (what, result, code) in refusals {
        let status = result.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {}", status.message());
        assert!(
            !status.message().contains("c2VjcmV0"),
            "{what} leaks the secret"
        );
    }
    assert_eq!(
        serial(&mut client, "acme").await,
        serial_before,
        "nothing changed"
    );
    assert_eq!(
        outcome(&mut client, "intruder.acme", false).await.outcome,
        pb::Outcome::Nxdomain as i32
    );

    // A replay: the same signed request twice. The first lands, the second is refused.
    let signed_once = key().sign(&fields, unix_secs(&acme.clock), &Proof::new_nonce());
    let mut first = tonic::Request::new(body.clone());
    write_proof(&signed_once, first.metadata_mut());
    client.register(first).await.expect("the original lands");
    let after_first = serial(&mut client, "acme").await;
    let mut replay = tonic::Request::new(body.clone());
    write_proof(&signed_once, replay.metadata_mut());
    let status = client.register(replay).await.expect_err("replay refused");
    assert_eq!(status.code(), Code::Unauthenticated, "{}", status.message());
    assert!(
        status.message().contains("replay") || status.message().contains("seen"),
        "{}",
        status.message()
    );
    assert_eq!(serial(&mut client, "acme").await, after_first);

    // Records the zone file owns, names the zone cannot hold.
    let cases = [
        ("scribe.acme", Code::InvalidArgument, "alias"),
        ("x.eu.acme", Code::InvalidArgument, "delegated"),
        ("writer.acme", Code::FailedPrecondition, "zone file"),
    ];
    for (name, code, word) in cases {
        let url = if name == "writer.acme" {
            "http://127.0.0.1:9/mcp"
        } else {
            "http://127.0.0.1:9302/mcp"
        };
        let status = register(&mut client, &acme.clock, name, url, 60)
            .await
            .expect_err(name);
        assert_eq!(status.code(), code, "{name}: {}", status.message());
        assert!(
            status.message().contains(word),
            "{name}: {}",
            status.message()
        );
    }
    let body = pb::DeregisterRequest {
        zone: "acme".into(),
        name: "writer.acme".into(),
        url: String::new(),
    };
    let fields = deregister_fields(&body);
    let status = client
        .deregister(signed_at(body, &fields, &key(), &acme.clock))
        .await
        .expect_err("file agent");
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "{}",
        status.message()
    );
    // A zone this node does not serve, and that nobody delegates.
    let mut body = register_body("a.globex", "http://127.0.0.1:9303/mcp", 60);
    body.zone = "globex".into();
    let fields = register_fields(&body);
    let status = client
        .register(signed_at(body, &fields, &other, &acme.clock))
        .await
        .expect_err("not served");
    assert!(
        matches!(status.code(), Code::NotFound | Code::FailedPrecondition),
        "{status:?}"
    );
    assert_eq!(serial(&mut client, "acme").await, after_first);
}

#[tokio::test]
async fn leases_expire_per_endpoint_and_the_agent_goes_with_its_last() {
    let acme = primary(60, true).await;
    let mut client = connect(&acme.url).await.expect("connect");
    register(
        &mut client,
        &acme.clock,
        "forecaster.acme",
        "http://127.0.0.1:9401/mcp",
        60,
    )
    .await
    .expect("first endpoint");
    register(
        &mut client,
        &acme.clock,
        "forecaster.acme",
        "http://127.0.0.1:9402/mcp",
        120,
    )
    .await
    .expect("second endpoint");
    let endpoints = |answer: pb::ResolveResponse| -> Vec<String> {
        answer
            .agent
            .map(|a| a.endpoints.into_iter().map(|e| e.url).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        endpoints(outcome(&mut client, "forecaster.acme", false).await).len(),
        2
    );
    // Renewing the first at 40 s carries it to 100 s.
    acme.clock.advance(Duration::from_secs(40));
    let body = pb::RenewRequest {
        zone: "acme".into(),
        name: "forecaster.acme".into(),
        url: "http://127.0.0.1:9401/mcp".into(),
        lease_seconds: 0,
    };
    let fields = renew_fields(&body);
    let serial_before = serial(&mut client, "acme").await;
    let renewed = client
        .renew(signed_at(body, &fields, &key(), &acme.clock))
        .await
        .expect("renewed")
        .into_inner();
    assert_eq!(renewed.lease_seconds, 60);
    assert_eq!(renewed.serial, serial_before, "a renewal changes no serial");
    acme.clock.advance(Duration::from_secs(30)); // 70 s: both alive
    writer_caught_up(&acme.node).await;
    assert_eq!(
        endpoints(outcome(&mut client, "forecaster.acme", false).await).len(),
        2,
        "renewed lease must not expire at its first term"
    );
    acme.clock.advance(Duration::from_secs(31)); // 101 s: the first is past its renewal
    eventually(Duration::from_secs(3), "first endpoint expires", || {
        let mut client = client.clone();
        async move {
            endpoints(outcome(&mut client, "forecaster.acme", false).await)
                == ["http://127.0.0.1:9402/mcp"]
        }
    })
    .await;
    acme.clock.advance(Duration::from_secs(20)); // 121 s: the last one goes, with the agent
    eventually(
        Duration::from_secs(3),
        "agent goes with its last endpoint",
        || {
            let mut client = client.clone();
            async move {
                outcome(&mut client, "forecaster.acme", false).await.outcome
                    == pb::Outcome::Nxdomain as i32
            }
        },
    )
    .await;
    assert_eq!(serial(&mut client, "acme").await, serial_before + 2);
    // File agents never expire.
    assert_eq!(
        outcome(&mut client, "writer.acme", false).await.outcome,
        pb::Outcome::Answer as i32
    );
}

/// Waits until the node's zone writer has expired whatever leases had ended by the clock's
/// time now. Every batch the writer runs ends with an expiry pass at the time it reads then;
/// a reload of no files is answered while its batch is being staged, before that pass, so
/// the answer to a second one (which can only be taken in a later batch) means the first
/// one's batch, expiry pass and all, is applied and published.
async fn writer_caught_up(node: &NodeHandle) {
    for _ in 0..2 {
        node.authority()
            .reload(Vec::new())
            .await
            .expect("the writer answers");
    }
}

async fn secondary(primary_url: &str, data_dir: Option<&Path>) -> NodeHandle {
    let mut options = ServeOptions::new(Vec::new())
        .node_id("acme-secondary")
        .secondary(Name::parse("acme").expect("a name"), primary_url);
    if let Some(dir) = data_dir {
        options = options.store(Arc::new(
            aop::store::Store::open_dir(dir).expect("store opens"),
        ));
    }
    bind().await.serve_with(options).expect("node serves")
}

async fn served_serial(node: &NodeHandle) -> Option<u32> {
    let zone = Name::parse("acme").expect("a name");
    node.catalog().zone(&zone).ok().map(|z| z.serial())
}

#[tokio::test]
async fn a_secondary_follows_through_notify_and_refuses_updates() {
    let acme = primary(3600, true).await;
    let secondary = secondary(&acme.url, None).await;
    let mut at_primary = connect(&acme.url).await.expect("connect");
    let first = serial(&mut at_primary, "acme").await;
    eventually(
        Duration::from_secs(5),
        "secondary takes the zone",
        || async { served_serial(&secondary).await == Some(first) },
    )
    .await;
    let mut at_secondary = connect(&secondary.grpc_url()).await.expect("connect");
    // It answers authoritatively.
    let answer = outcome(&mut at_secondary, "writer.acme", false).await;
    assert_eq!(answer.outcome, pb::Outcome::Answer as i32);
    assert!(answer.authoritative);
    assert_eq!(answer.served_by, "acme-secondary");

    let mut took = Vec::new();
    for i in 0..5 {
        let response = register(
            &mut at_primary,
            &acme.clock,
            &format!("agent{i}.acme"),
            "http://127.0.0.1:9501/mcp",
            60,
        )
        .await
        .expect("registered");
        // refresh is an hour: only NOTIFY can bring the change this fast.
        took.push(
            eventually(
                Duration::from_secs(1),
                "secondary converges through NOTIFY",
                || async { served_serial(&secondary).await == Some(response.serial) },
            )
            .await,
        );
    }
    eprintln!("secondary convergence through NOTIFY: {took:?}");
    let answer = outcome(&mut at_secondary, "agent4.acme", false).await;
    assert_eq!(answer.outcome, pb::Outcome::Answer as i32);

    let status = register(
        &mut at_secondary,
        &acme.clock,
        "x.acme",
        "http://127.0.0.1:9502/mcp",
        60,
    )
    .await
    .expect_err("a secondary takes no updates");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains(&acme.url), "{}", status.message());

    // Past `expire` (3 s) without the primary, the secondary stops answering for the zone.
    acme.node.shutdown().await.expect("primary stops");
    eventually(
        Duration::from_secs(10),
        "secondary withdraws after expire",
        || async { served_serial(&secondary).await.is_none() },
    )
    .await;
    let status = at_secondary
        .get_zone(pb::GetZoneRequest {
            zone: "acme".into(),
            recursive: false,
        })
        .await
        .expect_err("no longer served");
    // UNAVAILABLE, not NOT_FOUND: a node forwarding for a client tries the zone's next server.
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("not loaded"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn without_notify_a_secondary_converges_within_refresh() {
    let acme = primary(1, false).await;
    let secondary = secondary(&acme.url, None).await;
    let mut at_primary = connect(&acme.url).await.expect("connect");
    let first = serial(&mut at_primary, "acme").await;
    eventually(
        Duration::from_secs(5),
        "secondary takes the zone",
        || async { served_serial(&secondary).await == Some(first) },
    )
    .await;
    let response = register(
        &mut at_primary,
        &acme.clock,
        "late.acme",
        "http://127.0.0.1:9601/mcp",
        60,
    )
    .await
    .expect("registered");
    // refresh = 1 s; allow the transfer itself on a busy machine.
    let took = eventually(
        Duration::from_millis(2500),
        "secondary polls within refresh",
        || async { served_serial(&secondary).await == Some(response.serial) },
    )
    .await;
    eprintln!("secondary convergence by polling (refresh 1 s, NOTIFY off): {took:?}");
}

#[tokio::test]
async fn a_restarted_secondary_catches_up_incrementally() {
    let acme = primary(3600, true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut at_primary = connect(&acme.url).await.expect("connect");
    let first = serial(&mut at_primary, "acme").await;
    let node = secondary(&acme.url, Some(dir.path())).await;
    eventually(
        Duration::from_secs(5),
        "secondary takes the zone",
        || async { served_serial(&node).await == Some(first) },
    )
    .await;
    let full_before = acme.node.authority().transfers().0;
    node.shutdown().await.expect("secondary stops");
    let mut last = 0;
    for i in 0..3 {
        last = register(
            &mut at_primary,
            &acme.clock,
            &format!("while-down{i}.acme"),
            "http://127.0.0.1:9701/mcp",
            60,
        )
        .await
        .expect("registered")
        .serial;
    }
    let node = secondary(&acme.url, Some(dir.path())).await;
    // It serves what it had at once, then catches up.
    assert_eq!(served_serial(&node).await, Some(first));
    eventually(
        Duration::from_secs(5),
        "restarted secondary catches up",
        || async { served_serial(&node).await == Some(last) },
    )
    .await;
    let (full_after, incremental) = acme.node.authority().transfers();
    assert_eq!(
        full_after, full_before,
        "the catch-up was not a full transfer"
    );
    assert!(incremental >= 1);
    let mut at_secondary = connect(&node.grpc_url()).await.expect("connect");
    assert_eq!(
        outcome(&mut at_secondary, "while-down2.acme", false)
            .await
            .outcome,
        pb::Outcome::Answer as i32
    );
    let _ = acme.clock.now();
}
