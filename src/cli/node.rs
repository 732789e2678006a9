//! `aop node`: one zone server, from flags or a config file (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use aop::config::NodeConfigFile;
use aop::grpc::server::ServerLimits;
use aop::keys::UpdateKey;
use aop::keys::identity::UpdateIdentity;
use aop::name::Name;
use aop::node::{self, NodeConfig};
use aop::record::ServerAddress;
use aop::resolver::ResolverConfig;
use aop::tls::ServerTlsFiles;

#[derive(Debug, Args)]
#[command(after_help = after_help())]
pub struct NodeArgs {
    /// Node config file (TOML); flags given here override its keys.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Zone file this node is authoritative for (repeatable).
    #[arg(long = "zone", value_name = "FILE")]
    zones: Vec<PathBuf>,
    /// gRPC listen address (port 0 picks a free port and logs it).
    #[arg(long, value_name = "ADDR")]
    grpc: Option<SocketAddr>,
    /// The gRPC URL other nodes reach this node at: what secondaries give their primary for
    /// NOTIFY and what gossip spreads [default: the URL of --grpc]. Give it when --grpc is a
    /// wildcard such as 0.0.0.0:7100 (for example https://node1.example:7100).
    #[arg(long, value_name = "URL", value_parser = super::parse_url)]
    advertise: Option<String>,
    /// DNS door listen address, UDP and TCP (for example 127.0.0.2:53); none by default.
    #[arg(long, value_name = "ADDR")]
    dns: Option<SocketAddr>,
    /// Admin endpoint listen address: /metrics (Prometheus), /healthz, /readyz and a status
    /// page at / (for example 127.0.0.1:7300; read-only, bind it to loopback); none by
    /// default. With --tls-cert it speaks HTTPS only, with the same certificate.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Host name the admin endpoint answers (repeatable), besides loopback names and
    /// addresses and the address a request reached; any other Host gets 403 (DNS-rebinding
    /// protection). For example the name a scraper uses on a management network.
    #[arg(long = "admin-allow-host", value_name = "NAME")]
    admin_allow_hosts: Vec<String>,
    /// Names this node in answers (`served_by`) [default: its gRPC address].
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Root hint: gRPC URL of a server of the root zone, where recursion starts (repeatable).
    #[arg(long = "root", value_name = "URL", value_parser = super::parse_url)]
    roots: Vec<String>,
    /// How long past its TTL a cached answer may still be served, marked stale, when every
    /// server of its zone fails [default: 1d].
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    max_stale: Option<Duration>,
    /// Serve ZONE as a secondary of the primary at that gRPC URL (repeatable), for example
    /// finance.acme=http://127.0.0.1:7102.
    #[arg(long = "secondary", value_name = "ZONE=PRIMARY_URL", value_parser = parse_secondary)]
    secondaries: Vec<(Name, String)>,
    /// Directory of the node's store (aop.redb): zones, live registrations and the change
    /// log survive restarts [default: in memory, nothing survives].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Accept updates signed with this key file, written by `aop key new` (repeatable).
    #[arg(long = "update-key", value_name = "KEY_FILE")]
    update_keys: Vec<PathBuf>,
    /// Do not NOTIFY secondaries of changes (they still poll every `refresh`).
    #[arg(long)]
    no_notify: bool,
    /// gRPC requests in flight at once on this node; more are shed at once with
    /// RESOURCE_EXHAUSTED [default: 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_concurrent: Option<u32>,
    /// gRPC connections open at once [default: 8192]; each client address may hold at most
    /// --max-connections-per-client of them [default: 512].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections: Option<u32>,
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_connections_per_client: Option<u32>,
    /// Certificate chain (PEM) of the gRPC door: with --tls-key it speaks TLS only (ALPN h2;
    /// its URL is https://ADDR), and this node presents it to nodes that ask for a client
    /// certificate; --admin serves HTTPS with it too. Re-read on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept Register/Renew/Deregister for ZONE without a signature from a client whose
    /// mTLS certificate carries the DNS name SAN, sent straight to this node as the zone's
    /// primary (repeatable; needs --tls-client-ca), for example
    /// finance.acme=ci.finance.acme. Update keys keep working beside it.
    #[arg(long = "update-identity", value_name = "ZONE=SAN", value_parser = UpdateIdentity::parse)]
    update_identities: Vec<UpdateIdentity>,
    /// Require clients to present a certificate signed by this CA (PEM): mTLS.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Endpoint health probes in flight at once, for the zones this node is primary for
    /// (docs/protocol.md 9.1; each zone file's `health` sets interval and thresholds); 0
    /// turns probing off on this node [default: 256].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100_000))]
    health_probes: Option<u32>,
    /// Gossip with the operator's other nodes on this UDP address (a specific address the
    /// others reach, for example 10.0.0.5:7400; port 0 picks one): SWIM membership, every
    /// datagram sealed with --gossip-key. Only this operator's nodes: never another
    /// organisation's. None by default.
    #[arg(long, value_name = "ADDR")]
    gossip: Option<SocketAddr>,
    /// Gossip address of a member to announce to at start (repeatable).
    #[arg(long = "gossip-seed", value_name = "ADDR")]
    gossip_seeds: Vec<SocketAddr>,
    /// The group key file: 32 random octets in base64 (`head -c 32 /dev/urandom | base64`),
    /// the same on every node of the group.
    #[arg(long, value_name = "FILE")]
    gossip_key: Option<PathBuf>,
    /// DNS answers per second to each client network (IPv4 /24, IPv6 /56) over UDP; past it
    /// every second query is answered empty with TC set (the client retries over TCP) and
    /// the others are dropped [default: no limit].
    #[arg(long, value_name = "QPS", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    dns_rate_limit: Option<u32>,
}

/// The examples, and every key a config file accepts, listed from the loader itself
/// (`config::help_key_list`) so a key added there shows here.
fn after_help() -> String {
    format!(
        "Examples:\n  \
         aop node --zone zones/finance.acme.toml --grpc 127.0.0.1:7102\n  \
         aop node --config deploy/nodes/finance-1.toml\n  \
         aop node --secondary finance.acme=http://127.0.0.1:7102 --grpc 127.0.0.1:7103\n  \
         aop node --zone zones/acme.toml --grpc 127.0.0.1:7101 --admin 127.0.0.1:7301\n  \
         aop node --zone zones/acme.toml --grpc 127.0.0.1:7101 --tls-cert certs/acme.pem \
         --tls-key certs/acme.key --ca certs/ca.pem\n\n\
         A config file (TOML) takes these keys: {}. Each mirrors the flag of that name \
         (zones: --zone, roots: --root, update_key_files: --update-key, notify = false: \
         --no-notify; [[update_key]] holds the lines `aop key new` prints); a flag given here \
         wins, and paths are relative to the file. See deploy/README.md.",
        aop::config::help_key_list()
    )
}

pub async fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => NodeConfigFile::load(path)?,
        None => NodeConfigFile::default(),
    };
    let grpc = args.grpc.or(file.grpc).context(
        "no gRPC listen address: give --grpc ADDR (for example 127.0.0.1:7100) or `grpc` in the config file",
    )?;
    let zone_files = if args.zones.is_empty() {
        file.zones
    } else {
        args.zones
    };
    let root_urls = if args.roots.is_empty() {
        file.roots
    } else {
        args.roots
    };
    let mut secondaries = args.secondaries;
    if secondaries.is_empty() {
        for entry in &file.secondary {
            secondaries.push(secondary(&entry.zone, &entry.primary)?);
        }
    }
    if zone_files.is_empty() && root_urls.is_empty() && secondaries.is_empty() {
        bail!(
            "nothing to do: give --zone FILE (repeatable) to serve zones, --secondary \
             ZONE=PRIMARY_URL to copy one, --root URL to resolve (or `zones`, `secondary`, \
             `roots` in the config file)"
        );
    }
    let mut update_keys = Vec::new();
    for entry in file.update_key.clone() {
        update_keys
            .push(UpdateKey::try_from(entry).context("invalid [[update_key]] in the config file")?);
    }
    for path in file.update_key_files.iter().chain(&args.update_keys) {
        update_keys.push(UpdateKey::load_file(path)?);
    }
    let mut update_identities = args.update_identities;
    if update_identities.is_empty() {
        for entry in file.update_identities.clone() {
            update_identities.push(
                UpdateIdentity::try_from(entry)
                    .map_err(|e| anyhow::anyhow!("invalid update_identities entry: {e}"))?,
            );
        }
    }
    let mut resolver = ResolverConfig::default();
    for url in &root_urls {
        let root =
            ServerAddress::new(url, None).with_context(|| format!("invalid root hint {url:?}"))?;
        resolver.roots.push(root);
    }
    let max_stale = match (args.max_stale, &file.max_stale) {
        (Some(duration), _) => Some(duration),
        (None, Some(text)) => Some(
            super::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("invalid max_stale in the config file: {e}"))?,
        ),
        (None, None) => None,
    };
    if let Some(max_stale) = max_stale {
        resolver.cache.max_stale_age = max_stale;
    }
    let membership = membership_config(
        args.gossip,
        &args.gossip_seeds,
        args.gossip_key,
        file.membership.clone(),
    )?;
    // The flags are checked by clap; the file's values here, against the same range.
    for (key, value) in [
        ("max_concurrent", file.max_concurrent),
        ("max_connections", file.max_connections),
        (
            "max_connections_per_client",
            file.max_connections_per_client,
        ),
        ("dns_rate_limit", file.dns_rate_limit),
    ] {
        if let Some(value) = value
            && !(1..=1_000_000).contains(&value)
        {
            bail!(
                "{key} = {value} in the config file is out of range: it must be from 1 to 1000000"
            );
        }
    }
    let config = NodeConfig {
        node_id: args.node_id.or(file.node_id),
        grpc,
        advertise: args.advertise.or(file.advertise),
        dns: args.dns.or(file.dns),
        dns_rate_limit: args.dns_rate_limit.or(file.dns_rate_limit),
        admin: args.admin.or(file.admin),
        admin_allow_hosts: if args.admin_allow_hosts.is_empty() {
            file.admin_allow_hosts
        } else {
            args.admin_allow_hosts
        },
        zone_files: zone_files.clone(),
        secondaries,
        data_dir: args.data_dir.or(file.data_dir),
        update_keys,
        update_identities,
        notify: !args.no_notify && file.notify.unwrap_or(true),
        resolver,
        tls: tls_files(
            &args.tls_cert,
            &args.tls_key,
            &args.tls_client_ca,
            file.tls.unwrap_or_default(),
        )?,
        membership,
        grpc_limits: {
            let mut limits = ServerLimits::default();
            if let Some(n) = args.max_concurrent.or(file.max_concurrent) {
                limits.max_concurrent = n as usize;
            }
            if let Some(n) = args.max_connections.or(file.max_connections) {
                limits.connections.total = n as usize;
            }
            if let Some(n) = args
                .max_connections_per_client
                .or(file.max_connections_per_client)
            {
                limits.connections.per_client = n as usize;
            }
            limits
        },
        health_probes: match args.health_probes.or(file.health_probes) {
            Some(0) => None,
            Some(n) => Some(n as usize),
            None => Some(aop::health::DEFAULT_CONCURRENCY),
        },
    };
    let mutual = config
        .tls
        .server
        .as_ref()
        .is_some_and(|server| server.client_ca.is_some());
    if !config.update_identities.is_empty() && !mutual {
        bail!(
            "--update-identity (update_identities) needs mTLS, or no client ever proves an \
             identity: give --tls-cert, --tls-key and --tls-client-ca (or [tls] cert, key, \
             client_ca)"
        );
    }
    let stop = super::shutdown_signal();
    let (mut handle, tls) = node::start_with_tls(config).await?;
    tracing::info!(
        node = handle.node_id(),
        grpc = %handle.grpc_url(),
        advertised = handle.advertised_url(),
        dns = ?handle.dns_addr(),
        admin = handle.admin_url().as_deref().unwrap_or("none"),
        zones = ?handle.catalog().origins().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "node ready"
    );
    let reload = reload_on_sighup(handle.authority().clone(), zone_files, tls);
    tokio::select! {
        () = stop => {
            tracing::info!("shutting down");
            handle.shutdown().await?;
        }
        result = handle.stopped() => result?,
        () = reload => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The node's TLS files: the flags, else `[tls]` of the config file; `--ca` (or AOP_CA)
/// wins over `tls.ca`.
fn tls_files(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    client_ca: &Option<PathBuf>,
    file: aop::config::TlsConfig,
) -> anyhow::Result<node::NodeTlsFiles> {
    let (cert, key, client_ca) = if cert.is_some() {
        (cert.clone(), key.clone(), client_ca.clone())
    } else {
        (file.cert, file.key, client_ca.clone().or(file.client_ca))
    };
    let server = match (cert, key) {
        (Some(cert), Some(key)) => Some(ServerTlsFiles {
            cert,
            key,
            client_ca,
        }),
        (None, None) if client_ca.is_none() => None,
        _ => bail!(
            "TLS needs both a certificate and its key: give --tls-cert FILE --tls-key FILE \
             (or cert and key in [tls] of the config file)"
        ),
    };
    Ok(node::NodeTlsFiles {
        server,
        ca: super::client_tls_files().ca.or(file.ca),
    })
}

/// `--gossip`, `--gossip-seed`, `--gossip-key` over `[membership]` (each flag wins over its
/// key): no address means no gossip; an address without a key is an error.
fn membership_config(
    bind: Option<SocketAddr>,
    seeds: &[SocketAddr],
    key_file: Option<PathBuf>,
    file: Option<aop::config::MembershipFileConfig>,
) -> anyhow::Result<Option<aop::membership::MembershipConfig>> {
    let file = file.unwrap_or_default();
    let Some(bind) = bind.or(file.bind) else {
        if !seeds.is_empty() || key_file.is_some() {
            bail!("--gossip-seed and --gossip-key need --gossip ADDR (or `bind` in [membership])");
        }
        return Ok(None);
    };
    let key_file = key_file.or(file.key_file).context(
        "gossip needs the group key: give --gossip-key FILE (or `key_file` in [membership]); \
         make one with `head -c 32 /dev/urandom | base64 > gossip.key`",
    )?;
    let key = aop::membership::GroupKey::load_file(&key_file)?;
    Ok(Some(aop::membership::MembershipConfig {
        bind,
        seeds: if seeds.is_empty() {
            file.seeds
        } else {
            seeds.to_vec()
        },
        key,
        settings: aop::membership::Settings::default(),
    }))
}

/// A `[[secondary]]` of the config file.
fn secondary(zone: &str, url: &str) -> anyhow::Result<(Name, String)> {
    let zone = Name::parse(zone).with_context(|| format!("invalid secondary zone {zone:?}"))?;
    ServerAddress::new(url, None)
        .with_context(|| format!("invalid primary URL {url:?} for zone {zone}"))?;
    Ok((zone, url.trim_end_matches('/').to_string()))
}

/// The value parser of `--secondary ZONE=PRIMARY_URL`: a bad value is bad usage (exit 2).
fn parse_secondary(text: &str) -> Result<(Name, String), String> {
    let (zone, url) = text.split_once('=').ok_or_else(|| {
        "expected ZONE=PRIMARY_URL, for example finance.acme=http://127.0.0.1:7102".to_string()
    })?;
    let zone = Name::parse(zone).map_err(|error| format!("invalid zone: {error}"))?;
    let url = super::parse_url(url).map_err(|reason| format!("invalid primary URL: {reason}"))?;
    Ok((zone, url.trim_end_matches('/').to_string()))
}

/// Reloads the zone files on every SIGHUP: a file with a newer serial replaces the records
/// that came from the file; live registrations stay. Runs until the node stops.
async fn reload_on_sighup(
    authority: aop::authority::Authority,
    files: Vec<PathBuf>,
    tls: node::NodeTls,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; zone files are not reloaded");
            std::future::pending::<()>().await;
            return;
        };
        while hangups.recv().await.is_some() {
            // Certificates first: they do not depend on the zones, and a bad zone file must
            // not keep a renewed certificate from being used.
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificates and keys re-read"),
                Err(error) => {
                    tracing::error!(%error, "TLS files not reloaded; still using the ones read before")
                }
            }
            tracing::info!(files = files.len(), "SIGHUP: reloading zone files");
            let zones = match aop::node::load_zone_files(&files) {
                Ok(zones) => zones,
                Err(error) => {
                    tracing::error!(%error, "zone files not reloaded; still serving the zones as they were");
                    continue;
                }
            };
            match authority.reload(zones).await {
                Err(error) => tracing::error!(%error, "zone files not reloaded"),
                Ok(results) => {
                    for (zone, result) in results {
                        match result {
                            Ok(Some(serial)) => tracing::info!(%zone, serial, "zone file loaded"),
                            Ok(None) => {
                                tracing::info!(%zone, "zone file serial not newer than the one loaded; unchanged")
                            }
                            Err(error) => tracing::error!(%zone, %error, "zone file not loaded"),
                        }
                    }
                }
            }
        }
    }
    std::future::pending::<()>().await;
}
