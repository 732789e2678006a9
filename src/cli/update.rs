//! `aop register`, `aop deregister` and `aop key new`: live updates signed with a zone's
//! update key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rand::Rng;
use serde_json::json;
use tonic::Code;

use aop::grpc::{ClientError, NodeClient, connect_with, pb};
use aop::keys::UpdateKey;
use aop::name::Name;

#[derive(Debug, Args)]
#[command(
    disable_version_flag = true,
    after_help = "Examples:\n  \
    aop key new ci-bot --zone finance.acme --out ci-bot.key\n  \
    aop register --zone finance.acme --name forecaster2 --url http://127.0.0.1:9201/mcp \\\n      \
    --description \"Quarterly forecasts\" --tag finance --key-file ci-bot.key --keepalive\n\n\
    --name is relative to --zone unless it ends in a dot. The endpoint has its own lease: it \
    goes away `--lease` seconds after its last renewal, and the agent goes with its last \
    endpoint. Agent fields (description, tags, ...) are set when given; an agent defined in \
    the zone file keeps the file's fields. --server may be any node: one that does not hold \
    the zone passes the update to the zone's primary."
)]
pub struct RegisterArgs {
    /// gRPC URL of a node (the zone's primary, or any node that can find it).
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
    /// The zone to register in, such as finance.acme.
    #[arg(long, value_name = "ZONE")]
    zone: String,
    /// The agent's name, relative to --zone (or absolute with a trailing dot).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// The endpoint's MCP Streamable HTTP URL.
    #[arg(long, value_name = "MCP_URL", value_parser = super::parse_url)]
    url: String,
    /// The tool to call at the endpoint [default: the agent's first label].
    #[arg(long, value_name = "T")]
    tool: Option<String>,
    /// SRV-style priority, 1..=65535, lower first.
    #[arg(long, default_value_t = aop::record::DEFAULT_PRIORITY, value_name = "P",
          value_parser = clap::value_parser!(u16).range(1..))]
    priority: u16,
    /// SRV-style weight, 0..=65535, a share among endpoints of one priority.
    #[arg(long, default_value_t = aop::record::DEFAULT_WEIGHT, value_name = "W")]
    weight: u16,
    /// What the agent does (searchable).
    #[arg(long, value_name = "D")]
    description: Option<String>,
    /// A tag (repeatable); given tags replace the agent's tags.
    #[arg(long = "tag", value_name = "T")]
    tags: Vec<String>,
    /// A capability (repeatable); given capabilities replace the agent's.
    #[arg(long = "capability", value_name = "C")]
    capabilities: Vec<String>,
    /// The agent's version string.
    #[arg(long = "version", id = "agent_version", value_name = "V")]
    agent_version: Option<String>,
    /// JSON Schema file of the agent's input.
    #[arg(long, value_name = "FILE")]
    input_schema: Option<PathBuf>,
    /// Seconds the endpoint lives without a renewal (1..=86400).
    #[arg(long, default_value_t = aop::authority::live::DEFAULT_LEASE_SECS, value_name = "SECONDS",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(aop::authority::live::LEASE_MAX_SECS)))]
    lease: u32,
    /// The update key file (from `aop key new`).
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// Keep renewing at a third of the lease until stopped (Ctrl-C), then remove the
    /// endpoint. While the node cannot be reached it retries with backoff (first retry
    /// within a second, at most a third of the lease apart) and never gives up.
    #[arg(long)]
    keepalive: bool,
    /// How long a one-shot update keeps retrying while the node cannot be reached
    /// (connection refused, UNAVAILABLE, no answer); also each request's deadline.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = super::parse_duration)]
    timeout: Duration,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    aop deregister --zone finance.acme --name forecaster2 --url http://127.0.0.1:9201/mcp --key-file ci-bot.key")]
pub struct DeregisterArgs {
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
    #[arg(long, value_name = "ZONE")]
    zone: String,
    /// The agent's name, relative to --zone (or absolute with a trailing dot).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Remove only this endpoint [default: the whole agent].
    #[arg(long, value_name = "MCP_URL", value_parser = super::parse_url)]
    url: Option<String>,
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// How long to keep retrying while the node cannot be reached; also each request's
    /// deadline.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = super::parse_duration)]
    timeout: Duration,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new update key file and print the node-config lines that accept it.
    New(KeyNewArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    aop key new ci-bot --zone finance.acme --out ci-bot.key\n\n\
    Without --json, how to use the key goes to stderr and the node-config lines to stdout. \
    With --json, stdout is one document: {\"name\", \"zone\", \"file\", \"algorithm\", \
    \"config_lines\"}, where config_lines is the [[update_key]] text for a node config \
    (it holds the secret, as the file does).")]
pub struct KeyNewArgs {
    /// The key's name, such as ci-bot (letters, digits, inner hyphens; dots allowed).
    name: String,
    /// The zone the key may update.
    #[arg(long, value_name = "Z")]
    zone: String,
    /// Where to write the key file [default: NAME.key]; never overwritten.
    #[arg(long, value_name = "F")]
    out: Option<PathBuf>,
    /// Print one JSON document on stdout (and nothing on stderr).
    #[arg(long)]
    json: bool,
}

/// Names relative to the zone unless they end in a dot.
fn absolute(name: &str, zone: &Name) -> anyhow::Result<Name> {
    Name::parse_relative(name, zone).with_context(|| format!("invalid --name {name:?}"))
}

fn load_key(path: &Option<PathBuf>) -> anyhow::Result<Option<UpdateKey>> {
    Ok(match path {
        Some(path) => Some(UpdateKey::load_file(path)?),
        None => None,
    })
}

/// The node an update goes to, connected on first use and again after a failure that may
/// have been the connection's (a stalled HTTP/2 connection is not reused).
struct Link {
    server: String,
    client: Option<NodeClient>,
}

impl Link {
    fn new(server: &str) -> Link {
        Link {
            server: server.to_string(),
            client: None,
        }
    }

    /// Sends one request with `send`, within `timeout` (the connection included).
    async fn send<T>(
        &mut self,
        timeout: Duration,
        send: impl AsyncFnOnce(&mut NodeClient, Duration) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let client = match &mut self.client {
            Some(client) => client,
            None => {
                let tls = super::client_tls().map_err(|error| ClientError::InvalidUrl {
                    url: self.server.clone(),
                    reason: format!("{error:#}"),
                })?;
                let connected = tokio::time::timeout(timeout, connect_with(&self.server, &tls))
                    .await
                    .map_err(|_| ClientError::Timeout {
                        url: self.server.clone(),
                        timeout,
                    })??;
                self.client.insert(connected)
            }
        };
        let result = send(client, timeout).await;
        if let Err(error) = &result
            && node_unreachable(error)
        {
            self.client = None;
        }
        result
    }

    /// Sends until the node answers or `timeout` has passed, retrying with backoff while
    /// it cannot be reached (docs/protocol.md §9.3: a one-shot update rides out a short
    /// outage of the primary). Updates are idempotent, so a request that may have arrived
    /// is safe to send again: a register renews, a deregister finds nothing left.
    async fn send_within<T>(
        &mut self,
        timeout: Duration,
        mut send: impl AsyncFnMut(&mut NodeClient, Duration) -> Result<T, ClientError>,
    ) -> anyhow::Result<T> {
        let started = Instant::now();
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));
        let mut tries = 0u32;
        loop {
            tries += 1;
            let left = timeout.saturating_sub(started.elapsed());
            match self
                .send(left.max(Duration::from_millis(100)), &mut send)
                .await
            {
                Ok(answer) => {
                    if tries > 1 {
                        eprintln!(
                            "{} answered after {:.1} s ({tries} tries)",
                            self.server,
                            started.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(answer);
                }
                Err(error) if node_unreachable(&error) => {
                    let pause = backoff.next_pause();
                    if started.elapsed() + pause >= timeout {
                        bail!(
                            "{error} (tried {tries} time(s) over {:.1} s; --timeout {} s)",
                            started.elapsed().as_secs_f64(),
                            timeout.as_secs_f64()
                        );
                    }
                    if tries == 1 {
                        eprintln!(
                            "warning: {error}; retrying for up to {:.0} s (--timeout)",
                            timeout.as_secs_f64()
                        );
                    }
                    tokio::time::sleep(pause).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

/// Whether `error` says the node could not be reached or could not act on the update just
/// now (so the same update may succeed later), rather than the node's answer to it.
fn node_unreachable(error: &ClientError) -> bool {
    match error {
        ClientError::Unreachable { .. } | ClientError::Timeout { .. } => true,
        // UNAVAILABLE: a connection refused or reset, or a node that cannot store the
        // update now; UNKNOWN: the connection broke mid-request; DEADLINE_EXCEEDED and
        // CANCELLED: no answer in time.
        ClientError::Status { code, .. } => matches!(
            code,
            Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled
        ),
        // A bad URL, an unusable answer: sending again changes nothing.
        _ => false,
    }
}

/// Exponential backoff with ±20% jitter, so that many clients of a node that comes back do
/// not all retry in the same instant.
struct Backoff {
    first: Duration,
    next: Duration,
    cap: Duration,
}

impl Backoff {
    fn new(first: Duration, cap: Duration) -> Backoff {
        let first = first.min(cap);
        Backoff {
            first,
            next: first,
            cap,
        }
    }

    fn next_pause(&mut self) -> Duration {
        let pause = self.next.mul_f64(rand::rng().random_range(0.8..1.2));
        self.next = (self.next * 2).min(self.cap);
        pause.min(self.cap)
    }

    fn reset(&mut self) {
        self.next = self.first;
    }
}

pub async fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let zone =
        Name::parse(&args.zone).with_context(|| format!("invalid --zone {:?}", args.zone))?;
    let name = absolute(&args.name, &zone)?;
    let key = load_key(&args.key_file)?;
    let input_schema_json = match &args.input_schema {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let labels = |items: &Vec<String>| {
        (!items.is_empty()).then(|| pb::Labels {
            items: items.clone(),
        })
    };
    let body = pb::RegisterRequest {
        zone: zone.to_string(),
        name: name.to_string(),
        endpoint: Some(pb::Endpoint {
            url: args.url.clone(),
            tool: args.tool.clone().unwrap_or_default(),
            priority: u32::from(args.priority),
            weight: u32::from(args.weight),
            health: None,
        }),
        lease_seconds: args.lease,
        fields: Some(pb::AgentFields {
            description: args.description.clone(),
            tags: labels(&args.tags),
            capabilities: labels(&args.capabilities),
            version: args.agent_version.clone(),
            input_schema_json,
            ..pb::AgentFields::default()
        }),
    };
    let key = key.as_ref();
    let mut link = Link::new(&args.server);
    let register = async |client: &mut NodeClient, timeout: Duration| {
        client.register(body.clone(), key, Some(timeout)).await
    };
    if !args.keepalive {
        let response = link.send_within(args.timeout, register).await?;
        print_registered(&args, &response);
        return Ok(ExitCode::SUCCESS);
    }
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    let mut keeper = Keeper::new(&args.server, args.lease);
    let mut pause = Duration::ZERO;
    let mut registered = false;
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(pause) => {}
        }
        // Register again rather than Renew: it also brings back an endpoint whose lease ran
        // out while the node was unreachable.
        let outcome = tokio::select! {
            () = &mut stop => break,
            outcome = link.send(keeper.every, register) => outcome,
        };
        pause = keeper.after(&outcome);
        match outcome {
            Ok(response) if !registered => {
                registered = true;
                print_registered(&args, &response);
                // The lease the node granted sets the pace.
                pause = keeper.pace(response.lease_seconds);
                eprintln!(
                    "keeping {} alive: renewing every {:.1} s; Ctrl-C removes the endpoint",
                    args.url,
                    keeper.every.as_secs_f64()
                );
            }
            Ok(response) => tracing::debug!(serial = response.serial, "renewed"),
            // Refused (a bad key, a field over its limit): the node's answer will not change
            // by itself.
            Err(error) if !registered && !node_unreachable(&error) => return Err(error.into()),
            Err(_) => {}
        }
    }
    if !registered {
        bail!(
            "stopped before {} answered: nothing was registered",
            args.server
        );
    }
    let request = pb::DeregisterRequest {
        zone: zone.to_string(),
        name: name.to_string(),
        url: args.url.clone(),
    };
    link.send_within(args.timeout, async |client: &mut NodeClient, timeout| {
        client.deregister(request.clone(), key, Some(timeout)).await
    })
    .await
    .context("the endpoint was not removed; it stays until its lease ends")?;
    eprintln!("removed endpoint {} of {name}", args.url);
    Ok(ExitCode::SUCCESS)
}

/// `--keepalive`'s schedule and what it says: a renewal every `every` while the node
/// answers; while it cannot be reached, retries with backoff from half a second up to
/// `every` apart (docs/protocol.md §9.3), saying once when contact was lost and once when
/// it is back.
struct Keeper {
    server: String,
    every: Duration,
    backoff: Backoff,
    lost_since: Option<Instant>,
}

impl Keeper {
    fn new(server: &str, lease_seconds: u32) -> Keeper {
        let mut keeper = Keeper {
            server: server.to_string(),
            every: Duration::ZERO,
            backoff: Backoff::new(Duration::ZERO, Duration::ZERO),
            lost_since: None,
        };
        keeper.pace(lease_seconds);
        keeper
    }

    /// Paces renewals for a lease of `lease_seconds`: a third of it, so that a renewal may
    /// fail twice and the endpoint still lives. Returns the pause until the next renewal.
    fn pace(&mut self, lease_seconds: u32) -> Duration {
        self.every = Duration::from_millis(u64::from(lease_seconds) * 1000 / 3)
            .max(Duration::from_millis(300));
        self.backoff = Backoff::new(Duration::from_millis(500), self.every);
        self.every
    }

    /// The pause before the next attempt, after `outcome`.
    fn after<T>(&mut self, outcome: &Result<T, ClientError>) -> Duration {
        match outcome {
            Ok(_) => {
                if let Some(since) = self.lost_since.take() {
                    eprintln!(
                        "{} answers again after {:.1} s: the endpoint is registered",
                        self.server,
                        since.elapsed().as_secs_f64()
                    );
                }
                self.backoff.reset();
                self.every
            }
            Err(error) if node_unreachable(error) => {
                if self.lost_since.is_none() {
                    self.lost_since = Some(Instant::now());
                    eprintln!(
                        "warning: lost {}: {error}; retrying until it answers (backoff up to {:.1} s)",
                        self.server,
                        self.every.as_secs_f64()
                    );
                }
                self.backoff.next_pause()
            }
            Err(error) => {
                eprintln!(
                    "warning: renewal refused: {error}; trying again in {:.1} s",
                    self.every.as_secs_f64()
                );
                self.every
            }
        }
    }
}

fn print_registered(args: &RegisterArgs, response: &pb::RegisterResponse) {
    let agent = response.agent.clone().unwrap_or_default();
    if args.json {
        let document = json!({
            "name": agent.name,
            "zone": args.zone,
            "url": args.url,
            "lease_seconds": response.lease_seconds,
            "expires_unix_ms": response.expires_unix_ms,
            "changed": response.changed,
            "serial": response.serial,
            "endpoints": agent.endpoints.iter().map(|e| json!({
                "url": e.url, "tool": e.tool, "priority": e.priority, "weight": e.weight,
            })).collect::<Vec<_>>(),
            "served_by": response.served_by,
        });
        println!("{document:#}");
        return;
    }
    let verb = if response.changed {
        "registered"
    } else {
        "renewed"
    };
    println!("{verb:<10} {}", agent.name);
    println!(
        "endpoint   {} (lease {} s)",
        args.url, response.lease_seconds
    );
    println!("endpoints  {}", agent.endpoints.len());
    println!("serial     {}", response.serial);
    println!("served by  {}", response.served_by);
}

pub async fn deregister(args: DeregisterArgs) -> anyhow::Result<ExitCode> {
    let zone =
        Name::parse(&args.zone).with_context(|| format!("invalid --zone {:?}", args.zone))?;
    let name = absolute(&args.name, &zone)?;
    let key = load_key(&args.key_file)?;
    let request = pb::DeregisterRequest {
        zone: zone.to_string(),
        name: name.to_string(),
        url: args.url.clone().unwrap_or_default(),
    };
    let key = key.as_ref();
    let response = Link::new(&args.server)
        .send_within(args.timeout, async |client: &mut NodeClient, timeout| {
            client.deregister(request.clone(), key, Some(timeout)).await
        })
        .await?;
    if args.json {
        println!(
            "{:#}",
            json!({
                "name": name.to_string(),
                "endpoints_removed": response.endpoints_removed,
                "agent_removed": response.agent_removed,
                "serial": response.serial,
                "served_by": response.served_by,
            })
        );
    } else {
        let what = if response.agent_removed {
            "agent removed".to_string()
        } else {
            format!("{} endpoint(s) removed", response.endpoints_removed)
        };
        println!("{name}: {what}; zone serial {}", response.serial);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn key(command: KeyCommand) -> anyhow::Result<ExitCode> {
    let KeyCommand::New(args) = command;
    let key = UpdateKey::generate(&args.name, &args.zone)?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.key", args.name)));
    if out.exists() {
        bail!(
            "{} exists; not overwriting a key file (choose another --out)",
            out.display()
        );
    }
    write_secret_file(&out, &key.to_key_file())?;
    if args.json {
        let document = json!({
            "name": key.name(),
            "zone": key.zone().to_string(),
            "file": out.display().to_string(),
            "algorithm": aop::keys::ALGORITHM,
            "config_lines": key.node_config_lines(),
        });
        println!("{document:#}");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "wrote {} (keep it secret: it signs updates to zone {})",
        out.display(),
        key.zone()
    );
    eprintln!("use it with: aop register --key-file {} ...", out.display());
    eprintln!(
        "accept it on the zone's primary with `aop node --update-key {}`, or these node-config lines:",
        out.display()
    );
    print!("{}", key.node_config_lines());
    Ok(ExitCode::SUCCESS)
}

/// Creates the file readable by its owner only.
pub(crate) fn write_secret_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
