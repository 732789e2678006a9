//! `aop register`, `aop deregister` and `aop key new`: live updates signed with a zone's
//! update key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use aop::grpc::{NodeClient, connect, pb};
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
    /// endpoint.
    #[arg(long)]
    keepalive: bool,
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

async fn client(server: &str) -> anyhow::Result<NodeClient> {
    Ok(connect(server).await?)
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
    let mut client = client(&args.server).await?;
    let response = send_register(&mut client, &body, key.as_ref()).await?;
    print_registered(&args, &response);
    if !args.keepalive {
        return Ok(ExitCode::SUCCESS);
    }
    let every = Duration::from_millis(u64::from(response.lease_seconds) * 1000 / 3)
        .max(Duration::from_millis(300));
    eprintln!(
        "keeping {} alive: renewing every {:.1} s; Ctrl-C removes the endpoint",
        args.url,
        every.as_secs_f64()
    );
    let stop = super::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(every) => {
                // Register again rather than Renew: it also brings back an endpoint whose
                // lease ran out while the node was unreachable.
                match send_register(&mut client, &body, key.as_ref()).await {
                    Ok(response) => tracing::debug!(serial = response.serial, "renewed"),
                    Err(error) => eprintln!("warning: renewal failed (will retry): {error:#}"),
                }
            }
        }
    }
    let request = pb::DeregisterRequest {
        zone: zone.to_string(),
        name: name.to_string(),
        url: args.url.clone(),
    };
    client
        .deregister(request, key.as_ref(), None)
        .await
        .context("the endpoint was not removed; it stays until its lease ends")?;
    eprintln!("removed endpoint {} of {name}", args.url);
    Ok(ExitCode::SUCCESS)
}

async fn send_register(
    client: &mut NodeClient,
    body: &pb::RegisterRequest,
    key: Option<&UpdateKey>,
) -> anyhow::Result<pb::RegisterResponse> {
    Ok(client.register(body.clone(), key, None).await?)
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
    let response = client(&args.server)
        .await?
        .deregister(request, key.as_ref(), None)
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
