//! Human tables and JSON documents for answers.

use serde_json::{Value, json};

use aop::answer::{Answer, Outcome};
use aop::grpc::pb;
use aop::record::{Agent, Delegation};

pub fn answer_json(answer: &Answer) -> Value {
    let mut document = json!({
        "name": answer.name.to_string(),
        "outcome": answer.outcome.word(),
        "zone": answer.zone.to_string(),
        "zone_serial": answer.zone_serial,
        "ttl": answer.ttl,
        "authoritative": answer.authoritative,
        "served_by": answer.served_by.as_ref(),
        "stale": answer.stale,
        "recursion_available": answer.recursion_available,
        "aliases": answer.aliases.iter().map(|a| json!({
            "name": a.name.to_string(),
            "target": a.target.to_string(),
        })).collect::<Vec<_>>(),
    });
    let fields = document.as_object_mut().expect("built as an object above");
    match &answer.outcome {
        Outcome::Answer(agent) => {
            fields.insert("agent".into(), agent_json(agent));
        }
        Outcome::Alias { target } => {
            fields.insert("alias_target".into(), json!(target.to_string()));
        }
        Outcome::Referral(delegation) => {
            fields.insert("referral".into(), referral_json(delegation));
        }
        Outcome::NxDomain | Outcome::NoData => {}
    }
    if !answer.trace.is_empty() {
        let steps: Vec<Value> = answer
            .trace
            .iter()
            .map(|step| {
                json!({
                    "server": step.server,
                    "zone": step.zone.to_string(),
                    "outcome": step.outcome,
                    "latency_us": step.latency_us,
                    "cached": step.cached,
                    "authoritative": step.authoritative,
                    "error": step.error,
                })
            })
            .collect();
        fields.insert("trace".into(), Value::Array(steps));
    }
    document
}

pub fn agent_json(agent: &Agent) -> Value {
    json!({
        "name": agent.name.to_string(),
        "description": agent.description,
        "tags": agent.tags,
        "capabilities": agent.capabilities,
        "version": agent.version,
        "timeout_ms": agent.timeout_ms,
        "max_retries": agent.max_retries,
        "endpoints": agent.endpoints.iter().map(|e| json!({
            "url": e.url, "tool": e.tool, "priority": e.priority, "weight": e.weight,
            "health": e.health.state.word(),
        })).collect::<Vec<_>>(),
        "input_schema": agent.input_schema.value(),
        "output_schema": agent.output_schema.as_ref().map(|s| s.value()),
        "metadata": agent.metadata.as_ref().map(|m| m.value()),
    })
}

fn referral_json(delegation: &Delegation) -> Value {
    json!({
        "zone": delegation.zone.to_string(),
        "servers": delegation.servers.iter().map(|s| json!({
            "grpc": s.grpc,
            "dns": s.dns.map(|d| d.to_string()),
        })).collect::<Vec<_>>(),
    })
}

fn row(label: &str, value: impl std::fmt::Display) {
    println!("{label:<14} {value}");
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

pub fn print_answer(answer: &Answer) {
    row("name", &answer.name);
    row("outcome", answer.outcome.word().to_uppercase());
    for alias in &answer.aliases {
        row("via alias", format!("{} -> {}", alias.name, alias.target));
    }
    row(
        "zone",
        format!("{} (serial {})", answer.zone, answer.zone_serial),
    );
    row("ttl", format!("{} s", answer.ttl));
    row("authoritative", yes_no(answer.authoritative));
    row("served by", &answer.served_by);
    if answer.stale {
        row(
            "stale",
            "yes (every server of the zone failed; this is an expired cached answer)",
        );
    }
    match &answer.outcome {
        Outcome::Answer(agent) => print_agent(agent),
        Outcome::Alias { target } => row("alias target", target),
        Outcome::Referral(delegation) => {
            row("referral to", &delegation.zone);
            for server in &delegation.servers {
                match server.dns {
                    Some(dns) => row("  server", format!("{} (dns {dns})", server.grpc)),
                    None => row("  server", &server.grpc),
                }
            }
        }
        Outcome::NxDomain | Outcome::NoData => {}
    }
    if !answer.trace.is_empty() {
        println!();
        println!(";; trace");
        for (index, step) in answer.trace.iter().enumerate() {
            let how = match (&step.error, step.cached, step.authoritative) {
                (Some(error), _, _) => format!("failed: {error}"),
                (None, true, _) => "cached".to_string(),
                (None, false, true) => "authoritative".to_string(),
                (None, false, false) => "non-authoritative".to_string(),
            };
            println!(
                "{:>3}  {:<22} {:<20} {:<9} {:<18} {:.3} ms",
                index + 1,
                step.server,
                step.zone.to_string(),
                step.outcome.unwrap_or("-"),
                how,
                f64::from(step.latency_us) / 1000.0
            );
        }
    }
}

fn print_agent(agent: &Agent) {
    row("agent", &agent.name);
    if !agent.description.is_empty() {
        row("description", &agent.description);
    }
    if !agent.tags.is_empty() {
        row("tags", agent.tags.join(", "));
    }
    if !agent.capabilities.is_empty() {
        row("capabilities", agent.capabilities.join(", "));
    }
    if !agent.version.is_empty() {
        row("version", &agent.version);
    }
    row(
        "call budget",
        format!(
            "{} ms, up to {} retries",
            agent.timeout_ms, agent.max_retries
        ),
    );
    println!(
        "endpoints      {:<8} {:<7} {:<8} {:<36} tool",
        "priority", "weight", "health", "url"
    );
    for endpoint in &agent.endpoints {
        println!(
            "               {:<8} {:<7} {:<8} {:<36} {}",
            endpoint.priority,
            endpoint.weight,
            endpoint.health.state.word(),
            endpoint.url,
            endpoint.tool
        );
    }
}

pub fn cache_stats_json(stats: &pb::GetCacheStatsResponse) -> Value {
    json!({
        "served_by": stats.served_by,
        "levels": stats.levels.iter().map(|l| json!({
            "level": l.level,
            "entries": l.entries,
            "weighted_bytes": l.weighted_bytes,
            "capacity_bytes": l.capacity_bytes,
            "hits": l.hits,
            "misses": l.misses,
            "inserts": l.inserts,
            "evictions": l.evictions,
            "stale_served": l.stale_served,
        })).collect::<Vec<_>>(),
    })
}

pub fn print_cache_stats(stats: &pb::GetCacheStatsResponse) {
    println!();
    println!(";; cache of {}", stats.served_by);
    println!(
        "   {:<12} {:>8} {:>10} {:>10} {:>8} {:>8} {:>9} {:>6}  bytes used / capacity",
        "level", "entries", "hits", "misses", "hit %", "inserts", "evictions", "stale"
    );
    for level in &stats.levels {
        let lookups = level.hits + level.misses;
        let ratio = if lookups == 0 {
            "-".to_string()
        } else {
            format!("{:.1}", 100.0 * level.hits as f64 / lookups as f64)
        };
        println!(
            "   {:<12} {:>8} {:>10} {:>10} {:>8} {:>8} {:>9} {:>6}  {} / {}",
            level.level,
            level.entries,
            level.hits,
            level.misses,
            ratio,
            level.inserts,
            level.evictions,
            level.stale_served,
            level.weighted_bytes,
            level.capacity_bytes
        );
    }
}
