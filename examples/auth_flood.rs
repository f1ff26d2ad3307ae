//! First logins under a basic-auth flood: how long a valid, not yet cached, login waits while
//! other clients send wrong passwords as fast as the exporter answers them. Prints one table.
//!
//! ```sh
//! cargo build --release --bin workspacesweb-exporter --example auth_flood
//! target/release/examples/auth_flood --exporter target/release/workspacesweb-exporter
//! # the flood from the same address as the logins (no peer to tell them apart)
//! target/release/examples/auth_flood --exporter target/release/workspacesweb-exporter \
//!     --flood-from 127.0.0.1
//! ```
//!
//! The exporter is the real binary in `--demo` mode, a child process, with a web config of
//! `--logins + 1` users hashed at `--cost`. `--flooders` keep-alive clients, bound to
//! `--flood-from`, send `GET /metrics` with a wrong password for a configured user in a loop.
//! Once `/-/ready` says 200 and after `--warmup` of flood, the bench makes `--logins` first
//! logins (`GET /-/ready`) one after the other from `--login-from`, each as a different user
//! with the right password (so none is cached), and times each from connect to the end of the
//! response. Only loopback addresses are used; Linux
//! routes all of 127.0.0.0/8 to the loopback interface, so every address there is a distinct
//! peer to the exporter.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

#[path = "../tests/common/raw_http.rs"]
mod raw_http;

#[derive(Debug, Parser)]
#[command(about = "First logins under a basic-auth flood of wrong passwords")]
struct Args {
    /// The exporter binary (default: `workspacesweb-exporter` beside this example's directory).
    #[arg(long)]
    exporter: Option<PathBuf>,
    /// bcrypt cost of every configured user.
    #[arg(long, default_value_t = 10)]
    cost: u32,
    /// Concurrent clients sending wrong passwords.
    #[arg(long, default_value_t = 20)]
    flooders: usize,
    /// Source address of the flood (a loopback address).
    #[arg(long, default_value = "127.0.0.2")]
    flood_from: IpAddr,
    /// Source address of the logins (a loopback address).
    #[arg(long, default_value = "127.0.0.1")]
    login_from: IpAddr,
    /// First logins to time, one after the other, each as a different user.
    #[arg(long, default_value_t = 20)]
    logins: usize,
    /// Flood time before the first login.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
}

/// Kills the exporter when the bench ends, however it ends.
struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn default_exporter() -> PathBuf {
    let mut path = std::env::current_exe().expect("current exe");
    path.pop();
    if path.ends_with("examples") {
        path.pop();
    }
    path.join("workspacesweb-exporter")
}

/// A connection from `from` to `to`.
async fn connect(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match from {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// Sends one GET and reads its response; the status, or `None` when the connection ended.
async fn exchange(stream: &mut TcpStream, path: &str, authorization: &str) -> Option<u16> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: {authorization}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let response = raw_http::read_response(stream, false).await.ok()?;
    Some(response.status)
}

/// One flooding client: wrong passwords on a keep-alive connection, reconnecting when closed.
async fn flood(
    from: IpAddr,
    to: SocketAddr,
    wrong: String,
    stop: Arc<AtomicBool>,
    answers: Arc<[AtomicU64; 3]>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect(from, to).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            match exchange(&mut stream, "/metrics", &wrong).await {
                Some(401) => answers[0].fetch_add(1, Ordering::Relaxed),
                Some(503) => answers[1].fetch_add(1, Ordering::Relaxed),
                Some(_) => answers[2].fetch_add(1, Ordering::Relaxed),
                None => break,
            };
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut yaml = String::from("basic_auth_users:\n");
    for i in 0..=args.logins {
        let hash = bcrypt::hash(format!("right-{i}"), args.cost).expect("bcrypt");
        writeln!(yaml, "  user{i}: '{hash}'").expect("write");
    }
    let web = dir.path().join("web.yml");
    std::fs::write(&web, yaml).expect("write web config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let exporter = args.exporter.clone().unwrap_or_else(default_exporter);
    let _child = Exporter(
        Command::new(&exporter)
            .args(["--demo", "--log.level", "error", "--web.listen-address"])
            .arg(addr.to_string())
            .arg("--web.config.file")
            .arg(&web)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exporter.display())),
    );
    let started = Instant::now();
    loop {
        if let Ok(mut s) = connect(args.login_from, addr).await
            && exchange(&mut s, "/-/healthy", "none").await == Some(200)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the exporter never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // /-/ready answers 503 until the demo's portals are polled: wait for it before timing.
    let ready = basic("user0", "right-0");
    loop {
        if let Ok(mut s) = connect(args.login_from, addr).await
            && exchange(&mut s, "/-/ready", &ready).await == Some(200)
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the exporter never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let answers: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let wrong = basic("user0", "wrong");
    let mut flooders = Vec::new();
    for _ in 0..args.flooders {
        flooders.push(tokio::spawn(flood(
            args.flood_from,
            addr,
            wrong.clone(),
            Arc::clone(&stop),
            Arc::clone(&answers),
        )));
    }
    tokio::time::sleep(args.warmup).await;
    let window = Instant::now();
    let before: Vec<u64> = answers.iter().map(|a| a.load(Ordering::Relaxed)).collect();

    let mut latencies = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 1..=args.logins {
        let began = Instant::now();
        let status = match connect(args.login_from, addr).await {
            Ok(mut s) => exchange(
                &mut s,
                "/-/ready",
                &basic(&format!("user{i}"), &format!("right-{i}")),
            )
            .await
            .unwrap_or(0),
            Err(_) => 0,
        };
        latencies.push(began.elapsed().as_secs_f64() * 1000.0);
        *statuses.entry(status).or_default() += 1;
    }
    let seconds = window.elapsed().as_secs_f64();
    let after: Vec<u64> = answers.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    stop.store(true, Ordering::Relaxed);
    for f in flooders {
        f.abort();
    }

    let one = {
        let hash = bcrypt::hash("x", args.cost).expect("bcrypt");
        let t = Instant::now();
        let _ = bcrypt::verify("y", &hash);
        t.elapsed().as_secs_f64() * 1000.0
    };
    latencies.sort_by(f64::total_cmp);
    let rate = |i: usize| (after[i] - before[i]) as f64 / seconds;
    println!(
        "| cost | one bcrypt | flooders (from) | logins (from) | login p50 | login p90 | login max | login statuses | flood 401/s | flood 503/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {one:.0} ms | {} ({}) | {} ({}) | {:.0} ms | {:.0} ms | {:.0} ms | {statuses:?} | {:.1} | {:.1} |",
        args.cost,
        args.flooders,
        args.flood_from,
        args.logins,
        args.login_from,
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        latencies.last().copied().unwrap_or(f64::NAN),
        rate(0),
        rate(1),
    );
}
