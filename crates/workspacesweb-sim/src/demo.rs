//! Ready-made configurations: the demo (an organization of two accounts and three portals),
//! generated portal sets, and generated organizations for scale tests.

use crate::config::{GeneratedModel, PortalSpec, SessionModel, SimConfig};
use crate::faults::Faults;
use crate::organization::{AccountSpec, OrgSpec};
use crate::rng::{Rng, mix};

/// The member role of the demo's and of generated organizations, assumable in every account
/// (`arn:aws:iam::<account>:role/workspacesweb-exporter`, no external id).
pub const DEMO_MEMBER_ROLE: &str = "workspacesweb-exporter";
/// The demo's management account: it holds the `busy` and `quiet` portals.
pub const DEMO_MANAGEMENT_ACCOUNT: &str = "123456789012";
/// The demo's member account (in OU `workloads`): it holds the `flaky` portal.
pub const DEMO_MEMBER_ACCOUNT: &str = "210987654321";

/// The OU tree of generated organizations: (name, index of the parent in this list or `None`
/// for the root). Three levels deep.
const GENERATED_UNITS: [(&str, Option<usize>); 9] = [
    ("prod", None),
    ("dev", None),
    ("sandbox", None),
    ("prod-eu", Some(0)),
    ("dev-eu", Some(1)),
    ("sandbox-eu", Some(2)),
    ("prod-eu-payments", Some(3)),
    ("dev-eu-payments", Some(4)),
    ("sandbox-eu-payments", Some(5)),
];

impl SimConfig {
    /// Three demo portals in us-east-1 in an organization of two accounts: a busy one (~60
    /// sessions/h, ~50,000 history) and a quiet one with odd usernames and a limit of 4
    /// concurrent sessions that it reaches now and then, in the management account
    /// [`DEMO_MANAGEMENT_ACCOUNT`]; a flaky one throttled 30% of the time in the member account
    /// [`DEMO_MEMBER_ACCOUNT`]. Both accounts have the member role [`DEMO_MEMBER_ROLE`]; any
    /// access key the simulator does not know (e.g. the exporter's demo credentials) acts as the
    /// management account's caller for Organizations and sees every portal.
    pub fn demo(seed: u64) -> Self {
        let mut cfg = Self::generated(seed, 3);
        if let Some(flaky) = cfg.portals.get_mut(2) {
            flaky.account = DEMO_MEMBER_ACCOUNT.to_string();
        }
        let mut org = OrgSpec::new(DEMO_MANAGEMENT_ACCOUNT)
            .with_member_role(DEMO_MEMBER_ROLE, None)
            .with_account(AccountSpec::new(DEMO_MANAGEMENT_ACCOUNT, "demo-management"));
        let root = org.root_id.clone();
        if let Ok(workloads) = org.add_unit("workloads", &root) {
            org = org.with_account(
                AccountSpec::new(DEMO_MEMBER_ACCOUNT, "demo-workloads").in_unit(workloads),
            );
        }
        cfg.with_organization(org)
    }

    /// An organization of `accounts` accounts (the first is the management account, all with
    /// the member role [`DEMO_MEMBER_ROLE`]) spread over the root and OUs three levels deep, each
    /// account holding `portals_per_region` cheap generated portals (about 2 sessions an hour,
    /// 12 in history) in each of `regions`: `60 × 2` or `500 × 3` accounts × regions for scale tests.
    pub fn generated_organization(
        seed: u64,
        accounts: usize,
        regions: &[&str],
        portals_per_region: usize,
    ) -> Self {
        let ids: Vec<String> = (0..accounts.max(1))
            .map(|i| format!("{:012}", 200_000_000_000u64 + i as u64 * 1_111))
            .collect();
        let mut org = OrgSpec::new(ids[0].clone()).with_member_role(DEMO_MEMBER_ROLE, None);
        let root = org.root_id.clone();
        let mut units: Vec<String> = Vec::new();
        for (name, parent) in GENERATED_UNITS {
            let parent = parent.map_or(root.clone(), |i| units[i].clone());
            units.push(org.add_unit(name, &parent).unwrap_or_else(|_| root.clone()));
        }
        let mut cfg = Self::new(seed);
        let mut rng = Rng::new(mix(seed, 0x4f52_4750));
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                // Round-robin over the root and the OUs: every level holds accounts.
                let parent = (i % (units.len() + 1))
                    .checked_sub(1)
                    .map(|u| units[u].clone());
                let mut account = AccountSpec::new(id.clone(), format!("account-{i:04}"));
                account.parent_id = parent;
                org = org.with_account(account);
            }
            for region in regions {
                for p in 0..portals_per_region {
                    cfg.portals.push(cheap_portal(rng.uuid(), id, region, i, p));
                }
            }
        }
        cfg.with_organization(org)
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

/// A portal of a generated organization: a small generated model (cheap to build and list).
fn cheap_portal(id: String, account: &str, region: &str, i: usize, p: usize) -> PortalSpec {
    let mut spec = PortalSpec::new(
        id,
        SessionModel::Generated(GeneratedModel {
            arrivals_per_hour: 2.0,
            mean_duration_secs: 900.0,
            users: 5,
            history_sessions: 12,
            ..GeneratedModel::default()
        }),
    );
    spec.display_name = format!("account-{i:04}-{region}-{p}");
    spec.region = region.to_string();
    spec.account = account.to_string();
    spec
}
