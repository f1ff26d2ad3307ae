//! Benchmarks of the `/metrics` body: `text::render` over portal snapshots, gzip of a whole
//! body, and what the server does: a rendering after one portal changed (only that portal's
//! per-user samples are rendered and compressed again) and a scrape of the cached rendering.
//! See BENCHMARKS.md for the figures.
//!
//! `render` includes the `process_*` families (the `prometheus` process collector reads /proc at
//! every render), as a real scrape does.

use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use flate2::Compression;
use flate2::write::GzEncoder;
use workspacesweb_exporter::exposition::families::Board;
use workspacesweb_exporter::exposition::text;
use workspacesweb_exporter::exposition::{Exposition, Format};
use workspacesweb_exporter::ledger::{
    ActiveSummary, DEFAULT_DURATION_BUCKETS, Histogram, NativeHistogram, Totals,
};
use workspacesweb_exporter::snapshot::{PortalSnapshot, Store};
use workspacesweb_exporter::status::ReloadStatus;
use workspacesweb_exporter::users::UserSeries;

/// A portal as after a day of polling: every series present, histogram filled.
// `..Default::default()` keeps this compiling while fields are added to `PortalSnapshot`
// (per-user series are on their way); until then clippy finds it needless.
#[allow(clippy::needless_update)]
fn portal(n: usize) -> PortalSnapshot {
    let mut durations = Histogram::with_bounds(DEFAULT_DURATION_BUCKETS.to_vec());
    for (i, c) in durations.counts.iter_mut().enumerate() {
        *c = 1_000 + (i as u64 * 137 + n as u64) % 900;
    }
    durations.count = durations.counts.iter().sum();
    durations.sum = durations.count as f64 * 1_234.567;
    PortalSnapshot {
        portal_id: format!("1a2b3c4d-5e6f-4a7b-8c9d-{n:012x}"),
        labels: vec![
            ("env".into(), "prod".into()),
            ("region".into(), "eu-west-1".into()),
        ],
        up: true,
        polled: true,
        active: Some(ActiveSummary {
            sessions: 10_000,
            users: 2_500,
            max_age_seconds: 43_210.5,
            peak: 10_250,
        }),
        totals: Some(Totals {
            started: 123_456,
            terminated: 113_456,
            incomplete: 12,
            session_seconds: 987_654_321.5,
            durations,
            at_capacity_seconds: Some(1_234.5),
            native: {
                // Durations from 1 s to a day: about 130 native buckets of schema 3.
                let mut native = NativeHistogram::new(3, 1_779_000_000_000);
                for k in 0..2_000i64 {
                    native.observe_ms(1_000 + (k * k * 21_601) % 86_400_000);
                }
                native
            },
            t0_ms: 1_779_000_000_000,
        }),
        poll_duration_seconds: Some(1.234),
        last_success_unix: Some(1_779_926_400.123),
        last_poll_unix: Some(1_779_926_400.123),
        last_error: None,
        api_requests: [
            ("GetSession".to_string(), 1_234),
            ("ListSessions".to_string(), 56_789),
        ]
        .into(),
        api_errors: [(
            (
                "ListSessions".to_string(),
                "ThrottlingException".to_string(),
            ),
            17,
        )]
        .into(),
        ..Default::default()
    }
}

fn portals(n: usize) -> Vec<Arc<PortalSnapshot>> {
    (0..n).map(|i| Arc::new(portal(i))).collect()
}

const RELOAD: ReloadStatus = ReloadStatus {
    successful: true,
    success_unix: 1_779_926_400.0,
};

fn gzip(body: &[u8], level: Compression) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::with_capacity(body.len() / 4 + 64), level);
    e.write_all(body).expect("gzip into a Vec");
    e.finish().expect("gzip into a Vec")
}

/// One portal with `users` users (per_user on, hashed-length names).
fn portal_with_users(users: usize) -> Vec<Arc<PortalSnapshot>> {
    portals_with_users(1, users)
}

/// `n` portals with `users` users each, as in the loadtest's memory workload.
fn portals_with_users(n: usize, users: usize) -> Vec<Arc<PortalSnapshot>> {
    (0..n)
        .map(|i| Arc::new(users_of(portal(i), users)))
        .collect()
}

fn users_of(mut p: PortalSnapshot, users: usize) -> PortalSnapshot {
    p.users = (0..users)
        .map(|i| UserSeries {
            username: format!("{:016x}", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            active: (i % 3) as u64,
            started: 10 + i as u64,
            session_seconds: 3600.5 * (i % 7) as f64,
            created_ms: 1_700_000_000_000,
        })
        .collect();
    p
}

/// The whole exposition of `portals` (no discovery source, the exporter's reload series).
fn render(portals: &[Arc<PortalSnapshot>]) -> bytes::Bytes {
    text::render(Board {
        portals,
        discovery: &[],
        status: RELOAD.into(),
    })
}

fn benches(c: &mut Criterion) {
    for (name, ps) in [
        ("5_portals".to_string(), portals(5)),
        ("20_portals".to_string(), portals(20)),
        ("1_portal_10k_users".to_string(), portal_with_users(10_000)),
        (
            "20_portals_1300_users".to_string(),
            portals_with_users(20, 1_300),
        ),
    ] {
        let n = name;
        let body = render(&ps);
        let fast = gzip(&body, Compression::fast());
        let default = gzip(&body, Compression::default());
        println!(
            "render/{n}: body {} bytes, {} lines; gzip level 1: {} bytes; gzip default (6): {} bytes",
            body.len(),
            body.iter().filter(|b| **b == b'\n').count(),
            fast.len(),
            default.len()
        );

        let mut g = c.benchmark_group(format!("render/{n}"));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("render", |b| b.iter(|| black_box(render(black_box(&ps)))));
        g.bench_function("gzip_level1", |b| {
            b.iter(|| black_box(gzip(black_box(&body), Compression::fast())))
        });
        g.bench_function("gzip_default", |b| {
            b.iter(|| black_box(gzip(black_box(&body), Compression::default())))
        });
        g.bench_function("render+gzip_level1", |b| {
            b.iter(|| {
                let body = render(black_box(&ps));
                black_box(gzip(&body, Compression::fast()))
            })
        });
        // What the server does: after one portal's poll publishes a new snapshot, the next
        // rendering renders and compresses that portal's per-user samples and the small head
        // again, and joins the other portals' compressed pieces as they were.
        let store = Exposition::new(Arc::new(Store::new()));
        for p in &ps {
            store.store().publish((**p).clone());
        }
        store.rendered();
        let mut flip = 0u64;
        g.bench_function("rerender_after_one_portal_changed", |b| {
            b.iter(|| {
                let mut p = (*ps[0]).clone();
                flip += 1;
                p.poll_duration_seconds = Some(flip as f64);
                store.store().publish(p);
                black_box(store.rendered())
            })
        });
        // A scrape: the cached rendering's shared bytes, `process_*` (gathered at most every
        // 50 ms), and a 10-byte trailer; `scrape_text` is the same for a client without gzip.
        store.rendered();
        g.bench_function("scrape_cached_gzip", |b| {
            b.iter(|| black_box(store.scrape(Format::Text, true).expect("scrape")))
        });
        g.bench_function("scrape_cached_text", |b| {
            b.iter(|| black_box(store.scrape(Format::Text, false).expect("scrape")))
        });
        // Each format's rendering of the same snapshots after one portal changed, and its
        // size (printed once): the figures of BENCHMARKS.md, "Exposition formats".
        for format in Format::ALL {
            let main = store.rendered_as(format);
            eprintln!(
                "{format:?}: {} bytes, {} compressed",
                main.main.text_len(),
                main.main.compressed_len()
            );
            g.bench_function(format!("rerender_{format:?}"), |b| {
                b.iter(|| {
                    let mut p = (*ps[0]).clone();
                    flip += 1;
                    p.poll_duration_seconds = Some(flip as f64);
                    store.store().publish(p);
                    black_box(store.rendered_as(format))
                })
            });
        }
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
