//! `aop cert ca|issue`: a development CA and the certificates of a TLS federation, so a
//! newcomer needs no outside PKI (docs/protocol.md §8.1).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use aop::tls::issue::{self, Subject};

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Write a development CA: DIR/ca.pem (give it to clients as --ca) and DIR/ca.key
    /// (keep it; readable by you only).
    #[command(after_help = "Example:\n  aop cert ca --out certs")]
    Ca(CaArgs),
    /// Write NAME.pem and NAME.key signed by the CA in --ca DIR, valid for servers and
    /// clients (mTLS), with exactly the SANs given (127.0.0.1 and localhost when none is).
    #[command(after_help = "Examples:\n  \
        aop cert issue node1 --ca certs --out certs --ip 127.0.0.1 --dns node1.acme.example\n  \
        aop node --zone zones/acme.toml --grpc 127.0.0.1:7101 --tls-cert certs/node1.pem \
        --tls-key certs/node1.key\n  \
        aop resolve --server https://127.0.0.1:7101 --ca certs/ca.pem analyst.acme")]
    Issue(IssueArgs),
}

#[derive(Debug, Args)]
pub struct CaArgs {
    /// Directory to write ca.pem and ca.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Names the files (NAME.pem, NAME.key) and the certificate's common name.
    name: String,
    /// The CA directory written by `aop cert ca`.
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Directory to write NAME.pem and NAME.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// An IP address the certificate is valid for (repeatable).
    #[arg(long = "ip", value_name = "ADDR")]
    ips: Vec<IpAddr>,
    /// A DNS name the certificate is valid for (repeatable); also the identity
    /// `--update-identity ZONE=NAME` accepts.
    #[arg(long = "dns", value_name = "NAME")]
    dns: Vec<String>,
}

pub fn run(command: CertCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertCommand::Ca(args) => {
            let (cert, key) = issue::write_ca(&args.out)?;
            println!(
                "wrote {} and {} (the key is readable by you only)",
                cert.display(),
                key.display()
            );
            println!(
                "clients trust it with: --ca {} (or AOP_CA={})",
                cert.display(),
                cert.display()
            );
            println!(
                "issue certificates with: aop cert issue NAME --ca {} --out DIR [--ip ADDR]... [--dns NAME]...",
                args.out.display()
            );
        }
        CertCommand::Issue(args) => {
            let subject = Subject {
                dns: args.dns,
                ips: args.ips,
            }
            .or_loopback();
            let (cert, key) = issue::write_issued(&args.ca, &args.name, &subject, &args.out)?;
            let mut sans: Vec<String> = subject.ips.iter().map(ToString::to_string).collect();
            sans.extend(subject.dns.iter().cloned());
            println!(
                "wrote {} and {} for {} (server and client authentication)",
                cert.display(),
                key.display(),
                sans.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
