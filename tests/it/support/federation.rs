//! A federation of real nodes on 127.0.0.1, built from zone specs:
//!
//! ```ignore
//! let fed = FederationBuilder::new()
//!     .zone(ZoneSpec::new("acme").agent(AgentSpec::new("writer")))
//!     .zone(ZoneSpec::new("finance.acme").servers(2).agent(AgentSpec::new("analyst")))
//!     .start()
//!     .await;
//! ```
//!
//! The builder binds every listener first (and the links in front of them), so each zone file
//! names its real servers; it adds the root zone if the specs have none, writes the delegation
//! of each zone in the closest enclosing zone of the federation, starts one node per server
//! (`root`, `acme`, `finance-1`, `finance-2`: the first label, numbered when a zone has
//! several servers) and a resolver node (`resolver`) that serves no zone and recurses from
//! the root.

use std::sync::Arc;
use std::time::Duration;

use aop::clock::ManualClock;
use aop::grpc::RegistryClient;
use aop::node::{NodeHandle, ServeOptions};
use aop::record::ServerAddress;

use super::zones::{Delegation, Target};
use super::{BlackHole, Link, ZoneSpec, bind, connect, zone};

#[derive(Default)]
pub struct FederationBuilder {
    zones: Vec<ZoneSpec>,
    manual_clock: bool,
    max_stale: Option<Duration>,
}

impl FederationBuilder {
    pub fn new() -> FederationBuilder {
        FederationBuilder::default()
    }

    pub fn zone(mut self, spec: ZoneSpec) -> FederationBuilder {
        assert!(
            self.zones.iter().all(|z| z.origin != spec.origin),
            "zone {} twice",
            spec.origin
        );
        self.zones.push(spec);
        self
    }

    /// The resolver node judges cache time by a manual clock ([`Federation::clock`]).
    pub fn manual_clock(mut self) -> FederationBuilder {
        self.manual_clock = true;
        self
    }

    /// How long past their TTL the resolver node may serve answers stale.
    pub fn max_stale(mut self, age: Duration) -> FederationBuilder {
        self.max_stale = Some(age);
        self
    }

    pub async fn start(mut self) -> Federation {
        if !self.zones.iter().any(|z| z.origin == ".") {
            self.zones.insert(0, ZoneSpec::root());
        }
        // Listeners (and links) first: every address is known before any zone file is written.
        let mut listeners = Vec::new();
        let mut links = Vec::new();
        let mut advertised = Vec::new();
        for spec in &self.zones {
            let mut zone_listeners = Vec::new();
            let mut zone_links = Vec::new();
            let mut urls = Vec::new();
            for _ in 0..spec.servers {
                let listener = bind().await;
                if spec.through_links {
                    let link = Link::start(listener.local_addr()).await;
                    urls.push(link.url());
                    zone_links.push(link);
                } else {
                    urls.push(listener.url());
                }
                zone_listeners.push(listener);
            }
            listeners.push(zone_listeners);
            links.push(zone_links);
            advertised.push(urls);
        }
        let black_hole = self
            .zones
            .iter()
            .flat_map(|z| &z.delegations)
            .any(|d| matches!(d.target, Target::BlackHole))
            .then(BlackHole::new);
        let servers_of = |origin: &str| -> Vec<String> {
            let index = self
                .zones
                .iter()
                .position(|z| z.origin == origin)
                .unwrap_or_else(|| panic!("no zone {origin} in the federation"));
            advertised[index].clone()
        };

        let mut zones = Vec::new();
        for ((index, spec), listeners) in self.zones.iter().enumerate().zip(listeners) {
            // Delegations to the zones whose closest enclosing zone this is, then the spec's own.
            let mut delegations: Vec<Delegation> = self
                .zones
                .iter()
                .enumerate()
                .filter(|(_, child)| parent(&self.zones, &child.origin) == Some(&spec.origin))
                .map(|(child_index, child)| Delegation {
                    zone: relative(&child.origin, &spec.origin),
                    servers: advertised[child_index].clone(),
                    ttl: child.delegation_ttl,
                })
                .collect();
            for extra in &spec.delegations {
                let servers = match &extra.target {
                    Target::ServersOf(origin) => servers_of(origin),
                    Target::BlackHole => {
                        vec![black_hole.as_ref().expect("a black hole").url()]
                    }
                };
                delegations.push(Delegation {
                    zone: extra.zone.clone(),
                    servers,
                    ttl: None,
                });
            }
            let text = spec.text(&advertised[index], &delegations);
            let count = listeners.len();
            let nodes = listeners
                .into_iter()
                .enumerate()
                .map(|(server, listener)| {
                    let mut options = ServeOptions::new(vec![zone(&text)]).node_id(node_id(
                        &spec.origin,
                        server,
                        count,
                    ));
                    for key in &spec.update_keys {
                        options = options.update_key(key.clone());
                    }
                    Some(listener.serve_with(options).expect("node serves"))
                })
                .collect();
            zones.push(Zone {
                origin: spec.origin.clone(),
                nodes,
            });
        }

        let root = &advertised[self.zones.iter().position(|z| z.origin == ".").unwrap()];
        let mut options = ServeOptions::new(Vec::new())
            .node_id("resolver")
            .roots(vec![ServerAddress::new(&root[0], None).unwrap()]);
        let clock = self.manual_clock.then(ManualClock::new);
        if let Some(clock) = &clock {
            options.clock = clock.clone();
        }
        if let Some(age) = self.max_stale {
            options.resolver.cache.max_stale_age = age;
        }
        let resolver = bind().await.serve_with(options).expect("resolver serves");
        Federation {
            zones,
            links: self
                .zones
                .iter()
                .zip(links)
                .map(|(spec, links)| (spec.origin.clone(), links))
                .collect(),
            resolver,
            clock,
            _black_hole: black_hole,
        }
    }
}

/// The closest zone of `zones` strictly above `origin`.
fn parent<'a>(zones: &'a [ZoneSpec], origin: &str) -> Option<&'a String> {
    if origin == "." {
        return None;
    }
    zones
        .iter()
        .map(|z| &z.origin)
        .filter(|candidate| *candidate == "." || origin.ends_with(&format!(".{candidate}")))
        .max_by_key(|candidate| {
            if *candidate == "." {
                0
            } else {
                candidate.len()
            }
        })
}

/// `origin` relative to `parent` (the zone file spells delegations so).
fn relative(origin: &str, parent: &str) -> String {
    if parent == "." {
        origin.to_string()
    } else {
        origin
            .strip_suffix(&format!(".{parent}"))
            .expect("below its parent")
            .to_string()
    }
}

fn node_id(origin: &str, server: usize, count: usize) -> String {
    let label = if origin == "." {
        "root"
    } else {
        origin.split('.').next().unwrap()
    };
    if count == 1 {
        label.to_string()
    } else {
        format!("{label}-{}", server + 1)
    }
}

struct Zone {
    origin: String,
    /// One per server; `None` once stopped.
    nodes: Vec<Option<NodeHandle>>,
}

/// The running federation. Zones are named by origin (`"."` for the root), servers by index.
pub struct Federation {
    zones: Vec<Zone>,
    links: Vec<(String, Vec<Link>)>,
    resolver: NodeHandle,
    clock: Option<Arc<ManualClock>>,
    _black_hole: Option<BlackHole>,
}

impl Federation {
    fn zone(&self, origin: &str) -> &Zone {
        self.zones
            .iter()
            .find(|z| z.origin == origin)
            .unwrap_or_else(|| panic!("no zone {origin} in the federation"))
    }

    /// The resolver node, which serves no zone.
    pub fn resolver(&self) -> &NodeHandle {
        &self.resolver
    }

    /// A client of the resolver node (the generated client, on one connection).
    pub async fn client(&self) -> RegistryClient {
        connect(&self.resolver.grpc_url())
            .await
            .expect("connect to the resolver")
    }

    /// Server `index` of zone `origin`; it must be running.
    pub fn server(&self, origin: &str, index: usize) -> &NodeHandle {
        self.zone(origin).nodes[index]
            .as_ref()
            .unwrap_or_else(|| panic!("server {index} of {origin} was stopped"))
    }

    /// The running servers of zone `origin`.
    pub fn running(&self, origin: &str) -> impl Iterator<Item = &NodeHandle> {
        self.zone(origin).nodes.iter().flatten()
    }

    /// Resolve requests the running servers of zone `origin` have received.
    pub fn resolve_requests(&self, origin: &str) -> u64 {
        self.running(origin).map(NodeHandle::resolve_requests).sum()
    }

    /// The link in front of server `index` of zone `origin` (a zone spec'd `through_links`).
    pub fn link(&self, origin: &str, index: usize) -> &Link {
        let (_, links) = self
            .links
            .iter()
            .find(|(o, _)| o == origin)
            .unwrap_or_else(|| panic!("no zone {origin} in the federation"));
        links
            .get(index)
            .unwrap_or_else(|| panic!("zone {origin} has no link {index}"))
    }

    /// The resolver node's manual clock (built with [`FederationBuilder::manual_clock`]).
    pub fn clock(&self) -> &Arc<ManualClock> {
        self.clock.as_ref().expect("built with a manual clock")
    }

    /// Stops server `index` of zone `origin` (a no-op if it was stopped already).
    pub async fn stop(&mut self, origin: &str, index: usize) {
        let zone = self
            .zones
            .iter_mut()
            .find(|z| z.origin == origin)
            .unwrap_or_else(|| panic!("no zone {origin} in the federation"));
        if let Some(node) = zone.nodes[index].take() {
            node.shutdown().await.expect("clean shutdown");
        }
    }

    /// Stops every node, each cleanly.
    pub async fn shutdown(self) {
        let nodes = self
            .zones
            .into_iter()
            .flat_map(|z| z.nodes)
            .flatten()
            .chain([self.resolver]);
        for node in nodes {
            node.shutdown().await.expect("clean shutdown");
        }
    }
}
