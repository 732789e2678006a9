//! The authority without sockets: a primary and a secondary connected by the in-memory
//! `Peers` twin, on paused tokio time and a manual clock moved together, so refresh, retry,
//! expire and lease timers run in virtual time and every run is the same.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::live::AgentUpdate;
use super::*;
use crate::clock::ManualClock;
use crate::record::Endpoint;
use crate::twins::{Link, Links, MemoryPeers};

const PRIMARY: &str = "http://10.0.1.1:7102";
const SECONDARY: &str = "http://10.0.1.2:7102";

fn zone_file(serial: u32) -> ZoneSnapshot {
    let text = format!(
        r#"
        [zone]
        origin = "finance.acme"
        serial = {serial}
        refresh = 60
        retry = 10
        expire = 300
        servers = [{{ grpc = "{PRIMARY}" }}, {{ grpc = "{SECONDARY}" }}]
        [[agent]]
        name = "analyst"
        description = "Numbers."
        endpoints = [{{ url = "http://127.0.0.1:9/mcp" }}]
        "#
    );
    crate::zone::file::parse(Path::new("finance.toml"), &text).unwrap_or_else(|e| panic!("{e}"))
}

fn origin() -> Name {
    Name::parse("finance.acme").unwrap()
}

struct Node {
    authority: Authority,
    catalog: Arc<Catalog>,
    shutdown: CancellationToken,
}

impl Node {
    fn serial(&self) -> Option<u32> {
        self.catalog.zone(&origin()).ok().map(|zone| zone.serial())
    }

    fn has_agent(&self, name: &str) -> bool {
        self.catalog
            .zone(&origin())
            .is_ok_and(|zone| zone.agent(name).is_some())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Pair {
    primary: Node,
    secondary: Node,
    links: Arc<Links>,
    clock: Arc<ManualClock>,
}

fn start(url: &str, config: AuthorityConfig, peers: &MemoryPeers) -> Result<Node, AuthorityError> {
    let prepared = PreparedAuthority::prepare(config)?;
    let catalog = Arc::new(Catalog::new(url, prepared.snapshots()?));
    let shutdown = CancellationToken::new();
    let authority = prepared.start(
        Arc::clone(&catalog),
        Arc::new(()),
        url.to_string(),
        shutdown.clone(),
    )?;
    peers.add(url, authority.clone());
    Ok(Node {
        authority,
        catalog,
        shutdown,
    })
}

/// A primary of finance.acme and its secondary, the secondary's first transfer done.
async fn pair() -> Pair {
    let links = Links::new();
    let peers = MemoryPeers::new(Arc::clone(&links));
    let clock = ManualClock::new();
    let config = |primaries, secondaries| AuthorityConfig {
        store: Arc::new(Store::in_memory().unwrap()),
        primaries,
        secondaries,
        keys: Vec::new(),
        notify: true,
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        peers: Arc::clone(&peers) as Arc<dyn Peers>,
    };
    let primary = start(PRIMARY, config(vec![zone_file(1)], Vec::new()), &peers).unwrap();
    let secondary = start(
        SECONDARY,
        config(Vec::new(), vec![(origin(), PRIMARY.to_string())]),
        &peers,
    )
    .unwrap();
    let pair = Pair {
        primary,
        secondary,
        links,
        clock,
    };
    pair.eventually("the first transfer", |p| p.secondary.serial() == Some(1))
        .await;
    pair
}

impl Pair {
    /// Moves both clocks (the manual one the authority reads, tokio's the timers use).
    async fn pass(&self, time: Duration) {
        self.clock.advance(time);
        tokio::time::sleep(time).await;
    }

    /// Waits for `condition`, in steps of 10 ms of virtual time, at most 10 minutes of it.
    async fn eventually(&self, what: &str, condition: impl Fn(&Pair) -> bool) {
        for _ in 0..60_000 {
            if condition(self) {
                return;
            }
            self.pass(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 10 minutes");
    }

    async fn register(&self, name: &str, lease_secs: u32) -> u32 {
        let registration = Registration {
            name: Name::parse(&format!("{name}.finance.acme")).unwrap(),
            endpoint: Endpoint::new("http://127.0.0.1:9201/mcp", name, 10, 1).unwrap(),
            lease_secs,
            fields: AgentUpdate::default(),
        };
        let (done, serial) = self
            .primary
            .authority
            .register(origin(), registration)
            .await
            .expect("registered");
        assert!(done.changed);
        serial
    }
}

#[tokio::test(start_paused = true)]
async fn a_lost_notify_costs_only_the_refresh_interval() {
    let pair = pair().await;
    pair.links.lose_notifies(SECONDARY, true);
    let (_, incremental_before) = pair.primary.authority.transfers();
    let serial = pair.register("planner", 3600).await;
    assert_eq!(pair.primary.serial(), Some(serial));
    // The NOTIFY was lost: the secondary does not know before its refresh (60 s).
    pair.pass(Duration::from_secs(50)).await;
    assert_eq!(pair.secondary.serial(), Some(1));
    assert!(!pair.secondary.has_agent("planner.finance.acme"));
    // Its refresh asks for the changes since its serial: an incremental transfer.
    pair.eventually("the refresh", |p| p.secondary.serial() == Some(serial))
        .await;
    assert!(pair.secondary.has_agent("planner.finance.acme"));
    let (_, incremental) = pair.primary.authority.transfers();
    assert_eq!(incremental, incremental_before + 1);

    // With NOTIFY delivered again, a change arrives without waiting for the refresh.
    pair.links.lose_notifies(SECONDARY, false);
    let serial = pair.register("scheduler", 3600).await;
    for _ in 0..10 {
        pair.pass(Duration::from_millis(10)).await;
    }
    assert_eq!(pair.secondary.serial(), Some(serial));
}

#[tokio::test(start_paused = true)]
async fn a_cut_link_delays_the_secondary_until_it_heals_and_expire_withdraws_it() {
    let pair = pair().await;
    pair.links.set(PRIMARY, Link::Down);
    let serial = pair.register("planner", 3600).await;
    // Retries every 10 s fail while the link is down; the secondary keeps answering.
    pair.pass(Duration::from_secs(45)).await;
    assert_eq!(pair.secondary.serial(), Some(1));
    assert!(pair.secondary.authority.status(&origin()).unwrap().served);
    // Healed: the next retry (within 10 s) brings the change.
    pair.links.set(PRIMARY, Link::Up);
    pair.eventually("the retry after the heal", |p| {
        p.secondary.serial() == Some(serial)
    })
    .await;

    // Cut for longer than expire (300 s): the secondary stops answering for the zone...
    pair.links.set(PRIMARY, Link::Down);
    pair.eventually("the withdrawal at expire", |p| {
        p.secondary.serial().is_none()
    })
    .await;
    assert!(!pair.secondary.authority.status(&origin()).unwrap().served);
    // ...and answers again once its primary is back.
    pair.links.set(PRIMARY, Link::Up);
    pair.eventually("serving again", |p| p.secondary.serial() == Some(serial))
        .await;
}

#[tokio::test(start_paused = true)]
async fn leases_expire_on_the_primary_and_the_expiry_replicates() {
    let pair = pair().await;
    let registered = pair.register("planner", 30).await;
    pair.eventually("replicated", |p| p.secondary.serial() == Some(registered))
        .await;
    // The writer wakes when the clock reaches the lease's end, not on a timer of its own.
    pair.pass(Duration::from_secs(29)).await;
    assert!(pair.primary.has_agent("planner.finance.acme"));
    pair.eventually("the expiry", |p| {
        !p.primary.has_agent("planner.finance.acme")
            && !p.secondary.has_agent("planner.finance.acme")
    })
    .await;
    assert_eq!(pair.primary.serial(), Some(registered + 1));
    assert_eq!(pair.secondary.serial(), Some(registered + 1));
    // The file's agent is untouched.
    assert!(pair.secondary.has_agent("analyst.finance.acme"));
}

#[tokio::test(start_paused = true)]
async fn a_secondary_refuses_updates_naming_its_primary_and_a_primary_refuses_notify() {
    let pair = pair().await;
    let registration = Registration {
        name: Name::parse("planner.finance.acme").unwrap(),
        endpoint: Endpoint::new("http://127.0.0.1:9201/mcp", "planner", 10, 1).unwrap(),
        lease_secs: 60,
        fields: AgentUpdate::default(),
    };
    let error = pair
        .secondary
        .authority
        .register(origin(), registration)
        .await
        .unwrap_err();
    assert!(matches!(error, UpdateError::Secondary { .. }), "{error}");
    assert!(error.to_string().contains(PRIMARY), "{error}");
    assert!(pair.primary.authority.notified(&origin()).is_err());
}

#[tokio::test(start_paused = true)]
async fn a_restart_on_the_same_store_keeps_registrations_and_leases() {
    let links = Links::new();
    let peers = MemoryPeers::new(Arc::clone(&links));
    let clock = ManualClock::new();
    let store = Arc::new(Store::in_memory().unwrap());
    let config = || AuthorityConfig {
        store: Arc::clone(&store),
        primaries: vec![zone_file(1)],
        secondaries: Vec::new(),
        keys: Vec::new(),
        notify: false,
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        peers: Arc::clone(&peers) as Arc<dyn Peers>,
    };
    let first = start(PRIMARY, config(), &peers).unwrap();
    let registration = Registration {
        name: Name::parse("planner.finance.acme").unwrap(),
        endpoint: Endpoint::new("http://127.0.0.1:9201/mcp", "planner", 10, 1).unwrap(),
        lease_secs: 600,
        fields: AgentUpdate::default(),
    };
    let (_, serial) = first
        .authority
        .register(origin(), registration)
        .await
        .unwrap();
    drop(first);
    let second = start(PRIMARY, config(), &peers).unwrap();
    assert_eq!(second.serial(), Some(serial));
    assert!(second.has_agent("planner.finance.acme"));
    // A newer zone file replaces the file's records; the registration stays.
    drop(second);
    let newer = AuthorityConfig {
        primaries: vec![zone_file(50)],
        ..config()
    };
    let third = start(PRIMARY, newer, &peers).unwrap();
    assert_eq!(third.serial(), Some(50));
    assert!(third.has_agent("planner.finance.acme"));
    assert!(third.has_agent("analyst.finance.acme"));
}

#[tokio::test(start_paused = true)]
async fn a_restarted_primary_gives_every_lease_a_full_length_from_its_start() {
    let links = Links::new();
    let peers = MemoryPeers::new(Arc::clone(&links));
    let clock = ManualClock::new();
    let store = Arc::new(Store::in_memory().unwrap());
    let config = || AuthorityConfig {
        store: Arc::clone(&store),
        primaries: vec![zone_file(1)],
        secondaries: Vec::new(),
        keys: Vec::new(),
        notify: false,
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        peers: Arc::clone(&peers) as Arc<dyn Peers>,
    };
    let first = start(PRIMARY, config(), &peers).unwrap();
    let registration = Registration {
        name: Name::parse("planner.finance.acme").unwrap(),
        endpoint: Endpoint::new("http://127.0.0.1:9201/mcp", "planner", 10, 1).unwrap(),
        lease_secs: 30,
        fields: AgentUpdate::default(),
    };
    first
        .authority
        .register(origin(), registration)
        .await
        .unwrap();
    drop(first);
    // Down for three lease lengths: every lease ran out meanwhile.
    clock.advance(Duration::from_secs(90));
    let second = start(PRIMARY, config(), &peers).unwrap();
    assert!(
        second.has_agent("planner.finance.acme"),
        "not expired at the restart"
    );
    let lease = second
        .authority
        .store()
        .load()
        .unwrap()
        .remove(0)
        .leases
        .remove(0);
    assert_eq!(lease.expires_unix_ms, clock.unix_ms() + 30_000);
    // A full lease length to be renewed in; without a renewal it then ends as usual.
    clock.advance(Duration::from_secs(29));
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(second.has_agent("planner.finance.acme"));
    for _ in 0..300 {
        if !second.has_agent("planner.finance.acme") {
            break;
        }
        clock.advance(Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !second.has_agent("planner.finance.acme"),
        "expired after the grace"
    );
}

#[tokio::test(start_paused = true)]
async fn a_secondary_does_not_follow_a_primary_that_went_back_in_time() {
    let pair = pair().await;
    let serial = pair.register("planner", 3600).await;
    pair.eventually("replicated", |p| p.secondary.serial() == Some(serial))
        .await;
    // The primary loses its store and starts again from its zone file, at serial 1.
    let peers = MemoryPeers::new(Arc::clone(&pair.links));
    let reborn = start(
        PRIMARY,
        AuthorityConfig {
            store: Arc::new(Store::in_memory().unwrap()),
            primaries: vec![zone_file(1)],
            secondaries: Vec::new(),
            keys: Vec::new(),
            notify: true,
            clock: Arc::clone(&pair.clock) as Arc<dyn Clock>,
            peers: Arc::clone(&peers) as Arc<dyn Peers>,
        },
        &peers,
    )
    .unwrap();
    assert_eq!(reborn.serial(), Some(1));
    // What the secondary's next transfer from its primary's URL brings now:
    let mut chunks = reborn
        .authority
        .transfer(&TransferRequest {
            zone: origin(),
            since_serial: None,
            notify_url: String::new(),
        })
        .unwrap();
    let mut received = Vec::new();
    while let Some(chunk) = chunks.recv().await {
        received.push(chunk.unwrap());
    }
    let data = TransferData::from_chunks(received, None).unwrap();
    let refused = pair
        .secondary
        .authority
        .apply_transfer(origin(), data)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, UpdateError::PrimaryBehind { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("older than ours"), "{refused}");
    assert_eq!(pair.secondary.serial(), Some(serial), "kept its copy");
    assert!(pair.secondary.has_agent("planner.finance.acme"));
}

#[tokio::test(start_paused = true)]
async fn a_replayed_update_is_refused_after_a_restart_too() {
    use crate::keys::{AuthError, Proof, SignedFields, UpdateKey};
    let links = Links::new();
    let peers = MemoryPeers::new(Arc::clone(&links));
    let clock = ManualClock::new();
    let store = Arc::new(Store::in_memory().unwrap());
    let key = UpdateKey::generate("ci-bot", "finance.acme").unwrap();
    let config = || AuthorityConfig {
        store: Arc::clone(&store),
        primaries: vec![zone_file(1)],
        secondaries: Vec::new(),
        keys: vec![key.clone()],
        notify: false,
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        peers: Arc::clone(&peers) as Arc<dyn Peers>,
    };
    let mut fields = SignedFields::new("register");
    fields.put("zone", "finance.acme");
    let proof = key.sign(&fields, clock.unix_ms() / 1000, &Proof::new_nonce());
    let first = start(PRIMARY, config(), &peers).unwrap();
    first
        .authority
        .keys()
        .verify(&origin(), &fields, Some(&proof))
        .unwrap();
    // The update the proof came with: its commit carries the nonce to disk.
    let registration = Registration {
        name: Name::parse("planner.finance.acme").unwrap(),
        endpoint: Endpoint::new("http://127.0.0.1:9201/mcp", "planner", 10, 1).unwrap(),
        lease_secs: 600,
        fields: AgentUpdate::default(),
    };
    first
        .authority
        .register(origin(), registration)
        .await
        .unwrap();
    drop(first);
    let second = start(PRIMARY, config(), &peers).unwrap();
    let error = second
        .authority
        .keys()
        .verify(&origin(), &fields, Some(&proof))
        .unwrap_err();
    assert!(matches!(error, AuthError::Replayed { .. }), "{error}");
}

#[tokio::test(start_paused = true)]
async fn each_published_snapshot_names_what_changed_since_the_one_before() {
    let pair = pair().await;
    pair.eventually("the first transfer", |p| p.secondary.serial() == Some(1))
        .await;
    let first = pair.primary.catalog.zone(&origin()).unwrap();
    assert_eq!(first.serial(), 1);
    let serial = pair.register("planner", 3600).await;
    pair.eventually("replicated", |p| p.secondary.serial() == Some(serial))
        .await;
    for node in [&pair.primary, &pair.secondary] {
        let zone = node.catalog.zone(&origin()).unwrap();
        let lineage = zone.lineage().expect("a change has a lineage");
        assert_eq!(lineage.parent_serial, 1);
        let changed: Vec<&str> = lineage.changed.iter().map(Name::as_str).collect();
        assert_eq!(changed, ["planner.finance.acme"]);
    }
    // A deregistration too.
    let deregistered = pair
        .primary
        .authority
        .deregister(origin(), Name::parse("planner.finance.acme").unwrap(), None)
        .await;
    assert!(deregistered.is_ok(), "{deregistered:?}");
    let zone = pair.primary.catalog.zone(&origin()).unwrap();
    let lineage = zone.lineage().expect("a lineage");
    assert_eq!(lineage.parent_serial, serial);
    assert_eq!(lineage.changed.len(), 1);
}

/// An incremental transfer is checked against the snapshot the secondary serves, derived
/// through the transfer's changes: one that breaks a structural rule is refused and leaves
/// the zone as it was; the next good one is served.
#[tokio::test(start_paused = true)]
async fn an_incremental_transfer_that_breaks_the_zone_is_refused_and_the_zone_kept() {
    use crate::record::{
        Delegation, LiveRecord, RecordChange, RecordKind, ServerAddress, ZoneChange,
    };
    let pair = pair().await;
    let serial = pair.register("planner", 3600).await;
    pair.eventually("replicated", |p| p.secondary.serial() == Some(serial))
        .await;
    let step = |changes: Vec<RecordChange>| {
        let mut header = pair
            .secondary
            .catalog
            .zone(&origin())
            .unwrap()
            .header()
            .clone();
        header.serial = serial + 1;
        TransferData::Changes(vec![ZoneChange {
            from_serial: serial,
            serial: serial + 1,
            changes,
            header,
        }])
    };
    // A delegation at the name of an agent: the agent would be occluded.
    let occluding = step(vec![RecordChange::Put(LiveRecord::Delegation(Arc::new(
        Delegation {
            zone: Name::parse("analyst.finance.acme").unwrap(),
            servers: vec![ServerAddress {
                grpc: "http://10.0.9.9:7102".into(),
                dns: None,
            }],
            ttl: None,
        },
    )))]);
    let refused = pair
        .secondary
        .authority
        .apply_transfer(origin(), occluding)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, UpdateError::Transfer { .. }) && refused.to_string().contains("occluded"),
        "{refused}"
    );
    assert_eq!(pair.secondary.serial(), Some(serial), "kept its copy");
    assert!(pair.secondary.has_agent("analyst.finance.acme"));
    // The same serial step, without the fault, is taken and served.
    let good = step(vec![RecordChange::Delete {
        kind: RecordKind::Agent,
        name: Name::parse("planner.finance.acme").unwrap(),
    }]);
    pair.secondary
        .authority
        .apply_transfer(origin(), good)
        .await
        .unwrap();
    assert_eq!(pair.secondary.serial(), Some(serial + 1));
    assert!(!pair.secondary.has_agent("planner.finance.acme"));
    assert!(pair.secondary.has_agent("analyst.finance.acme"));
    let zone = pair.secondary.catalog.zone(&origin()).unwrap();
    let lineage = zone.lineage().expect("a change has a lineage");
    assert_eq!(lineage.parent_serial, serial);
}

#[tokio::test(start_paused = true)]
async fn without_a_data_dir_the_file_records_are_held_once_and_transfers_carry_them_all() {
    let pair = pair().await;
    // The secondary's first, full transfer came from the records the store holds in memory.
    assert!(pair.secondary.has_agent("analyst.finance.acme"));
    let serial = pair.register("planner", 3600).await;

    // The store's record of the file's agent is the very allocation the zone serves.
    let store = Arc::clone(&pair.primary.authority.shared.store);
    let zones = store.load().unwrap();
    let stored = zones[0]
        .records
        .iter()
        .find_map(|record| match record {
            crate::record::LiveRecord::Agent(agent)
                if agent.agent.name.as_str() == "analyst.finance.acme" =>
            {
                Some(Arc::clone(&agent.agent))
            }
            _ => None,
        })
        .expect("the file's agent in the store");
    let zone = pair.primary.catalog.zone(&origin()).unwrap();
    let served = zone.agent("analyst.finance.acme").unwrap();
    assert!(Arc::ptr_eq(&stored, served));

    // A full transfer now: the file's agent and the registered one, at the new serial.
    let mut names = Vec::new();
    let mut at = None;
    store
        .stream_transfer(origin().as_str(), None, &mut |item| {
            match item {
                crate::store::TransferItem::Start { header, full } => {
                    assert!(full);
                    at = header.map(|h| h.serial);
                }
                crate::store::TransferItem::Record(record) => {
                    if let Some(crate::wire::pb::zone_record::Record::Agent(agent)) = record.record
                    {
                        names.push(agent.name);
                    }
                }
                crate::store::TransferItem::Change(_) => panic!("a full transfer has no changes"),
            }
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(at, Some(serial));
    assert_eq!(names, ["analyst.finance.acme", "planner.finance.acme"]);
    pair.eventually("the secondary has the registration", |p| {
        p.secondary.has_agent("planner.finance.acme")
    })
    .await;
}
