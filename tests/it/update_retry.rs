//! Updates ride out a primary that cannot be reached (docs/protocol.md §9.3): a one-shot
//! `aop register` retries within `--timeout`, and `--keepalive` never gives up, saying when it
//! lost the node and when it is back. Real processes: the CLI and `aop node`, killed and
//! restarted on the same address and store.

use std::net::SocketAddr;

use crate::support::AOP;
use crate::support::process::{NodeProcess, Setup, ZONE, setup};
use crate::support::{free_addr, loopback};

/// `aop register` for `name` at `addr`, with `extra` flags, as a child process.
fn register(setup: &Setup, addr: SocketAddr, name: &str, extra: &[&str]) -> NodeProcess {
    let server = format!("http://{addr}");
    let key_file = setup.key_file.display().to_string();
    let mut argv = vec![
        AOP,
        "register",
        "--server",
        &server,
        "--zone",
        ZONE,
        "--name",
        name,
        "--url",
        "http://127.0.0.1:9/mcp",
        "--key-file",
        &key_file,
    ];
    argv.extend_from_slice(extra);
    NodeProcess::spawn_command(&argv)
}

/// Whether `name` resolves at the node at `addr`, asked without recursion.
fn resolves(addr: SocketAddr, name: &str) -> bool {
    let output = std::process::Command::new(AOP)
        .args([
            "resolve",
            "--server",
            &format!("http://{addr}"),
            "--no-recurse",
        ])
        .arg(format!("{name}.{ZONE}"))
        .output()
        .expect("run aop resolve");
    output.status.success()
}

#[tokio::test]
async fn a_one_shot_register_waits_for_a_primary_that_is_starting() {
    let setup = setup().await;
    let addr = free_addr();
    let mut update = register(&setup, addr, "late", &["--timeout", "60s"]);
    // Nothing listens yet: it says it will retry, and keeps at it.
    let warning = update.line_containing("retrying for up to 60 s").await;
    assert!(warning.contains(&addr.to_string()), "{warning}");
    let mut node = NodeProcess::spawn(&setup, &setup.dir.path().join("data"), addr);
    node.ready().await;
    let (status, stderr) = update.exit().await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("answered after"), "{stderr}");
    assert!(resolves(addr, "late"));
}

#[tokio::test]
async fn a_one_shot_register_gives_up_after_its_timeout_saying_so() {
    let setup = setup().await;
    let addr = free_addr();
    let mut update = register(&setup, addr, "never", &["--timeout", "1s"]);
    let (status, stderr) = update.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&addr.to_string()) && stderr.contains("--timeout 1 s"),
        "names the node and the limit: {stderr}"
    );
}

/// The address a node's ready line names.
fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|_| panic!("a gRPC URL of host:port: {url}"))
}

#[tokio::test]
async fn a_refused_update_is_not_retried() {
    let setup = setup().await;
    let mut node = NodeProcess::spawn(&setup, &setup.dir.path().join("data"), loopback());
    let addr = addr_of(&node.ready().await);
    // A description over its limit: the node's answer (INVALID_ARGUMENT), not an outage,
    // so even --keepalive stops at once.
    let description = "d".repeat(2_000);
    let mut update = register(
        &setup,
        addr,
        "wordy",
        &["--keepalive", "--description", &description],
    );
    let (status, stderr) = update.exit().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1024"), "names the limit: {stderr}");
    assert!(!stderr.contains("retrying"), "{stderr}");
}

#[tokio::test]
async fn keepalive_rides_out_its_primary_going_down_and_says_so() {
    let setup = setup().await;
    let data = setup.dir.path().join("data");
    let mut node = NodeProcess::spawn(&setup, &data, loopback());
    let addr = addr_of(&node.ready().await);
    let mut keeper = register(&setup, addr, "steady", &["--keepalive", "--lease", "3"]);
    keeper.line_containing("keeping").await;
    assert!(resolves(addr, "steady"));

    node.signal(libc::SIGKILL);
    node.exit().await;
    let lost = keeper.line_containing("lost").await;
    assert!(lost.contains(&addr.to_string()), "{lost}");

    // Back on the same address and store: the keeper registers again and says so.
    let mut node = NodeProcess::spawn(&setup, &data, addr);
    node.ready().await;
    keeper.line_containing("answers again").await;
    assert!(resolves(addr, "steady"));

    // Stopped, it removes its endpoint.
    keeper.signal(libc::SIGTERM);
    let (status, stderr) = keeper.exit().await;
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("removed endpoint"), "{stderr}");
    assert!(
        !resolves(addr, "steady"),
        "the agent went with its last endpoint"
    );
}
