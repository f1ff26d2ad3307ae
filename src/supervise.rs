//! Supervision of the exporter's long-lived tasks (each portal's poller, each discovery source,
//! the exposition's renderer): a panic is caught, reported to the task's owner (which counts
//! and logs it), and the task is restarted after a delay that doubles with each consecutive
//! panic ([`RESTART_DELAY`] up to [`MAX_RESTART_DELAY`]), so that a task that panics at once does
//! not spin a core. What a task keeps across a restart is its owner's business (the poller's
//! ledger survives in its checkpoint, a discovery source's portals in the reconciler).

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Delay before restarting a task after its first panic; it doubles with each consecutive
/// panic, up to [`MAX_RESTART_DELAY`].
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Longest delay before restarting a panicked task. A task that ran at least this long before
/// panicking starts a new series of delays.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// How [`supervise`] restarts a task.
#[derive(Debug)]
pub struct Restarts {
    /// Delay before the first restart.
    pub first: Duration,
    /// The task's stop signal, which ends a wait before a restart (`None`: a task that is never
    /// told to stop).
    pub stop: Option<watch::Receiver<bool>>,
}

/// One caught panic, as reported to the task's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    /// The panic's message.
    pub message: String,
    /// Delay before the restart.
    pub restart_in: Duration,
}

/// Delay before the restart that follows `streak` consecutive panics (1 for the first).
pub fn restart_delay(first: Duration, streak: u32) -> Duration {
    let cap = MAX_RESTART_DELAY.max(first);
    first
        .checked_mul(1u32 << streak.saturating_sub(1).min(20))
        .unwrap_or(cap)
        .min(cap)
}

/// Aborts the task it holds when dropped: a supervisor that is itself aborted (a discovery
/// source stopped) takes its running task down with it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `make()` in its own task until it returns; after a panic, calls `on_panic` and restarts
/// it once the delay has passed (see [`restart_delay`]), unless it is stopped meanwhile.
pub async fn supervise<F, Fut>(restarts: Restarts, make: F, on_panic: impl Fn(&Panicked))
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Restarts { first, mut stop } = restarts;
    let mut streak = 0u32;
    loop {
        let began = tokio::time::Instant::now();
        let mut task = AbortOnDrop(tokio::spawn(make()));
        let ended = (&mut task.0).await;
        let Err(e) = ended else { return };
        if !e.is_panic() {
            return;
        }
        if began.elapsed() >= MAX_RESTART_DELAY.max(first) {
            streak = 0;
        }
        streak = streak.saturating_add(1);
        let restart_in = restart_delay(first, streak);
        on_panic(&Panicked {
            message: panic_message(e.into_panic()),
            restart_in,
        });
        match &mut stop {
            Some(stop) => {
                if *stop.borrow_and_update() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(restart_in) => {}
                    _ = stop.changed() => return,
                }
            }
            None => tokio::time::sleep(restart_in).await,
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast::<String>()
        .map(|s| *s)
        .or_else(|p| p.downcast::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|_| "non-string panic".to_string())
}

/// Tests only: makes a supervised task panic where it calls [`panic_hook::fire`] with an armed
/// key (a portal id, `discovery <region>`), as a bug would, to show what a panic keeps. Not
/// compiled outside the crate's unit tests, so never reachable from API data.
#[cfg(test)]
pub(crate) mod panic_hook {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    static ARMED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

    /// The next [`fire`] with `key` panics.
    pub(crate) fn arm(key: &str) {
        ARMED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_string());
    }

    /// Whether `key` is armed (its panic has not happened yet).
    pub(crate) fn armed(key: &str) -> bool {
        ARMED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key)
    }

    /// Panics if `key` is armed (once).
    pub(crate) fn fire(key: &str) {
        let armed = ARMED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
        assert!(!armed, "test panic of {key}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    fn restarts(first: Duration) -> (watch::Sender<bool>, Restarts) {
        let (stop_tx, stop) = watch::channel(false);
        (
            stop_tx,
            Restarts {
                first,
                stop: Some(stop),
            },
        )
    }

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_reported() {
        let runs = Arc::new(AtomicU64::new(0));
        let panics = Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = runs.clone();
        let (_stop, restarts) = restarts(Duration::from_millis(1));
        let seen = panics.clone();
        supervise(
            restarts,
            move || {
                let r = r.clone();
                async move {
                    if r.fetch_add(1, Ordering::Relaxed) < 2 {
                        panic!("boom");
                    }
                }
            },
            move |p| seen.lock().expect("lock").push(p.clone()),
        )
        .await;
        assert_eq!(runs.load(Ordering::Relaxed), 3);
        let panics = panics.lock().expect("lock");
        assert_eq!(panics.len(), 2);
        assert_eq!(panics[0].message, "boom");
        assert_eq!(panics[1].restart_in, Duration::from_millis(2));
    }

    /// Each restart waits at least its delay, and the delays double (they are lower bounds: a
    /// sleep never ends early, so this holds on any machine).
    #[tokio::test]
    async fn restarts_after_a_panic_back_off() {
        let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = starts.clone();
        let first = Duration::from_millis(100);
        let (_stop, restarts) = restarts(first);
        supervise(
            restarts,
            move || {
                let s = s.clone();
                async move {
                    let n = {
                        let mut starts =
                            s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        starts.push(tokio::time::Instant::now());
                        starts.len()
                    };
                    if n < 4 {
                        panic!("boom");
                    }
                }
            },
            |_| {},
        )
        .await;
        let starts = starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert_eq!(starts.len(), 4);
        for (i, want) in [first, first * 2, first * 4].into_iter().enumerate() {
            let gap = starts[i + 1] - starts[i];
            assert!(
                gap >= want,
                "restart {} after {gap:?}, before {want:?}",
                i + 1
            );
        }
        assert_eq!(restart_delay(first, 30), MAX_RESTART_DELAY);
        assert_eq!(
            restart_delay(Duration::from_secs(1), 1),
            Duration::from_secs(1)
        );
    }

    /// A task stopped while it waits to restart stops at once, not after the delay.
    #[tokio::test]
    async fn stopping_ends_the_wait_before_a_restart() {
        let (stop, restarts) = restarts(Duration::from_secs(3600));
        let (ran_tx, mut ran_rx) = tokio::sync::mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervise(
            restarts,
            move || {
                let ran = ran_tx.clone();
                async move {
                    let _ = ran.send(());
                    panic!("boom");
                }
            },
            |_| {},
        ));
        ran_rx.recv().await.expect("the task ran");
        stop.send(true).expect("supervisor listening");
        tokio::time::timeout(Duration::from_secs(30), supervisor)
            .await
            .expect("hang guard: the supervisor waited out its restart delay")
            .expect("supervisor");
        assert!(ran_rx.try_recv().is_err(), "not restarted after the stop");
    }

    /// Aborting the supervisor aborts the task it runs (a stopped discovery source must not
    /// leave its listing running).
    #[tokio::test]
    async fn aborting_the_supervisor_ends_its_task() {
        struct Guard(tokio::sync::mpsc::UnboundedSender<&'static str>);
        impl Drop for Guard {
            fn drop(&mut self) {
                let _ = self.0.send("dropped");
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let supervisor = tokio::spawn(supervise(
            Restarts {
                first: Duration::from_secs(1),
                stop: None,
            },
            move || {
                let tx = tx.clone();
                async move {
                    let _ = tx.send("started");
                    let _guard = Guard(tx);
                    std::future::pending::<()>().await;
                }
            },
            |_| {},
        ));
        let hang_guard = Duration::from_secs(30);
        let first = tokio::time::timeout(hang_guard, rx.recv()).await;
        assert_eq!(first.expect("hang guard"), Some("started"));
        supervisor.abort();
        let next = tokio::time::timeout(hang_guard, rx.recv()).await;
        assert_eq!(
            next.expect("hang guard: the task outlived its supervisor"),
            Some("dropped")
        );
    }
}
