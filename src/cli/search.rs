//! `aop search`: ranked search of the agents below a zone, across the federation.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::connect;
use aop::grpc::client::SearchCall;
use aop::grpc::pb;
use aop::record::Agent;

use super::output;

#[derive(Debug, Args)]
#[command(
    after_help = "The node searches its own zones and asks the servers of every delegated \
    child zone in parallel; a zone that does not answer in time is listed and the result is \
    marked partial (exit status stays 0).\n\nExamples:\n  \
    aop search forecasting\n  \
    aop search \"quarterly report\" --zone finance.acme --tag finance --limit 5\n  \
    aop search --capability summarize --json"
)]
pub struct SearchArgs {
    /// Words to look for in names, descriptions, tags and capabilities; empty lists every
    /// agent that passes the filters.
    #[arg(default_value = "")]
    query: String,
    /// gRPC URL of the node to ask (it finds the zone's servers when it does not serve it).
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
    /// Search only at and below this name (default: the whole tree).
    #[arg(long, value_name = "ZONE")]
    zone: Option<String>,
    /// Only agents with this tag (repeatable; all must match).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Only agents with this capability (repeatable; all must match).
    #[arg(long = "capability", value_name = "CAPABILITY")]
    capabilities: Vec<String>,
    /// Hits to return (at most 1000).
    #[arg(long, default_value_t = 10, value_name = "N")]
    limit: u32,
    /// The whole search's deadline; zones that have not answered by then are left out and
    /// the result is partial.
    #[arg(long, default_value = "2s", value_parser = super::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.server).await?;
    let call = SearchCall {
        query: args.query.clone(),
        zone: args.zone.clone().unwrap_or_default(),
        tags: args.tags.clone(),
        capabilities: args.capabilities.clone(),
        limit: args.limit,
        max_depth: None,
        recursive: true,
    };
    // A little less than ours reaches the node, so its partial answer arrives before we give up.
    let response = tokio::time::timeout(
        args.timeout,
        client.search(&call, Some(args.timeout.mul_f64(0.9))),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer from {} within {:?}", args.server, args.timeout))??;
    let hits: Vec<(Agent, &pb::SearchHit)> = response
        .hits
        .iter()
        .map(|hit| {
            let agent = hit
                .agent
                .clone()
                .ok_or_else(|| anyhow::anyhow!("the node sent a hit without its agent"))?;
            Ok((Agent::try_from(agent)?, hit))
        })
        .collect::<anyhow::Result<_>>()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&document(&args, &response, &hits))?
        );
    } else {
        print_table(&response, &hits);
    }
    if response.partial && !args.json {
        eprintln!(
            "warning: partial result: {} zone(s) did not answer",
            response.missed.len()
        );
        for missed in &response.missed {
            eprintln!("  {}: {}", missed.zone, missed.reason);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn document(
    args: &SearchArgs,
    response: &pb::SearchResponse,
    hits: &[(Agent, &pb::SearchHit)],
) -> Value {
    json!({
        "query": args.query,
        "terms": response.terms,
        "total_matches": response.total_matches,
        "partial": response.partial,
        "hits": hits.iter().map(|(agent, hit)| {
            let mut entry = output::agent_json(agent);
            if let Some(fields) = entry.as_object_mut() {
                fields.insert("zone".into(), json!(hit.zone));
                fields.insert("score".into(), json!((hit.score * 1000.0).round() / 1000.0));
            }
            entry
        }).collect::<Vec<_>>(),
        "missed": response.missed.iter().map(|m| json!({"zone": m.zone, "reason": m.reason})).collect::<Vec<_>>(),
        "searched": response.searched.iter().map(|s| json!({"zone": s.zone, "serial": s.serial, "served_by": s.served_by})).collect::<Vec<_>>(),
        "served_by": response.served_by,
    })
}

fn print_table(response: &pb::SearchResponse, hits: &[(Agent, &pb::SearchHit)]) {
    if hits.is_empty() {
        println!("no agent matches");
    } else {
        let width = hits
            .iter()
            .map(|(agent, _)| agent.name.as_str().len())
            .max()
            .unwrap_or(5)
            .max(5);
        println!(
            "{:>3}  {:>6}  {:<width$}  description",
            "#", "score", "agent"
        );
        for (rank, (agent, hit)) in hits.iter().enumerate() {
            println!(
                "{:>3}  {:>6.3}  {:<width$}  {}",
                rank + 1,
                hit.score,
                agent.name.as_str(),
                one_line(&agent.description, 60)
            );
        }
    }
    let zones: Vec<&str> = response.searched.iter().map(|s| s.zone.as_str()).collect();
    println!(
        "{} of {} matching agents; searched {} zone(s): {}",
        hits.len(),
        response.total_matches,
        zones.len(),
        zones.join(", ")
    );
}

/// The text on one line, cut at `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}
