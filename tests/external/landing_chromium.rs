//! The landing page as a browser draws it: headless Chromium (Debian's `chromium`) loads `/` from
//! the real exporter polling the simulator, and the test reads what Chromium made of it: the DOM
//! after layout (`--dump-dom`) and a screenshot (`--screenshot`).
//!
//! The portal has a hostile display name, 3 active sessions and a capacity of 6, so that the
//! sparkline's geometry is known: its y axis tops at 6, the active line lies at y = 18 and the
//! capacity line at y = 2 of the 36 px drawing, from its first poll (x = 0) to now (x = 180).
//! The screenshot must hold pixels of both lines' colours (used nowhere else on the page): a
//! broken SVG (bad markup, wrong namespace, unparsable points) draws none.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use workspacesweb_sim::{Clock, SimConfig};

/// Chromium's flags for a headless run as root on a machine without a display or network.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];
/// The stroke of the active sessions' line and of the capacity line (`src/http/sparkline.rs`).
const ACTIVE: [u8; 3] = [0x1f, 0x77, 0xb4];
const CAPACITY: [u8; 3] = [0xd6, 0x27, 0x28];
/// A display name that would inject markup and script if it were not escaped.
const HOSTILE: &str = "\"><img src=x onerror=alert(1)><script>alert('x')</script>";
/// Hang guard for one Chromium run (it takes about a second).
const CHROMIUM_LIMIT: Duration = Duration::from_secs(120);

/// Runs Chromium on `url` with `mode` (`--dump-dom`, `--screenshot=...`) and a fresh profile in
/// `dir`: its standard output.
fn chromium(dir: &Path, mode: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir_in(dir).expect("profile dir");
    let out = dir.join("chromium.out");
    let err = dir.join("chromium.err");
    let mut child = Command::new("chromium")
        .args(CHROMIUM_FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(mode)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .expect("chromium starts");
    let stderr = || std::fs::read_to_string(&err).unwrap_or_default();
    let Some(status) = wait_exit(&mut child, CHROMIUM_LIMIT) else {
        let _ = child.kill();
        panic!(
            "chromium still running after {CHROMIUM_LIMIT:?}; stderr:\n{}",
            stderr()
        );
    };
    assert!(
        status.success(),
        "chromium {mode:?}: {status}; stderr:\n{}",
        stderr()
    );
    std::fs::read_to_string(&out).expect("chromium's output")
}

/// The row of `portal_id` in a page or DOM.
fn row<'a>(html: &'a str, portal_id: &str) -> Option<&'a str> {
    let start = html.find(&format!("<tr data-portal=\"{portal_id}\">"))?;
    let len = html[start..].find("</tr>")?;
    Some(&html[start..start + len])
}

/// The points of the first `<polyline class="{class}"` of `html`, parsed.
fn polyline(html: &str, class: &str) -> Option<Vec<(f64, f64)>> {
    let element = html.split(&format!("<polyline class=\"{class}\"")).nth(1)?;
    let points = element.split("points=\"").nth(1)?.split('"').next()?;
    points
        .split(' ')
        .map(|xy| {
            let (x, y) = xy.split_once(',')?;
            Some((x.parse().ok()?, y.parse().ok()?))
        })
        .collect()
}

/// How many points the active line of `portal_id` has on the page the exporter serves now.
fn served_points(addr: &str, portal_id: &str) -> usize {
    let (status, _, body) = http_get(addr, "/").expect("GET /");
    assert_eq!(status, 200);
    let page = String::from_utf8(body).expect("UTF-8 page");
    row(&page, portal_id)
        .and_then(|r| polyline(r, "active"))
        .map_or(0, |p| p.len())
}

/// Pixels of `png` that are `colour` blended with the white background (anti-aliased edges
/// included, down to 30% of the colour).
fn pixels_of(png: &Path, colour: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        File::open(png).expect("screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|px| is_blend_with_white(&px[..3], colour))
        .count()
}

/// Whether `px` is `alpha × colour + (1 − alpha) × white` for some alpha in [0.3, 1], within 12
/// per channel.
fn is_blend_with_white(px: &[u8], colour: [u8; 3]) -> bool {
    // alpha from the channel where the colour is farthest from white.
    let k = (0..3).max_by_key(|&k| 255 - colour[k]).unwrap_or(0);
    let alpha = f64::from(255 - px[k]) / f64::from(255 - colour[k]);
    (0.3..=1.05).contains(&alpha)
        && (0..3).all(|c| {
            let expected = alpha * f64::from(colour[c]) + (1.0 - alpha) * 255.0;
            (f64::from(px[c]) - expected).abs() <= 12.0
        })
}

#[test]
fn chromium_draws_the_sparkline_and_escapes_a_hostile_display_name() {
    if !have_or_skip("chromium", &["--version"], "apt-get install chromium") {
        return;
    }
    let base = workspacesweb_exporter::clock::now_ms();
    let mut portal = scripted(GOOD, 3, base, 2);
    portal.display_name = HOSTILE.to_string();
    portal.max_concurrent_sessions = 6;
    let sim = start_background_sim(
        SimConfig::new(26)
            .with_clock(Clock::manual(base))
            .with_portal(portal),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("exporter.yaml");
    std::fs::write(
        &config,
        format!(
            "global:\n  region: us-east-1\n  interval: 1s\nportals:\n  - id: {GOOD}\n    endpoint_url: {}\n",
            sim.running.endpoint_url()
        ),
    )
    .expect("config");
    let addr = format!("127.0.0.1:{}", free_port());
    let stderr = dir.path().join("exporter.err");
    let mut exporter = Child(
        Command::new(env!("CARGO_BIN_EXE_workspacesweb-exporter"))
            .arg("--config.file")
            .arg(&config)
            .args(["--web.listen-address", &addr, "--log.level", "warn"])
            .args([
                "--web.dashboard-url",
                "https://grafana.example.com/d/x?a=1&b=2",
            ])
            .envs([
                ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
                ("AWS_CONFIG_FILE", "/nonexistent"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
            ])
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("exporter starts"),
    );
    wait_ready_or_exit(&mut exporter, &addr, Duration::from_secs(60), &stderr);
    // A few polls, one a second: the line has a length to draw.
    let enough = poll_until(Duration::from_secs(60), || {
        (served_points(&addr, GOOD) >= 4).then_some(())
    });
    assert!(
        enough.is_some(),
        "fewer than 4 polls on the page after 60 s"
    );
    let url = format!("http://{addr}/");

    let before = served_points(&addr, GOOD);
    let dom = chromium(dir.path(), &["--dump-dom"], &url);
    let after = served_points(&addr, GOOD);
    let row = row(&dom, GOOD).unwrap_or_else(|| panic!("no row of {GOOD} in the DOM:\n{dom}"));
    assert!(row.contains("<svg class=\"spark\""), "{row}");
    // One point per poll, as served while Chromium loaded the page; all inside the drawing.
    let active = polyline(row, "active").unwrap_or_else(|| panic!("no active line: {row}"));
    assert!(
        (before..=after).contains(&active.len()),
        "{before} <= {} <= {after}",
        active.len()
    );
    assert_eq!(
        active.first().map(|p| p.0),
        Some(0.0),
        "the first poll at the left edge"
    );
    assert!(
        active
            .iter()
            .all(|&(x, y)| (0.0..=180.0).contains(&x) && y == 18.0),
        "{active:?}"
    );
    assert!(
        active.windows(2).all(|w| w[0].0 < w[1].0),
        "left to right: {active:?}"
    );
    // The capacity line: 6, from the first poll to now.
    let capacity = polyline(row, "capacity").unwrap_or_else(|| panic!("no capacity line: {row}"));
    assert_eq!(capacity, [(0.0, 2.0), (180.0, 2.0)]);
    // The hostile name is text: no element came of it, and usernames never show.
    assert!(
        row.contains(
            "\"&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert('x')&lt;/script&gt;"
        ),
        "{row}"
    );
    assert!(!dom.contains("<img") && !dom.contains("<script"), "{dom}");
    assert!(
        !dom.contains("user0") && !dom.contains("user1"),
        "a username: {dom}"
    );
    assert!(dom.contains("<a href=\"https://grafana.example.com/d/x?a=1&amp;b=2\">Dashboard</a>"));
    assert!(
        row.contains(">us-east-1<") && row.contains(">123456789012<"),
        "{row}"
    );

    // Drawn: the screenshot holds both lines' colours.
    let shot = dir.path().join("landing.png");
    let mode = format!("--screenshot={}", shot.display());
    chromium(
        dir.path(),
        &[&mode, "--window-size=1920,1080", "--hide-scrollbars"],
        &url,
    );
    let (blue, red) = (pixels_of(&shot, ACTIVE), pixels_of(&shot, CAPACITY));
    assert!(
        blue >= 100 && red >= 50,
        "active line {blue} px, capacity line {red} px"
    );
}
