//! The status page in headless Chromium (Debian's `chromium`), driven by playwright-core
//! through `tests/clients/status_page.mjs`: a node with an admin endpoint, the page loaded,
//! its zones, agents and recent queries read back as a person would see them, and its
//! refresh observed. Ignored by `cargo test`; `.ci/interop` installs Chromium and
//! playwright-core (pinned, under target/) and runs it with `--ignored`.

use aop::admin::AdminListener;
use aop::grpc::pb;
use aop::node::ServeOptions;

use crate::support::{bind, connect, loopback, zone};

const FINANCE: &str = r#"
[zone]
origin = "finance.acme"
serial = 2026112401
servers = [{ grpc = "http://127.0.0.1:9" }]

[[agent]]
name = "analyst"
description = "Financial analyst: <b>ratios</b>, forecasts & filings."
endpoints = [{ url = "http://127.0.0.1:9101/mcp" }]

[[agent]]
name = "fx.trading"
description = "FX desk"
endpoints = [{ url = "http://127.0.0.1:9103/mcp" }]
"#;

/// The status page in headless Chromium (Debian's `chromium`) driven by playwright-core:
/// `.ci/interop` installs both and sets `AOP_CHROMIUM` and `AOP_PLAYWRIGHT_DIR`.
#[tokio::test]
#[ignore = "interop: needs Chromium and playwright-core (.ci/interop installs them)"]
async fn status_page_shows_zones_and_agents_in_chromium() {
    let chromium = std::env::var("AOP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let modules = std::env::var("AOP_PLAYWRIGHT_DIR").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/interop-node").to_string()
    });
    let admin = AdminListener::bind(loopback()).await.unwrap();
    let admin_url = admin.url();
    let node = bind()
        .await
        .serve_with(
            ServeOptions::new(vec![zone(FINANCE)])
                .node_id("admin-test")
                .admin(admin),
        )
        .expect("node serves");
    let mut client = connect(&node.grpc_url()).await.unwrap();
    let response = client
        .resolve(pb::ResolveRequest {
            name: "analyst.finance.acme".into(),
            recursive: false,
            trace: false,
        })
        .await
        .expect("an answer");
    let request_id = response
        .metadata()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/status_page.mjs");
    let admin = admin_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .arg(&admin)
            .arg(&chromium)
            .env("NODE_PATH", format!("{modules}/node_modules"))
            .output()
            .expect("node runs (Node.js is installed)")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "status_page.mjs failed ({}): {stderr}\n{stdout}",
        output.status
    );
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    eprintln!("the page showed: {seen}");
    assert_eq!(seen["title"], "aop node admin-test");
    assert_eq!(seen["state"], "ready");
    assert_eq!(seen["zones"], serde_json::json!(["finance.acme"]));
    assert_eq!(
        seen["agents"],
        serde_json::json!(["analyst.finance.acme", "fx.trading.finance.acme"])
    );
    // The description's markup is shown as text, not parsed.
    assert!(
        seen["descriptions"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(
                "Financial analyst: <b>ratios</b>, forecasts & filings."
            )),
        "{seen}"
    );
    assert_eq!(seen["bold_elements"], 0);
    assert!(
        seen["request_ids"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(request_id)),
        "the recent queries list the gRPC request's id {request_id}: {seen}"
    );
    node.shutdown().await.unwrap();
}
