//! The node configs shipped in `deploy/nodes/` and the key list of `aop node --help`: every
//! config loads with the real loader and starts a node, each zone has one primary (the
//! others follow it as secondaries), every key file a config names loads and belongs to a
//! zone that node is primary for; and the help (and deploy/README.md) lists every key the loader accepts, checked
//! against the loader's own list of expected keys, so a key added there and not to the help
//! fails here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aop::config::NodeConfigFile;
use aop::keys::UpdateKey;

use crate::support::AOP;
use crate::support::process::NodeProcess;

fn deploy_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nodes");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    paths
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_deploy_config_loads_and_each_zone_has_one_primary() {
    let paths = deploy_configs();
    assert_eq!(
        paths.iter().map(|p| file_name(p)).collect::<Vec<_>>(),
        [
            "acme.toml",
            "finance-1.toml",
            "finance-2.toml",
            "globex.toml",
            "research-globex.toml",
            "root.toml"
        ],
        "deploy/README.md lists these six"
    );
    // zone -> the gRPC URL of the config that is its primary; zone -> its secondaries' URLs.
    let mut primaries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut secondaries: Vec<(String, String, String)> = Vec::new();
    for path in &paths {
        let config = NodeConfigFile::load(path).unwrap_or_else(|e| panic!("{e}"));
        let name = file_name(path);
        let grpc = config.grpc.unwrap_or_else(|| panic!("{name} has no grpc"));
        let url = format!("http://{grpc}");
        assert!(config.admin.is_some(), "{name} has an admin endpoint");
        let zones = aop::node::load_zone_files(&config.zones)
            .unwrap_or_else(|e| panic!("{name}: its zone files: {e}"));
        for zone in &zones {
            assert!(
                zone.header().servers.iter().any(|s| s.grpc == url),
                "{name}: zone {} lists its server {url}",
                zone.origin()
            );
            primaries
                .entry(zone.origin().to_string())
                .or_default()
                .push(url.clone());
        }
        let served: Vec<String> = zones.iter().map(|z| z.origin().to_string()).collect();
        let mut keys: Vec<UpdateKey> = config
            .update_key
            .iter()
            .cloned()
            .map(|entry| UpdateKey::try_from(entry).unwrap_or_else(|e| panic!("{name}: {e}")))
            .collect();
        for key_file in &config.update_key_files {
            keys.push(UpdateKey::load_file(key_file).unwrap_or_else(|e| panic!("{name}: {e}")));
        }
        for key in &keys {
            assert!(
                served.contains(&key.zone().to_string()),
                "{name}: key {} is for zone {}, which this node is not primary for ({served:?})",
                key.name(),
                key.zone()
            );
        }
        for secondary in &config.secondary {
            secondaries.push((
                name.clone(),
                secondary.zone.clone(),
                secondary.primary.clone(),
            ));
        }
    }
    for (zone, urls) in &primaries {
        assert_eq!(urls.len(), 1, "zone {zone} has one primary, not {urls:?}");
    }
    for (name, zone, primary) in &secondaries {
        assert_eq!(
            primaries.get(zone).map(|urls| urls[0].as_str()),
            Some(primary.as_str()),
            "{name}: the secondary of {zone} follows the config that is its primary"
        );
    }

    // The demo's second finance.acme server is a secondary of the first.
    let finance_2 = NodeConfigFile::load(&paths[2]).expect("finance-2 loads");
    assert!(finance_2.zones.is_empty(), "finance-2 loads no zone file");
    assert_eq!(finance_2.secondary.len(), 1);
    assert_eq!(finance_2.secondary[0].zone, "finance.acme");
    assert_eq!(finance_2.secondary[0].primary, "http://127.0.0.1:7102");
    assert_eq!(primaries["finance.acme"], ["http://127.0.0.1:7102"]);
    let finance_1 = NodeConfigFile::load(&paths[1]).expect("finance-1 loads");
    assert_eq!(
        finance_1.update_key_files.len(),
        1,
        "finance-1 accepts the example key"
    );
}

/// Each config through `aop node --config`, the flags that turn its strings into values
/// included (`[[secondary]]`, keys, `max_stale`); the listen addresses are overridden with
/// free ports so the test runs beside anything on the demo's ports.
#[tokio::test]
async fn every_deploy_config_starts_a_node() {
    for path in deploy_configs() {
        let path = path.to_string_lossy().into_owned();
        let mut node = NodeProcess::spawn_command(&[
            AOP,
            "node",
            "--config",
            &path,
            "--grpc",
            "127.0.0.1:0",
            "--dns",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ]);
        if let Err((status, stderr)) = node.started().await {
            panic!("{path}: aop node exited before it was ready ({status}):\n{stderr}");
        }
        // SIGTERM the moment it is ready: the handler is in place before "node ready" is
        // logged, so the node stops cleanly.
        node.signal(libc::SIGTERM);
        let (status, stderr) = node.exit().await;
        assert!(
            status.success(),
            "{path}: SIGTERM at ready ({status}):\n{stderr}"
        );
    }
}

/// The keys the loader names when it refuses an unknown one (serde's "expected one of" list),
/// for a config whose text is `text` with an unknown key added where `text` ends.
fn loader_keys(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("node.toml");
    std::fs::write(&path, format!("{text}no_such_key_at_all = 1\n")).expect("write");
    let error = NodeConfigFile::load(&path)
        .expect_err("an unknown key is refused")
        .to_string();
    let (_, expected) = error
        .split_once("expected one of ")
        .or_else(|| error.split_once("expected "))
        .unwrap_or_else(|| panic!("the error lists the keys it accepts: {error}"));
    // serde writes "`a`", "`a` or `b`", or "one of `a`, `b`, `c`".
    let keys: Vec<String> = expected
        .split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|key| key.trim().trim_matches('`').to_string())
        .collect();
    assert!(!keys.is_empty(), "{error}");
    keys
}

#[test]
fn node_help_lists_every_key_the_config_loader_accepts() {
    let output = std::process::Command::new(AOP)
        .args(["node", "--help"])
        .output()
        .expect("run aop node --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    // clap wraps the help to the terminal's width: compare with single spaces.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let epilogue = help
        .split_once("A config file")
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("the help describes config files: {help}"));
    // Words of the epilogue: keys are written bare, `[[table]]` or inside `(...)`.
    let words: Vec<&str> = epilogue
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| !word.is_empty())
        .collect();

    let top = loader_keys("");
    assert!(top.len() >= 16, "the loader's keys: {top:?}");
    for key in &top {
        assert!(
            words.contains(&key.as_str()),
            "aop node --help does not list the config key `{key}`:\n{epilogue}"
        );
    }
    for (table, text) in [
        ("secondary", "[[secondary]]\n"),
        ("update_key", "[[update_key]]\n"),
    ] {
        let inner = loader_keys(text);
        let listed = format!("[[{table}]] ({})", inner.join(", "));
        assert!(
            epilogue.contains(&listed),
            "aop node --help lists {listed}:\n{epilogue}"
        );
    }
}

#[test]
fn deploy_readme_lists_every_config_key() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/README.md"))
            .expect("read deploy/README.md");
    for key in loader_keys("") {
        let written = if key == "secondary" || key == "update_key" {
            format!("`[[{key}]]`")
        } else {
            format!("`{key}`")
        };
        assert!(
            readme.contains(&written),
            "deploy/README.md does not list the config key {written}"
        );
    }
}
