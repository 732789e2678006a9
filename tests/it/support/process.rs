//! `aop node` in a child process, with a zone file and an update key in a temporary
//! directory: for tests of crashes, of what a node holds in memory (its RSS), and of limits
//! that need a process of their own (descriptor limits).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aop::grpc::pb;
use aop::keys::UpdateKey;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::AOP;

/// The zone every child node serves.
pub const ZONE: &str = "crash.test";
const DEADLINE: Duration = Duration::from_secs(30);

/// A zone file and an update key in a temporary directory.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub zone_file: PathBuf,
    pub key_file: PathBuf,
    pub key: UpdateKey,
}

pub async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let zone_file = dir.path().join("crash.test.toml");
    std::fs::write(
        &zone_file,
        r#"
[zone]
origin = "crash.test"
serial = 1
ttl = 60
negative_ttl = 30
refresh = 60
retry = 10
expire = 86400
contact = "ops@crash.test"
servers = [{ grpc = "http://127.0.0.1:7999" }]

[[agent]]
name = "fixed"
description = "Declared in the zone file."
endpoints = [{ url = "http://127.0.0.1:9/mcp" }]
"#,
    )
    .expect("write the zone file");
    let key_file = dir.path().join("crash-key.toml");
    let output = Command::new(AOP)
        .args(["key", "new", "crash-key", "--zone", ZONE, "--out"])
        .arg(&key_file)
        .output()
        .await
        .expect("run aop key new");
    assert!(
        output.status.success(),
        "aop key new failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = UpdateKey::load_file(&key_file).expect("load the key aop key new wrote");
    Setup {
        dir,
        zone_file,
        key_file,
        key,
    }
}

/// A Register of `name` in `zone` with one endpoint of its own
/// (`http://127.0.0.1:9/mcp/<name>`, nothing listens there), `lease` seconds and a
/// description: unsigned, for the tests to sign.
pub fn register_body(zone: &str, name: &str, lease: u32, description: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        zone: zone.into(),
        name: name.into(),
        endpoint: Some(pb::Endpoint {
            url: format!("http://127.0.0.1:9/mcp/{name}"),
            tool: String::new(),
            priority: 10,
            weight: 1,
            health: None,
        }),
        lease_seconds: lease,
        fields: Some(pb::AgentFields {
            description: Some(description.into()),
            ..pb::AgentFields::default()
        }),
    }
}

/// `aop node` in a child process (SIGKILLed when dropped). Its stderr is read all along, so
/// the node never blocks on a full pipe, and kept for failure messages.
pub struct NodeProcess {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl NodeProcess {
    pub fn spawn(setup: &Setup, data_dir: &Path, grpc: SocketAddr) -> NodeProcess {
        Self::spawn_with(setup, data_dir, grpc, &[])
    }

    /// The node, with `extra` flags after the usual ones.
    pub fn spawn_with(
        setup: &Setup,
        data_dir: &Path,
        grpc: SocketAddr,
        extra: &[&str],
    ) -> NodeProcess {
        let mut command = Command::new(AOP);
        command
            .arg("node")
            .arg("--zone")
            .arg(&setup.zone_file)
            .arg("--grpc")
            .arg(grpc.to_string())
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--update-key")
            .arg(&setup.key_file)
            .args(extra);
        Self::start(command)
    }

    /// A node started by `argv` (a shell that sets a limit, then execs `aop node`, say).
    pub fn spawn_command(argv: &[&str]) -> NodeProcess {
        let mut command = Command::new(argv[0]);
        command.args(&argv[1..]);
        Self::start(command)
    }

    fn start(mut command: Command) -> NodeProcess {
        let mut child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start aop node");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let kept = Arc::clone(&stderr);
        let reader = tokio::spawn(async move {
            let mut pipe = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = pipe.next_line().await {
                let mut text = kept.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
                drop(text);
                let _ = tx.send(line);
            }
        });
        NodeProcess {
            child,
            lines,
            stderr,
            reader: Some(reader),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the node is running")
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the node's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status")
    }

    /// Resident memory once it stops growing: sampled every 100 ms until five samples in a
    /// row lie within 256 KiB of each other (the node has stopped producing), at most
    /// `limit`.
    pub async fn settled_rss_kib(&self, limit: Duration) -> u64 {
        let started = std::time::Instant::now();
        let mut samples: Vec<u64> = Vec::new();
        loop {
            samples.push(self.rss_kib());
            if samples.len() >= 5 {
                let last = &samples[samples.len() - 5..];
                let (low, high) = (last.iter().min(), last.iter().max());
                if let (Some(low), Some(high)) = (low, high)
                    && high - low <= 256
                {
                    return *high;
                }
            }
            assert!(
                started.elapsed() < limit,
                "the node's memory did not settle within {limit:?}: {samples:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Descriptors the process has open now.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }

    /// CPU time the process used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read the node's /proc stat");
        // Fields after the command (which may hold spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks =
            |index: usize| -> u64 { fields.get(index).and_then(|f| f.parse().ok()).unwrap_or(0) };
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the state field.
        let hz = 100;
        Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the "node ready" line and returns the gRPC URL it names, or for the
    /// process to exit first and returns its status and stderr.
    pub async fn started(&mut self) -> Result<String, (ExitStatus, String)> {
        let started = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) if line.contains("node ready") => {
                    let url = line
                        .split_whitespace()
                        .find_map(|field| field.strip_prefix("grpc="))
                        .unwrap_or_else(|| panic!("no grpc= in the ready line: {line}"));
                    return Ok(url.to_string());
                }
                Ok(Some(_)) => {}
                Ok(None) => return Err(self.exit().await),
                Err(_) => panic!(
                    "the node neither became ready nor exited within {DEADLINE:?}; stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// Waits for a stderr line that contains `needle` and returns it (a child that is not a
    /// node, such as `aop register --keepalive`, says what it does there).
    pub async fn line_containing(&mut self, needle: &str) -> String {
        let started = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => {}
                Ok(None) => panic!(
                    "the process ended before saying {needle:?}; stderr:\n{}",
                    self.stderr()
                ),
                Err(_) => panic!(
                    "no line with {needle:?} within {DEADLINE:?}; stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    pub async fn ready(&mut self) -> String {
        match self.started().await {
            Ok(url) => url,
            Err((status, stderr)) => {
                panic!("the node exited before it was ready ({status}); stderr:\n{stderr}")
            }
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("the node is running");
        aop::sys::send_signal(pid, signal)
            .unwrap_or_else(|error| panic!("kill({pid}, {signal}) failed: {error}"));
    }

    /// Waits for the process to exit and its stderr to end; returns both.
    pub async fn exit(&mut self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the node did not exit within {DEADLINE:?}; stderr:\n{}",
                    self.stderr()
                )
            })
            .expect("wait for the node");
        if let Some(reader) = self.reader.take() {
            tokio::time::timeout(DEADLINE, reader)
                .await
                .expect("the node's stderr ends after it exits")
                .expect("the stderr reader does not panic");
        }
        (status, self.stderr())
    }
}
