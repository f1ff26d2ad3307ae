//! `workspacesweb-sim`: the WorkSpaces Web API simulator as a standalone server.
//!
//! Prints the listen address, one line per portal (id and ARN) and, with `--accounts`, the
//! organization and one line per account, then serves until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;

use clap::Parser;
use workspacesweb_sim::{SimConfig, Simulator};

/// Serves a simulated WorkSpaces Web API (ListSessions, GetSession, ListPortals, GetPortal) over
/// HTTP, with STS AssumeRole and, with --accounts, an AWS Organization (ListAccounts, ListChildren,
/// ListAccountsForParent, DescribeOrganization...) on the same endpoint.
///
/// Any access key is accepted. With --accounts, the role `workspacesweb-exporter` can be assumed
/// in every account (arn:aws:iam::<account>:role/workspacesweb-exporter); credentials it issues
/// see only their account's portals. Unknown keys act as the management account.
#[derive(Debug, Parser)]
#[command(name = "workspacesweb-sim", version, about, long_about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Seed of the session model (same seed, same sessions).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of portals; the first three are the demo portals (busy, quiet, flaky). Ignored with --accounts.
    #[arg(long, default_value_t = 3)]
    portals: usize,
    /// Serve an AWS Organization of this many accounts (the first is the management account),
    /// spread over OUs three levels deep, each with --portals-per-region portals in each of --regions.
    #[arg(long)]
    accounts: Option<usize>,
    /// Regions of the organization's portals (with --accounts), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "us-east-1")]
    regions: Vec<String>,
    /// Portals per account and region (with --accounts).
    #[arg(long, default_value_t = 1)]
    portals_per_region: usize,
}

impl Args {
    /// The simulator's configuration.
    fn config(&self) -> SimConfig {
        match self.accounts {
            Some(n) => {
                let regions: Vec<&str> = self.regions.iter().map(String::as_str).collect();
                SimConfig::generated_organization(self.seed, n, &regions, self.portals_per_region)
            }
            None => SimConfig::generated(self.seed, self.portals),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let sim = Simulator::new(args.config());
    let running = match sim.start(args.listen).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("workspacesweb-sim: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {}", running.endpoint_url());
    for p in sim.portals() {
        let _ = writeln!(
            out,
            "portal {} {} region={} name={:?} max_concurrent_sessions={}",
            p.id, p.arn, p.region, p.display_name, p.max_concurrent_sessions
        );
    }
    if let Some(org) = sim.organization() {
        let _ = writeln!(
            out,
            "organization {} management={} root={} member_role={}",
            org.id,
            org.management_account,
            org.root_id,
            org.member_role.as_deref().unwrap_or("")
        );
        for a in &org.accounts {
            let _ = writeln!(
                out,
                "account {} name={:?} parent={} state={}",
                a.id,
                a.name,
                org.parent_of(a),
                a.state.as_str()
            );
        }
    }
    let _ = out.flush();
    drop(out);
    wait_for_signal().await;
    running.shutdown().await;
    std::process::ExitCode::SUCCESS
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
