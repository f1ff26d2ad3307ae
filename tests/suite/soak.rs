//! Soak: the exporter (scheduler + HTTP server, in process) against the simulator with churn and
//! faults cycling during the run, plan updates every 10 s (what a reload does to the scheduler:
//! new labels, concurrency lowered and raised again), a scraper alternating gzip and plain text,
//! 100 plain-text scrapers at once, and a hostile client (slow readers, garbage requests,
//! connections opened and left idle); prints RSS over time and the errors, and checks at the end
//! that the counters equal the simulator's ground truth and that no scrape failed.
//!
//! CI runs a 60 s smoke version; a long run:
//! `SOAK_SECONDS=3600 cargo test --release --test suite soak:: -- --nocapture`.
//!
//! Ground truth. The simulator runs on a manual clock that the test moves ahead of the system
//! clock (20 to 80 minutes ahead, and 5x faster than real time, for churn). The exporter counts
//! from T0 = the start of its first successful poll (system clock, read back from the first
//! snapshot). The simulator's random arrivals begin at its anchor hour, which the test puts at
//! least 10 minutes after the system clock at the start: every one of them starts clearly after
//! T0. Before the anchor there are only the generated history (a few hundred sessions over 35
//! days) and, per portal, three *baseline* sessions the test adds, started an hour before T0 and
//! still running at the first poll (two end during the run). Because the simulator is ahead, a
//! session listed Active at any poll ends after T0, so the exact counters are, from the sessions
//! listable at the frozen final time C: `started` = sessions that started at or after T0 (never
//! the baseline), `terminated` = sessions ended at or after T0 (the baseline ones included). The
//! test checks that no session starts or ends between the scheduler's start and the T0 it read
//! back, so the truth does not depend on where exactly T0 lies in that window. The final check
//! freezes the clock, turns faults off and waits for a poll that started after the freeze (and a
//! complete monthly-users backfill, which finds sessions that started long before T0 and ended
//! after it).
//!
//! RSS criterion: the median of the last quarter of the samples is at most 1.5x the median of the
//! first quarter plus 32 MiB. Medians ignore one-off spikes (a gzip buffer, allocator arenas); the
//! slack covers the simulator, which lives in the same process and keeps every session it ever
//! generated (35-day retention); a leak that grows with polls, pages or scrapes over an hour
//! exceeds it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::poll::{MAX_BACKOFF, Scheduler};
use workspacesweb_exporter::session::UnixMillis;
use workspacesweb_sim::{
    Clock, Faults, GeneratedModel, PortalSpec, SessionModel, SimConfig, SimSession,
};

const PORTALS: usize = 5;
/// The simulator's arrivals begin at least this long after the system clock at the start, and its
/// clock starts this long after they begin.
const AHEAD_MS: i64 = 10 * 60_000;
const HOUR_MS: i64 = 3_600_000;
/// How much faster the simulator's clock runs than the system clock.
const SPEED: i64 = 5;

fn portal_id(i: usize) -> String {
    format!("dddddddd-0000-4000-8000-{i:012}")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn median(v: &[u64]) -> u64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The faults of phase `n` (portal 0 never gets any: it is the control for isolation).
fn phase_faults(n: usize) -> (&'static str, Faults) {
    match n % 5 {
        0 => ("none", Faults::none()),
        1 => ("throttle 50%", Faults::throttle(0.5, 1)),
        2 => ("InternalServerException", {
            let mut f = Faults::error("InternalServerException");
            f.retry_after_secs = 0;
            f
        }),
        3 => (
            "latency 2s",
            Faults {
                latency: Duration::from_secs(2),
                ..Faults::none()
            },
        ),
        _ => ("throttle 20% + 300ms", {
            let mut f = Faults::throttle(0.2, 0);
            f.latency = Duration::from_millis(300);
            f
        }),
    }
}

/// Set in the child process that runs the soak alone.
const ALONE: &str = "WORKSPACESWEB_SOAK_ALONE";

/// The soak reads this process's memory, and the suite's other tests run in the same process: so
/// it runs alone, in a child process of this test binary (`--exact`), whose output is shown here.
#[test]
fn soak_with_churn_faults_and_scrapes() {
    if std::env::var_os(ALONE).is_some() {
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(soak());
    }
    let exe = std::env::current_exe().expect("the test binary");
    let child = std::process::Command::new(exe)
        .args([
            "soak::soak_with_churn_faults_and_scrapes",
            "--exact",
            "--nocapture",
        ])
        .env(ALONE, "1")
        .output()
        .expect("run the soak in a child process");
    print!("{}", String::from_utf8_lossy(&child.stdout));
    eprint!("{}", String::from_utf8_lossy(&child.stderr));
    assert!(child.status.success(), "the soak failed: {}", child.status);
}

async fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
        .max(20);
    let run = Duration::from_secs(seconds);
    let real0 = now_ms();
    // The simulator's anchor hour (where its arrivals begin) is the hour of its starting time: the
    // first hour boundary after real0 + AHEAD_MS. Its clock starts AHEAD_MS later.
    let anchor = (real0 + AHEAD_MS).div_euclid(HOUR_MS) * HOUR_MS + HOUR_MS;
    let sim0 = anchor + AHEAD_MS;
    let clock = Clock::manual(sim0);
    let mut sim = SimConfig::new(2026).with_clock(clock.clone());
    for i in 0..PORTALS {
        sim = sim.with_portal(PortalSpec::new(
            portal_id(i),
            SessionModel::Generated(GeneratedModel {
                arrivals_per_hour: 1800.0 + 600.0 * i as f64,
                mean_duration_secs: 90.0,
                duration_sigma: 0.8,
                users: 40,
                history_sessions: 600,
                odd_usernames: i == 1,
                diurnal_amplitude: 0.0,
            }),
        ));
    }
    let env = start(sim).await;
    env.clients.set_rate(Some(40.0));
    // The baseline: started an hour before T0, running at the first poll; two of them end during
    // the run (the first 20 s of simulated time after the start, i.e. 4 s of real time, in).
    for i in 0..PORTALS {
        for (k, end) in [Some(sim0 + 20_000), Some(sim0 + 60_000), None]
            .into_iter()
            .enumerate()
        {
            let mut s = SimSession::new(
                SimSession::id_for(1_000 + k as u64),
                format!("baseline-{k}"),
                real0 - HOUR_MS - 60_000 * k as i64,
            );
            s.end_ms = end;
            env.sim.add_session(&portal_id(i), s).expect("known portal");
        }
    }

    // The simulator's clock: ahead of the system clock and faster, until frozen.
    let frozen = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (clock, frozen) = (clock.clone(), frozen.clone());
        tokio::spawn(async move {
            while !frozen.load(Ordering::Relaxed) {
                let real = now_ms();
                clock.set(sim0 + (real - real0) * SPEED);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let plans = (0..PORTALS)
        .map(|i| {
            let mut p = plan(&portal_id(i), Duration::from_secs(2), 100);
            p.timeout = Duration::from_millis(1600);
            p
        })
        .collect();
    // No T0 is earlier than this.
    let t0_min = now_ms();
    let mut sched = Scheduler::start(plans, &env.clients, env.store.clone(), 4).await;

    let server = Serving::start(env.store.clone()).await;
    let addr = server.addr.clone();

    // T0 of each portal: the start of its first successful poll.
    let t0: Arc<std::sync::Mutex<BTreeMap<String, UnixMillis>>> = Arc::default();
    let watcher = {
        let (store, t0) = (env.store.clone(), t0.clone());
        tokio::spawn(async move {
            store
                .wait_until(|ps| {
                    let mut t0 = t0.lock().expect("t0");
                    for p in ps {
                        if let (true, Some(s)) = (p.up, p.last_success_unix) {
                            t0.entry(p.portal_id.clone())
                                .or_insert((s * 1000.0).round() as UnixMillis);
                        }
                    }
                    t0.len() == PORTALS
                })
                .await;
        })
    };

    // Continuous scraping, on a blocking thread (a plain HTTP client).
    let scrapes_ok = Arc::new(AtomicU64::new(0));
    let scrapes_failed = Arc::new(AtomicU64::new(0));
    let scraping = Arc::new(AtomicBool::new(true));
    let scraper = {
        let (ok, failed, on, addr) = (
            scrapes_ok.clone(),
            scrapes_failed.clone(),
            scraping.clone(),
            addr.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut i = 0u64;
            while on.load(Ordering::Relaxed) {
                let accept = if i.is_multiple_of(2) {
                    "gzip"
                } else {
                    "identity"
                };
                let path = if i % 10 == 9 { "/" } else { "/metrics" };
                match http_get_with(&addr, path, &[("Accept-Encoding", accept)]) {
                    Ok((200, _, body)) if !body.is_empty() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // 100 plain-text scrapers at once, each scraping about once a second.
    let plain_ok = Arc::new(AtomicU64::new(0));
    let plain_failed = Arc::new(AtomicU64::new(0));
    let plain_scrapers: Vec<_> = (0..100)
        .map(|_| {
            let (ok, failed, on, addr) = (
                plain_ok.clone(),
                plain_failed.clone(),
                scraping.clone(),
                addr.clone(),
            );
            std::thread::spawn(move || {
                while on.load(Ordering::Relaxed) {
                    match http_get_with(&addr, "/metrics", &[("Accept-Encoding", "identity")]) {
                        Ok((200, _, body)) if !body.is_empty() => {
                            ok.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    std::thread::sleep(Duration::from_millis(1000));
                }
            })
        })
        .collect();
    // A hostile client: requests that are garbage, requests never finished, and a scrape read
    // one small chunk at a time; the server must go on answering everyone else.
    let hostile = {
        let (on, addr) = (scraping.clone(), addr.clone());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut held = Vec::new();
            while on.load(Ordering::Relaxed) {
                if let Ok(mut c) = std::net::TcpStream::connect(&addr) {
                    let _ = c.write_all(b"\x16\x03\x01garbage\r\n\r\n");
                }
                if let Ok(mut c) = std::net::TcpStream::connect(&addr) {
                    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
                    held.push(c);
                }
                if let Ok(mut c) = std::net::TcpStream::connect(&addr) {
                    let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
                    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 64];
                    let _ = c.read(&mut buf);
                    held.push(c);
                }
                if held.len() > 60 {
                    held.drain(..30);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    // Faults toggled during the run; plan updates every 10 s; RSS sampled.
    let began = Instant::now();
    let mut updates = 0u32;
    let samples = 24u32;
    let phases = 8usize;
    let mut rss = Vec::new();
    let mut phase = usize::MAX;
    let mut control_always_up = true;
    let mut control_seen_up = false;
    println!(
        "{:>6} {:>10} {:>8} {:>8} {:>6} {:>10}  faults",
        "t(s)", "VmRSS kB", "scrapes", "failed", "up", "errors"
    );
    for k in 0..samples {
        let due = began + run.mul_f64(0.85 * f64::from(k) / f64::from(samples));
        tokio::time::sleep_until(due.into()).await;
        let n =
            (began.elapsed().as_secs_f64() / (run.as_secs_f64() * 0.85 / phases as f64)) as usize;
        if n != phase {
            phase = n;
            let (_, faults) = phase_faults(phase);
            for i in 1..PORTALS {
                env.sim
                    .set_faults(&portal_id(i), faults.clone())
                    .expect("known portal");
            }
        }
        // A reload's effect on the scheduler: every plan changes (a label), and the concurrency
        // is lowered then raised again. Counters must carry over.
        if began.elapsed() >= Duration::from_secs(10 * u64::from(updates + 1)) {
            updates += 1;
            let plans = (0..PORTALS)
                .map(|i| {
                    let mut p = plan(&portal_id(i), Duration::from_secs(2), 100);
                    p.timeout = Duration::from_millis(1600);
                    p.labels.push(("reload".to_string(), updates.to_string()));
                    p
                })
                .collect();
            let changes = sched.apply(plans).await;
            assert_eq!(changes.updated.len(), PORTALS, "every plan changed");
            sched.set_concurrency(if updates % 2 == 1 { 1 } else { 4 });
        }
        let ps = env.store.portals();
        let up = ps.iter().filter(|p| p.up).count();
        // Once up, the portal without faults stays up whatever the others go through.
        let control_up = ps.iter().any(|p| p.portal_id == portal_id(0) && p.up);
        if control_seen_up && !control_up {
            control_always_up = false;
        }
        control_seen_up |= control_up;
        let errors: u64 = ps.iter().flat_map(|p| p.api_errors.values()).sum();
        let r = rss_kib();
        rss.push(r);
        println!(
            "{:>6.1} {:>10} {:>8} {:>8} {:>6} {:>10}  {}",
            began.elapsed().as_secs_f64(),
            r,
            scrapes_ok.load(Ordering::Relaxed),
            scrapes_failed.load(Ordering::Relaxed),
            format!("{up}/{PORTALS}"),
            errors,
            phase_faults(phase).0
        );
    }

    // The end: faults off, the clock frozen, one more successful poll of every portal.
    for i in 0..PORTALS {
        env.sim
            .set_faults(&portal_id(i), Faults::none())
            .expect("known portal");
    }
    tokio::time::sleep_until((began + run.mul_f64(0.85)).into()).await;
    frozen.store(true, Ordering::Relaxed);
    ticker.await.expect("ticker");
    let final_sim_ms = clock.now_ms();
    let frozen_at = now_ms();
    tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("every portal had a first successful poll")
        .expect("watcher");
    // A portal that failed for long backs off up to MAX_BACKOFF (300 s) before its next poll: the
    // hang guard allows for it.
    let guard = MAX_BACKOFF + Duration::from_secs(60);
    tokio::time::timeout(
        guard,
        env.store.wait_until(|ps| {
            ps.len() == PORTALS
                && ps.iter().all(|p| {
                    p.up && p.monthly_active_users.is_some()
                        && p.last_success_unix
                            .is_some_and(|s| (s * 1000.0).round() as UnixMillis > frozen_at)
                })
        }),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "no poll of every portal after the faults ended: {:?}",
            env.store.portals()
        )
    });
    println!(
        "final successful polls {:.1}s after the faults ended",
        (now_ms() - frozen_at) as f64 / 1000.0
    );
    scraping.store(false, Ordering::Relaxed);
    scraper.await.expect("scraper");
    for t in plain_scrapers {
        t.join().expect("plain scraper");
    }
    hostile.join().expect("hostile client");
    let (status, _, _) = http_get(&addr, "/-/healthy").expect("healthy");
    assert_eq!(status, 200);
    server.stop().await;
    sched.shutdown().await;

    // Errors seen over the run, by operation and code.
    let mut by_code: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut requests = 0u64;
    for p in env.store.portals() {
        requests += p.api_requests.values().sum::<u64>();
        for (k, v) in &p.api_errors {
            *by_code.entry(k.clone()).or_default() += v;
        }
    }
    println!(
        "API requests sent: {requests} (simulator received {}); errors:",
        env.sim.total_requests()
    );
    for ((op, code), n) in &by_code {
        println!("  {op:<14} {code:<26} {n}");
    }
    println!(
        "scrapes: {} ok, {} failed; plain-text scrapers: {} ok, {} failed; plan updates: {updates}",
        scrapes_ok.load(Ordering::Relaxed),
        scrapes_failed.load(Ordering::Relaxed),
        plain_ok.load(Ordering::Relaxed),
        plain_failed.load(Ordering::Relaxed),
    );

    // Counters equal the simulator's ground truth.
    let t0 = t0.lock().expect("t0").clone();
    let mut sessions_total = 0;
    for i in 0..PORTALS {
        let id = portal_id(i);
        let p = env.store.portal(&id).expect("published");
        let totals = p.totals.clone().expect("totals");
        let t0 = t0[&id];
        let truth = env.sim.sessions_at(&id, final_sim_ms);
        // T0 lies in [t0_min, t0] (t0 itself, unless the watcher missed the first successful
        // snapshot): no session starts or ends in that window, so the counts below hold for any
        // T0 in it.
        let window = t0_min..=t0;
        let ambiguous: Vec<_> = truth
            .iter()
            .filter(|s| {
                window.contains(&s.start_ms) || s.end_ms.is_some_and(|e| window.contains(&e))
            })
            .collect();
        assert!(
            ambiguous.is_empty(),
            "{id}: sessions start or end around T0 ({window:?}): {ambiguous:?}"
        );
        let started = truth.iter().filter(|s| s.start_ms >= t0).count() as u64;
        let terminated = truth
            .iter()
            .filter(|s| s.end_ms.is_some_and(|e| e >= t0))
            .count() as u64;
        let active_now = truth.iter().filter(|s| s.end_ms.is_none()).count() as u64;
        // Running at T0: tracked, counted in `terminated` when they end, never in `started`.
        let baseline = truth
            .iter()
            .filter(|s| s.start_ms < t0 && s.end_ms.is_none_or(|e| e >= t0))
            .count() as u64;
        println!(
            "{id}: started {} (truth {started}), terminated {} (truth {terminated}), active {} (truth {active_now}), baseline {baseline}",
            totals.started,
            totals.terminated,
            active(&p).sessions
        );
        assert!(
            baseline >= 3,
            "{id}: the three baseline sessions are in the truth ({baseline})"
        );
        assert_eq!(totals.started, started, "{id}: started");
        assert_eq!(totals.terminated, terminated, "{id}: terminated");
        assert_eq!(active(&p).sessions, active_now, "{id}: active");
        assert_eq!(totals.incomplete, 0, "{id}");
        sessions_total += started;
    }
    assert!(
        sessions_total > 100,
        "churn: {sessions_total} sessions counted"
    );
    assert!(
        control_seen_up && control_always_up,
        "the portal without faults stayed up"
    );
    assert_eq!(
        scrapes_failed.load(Ordering::Relaxed),
        0,
        "every scrape answered"
    );
    assert!(scrapes_ok.load(Ordering::Relaxed) > 0);
    assert_eq!(
        plain_failed.load(Ordering::Relaxed),
        0,
        "every plain-text scrape answered"
    );
    assert!(plain_ok.load(Ordering::Relaxed) >= 100);
    assert!(updates >= 4, "plans updated every 10 s ({updates})");
    assert!(
        by_code.keys().any(|(_, c)| c == "ThrottlingException")
            && by_code.keys().any(|(_, c)| c == "InternalServerException")
            && by_code.keys().any(|(_, c)| c == "timeout"),
        "every fault was injected: {by_code:?}"
    );

    let q = (rss.len() / 4).max(1);
    let first = median(&rss[..q]);
    let last = median(&rss[rss.len() - q..]);
    println!("VmRSS median: first quarter {first} kB, last quarter {last} kB");
    assert!(
        last <= first + first / 2 + 32 * 1024,
        "RSS grew from {first} kB to {last} kB"
    );
}
