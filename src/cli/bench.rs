//! `aop bench`: load generators that print figures.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use aop::bench::{self, BenchReport, NamePick, ResolveBench, Target};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Resolve names from a file as fast as the node answers, C in flight over K connections.
    Resolve(ResolveArgs),
    /// Call an MCP tool (through the gateway, or any MCP server), C in flight over K sessions.
    #[command(after_help = "Examples:\n  \
        aop bench call --tool sleeper_globex --args '{\"task\":\"t\",\"ms\":1000}' --calls 1000 --concurrency 1000\n  \
        aop bench call --tool discover_agents --duration 10s --concurrency 8\n  \
        aop bench call --url http://127.0.0.1:7403/mcp --tool analyst --args '{\"task\":\"1 2 3\"}'")]
    Call(CallArgs),
    /// Durable registrations per second at a zone's primary; with --secondary, how long each
    /// change takes to reach a secondary.
    #[command(after_help = "Example:\n  \
        aop bench register --server http://127.0.0.1:7102 --zone finance.acme --key-file ci-bot.key \\\n      \
        --count 20000 --concurrency 64 --secondary http://127.0.0.1:7103")]
    Register(RegisterArgs),
    /// Federated searches from a file of queries, C in flight over K connections.
    #[command(after_help = "Example:\n  \
        aop bench search --server http://127.0.0.1:7100 --queries queries.txt --zone acme --duration 10s\n  \
        aop bench search --server http://127.0.0.1:7100 --queries queries.txt --zone acme --churn 20 --key-file acme.key")]
    Search(SearchArgs),
    /// What checking one bearer token costs the gateway with --auth: static tokens and JWTs
    /// (ES256, EdDSA, RS256), in microseconds per check.
    #[command(after_help = "Example:\n  aop bench auth --checks 5000")]
    Auth(AuthArgs),
}

#[derive(Debug, Args)]
pub struct AuthArgs {
    /// Checks of each kind of token.
    #[arg(long, default_value_t = 2000, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    checks: u64,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// gRPC URL of the node to load (it fans each search out below --zone).
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
    /// File of queries, one per line (blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    queries: PathBuf,
    /// Scope of every search (default: the whole tree).
    #[arg(long, value_name = "ZONE", default_value = "")]
    zone: String,
    /// Hits per search.
    #[arg(long, default_value_t = 10, value_name = "N")]
    limit: u32,
    /// Searches in flight.
    #[arg(long, default_value_t = 8, value_name = "C")]
    concurrency: usize,
    /// HTTP/2 connections the searches share.
    #[arg(long, default_value_t = 2, value_name = "K")]
    connections: usize,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration, value_name = "D")]
    duration: Duration,
    /// Deadline of one search (zones not answering by then make the answer partial).
    #[arg(long, default_value = "1s", value_parser = super::parse_duration, value_name = "D")]
    timeout: Duration,
    /// Changes per second to --zone during the run (registrations of new agents and
    /// deregistrations of them, one at a time), to measure search while the zone changes;
    /// needs --key-file.
    #[arg(long, value_name = "N", requires = "key_file", value_parser = clap::value_parser!(u32).range(1..=1_000))]
    churn: Option<u32>,
    /// The zone's update key file, for --churn.
    #[arg(long, value_name = "F")]
    key_file: Option<PathBuf>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// gRPC URL of the zone's primary.
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
    #[arg(long, value_name = "ZONE")]
    zone: String,
    /// The zone's update key file.
    #[arg(long, value_name = "F")]
    key_file: std::path::PathBuf,
    /// Registrations in flight.
    #[arg(long, default_value_t = 64, value_name = "C")]
    concurrency: usize,
    /// Registrations in all (each a new agent with a one-hour lease).
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    count: u64,
    /// gRPC URL of a secondary of the zone: time each change's arrival there.
    #[arg(long, value_name = "URL", value_parser = super::parse_url)]
    secondary: Option<String>,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// MCP endpoint (Streamable HTTP) to load.
    #[arg(long, default_value = "http://127.0.0.1:8000/mcp", value_name = "URL", value_parser = super::parse_url)]
    url: String,
    /// Tool to call.
    #[arg(long, value_name = "NAME")]
    tool: String,
    /// Arguments, a JSON object.
    #[arg(long, default_value = "{}", value_name = "JSON")]
    args: String,
    /// Calls in flight.
    #[arg(long, default_value_t = 16, value_name = "C")]
    concurrency: usize,
    /// MCP sessions the calls share.
    #[arg(long, default_value_t = 1, value_name = "K")]
    sessions: usize,
    /// Stop after this many calls (else run for --duration).
    #[arg(long, value_name = "N")]
    calls: Option<u64>,
    /// How long to run when --calls is not given.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration, value_name = "D")]
    duration: Duration,
    /// Give up on one call after this long (counted as an error).
    #[arg(long, default_value = "120s", value_parser = super::parse_duration, value_name = "D")]
    timeout: Duration,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// gRPC URL of the node to load.
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
    /// File of names, one per line (blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "FILE")]
    names: PathBuf,
    /// Requests in flight.
    #[arg(long, default_value_t = 128, value_name = "C")]
    concurrency: usize,
    /// HTTP/2 connections the requests share.
    #[arg(long, default_value_t = 4, value_name = "K")]
    connections: usize,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration, value_name = "D")]
    duration: Duration,
    /// Stop after N requests (or at --duration, whichever comes first): a fixed amount of
    /// work, to count what the server spends per request.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Non-recursive queries (the node's authoritative data only).
    #[arg(long)]
    no_recurse: bool,
    /// Pick names by a Zipf law with this exponent over their order in the file (the first
    /// name the most popular) instead of in turn; prints the node's cache hit ratio.
    #[arg(long, value_name = "EXPONENT")]
    zipf: Option<f64>,
    /// Measure cold resolutions: each lookup runs in a fresh in-process resolver with empty
    /// caches, recursing from this root node (connections stay warm). --server is then only
    /// used for the cache statistics.
    #[arg(long, value_name = "ROOT_URL", value_parser = super::parse_url)]
    cold_root: Option<String>,
    /// Seed of the Zipf draws [default: random, printed].
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Resolve(args) => resolve(args).await,
        BenchCommand::Call(args) => call(args).await,
        BenchCommand::Register(args) => register(args).await,
        BenchCommand::Search(args) => search(args).await,
        BenchCommand::Auth(args) => auth(args).await,
    }
}

async fn auth(args: AuthArgs) -> anyhow::Result<ExitCode> {
    let figures = bench::auth::run_auth(args.checks).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    } else {
        println!(
            "token checks ({} of each kind, budget 50 µs each): a token's first check (signature \
             verified), then the same token again (from the cache of verified tokens)",
            args.checks
        );
        println!("  {:<10} {:>12} {:>12}", "kind", "first µs", "repeat µs");
        for figure in &figures {
            println!(
                "  {:<10} {:>12.2} {:>12.2}",
                figure.kind, figure.first_check_us, figure.repeat_check_us
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn search(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let queries = read_lines(&args.queries, "queries")?;
    let churn = match (args.churn, &args.key_file) {
        (Some(per_second), Some(key_file)) => Some(bench::Churn {
            per_second,
            key: aop::keys::UpdateKey::load_file(key_file)?,
            run_id: format!("{:x}", aop::clock::system_unix_ms()),
        }),
        _ => None,
    };
    let report = bench::run_search(bench::SearchBench {
        tls: Some(super::client_tls()?),
        server: args.server.clone(),
        queries,
        zone: args.zone.clone(),
        limit: args.limit,
        concurrency: args.concurrency,
        connections: args.connections,
        duration: args.duration,
        timeout: args.timeout,
        progress: !args.json && std::io::stderr().is_terminal(),
        churn,
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "bench search at {} (zone {:?}): {} in flight over {} connections",
        args.server, args.zone, report.concurrency, report.connections
    );
    println!("zones        {}", report.zones_searched.join(", "));
    println!("searches     {}", report.requests);
    println!("wall time    {:.3} s", report.elapsed_s);
    println!("throughput   {:.1} /s", report.throughput_per_s);
    println!("errors       {}", report.errors);
    println!("partial      {}", report.partial);
    println!("with hits    {}", report.with_hits);
    print_latency(&report.latency_us);
    for sample in &report.error_samples {
        println!("error        {sample}");
    }
    if let Some(churn) = &report.churn {
        println!(
            "churn        {} changes ({:.1} /s), {} errors",
            churn.changes, churn.per_second, churn.errors
        );
        if let Some(error) = &churn.first_error {
            println!("churn error  {error}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn call(args: CallArgs) -> anyhow::Result<ExitCode> {
    let arguments = match serde_json::from_str::<serde_json::Value>(&args.args) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => anyhow::bail!("--args must be a JSON object, e.g. '{{\"task\": \"hello\"}}'"),
        Err(error) => anyhow::bail!("--args is not JSON: {error}"),
    };
    let report = bench::run_call(bench::CallBench {
        tls: Some(super::client_tls()?),
        url: args.url.clone(),
        tool: args.tool.clone(),
        arguments,
        concurrency: args.concurrency,
        sessions: args.sessions,
        calls: args.calls,
        duration: args.duration,
        timeout: args.timeout,
        progress: !args.json && std::io::stderr().is_terminal(),
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "bench call {} at {}: {} in flight over {} sessions",
        report.tool, report.url, report.concurrency, report.sessions
    );
    println!("calls        {}", report.calls);
    println!("wall time    {:.3} s", report.elapsed_s);
    println!("throughput   {:.1} /s", report.throughput_per_s);
    println!("errors       {}", report.errors);
    print_latency(&report.latency_us);
    for sample in &report.error_samples {
        println!("error        {sample}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn resolve(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    let names = read_lines(&args.names, "names")?;
    let report = bench::run_resolve(ResolveBench {
        tls: Some(super::client_tls()?),
        server: args.server.clone(),
        names,
        concurrency: args.concurrency,
        connections: args.connections,
        duration: args.duration,
        requests: args.requests,
        recursive: !args.no_recurse,
        pick: args.zipf.map_or(NamePick::InTurn, NamePick::Zipf),
        target: args
            .cold_root
            .map_or(Target::Server, |root| Target::Cold { root }),
        seed: args.seed.unwrap_or_else(rand::random),
        progress: !args.json && std::io::stderr().is_terminal(),
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report("resolve", &args.server, &report);
    }
    Ok(ExitCode::SUCCESS)
}

fn ms(micros: u64) -> String {
    format!("{:.3} ms", micros as f64 / 1000.0)
}

fn print_latency(l: &bench::Percentiles) {
    println!(
        "latency      p50 {}  p90 {}  p99 {}  p999 {}  max {}  mean {}",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        ms(l.mean as u64)
    );
}

fn print_report(what: &str, server: &str, report: &BenchReport) {
    println!(
        "bench {what} against {server}: {} in flight over {} connections for {:.1} s",
        report.concurrency, report.connections, report.elapsed_s
    );
    println!("requests     {}", report.requests);
    println!("throughput   {:.0} /s", report.throughput_per_s);
    println!("errors       {}", report.errors);
    print_latency(&report.latency_us);
    let outcomes: Vec<String> = report
        .outcomes
        .iter()
        .map(|(outcome, count)| format!("{outcome} {count}"))
        .collect();
    println!("outcomes     {}", outcomes.join(", "));
    if let Some(ratio) = report.cache_hit_ratio {
        println!("cache hits   {:.2} % of lookups on the node", 100.0 * ratio);
    }
    println!("seed         {}", report.seed);
    for sample in &report.error_samples {
        println!("error        {sample}");
    }
}

async fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    use aop::bench::register::{RegisterBench, run_register};
    let key = aop::keys::UpdateKey::load_file(&args.key_file)?;
    let run_id = format!("{:x}", aop::clock::system_unix_ms());
    let report = run_register(RegisterBench {
        tls: Some(super::client_tls()?),
        server: args.server.clone(),
        zone: args.zone.clone(),
        key,
        concurrency: args.concurrency,
        count: args.count,
        secondary: args.secondary.clone(),
        run_id,
    })
    .await?;
    let ms = |us: u64| us as f64 / 1000.0;
    println!(
        "registrations  {} acknowledged, {} errors in {:.2} s: {:.0}/s ({} in flight)",
        report.acknowledged,
        report.errors,
        report.elapsed.as_secs_f64(),
        report.per_second(),
        args.concurrency
    );
    let l = &report.latency;
    println!(
        "ack latency    p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms  max {:.2} ms",
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p999),
        ms(l.max)
    );
    if let Some(c) = &report.convergence {
        println!(
            "secondary      {} changes timed: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            report.converged,
            ms(c.p50),
            ms(c.p90),
            ms(c.p99),
            ms(c.max)
        );
    }
    if let Some(error) = &report.first_error {
        println!("first error    {error}");
    }
    Ok(if report.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The lines of a file of names or queries, trimmed, without blanks and `#` comments.
fn read_lines(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} file {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect())
}
