//! The `aop` command line (docs/protocol.md §3): clap definitions, logging set-up, and the
//! one place errors become `error: ...` lines and exit codes (1 for a failed operation, 2 for
//! bad usage, which clap reports itself).

mod agent;
mod bench;
mod cert;
mod demo;
mod gateway;
mod node;
mod output;
mod resolve;
mod search;
mod store;
mod update;
mod zone;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use aop::tls::{ClientTls, ClientTlsFiles};

/// The demo root's gRPC address: where commands look when no `--server` is given.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7100";

#[derive(Debug, Parser)]
#[command(
    name = "aop",
    version,
    about = "AOP agent registry: DNS-like zone servers for AI agents",
    long_about = "AOP agent registry: DNS-like zone servers for AI agents.\n\n\
        Nodes are authoritative for dotted zones of agent names (finance.acme), delegate child \
        zones to other nodes, and answer lookups over gRPC. Zone files are TOML (zones/*.toml).",
    propagate_version = true
)]
struct Cli {
    /// Log format of long-running commands (logs go to stderr; filter with RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    tls: ClientTlsArgs,
    #[command(subcommand)]
    command: Command,
}

/// What every gRPC client of this process trusts and presents for `https://` URLs.
#[derive(Debug, Clone, Args)]
struct ClientTlsArgs {
    /// CA certificate (PEM) trusted beside the system roots for https:// URLs (`aop cert ca`
    /// writes one; `aop demo --tls` prints its own).
    #[arg(long, global = true, value_name = "FILE", env = "AOP_CA")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to servers that require one (mTLS); with
    /// --client-key. A node presents its own --tls-cert instead.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "AOP_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "AOP_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
}

/// The client TLS files given on the command line (or in AOP_CA, AOP_CLIENT_CERT,
/// AOP_CLIENT_KEY); set once at start.
static CLIENT_TLS_FILES: OnceLock<ClientTlsFiles> = OnceLock::new();

pub fn client_tls_files() -> ClientTlsFiles {
    CLIENT_TLS_FILES.get().cloned().unwrap_or_default()
}

/// The client TLS settings of this process, read from their files on first use.
pub fn client_tls() -> anyhow::Result<Arc<ClientTls>> {
    static LOADED: OnceLock<Arc<ClientTls>> = OnceLock::new();
    if let Some(tls) = LOADED.get() {
        return Ok(Arc::clone(tls));
    }
    let tls = ClientTls::load(client_tls_files())
        .context("client TLS settings (--ca, --client-cert, --client-key)")?;
    Ok(Arc::clone(LOADED.get_or_init(|| tls)))
}

/// A client of the node at `url`, with this process's TLS settings.
pub async fn connect(url: &str) -> anyhow::Result<aop::grpc::NodeClient> {
    Ok(aop::grpc::connect_with(url, &client_tls()?).await?)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a whole federation from zones/ in one process and print its addresses.
    Demo(demo::DemoArgs),
    /// Run one zone server.
    Node(Box<node::NodeArgs>),
    /// Validate or inspect zone files.
    #[command(subcommand)]
    Zone(zone::ZoneCommand),
    /// Resolve an agent name.
    Resolve(resolve::ResolveArgs),
    /// Search agents by words, tags and capabilities across the federation.
    Search(search::SearchArgs),
    /// Add or renew one endpoint of an agent (a live registration with a lease).
    Register(update::RegisterArgs),
    /// Remove one endpoint of an agent, or the whole agent.
    Deregister(update::DeregisterArgs),
    /// Update keys: sign registrations for a zone.
    #[command(subcommand)]
    Key(update::KeyCommand),
    /// Run the MCP gateway: LLM hosts discover and call agents through it.
    Gateway(gateway::GatewayArgs),
    /// Back up a stopped node's store, or restore one from a backup.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Built-in demo agents (real MCP servers, no LLM).
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Load generators that print latency percentiles, throughput and errors.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// A development CA and certificates for TLS (gRPC, mTLS, HTTPS).
    #[command(subcommand)]
    Cert(cert::CertCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = CLIENT_TLS_FILES.set(ClientTlsFiles {
        ca: cli.tls.ca.clone(),
        cert: cli.tls.client_cert.clone(),
        key: cli.tls.client_key.clone(),
    });
    let long_running = matches!(
        cli.command,
        Command::Demo(_) | Command::Node(_) | Command::Gateway(_) | Command::Agent(_)
    );
    // The MCP library logs every session and message at INFO: its warnings only, unless
    // RUST_LOG asks for more.
    init_logging(
        cli.log_format,
        if long_running {
            "info,rmcp=warn"
        } else {
            "warn"
        },
    );
    if long_running && let Err(error) = aop::sys::raise_open_files_limit() {
        tracing::warn!(%error, "cannot raise the limit of open files");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => demo::run(args).await,
            Command::Node(args) => node::run(*args).await,
            Command::Zone(command) => zone::run(command).await,
            Command::Register(args) => update::register(args).await,
            Command::Deregister(args) => update::deregister(args).await,
            Command::Key(command) => update::key(command),
            Command::Store(command) => store::run(command),
            Command::Resolve(args) => resolve::run(args).await,
            Command::Search(args) => search::run(args).await,
            Command::Gateway(args) => gateway::run(args).await,
            Command::Agent(command) => agent::run(command).await,
            Command::Bench(command) => bench::run(command).await,
            Command::Cert(command) => cert::run(command),
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// `error: <first line>` then the rest as context lines.
fn report(error: &anyhow::Error) {
    let text = error_text(error);
    let mut lines = text.lines();
    eprintln!("error: {}", lines.next().unwrap_or("unknown error"));
    for line in lines {
        eprintln!("  {line}");
    }
}

/// The error and its causes joined by ": ", a cause left out when the text already says it
/// (our error types print their source in their own message; anyhow's chain would repeat
/// it: "No such file or directory (os error 2): No such file or directory (os error 2)").
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if text.contains(&said) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // The current span's fields (a request's `request_id`, the gRPC method) and the
        // list of enclosing spans go on every line, so one request's lines can be grepped.
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

/// The value parser of every duration flag (zone files read durations the same way).
pub use aop::clock::parse_duration;

/// The value parser of every URL flag (`--server`, `--resolver`, `--root`, `--url`, the URL
/// of `--secondary`, ...): an `http` or `https` URL with a host, by the rule zone files
/// follow (`record::check_http_url`). A bad URL is bad usage, so clap reports it and exits 2
/// before anything runs; an address without a scheme (`127.0.0.1:7100`) is told the URL to
/// write instead. The value is kept as given.
pub fn parse_url(text: &str) -> Result<String, String> {
    use aop::record::{RecordError, check_http_url};
    match check_http_url("URL", text) {
        Ok(()) => Ok(text.to_string()),
        // clap's message already quotes the value and names the flag.
        Err(RecordError::InvalidUrl { reason, .. }) => Err(reason),
        Err(other) => Err(other.to_string()),
    }
}

/// SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: call it before announcing readiness, so a SIGTERM sent the moment
/// "ready" is logged stops the process cleanly instead of killing it.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let installed = signal(SignalKind::terminate())
            .and_then(|term| signal(SignalKind::interrupt()).map(|int| (term, int)));
        async move {
            match installed {
                Ok((mut term, mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C still stops");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn urls_need_an_http_scheme_and_a_host() {
        assert_eq!(
            parse_url("http://127.0.0.1:7100").unwrap(),
            "http://127.0.0.1:7100"
        );
        assert!(parse_url("https://node.example/").is_ok());
        for (text, expected) in [
            ("127.0.0.1:7100", "write \"http://127.0.0.1:7100\""),
            ("localhost:7100", "write \"http://localhost:7100\""),
            ("[::1]:7100", "write \"http://[::1]:7100\""),
            ("ftp://node.example", "scheme \"ftp\" is not http or https"),
            ("http://", "empty host"),
        ] {
            let error = parse_url(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("0s").is_err());
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert!(parse_duration("31d").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("fast").is_err());
    }
}
