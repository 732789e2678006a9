//! End-to-end tests of the `aop` binary: the demo from zones/, the commands it prints, node
//! configs, exit codes and shutdown on a signal.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{AOP, aop};

const DEADLINE: Duration = Duration::from_secs(30);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A child process whose output lines arrive on a channel, killed when dropped.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(mut command: Command, watch_stderr: bool) -> Running {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = command.spawn().expect("spawn aop");
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out_sender = sender.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_sender.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if watch_stderr {
                    let _ = sender.send(line);
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (with a deadline) for a line containing `needle`; returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} in time; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn interrupt(&self) {
        aop::sys::send_signal(self.child.id(), libc::SIGINT).expect("kill -INT");
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "process did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the process exited: every line it wrote that was not read yet (until both
    /// pipes close).
    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(DEADLINE) {
            self.seen.push(line);
        }
    }
}

/// An MCP `initialize` POSTed over plain HTTP/1.1: the HTTP status.
fn mcp_initialize(url: &str) -> u16 {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cli-test","version":"1"}}}"#;
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).expect("a status line");
    String::from_utf8_lossy(&head[9..12])
        .parse()
        .expect("a status code")
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    aop()
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run aop")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(output)))
}

/// A plain HTTP/1.0 GET of an `http://HOST:PORT/path` URL: (status, body).
fn http_get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(authority).expect("connect");
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("a response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line in {head:?}"));
    (status, body.to_string())
}

#[test]
fn demo_starts_the_federation_and_answers_the_commands_it_prints() {
    let mut command = aop();
    command
        .args(["demo", "--port-base", "0"])
        .current_dir(repo());
    // Its log too: the lines it must and must not write.
    let mut demo = Running::spawn(command, true);
    demo.wait_for("ready:");
    // The node table: "index id grpc dns zones".
    let nodes: Vec<(String, String)> = demo
        .seen
        .iter()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [index, _, url, dns, zones @ ..]
                    if index.parse::<usize>().is_ok()
                        && url.starts_with("http://")
                        && dns.parse::<std::net::SocketAddr>().is_ok() =>
                {
                    Some((url.to_string(), zones.join(" ")))
                }
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        nodes.len(),
        6,
        "root, acme, finance.acme x2, globex, research.globex: {:?}",
        demo.seen
    );
    assert_eq!(nodes[0].1, ".", "node 0 is the root");
    let finance: Vec<&String> = nodes
        .iter()
        .filter(|(_, z)| z == "finance.acme")
        .map(|(u, _)| u)
        .collect();
    assert_eq!(finance.len(), 2, "finance.acme has two servers");

    // A built-in agent for every loopback endpoint of zones/, and the gateway.
    let agents = demo
        .seen
        .iter()
        .filter(|line| line.contains(".acme") || line.contains(".globex"))
        .filter(|line| line.trim_end().ends_with("/mcp"))
        .count();
    assert_eq!(agents, 12, "one demo agent per endpoint: {:?}", demo.seen);
    assert!(
        demo.seen
            .iter()
            .any(|line| line.starts_with("MCP gateway: http://127.0.0.1:")),
        "{:?}",
        demo.seen
    );
    assert!(
        demo.seen.iter().any(|line| line.contains("\"mcpServers\"")),
        "an MCP host configuration to paste"
    );

    // The gateway's page and the metrics it links to, as a node's.
    let gateway_page = demo
        .seen
        .iter()
        .find_map(|line| line.trim().strip_prefix("gateway "))
        .map(|url| url.trim().to_string())
        .unwrap_or_else(|| panic!("the gateway's page: {:?}", demo.seen));
    let (status, body) = http_get(&format!("{gateway_page}metrics"));
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("# TYPE aop_gateway_tool_calls_total counter")
            && body.contains("aop_gateway_zone_serial{zone=\"finance.acme\"}"),
        "{body}"
    );
    assert_eq!(http_get(&format!("{gateway_page}healthz")).0, 200);

    // Every "aop resolve ..." example the demo printed works as printed.
    let examples: Vec<String> = demo
        .seen
        .iter()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("aop ")
                .map(|rest| rest.split('#').next().unwrap_or("").trim().to_string())
        })
        .collect();
    assert!(examples.len() >= 3, "{examples:?}");
    for example in &examples {
        let args: Vec<&str> = example.split_whitespace().collect();
        let output = run(&args);
        assert!(
            output.status.success(),
            "aop {example}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }

    // The root refers the finance name to acme, with acme's assigned address as glue.
    let root = &nodes[0].0;
    let output = run(&[
        "resolve",
        "--server",
        root,
        "--no-recurse",
        "--json",
        "analyst.finance.acme",
    ]);
    assert!(output.status.success());
    let answer = json(&output);
    assert_eq!(answer["outcome"], "referral");
    assert_eq!(answer["referral"]["zone"], "acme");
    let acme_url = answer["referral"]["servers"][0]["grpc"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        nodes[1].0, acme_url,
        "glue is the demo's assigned address, not the file's"
    );

    // Following the referrals by hand reaches the answer on both finance servers.
    let output = run(&[
        "resolve",
        "--server",
        &acme_url,
        "--no-recurse",
        "--json",
        "analyst.finance.acme",
    ]);
    let answer = json(&output);
    assert_eq!(answer["outcome"], "referral");
    let servers = answer["referral"]["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    for server in servers {
        let url = server["grpc"].as_str().unwrap();
        let output = run(&[
            "resolve",
            "--server",
            url,
            "--no-recurse",
            "--json",
            "forecaster.finance.acme",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let answer = json(&output);
        assert_eq!(answer["outcome"], "answer");
        assert_eq!(answer["agent"]["name"], "analyst.finance.acme");
        assert_eq!(answer["aliases"][0]["name"], "forecaster.finance.acme");
        assert_eq!(answer["authoritative"], true);
        assert_eq!(answer["ttl"], 120);
    }

    // NXDOMAIN and NODATA exit 1 and say which.
    let output = run(&[
        "resolve",
        "--server",
        finance[0],
        "--no-recurse",
        "nobody.finance.acme",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: nobody.finance.acme does not exist (NXDOMAIN"),
        "{}",
        stderr(&output)
    );
    let output = run(&[
        "resolve",
        "--server",
        finance[0],
        "--no-recurse",
        "--json",
        "trading.finance.acme",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(json(&output)["outcome"], "nodata");

    // A bad name is refused with the label named; exit 1.
    let output = run(&["resolve", "--server", finance[0], "bad_label.finance.acme"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("label \"bad_label\""),
        "{}",
        stderr(&output)
    );

    // Live registration can be tried: the printed `aop register` line (run with the other
    // examples above) signed with the demo's key, and the agent resolves.
    assert!(
        examples
            .iter()
            .any(|example| example.starts_with("register ") && example.contains("--key-file")),
        "{examples:?}"
    );
    let key_dir = demo
        .seen
        .iter()
        .find_map(|line| line.split("removed when the demo stops): ").nth(1))
        .map(|dir| std::path::PathBuf::from(dir.trim()))
        .expect("the demo prints where its update keys are");
    assert!(key_dir.join("finance.acme.key").is_file());
    // The stdio configuration names this very binary, not `aop` (not on the PATH after
    // `cargo run`).
    assert!(
        demo.seen
            .iter()
            .any(|line| line.contains(&format!("\"command\": \"{AOP}\""))),
        "{:?}",
        demo.seen
    );

    // An MCP session at the gateway (the MCP library logs one at INFO unless quietened).
    let gateway_url = demo
        .seen
        .iter()
        .find_map(|line| line.strip_prefix("MCP gateway: "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the gateway's URL")
        .to_string();
    assert_eq!(mcp_initialize(&gateway_url), 200);

    // Ctrl-C stops it cleanly, and its key files go with it.
    demo.interrupt();
    let status = demo.wait_exit();
    assert!(
        status.success(),
        "demo exit status after SIGINT: {status:?}"
    );
    assert!(!key_dir.exists(), "{} removed", key_dir.display());
    // The log: the secondary's transfer said, the MCP library's per-session chatter not.
    demo.drain();
    assert!(
        demo.seen
            .iter()
            .any(|line| line.contains("zone transferred from the primary")
                && line.contains("finance.acme")),
        "{}",
        demo.seen.join("\n")
    );
    let chatter: Vec<&String> = demo
        .seen
        .iter()
        .filter(|line| line.contains("rmcp"))
        .collect();
    assert!(chatter.is_empty(), "{chatter:?}");
}

/// `aop demo` where there is no zones/ says what it needs (the --zones flag) and says the
/// OS error once.
#[test]
fn demo_without_zone_files_says_how_to_give_them() {
    let output = run(&["demo", "--zones", "/nonexistent/zones", "--port-base", "0"]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.starts_with("error: cannot list zone files in /nonexistent/zones"),
        "{text}"
    );
    assert!(text.contains("--zones DIR"), "{text}");
    assert_eq!(text.matches("os error 2").count(), 1, "said once: {text}");
}

#[test]
fn node_from_a_config_file_serves_its_zones_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let zones = repo().join("zones");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node_id = \"from-config\"\ngrpc = \"127.0.0.1:1\"\nzones = [\"{}\"]\n",
            zones.join("finance.acme.toml").display()
        ),
    )
    .unwrap();
    let mut command = aop();
    // --grpc on the command line wins over the file's unusable port 1.
    command.args([
        "node",
        "--config",
        config.to_str().unwrap(),
        "--grpc",
        "127.0.0.1:0",
    ]);
    let mut node = Running::spawn(command, true);
    let ready = node.wait_for("node ready");
    let url = ready
        .split_whitespace()
        .find_map(|field| field.strip_prefix("grpc="))
        .expect("the ready line names the gRPC URL")
        .to_string();
    let output = run(&[
        "resolve",
        "--server",
        &url,
        "--no-recurse",
        "--json",
        "auditor.finance.acme",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let answer = json(&output);
    assert_eq!(answer["served_by"], "from-config");
    assert_eq!(answer["agent"]["capabilities"][0], "audit");
    node.interrupt();
    assert!(node.wait_exit().success());
}

#[test]
fn node_config_bounds_out_of_range_are_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let zones = repo().join("zones");
    for (key, value) in [("max_concurrent", 0), ("dns_rate_limit", 2_000_000)] {
        let config = dir.path().join(format!("{key}.toml"));
        std::fs::write(
            &config,
            format!(
                "grpc = \"127.0.0.1:0\"\nzones = [\"{}\"]\n{key} = {value}\n",
                zones.join("finance.acme.toml").display()
            ),
        )
        .unwrap();
        let output = run(&["node", "--config", config.to_str().unwrap()]);
        assert!(!output.status.success());
        let text = stderr(&output);
        assert!(
            text.contains(&format!(
                "{key} = {value} in the config file is out of range"
            )) && text.contains("from 1 to 1000000"),
            "{text}"
        );
    }
}

#[test]
fn node_refuses_to_start_on_a_bad_zone_file_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let zone: PathBuf = dir.path().join("bad.toml");
    std::fs::write(&zone, "[zone]\norigin = \"x\"\nserial = 1\nservers = []\n").unwrap();
    let output = run(&[
        "node",
        "--zone",
        zone.to_str().unwrap(),
        "--grpc",
        "127.0.0.1:0",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "{}:4:11: servers must not be empty",
            zone.display()
        )),
        "{text}"
    );
}

#[test]
fn usage_errors_exit_2_and_help_is_complete() {
    let output = run(&["resolve"]);
    assert_eq!(output.status.code(), Some(2));
    let output = run(&["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    for command in ["demo", "node", "zone", "resolve", "bench"] {
        assert!(help.contains(command), "--help lists {command}: {help}");
    }
    let output = run(&["bench", "resolve", "--help"]);
    let help = stdout(&output);
    for flag in [
        "--server",
        "--names",
        "--concurrency",
        "--connections",
        "--duration",
        "--json",
    ] {
        assert!(help.contains(flag), "bench resolve --help lists {flag}");
    }
}

#[test]
fn a_url_flag_without_a_scheme_is_bad_usage_saying_what_to_write() {
    // docs/protocol.md §3: bad usage exits 2. Every URL flag shares one value parser, so
    // the commands that run servers refuse it before they start anything.
    let cases: [&[&str]; 8] = [
        &[
            "resolve",
            "--server",
            "127.0.0.1:7100",
            "analyst.finance.acme",
        ],
        &["search", "--server", "127.0.0.1:7100", "forecast"],
        &["zone", "dump", "--server", "127.0.0.1:7100", "finance.acme"],
        &["gateway", "--resolver", "127.0.0.1:7100"],
        &["node", "--grpc", "127.0.0.1:0", "--root", "127.0.0.1:7100"],
        &[
            "node",
            "--grpc",
            "127.0.0.1:0",
            "--secondary",
            "finance.acme=127.0.0.1:7100",
        ],
        &[
            "register",
            "--zone",
            "finance.acme",
            "--name",
            "x",
            "--url",
            "127.0.0.1:7100",
        ],
        &["bench", "call", "--url", "127.0.0.1:7100", "--tool", "x"],
    ];
    for args in cases {
        let output = run(args);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            text.contains("no scheme: write \"http://127.0.0.1:7100\""),
            "{args:?}: {text}"
        );
        assert!(!text.contains("relative URL without a base"), "{text}");
    }
    // Other bad URLs are bad usage too, each with its reason.
    let output = run(&["resolve", "--server", "ftp://127.0.0.1:7100", "a.b"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("scheme \"ftp\" is not http or https"),
        "{}",
        stderr(&output)
    );
    let output = run(&[
        "node",
        "--grpc",
        "127.0.0.1:0",
        "--secondary",
        "finance.acme",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("expected ZONE=PRIMARY_URL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unreachable_server_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let output = run(&[
        "resolve",
        "--server",
        "http://127.0.0.1:1",
        "analyst.finance.acme",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("error: cannot reach http://127.0.0.1:1"),
        "{}",
        stderr(&output)
    );
}

/// `--priority 0` and `--lease 0` are refused as the zone-file format refuses them, not
/// silently replaced by the defaults (0 is "unset" on the wire).
#[test]
fn register_refuses_priority_and_lease_out_of_range() {
    let base = [
        "register",
        "--server",
        "http://127.0.0.1:9",
        "--zone",
        "acme",
        "--name",
        "x",
        "--url",
        "http://127.0.0.1:9/mcp",
    ];
    for (flag, value, range) in [
        ("--priority", "0", "1..=65535"),
        ("--lease", "0", "1..=86400"),
        ("--lease", "86401", "1..=86400"),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let text = stderr(&output);
        assert!(
            text.contains(flag) && text.contains(value) && text.contains(range),
            "{flag} {value}: {text}"
        );
    }
}

/// `aop gateway --max-sessions-per-client` bounds what one client may hold open.
#[test]
fn gateway_session_bounds_are_flags() {
    let mut command = aop();
    command.args([
        "gateway",
        "--resolver",
        "http://127.0.0.1:9",
        "--listen",
        "127.0.0.1:0",
        "--max-sessions-per-client",
        "1",
    ]);
    let mut gateway = Running::spawn(command, false);
    let line = gateway.wait_for("MCP gateway at ");
    let url = line
        .split_whitespace()
        .nth(3)
        .expect("the gateway's URL")
        .to_string();
    assert_eq!(mcp_initialize(&url), 200);
    assert_eq!(mcp_initialize(&url), 429, "one session per client");
    gateway.interrupt();
    gateway.wait_exit();
}

/// `aop key new --json`: one document on stdout naming the key, its zone, the file written
/// and the node-config lines, which a node config loads as the same key as the file; nothing
/// on stderr. Without `--json` the lines go to stdout and the hints to stderr.
#[test]
fn key_new_json_names_the_key_its_file_and_the_config_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ci-bot.key");
    let output = run(&[
        "key",
        "new",
        "ci-bot",
        "--zone",
        "Finance.Acme",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "", "--json prints nothing on stderr");
    let document = json(&output);
    assert_eq!(document["name"], "ci-bot");
    assert_eq!(
        document["zone"], "finance.acme",
        "the zone's canonical name"
    );
    assert_eq!(document["file"], out.to_str().unwrap());
    assert_eq!(document["algorithm"], "hmac-sha256");
    let lines = document["config_lines"]
        .as_str()
        .expect("config_lines text");
    assert!(lines.starts_with("[[update_key]]\n"), "{lines}");

    // The lines, pasted into a node config, are the key the file holds.
    let config = dir.path().join("node.toml");
    std::fs::write(&config, format!("grpc = \"127.0.0.1:1\"\n{lines}")).unwrap();
    let loaded = aop::config::NodeConfigFile::load(&config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.update_key.len(), 1);
    let from_config = aop::keys::UpdateKey::try_from(loaded.update_key[0].clone()).unwrap();
    let from_file = aop::keys::UpdateKey::load_file(&out).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_config.to_key_file(), from_file.to_key_file());
    assert_eq!(from_file.zone().as_str(), "finance.acme");

    // The file is never overwritten, with or without --json.
    let again = run(&[
        "key",
        "new",
        "ci-bot",
        "--zone",
        "finance.acme",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("exists; not overwriting"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stdout(&again), "");

    // Without --json: the config lines on stdout, how to use the key on stderr.
    let plain = dir.path().join("plain.key");
    let output = run(&[
        "key",
        "new",
        "ci-bot",
        "--zone",
        "finance.acme",
        "--out",
        plain.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).starts_with("[[update_key]]\n"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains("keep it secret"),
        "{}",
        stderr(&output)
    );
}

/// `aop demo --tls`: every door speaks TLS with the demo's CA, the `--ca` it prints is
/// what clients need, and every example command it prints works as printed.
#[test]
fn demo_over_tls_prints_its_ca_and_its_examples_work_as_printed() {
    let mut command = aop();
    command
        .args(["demo", "--port-base", "0", "--tls"])
        .current_dir(repo());
    let mut demo = Running::spawn(command, false);
    demo.wait_for("ready:");
    let ca = demo
        .seen
        .iter()
        .find_map(|line| {
            line.strip_prefix("TLS: ")
                .and_then(|l| l.split("--ca ").nth(1))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the demo prints its --ca: {:?}", demo.seen))
        .to_string();
    assert!(Path::new(&ca).is_file(), "{ca}");
    let urls: Vec<String> = demo
        .seen
        .iter()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [index, _, url, ..] if index.parse::<usize>().is_ok() => Some(url.to_string()),
                _ => None,
            }
        })
        .collect();
    assert_eq!(urls.len(), 6, "{:?}", demo.seen);
    assert!(
        urls.iter().all(|url| url.starts_with("https://")),
        "{urls:?}"
    );

    let examples: Vec<String> = demo
        .seen
        .iter()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("aop ")
                .map(|rest| rest.split('#').next().unwrap_or("").trim().to_string())
        })
        .collect();
    assert!(examples.len() >= 6, "{examples:?}");
    for example in &examples {
        assert!(example.contains(&format!("--ca {ca}")), "{example}");
        let args: Vec<&str> = example.split_whitespace().collect();
        let output = run(&args);
        assert!(
            output.status.success(),
            "aop {example}: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }

    // Without the CA, the root's certificate does not verify; over http:// the TLS door
    // does not answer; both name the URL.
    let root = &urls[0];
    let output = run(&["resolve", "--server", root, "analyst.finance.acme"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(
        error.contains(root.as_str()) && error.contains("not signed by a CA"),
        "{error}"
    );
    let plaintext = root.replacen("https://", "http://", 1);
    let output = run(&["resolve", "--server", &plaintext, "analyst.finance.acme"]);
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains(&plaintext), "{error}");
    // Through AOP_CA, as the demo says.
    let output = aop()
        .args(["resolve", "--server", root, "analyst.finance.acme"])
        .env("AOP_CA", &ca)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));

    // The status pages and the gateway speak HTTPS with the demo's certificate.
    let https_after = |prefix: &str| {
        demo.seen
            .iter()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_else(|| panic!("no line starting {prefix:?}: {:?}", demo.seen))
    };
    let gateway_page = https_after("gateway ");
    let gateway_mcp = https_after("MCP gateway:");
    assert!(gateway_page.starts_with("https://"), "{gateway_page}");
    assert!(gateway_mcp.starts_with("https://"), "{gateway_mcp}");
    let tls = aop::tls::ClientTls::load(aop::tls::ClientTlsFiles {
        ca: Some(ca.clone().into()),
        ..aop::tls::ClientTlsFiles::default()
    })
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.http_config())
            .build()
            .unwrap();
        let healthz = http
            .get(format!("{gateway_page}healthz"))
            .send()
            .await
            .unwrap();
        let mcp = http
            .post(&gateway_mcp)
            .header("accept", "application/json, text/event-stream")
            .json(
                &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}}),
            )
            .send()
            .await
            .unwrap();
        (healthz.status().as_u16(), mcp.status().as_u16())
    });
    assert_eq!(status, (200, 200));

    demo.interrupt();
    assert!(demo.wait_exit().success());
    assert!(
        !Path::new(&ca).exists(),
        "the demo removes its CA when it stops"
    );
}
