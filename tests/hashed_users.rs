//! With `username: hashed`, no raw username reaches /metrics, the landing page, the logs
//! (captured here at trace level, far below what production logs) or the state directory.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use workspacesweb_exporter::clock::now_ms;
use workspacesweb_exporter::poll::Scheduler;
use workspacesweb_exporter::snapshot::Store;
use workspacesweb_exporter::storage::StateDir;
use workspacesweb_exporter::users::{LabelMode, UserSettings, label_for};
use workspacesweb_sim::{Clock, PortalSpec, SimConfig, SimSession};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const NAMES: [&str; 4] = [
    "alice.smith@example.com",
    "bob-the-builder",
    "carol\"quoted",
    "dave_ünïcode",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_mode_leaks_no_raw_username() {
    let logs = Capture::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .init();

    let base = now_ms();
    let sessions = NAMES
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            [
                SimSession::new(SimSession::id_for(i as u64), *n, base - 10_000),
                SimSession::new(SimSession::id_for(100 + i as u64), *n, base - 20_000)
                    .ended(base - 5_000),
            ]
        })
        .collect();
    let env = start(
        SimConfig::new(13)
            .with_clock(Clock::manual(base))
            .with_portal(PortalSpec::scripted(GOOD, sessions)),
    )
    .await;
    let mode = LabelMode::Hashed {
        salt: "s3cret".into(),
    };
    let mut p = plan(GOOD, Duration::from_secs(3600), 2);
    p.per_user = Some(UserSettings {
        mode: mode.clone(),
        max_users: 1000,
        idle_ttl_ms: 3_600_000,
    });
    // With durable state: the state directory must hold no raw username either.
    let state_dir = tempfile::tempdir().expect("tempdir");
    let storage = Arc::new(StateDir::open(state_dir.path()).expect("state dir"));
    let mut sched = Scheduler::new(env.clients.clone(), env.store.clone(), 1)
        .with_storage(Some(storage.clone()));
    sched.apply(vec![p.clone()]).await;
    let snap = wait_portal(&env.store, GOOD, |p| {
        p.state
            .as_ref()
            .is_some_and(|s| s.last_write_unix.is_some())
    })
    .await;
    assert!(snap.up, "{:?}", snap.last_error);
    assert_eq!(snap.users.len(), NAMES.len());

    let server = Serving::start(env.store.clone()).await;
    let a = server.addr.clone();
    let (status, _, landing) = tokio::task::spawn_blocking(move || http_get(&a, "/"))
        .await
        .expect("join")
        .expect("GET /");
    assert_eq!(status, 200);
    server.stop().await;
    sched.shutdown().await;
    // Grep the state directory for every raw name: in the files as written, and in what they
    // hold once decompressed.
    let mut files = 0;
    for entry in std::fs::read_dir(state_dir.path()).expect("read_dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        let inner = bytes
            .strip_prefix(b"WSWS\x02")
            .map(|z| zstd::decode_all(z).expect("zstd"))
            .unwrap_or_default();
        files += usize::from(!inner.is_empty());
        for name in NAMES {
            for hay in [&bytes, &inner] {
                assert!(
                    !hay.windows(name.len()).any(|w| w == name.as_bytes()),
                    "raw username {name:?} at rest"
                );
            }
        }
    }
    assert_eq!(files, 1, "one state file");
    // A restart resumes every per-user counter from that file.
    let store2 = Arc::new(Store::new());
    let mut restarted =
        Scheduler::new(env.clients.clone(), store2.clone(), 1).with_storage(Some(storage));
    restarted.apply(vec![p]).await;
    let again = wait_portal(&store2, GOOD, |p| p.polled && p.up).await;
    let series = |s: &[workspacesweb_exporter::users::UserSeries]| {
        s.iter()
            .map(|u| (u.username.clone(), u.active, u.started))
            .collect::<Vec<_>>()
    };
    assert_eq!(again.state.as_ref().map(|s| s.restored), Some(true));
    assert_eq!(series(&again.users), series(&snap.users));
    restarted.shutdown().await;

    let metrics = String::from_utf8(
        env.store
            .scrape_text()
            .expect("exposition decompresses")
            .to_vec(),
    )
    .expect("utf-8");
    let landing = String::from_utf8_lossy(&landing).to_string();
    let logs = String::from_utf8_lossy(&logs.0.lock().expect("logs").clone()).to_string();
    assert!(logs.contains("poll"), "the capture works: {logs}");
    for name in NAMES {
        let hashed = label_for(&mode, name);
        assert!(
            metrics.contains(&format!("username=\"{hashed}\"")),
            "hashed label of {name} missing"
        );
        for (what, text) in [
            ("metrics", &metrics),
            ("landing page", &landing),
            ("logs", &logs),
        ] {
            assert!(
                !text.contains(name),
                "raw username {name:?} leaked into the {what}"
            );
        }
    }
}
