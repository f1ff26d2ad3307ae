//! Range and cross-field checks on the parsed file, turning [`raw::Config`]
//! into [`Config`]. Every problem is collected (not only the first) and
//! located in the document by key path.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::{ConfigError, Diagnostic, KeyPath};
use super::locate::locate;
use super::values::Dur;
use super::{
    Access, Config, DEFAULT_STATE_MAX_AGE, DiscoveryConfig, Global, IndexFromEnv, Loaded,
    MAX_MAX_USERS, OrganizationConfig, PerUser, PortalConfig, Sharding, Storage, UsernameMode, raw,
};

/// Intervals below this draw a warning (the API is slow and rate-limited).
const WARN_INTERVAL_BELOW: Duration = Duration::from_secs(10);
const MIN_DURATION: Duration = Duration::from_secs(1);
const MAX_PAGE_SIZE: u32 = 1000;
/// Upper bounds: values past them are mistakes, and some (a duration that overflows when the
/// poller scales it, a concurrency past the semaphore's limit) would panic a task at run time.
/// Longest interval, timeout and discovery refresh.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Longest `storage.max_age` and `per_user.idle_ttl`.
pub(crate) const MAX_RETENTION: Duration = Duration::from_secs(366 * 24 * 3600);
/// Most portals polled at once.
pub(crate) const MAX_CONCURRENCY: usize = 1000;
/// Most pages of one listing (100 million sessions at the largest page size).
pub(crate) const MAX_MAX_PAGES: u32 = 100_000;
/// Highest client-side request rate.
pub(crate) const MAX_REQUESTS_PER_SECOND: f64 = 10_000.0;

struct Checker<'a> {
    text: &'a str,
    file: &'a str,
    errors: Vec<(KeyPath, String)>,
    warnings: Vec<(KeyPath, String)>,
}

impl Checker<'_> {
    fn error(&mut self, path: KeyPath, message: impl Into<String>) {
        self.errors.push((path, message.into()));
    }

    fn warn(&mut self, path: KeyPath, message: impl Into<String>) {
        self.warnings.push((path, message.into()));
    }

    fn diagnostic(&self, path: &KeyPath, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.to_owned(),
            location: Some(locate(self.text, path)),
            path: path.to_string(),
            message,
        }
    }

    /// A duration of at least 1s.
    fn at_least_1s(&mut self, path: KeyPath, d: Duration) {
        if d < MIN_DURATION {
            self.error(path, format!("must be at least 1s, got {}", fmt(d)));
        }
    }

    /// A duration of at most `max`.
    fn at_most(&mut self, path: KeyPath, d: Duration, max: Duration) {
        if d > max {
            self.error(
                path,
                format!("must be at most {}, got {}", fmt(max), fmt(d)),
            );
        }
    }

    /// A duration between 1s and `max`.
    fn between_1s_and(&mut self, path: KeyPath, d: Duration, max: Duration) {
        if d < MIN_DURATION {
            self.at_least_1s(path, d);
        } else {
            self.at_most(path, d, max);
        }
    }

    /// An interval: between 1s and [`MAX_INTERVAL`], a warning below 10s.
    fn interval(&mut self, path: KeyPath, d: Duration) {
        if d < MIN_DURATION {
            self.at_least_1s(path, d);
        } else if d > MAX_INTERVAL {
            self.at_most(path, d, MAX_INTERVAL);
        } else if d < WARN_INTERVAL_BELOW {
            self.warn(
                path,
                format!(
                    "interval {} is below 10s: expect API throttling and load",
                    fmt(d)
                ),
            );
        }
    }

    fn external_id(&mut self, base: &KeyPath, external_id: Option<&String>, has_role: bool) {
        let Some(external_id) = external_id else {
            return;
        };
        let path = base.key("external_id");
        if !has_role {
            self.error(
                path,
                "external_id is only used with role_arn, which is not set",
            );
            return;
        }
        // The value is a secret: describe it, never echo it.
        let ok_chars = external_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/_-".contains(&b));
        if !(2..=1224).contains(&external_id.len()) || !ok_chars {
            self.error(
                path,
                "external_id must be 2 to 1224 characters of letters, digits and +=,.@:/_- \
                 (value not shown)",
            );
        }
    }
}

fn fmt(d: Duration) -> String {
    super::values::format_duration(d)
}

pub(crate) fn validate(raw: raw::Config, text: &str, file: &str) -> Result<Loaded, ConfigError> {
    let mut c = Checker {
        text,
        file,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let root = KeyPath::root();
    let nothing_to_poll = raw.portals.as_ref().is_none_or(Vec::is_empty)
        && raw.discovery.as_ref().is_none_or(Vec::is_empty);
    let global = global(&mut c, raw.global.unwrap_or_default(), &root.key("global"));
    let per_user = per_user(
        &mut c,
        raw.per_user.unwrap_or_default(),
        &root.key("per_user"),
    );
    let portals = portals(
        &mut c,
        raw.portals.unwrap_or_default(),
        &global,
        &root.key("portals"),
    );
    let discovery = discovery(
        &mut c,
        raw.discovery.unwrap_or_default(),
        &root.key("discovery"),
    );
    let sharding = sharding(
        &mut c,
        raw.sharding.unwrap_or_default(),
        &root.key("sharding"),
    );
    let storage = storage(
        &mut c,
        raw.storage.unwrap_or_default(),
        &root.key("storage"),
    );
    c.warnings
        .extend(super::placeholders::warnings(&portals, &discovery, &root));
    if nothing_to_poll {
        c.error(
            root.key("portals"),
            "nothing to poll: give at least one entry in portals or discovery",
        );
    }

    let mut errors: Vec<Diagnostic> = c
        .errors
        .iter()
        .map(|(p, m)| c.diagnostic(p, m.clone()))
        .collect();
    if !errors.is_empty() {
        errors.sort_by_key(|d| d.location.map(|l| (l.line, l.column)));
        return Err(ConfigError {
            diagnostics: errors,
        });
    }
    let mut warnings: Vec<Diagnostic> = c
        .warnings
        .iter()
        .map(|(p, m)| c.diagnostic(p, m.clone()))
        .collect();
    warnings.sort_by_key(|d| d.location.map(|l| (l.line, l.column)));
    Ok(Loaded {
        config: Config {
            global,
            per_user,
            portals,
            discovery,
            sharding,
            storage,
        },
        warnings: warnings.iter().map(ToString::to_string).collect(),
    })
}

fn global(c: &mut Checker<'_>, g: raw::Global, path: &KeyPath) -> Global {
    let d = Global::default();
    let interval = g.interval.map_or(d.interval, |Dur(i)| i);
    if g.interval.is_some() {
        c.interval(path.key("interval"), interval);
    }
    let timeout = g.timeout.map(|Dur(t)| t);
    if let Some(t) = timeout {
        check_timeout(c, path.key("timeout"), t, interval);
    }
    let page_size = g.page_size.unwrap_or(d.page_size);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        c.error(
            path.key("page_size"),
            format!("must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"),
        );
    }
    let concurrency = g.concurrency.unwrap_or(d.concurrency);
    if concurrency < 1 {
        c.error(path.key("concurrency"), "must be at least 1, got 0");
    } else if concurrency > MAX_CONCURRENCY {
        c.error(
            path.key("concurrency"),
            format!("must be at most {MAX_CONCURRENCY}, got {concurrency}"),
        );
    }
    let buckets = g.duration_buckets.unwrap_or(d.duration_buckets);
    check_buckets(c, &path.key("duration_buckets"), &buckets);
    let native_histogram_schema = native_schema(
        c,
        &path.key("native_histogram_schema"),
        g.native_histogram_schema,
    );
    let max_pages = g.max_pages.unwrap_or(d.max_pages);
    if max_pages < 1 {
        c.error(path.key("max_pages"), "must be at least 1, got 0");
    } else if max_pages > MAX_MAX_PAGES {
        c.error(
            path.key("max_pages"),
            format!("must be at most {MAX_MAX_PAGES}, got {max_pages}"),
        );
    }
    let rps = g
        .max_requests_per_second
        .unwrap_or(d.max_requests_per_second);
    if !rps.is_finite() || rps <= 0.0 {
        c.error(
            path.key("max_requests_per_second"),
            format!("must be a positive finite number, got {rps}"),
        );
    } else if rps > MAX_REQUESTS_PER_SECOND {
        c.error(
            path.key("max_requests_per_second"),
            format!("must be at most {MAX_REQUESTS_PER_SECOND}, got {rps}"),
        );
    }
    Global {
        region: g.region.map(|r| r.0),
        interval,
        timeout,
        page_size,
        concurrency,
        labels: g.labels.0,
        duration_buckets: buckets,
        native_histogram_schema,
        max_pages,
        max_requests_per_second: rps,
    }
}

/// `global.timeout`: above 0, at most [`MAX_INTERVAL`], below the global interval.
fn check_timeout(c: &mut Checker<'_>, path: KeyPath, t: Duration, interval: Duration) {
    if t.is_zero() {
        c.error(path, "must be greater than 0");
    } else if t > MAX_INTERVAL {
        c.at_most(path, t, MAX_INTERVAL);
    } else if t >= interval {
        c.error(
            path,
            format!(
                "timeout ({}) must be less than interval ({})",
                fmt(t),
                fmt(interval)
            ),
        );
    }
}

/// `global.native_histogram_schema`: -4 to 8, as Prometheus accepts (default 3).
fn native_schema(c: &mut Checker<'_>, path: &KeyPath, schema: Option<i64>) -> i8 {
    use crate::ledger::native::{DEFAULT_SCHEMA, MAX_SCHEMA, MIN_SCHEMA};
    let Some(schema) = schema else {
        return DEFAULT_SCHEMA;
    };
    match i8::try_from(schema) {
        Ok(s) if (MIN_SCHEMA..=MAX_SCHEMA).contains(&s) => s,
        _ => {
            c.error(
                path.clone(),
                format!("must be from {MIN_SCHEMA} to {MAX_SCHEMA}, got {schema}"),
            );
            DEFAULT_SCHEMA
        }
    }
}

/// `global.duration_buckets`: at least one, positive, finite, strictly increasing.
fn check_buckets(c: &mut Checker<'_>, path: &KeyPath, buckets: &[f64]) {
    if buckets.is_empty() {
        c.error(path.clone(), "must list at least one bucket");
    }
    for (i, b) in buckets.iter().enumerate() {
        let p = path.index(i);
        if !b.is_finite() || *b <= 0.0 {
            c.error(
                p,
                format!("bucket {b} must be a positive finite number of seconds"),
            );
        } else if i > 0 && buckets[i - 1].is_finite() && *b <= buckets[i - 1] {
            c.error(
                p,
                format!(
                    "buckets must be strictly increasing: {b} follows {}",
                    buckets[i - 1]
                ),
            );
        }
    }
}

fn storage(c: &mut Checker<'_>, s: raw::Storage, path: &KeyPath) -> Storage {
    let out = Storage {
        max_age: s.max_age.map_or(DEFAULT_STATE_MAX_AGE, |Dur(t)| t),
    };
    if s.max_age.is_some() {
        c.between_1s_and(path.key("max_age"), out.max_age, MAX_RETENTION);
    }
    out
}

fn per_user(c: &mut Checker<'_>, u: raw::PerUser, path: &KeyPath) -> PerUser {
    let d = PerUser::default();
    let out = PerUser {
        enabled: u.enabled.unwrap_or(d.enabled),
        username: u.username.unwrap_or(d.username),
        hash_salt: u.hash_salt.clone().unwrap_or(d.hash_salt),
        max_users: u.max_users.unwrap_or(d.max_users),
        idle_ttl: u.idle_ttl.map_or(d.idle_ttl, |Dur(t)| t),
    };
    if out.max_users < 1 {
        c.error(path.key("max_users"), "must be at least 1, got 0");
    } else if out.max_users > MAX_MAX_USERS {
        c.error(
            path.key("max_users"),
            format!("must be at most {MAX_MAX_USERS}, got {}", out.max_users),
        );
    }
    if u.idle_ttl.is_some() {
        c.between_1s_and(path.key("idle_ttl"), out.idle_ttl, MAX_RETENTION);
    }
    if out.enabled && out.username == UsernameMode::Hashed && out.hash_salt.is_empty() {
        c.warn(
            path.key("hash_salt"),
            "hashed usernames without a salt can be reversed by hashing a list of names",
        );
    }
    if out.username == UsernameMode::Raw && u.hash_salt.is_some_and(|s| !s.is_empty()) {
        c.warn(
            path.key("hash_salt"),
            "hash_salt is ignored unless username is hashed",
        );
    }
    out
}

fn portals(
    c: &mut Checker<'_>,
    raw: Vec<raw::Portal>,
    global: &Global,
    path: &KeyPath,
) -> Vec<PortalConfig> {
    let mut out = Vec::with_capacity(raw.len());
    // portal id -> (index, key it was given by)
    let mut seen: BTreeMap<String, (usize, &'static str)> = BTreeMap::new();
    for (i, p) in raw.into_iter().enumerate() {
        let base = path.index(i);
        let Some((id, arn, region, id_key)) = portal_identity(c, &base, &p) else {
            continue;
        };
        if let Some((first, key)) = seen.get(&id) {
            let first_path = path.index(*first).key(key);
            let first_line = locate(c.text, &first_path).line;
            c.error(
                base.key(id_key),
                format!(
                    "duplicate portal {id}: already configured at {first_path} (line {first_line})"
                ),
            );
        } else {
            seen.insert(id.clone(), (i, id_key));
        }
        c.external_id(&base, p.external_id.as_ref(), p.role_arn.is_some());
        let interval = p.interval.map(|Dur(d)| d);
        if let Some(iv) = interval {
            c.interval(base.key("interval"), iv);
            if let Some(t) = global.timeout
                && iv >= MIN_DURATION
                && iv <= MAX_INTERVAL
                && t >= iv
            {
                c.error(
                    base.key("interval"),
                    format!(
                        "interval ({}) must be greater than global.timeout ({})",
                        fmt(iv),
                        fmt(t)
                    ),
                );
            }
        }
        out.push(PortalConfig {
            id,
            arn,
            region,
            access: Access {
                role_arn: p.role_arn.map(|r| r.0),
                external_id: p.external_id,
                endpoint_url: p.endpoint_url.map(|u| u.0),
            },
            interval,
            labels: p.labels.0,
        });
    }
    out
}

/// A portal's id, ARN and region, from `id` (with `region`) or `arn` (whose region `region` may
/// only repeat), and the key that gave the id; `None` (with the error) when neither or both.
fn portal_identity(
    c: &mut Checker<'_>,
    base: &KeyPath,
    p: &raw::Portal,
) -> Option<(String, Option<String>, Option<String>, &'static str)> {
    let region = p.region.as_ref().map(|r| r.0.clone());
    match (&p.id, &p.arn) {
        (Some(_), Some(_)) => {
            c.error(base.key("arn"), "give either id or arn, not both");
            None
        }
        (None, None) => {
            c.error(base.clone(), "a portal needs id or arn");
            None
        }
        (Some(id), None) => Some((id.0.clone(), None, region, "id")),
        (None, Some(arn)) => {
            if let Some(r) = region.filter(|r| *r != arn.region) {
                c.error(
                    base.key("region"),
                    format!(
                        "region {r:?} disagrees with the ARN's region {:?}; omit region when arn is given",
                        arn.region
                    ),
                );
            }
            Some((
                arn.id.clone(),
                Some(arn.arn.clone()),
                Some(arn.region.clone()),
                "arn",
            ))
        }
    }
}

fn discovery(
    c: &mut Checker<'_>,
    raw: Vec<raw::Discovery>,
    path: &KeyPath,
) -> Vec<DiscoveryConfig> {
    let mut out = Vec::with_capacity(raw.len());
    // (region, role, endpoint) -> entry index
    type Scope = (String, Option<String>, Option<String>);
    let mut seen: BTreeMap<Scope, usize> = BTreeMap::new();
    for (i, d) in raw.into_iter().enumerate() {
        let base = path.index(i);
        if d.regions.is_empty() {
            c.error(base.key("regions"), "must list at least one region");
        }
        let role = d.role_arn.map(|r| r.0);
        let endpoint = d.endpoint_url.map(|u| u.0);
        let mut regions = Vec::with_capacity(d.regions.len());
        for (k, r) in d.regions.into_iter().enumerate() {
            let rp = base.key("regions").index(k);
            if regions.contains(&r.0) {
                c.error(rp, format!("region {} is listed twice", r.0));
                continue;
            }
            // Organization entries may overlap (several OUs of one organization, each with its
            // labels): a portal found twice is polled once, as the first entry found it.
            let scope = (r.0.clone(), role.clone(), endpoint.clone());
            if d.organization.is_none()
                && let Some(first) = seen.get(&scope)
            {
                c.error(
                    rp,
                    format!(
                        "region {} is already discovered by discovery[{first}] with the same role_arn and endpoint_url",
                        r.0
                    ),
                );
            } else if d.organization.is_none() {
                seen.insert(scope, i);
            }
            regions.push(r.0);
        }
        let organization = match d.organization {
            Some(o) => {
                if d.external_id.is_some() {
                    c.error(
                        base.key("external_id"),
                        "with organization, the member role's external id is organization.external_id",
                    );
                }
                Some(organization(c, o, &base, (&regions, role.is_some())))
            }
            None => {
                c.external_id(&base, d.external_id.as_ref(), role.is_some());
                None
            }
        };
        let refresh = d
            .refresh
            .map_or(super::DEFAULT_DISCOVERY_REFRESH, |Dur(r)| r);
        c.between_1s_and(base.key("refresh"), refresh, MAX_INTERVAL);
        out.push(DiscoveryConfig {
            organization,
            regions,
            access: Access {
                role_arn: role,
                external_id: d.external_id,
                endpoint_url: endpoint,
            },
            refresh,
            labels: d.labels.0,
        });
    }
    out
}

/// `discovery[i].organization`: its OUs and excluded accounts without repeats, one partition for
/// its regions and its `role_arn`, and no `role_arn` on the entry itself (`has_role`).
fn organization(
    c: &mut Checker<'_>,
    o: raw::Organization,
    entry: &KeyPath,
    (regions, has_role): (&[String], bool),
) -> OrganizationConfig {
    let path = entry.key("organization");
    if has_role {
        c.error(
            entry.key("role_arn"),
            "with organization, the role assumed in each account is organization.role_name, \
             and the one that calls Organizations is organization.role_arn",
        );
    }
    c.external_id(&path, o.external_id.as_ref(), true);
    let ous = o.ous.map(|ous| {
        if ous.is_empty() {
            c.error(
                path.key("ous"),
                "must list at least one OU; leave ous out for the whole organization",
            );
        }
        ous.into_iter().map(|u| u.0).collect::<Vec<_>>()
    });
    let ous = ous.unwrap_or_default();
    no_repeats(c, &path.key("ous"), &ous, "OU");
    let mut exclude: Vec<String> = o
        .exclude_accounts
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.0)
        .collect();
    no_repeats(c, &path.key("exclude_accounts"), &exclude, "account");
    exclude.sort();
    exclude.dedup();
    let role_arn = o.role_arn.map(|r| r.0);
    one_partition(c, entry, regions, role_arn.as_deref());
    OrganizationConfig {
        role_name: o.role_name.0,
        external_id: o.external_id,
        role_arn,
        ous,
        exclude_accounts: exclude,
    }
}

/// An error at each item of the list at `path` that repeats an earlier one.
fn no_repeats(c: &mut Checker<'_>, path: &KeyPath, items: &[String], what: &str) {
    for (k, item) in items.iter().enumerate() {
        if items[..k].contains(item) {
            c.error(path.index(k), format!("{what} {item} is listed twice"));
        }
    }
}

/// An organization entry reaches one partition: its regions and its `role_arn` agree on it
/// (roles are named `arn:<partition>:...`, and Organizations has one endpoint per partition).
fn one_partition(c: &mut Checker<'_>, entry: &KeyPath, regions: &[String], role: Option<&str>) {
    use crate::aws::partition::partition_of_region;
    let Some(first) = regions.first() else {
        return;
    };
    let partition = partition_of_region(first);
    for (k, r) in regions.iter().enumerate().skip(1) {
        if partition_of_region(r) != partition {
            c.error(
                entry.key("regions").index(k),
                format!(
                    "region {r} is in partition {}, {first} in {partition}: an organization entry covers one partition",
                    partition_of_region(r)
                ),
            );
        }
    }
    let role_partition = role.and_then(|r| crate::aws::arn::fields(r)).map(|f| f[1]);
    if let Some(p) = role_partition.filter(|p| *p != partition) {
        c.error(
            entry.key("organization").key("role_arn"),
            format!("role_arn is in partition {p}, the regions in {partition}"),
        );
    }
}

fn sharding(c: &mut Checker<'_>, s: raw::Sharding, path: &KeyPath) -> Sharding {
    let total = s.total.unwrap_or(1);
    if total < 1 {
        c.error(path.key("total"), "must be at least 1, got 0");
    }
    if let Some(index) = s.index {
        if s.index_from_env.is_some() {
            c.error(
                path.key("index_from_env"),
                "set either index or index_from_env, not both",
            );
        } else if total >= 1 && index >= total {
            c.error(
                path.key("index"),
                format!("index {index} must be less than total ({total})"),
            );
        }
    }
    let index_from_env = s.index_from_env.map(|v| IndexFromEnv {
        var: v.0,
        file: c.file.to_owned(),
        location: locate(c.text, &path.key("index_from_env")),
    });
    Sharding {
        total,
        index: s.index.unwrap_or(0),
        index_from_env,
    }
}
