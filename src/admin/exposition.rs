//! `/metrics`: the node's series in the Prometheus text exposition format, version 0.0.4
//! (`# HELP` and `# TYPE` once per family, counters ending in `_total`, histograms as
//! cumulative `_bucket{le=...}` series with `_sum` and `_count`).
//!
//! Everything is read at scrape time from where it is already kept: the DNS door's
//! counters, the gRPC observer's, the resolver's cache statistics and upstream failures,
//! the authority's update counts, transfers, zone states, secondaries and Watch streams, and
//! the catalog's zones. The writer ([`Exposition`]) serves the gateway's `/metrics` too.

use std::fmt::{Display, Write as _};

use crate::admin::NodeView;
use crate::admin::status::serial_lag;
use crate::authority::live::Role;
use crate::dns::observe::DnsOutcome;
use crate::grpc::observe::GRPC_CODES;
use crate::telemetry::HistogramSnapshot;

/// The content type of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A text exposition being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a family: its help and type lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (index, (label, text)) in labels.iter().enumerate() {
                if index > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(text));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// The samples of one histogram (its family line written before).
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        histogram: &HistogramSnapshot,
    ) {
        let bucket = format!("{name}_bucket");
        for (bound, count) in &histogram.buckets {
            let le = bound.to_string();
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, count);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, histogram.count);
        self.sample(&format!("{name}_sum"), labels, histogram.sum_seconds);
        self.sample(&format!("{name}_count"), labels, histogram.count);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A family of cache series: name, type, help, and what it reads of a level.
type CacheFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&crate::resolver::LevelStats) -> u64,
);

/// Every series of a node.
pub async fn render(node: &NodeView) -> String {
    let mut out = Exposition::default();
    out.family("aop_build_info", "gauge", "The aop version this node runs.");
    out.sample(
        "aop_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("node", &node.node_id),
        ],
        1,
    );
    out.family(
        "aop_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
    );
    out.sample(
        "aop_uptime_seconds",
        &[],
        node.started.elapsed().as_secs_f64(),
    );

    queries(&mut out, node);

    let levels = node.resolver.cache_stats().await;
    let cache_families: [CacheFamily; 6] = [
        (
            "aop_resolver_cache_hits_total",
            "counter",
            "Resolver cache lookups that found a fresh entry, by level.",
            |l| l.hits,
        ),
        (
            "aop_resolver_cache_misses_total",
            "counter",
            "Resolver cache lookups that found no fresh entry, by level.",
            |l| l.misses,
        ),
        (
            "aop_resolver_cache_stale_served_total",
            "counter",
            "Expired entries served stale because every server failed, by level.",
            |l| l.stale_served,
        ),
        (
            "aop_resolver_cache_evictions_total",
            "counter",
            "Entries evicted for room, by level.",
            |l| l.evictions,
        ),
        (
            "aop_resolver_cache_entries",
            "gauge",
            "Entries held, by level.",
            |l| l.entries,
        ),
        (
            "aop_resolver_cache_bytes",
            "gauge",
            "Approximate bytes held, by level.",
            |l| l.weighted_bytes,
        ),
    ];
    for (name, kind, help, read) in cache_families {
        out.family(name, kind, help);
        for level in &levels {
            out.sample(name, &[("level", level.level)], read(level));
        }
    }
    out.family(
        "aop_resolver_upstream_failures_total",
        "counter",
        "Resolver queries to other nodes that failed (the next server was tried), by reason.",
    );
    for (reason, count) in node.resolver.upstream_failures() {
        out.sample(
            "aop_resolver_upstream_failures_total",
            &[("reason", reason)],
            count,
        );
    }

    out.family(
        "aop_registrations_total",
        "counter",
        "Updates answered by the zone writer, by operation and result.",
    );
    for (operation, accepted, refused) in node.authority.update_counts() {
        for (result, count) in [("accepted", accepted), ("refused", refused)] {
            out.sample(
                "aop_registrations_total",
                &[("operation", operation), ("result", result)],
                count,
            );
        }
    }
    let (full, incremental) = node.authority.transfers();
    out.family(
        "aop_transfers_served_total",
        "counter",
        "Zone transfers served to secondaries (and dumps), by kind.",
    );
    out.sample("aop_transfers_served_total", &[("kind", "full")], full);
    out.sample(
        "aop_transfers_served_total",
        &[("kind", "incremental")],
        incremental,
    );

    zones(&mut out, node);
    endpoint_health(&mut out, node);
    if let Some(membership) = &node.membership {
        members(&mut out, membership);
    }
    out.finish()
}

/// Endpoint health (docs/protocol.md §9.1): the endpoints of each zone this node serves, by
/// state (one pass over the zone's agents per scrape), and the probes this node has made.
fn endpoint_health(out: &mut Exposition, node: &NodeView) {
    use crate::record::HealthState;
    use std::sync::atomic::Ordering::Relaxed;
    out.family(
        "aop_endpoints",
        "gauge",
        "Agent endpoints of each zone this node serves, by health (up, down, unknown).",
    );
    let mut origins = node.catalog.origins();
    origins.sort();
    for origin in &origins {
        let Ok(zone) = node.catalog.zone(origin) else {
            continue;
        };
        let mut counts = [0u64; 3];
        for name in zone.agent_names() {
            for endpoint in zone.agent(name.as_str()).map_or(&[][..], |a| &a.endpoints) {
                counts[usize::from(endpoint.health.state.rank())] += 1;
            }
        }
        for state in [HealthState::Up, HealthState::Unknown, HealthState::Down] {
            out.sample(
                "aop_endpoints",
                &[("zone", &origin.to_string()), ("health", state.word())],
                counts[usize::from(state.rank())],
            );
        }
    }
    out.family(
        "aop_health_probes_total",
        "counter",
        "Endpoint health probes this node made, by result (answered, failed).",
    );
    out.sample(
        "aop_health_probes_total",
        &[("result", "answered")],
        node.health_probes.answered.load(Relaxed),
    );
    out.sample(
        "aop_health_probes_total",
        &[("result", "failed")],
        node.health_probes.failed.load(Relaxed),
    );
}

/// The gossip group as this node sees it, and what its datagrams cost.
fn members(out: &mut Exposition, membership: &crate::membership::Membership) {
    use crate::membership::{DropReason, Liveness};
    use std::sync::atomic::Ordering::Relaxed;
    let list = membership.members();
    out.family(
        "aop_members",
        "gauge",
        "Members of this node's gossip group (itself included), by state as this node sees them.",
    );
    for state in Liveness::ALL {
        let count = list.iter().filter(|m| m.liveness == state).count();
        out.sample("aop_members", &[("state", state.label())], count);
    }
    let counters = membership.counters();
    out.family(
        "aop_gossip_datagrams_total",
        "counter",
        "Gossip datagrams, by direction.",
    );
    out.sample(
        "aop_gossip_datagrams_total",
        &[("direction", "in")],
        counters.datagrams_in.load(Relaxed),
    );
    out.sample(
        "aop_gossip_datagrams_total",
        &[("direction", "out")],
        counters.datagrams_out.load(Relaxed),
    );
    out.family(
        "aop_gossip_bytes_total",
        "counter",
        "Gossip octets (UDP payloads), by direction.",
    );
    out.sample(
        "aop_gossip_bytes_total",
        &[("direction", "in")],
        counters.bytes_in.load(Relaxed),
    );
    out.sample(
        "aop_gossip_bytes_total",
        &[("direction", "out")],
        counters.bytes_out.load(Relaxed),
    );
    out.family(
        "aop_gossip_datagrams_dropped_total",
        "counter",
        "Gossip datagrams dropped unread, by reason (truncated, unknown_group, authentication, replay, invalid).",
    );
    for reason in DropReason::ALL {
        out.sample(
            "aop_gossip_datagrams_dropped_total",
            &[("reason", reason.label())],
            counters.dropped(reason),
        );
    }
}

/// Queries by door and outcome, and their latency.
fn queries(out: &mut Exposition, node: &NodeView) {
    out.family(
        "aop_queries_total",
        "counter",
        "Queries answered, by door (dns, grpc), method and outcome (DNS: answer, nodata, \
         referral, nxdomain, refused, formerr, servfail, ...; gRPC: the status code).",
    );
    if let Some(dns) = &node.dns {
        for outcome in DnsOutcome::ALL {
            out.sample(
                "aop_queries_total",
                &[
                    ("door", "dns"),
                    ("method", "query"),
                    ("outcome", outcome.label()),
                ],
                dns.outcome(outcome),
            );
        }
    }
    let methods = node.grpc.snapshot();
    for (method, metrics) in &methods {
        for (code, count) in GRPC_CODES.iter().zip(&metrics.codes) {
            let count = count.load(std::sync::atomic::Ordering::Relaxed);
            if count > 0 {
                out.sample(
                    "aop_queries_total",
                    &[("door", "grpc"), ("method", method), ("outcome", code)],
                    count,
                );
            }
        }
    }
    out.family(
        "aop_query_duration_seconds",
        "histogram",
        "Time to answer a query, by door and method (gRPC: to the response headers).",
    );
    if let Some(dns) = &node.dns {
        out.histogram(
            "aop_query_duration_seconds",
            &[("door", "dns"), ("method", "query")],
            &dns.latency.snapshot(),
        );
    }
    for (method, metrics) in &methods {
        out.histogram(
            "aop_query_duration_seconds",
            &[("door", "grpc"), ("method", method)],
            &metrics.latency.snapshot(),
        );
    }
    if let Some(dns) = &node.dns {
        out.family(
            "aop_dns_tcp_refused_total",
            "counter",
            "DNS TCP connections closed at once because the connection limit was reached.",
        );
        out.sample(
            "aop_dns_tcp_refused_total",
            &[],
            dns.tcp_refused.load(std::sync::atomic::Ordering::Relaxed),
        );
        out.family(
            "aop_dns_rate_limited_total",
            "counter",
            "DNS UDP queries over --dns-rate-limit, by what was sent back (an empty answer with TC set, or nothing).",
        );
        for (action, counter) in [
            ("truncated", &dns.rate_limited_truncated),
            ("dropped", &dns.rate_limited_dropped),
        ] {
            out.sample(
                "aop_dns_rate_limited_total",
                &[("action", action)],
                counter.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }
}

/// Each configured zone's serial, agents and state.
fn zones(out: &mut Exposition, node: &NodeView) {
    let statuses = node.authority.statuses();
    let mut origins: Vec<_> = statuses.keys().cloned().collect();
    origins.sort();
    let role = |origin| match statuses.get(origin).map(|s| &s.role) {
        Some(Role::Secondary { .. }) => "secondary",
        _ => "primary",
    };
    out.family(
        "aop_zone_serial",
        "gauge",
        "The serial of each zone this node serves, by role.",
    );
    for origin in &origins {
        if let Some(status) = statuses.get(origin) {
            out.sample(
                "aop_zone_serial",
                &[("zone", &origin.to_string()), ("role", role(origin))],
                status.serial,
            );
        }
    }
    out.family(
        "aop_zone_served",
        "gauge",
        "1 while the node answers for the zone (a secondary: transferred and not expired).",
    );
    for origin in &origins {
        if let Some(status) = statuses.get(origin) {
            out.sample(
                "aop_zone_served",
                &[("zone", &origin.to_string()), ("role", role(origin))],
                u8::from(status.served),
            );
        }
    }
    let now_ms = node.authority.clock().unix_ms();
    out.family(
        "aop_zone_last_refresh_seconds",
        "gauge",
        "Seconds since a secondary zone last heard from its primary (a transfer, or an answer \
         that it is up to date; absent before the first). Past the zone's expire it is \
         withdrawn.",
    );
    for origin in &origins {
        if let Some(status) = statuses.get(origin)
            && let Some(at) = status.refreshed_unix_ms
        {
            out.sample(
                "aop_zone_last_refresh_seconds",
                &[("zone", &origin.to_string()), ("role", role(origin))],
                now_ms.saturating_sub(at) as f64 / 1000.0,
            );
        }
    }
    out.family(
        "aop_zone_secondary_lag_serials",
        "gauge",
        "A primary's view of each secondary that transferred a zone from it: serials the \
         secondary's last transfer is behind the zone now.",
    );
    let mut transfers = Vec::new();
    for origin in &origins {
        let Some(status) = statuses.get(origin) else {
            continue;
        };
        for secondary in node.authority.secondaries(origin) {
            if let Some(fetch) = secondary.last_fetch {
                let labels = (origin.to_string(), secondary.url);
                out.sample(
                    "aop_zone_secondary_lag_serials",
                    &[("zone", &labels.0), ("secondary", &labels.1)],
                    serial_lag(status.serial, fetch.serial),
                );
                transfers.push((labels, fetch.at_unix_ms));
            }
        }
    }
    out.family(
        "aop_zone_secondary_last_transfer_seconds",
        "gauge",
        "A primary's view: seconds since each secondary last asked it for a zone's transfer \
         (every refresh asks, so this grows past the zone's refresh only when it is silent).",
    );
    for ((zone, secondary), at) in &transfers {
        out.sample(
            "aop_zone_secondary_last_transfer_seconds",
            &[("zone", zone), ("secondary", secondary)],
            now_ms.saturating_sub(*at) as f64 / 1000.0,
        );
    }
    out.family(
        "aop_zone_watchers",
        "gauge",
        "Watch streams (gateways, relaying nodes) following each zone here now.",
    );
    for origin in &origins {
        out.sample(
            "aop_zone_watchers",
            &[("zone", &origin.to_string())],
            node.authority.watchers(origin),
        );
    }
    out.family(
        "aop_zone_agents",
        "gauge",
        "Agents in each zone this node answers for.",
    );
    for origin in node.catalog.origins() {
        if let Ok(zone) = node.catalog.zone(&origin) {
            out.sample(
                "aop_zone_agents",
                &[("zone", &origin.to_string())],
                zone.agent_count(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_and_histograms_are_written_in_the_text_format() {
        let mut out = Exposition::default();
        out.family("x_total", "counter", "Line one\nline \\two.");
        out.sample("x_total", &[("zone", "a\"b\\c\nd")], 3);
        let histogram = HistogramSnapshot {
            buckets: vec![(0.001, 1), (0.01, 2)],
            count: 3,
            sum_seconds: 0.5,
        };
        out.family("lat_seconds", "histogram", "Latency.");
        out.histogram("lat_seconds", &[("door", "dns")], &histogram);
        assert_eq!(
            out.finish(),
            "# HELP x_total Line one\\nline \\\\two.\n\
             # TYPE x_total counter\n\
             x_total{zone=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP lat_seconds Latency.\n\
             # TYPE lat_seconds histogram\n\
             lat_seconds_bucket{door=\"dns\",le=\"0.001\"} 1\n\
             lat_seconds_bucket{door=\"dns\",le=\"0.01\"} 2\n\
             lat_seconds_bucket{door=\"dns\",le=\"+Inf\"} 3\n\
             lat_seconds_sum{door=\"dns\"} 0.5\n\
             lat_seconds_count{door=\"dns\"} 3\n"
        );
    }
}
