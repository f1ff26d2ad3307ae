//! The `workspacesweb-sim` binary from the outside: the lines it prints once it listens, and
//! AWS SDK clients listing its portals and its organization's accounts.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_workspacesweb::Client;
use aws_sdk_workspacesweb::config::{Credentials, Region};

/// Kills the simulator when the test ends, passed or failed.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary on a free port; returns it with the lines it printed (address, then one per
/// portal). A simulator that prints nothing fails the test instead of hanging it.
fn start(args: &[&str], lines: usize) -> (Child, Vec<String>) {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_workspacesweb-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("simulator starts"),
    );
    let stdout = child.0.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = BufReader::new(stdout).lines();
        let head: Vec<String> = out.by_ref().take(lines).map_while(Result::ok).collect();
        let _ = tx.send(head);
        // Keep draining so the simulator never blocks on a full pipe.
        for _ in out {}
    });
    let head = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("simulator printed its address and portals");
    (child, head)
}

#[tokio::test]
async fn prints_its_address_and_portals_and_serves_them() {
    let (_child, head) = start(&["--seed", "9", "--portals", "4"], 5);
    assert_eq!(head.len(), 5, "{head:?}");
    let url = head[0]
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("first line: {:?}", head[0]))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut ids = Vec::new();
    for line in &head[1..] {
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("portal"), "{line}");
        let id = words.next().expect("portal id");
        let arn = words.next().expect("portal arn");
        assert!(arn.ends_with(&format!(":portal/{id}")), "{line}");
        ids.push(id.to_string());
    }
    // The same portals as the library's configuration of that seed.
    let mut expected: Vec<String> = workspacesweb_sim::SimConfig::generated(9, 4)
        .portals
        .into_iter()
        .map(|p| p.id)
        .collect();
    expected.sort();
    ids.sort();
    assert_eq!(ids, expected);

    let conf = aws_sdk_workspacesweb::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .endpoint_url(url)
        .build();
    let listed = Client::from_conf(conf)
        .list_portals()
        .send()
        .await
        .expect("ListPortals");
    let mut listed: Vec<String> = listed
        .portals()
        .iter()
        .map(|p| p.portal_arn())
        .map(|arn| arn.rsplit('/').next().unwrap_or_default().to_string())
        .collect();
    listed.sort();
    assert_eq!(listed, expected);
}

#[test]
fn a_busy_port_is_exit_code_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_workspacesweb-sim"))
        .args(["--listen", &addr])
        .stdin(Stdio::null())
        .output()
        .expect("simulator runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[tokio::test]
async fn serves_an_organization_with_accounts() {
    let args = [
        "--seed",
        "4",
        "--accounts",
        "3",
        "--regions",
        "us-east-1,eu-west-1",
    ];
    // Address, 3 accounts × 2 regions portals, the organization, 3 accounts.
    let (_child, head) = start(&args, 11);
    assert_eq!(head.len(), 11, "{head:?}");
    let url = head[0]
        .strip_prefix("listening ")
        .expect("address")
        .to_string();
    assert_eq!(head.iter().filter(|l| l.starts_with("portal ")).count(), 6);
    assert!(head[7].starts_with("organization o-"), "{head:?}");
    assert!(
        head[7].ends_with("member_role=workspacesweb-exporter"),
        "{head:?}"
    );
    let printed: Vec<&str> = head[8..]
        .iter()
        .map(|l| l.split(' ').nth(1).expect("account id"))
        .collect();
    let conf = aws_sdk_organizations::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_organizations::config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKID", "SECRET", None, None, "test"))
        .endpoint_url(url)
        .build();
    let listed = aws_sdk_organizations::Client::from_conf(conf)
        .list_accounts()
        .send()
        .await
        .expect("ListAccounts");
    let mut ids: Vec<&str> = listed.accounts().iter().filter_map(|a| a.id()).collect();
    ids.sort();
    assert_eq!(ids, printed);
}
