//! `aop agent serve`: a built-in demo agent, a real MCP server with no LLM.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use aop::agent::{AgentKind, BuiltinAgent};
use aop::mcp::tool_name::TOOL_NAME_MAX;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Serve a built-in agent over MCP (Streamable HTTP) at http://ADDR/mcp.
    #[command(after_help = "Examples:\n  \
        aop agent serve --kind analyst --name analyst --listen 127.0.0.1:7401\n  \
        aop agent serve --kind sleeper --name sleeper --listen 127.0.0.1:0\n\n\
        Kinds: echo answers with its task; analyst computes count, sum, mean, median, min, max \
        and standard deviation of the numbers in its task; writer turns notes (lines or \
        sentences) into a numbered outline; sleeper waits `ms` milliseconds (default 1000), \
        reporting progress.")]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The agent's tool name (the tool callers call).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Listen address (port 0 picks a free port and prints it).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// What the agent does.
    #[arg(long, value_enum, default_value_t = AgentKind::Echo)]
    kind: AgentKind,
}

pub async fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    let AgentCommand::Serve(args) = command;
    // Before anything is announced: a signal sent then must stop it cleanly.
    let stop_signal = super::shutdown_signal();
    let valid = !args.name.is_empty()
        && args.name.len() <= TOOL_NAME_MAX
        && args
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        anyhow::bail!(
            "invalid --name {:?}: a tool name is 1 to {TOOL_NAME_MAX} characters of A-Z, a-z, 0-9, `_` and `-`",
            args.name
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let agent = BuiltinAgent::new(args.kind, &args.name);
    let server = agent.serve_http(listener)?;
    // The one line scripts wait for.
    println!(
        "agent {} ({}) serving MCP at {}",
        args.name,
        args.kind,
        server.url()
    );
    tracing::info!(url = %server.url(), kind = %args.kind, "agent listening");
    let stop = server.shutdown_token();
    tokio::select! {
        _ = stop_signal => {}
        _ = stop.cancelled() => {}
    }
    tracing::info!(calls = agent.calls(), "agent stopping");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
