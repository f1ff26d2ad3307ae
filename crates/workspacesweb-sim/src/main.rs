//! `workspacesweb-sim`: the WorkSpaces Web API simulator as a standalone server.
//!
//! Prints the listen address and one line per portal (id and ARN), then serves until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;

use clap::Parser;
use workspacesweb_sim::{SimConfig, Simulator};

/// Serves a simulated WorkSpaces Web API (ListSessions, GetSession, ListPortals, GetPortal) over HTTP.
#[derive(Debug, Parser)]
#[command(name = "workspacesweb-sim", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Seed of the session model (same seed, same sessions).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of portals; the first three are the demo portals (busy, quiet, flaky).
    #[arg(long, default_value_t = 3)]
    portals: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let sim = Simulator::new(SimConfig::generated(args.seed, args.portals));
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
