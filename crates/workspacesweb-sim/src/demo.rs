//! Ready-made configurations: the demo portals and generated portal sets.

use crate::config::{GeneratedModel, PortalSpec, SessionModel, SimConfig};
use crate::faults::Faults;
use crate::rng::{Rng, mix};

impl SimConfig {
    /// Three demo portals in us-east-1: a busy one (~60 sessions/h, ~50,000 history), a quiet one
    /// with odd usernames and a limit of 4 concurrent sessions that it reaches now and then, and a
    /// flaky one throttled 30% of the time.
    pub fn demo(seed: u64) -> Self {
        Self::generated(seed, 3)
    }

    /// `n` generated portals: the first three are the demo portals, the rest vary with the seed.
    pub fn generated(seed: u64, n: usize) -> Self {
        let mut cfg = Self::new(seed);
        let mut rng = Rng::new(mix(seed, 0x504f_5254));
        for i in 0..n {
            let id = rng.uuid();
            let (name, capacity, model, faults) = match i {
                0 => (
                    "busy".to_string(),
                    500,
                    GeneratedModel {
                        arrivals_per_hour: 60.0,
                        mean_duration_secs: 2700.0,
                        users: 300,
                        history_sessions: 50_400,
                        diurnal_amplitude: 0.6,
                        ..GeneratedModel::default()
                    },
                    Faults::none(),
                ),
                1 => (
                    "quiet".to_string(),
                    // About 1.3 sessions open on average: bursts reach this limit now and then,
                    // so the demo shows the peak meeting capacity and time at capacity growing.
                    4,
                    GeneratedModel {
                        arrivals_per_hour: 4.0,
                        mean_duration_secs: 1200.0,
                        users: 25,
                        history_sessions: 3_360,
                        odd_usernames: true,
                        diurnal_amplitude: 0.3,
                        ..GeneratedModel::default()
                    },
                    Faults::none(),
                ),
                2 => (
                    "flaky".to_string(),
                    100,
                    GeneratedModel {
                        arrivals_per_hour: 20.0,
                        mean_duration_secs: 1800.0,
                        users: 80,
                        history_sessions: 16_800,
                        diurnal_amplitude: 0.5,
                        ..GeneratedModel::default()
                    },
                    Faults::throttle(0.3, 1),
                ),
                _ => {
                    let rate = 1.0 + rng.next_f64() * 80.0;
                    (
                        format!("portal-{i}"),
                        50 + (rng.next_u64() % 20) as u32 * 50,
                        GeneratedModel {
                            arrivals_per_hour: rate,
                            mean_duration_secs: 600.0 + rng.next_f64() * 5400.0,
                            users: 10 + (rng.next_u64() % 500) as u32,
                            history_sessions: (rate * 840.0) as u64,
                            odd_usernames: rng.next_f64() < 0.3,
                            diurnal_amplitude: rng.next_f64() * 0.8,
                            ..GeneratedModel::default()
                        },
                        Faults::none(),
                    )
                }
            };
            let mut spec = PortalSpec::new(id, SessionModel::Generated(model));
            spec.display_name = name;
            spec.max_concurrent_sessions = capacity;
            spec.faults = faults;
            cfg.portals.push(spec);
        }
        cfg
    }
}
