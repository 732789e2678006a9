//! `aop zone dump` through the binary, against a federation: asked of a node that does not
//! serve the zone (the root, or a node that serves nothing), it finds the zone's servers
//! through the tree and transfers from them; `--json` prints the zone as one document with
//! each agent's and endpoint's source, live registrations included (docs/protocol.md §3).

use std::process::Output;

use aop::keys::UpdateKey;
use serde_json::Value;

use crate::support::zones::NOWHERE;
use crate::support::{AOP, AgentSpec, FederationBuilder, ZoneSpec};

async fn run(args: &[&str]) -> Output {
    tokio::process::Command::new(AOP)
        .args(args)
        .output()
        .await
        .expect("run aop")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

fn agent<'a>(zone: &'a Value, name: &str) -> &'a Value {
    zone["agents"]
        .as_array()
        .expect("agents")
        .iter()
        .find(|agent| agent["name"] == name)
        .unwrap_or_else(|| panic!("no agent {name} in {zone:#}"))
}

#[tokio::test]
async fn zone_dump_asked_of_any_node_finds_the_zones_servers() {
    let key = UpdateKey::new(
        "ci-bot",
        "finance.acme",
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==",
    )
    .expect("a key");
    let federation = FederationBuilder::new()
        .zone(ZoneSpec::new("acme").agent(AgentSpec::new("writer")))
        .zone(
            ZoneSpec::new("finance.acme")
                .agent(
                    AgentSpec::new("analyst")
                        .description("Ratios and forecasts")
                        .tags(&["finance"])
                        .ttl(120),
                )
                .alias("forecaster", "analyst")
                .update_key(key.clone()),
        )
        .start()
        .await;
    let root = federation.server(".", 0).grpc_url();
    let finance = federation.server("finance.acme", 0).grpc_url();
    let resolver = federation.resolver().grpc_url();

    // Two live registrations at the primary: an endpoint of the file's agent, and an agent
    // of its own.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key_file = dir.path().join("ci-bot.key");
    std::fs::write(&key_file, key.to_key_file()).expect("write the key file");
    let key_file = key_file.to_str().expect("a UTF-8 path");
    for (name, url) in [
        ("analyst", "http://127.0.0.1:9/live"),
        ("planner", "http://127.0.0.1:9/planner"),
    ] {
        let output = run(&[
            "register",
            "--server",
            &finance,
            "--zone",
            "finance.acme",
            "--name",
            name,
            "--url",
            url,
            "--key-file",
            key_file,
        ])
        .await;
        assert!(
            output.status.success(),
            "register {name}: {}",
            stderr(&output)
        );
    }

    // Asked of the root, which serves only ".": the zone comes from its server.
    let dumped = json(&run(&["zone", "dump", "--server", &root, "finance.acme", "--json"]).await);
    assert_eq!(dumped["origin"], "finance.acme");
    assert_eq!(dumped["serial"], 3, "serial 1 and two registrations");
    assert_eq!(dumped["transferred_from"], finance.as_str());
    assert_eq!(dumped["servers"][0]["grpc"], finance.as_str());
    assert_eq!(dumped["servers"][0]["dns"], Value::Null);
    for field in ["ttl", "negative_ttl", "refresh", "retry", "expire"] {
        assert!(dumped[field].is_u64(), "{field} in {dumped:#}");
    }
    let analyst = agent(&dumped, "analyst.finance.acme");
    assert_eq!(analyst["source"], "file");
    assert_eq!(analyst["description"], "Ratios and forecasts");
    assert_eq!(analyst["tags"][0], "finance");
    assert_eq!(analyst["ttl"], 120);
    let endpoints: Vec<(&str, bool)> = analyst["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| (e["url"].as_str().unwrap_or(""), e["live"] == true))
        .collect();
    assert_eq!(
        endpoints,
        [(NOWHERE, false), ("http://127.0.0.1:9/live", true)],
        "{analyst:#}"
    );
    assert_eq!(analyst["endpoints"][1]["tool"], "analyst");
    assert_eq!(analyst["endpoints"][1]["priority"], 10);
    assert_eq!(analyst["input_schema"]["required"][0], "task");
    let planner = agent(&dumped, "planner.finance.acme");
    assert_eq!(planner["source"], "live");
    assert_eq!(planner["ttl"], Value::Null);
    assert_eq!(planner["endpoints"][0]["live"], true);
    assert_eq!(
        dumped["aliases"],
        serde_json::json!([{
            "name": "forecaster.finance.acme",
            "target": "analyst.finance.acme",
            "ttl": null,
        }])
    );
    assert_eq!(dumped["delegations"], serde_json::json!([]));

    // The same document from the zone's own server, and from a node that serves nothing.
    let direct = json(
        &run(&[
            "zone",
            "dump",
            "--server",
            &finance,
            "finance.acme",
            "--json",
        ])
        .await,
    );
    assert_eq!(direct, dumped);
    let via_resolver = json(
        &run(&[
            "zone",
            "dump",
            "--server",
            &resolver,
            "finance.acme",
            "--json",
        ])
        .await,
    );
    assert_eq!(via_resolver, dumped);

    // The parent zone, dumped from the root, shows its delegation to finance.acme.
    let acme = json(&run(&["zone", "dump", "--server", &root, "acme", "--json"]).await);
    assert_eq!(acme["delegations"][0]["zone"], "finance.acme");
    assert_eq!(
        acme["delegations"][0]["servers"][0]["grpc"],
        finance.as_str()
    );
    assert_eq!(acme["aliases"], serde_json::json!([]));

    // As a zone file, from the root: live endpoints marked, and `aop zone check` accepts it.
    let output = run(&["zone", "dump", "--server", &root, "finance.acme"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("url = \"http://127.0.0.1:9/live\"") && text.contains("# registered live"),
        "{text}"
    );
    let file = dir.path().join("finance.acme.live.toml");
    std::fs::write(&file, &text).expect("write the dump");
    let check = run(&["zone", "check", file.to_str().expect("a UTF-8 path")]).await;
    assert!(
        check.status.success(),
        "{}{}",
        stdout(&check),
        stderr(&check)
    );

    // A zone that is nowhere in the tree: exit 1, the zone named.
    let output = run(&["zone", "dump", "--server", &root, "nowhere.acme"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let error = stderr(&output);
    assert!(
        error.starts_with("error: ") && error.contains("nowhere.acme"),
        "{error}"
    );
    assert_eq!(stdout(&output), "");

    federation.shutdown().await;
}
