//! Config files end to end: what parses to what, and the exact messages
//! (file, line, column, key path) for what does not.

use std::path::Path;
use std::time::Duration;

use workspacesweb_exporter::config::{self, Loaded, UsernameMode};

const ID: &str = "11111111-2222-3333-4444-555555555555";
const ID2: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

/// `text` parsed as `config.yaml`, which must be valid.
pub(super) fn ok(text: &str) -> Loaded {
    match config::parse(text, "config.yaml") {
        Ok(loaded) => loaded,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

/// The error of `text` parsed as `config.yaml`, which must be invalid.
pub(super) fn err(text: &str) -> String {
    match config::parse(text, "config.yaml") {
        Ok(loaded) => panic!("expected an error, got {:?}", loaded.config),
        Err(e) => e.to_string(),
    }
}

/// A file of `tests/fixtures/config/`.
pub(super) fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn defaults_fill_everything_not_given() {
    let loaded = config::load(&fixture("minimal.yaml")).unwrap();
    assert!(loaded.warnings.is_empty());
    let c = loaded.config;
    let g = &c.global;
    assert_eq!(g.region, None);
    assert_eq!(g.interval, secs(60));
    assert_eq!(g.timeout, None);
    assert_eq!(g.effective_timeout(), secs(30));
    assert_eq!(g.page_size, 100);
    assert_eq!(g.concurrency, 4);
    assert!(g.labels.is_empty());
    assert_eq!(
        g.duration_buckets,
        vec![
            60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 43200.0, 86400.0
        ]
    );
    assert_eq!(g.max_pages, 2000);
    assert_eq!(g.max_requests_per_second, 5.0);
    let u = &c.per_user;
    assert!(!u.enabled);
    assert_eq!(u.username, UsernameMode::Raw);
    assert_eq!(u.hash_salt, "");
    assert_eq!(u.max_users, 1000);
    assert_eq!(u.idle_ttl, secs(24 * 3600));
    assert!(c.discovery.is_empty());
    assert_eq!(c.sharding.total, 1);
    assert_eq!(c.sharding.index, 0);
    assert!(c.sharding.index_from_env.is_none());
    let t = c.targets();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].id, ID);
    assert_eq!(t[0].arn, None);
    assert_eq!(t[0].region, None);
    assert_eq!(t[0].interval, secs(60));
    assert_eq!(t[0].timeout, secs(30));
    assert!(t[0].labels.is_empty());
}

#[test]
fn discovery_refresh_defaults_to_ten_minutes() {
    let c = ok("discovery:\n  - regions: [us-east-1, eu-west-1]\n").config;
    assert_eq!(c.discovery[0].regions, vec!["us-east-1", "eu-west-1"]);
    assert_eq!(c.discovery[0].refresh, secs(600));
    assert_eq!(c.discovery[0].access.role_arn, None);
}

/// config.example.yaml with every commented-out setting turned on: each `# key: value` line
/// (or `# - key: value`) loses its `# `, as the file tells its readers to do.
fn example_with_every_setting_on(text: &str) -> String {
    let setting = |rest: &str| {
        let t = rest.trim_start().trim_start_matches("- ");
        t.split_once(':').is_some_and(|(key, value)| {
            !key.is_empty()
                && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && (value.is_empty() || value.starts_with(' '))
        })
    };
    text.lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            match line[indent..].strip_prefix("# ") {
                Some(rest) if setting(rest) => format!("{}{rest}\n", &line[..indent]),
                _ => format!("{line}\n"),
            }
        })
        .collect()
}

#[test]
fn example_file_parses_and_means_what_it_says() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    // As shipped, safe to copy (issue #21): one placeholder portal, no endpoint override, no role,
    // no discovery.
    let loaded = config::load(&path).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.global.region.as_deref(), Some("us-east-1"));
    let t = c.targets();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].access.role_arn, None);
    assert!(c.discovery.is_empty());
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("\n    endpoint_url:")
    );
    // Every commented-out setting, turned on, is valid and means what the file says.
    let all = example_with_every_setting_on(&std::fs::read_to_string(&path).unwrap());
    let loaded = config::parse(&all, "config.example.yaml, every setting on")
        .unwrap_or_else(|e| panic!("{e}\n{all}"));
    let c = &loaded.config;
    assert_eq!(c.global.timeout, Some(secs(30)));
    let t = c.targets();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].region.as_deref(), Some("eu-west-1"));
    assert_eq!(t[0].interval, secs(45));
    assert_eq!(t[0].timeout, secs(30));
    assert_eq!(
        t[0].labels,
        vec![
            ("env".to_owned(), "prod".to_owned()),
            ("team".to_owned(), "support".to_owned())
        ]
    );
    assert_eq!(
        t[0].access.external_id.as_deref(),
        Some("example-external-id")
    );
    assert_eq!(t[1].id, "66666666-7777-8888-9999-000000000000");
    assert_eq!(t[1].region.as_deref(), Some("us-west-2"));
    assert_eq!(c.discovery.len(), 2);
    assert_eq!(c.discovery[0].refresh, secs(600));
    assert_eq!(c.discovery[0].organization, None);
    let org = c.discovery[1]
        .organization
        .as_ref()
        .expect("organization entry");
    assert_eq!(org.role_name, "workspacesweb-exporter");
    assert_eq!(org.external_id.as_deref(), Some("member-external-id"));
    assert_eq!(
        org.role_arn.as_deref(),
        Some("arn:aws:iam::111111111111:role/workspacesweb-org-reader")
    );
    assert_eq!(org.ous, ["ou-ab12-cdef3456"]);
    assert_eq!(org.exclude_accounts, ["222222222222"]);
    assert_eq!(c.discovery[1].regions, ["us-east-1", "eu-west-1"]);
}

#[test]
fn deploy_config_is_one_portal_and_a_region() {
    // What the Debian package installs and compose mounts (issue #21).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.yaml");
    let loaded = config::load(&path).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert!(c.global.region.is_some());
    assert_eq!(c.targets().len(), 1);
    assert!(c.discovery.is_empty());
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(
        manifest
            .contains(r#"["deploy/config.yaml", "etc/workspacesweb-exporter/config.yaml", "640"]"#),
        "the .deb installs deploy/config.yaml as the live config"
    );
}

#[test]
fn example_file_has_a_comment_for_every_key() {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml"))
            .unwrap();
    for key in [
        "region:",
        "interval:",
        "timeout:",
        "page_size:",
        "concurrency:",
        "labels:",
        "duration_buckets:",
        "max_pages:",
        "max_requests_per_second:",
        "enabled:",
        "username:",
        "hash_salt:",
        "max_users:",
        "idle_ttl:",
        "- id:",
        "role_arn:",
        "external_id:",
        "endpoint_url:",
        "- arn:",
        "regions:",
        "refresh:",
        "- organization:",
        "role_name:",
        "ous:",
        "exclude_accounts:",
        "total:",
        "index:",
        "index_from_env:",
    ] {
        assert!(
            text.contains(key),
            "config.example.yaml does not mention {key}"
        );
    }
}

#[test]
fn timeout_defaults_to_the_smaller_of_30s_and_80_percent_of_interval() {
    for (interval, timeout) in [
        ("10s", Duration::from_secs(8)),
        ("60s", secs(30)),
        ("20s", secs(16)),
        ("1s", Duration::from_millis(800)),
        ("5m", secs(30)),
    ] {
        let text = format!("global:\n  interval: {interval}\nportals:\n  - id: {ID}\n");
        let c = ok(&text).config;
        assert_eq!(c.global.effective_timeout(), timeout, "interval {interval}");
        assert_eq!(c.targets()[0].timeout, timeout, "interval {interval}");
    }
    // A portal's own interval derives its own timeout.
    let c = ok(&format!(
        "portals:\n  - id: {ID}\n    interval: 10s\n  - id: {ID2}\n"
    ))
    .config;
    let t = c.targets();
    assert_eq!((t[0].interval, t[0].timeout), (secs(10), secs(8)));
    assert_eq!((t[1].interval, t[1].timeout), (secs(60), secs(30)));
}

#[test]
fn timeout_must_be_below_interval() {
    assert_eq!(
        err(&format!(
            "global:\n  interval: 30s\n  timeout: 30s\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:3:12: global.timeout: timeout (30s) must be less than interval (30s)"
    );
    // The rule holds per portal, against the portal's own interval.
    assert_eq!(
        err(&format!(
            "global:\n  timeout: 20s\nportals:\n  - id: {ID}\n  - id: {ID2}\n    interval: 15s\n"
        )),
        "config.yaml:6:15: portals[1].interval: interval (15s) must be greater than global.timeout (20s)"
    );
}

#[test]
fn unknown_keys_are_errors_at_top_level_and_nested() {
    assert_eq!(
        err(&format!("portals:\n  - id: {ID}\nportal:\n  - id: {ID}\n")),
        "config.yaml:3:1: portal: unknown key \"portal\"; expected one of `global`, `per_user`, `portals`, `discovery`, `sharding`, `storage`"
    );
    assert_eq!(
        err(&format!("portals:\n  - id: {ID}\n    intervall: 30s\n")),
        "config.yaml:3:5: portals[0].intervall: unknown key \"intervall\"; expected one of `id`, `arn`, `region`, `role_arn`, `external_id`, `endpoint_url`, `interval`, `labels`"
    );
    let e = err(&format!(
        "global:\n  labels: {{}}\n  timout: 5s\nportals:\n  - id: {ID}\n"
    ));
    assert!(e.starts_with("config.yaml:3:3: global.timout: unknown key \"timout\"; expected one of `region`, `interval`, `timeout`,"), "{e}");
    let e = err("discovery:\n  - regions: [us-east-1]\n    refresh: 5m\n    role: x\n");
    assert!(
        e.starts_with("config.yaml:4:5: discovery[0].role: unknown key \"role\""),
        "{e}"
    );
    let e = err(&format!("portals:\n  - id: {ID}\nsharding:\n  count: 2\n"));
    assert!(
        e.starts_with("config.yaml:4:3: sharding.count: unknown key \"count\""),
        "{e}"
    );
}

#[test]
fn bad_durations_are_named_precisely() {
    let cases = [
        (
            "5x",
            "invalid duration \"5x\": expected a number followed by ms, s, m, h or d",
        ),
        (
            "60",
            "invalid duration 60: a unit is required (ms, s, m, h or d), e.g. \"60s\"",
        ),
        (
            "\"60\"",
            "invalid duration \"60\": a unit is required (ms, s, m, h or d), e.g. \"60s\"",
        ),
        ("-5s", "invalid duration \"-5s\": must not be negative"),
        ("-5", "invalid duration -5: must not be negative"),
        (
            "1w",
            "invalid duration \"1w\": expected a number followed by ms, s, m, h or d",
        ),
    ];
    for (value, message) in cases {
        let text = format!("portals:\n  - id: {ID}\n  - id: {ID2}\n    interval: {value}\n");
        assert_eq!(
            err(&text),
            format!("config.yaml:4:15: portals[1].interval: {message}")
        );
    }
    assert_eq!(
        err(&format!(
            "global:\n  interval: 500ms\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:2:13: global.interval: must be at least 1s, got 500ms"
    );
    assert_eq!(
        err(&format!(
            "per_user:\n  idle_ttl: 0s\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:2:13: per_user.idle_ttl: must be at least 1s, got 0s"
    );
    let c = ok(&format!(
        "global:\n  interval: 1h30m\n  timeout: 90s\nportals:\n  - id: {ID}\n"
    ))
    .config;
    assert_eq!(c.global.interval, secs(5400));
    assert_eq!(c.global.timeout, Some(secs(90)));
}

#[test]
fn short_intervals_warn_but_load() {
    let loaded = ok(&format!(
        "global:\n  interval: 5s\nportals:\n  - id: {ID}\n    interval: 2s\n"
    ));
    assert_eq!(
        loaded.warnings,
        vec![
            "config.yaml:2:13: global.interval: interval 5s is below 10s: expect API throttling and load",
            "config.yaml:5:15: portals[0].interval: interval 2s is below 10s: expect API throttling and load",
        ]
    );
    assert_eq!(
        loaded.config.targets()[0].timeout,
        Duration::from_millis(1600)
    );
}

#[test]
fn arn_gives_portal_id_and_region() {
    let arn = format!("arn:aws:workspaces-web:eu-central-1:123456789012:portal/{ID}");
    let text = format!(
        "global:\n  region: us-east-1\nportals:\n  - arn: {arn}\n  - id: {ID2}\n    region: ap-southeast-2\n  - id: 00000000-0000-0000-0000-000000000000\n"
    );
    let c = ok(&text).config;
    assert_eq!(c.portals[0].id, ID);
    assert_eq!(c.portals[0].arn.as_deref(), Some(arn.as_str()));
    let t = c.targets();
    let regions: Vec<Option<&str>> = t.iter().map(|t| t.region.as_deref()).collect();
    // arn > portal > global
    assert_eq!(
        regions,
        vec![
            Some("eu-central-1"),
            Some("ap-southeast-2"),
            Some("us-east-1")
        ]
    );
    assert_eq!(t[1].arn, None, "an ARN is never invented from an id");
    // A region that agrees with the ARN is fine; one that does not is an error.
    ok(&format!(
        "portals:\n  - arn: {arn}\n    region: eu-central-1\n"
    ));
    assert_eq!(
        err(&format!(
            "portals:\n  - arn: {arn}\n    region: eu-west-1\n"
        )),
        "config.yaml:3:13: portals[0].region: region \"eu-west-1\" disagrees with the ARN's region \"eu-central-1\"; omit region when arn is given"
    );
}

#[test]
fn ids_and_arns_are_checked() {
    assert_eq!(
        err("portals:\n  - id: 1234\n"),
        "config.yaml:2:9: portals[0].id: invalid portal id \"1234\": expected 36 characters of letters, digits and '-'"
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - arn: arn:aws:workspaces-web:eu-west-1:123456789012:session/{ID}\n"
        )),
        format!(
            "config.yaml:2:10: portals[0].arn: invalid portal ARN \"arn:aws:workspaces-web:eu-west-1:123456789012:session/{ID}\": resource \"session/{ID}\" does not start with \"portal/\"; expected arn:<partition>:workspaces-web:<region>:<12-digit account>:portal/<portal id>"
        )
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\n    role_arn: arn:aws:iam::12345:role/x\n"
        )),
        "config.yaml:3:15: portals[0].role_arn: invalid role ARN \"arn:aws:iam::12345:role/x\": account \"12345\" is not 12 digits; expected arn:<partition>:iam::<12-digit account>:role/<name>"
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\n    endpoint_url: ftp://localhost\n"
        )),
        "config.yaml:3:19: portals[0].endpoint_url: invalid endpoint_url \"ftp://localhost\": scheme must be http or https, not \"ftp\""
    );
    assert_eq!(
        err(&format!(
            "global:\n  region: us_east_1\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:2:11: global.region: invalid region \"us_east_1\": expected an AWS region name such as \"us-east-1\""
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\n    arn: arn:aws:workspaces-web:eu-west-1:123456789012:portal/{ID}\n"
        )),
        "config.yaml:3:10: portals[0].arn: give either id or arn, not both"
    );
    assert_eq!(
        err("portals:\n  - region: eu-west-1\n"),
        "config.yaml:2:5: portals[0]: a portal needs id or arn"
    );
}

#[test]
fn duplicate_portals_by_id_or_arn() {
    let text = format!(
        "portals:\n  - id: {ID}\n  - id: {ID2}\n  - arn: arn:aws:workspaces-web:eu-west-1:123456789012:portal/{ID}\n  - id: {ID2}\n"
    );
    assert_eq!(
        err(&text),
        format!(
            "config.yaml:4:10: portals[2].arn: duplicate portal {ID}: already configured at portals[0].id (line 2)\n\
             config.yaml:5:9: portals[3].id: duplicate portal {ID2}: already configured at portals[1].id (line 3)"
        )
    );
}

#[test]
fn label_names_are_checked_and_reserved_ones_refused() {
    for name in [
        "portal_id",
        "username",
        "status",
        "operation",
        "error",
        "le",
    ] {
        assert_eq!(
            err(&format!(
                "global:\n  labels:\n    {name}: x\nportals:\n  - id: {ID}\n"
            )),
            format!(
                "config.yaml:3:5: global.labels.{name}: label name \"{name}\" is reserved: the exporter sets it itself"
            )
        );
    }
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\n    labels: {{__meta: x}}\n"
        )),
        "config.yaml:3:14: portals[0].labels.__meta: label name \"__meta\" is reserved: names starting with \"__\" are internal to Prometheus"
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\n    labels:\n      team-a: x\n"
        )),
        "config.yaml:4:7: portals[0].labels.team-a: invalid label name \"team-a\": must match [a-zA-Z_][a-zA-Z0-9_]*"
    );
    // Values are any string; portal labels override global ones; sorted by name.
    let c = ok(&format!(
        "global:\n  labels: {{zone: a, env: prod}}\nportals:\n  - id: {ID}\n    labels: {{env: \"dev \\\"x\\\"\", team: 7}}\n"
    ))
    .config;
    assert_eq!(
        c.targets()[0].labels,
        vec![
            ("env".to_owned(), "dev \"x\"".to_owned()),
            ("team".to_owned(), "7".to_owned()),
            ("zone".to_owned(), "a".to_owned()),
        ]
    );
}

/// Absurd values are located config errors, not panics at run time: before these bounds,
/// `interval: 2500000000000000h` overflowed `interval * 5` in the poller (a panic per poll, the
/// portal restarted in a loop) and `concurrency: 10000000000000000000` panicked the control loop
/// when it built the semaphore.
#[test]
fn upper_bounds_are_located_errors() {
    let global = [
        (
            "interval: 2500000000000000h",
            "2:13: global.interval: must be at most 24h, got 2500000000000000h",
        ),
        (
            "interval: 25h",
            "2:13: global.interval: must be at most 24h, got 25h",
        ),
        (
            "timeout: 100000000h",
            "2:12: global.timeout: must be at most 24h, got 100000000h",
        ),
        (
            "concurrency: 10000000000000000000",
            "2:16: global.concurrency: must be at most 1000, got 10000000000000000000",
        ),
        (
            "concurrency: 1000000000000",
            "2:16: global.concurrency: must be at most 1000, got 1000000000000",
        ),
        (
            "max_pages: 4000000000",
            "2:14: global.max_pages: must be at most 100000, got 4000000000",
        ),
        (
            "max_requests_per_second: 1e5",
            "2:28: global.max_requests_per_second: must be at most 10000, got 100000",
        ),
    ];
    for (line, expected) in global {
        assert_eq!(
            err(&format!("global:\n  {line}\nportals:\n  - id: {ID}\n")),
            format!("config.yaml:{expected}"),
            "{line}"
        );
    }
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\n    interval: 100000000h\n"
        )),
        "config.yaml:3:15: portals[0].interval: must be at most 24h, got 100000000h"
    );
    assert_eq!(
        err("discovery:\n  - regions: [us-east-1]\n    refresh: 1000d\n"),
        "config.yaml:3:14: discovery[0].refresh: must be at most 24h, got 24000h"
    );
    assert_eq!(
        err(&format!(
            "storage:\n  max_age: 400d\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:2:12: storage.max_age: must be at most 8784h, got 9600h"
    );
    assert_eq!(
        err(&format!(
            "per_user:\n  idle_ttl: 100000000h\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:2:13: per_user.idle_ttl: must be at most 8784h, got 100000000h"
    );
    // The bounds themselves are accepted.
    let c = ok(&format!(
        "global:\n  interval: 24h\n  timeout: 23h\n  concurrency: 1000\n  max_pages: 100000\n  max_requests_per_second: 10000\nstorage:\n  max_age: 366d\nper_user:\n  idle_ttl: 366d\nportals:\n  - id: {ID}\ndiscovery:\n  - regions: [us-east-1]\n    refresh: 1d\n"
    ))
    .config;
    assert_eq!(c.global.concurrency, 1000);
    assert_eq!(c.global.interval, std::time::Duration::from_secs(24 * 3600));
}

#[test]
fn numeric_ranges() {
    let cases = [
        (
            "page_size: 0",
            "2:14: global.page_size: must be between 1 and 1000, got 0",
        ),
        (
            "page_size: 1001",
            "2:14: global.page_size: must be between 1 and 1000, got 1001",
        ),
        (
            "concurrency: 0",
            "2:16: global.concurrency: must be at least 1, got 0",
        ),
        (
            "max_pages: 0",
            "2:14: global.max_pages: must be at least 1, got 0",
        ),
        (
            "max_requests_per_second: 0",
            "2:28: global.max_requests_per_second: must be a positive finite number, got 0",
        ),
        (
            "duration_buckets: [60, 30]",
            "2:26: global.duration_buckets[1]: buckets must be strictly increasing: 30 follows 60",
        ),
        (
            "duration_buckets: [0, 30]",
            "2:22: global.duration_buckets[0]: bucket 0 must be a positive finite number of seconds",
        ),
        (
            "duration_buckets: []",
            "2:21: global.duration_buckets: must list at least one bucket",
        ),
        (
            "page_size: -1",
            "2:14: global.page_size: invalid type: integer `-1`, expected u32",
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            err(&format!("global:\n  {line}\nportals:\n  - id: {ID}\n")),
            format!("config.yaml:{expected}")
        );
    }
    let c = ok(&format!("global:\n  max_requests_per_second: 0.5\n  duration_buckets: [0.5, 1, 2.5]\nportals:\n  - id: {ID}\n")).config;
    assert_eq!(c.global.max_requests_per_second, 0.5);
    assert_eq!(c.global.duration_buckets, vec![0.5, 1.0, 2.5]);
    assert_eq!(
        err(&format!(
            "per_user:\n  max_users: 0\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:2:14: per_user.max_users: must be at least 1, got 0"
    );
    assert_eq!(
        err(&format!(
            "per_user:\n  max_users: 100001\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:2:14: per_user.max_users: must be at most 100000, got 100001"
    );
    assert_eq!(
        ok(&format!(
            "per_user:\n  max_users: 100000\nportals:\n  - id: {ID}\n"
        ))
        .config
        .per_user
        .max_users,
        100_000
    );
}

#[test]
fn external_id_needs_role_and_is_never_echoed() {
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\n    external_id: topsecret\n"
        )),
        "config.yaml:3:18: portals[0].external_id: external_id is only used with role_arn, which is not set"
    );
    let e = err(&format!(
        "portals:\n  - id: {ID}\n    role_arn: arn:aws:iam::123456789012:role/r\n    external_id: \"top secret!\"\n"
    ));
    assert_eq!(
        e,
        "config.yaml:4:18: portals[0].external_id: external_id must be 2 to 1224 characters of letters, digits and +=,.@:/_- (value not shown)"
    );
    assert!(!e.contains("top secret"));
}

#[test]
fn discovery_rules() {
    assert_eq!(
        err("discovery:\n  - refresh: 5m\n"),
        "config.yaml:2:5: discovery[0]: missing field `regions`"
    );
    assert_eq!(
        err("discovery:\n  - regions: []\n"),
        "config.yaml:2:14: discovery[0].regions: must list at least one region"
    );
    assert_eq!(
        err("discovery:\n  - regions: [us-east-1, eu-west-1, us-east-1]\n"),
        "config.yaml:2:37: discovery[0].regions[2]: region us-east-1 is listed twice"
    );
    assert_eq!(
        err("discovery:\n  - regions: [us-east-1]\n  - regions: [eu-west-1, us-east-1]\n"),
        "config.yaml:3:26: discovery[1].regions[1]: region us-east-1 is already discovered by discovery[0] with the same role_arn and endpoint_url"
    );
    // The same region through another role is another account: fine.
    let c = ok("discovery:\n  - regions: [us-east-1]\n  - regions: [us-east-1]\n    role_arn: arn:aws:iam::123456789012:role/r\n    refresh: 90s\n").config;
    assert_eq!(c.discovery.len(), 2);
    assert_eq!(c.discovery[1].refresh, secs(90));
    assert_eq!(
        c.discovery[1].access.role_arn.as_deref(),
        Some("arn:aws:iam::123456789012:role/r")
    );
}

#[test]
fn something_to_poll_is_required() {
    assert_eq!(
        err("global:\n  interval: 30s\n"),
        "config.yaml:1:1: portals: nothing to poll: give at least one entry in portals or discovery"
    );
    assert_eq!(
        err("global:\n  interval: 30s\nportals: []\ndiscovery: []\n"),
        "config.yaml:3:10: portals: nothing to poll: give at least one entry in portals or discovery"
    );
    assert_eq!(
        err(""),
        "config.yaml:1:1: portals: nothing to poll: give at least one entry in portals or discovery"
    );
}

#[test]
fn yaml_shape_errors_carry_position_and_path() {
    assert_eq!(
        err("portals:\n  id: x\n"),
        "config.yaml:2:3: portals: invalid type: map, expected a sequence"
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\nper_user:\n  enabled: yes\n"
        )),
        "config.yaml:4:12: per_user.enabled: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        err(&format!(
            "portals:\n  - id: {ID}\nper_user:\n  username: sha256\n"
        )),
        "config.yaml:4:13: per_user.username: unknown variant `sha256`, expected `raw` or `hashed`"
    );
    assert_eq!(
        err(&format!(
            "global:\n  interval: 5s\n  interval: 6s\nportals:\n  - id: {ID}\n"
        )),
        "config.yaml:2:3: global.interval: key \"interval\" is given more than once"
    );
    assert_eq!(
        err("hello"),
        "config.yaml:1:1: (top level): invalid type: string \"hello\", expected a mapping with global, per_user, portals, discovery, sharding, storage"
    );
    assert_eq!(
        err(&format!("global:\n  timeout: 0s\nportals:\n  - id: {ID}\n")),
        "config.yaml:2:12: global.timeout: must be greater than 0"
    );
    let e = err("portals:\n  - id: 'unterminated\n");
    assert!(
        e.starts_with("config.yaml:3:1: portals[0].id: found unexpected end of stream"),
        "{e}"
    );
}

#[test]
fn many_problems_are_reported_together_in_file_order() {
    let e = config::load(&fixture("many_errors.yaml")).unwrap_err();
    let file = fixture("many_errors.yaml").display().to_string();
    let lines: Vec<String> = e
        .to_string()
        .lines()
        .map(|l| l.replacen(&file, "F", 1))
        .collect();
    assert_eq!(
        lines,
        vec![
            "F:3:12: global.timeout: timeout (25s) must be less than interval (20s)",
            "F:4:14: global.page_size: must be between 1 and 1000, got 0",
            "F:9:18: portals[0].external_id: external_id is only used with role_arn, which is not set",
            format!("F:10:10: portals[1].arn: duplicate portal {ID}: already configured at portals[0].id (line 8)").as_str(),
            "F:11:13: portals[1].region: region \"us-east-1\" disagrees with the ARN's region \"eu-west-1\"; omit region when arn is given",
            "F:13:14: discovery[0].regions: must list at least one region",
            "F:16:10: sharding.index: index 2 must be less than total (2)",
        ]
    );
    assert!(!e.to_string().contains("s3cret"));
}

#[test]
fn unreadable_file_names_the_file() {
    let e = config::load(Path::new("/nonexistent/wsw.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/wsw.yaml: cannot read config file: "),
        "{e}"
    );
}

#[test]
fn per_user_settings_and_salt_warning() {
    let loaded = ok(&format!(
        "per_user:\n  enabled: true\n  username: hashed\n  max_users: 50\n  idle_ttl: 2h\nportals:\n  - id: {ID}\n"
    ));
    let u = &loaded.config.per_user;
    assert!(u.enabled);
    assert_eq!(u.username, UsernameMode::Hashed);
    assert_eq!(u.max_users, 50);
    assert_eq!(u.idle_ttl, secs(7200));
    assert_eq!(
        loaded.warnings,
        vec![
            "config.yaml:2:3: per_user.hash_salt: hashed usernames without a salt can be reversed by hashing a list of names"
        ]
    );
}

#[test]
fn summary_shows_settings_and_hides_secrets() {
    let text = format!(
        "global:\n  region: us-east-1\n  labels: {{env: prod}}\nper_user:\n  enabled: true\n  username: hashed\n  hash_salt: pepper123\nportals:\n  - id: {ID}\n    role_arn: arn:aws:iam::123456789012:role/r\n    external_id: ext-secret-42\n    endpoint_url: http://user:pw-secret@127.0.0.1:4566\n    interval: 30s\ndiscovery:\n  - regions: [eu-west-1]\n    role_arn: arn:aws:iam::123456789012:role/r\n    external_id: ext-secret-43\nsharding:\n  total: 2\n  index_from_env: HOSTNAME\n"
    );
    let s = ok(&text).config.summary();
    for secret in ["pepper123", "ext-secret-42", "ext-secret-43", "pw-secret"] {
        assert!(!s.contains(secret), "summary leaks {secret}:\n{s}");
    }
    for expected in [
        "global: region=us-east-1 interval=1m timeout=30s page_size=100 concurrency=4",
        "per_user: enabled username=hashed (hash_salt set, not shown) max_users=1000 idle_ttl=24h",
        "portals: 1",
        &format!(
            "  - {ID} region=us-east-1 interval=30s timeout=24s role_arn=arn:aws:iam::123456789012:role/r external_id=(set, not shown) endpoint_url=http://user:***@127.0.0.1:4566/ labels={{env=\"prod\"}}"
        ),
        "discovery: 1",
        "  - regions=[eu-west-1] refresh=10m role_arn=arn:aws:iam::123456789012:role/r external_id=(set, not shown) labels={env=\"prod\"}",
        "sharding: total=2 index from environment variable HOSTNAME",
    ] {
        assert!(s.contains(expected), "summary lacks {expected:?}:\n{s}");
    }
}

#[test]
fn null_sections_mean_defaults() {
    let c = ok(&format!(
        "global:\nper_user:\nsharding:\nportals:\n  - id: {ID}\n    labels:\n"
    ))
    .config;
    assert_eq!(c.global.interval, secs(60));
    assert!(c.portals[0].labels.is_empty());
}

/// An invalid endpoint_url is named in the error with its userinfo masked: the message goes to
/// logs, stderr and the reload response.
#[test]
fn endpoint_url_errors_never_echo_credentials() {
    for url in [
        "ftp://alice:hunter2secret@example.com",
        "http://alice:hunter2secret@[not-an-ip",
        "https://alice:hunter2secret@example.com/?q=1",
    ] {
        let e = err(&format!(
            "portals:\n  - id: {ID}\n    endpoint_url: \"{url}\"\n"
        ));
        assert!(e.contains("invalid endpoint_url"), "{e}");
        assert!(e.contains("***@"), "{e}");
        assert!(!e.contains("hunter2secret") && !e.contains("alice"), "{e}");
    }
}

#[test]
fn organization_discovery_parses_and_checks_its_keys() {
    let c = ok("discovery:\n  - organization:\n      role_name: ops/workspacesweb-exporter\n      external_id: member-id\n      role_arn: arn:aws:iam::111111111111:role/org-reader\n      ous: [ou-ab12-cdef3456, r-ab12]\n      exclude_accounts: [\"222222222222\", \"012345678901\"]\n    regions: [us-east-1, eu-west-1]\n    refresh: 5m\n").config;
    let d = &c.discovery[0];
    let org = d.organization.as_ref().expect("organization");
    assert_eq!(org.role_name, "ops/workspacesweb-exporter");
    assert_eq!(org.ous, ["ou-ab12-cdef3456", "r-ab12"]);
    assert_eq!(org.exclude_accounts, ["012345678901", "222222222222"]);
    assert_eq!(d.access.role_arn, None);
    assert_eq!(
        d.access_for(Some("333333333333"), "eu-west-1")
            .role_arn
            .as_deref(),
        Some("arn:aws:iam::333333333333:role/ops/workspacesweb-exporter")
    );
    assert_eq!(
        d.access_for(Some("333333333333"), "eu-west-1")
            .external_id
            .as_deref(),
        Some("member-id")
    );
    // Two organization entries may cover the same regions (OUs with their own labels).
    ok(
        "discovery:\n  - organization: {role_name: r, ous: [ou-ab12-cdef3456]}\n    regions: [us-east-1]\n  - organization: {role_name: r, ous: [ou-ab12-aaaabbbb]}\n    regions: [us-east-1]\n",
    );
    // China: partition aws-cn in the member role's ARN.
    let c = ok("discovery:\n  - organization: {role_name: r}\n    regions: [cn-north-1]\n").config;
    assert_eq!(
        c.discovery[0]
            .access_for(Some("333333333333"), "cn-north-1")
            .role_arn
            .as_deref(),
        Some("arn:aws-cn:iam::333333333333:role/r")
    );
}

/// Each mistake in an organization entry is reported at its line and column, with the key path.
#[test]
fn organization_discovery_errors_are_located() {
    let entry = |org: &str, rest: &str| {
        err(&format!(
            "discovery:\n  - organization:\n{org}    regions: [us-east-1]\n{rest}"
        ))
    };
    for (org, rest, want) in [
        (
            "      ous: [ou-ab12-cdef3456]\n",
            "",
            "config.yaml:3:7: discovery[0].organization: missing field `role_name`",
        ),
        (
            "      role_name: arn:aws:iam::123456789012:role/x\n",
            "",
            "config.yaml:3:18: discovery[0].organization.role_name: invalid role name \"arn:aws:iam::123456789012:role/x\": expected 1 to 64 characters of letters, digits and +=,.@_- (optionally after a path/), the name alone, not an ARN",
        ),
        (
            "      role_name: r\n      role: x\n",
            "",
            "config.yaml:4:7: discovery[0].organization.role: unknown key \"role\"; expected one of `role_name`, `external_id`, `role_arn`, `ous`, `exclude_accounts`",
        ),
        (
            "      role_name: r\n      ous: [ou-ab12-cdef3456, ou-x]\n",
            "",
            "config.yaml:4:31: discovery[0].organization.ous[1]: invalid OU id \"ou-x\": expected an organizational unit id such as \"ou-ab12-cdef3456\" (or the root's, \"r-ab12\")",
        ),
        (
            "      role_name: r\n      ous: []\n",
            "",
            "config.yaml:4:12: discovery[0].organization.ous: must list at least one OU; leave ous out for the whole organization",
        ),
        (
            "      role_name: r\n      ous: [ou-ab12-cdef3456, ou-ab12-cdef3456]\n",
            "",
            "config.yaml:4:31: discovery[0].organization.ous[1]: OU ou-ab12-cdef3456 is listed twice",
        ),
        (
            "      role_name: r\n      exclude_accounts: [12345678901]\n",
            "",
            "config.yaml:4:26: discovery[0].organization.exclude_accounts[0]: account id 12345678901 must be in quotes, e.g. \"012345678901\": YAML reads an unquoted number and drops its leading zeros",
        ),
        (
            "      role_name: r\n      exclude_accounts: [\"1234\"]\n",
            "",
            "config.yaml:4:26: discovery[0].organization.exclude_accounts[0]: invalid account id \"1234\": expected 12 digits",
        ),
        (
            "      role_name: r\n      external_id: \"x\"\n",
            "",
            "config.yaml:4:20: discovery[0].organization.external_id: external_id must be 2 to 1224 characters of letters, digits and +=,.@:/_- (value not shown)",
        ),
        (
            "      role_name: r\n",
            "    role_arn: arn:aws:iam::123456789012:role/x\n",
            "config.yaml:5:15: discovery[0].role_arn: with organization, the role assumed in each account is organization.role_name, and the one that calls Organizations is organization.role_arn",
        ),
        (
            "      role_name: r\n",
            "    external_id: abc\n",
            "config.yaml:5:18: discovery[0].external_id: with organization, the member role's external id is organization.external_id",
        ),
        (
            "      role_name: r\n      role_arn: arn:aws-cn:iam::123456789012:role/x\n",
            "",
            "config.yaml:4:17: discovery[0].organization.role_arn: role_arn is in partition aws-cn, the regions in aws",
        ),
    ] {
        assert_eq!(entry(org, rest), want, "{org}{rest}");
    }
    assert_eq!(
        err("discovery:\n  - organization: {role_name: r}\n    regions: [us-east-1, cn-north-1]\n"),
        "config.yaml:3:26: discovery[0].regions[1]: region cn-north-1 is in partition aws-cn, us-east-1 in aws: an organization entry covers one partition"
    );
}
