//! No panic is reachable from API data (SPEC section 11, page bounds): the real poller, through
//! the real SDK, is fed `ListSessions` pages with random `nextToken`s (0 to 200,000 bytes:
//! letters, any Unicode, or any bytes at all, valid JSON or not) and random item counts (up to
//! three times `maxResults`), and every poll ends in a clean success or a clean `error="other"`,
//! with no panic. A token longer than 2048 characters is never sent back (the SDK panics on one
//! of about 64 KiB); a valid token is sent back exactly as received.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use workspacesweb_exporter::aws::{Clients, LIST_SESSIONS};
use workspacesweb_exporter::poll::Scheduler;
use workspacesweb_exporter::snapshot::Store;

use crate::common::{errors, plan, wait_portal};

const PORTAL: &str = "b0000000-0000-4000-8000-000000000001";
/// `maxResults` of every listing.
const PAGE: u32 = 5;

/// How a case's token is written into the page.
#[derive(Debug, Clone)]
enum Token {
    /// A JSON string of these characters.
    Text(String),
    /// These bytes between quotes, as they are: maybe valid JSON, maybe not even UTF-8.
    Raw(Vec<u8>),
}

/// What the fake API answers, and the tokens it was sent.
struct Api {
    token: Token,
    items: usize,
    received: Mutex<Vec<String>>,
}

/// The body of the first Active page: `items` sessions and the case's token.
fn first_page(api: &Api) -> Vec<u8> {
    let start = (workspacesweb_sim::now_ms() / 1000 - 600) as f64;
    let sessions: Vec<String> = (0..api.items)
        .map(|i| {
            format!(
                r#"{{"sessionId":"s{i:035}","status":"Active","username":"u","startTime":{start}}}"#
            )
        })
        .collect();
    let mut body = format!(r#"{{"sessions":[{}]"#, sessions.join(",")).into_bytes();
    match &api.token {
        Token::Text(t) if t.is_empty() => {}
        Token::Text(t) => {
            body.extend_from_slice(b",\"nextToken\":");
            body.extend_from_slice(serde_json::to_string(t).expect("json").as_bytes());
        }
        Token::Raw(bytes) => {
            body.extend_from_slice(b",\"nextToken\":\"");
            body.extend_from_slice(bytes);
            body.push(b'"');
        }
    }
    body.push(b'}');
    body
}

/// Answers one request: the first Active page, an empty last page after a token, an empty
/// Terminated listing, 404 for anything else.
async fn answer(api: &Api, mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 1 << 20 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let body = if path != format!("/portals/{PORTAL}/sessions") {
        None
    } else if let Some(token) = param("nextToken") {
        api.received.lock().expect("lock").push(token);
        Some(br#"{"sessions":[]}"#.to_vec())
    } else if param("status").as_deref() == Some("Active") {
        Some(first_page(api))
    } else {
        Some(br#"{"sessions":[]}"#.to_vec())
    };
    let (status, body) = match body {
        Some(b) => ("200 OK", b),
        None => ("404 Not Found", br#"{"message":"no"}"#.to_vec()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// One case: a poll of the fake API; the portal's snapshot after its first poll, and the tokens
/// the API received.
async fn poll_once(token: Token, items: usize) -> (bool, String, u64, u64, Vec<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let api = Arc::new(Api {
        token,
        items,
        received: Mutex::new(Vec::new()),
    });
    let server = {
        let api = api.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let api = api.clone();
                tokio::spawn(async move {
                    let _ = answer(&api, stream).await;
                });
            }
        })
    };
    let clients = Clients::with_static_credentials("us-east-1", &url).await;
    let store = Arc::new(Store::new());
    let sched = Scheduler::start(
        vec![plan(PORTAL, Duration::from_secs(1), PAGE)],
        &clients,
        store.clone(),
        1,
    )
    .await;
    let p = wait_portal(&store, PORTAL, |p| p.polled).await;
    sched.shutdown().await;
    server.abort();
    let received = api.received.lock().expect("lock").clone();
    (
        p.up,
        p.last_error_code.clone().unwrap_or_default(),
        errors(&p, LIST_SESSIONS, "other"),
        p.panics,
        received,
    )
}

/// Token lengths: short, around the bound, around the SDK's panic, anything up to 200,000.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        0..64usize,
        2040..2060usize,
        60_000..70_000usize,
        0..200_000usize
    ]
}

fn token() -> impl Strategy<Value = Token> {
    prop_oneof![
        length().prop_map(|n| Token::Text("t".repeat(n))),
        proptest::collection::vec(any::<char>(), 0..3000)
            .prop_map(|c| Token::Text(c.into_iter().collect())),
        length().prop_flat_map(|n| proptest::collection::vec(any::<u8>(), n).prop_map(Token::Raw)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_tokens_and_page_sizes_end_cleanly(token in token(), items in 0..=(3 * PAGE as usize)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let (up, error, other, panics, received) = runtime.block_on(poll_once(token.clone(), items));
        prop_assert_eq!(panics, 0, "a panic");
        prop_assert!(
            received.iter().all(|t| t.chars().count() <= 2048),
            "a token over 2048 characters was sent back"
        );
        if !up {
            prop_assert_eq!(error.as_str(), "ListSessions other");
            prop_assert!(other >= 1);
        }
        if let Token::Text(t) = &token {
            let clean = items <= PAGE as usize && t.chars().count() <= 2048;
            prop_assert_eq!(up, clean, "items={} token of {} characters", items, t.chars().count());
            if clean && !t.is_empty() {
                prop_assert_eq!(received, vec![t.clone()], "the token goes back as received");
            }
        }
    }
}
