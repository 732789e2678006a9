//! Interop with outside programs: `dig` and Unbound (Debian's `dnsutils` and `unbound`).
//!
//! These tests are ignored by `cargo test`, which needs nothing but the toolchain; the
//! interop stage (`.ci/interop`, run by `.ci/run`) installs the programs and runs them with
//! `cargo test --test interop -- --ignored dns_clients::`. The Unbound test binds port 53 on 127.0.0.2-5,
//! because referral glue carries addresses, not ports (docs/protocol.md §5): it needs root,
//! as CI has.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aop::dns::DnsListener;
use aop::node::{GrpcListener, NodeHandle, ServeOptions};

use crate::support::{bind, loopback, zone};

async fn node(
    id: &str,
    zones: Vec<aop::zone::ZoneSnapshot>,
    grpc: GrpcListener,
    dns: SocketAddr,
) -> NodeHandle {
    let dns = DnsListener::bind(dns)
        .await
        .unwrap_or_else(|e| panic!("{e} (the Unbound test needs root to bind port 53)"));
    grpc.serve_with(ServeOptions::new(zones).node_id(id).dns(dns))
        .expect("node serves")
}

/// Runs dig and returns its stdout, failing with its stderr.
fn dig(args: &[&str]) -> String {
    let output = Command::new("dig")
        .args(args)
        .output()
        .expect("dig is installed (dnsutils)");
    assert!(
        output.status.success(),
        "dig {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn finance_zone(grpc_urls: [&str; 2], dns: [&str; 2]) -> String {
    format!(
        r#"
[zone]
origin = "finance.acme"
serial = 2026112401
ttl = 300
negative_ttl = 60
contact = "ops@acme.example"
servers = [{{ grpc = "{}", dns = "{}" }}, {{ grpc = "{}", dns = "{}" }}]

[[agent]]
name = "analyst"
description = "Financial analyst: ratios, forecasts, filings."
tags = ["finance", "analysis"]
capabilities = ["forecast", "summarize"]
version = "1.4.0"
ttl = 120
endpoints = [
  {{ url = "http://127.0.0.1:9101/mcp", priority = 10, weight = 3 }},
  {{ url = "http://127.0.0.1:9102/mcp", priority = 10, weight = 1 }},
]

[[agent]]
name = "writer"
description = "Writer: turns notes into outlines."
capabilities = ["outline"]
endpoints = [{{ url = "http://127.0.0.1:9103/mcp" }}]

[[alias]]
name = "forecaster"
target = "analyst"
"#,
        grpc_urls[0], dns[0], grpc_urls[1], dns[1]
    )
}

/// A node serving finance.acme with its DNS door on a free port of 127.0.0.1.
async fn finance_node(id: &str) -> (NodeHandle, SocketAddr) {
    let listener = bind().await;
    let url = listener.url();
    let dns_listener = DnsListener::bind(loopback()).await.unwrap();
    let addr = dns_listener.local_addr();
    let zone_text = finance_zone(
        [&url, "http://127.0.0.1:1"],
        [&addr.to_string(), "127.0.0.9:53"],
    );
    let options = ServeOptions::new(vec![zone(&zone_text)])
        .node_id(id)
        .dns(dns_listener);
    (listener.serve_with(options).expect("node serves"), addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs dig (dnsutils)"]
async fn dig_reads_agents_from_a_node() {
    let (node, addr) = finance_node("dig").await;
    let port = addr.port().to_string();
    let server = format!("@{}", addr.ip());
    let base = [
        server.as_str(),
        "-p",
        port.as_str(),
        "+norec",
        "+time=2",
        "+tries=2",
    ];
    let with = |extra: &[&str]| -> String {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        tokio::task::block_in_place(|| dig(&args))
    };

    let srv = with(&["+short", "_mcp._tcp.analyst.finance.acme", "SRV"]);
    let mut lines: Vec<&str> = srv.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "10 1 9102 analyst.finance.acme.",
            "10 3 9101 analyst.finance.acme."
        ]
    );

    let txt = with(&["+short", "analyst.finance.acme", "TXT"]);
    assert!(txt.contains("\"v=aop1\""), "{txt}");
    assert!(txt.contains("\"capabilities=forecast,summarize\""), "{txt}");
    assert!(txt.contains("\"url2=http://127.0.0.1:9102/mcp\""), "{txt}");

    let svcb = with(&["+short", "analyst.finance.acme", "SVCB"]);
    assert!(
        svcb.contains("alpn=\"mcp\" port=9101 ipv4hint=127.0.0.1"),
        "{svcb}"
    );

    let cname = with(&["+short", "forecaster.finance.acme", "TXT"]);
    assert!(cname.starts_with("analyst.finance.acme.\n"), "{cname}");

    let full = with(&["nobody.finance.acme", "TXT"]);
    assert!(full.contains("status: NXDOMAIN"), "{full}");
    assert!(full.contains("flags: qr aa;"), "{full}");
    assert!(
        full.contains("finance.acme.\t\t60\tIN\tSOA"),
        "negative TTL 60: {full}"
    );

    let nodata = with(&["_tcp.analyst.finance.acme", "SRV"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );

    let tcp = with(&["+tcp", "+short", "_index._agents.finance.acme", "TXT"]);
    assert_eq!(tcp.trim(), "\"agents=analyst:mcp,writer:mcp\"");

    let refused = with(&["example.com", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    node.shutdown().await.unwrap();
}

/// Unbound, run in the foreground, killed when dropped.
struct Unbound(Child);

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs unbound and dig, and root to bind 127.0.0.2-5 port 53"]
async fn unbound_resolves_agent_names_through_our_referrals() {
    let (root_grpc, acme_grpc, fin1_grpc, fin2_grpc) =
        (bind().await, bind().await, bind().await, bind().await);
    let (root_url, acme_url, fin1_url, fin2_url) = (
        root_grpc.url(),
        acme_grpc.url(),
        fin1_grpc.url(),
        fin2_grpc.url(),
    );
    let root_zone = format!(
        r#"
[zone]
origin = "."
serial = 1
servers = [{{ grpc = "{root_url}", dns = "127.0.0.2:53" }}]
[[delegation]]
zone = "acme"
servers = [{{ grpc = "{acme_url}", dns = "127.0.0.3:53" }}]
"#
    );
    let acme_zone = format!(
        r#"
[zone]
origin = "acme"
serial = 1
servers = [{{ grpc = "{acme_url}", dns = "127.0.0.3:53" }}]
[[delegation]]
zone = "finance"
servers = [{{ grpc = "{fin1_url}", dns = "127.0.0.4:53" }}, {{ grpc = "{fin2_url}", dns = "127.0.0.5:53" }}]
"#
    );
    let finance = finance_zone([&fin1_url, &fin2_url], ["127.0.0.4:53", "127.0.0.5:53"]);
    let at = |last: u8| SocketAddr::from(([127, 0, 0, last], 53));
    let nodes = vec![
        node("root", vec![zone(&root_zone)], root_grpc, at(2)).await,
        node("acme", vec![zone(&acme_zone)], acme_grpc, at(3)).await,
        node("finance-1", vec![zone(&finance)], fin1_grpc, at(4)).await,
        node("finance-2", vec![zone(&finance)], fin2_grpc, at(5)).await,
    ];

    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let config = dir.path().join("unbound.conf");
    std::fs::write(
        &config,
        format!(
            r#"server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  do-daemonize: no
  use-syslog: no
  logfile: ""
  verbosity: 1
  username: ""
  chroot: ""
  directory: "{dir}"
  pidfile: "{dir}/unbound.pid"
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  qname-minimisation: yes
stub-zone:
  name: "."
  stub-addr: 127.0.0.2@53
remote-control:
  control-enable: no
"#,
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let _unbound = Unbound(
        Command::new("unbound")
            .args(["-d", "-c", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("unbound is installed"),
    );
    let port_text = port.to_string();
    let ask = |name: &str, rtype: &str| -> String {
        tokio::task::block_in_place(|| {
            dig(&[
                "@127.0.0.1",
                "-p",
                &port_text,
                "+time=2",
                "+tries=1",
                "+short",
                name,
                rtype,
            ])
        })
    };
    // Unbound takes a moment to start: ask until it answers, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let srv = loop {
        let output = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port_text,
                "+time=1",
                "+tries=1",
                "+short",
                "_mcp._tcp.analyst.finance.acme",
                "SRV",
            ])
            .output()
            .expect("dig");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && !text.trim().is_empty() {
            break text;
        }
        assert!(Instant::now() < deadline, "unbound never answered: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut lines: Vec<&str> = srv.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "10 1 9102 analyst.finance.acme.",
            "10 3 9101 analyst.finance.acme."
        ]
    );

    let txt = ask("analyst.finance.acme", "TXT");
    assert!(txt.contains("\"v=aop1\""), "{txt}");
    assert!(
        txt.contains("\"description=Financial analyst: ratios, forecasts, filings.\""),
        "{txt}"
    );
    let alias = ask("forecaster.finance.acme", "TXT");
    assert!(
        alias.contains("analyst.finance.acme.") && alias.contains("v=aop1"),
        "{alias}"
    );
    let full = tokio::task::block_in_place(|| {
        dig(&["@127.0.0.1", "-p", &port_text, "nobody.finance.acme", "TXT"])
    });
    assert!(full.contains("status: NXDOMAIN"), "{full}");
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "interop stage: needs the dns-aid client (AOP_INTEROP_PYTHON: a Python with dns-aid installed)"]
async fn the_dns_aid_reference_client_discovers_a_zones_agents() {
    let (node, addr) = finance_node("dns-aid").await;

    let python = std::env::var("AOP_INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/dns_aid_discover.py");
    let port = addr.port().to_string();
    let output = tokio::task::block_in_place(|| {
        Command::new(&python)
            .arg(&script)
            .args([
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--domain",
                "finance.acme",
            ])
            .output()
            .expect("run the dns-aid client")
    });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "dns-aid client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut agents: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("AGENT "))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    agents.sort_by_key(|a| a["name"].as_str().unwrap_or_default().to_string());
    assert_eq!(agents.len(), 2, "{stdout}");
    let analyst = &agents[0];
    assert_eq!(analyst["name"], "analyst");
    assert_eq!(analyst["protocol"], "mcp");
    assert_eq!(analyst["target_host"], "analyst.finance.acme");
    assert_eq!(
        analyst["port"], 9101,
        "the preferred endpoint (priority 10, weight 3)"
    );
    assert_eq!(analyst["ipv4_hint"], "127.0.0.1");
    assert_eq!(
        analyst["capabilities"],
        serde_json::json!(["forecast", "summarize"])
    );
    let writer = &agents[1];
    assert_eq!(writer["name"], "writer");
    assert_eq!(writer["port"], 9103);
    assert_eq!(writer["capabilities"], serde_json::json!(["outline"]));
    node.shutdown().await.unwrap();
}
