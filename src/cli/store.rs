//! `aop store backup` and `aop store restore`: a node's store file copied out and put back,
//! for operators who keep backups of their hosts. The work and its checks are the library's
//! (`store::backup`); this module is the flags and what is printed. Both need the node
//! stopped: redb's file lock keeps every other process out of a running node's store.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use aop::store::backup::{self, StoreSummary};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped node's store (DIR/aop.redb) into a backup file, checked as it is
    /// written.
    Backup(BackupArgs),
    /// Put a backup file in place as a stopped node's store, checked first.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    systemctl stop aop-node\n  \
    aop store backup --data-dir /var/lib/aop --out /var/backups/aop/node-$(date +%F).redb\n  \
    systemctl start aop-node\n\n\
    The node must be stopped: a running node holds the store's file lock, and the backup is \
    refused. Every table is copied in one read transaction into a fresh file (written under \
    a temporary name beside --out, fsynced, then renamed), which is opened again with its \
    page checksums checked and every zone read back before it takes the name. The tables are \
    read from a byte copy of the store, also beside --out and checked the same way, so the \
    store itself is never written; keep room there for twice its size. It prints the \
    zones the backup holds with their serials, agent and record counts, and its size.\n\n\
    --json prints one document: file, store, bytes, replaced, zones [{zone, serial, role \
    (primary or secondary), primary (a secondary's primary URL, else null), agents, \
    aliases, delegations, live_endpoints}], agents, records, changes (change-log entries).")]
pub struct BackupArgs {
    /// The node's data directory (its --data-dir, or `data_dir` in its config).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The backup file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    force: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    systemctl stop aop-node\n  \
    aop store restore --data-dir /var/lib/aop --from /var/backups/aop/node-2026-05-01.redb --force\n  \
    systemctl start aop-node\n\n\
    The node must be stopped. The backup is checked first (it opens as a store, with the \
    store's tables, page checksums and values that decode), as a copy written beside the \
    store under a temporary name; a store already in DIR is replaced only with --force, and \
    is then kept as DIR/aop.redb.before-restore. The copy is fsynced and renamed into place, \
    and the directory fsynced. The restored file takes the owner and group of DIR, so a restore run as \
    root leaves a store the service's user can open. When the node starts, zone files with \
    a newer serial than the one last loaded replace the records that came from files, as at \
    any start, and each live endpoint gets a full lease from the start (those whose agents no \
    longer renew expire then).\n\n\
    --json prints one document: store, from, kept (the old store's new name, or null), \
    bytes, zones [...], agents, records, changes, as `aop store backup --json` does.")]
pub struct RestoreArgs {
    /// The node's data directory (created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The backup file, written by `aop store backup`.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Replace a store already in DIR (it is kept as aop.redb.before-restore).
    #[arg(long)]
    force: bool,
    /// Print one JSON document on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Backup(args) => {
            let report = backup::backup(&args.data_dir, &args.out, args.force)?;
            if args.json {
                let mut document = summary_json(&report.backup);
                if let Some(fields) = document.as_object_mut() {
                    fields.insert(
                        "file".into(),
                        json!(report.backup.path.display().to_string()),
                    );
                    fields.insert("store".into(), json!(report.store.display().to_string()));
                    fields.insert("replaced".into(), json!(report.replaced));
                }
                println!("{document:#}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "backup     {} ({}){}",
                report.backup.path.display(),
                size(report.backup.bytes),
                if report.replaced { ", replaced" } else { "" }
            );
            println!("of store   {}", report.store.display());
            print_summary(&report.backup);
        }
        StoreCommand::Restore(args) => {
            let report = backup::restore(&args.data_dir, &args.from, args.force)?;
            if args.json {
                let mut document = summary_json(&report.store);
                if let Some(fields) = document.as_object_mut() {
                    fields.insert(
                        "store".into(),
                        json!(report.store.path.display().to_string()),
                    );
                    fields.insert("from".into(), json!(report.from.display().to_string()));
                    fields.insert(
                        "kept".into(),
                        json!(report.kept.as_ref().map(|p| p.display().to_string())),
                    );
                }
                println!("{document:#}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "restored   {} ({})",
                report.store.path.display(),
                size(report.store.bytes)
            );
            println!("from       {}", report.from.display());
            if let Some(kept) = &report.kept {
                println!("old store  kept as {}", kept.display());
            }
            print_summary(&report.store);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per zone, then the totals.
fn print_summary(summary: &StoreSummary) {
    for zone in &summary.zones {
        let role = if zone.primary_url.is_empty() {
            "primary".to_string()
        } else {
            format!("secondary of {}", zone.primary_url)
        };
        println!(
            "zone       {} serial {} ({role}): {} ({}), {}, {}",
            zone.origin,
            zone.serial,
            count(zone.agents, "agent"),
            count(zone.live_endpoints, "live endpoint"),
            count(zone.aliases, "alias"),
            count(zone.delegations, "delegation")
        );
    }
    println!(
        "holds      {}, {}",
        summary.counts(),
        match summary.changes {
            1 => "1 change-log entry".to_string(),
            n => format!("{n} change-log entries"),
        }
    );
}

/// "1 alias", "3 aliases", "0 agents".
fn count(n: usize, noun: &str) -> String {
    match (n, noun.ends_with('s')) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}

fn summary_json(summary: &StoreSummary) -> Value {
    json!({
        "bytes": summary.bytes,
        "zones": summary.zones.iter().map(|zone| json!({
            "zone": zone.origin,
            "serial": zone.serial,
            "role": if zone.primary_url.is_empty() { "primary" } else { "secondary" },
            "primary": (!zone.primary_url.is_empty()).then_some(&zone.primary_url),
            "agents": zone.agents,
            "aliases": zone.aliases,
            "delegations": zone.delegations,
            "live_endpoints": zone.live_endpoints,
        })).collect::<Vec<_>>(),
        "agents": summary.agents(),
        "records": summary.records(),
        "changes": summary.changes,
    })
}

/// Bytes for people: `812 B`, `48.0 KiB`, `3.2 MiB`.
fn size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if value < KIB {
        format!("{bytes} B")
    } else if value < KIB * KIB {
        format!("{:.1} KiB", value / KIB)
    } else if value < KIB * KIB * KIB {
        format!("{:.1} MiB", value / (KIB * KIB))
    } else {
        format!("{:.1} GiB", value / (KIB * KIB * KIB))
    }
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(size(812), "812 B");
        assert_eq!(size(49_152), "48.0 KiB");
        assert_eq!(size(3_355_443), "3.2 MiB");
    }
}
