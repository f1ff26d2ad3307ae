//! Reloading the web config through the real binary (`--demo`, so that only the web config is
//! re-read): the lifecycle flag, the refusal to lower security, what a reload logs, and what
//! its error body may show.
//!
//! Each test runs one exporter with its log in a file; SIGHUP is sent with kill(1). Waits are
//! bounded polls of the exporter's own answers (its process offers no other signal).

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::net::TcpStream;

use crate::web_config::{
    BOTH, Pki, Reply, STEP, TLS, basic, client, exchange, tls_connect, users, write,
};

/// How long a reload by SIGHUP may take to show.
const RELOAD_LIMIT: Duration = Duration::from_secs(30);

/// The exporter binary in demo mode with a web config, its log in a file.
struct Exporter {
    _child: common::Child,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
    /// TLS client trusting the test CA, when the web config has TLS.
    tls: Option<Arc<ClientConfig>>,
}

impl Exporter {
    /// Starts it with `web` (written to `web.yml` in `pki`'s directory) and `extra` flags, and
    /// waits for `/-/healthy`.
    async fn start(pki: &Pki, web: &str, extra: &[&str]) -> Self {
        let path = write(pki.dir.path(), "web.yml", web);
        let log = pki.dir.path().join("exporter.log");
        let addr: SocketAddr = format!("127.0.0.1:{}", common::free_port())
            .parse()
            .expect("address");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_workspacesweb-exporter"))
            .args(["--demo", "--log.level", "info", "--web.listen-address"])
            .arg(addr.to_string())
            .arg("--web.config.file")
            .arg(&path)
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the exporter");
        let pid = child.id();
        let exporter = Exporter {
            _child: common::Child(child),
            pid,
            addr,
            log,
            tls: web
                .contains("tls_server_config")
                .then(|| client(pki, BOTH, None)),
        };
        let mut up = false;
        for _ in 0..600 {
            if exporter
                .try_call("GET", "/-/healthy", None)
                .await
                .is_ok_and(|r| r.status == 200)
            {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "the exporter never answered; log:\n{}", exporter.log());
        exporter
    }

    async fn try_call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
    ) -> std::io::Result<Reply> {
        let mut headers = vec![("Content-Length", "0")];
        if let Some(auth) = auth {
            headers.push(("Authorization", auth));
        }
        let tcp = tokio::time::timeout(STEP, TcpStream::connect(self.addr))
            .await
            .expect("connect in time")?;
        match &self.tls {
            None => exchange(tcp, method, path, &headers).await,
            Some(config) => {
                let stream = tls_connect(self.addr, config).await?;
                exchange(stream, method, path, &headers).await
            }
        }
    }

    async fn call(&self, method: &str, path: &str, auth: Option<&str>) -> Reply {
        self.try_call(method, path, auth)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", self.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn hup(&self) {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &self.pid.to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(sent.success());
    }

    /// `workspacesweb_config_last_reload_successful`, read with `auth`.
    async fn reload_successful(&self, auth: Option<&str>) -> String {
        let metrics = self.call("GET", "/metrics", auth).await;
        assert_eq!(metrics.status, 200, "{}", metrics.body);
        metrics
            .body
            .lines()
            .find_map(|l| l.strip_prefix("workspacesweb_config_last_reload_successful "))
            .expect("the reload gauge")
            .to_string()
    }

    /// Waits until the log has `n` lines containing `text`.
    async fn wait_log(&self, text: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + RELOAD_LIMIT;
        while count(&self.log(), text) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {n} lines with {text:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn count(log: &str, text: &str) -> usize {
    log.lines().filter(|l| l.contains(text)).count()
}

/// Before: an emptied or truncated web config was valid (plain HTTP, no auth), and after a
/// reload the exporter served plain HTTP and took unauthenticated reloads. Now a reload that
/// would remove TLS or basic auth fails: the old settings stay, the reload gauge says 0, and
/// an error names what would have been removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_would_remove_tls_or_basic_auth_is_refused() {
    let pki = Pki::new();
    let original = format!("{TLS}{}", users(&[("prom", "pw")]));
    let good = basic("prom", "pw");
    let exporter = Exporter::start(&pki, &original, &["--web.enable-lifecycle"]).await;
    let tls_only = TLS.to_string();
    let users_only = users(&[("prom", "pw")]);
    let truncated = format!("{TLS}basic_auth_users:\n");
    let cases: [(&str, &str, bool, &str); 4] = [
        ("emptied", "", false, "would remove TLS and basic auth"),
        ("truncated", &truncated, true, "would remove basic auth"),
        (
            "tls_server_config removed",
            &users_only,
            false,
            "would remove TLS,",
        ),
        (
            "basic_auth_users removed",
            &tls_only,
            true,
            "would remove basic auth",
        ),
    ];
    for (i, (case, text, by_signal, words)) in cases.into_iter().enumerate() {
        write(pki.dir.path(), "web.yml", text);
        if by_signal {
            exporter.hup();
            exporter.wait_log("reload failed", i + 1).await;
        } else {
            let refused = exporter.call("POST", "/-/reload", Some(&good)).await;
            assert_eq!(refused.status, 400, "{case}: {}", refused.body);
            assert!(refused.body.contains(words), "{case}: {}", refused.body);
        }
        let log = exporter.log();
        let line = log
            .lines()
            .filter(|l| l.contains("reload failed"))
            .nth(i)
            .expect("logged");
        assert!(
            line.contains("level=ERROR") && line.contains(words),
            "{case}: {line}"
        );
        // The old settings stay: TLS (a plain client gets no answer) and basic auth.
        let plain = exchange(
            TcpStream::connect(exporter.addr).await.expect("connect"),
            "GET",
            "/-/healthy",
            &[],
        )
        .await;
        assert!(plain.is_err(), "{case}: plain HTTP answered {plain:?}");
        assert_eq!(
            exporter.call("GET", "/metrics", None).await.status,
            401,
            "{case}"
        );
        assert_eq!(exporter.reload_successful(Some(&good)).await, "0", "{case}");
        // Putting the file back reloads fine.
        write(pki.dir.path(), "web.yml", &original);
        assert_eq!(
            exporter.call("POST", "/-/reload", Some(&good)).await.status,
            200
        );
        assert_eq!(exporter.reload_successful(Some(&good)).await, "1", "{case}");
    }
}

/// Before: `POST /-/reload` always reloaded (the security review sent 2,000 unauthenticated
/// ones). Now it needs `--web.enable-lifecycle`; SIGHUP always works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lifecycle_flag_post_is_forbidden_and_sighup_still_reloads() {
    let pki = Pki::new();
    let exporter = Exporter::start(&pki, &users(&[("prom", "old")]), &[]).await;
    let (old, new) = (basic("prom", "old"), basic("prom", "new"));
    write(pki.dir.path(), "web.yml", &users(&[("prom", "new")]));
    for auth in [None, Some(old.as_str())] {
        let forbidden = exporter.call("POST", "/-/reload", auth).await;
        let expected = if auth.is_some() { 403 } else { 401 };
        assert_eq!(forbidden.status, expected, "{}", forbidden.body);
    }
    let forbidden = exporter.call("POST", "/-/reload", Some(&old)).await;
    assert_eq!(forbidden.body, "Lifecycle API is not enabled.\n");
    // Nothing changed.
    assert_eq!(
        exporter.call("GET", "/metrics", Some(&old)).await.status,
        200
    );
    assert_eq!(
        exporter.call("GET", "/metrics", Some(&new)).await.status,
        401
    );
    exporter.hup();
    let deadline = tokio::time::Instant::now() + RELOAD_LIMIT;
    while exporter.call("GET", "/metrics", Some(&new)).await.status != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "SIGHUP did not reload; log:\n{}",
            exporter.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        exporter.call("GET", "/metrics", Some(&old)).await.status,
        401
    );
}

/// Before: every successful reload logged at info (2,000 lines for the review's 2,000
/// requests). Now a reload that changes nothing logs at debug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_logs_at_info_only_when_it_changes_something() {
    let pki = Pki::new();
    let headers =
        |value: &str| format!("http_server_config:\n  headers:\n    X-Frame-Options: {value}\n");
    let exporter = Exporter::start(&pki, &headers("deny"), &["--web.enable-lifecycle"]).await;
    for _ in 0..20 {
        assert_eq!(exporter.call("POST", "/-/reload", None).await.status, 200);
    }
    assert_eq!(
        count(&exporter.log(), "configuration reloaded"),
        0,
        "{}",
        exporter.log()
    );
    write(pki.dir.path(), "web.yml", &headers("sameorigin"));
    for _ in 0..5 {
        assert_eq!(exporter.call("POST", "/-/reload", None).await.status, 200);
    }
    let log = exporter.log();
    assert_eq!(count(&log, "configuration reloaded"), 1, "{log}");
    assert_eq!(
        exporter
            .call("GET", "/-/healthy", None)
            .await
            .header("x-frame-options"),
        Some("sameorigin")
    );
}

/// Before: the reload's 400 body repeated the loader's message, with the full path of a
/// certificate file that cannot be read (and a misplaced secret the parser quoted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reload_error_body_names_no_other_file_and_no_secret() {
    let pki = Pki::new();
    let exporter = Exporter::start(&pki, "", &["--web.enable-lifecycle"]).await;
    let hidden = pki.dir.path().join("host-layout-7f3a");
    std::fs::create_dir(&hidden).expect("dir");
    let cert = hidden.join("server.pem");
    write(
        pki.dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: tls/server.key\n",
            cert.display()
        ),
    );
    let failed = exporter.call("POST", "/-/reload", None).await;
    assert_eq!(failed.status, 400);
    assert!(
        failed.body.contains("tls_server_config.cert_file")
            && failed.body.contains("cannot read the file"),
        "{}",
        failed.body
    );
    assert!(!failed.body.contains("host-layout-7f3a"), "{}", failed.body);
    assert!(
        failed.body.contains("web.yml"),
        "the web config is named: {}",
        failed.body
    );
    // The log has the path, for the operator.
    assert!(
        exporter.log().contains(&cert.display().to_string()),
        "{}",
        exporter.log()
    );

    let hash = bcrypt::hash("pw", 4).expect("hash");
    write(
        pki.dir.path(),
        "web.yml",
        &format!("basic_auth_users: '{hash}'\n"),
    );
    let failed = exporter.call("POST", "/-/reload", None).await;
    assert_eq!(failed.status, 400);
    assert!(failed.body.contains("invalid type"), "{}", failed.body);
    assert!(
        !failed.body.contains(&hash) && !exporter.log().contains(&hash),
        "{}",
        failed.body
    );
}
