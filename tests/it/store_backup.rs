//! `aop store backup` and `aop store restore` through the real binary, on the stores of real
//! `aop node` processes: live registrations and the zone's serial survive a round trip
//! through a backup into an emptied data directory; a running node's store is neither copied
//! nor replaced; a store already there is replaced only with `--force`, which keeps it beside;
//! an empty, truncated, overwritten or foreign backup file is refused, naming it, before
//! anything changes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use aop::grpc::update::{register_fields, signed};
use aop::grpc::{RegistryClient, pb};
use aop::keys::UpdateKey;
use serde_json::Value;

use crate::support::process::{NodeProcess, Setup, ZONE, register_body, setup};
use crate::support::{AOP, connect, free_addr};

const DEADLINE: Duration = Duration::from_secs(30);
const STORE_FILE: &str = "aop.redb";

/// Runs `aop ARGS` to its end (within the deadline).
async fn aop(args: &[&str]) -> Output {
    let run = tokio::process::Command::new(AOP)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("aop {args:?} did not finish within {DEADLINE:?}"))
        .expect("run aop")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// `aop store backup --data-dir DIR --out FILE [extra...]`.
async fn backup(data_dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "store",
        "backup",
        "--data-dir",
        path_str(data_dir),
        "--out",
        path_str(out),
    ];
    args.extend_from_slice(extra);
    aop(&args).await
}

/// `aop store restore --data-dir DIR --from FILE [extra...]`.
async fn restore(data_dir: &Path, from: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "store",
        "restore",
        "--data-dir",
        path_str(data_dir),
        "--from",
        path_str(from),
    ];
    args.extend_from_slice(extra);
    aop(&args).await
}

fn succeeded(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): stdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The command failed with exit status 1; its stderr.
fn failed(what: &str, output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "{what} fails with exit status 1: stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

/// Registers `name` with one live endpoint (an hour's lease), signed with `key`; the serial
/// the zone moved to.
async fn register(client: &mut RegistryClient, key: &UpdateKey, name: &str) -> u32 {
    let body = register_body(
        ZONE,
        name,
        3600,
        &format!("Registered as {name} by the backup test."),
    );
    let fields = register_fields(&body);
    tokio::time::timeout(DEADLINE, client.register(signed(body, &fields, Some(key))))
        .await
        .unwrap_or_else(|_| panic!("no answer to Register {name} within {DEADLINE:?}"))
        .unwrap_or_else(|status| panic!("Register {name}: {status}"))
        .into_inner()
        .serial
}

async fn resolve(client: &mut RegistryClient, name: &str) -> pb::ResolveResponse {
    client
        .resolve(pb::ResolveRequest {
            name: name.into(),
            recursive: false,
            trace: false,
        })
        .await
        .unwrap_or_else(|status| panic!("Resolve {name}: {status}"))
        .into_inner()
}

/// `name` answers with its live endpoint, from the zone at `serial`.
async fn assert_live(client: &mut RegistryClient, name: &str, serial: u32) {
    let answer = resolve(client, name).await;
    assert_eq!(
        answer.outcome,
        pb::Outcome::Answer as i32,
        "{name} resolves: {answer:?}"
    );
    let urls: Vec<&str> = answer
        .agent
        .as_ref()
        .map(|agent| agent.endpoints.iter().map(|e| e.url.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(urls, vec![format!("http://127.0.0.1:9/mcp/{name}")]);
    assert_eq!(answer.zone_serial, serial, "{name}: the zone's serial");
}

/// A node on `data_dir` until stopped with SIGTERM.
struct Running {
    node: NodeProcess,
    client: RegistryClient,
}

async fn start(setup: &Setup, data_dir: &Path) -> Running {
    let mut node = NodeProcess::spawn(setup, data_dir, free_addr());
    let url = node.ready().await;
    let client = connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    Running { node, client }
}

impl Running {
    /// SIGTERM, and a clean exit.
    async fn stop(mut self) {
        drop(self.client);
        self.node.signal(libc::SIGTERM);
        let (status, stderr) = self.node.exit().await;
        assert!(status.success(), "a clean stop: {status}\n{stderr}");
    }
}

/// Names the test registers: `live-N.crash.test`.
fn live(n: usize) -> String {
    format!("live-{n}.{ZONE}")
}

/// A data directory whose stopped node's store holds the zone file's agent and `count` live
/// agents; the zone's serial after the last registration.
async fn populated(setup: &Setup, data_dir: &Path, count: usize) -> u32 {
    let mut running = start(setup, data_dir).await;
    let mut serial = 0;
    for n in 0..count {
        serial = register(&mut running.client, &setup.key, &live(n)).await;
    }
    running.stop().await;
    serial
}

/// The file names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_into_an_emptied_data_dir_serves_the_live_agents_at_the_same_serial() {
    let setup = setup().await;
    let data_dir = setup.dir.path().join("data");
    let serial = populated(&setup, &data_dir, 3).await;
    let backups = setup.dir.path().join("backups");
    std::fs::create_dir(&backups).expect("a backups directory");
    let file = backups.join("node.redb");

    let output = backup(&data_dir, &file, &["--json"]).await;
    let document: Value =
        serde_json::from_str(&succeeded("aop store backup --json", &output)).expect("JSON");
    assert_eq!(document["file"], path_str(&file));
    assert_eq!(
        document["store"],
        path_str(&data_dir.join(STORE_FILE)),
        "{document:#}"
    );
    assert_eq!(document["replaced"], false);
    assert_eq!(
        document["bytes"].as_u64(),
        Some(std::fs::metadata(&file).expect("the backup").len())
    );
    let zones = document["zones"].as_array().expect("zones");
    assert_eq!(zones.len(), 1, "{document:#}");
    assert_eq!(zones[0]["zone"], ZONE);
    assert_eq!(zones[0]["serial"], serial);
    assert_eq!(zones[0]["role"], "primary");
    assert_eq!(
        zones[0]["agents"], 4,
        "three live and the file's: {document:#}"
    );
    assert_eq!(zones[0]["live_endpoints"], 3);
    assert_eq!(
        document["changes"], 3,
        "one change-log entry per registration"
    );
    assert_eq!(
        listing(&backups),
        vec!["node.redb"],
        "no temporary file is left beside the backup"
    );

    std::fs::remove_dir_all(&data_dir).expect("delete the data directory");
    let output = restore(&data_dir, &file, &[]).await;
    let printed = succeeded("aop store restore", &output);
    assert!(
        printed.contains(&format!(
            "{ZONE} serial {serial} (primary): 4 agents (3 live endpoints)"
        )),
        "the summary names the zone, its serial and counts:\n{printed}"
    );
    assert!(printed.contains(path_str(&file)), "{printed}");
    assert_eq!(listing(&data_dir), vec![STORE_FILE]);

    let mut running = start(&setup, &data_dir).await;
    for n in 0..3 {
        assert_live(&mut running.client, &live(n), serial).await;
    }
    let fixed = resolve(&mut running.client, &format!("fixed.{ZONE}")).await;
    assert_eq!(fixed.outcome, pb::Outcome::Answer as i32, "{fixed:?}");
    // The restored node takes updates on from the serial it had.
    let next = register(&mut running.client, &setup.key, &live(3)).await;
    assert!(next > serial, "serial {next} after {serial}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_nodes_store_is_neither_backed_up_nor_replaced() {
    let setup = setup().await;
    let data_dir = setup.dir.path().join("data");
    populated(&setup, &data_dir, 1).await;
    let backups = setup.dir.path().join("backups");
    std::fs::create_dir(&backups).expect("a backups directory");
    let good = backups.join("good.redb");
    succeeded(
        "a backup of the stopped node",
        &backup(&data_dir, &good, &[]).await,
    );

    let running = start(&setup, &data_dir).await;
    let store = data_dir.join(STORE_FILE);
    let inode =
        || std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&store).expect("the store"));
    let before = inode();
    let refused = backups.join("refused.redb");
    let stderr = failed(
        "a backup of a running node",
        &backup(&data_dir, &refused, &[]).await,
    );
    assert!(
        stderr.contains(&format!(
            "store {} is in use by a running node: a backup needs the node stopped",
            store.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        listing(&backups),
        vec!["good.redb"],
        "nothing written beside --out"
    );

    let stderr = failed(
        "a restore onto a running node",
        &restore(&data_dir, &good, &["--force"]).await,
    );
    assert!(
        stderr.contains(&format!(
            "store {} is in use by a running node: a restore needs the node stopped",
            store.display()
        )),
        "{stderr}"
    );
    assert_eq!(listing(&data_dir), vec![STORE_FILE], "nothing kept or left");
    assert_eq!(
        inode(),
        before,
        "the store file is the node's own, not replaced"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_over_a_store_needs_force_and_keeps_the_old_one() {
    let setup = setup().await;
    let data_dir = setup.dir.path().join("data");
    let serial = populated(&setup, &data_dir, 2).await;
    let file = setup.dir.path().join("two.redb");
    succeeded("aop store backup", &backup(&data_dir, &file, &[]).await);
    // The store moves on past the backup: one more agent.
    let mut running = start(&setup, &data_dir).await;
    let later = register(&mut running.client, &setup.key, &live(2)).await;
    running.stop().await;
    let store = data_dir.join(STORE_FILE);
    let newer = std::fs::read(&store).expect("the store");

    let stderr = failed(
        "a restore over a store",
        &restore(&data_dir, &file, &[]).await,
    );
    assert!(
        stderr.contains(&format!("{} already holds a store", store.display()))
            && stderr.contains(&format!("{ZONE} serial {later}"))
            && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&store).expect("the store"),
        newer,
        "unchanged"
    );
    assert_eq!(
        listing(&data_dir),
        vec![STORE_FILE],
        "no temporary file left"
    );

    let output = restore(&data_dir, &file, &["--force", "--json"]).await;
    let document: Value =
        serde_json::from_str(&succeeded("aop store restore --force --json", &output))
            .expect("JSON");
    let kept = PathBuf::from(format!("{}.before-restore", store.display()));
    assert_eq!(document["kept"], path_str(&kept), "{document:#}");
    assert_eq!(document["store"], path_str(&store));
    assert_eq!(document["zones"][0]["serial"], serial);
    assert_eq!(
        std::fs::read(&kept).expect("the old store, kept"),
        newer,
        "the replaced store is kept as it was"
    );
    assert_eq!(
        listing(&data_dir),
        vec![
            STORE_FILE.to_string(),
            format!("{STORE_FILE}.before-restore")
        ]
    );

    let mut running = start(&setup, &data_dir).await;
    for n in 0..2 {
        assert_live(&mut running.client, &live(n), serial).await;
    }
    let gone = resolve(&mut running.client, &live(2)).await;
    assert_eq!(
        gone.outcome,
        pb::Outcome::Nxdomain as i32,
        "the agent registered after the backup is not in it: {gone:?}"
    );
    running.stop().await;

    // A second forced restore would overwrite the kept store: refused.
    let stderr = failed(
        "a restore with a kept store in the way",
        &restore(&data_dir, &file, &["--force"]).await,
    );
    assert!(
        stderr.contains(&format!(
            "{} exists, kept by an earlier restore",
            kept.display()
        )),
        "{stderr}"
    );
}

/// Writes 4 KiB of 0xA5 at `offset`.
fn overwrite_page(file: &Path, offset: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut handle = std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .expect("open the file");
    handle.seek(SeekFrom::Start(offset)).expect("seek");
    handle.write_all(&[0xA5; PAGE]).expect("write");
}

const PAGE: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_empty_backup_is_refused_naming_it() {
    let setup = setup().await;
    let data_dir = setup.dir.path().join("data");
    populated(&setup, &data_dir, 2).await;
    let good = setup.dir.path().join("good.redb");
    succeeded("aop store backup", &backup(&data_dir, &good, &[]).await);
    let bytes = std::fs::read(&good).expect("the backup");
    let cases = setup.dir.path().join("cases");
    std::fs::create_dir(&cases).expect("a directory for the damaged copies");

    let empty = cases.join("empty.redb");
    std::fs::write(&empty, b"").expect("write");
    let foreign = cases.join("notes.txt");
    std::fs::write(&foreign, "not a store at all\n".repeat(500)).expect("write");
    let truncated = cases.join("truncated.redb");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    // Garbage over every page that holds the last registration (its record and its change).
    let marker = format!("Registered as {} by the backup test.", live(1));
    let overwritten = cases.join("overwritten.redb");
    std::fs::write(&overwritten, &bytes).expect("write");
    let mut hit = 0;
    for (page, chunk) in bytes.chunks(PAGE).enumerate() {
        if chunk.windows(marker.len()).any(|w| w == marker.as_bytes()) {
            overwrite_page(&overwritten, (page * PAGE) as u64);
            hit += 1;
        }
    }
    assert!(hit > 0, "the backup holds {marker:?}");
    let missing = cases.join("missing.redb");

    let store = data_dir.join(STORE_FILE);
    let before = std::fs::read(&store).expect("the store");
    for (file, says) in [
        (&empty, "the file is empty (0 bytes)"),
        (&foreign, "it does not open as an intact redb database"),
        (&truncated, "it does not open as an intact redb database"),
        (&overwritten, "it does not open as an intact redb database"),
        (&missing, "No such file"),
    ] {
        // Forced, over the node's store: the backup is checked before anything is replaced.
        let stderr = failed(
            &format!("a restore from {}", file.display()),
            &restore(&data_dir, file, &["--force"]).await,
        );
        assert!(
            stderr.contains(&format!(
                "backup {} cannot be restored: {says}",
                file.display()
            )) && stderr.contains("nothing was changed"),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&store).expect("the store"), before);
        assert_eq!(listing(&data_dir), vec![STORE_FILE], "nothing kept or left");
        // Into an empty data directory, too: no store appears.
        let fresh = cases.join("fresh");
        failed(
            "a restore into a new directory",
            &restore(&fresh, file, &[]).await,
        );
        assert!(
            !fresh.exists(),
            "the data directory it made is removed again"
        );
    }
    // The good one still restores (over the store, forced).
    succeeded(
        "a restore from the good backup",
        &restore(&data_dir, &good, &["--force"]).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_left_by_a_killed_node_is_backed_up_after_a_clean_restart() {
    let setup = setup().await;
    let data_dir = setup.dir.path().join("data");
    let mut running = start(&setup, &data_dir).await;
    let serial = register(&mut running.client, &setup.key, &live(0)).await;
    running.node.signal(libc::SIGKILL);
    let (status, _) = running.node.exit().await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    let file = setup.dir.path().join("after-kill.redb");
    let stderr = failed(
        "a backup of a killed node's store",
        &backup(&data_dir, &file, &[]).await,
    );
    assert!(
        stderr.contains(&format!(
            "store {} was not closed cleanly",
            data_dir.join(STORE_FILE).display()
        )) && stderr.contains("start the node on it once"),
        "{stderr}"
    );
    assert!(!file.exists());

    // Started once (it recovers the store) and stopped with SIGTERM: the backup is taken,
    // with the acknowledged registration in it.
    start(&setup, &data_dir).await.stop().await;
    let output = backup(&data_dir, &file, &["--json"]).await;
    let document: Value =
        serde_json::from_str(&succeeded("aop store backup", &output)).expect("JSON");
    assert_eq!(document["zones"][0]["serial"], serial, "{document:#}");
    assert_eq!(document["zones"][0]["live_endpoints"], 1);
}
