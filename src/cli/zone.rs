//! `aop zone check` and `aop zone dump`: validate zone files (every error as
//! FILE:LINE:COL: message), and print a live zone as a zone file or a JSON document.
//!
//! A dump is a full transfer of the zone, the records with their provenance (file or live),
//! which no lookup RPC carries. Transfers are not forwarded, so when the node asked does not
//! serve the zone the dump finds the zone's servers the way `GetZone` with `recursive` does
//! (through the tree, from that node) and transfers from them: any node of the federation
//! will do as `--server`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use aop::authority::{LiveZone, Role, TransferData, TransferRequest};
use aop::grpc::ClientError;
use aop::name::Name;
use aop::record::{LiveRecord, ServerAddress, ZoneHeader};
use aop::zone::ZoneSnapshot;
use aop::zone::file::{self, ZoneFileError};

#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// Validate zone files; print every error (up to 100 per file) as FILE:LINE:COL: message.
    Check(CheckArgs),
    /// Print a live zone, registered agents included, as a zone file (or JSON); any node
    /// of the federation finds it.
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    aop zone dump --server http://127.0.0.1:7102 finance.acme > finance.acme.live.toml\n  \
    aop zone dump finance.acme --json    # asked of the demo root, which finds the zone's servers\n\n\
    Endpoints registered live are marked with a comment. The output passes `aop zone check`.\n\n\
    --json prints one document: origin, serial, ttl, negative_ttl, refresh, retry, expire, \
    contact, servers [{grpc, dns}], agents [{name, source (file or live), description, tags, \
    capabilities, version, ttl, timeout_ms, max_retries, endpoints [{url, tool, priority, \
    weight, live}], input_schema, output_schema, metadata}], aliases [{name, target, ttl}], \
    delegations [{zone, servers, ttl}] and transferred_from (the server the zone came from). \
    Names are absolute; a ttl of null means the zone's.")]
pub struct DumpArgs {
    /// The zone, such as finance.acme.
    zone: String,
    /// gRPC URL of any node: one that does not serve the zone finds the zone's servers
    /// through the tree (as a recursive GetZone does) and the zone is transferred from them.
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
    /// Print the zone as one JSON document on stdout instead of a zone file.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Zone files to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

fn count(n: usize, noun: &str) -> String {
    match (n, noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

pub async fn run(command: ZoneCommand) -> anyhow::Result<ExitCode> {
    match command {
        ZoneCommand::Check(args) => check(args),
        ZoneCommand::Dump(args) => dump(args).await,
    }
}

/// How long a dump's transfer may take.
const DUMP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long finding the zone's servers may take.
const LOCATE_TIMEOUT: Duration = Duration::from_secs(10);

async fn dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let zone = Name::parse(&args.zone).with_context(|| format!("invalid zone {:?}", args.zone))?;
    let (from, header, records) = transfer_from_anywhere(&args.server, &zone).await?;
    let live = LiveZone::from_records(header, Role::Primary, records);
    let snapshot = live
        .snapshot()
        .map_err(|errors| anyhow::anyhow!("zone {zone} from {from} does not build: {errors:?}"))?;
    if args.json {
        println!("{:#}", zone_json(&live, &snapshot, &from));
        return Ok(ExitCode::SUCCESS);
    }
    let note = |agent: &Name, endpoint: &aop::record::Endpoint| {
        let held = live.agent(agent)?;
        held.live
            .contains(&endpoint.url)
            .then(|| "registered live".to_string())
    };
    print!("{}", aop::zone::dump::write_zone_file(&snapshot, &note));
    Ok(ExitCode::SUCCESS)
}

/// A full transfer of `zone`: from `server` when it serves the zone, else from the zone's
/// servers, which `server` finds through the tree (recursive GetZone), tried in the order
/// the zone lists them (primary first). Returns the URL the zone came from with the data.
async fn transfer_from_anywhere(
    server: &str,
    zone: &Name,
) -> anyhow::Result<(String, ZoneHeader, Vec<LiveRecord>)> {
    let mut client = super::connect(server).await?;
    let error = match full_transfer(&mut client, zone).await {
        Ok((header, records)) => return Ok((server.to_string(), header, records)),
        Err(error) if error.is_not_found() => error,
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context(format!("cannot transfer zone {zone} from {server}")));
        }
    };
    tracing::debug!(%zone, server, error = %error, "not served there; finding the zone's servers");
    let summary = client
        .get_zone(zone.as_str(), true, Some(LOCATE_TIMEOUT))
        .await
        .with_context(|| {
            format!(
                "{server} does not serve zone {zone}, and cannot find its servers through the tree"
            )
        })?;
    let mut failures = Vec::new();
    for address in &summary.servers {
        let url = address.grpc.trim_end_matches('/');
        let attempt = async {
            let mut client = super::connect(url).await?;
            Ok::<_, anyhow::Error>(full_transfer(&mut client, zone).await?)
        };
        match attempt.await {
            Ok((header, records)) => return Ok((url.to_string(), header, records)),
            Err(error) => failures.push(format!("{url}: {error}")),
        }
    }
    if failures.is_empty() {
        anyhow::bail!(
            "{server} does not serve zone {zone}, and the zone names no servers to transfer it from"
        );
    }
    anyhow::bail!(
        "cannot transfer zone {zone} from any of its servers (found through {server}):\n{}",
        failures.join("\n")
    )
}

/// The zone's records, read whole from one node.
async fn full_transfer(
    client: &mut aop::grpc::NodeClient,
    zone: &Name,
) -> Result<(ZoneHeader, Vec<LiveRecord>), ClientError> {
    let request = TransferRequest {
        zone: zone.clone(),
        since_serial: None,
        notify_url: String::new(),
    };
    match client.transfer(&request, DUMP_TIMEOUT).await? {
        TransferData::Full { header, records } => Ok((header, records)),
        // Asked for no serial, a node owes a full transfer.
        _ => Err(ClientError::BadAnswer {
            url: client.url().to_string(),
            reason: format!("a full transfer of {zone} was asked for and changes came"),
        }),
    }
}

/// The zone as `aop zone dump --json` prints it (the shape is in the command's help and
/// docs/protocol.md §3): the header, every agent with its source and each endpoint's,
/// aliases and delegations, names absolute.
fn zone_json(live: &LiveZone, zone: &ZoneSnapshot, from: &str) -> Value {
    let header = zone.header();
    let servers = |servers: &[ServerAddress]| -> Vec<Value> {
        servers
            .iter()
            .map(|s| json!({"grpc": s.grpc, "dns": s.dns.map(|d| d.to_string())}))
            .collect()
    };
    let sources = live.describe(zone.agent_names());
    let agents: Vec<Value> = sources
        .iter()
        .filter_map(|source| {
            let agent = zone.agent(source.name.as_str())?;
            let endpoints: Vec<Value> = agent
                .endpoints
                .iter()
                .map(|e| {
                    let live = source.endpoints.iter().any(|s| s.url == e.url && s.live);
                    json!({
                        "url": e.url,
                        "tool": e.tool,
                        "priority": e.priority,
                        "weight": e.weight,
                        "live": live,
                    })
                })
                .collect();
            Some(json!({
                "name": agent.name.to_string(),
                "source": if source.from_file { "file" } else { "live" },
                "description": agent.description,
                "tags": agent.tags,
                "capabilities": agent.capabilities,
                "version": agent.version,
                "ttl": agent.ttl,
                "timeout_ms": agent.timeout_ms,
                "max_retries": agent.max_retries,
                "endpoints": endpoints,
                "input_schema": agent.input_schema.value(),
                "output_schema": agent.output_schema.as_ref().map(|s| s.value()),
                "metadata": agent.metadata.as_ref().map(|m| m.value()),
            }))
        })
        .collect();
    json!({
        "origin": header.origin.to_string(),
        "serial": header.serial,
        "ttl": header.ttl,
        "negative_ttl": header.negative_ttl,
        "refresh": header.refresh,
        "retry": header.retry,
        "expire": header.expire,
        "contact": header.contact,
        "servers": servers(&header.servers),
        "agents": agents,
        "aliases": zone.aliases().iter().map(|a| json!({
            "name": a.name.to_string(),
            "target": a.target.to_string(),
            "ttl": a.ttl,
        })).collect::<Vec<_>>(),
        "delegations": zone.delegations().map(|d| json!({
            "zone": d.zone.to_string(),
            "servers": servers(&d.servers),
            "ttl": d.ttl,
        })).collect::<Vec<_>>(),
        "transferred_from": from,
    })
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    let mut failed_files = 0;
    let mut error_count = 0;
    let mut error_lines = Vec::new();
    for path in &args.files {
        match file::load(path) {
            Ok(zone) => {
                if !args.json {
                    println!(
                        "ok  {}  zone {}, serial {}, {}, {}, {}",
                        path.display(),
                        zone.origin(),
                        zone.serial(),
                        count(zone.agent_count(), "agent"),
                        count(zone.alias_count(), "alias"),
                        count(zone.delegations().count(), "delegation"),
                    );
                }
                reports.push(json!({
                    "file": path.display().to_string(),
                    "ok": true,
                    "zone": zone.origin().to_string(),
                    "serial": zone.serial(),
                    "agents": zone.agent_count(),
                    "aliases": zone.alias_count(),
                    "delegations": zone.delegations().count(),
                    "errors": [],
                }));
            }
            Err(error) => {
                failed_files += 1;
                let diagnostics: Vec<_> = error
                    .diagnostics()
                    .iter()
                    .map(|d| json!({"line": d.line, "column": d.column, "message": d.message}))
                    .collect();
                error_count += match &error {
                    ZoneFileError::Invalid {
                        diagnostics,
                        omitted,
                        ..
                    } => diagnostics.len() + omitted,
                    _ => 1,
                };
                let message = match &error {
                    ZoneFileError::Read { .. } => Some(error.to_string()),
                    _ => None,
                };
                error_lines.extend(error.to_string().lines().map(str::to_string));
                reports.push(json!({
                    "file": path.display().to_string(),
                    "ok": false,
                    "errors": diagnostics,
                    "error": message,
                }));
            }
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "files": reports }))?
        );
    }
    if failed_files == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "error: {error_count} error{} in {failed_files} of {} zone file{}",
        if error_count == 1 { "" } else { "s" },
        args.files.len(),
        if args.files.len() == 1 { "" } else { "s" },
    );
    for line in error_lines {
        eprintln!("{line}");
    }
    Ok(ExitCode::FAILURE)
}
