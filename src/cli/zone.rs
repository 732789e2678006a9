//! `aop zone check`: validate zone files, every error as FILE:LINE:COL: message.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use aop::zone::file::{self, ZoneFileError};

#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// Validate zone files; print every error (up to 100 per file) as FILE:LINE:COL: message.
    Check(CheckArgs),
    /// Print a live zone, registered agents included, as a zone file.
    Dump(DumpArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  aop zone dump --server http://127.0.0.1:7102 finance.acme > finance.acme.live.toml\n\n\
    Endpoints registered live are marked with a comment. The output passes `aop zone check`."
)]
pub struct DumpArgs {
    /// The zone, such as finance.acme.
    zone: String,
    /// gRPC URL of a node that serves the zone (primary or secondary).
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
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
const DUMP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let zone = aop::name::Name::parse(&args.zone)
        .with_context(|| format!("invalid zone {:?}", args.zone))?;
    let request = aop::authority::TransferRequest {
        zone: zone.clone(),
        since_serial: None,
        notify_url: String::new(),
    };
    let data = aop::grpc::connect(&args.server)
        .await?
        .transfer(&request, DUMP_TIMEOUT)
        .await
        .with_context(|| format!("cannot transfer zone {zone} from {}", args.server))?;
    let aop::authority::TransferData::Full { header, records } = data else {
        anyhow::bail!(
            "{} answered a full transfer of {zone} with changes",
            args.server
        );
    };
    let live =
        aop::authority::LiveZone::from_records(header, aop::authority::Role::Primary, records);
    let snapshot = live
        .snapshot()
        .map_err(|errors| anyhow::anyhow!("zone {zone} does not build: {errors:?}"))?;
    let note = |agent: &aop::name::Name, endpoint: &aop::record::Endpoint| {
        let held = live.agent(agent)?;
        held.live
            .contains(&endpoint.url)
            .then(|| "registered live".to_string())
    };
    print!("{}", aop::zone::dump::write_zone_file(&snapshot, &note));
    Ok(ExitCode::SUCCESS)
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
