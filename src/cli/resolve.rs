//! `aop resolve`: ask a node what a name is.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::connect;
use aop::answer::{Answer, Outcome};
use aop::grpc::pb;

use super::output;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 with an answer (or a referral under --no-recurse), \
    1 for NXDOMAIN, NODATA or a failed resolution.\n\nExample:\n  \
    aop resolve --server http://127.0.0.1:7102 --no-recurse analyst.finance.acme"
)]
pub struct ResolveArgs {
    /// The agent name, such as analyst.finance.acme.
    name: String,
    /// gRPC URL of the node to ask.
    #[arg(long, default_value = super::DEFAULT_SERVER, value_name = "URL", value_parser = super::parse_url)]
    server: String,
    /// Ask for the node's authoritative data only: referrals are returned, not followed.
    #[arg(long)]
    no_recurse: bool,
    /// Print every server queried, like `dig +trace`.
    #[arg(long)]
    trace: bool,
    /// Give up after this long (travels to the node as the gRPC deadline).
    #[arg(long, default_value = "10s", value_parser = super::parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Also print the node's cache statistics per level (answers, negatives, delegations).
    #[arg(long)]
    stats: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    match resolve(&args).await {
        Ok((answer, stats)) => {
            if args.json {
                let mut document = output::answer_json(&answer);
                if let (Some(stats), Some(fields)) = (&stats, document.as_object_mut()) {
                    fields.insert("cache_stats".into(), output::cache_stats_json(stats));
                }
                println!("{}", serde_json::to_string_pretty(&document)?);
            } else {
                output::print_answer(&answer);
                if let Some(stats) = &stats {
                    output::print_cache_stats(stats);
                }
            }
            let code = exit_code(&answer, args.no_recurse);
            if code != ExitCode::SUCCESS && !args.json {
                eprintln!("error: {}", failure_line(&answer, args.no_recurse));
            }
            Ok(code)
        }
        Err(error) => {
            if args.json {
                let document = json!({
                    "name": args.name,
                    "outcome": "error",
                    "error": format!("{error:#}"),
                });
                println!("{}", serde_json::to_string_pretty(&document)?);
            }
            Err(error)
        }
    }
}

async fn resolve(
    args: &ResolveArgs,
) -> anyhow::Result<(Answer, Option<pb::GetCacheStatsResponse>)> {
    let mut client = connect(&args.server).await?;
    let answer = client
        .resolve(&args.name, !args.no_recurse, args.trace, Some(args.timeout))
        .await?;
    let stats = if args.stats {
        let response = client
            .cache_stats()
            .await
            .map_err(|error| anyhow::anyhow!("cache statistics: {error}"))?;
        Some(response)
    } else {
        None
    };
    Ok((answer, stats))
}

fn exit_code(answer: &Answer, no_recurse: bool) -> ExitCode {
    match &answer.outcome {
        Outcome::Answer(_) => ExitCode::SUCCESS,
        Outcome::Referral(_) | Outcome::Alias { .. } if no_recurse => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

fn failure_line(answer: &Answer, no_recurse: bool) -> String {
    match &answer.outcome {
        Outcome::NxDomain => format!(
            "{} does not exist (NXDOMAIN in zone {})",
            answer.name, answer.zone
        ),
        Outcome::NoData => format!(
            "{} has no agent record, only names below it (NODATA in zone {})",
            answer.name, answer.zone
        ),
        Outcome::Referral(_) | Outcome::Alias { .. }
            if !no_recurse && !answer.recursion_available =>
        {
            format!(
                "{} answered with a {} and does not offer recursion; ask the node it names, or pass --no-recurse",
                answer.served_by,
                answer.outcome.word()
            )
        }
        _ => format!(
            "resolution of {} ended with a {}",
            answer.name,
            answer.outcome.word()
        ),
    }
}
