//! Benchmark of the durable state write (`--storage.path`): building a portal's state from its
//! ledger, serializing it and writing it with its fsyncs. See BENCHMARKS.md for the figures; the
//! ledger's own benches are in `crates/workspacesweb-accounting/benches/`.

use std::hint::black_box;

use criterion::Criterion;
use workspacesweb_exporter::ledger::{Ledger, LedgerSettings};
use workspacesweb_exporter::poll::state::{self, LabelFingerprint, PortalState, STATE_VERSION};
use workspacesweb_exporter::session::{SessionRecord, SessionStatus, UnixMillis};
use workspacesweb_exporter::storage::StateDir;
use workspacesweb_exporter::users::{LabelMode, UserLabels, UserSettings};

/// 2026-05-28T00:00:00Z plus one minute: the first poll.
const T1: UnixMillis = 1_779_926_460_000;
/// Poll interval.
const POLL_MS: i64 = 60_000;

/// Session `i`: a 36-character id, one of 2,500 usernames, 500 starts a minute from 21 minutes
/// before `T1` (the shape of the ledger benches' sessions).
fn active(i: usize) -> SessionRecord {
    SessionRecord {
        id: Some(format!("{i:08x}-0000-4000-8000-{:012x}", i * 7919)),
        username: Some(format!("user{:05}@example.com", i % 2_500)),
        status: SessionStatus::Active,
        start_ms: Some(T1 - 21 * POLL_MS + i as i64 * 120),
        end_ms: None,
    }
}

/// The durable state write of one portal after a poll (`--storage.path`): 2,000 active sessions,
/// 2,000 users with per-user series (hashed), the terminated sessions of the last 10 minutes held
/// for deduplication. Prints the file size once; times building the state, serializing it, and
/// the whole write (temp file, fsync, rename, fsync of the directory) on this machine's disk.
fn state_write(c: &mut Criterion) {
    const N: usize = 2_000;
    let t1 = T1;
    let mut ledger = Ledger::new(LedgerSettings::default(), t1 - POLL_MS / 2);
    let listing: Vec<SessionRecord> = (0..N).map(active).collect();
    ledger.apply_poll(t1, &listing, &[]);
    // Ten polls of churn: 20 sessions end and 20 start per poll.
    for k in 1..=10 {
        let at = t1 + k as i64 * POLL_MS;
        let listing: Vec<SessionRecord> = (k * 20..N + k * 20).map(active).collect();
        let ended: Vec<SessionRecord> = ((k - 1) * 20..k * 20)
            .map(|i| SessionRecord {
                status: SessionStatus::Terminated,
                end_ms: Some(at - 1_000),
                ..active(i)
            })
            .collect();
        ledger.apply_poll(at, &listing, &ended);
        ledger.prune(at - 10 * POLL_MS);
    }
    let settings = UserSettings {
        mode: LabelMode::Hashed {
            salt: "bench".into(),
        },
        max_users: 10_000,
        idle_ttl_ms: 86_400_000,
    };
    let mut users = UserLabels::new(settings.clone());
    users.update(&ledger);
    let build = || PortalState {
        version: STATE_VERSION,
        portal_id: "11111111-2222-3333-4444-555555555555".into(),
        written_at_ms: t1,
        t0_ms: ledger.t0_ms(),
        watermark_ms: t1,
        backfill_done: true,
        keys: LabelFingerprint::of(&settings.mode),
        ledger: ledger.view(),
        users: Some(users.view()),
    };
    let bytes = state::encode(&build()).expect("encodes");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateDir::open(dir.path()).expect("state dir");
    println!(
        "state/{} sessions held, {} users: {} bytes per portal",
        ledger.tracked_sessions(),
        ledger.users().count(),
        bytes.len()
    );
    let mut g = c.benchmark_group("state/2000_active_2000_users");
    g.sample_size(30);
    g.bench_function("view", |b| b.iter(|| black_box(build())));
    g.bench_function("view+encode", |b| {
        b.iter(|| black_box(state::encode(&build()).expect("encodes")))
    });
    g.bench_function("view+encode+write_fsync", |b| {
        b.iter(|| {
            let bytes = state::encode(&build()).expect("encodes");
            store.write("p", &bytes).expect("writes")
        })
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    state_write(&mut c);
    c.final_summary();
}
