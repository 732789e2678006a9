//! Crash safety of the durable store, with `aop node` in a child process: a node killed with
//! SIGKILL at random moments under a stream of registrations keeps every registration it
//! acknowledged, and a damaged store file is refused at start, naming the file, rather than
//! served with something missing (garbage confined to pages that copy-on-write has freed is
//! harmless, and then everything is served unchanged).
//!
//! The kill moments come from a seeded generator; the seed is printed and
//! `AOP_CRASH_SEED=<seed>` repeats a run's schedule (the interleaving with the node's own
//! threads is the operating system's and cannot be replayed).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aop::grpc::update::{register_fields, signed};
use aop::grpc::{RegistryClient, pb};
use aop::keys::UpdateKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::process::{NodeProcess, Setup, ZONE, setup};
use crate::support::{connect, free_addr};

/// The agent the zone file declares; it is there after every start.
const FILE_AGENT: &str = "fixed.crash.test";
const DEADLINE: Duration = Duration::from_secs(30);
const KILLS: usize = 20;
/// Concurrent registration streams per round.
const STREAMS: usize = 8;

async fn client(url: &str) -> RegistryClient {
    connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

fn register_request(name: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        zone: ZONE.into(),
        name: name.into(),
        endpoint: Some(pb::Endpoint {
            url: "http://127.0.0.1:9/mcp".into(),
            tool: String::new(),
            priority: 10,
            weight: 1,
            health: None,
        }),
        lease_seconds: 3600,
        fields: Some(pb::AgentFields {
            description: Some(format!("Registered as {name} by the crash test.")),
            ..Default::default()
        }),
    }
}

async fn register(
    client: &mut RegistryClient,
    key: &UpdateKey,
    name: &str,
) -> Result<pb::RegisterResponse, tonic::Status> {
    let body = register_request(name);
    let fields = register_fields(&body);
    let call = client.register(signed(body, &fields, Some(key)));
    match tokio::time::timeout(DEADLINE, call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer to Register {name} within {DEADLINE:?}"
        ))),
    }
}

/// Every agent name of the zone.
async fn listed_names(client: &mut RegistryClient) -> BTreeSet<String> {
    let agents = listed_agents(client).await;
    agents.into_iter().map(|(name, _)| name).collect()
}

async fn assert_resolves(client: &mut RegistryClient, name: &str) {
    let answer = client
        .resolve(pb::ResolveRequest {
            name: name.into(),
            recursive: false,
            trace: false,
        })
        .await
        .unwrap_or_else(|e| panic!("Resolve {name}: {e}"))
        .into_inner();
    assert_eq!(
        answer.outcome,
        pb::Outcome::Answer as i32,
        "{name} resolves to an answer: {answer:?}"
    );
}

/// What one registration stream did before the kill.
struct StreamResult {
    acknowledged: Vec<String>,
    /// Sent but not acknowledged: in flight at the kill (may or may not be on disk).
    unacknowledged: Vec<String>,
}

/// Registers `agent-ROUND-STREAM-N` for N = 0, 1, ... until a call fails. A failure before
/// the kill is a bug and fails the test.
async fn registration_stream(
    url: String,
    key: UpdateKey,
    round: usize,
    stream: usize,
    killed: Arc<AtomicBool>,
) -> StreamResult {
    let mut result = StreamResult {
        acknowledged: Vec::new(),
        unacknowledged: Vec::new(),
    };
    let Ok(mut client) = connect(&url).await else {
        assert!(
            killed.load(Ordering::SeqCst),
            "cannot connect to {url} before the kill"
        );
        return result;
    };
    for n in 0.. {
        let name = format!("agent-{round}-{stream}-{n}.{ZONE}");
        match register(&mut client, &key, &name).await {
            Ok(response) => {
                assert_eq!(
                    response.agent.as_ref().map(|a| a.name.as_str()),
                    Some(name.as_str())
                );
                result.acknowledged.push(name);
            }
            Err(status) => {
                assert!(
                    killed.load(Ordering::SeqCst),
                    "Register {name} failed before the kill: {status}"
                );
                result.unacknowledged.push(name);
                return result;
            }
        }
    }
    unreachable!("the stream ends at the kill")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_registrations_survive_sigkill() {
    let seed = std::env::var("AOP_CRASH_SEED")
        .ok()
        .map(|text| text.parse::<u64>().expect("AOP_CRASH_SEED is a u64"))
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("seed {seed} (rerun with AOP_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let setup = setup().await;
    let data_dir = setup.dir.path().join("data");
    let started = Instant::now();

    // Must be present after every restart: every acknowledged registration, and anything a
    // restarted node has served once (it was recovered from disk, so it stays).
    let mut durable: BTreeSet<String> = BTreeSet::new();
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    // Sent and never acknowledged (in flight at a kill).
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    // The last acknowledgement of each stream in the previous round: the writes nearest a kill.
    let mut last_acknowledged: Vec<String> = Vec::new();
    let mut checks = 0usize;
    let mut restarts_checked = 0usize;

    for round in 0..=KILLS {
        let mut node = NodeProcess::spawn(&setup, &data_dir, "127.0.0.1:0".parse().unwrap());
        let url = node.ready().await;
        let mut checker = client(&url).await;

        if round > 0 {
            let listed = listed_names(&mut checker).await;
            let missing: Vec<&String> = durable.difference(&listed).collect();
            assert!(
                missing.is_empty(),
                "seed {seed}, restart {round}: {} of {} acknowledged registrations are missing, first {:?}; node stderr:\n{}",
                missing.len(),
                durable.len(),
                &missing[..missing.len().min(10)],
                node.stderr()
            );
            let unexpected: Vec<&String> = listed
                .iter()
                .filter(|name| {
                    name.as_str() != FILE_AGENT
                        && !durable.contains(*name)
                        && !in_flight.contains(*name)
                })
                .collect();
            assert!(
                unexpected.is_empty(),
                "seed {seed}, restart {round}: agents nobody registered: {unexpected:?}"
            );
            assert!(
                listed.contains(FILE_AGENT),
                "the zone file's agent is served"
            );
            for name in &last_acknowledged {
                assert_resolves(&mut checker, name).await;
            }
            checks += durable.len();
            restarts_checked += 1;
            durable.extend(listed.into_iter().filter(|name| name != FILE_AGENT));
        }
        if round == KILLS {
            node.signal(libc::SIGTERM);
            let (status, stderr) = node.exit().await;
            assert!(
                status.success(),
                "a clean stop after the last check: {status}\n{stderr}"
            );
            break;
        }

        let killed = Arc::new(AtomicBool::new(false));
        let streams: Vec<_> = (0..STREAMS)
            .map(|stream| {
                tokio::spawn(registration_stream(
                    url.clone(),
                    setup.key.clone(),
                    round,
                    stream,
                    Arc::clone(&killed),
                ))
            })
            .collect();
        // The random moment: this sleep is the kill timer, not a wait for a condition.
        let delay = Duration::from_millis(rng.random_range(20..=400));
        tokio::time::sleep(delay).await;
        killed.store(true, Ordering::SeqCst);
        node.signal(libc::SIGKILL);
        let (status, _) = node.exit().await;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the node died of the SIGKILL, not before: {status}"
        );

        last_acknowledged.clear();
        let mut round_acknowledged = 0;
        for stream in streams {
            let result = tokio::time::timeout(DEADLINE, stream)
                .await
                .expect("a registration stream ends after the kill")
                .expect("a registration stream does not panic");
            round_acknowledged += result.acknowledged.len();
            last_acknowledged.extend(result.acknowledged.last().cloned());
            durable.extend(result.acknowledged.iter().cloned());
            acknowledged.extend(result.acknowledged);
            in_flight.extend(result.unacknowledged);
        }
        eprintln!(
            "round {round}: killed after {delay:?}, {round_acknowledged} acknowledged ({} in all)",
            acknowledged.len()
        );
    }

    let survived_unacknowledged = in_flight.intersection(&durable).count();
    let acknowledged = acknowledged.len();
    eprintln!(
        "{acknowledged} registrations acknowledged over {KILLS} kills; all {acknowledged} found after each restart"
    );
    eprintln!(
        "{checks} presence checks over {restarts_checked} restarts; {survived_unacknowledged} of {} registrations in flight at a kill were kept; {:.1} s",
        in_flight.len(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(restarts_checked, KILLS);
    assert!(
        acknowledged > 100,
        "seed {seed}: only {acknowledged} registrations acknowledged over {KILLS} kills"
    );
}

/// Writes 4 KiB of 0xA5 over the page at `offset`.
fn overwrite_page(file: &Path, offset: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open the store file");
    handle.seek(SeekFrom::Start(offset)).unwrap();
    handle.write_all(&[0xA5; PAGE]).unwrap();
    handle.sync_all().unwrap();
}

const PAGE: usize = 4096;

/// What a node did with a damaged copy of the store.
enum Verdict {
    /// Exited non-zero before serving, naming the file.
    Refused,
    /// Served, with every registration as it was (the damage hit free space).
    ServedIntact,
}

/// Starts a node on `store` (a damaged copy in a directory of its own) and checks that it
/// refuses the file, naming it, or (only where `may_serve`) serves every registration of
/// `expected` unchanged: a damaged store is never served with something silently missing.
async fn start_on_damaged(
    setup: &Setup,
    store: &Path,
    expected: &BTreeSet<(String, String)>,
    may_serve: bool,
    what: &str,
) -> Verdict {
    // A port known before the node starts, to check later that nothing listens on it.
    let grpc = free_addr();
    let mut node = NodeProcess::spawn(setup, store.parent().unwrap(), grpc);
    match node.started().await {
        Err((status, stderr)) => {
            assert!(
                !status.success(),
                "{what}: a refused store is a failure exit, not {status}; stderr:\n{stderr}"
            );
            assert!(
                stderr.contains(&store.display().to_string()),
                "{what}: the message names {}; stderr:\n{stderr}",
                store.display()
            );
            assert!(
                stderr.contains("cannot be opened") && stderr.contains("damaged"),
                "{what}: the message says the store cannot be opened and is damaged; stderr:\n{stderr}"
            );
            assert!(
                std::net::TcpStream::connect_timeout(&grpc, Duration::from_secs(2)).is_err(),
                "{what}: nothing serves on {grpc}"
            );
            Verdict::Refused
        }
        Ok(url) => {
            let mut registry = client(&url).await;
            let served = listed_agents(&mut registry).await;
            drop(registry);
            node.signal(libc::SIGTERM);
            let (status, stderr) = node.exit().await;
            assert!(
                may_serve,
                "{what}: the node served a damaged store instead of refusing it ({} agents, exit {status}); stderr:\n{stderr}",
                served.len()
            );
            assert_eq!(
                &served, expected,
                "{what}: a store the node opens serves every registration unchanged; stderr:\n{stderr}"
            );
            Verdict::ServedIntact
        }
    }
}

/// Every agent of the zone as (name, description), through paged ListAgents.
async fn listed_agents(client: &mut RegistryClient) -> BTreeSet<(String, String)> {
    let mut agents = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_agents(pb::ListAgentsRequest {
                zone: ZONE.into(),
                page_size: 1000,
                cursor,
                recursive: false,
            })
            .await
            .expect("ListAgents")
            .into_inner();
        agents.extend(page.agents.into_iter().map(|a| (a.name, a.description)));
        if page.next_cursor.is_empty() {
            return agents;
        }
        cursor = page.next_cursor;
    }
}

/// A fresh copy of `store` in a directory of its own under `dir`.
fn copy_store(store: &Path, dir: &Path, case: &str) -> PathBuf {
    let case_dir = dir.join(case);
    std::fs::create_dir(&case_dir).unwrap();
    let copy = case_dir.join("aop.redb");
    std::fs::copy(store, &copy).expect("copy the store");
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_refused_naming_the_file() {
    let setup = setup().await;
    let data_dir = setup.dir.path().join("data");
    let mut node = NodeProcess::spawn(&setup, &data_dir, "127.0.0.1:0".parse().unwrap());
    let url = node.ready().await;
    let mut registry = client(&url).await;
    for n in 0..20 {
        register(&mut registry, &setup.key, &format!("agent-{n}.{ZONE}"))
            .await
            .expect("register");
    }
    let expected = listed_agents(&mut registry).await;
    assert_eq!(expected.len(), 21, "20 registered and the file's agent");
    drop(registry);
    node.signal(libc::SIGTERM);
    let (status, stderr) = node.exit().await;
    assert!(status.success(), "a clean stop: {status}\n{stderr}");
    let store = data_dir.join("aop.redb");
    let len = std::fs::metadata(&store).unwrap().len();
    let bytes = std::fs::read(&store).unwrap();
    let cases = setup.dir.path();

    // Cut to half its length.
    let truncated = copy_store(&store, cases, "truncated");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    start_on_damaged(&setup, &truncated, &expected, false, "truncated to half").await;

    // Garbage over every page holding the last registration (the live copy and any older
    // copy-on-write ones): a page the committed state reaches is damaged.
    let marker = register_request(&format!("agent-19.{ZONE}"))
        .fields
        .unwrap()
        .description
        .unwrap();
    let live = copy_store(&store, cases, "live-data");
    let mut hit = 0;
    for (page, chunk) in bytes.chunks(PAGE).enumerate() {
        if chunk.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            overwrite_page(&live, (page * PAGE) as u64);
            hit += 1;
        }
    }
    assert!(hit > 0, "the store holds {marker:?}");
    start_on_damaged(
        &setup,
        &live,
        &expected,
        false,
        "the pages of a registration overwritten",
    )
    .await;

    // Garbage over each page in turn, the page at half the length among them. A page the
    // committed state does not reach (freed by copy-on-write) is harmless and the node may
    // serve; anything else must be refused.
    let pages = bytes.len() / PAGE;
    let middle = (len / 2) as usize / PAGE;
    let mut refused = Vec::new();
    for page in 0..pages {
        let copy = copy_store(&store, cases, &format!("page-{page}"));
        overwrite_page(&copy, (page * PAGE) as u64);
        let what = format!("page {page} of {pages} overwritten");
        if let Verdict::Refused = start_on_damaged(&setup, &copy, &expected, true, &what).await {
            refused.push(page);
        }
    }
    assert!(
        refused.contains(&0),
        "a damaged header is refused: {refused:?}"
    );
    eprintln!(
        "{len}-byte store: truncation refused; {hit} page(s) of live data overwritten refused; \
         of {pages} pages overwritten one at a time {} refused ({refused:?}), the rest were free \
         space and served every registration unchanged; the page at half the length ({middle}) \
         was {}",
        refused.len(),
        if refused.contains(&middle) {
            "refused"
        } else {
            "free space"
        }
    );
}
