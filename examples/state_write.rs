//! What one portal's durable state write costs as its users grow: bytes and milliseconds per
//! write at 1,000, 10,000 and 25,000 users (BENCHMARKS.md, "Durable state").
//!
//! ```sh
//! cargo run --release --example state_write            # 1k, 10k, 25k users
//! cargo run --release --example state_write -- 5000    # other sizes
//! ```
//!
//! Each user has one open session (a random 36-character UUID, as the API's) and per-user series
//! on (`username: hashed`, `max_users` = the users; usernames hashed before the ledger, as the
//! poller does); ten polls of churn (1 % of the sessions end and as many start per
//! poll) leave the recently ended sessions held for deduplication, as in a running exporter.
//! A write is what the poller does after each successful poll: serialize the borrowed view of
//! the ledger and the label slots, then the atomic write (temp file, fsync, rename, fsync of the
//! directory) into a temp directory. Prints the median and the slowest of 21 writes.

use std::time::Instant;

use workspacesweb_exporter::ledger::{Ledger, LedgerSettings};
use workspacesweb_exporter::poll::state::{self, LabelFingerprint, PortalState, STATE_VERSION};
use workspacesweb_exporter::session::{SessionRecord, SessionStatus, UnixMillis};
use workspacesweb_exporter::storage::StateDir;
use workspacesweb_exporter::users::{LabelMode, UserLabels, UserSettings, key_records};

/// 2026-05-28T00:00:00Z plus one minute: the first poll.
const T1: UnixMillis = 1_779_926_460_000;
/// Poll interval.
const POLL_MS: i64 = 60_000;
/// Writes timed per size.
const WRITES: usize = 21;

fn mode() -> LabelMode {
    LabelMode::Hashed {
        salt: "example".into(),
    }
}

/// Session `i` of user `i % users`, started `i * 50` ms after 30 minutes before `T1`.
fn session(i: usize, users: usize) -> SessionRecord {
    SessionRecord {
        id: Some(format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            i,
            i % 65_521,
            i * 7919
        )),
        username: Some(format!("user{:06}@example.com", i % users)),
        status: SessionStatus::Active,
        start_ms: Some(T1 - 30 * POLL_MS + i as i64 * 50),
        end_ms: None,
    }
}

/// A ledger and its label slots after 11 polls of `users` users with one open session each.
fn portal(users: usize) -> (Ledger, UserLabels, UserSettings) {
    let settings = UserSettings {
        mode: mode(),
        max_users: users,
        idle_ttl_ms: 86_400_000,
    };
    let mut ledger = Ledger::new(
        LedgerSettings {
            idle_user_ttl_ms: settings.idle_ttl_ms,
            ..LedgerSettings::default()
        },
        T1 - POLL_MS / 2,
    );
    let churn = (users / 100).max(1);
    let mut listing: Vec<SessionRecord> = (0..users).map(|i| session(i, users)).collect();
    key_records(&mode(), &mut listing);
    ledger.apply_poll(T1, &listing, &[]);
    for k in 1..=10 {
        let at = T1 + k as i64 * POLL_MS;
        let mut listing: Vec<SessionRecord> = (k * churn..users + k * churn)
            .map(|i| session(i, users))
            .collect();
        let mut ended: Vec<SessionRecord> = ((k - 1) * churn..k * churn)
            .map(|i| SessionRecord {
                status: SessionStatus::Terminated,
                end_ms: Some(at - 1_000),
                ..session(i, users)
            })
            .collect();
        key_records(&mode(), &mut listing);
        key_records(&mode(), &mut ended);
        ledger.apply_poll(at, &listing, &ended);
        ledger.prune(at - 10 * POLL_MS);
    }
    let mut labels = UserLabels::new(settings.clone());
    labels.update(&ledger);
    (ledger, labels, settings)
}

/// CPU time of this thread, in milliseconds (less sensitive than wall time to a busy machine).
fn thread_cpu_ms() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 * 1e3 + t.tv_nsec as f64 / 1e6
}

fn median_and_max(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 25_000]
    } else {
        sizes
    };
    println!(
        "| users | sessions held | bytes per write | encode, ms (median / max) | encode, CPU ms (median) | write with fsyncs, ms (median / max) | total, ms (median / max) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for users in sizes {
        let (ledger, labels, settings) = portal(users);
        let dir = tempfile::tempdir().expect("a temp directory");
        let store = StateDir::open(dir.path()).expect("the state directory");
        let (mut enc, mut cpu, mut wr, mut tot) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut bytes = 0;
        for _ in 0..WRITES {
            let began = Instant::now();
            let cpu_began = thread_cpu_ms();
            let encoded = state::encode(&PortalState {
                version: STATE_VERSION,
                portal_id: "11111111-2222-3333-4444-555555555555".into(),
                written_at_ms: T1 + 10 * POLL_MS,
                t0_ms: ledger.t0_ms(),
                watermark_ms: T1 + 10 * POLL_MS,
                backfill_done: true,
                keys: LabelFingerprint::of(&settings.mode),
                ledger: ledger.view(),
                users: Some(labels.view()),
            })
            .expect("encodes");
            let encoded_at = Instant::now();
            cpu.push(thread_cpu_ms() - cpu_began);
            store.write("p", &encoded).expect("writes");
            let done = Instant::now();
            bytes = encoded.len();
            enc.push((encoded_at - began).as_secs_f64() * 1e3);
            wr.push((done - encoded_at).as_secs_f64() * 1e3);
            tot.push((done - began).as_secs_f64() * 1e3);
        }
        let (e, emax) = median_and_max(enc);
        let (c, _) = median_and_max(cpu);
        let (w, wmax) = median_and_max(wr);
        let (t, tmax) = median_and_max(tot);
        println!(
            "| {users} | {} | {bytes} | {e:.2} / {emax:.2} | {c:.2} | {w:.2} / {wmax:.2} | {t:.2} / {tmax:.2} |",
            ledger.tracked_sessions()
        );
    }
}
