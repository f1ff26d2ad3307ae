//! Reads one HTTP/1.1 response from a raw stream: the status line, the headers and a
//! `Content-Length` body. Shared by the tests that write requests by hand and by the load
//! examples (`#[path]`-included), which need keep-alive connections and exact bytes.
#![allow(dead_code)]

use std::io::{Error, ErrorKind};

use tokio::io::{AsyncRead, AsyncReadExt};

/// One response as read from the wire.
#[derive(Debug)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names and values, trimmed, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body (still content-encoded), exactly `Content-Length` bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn malformed(what: String) -> Error {
    Error::new(ErrorKind::InvalidData, what)
}

/// Reads one response; a `HEAD` response has no body. Fails on a closed connection
/// (`UnexpectedEof`), a malformed head (`InvalidData`) or a read error.
pub async fn read_response(
    stream: &mut (impl AsyncRead + Unpin),
    head_request: bool,
) -> std::io::Result<RawResponse> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            let partial = String::from_utf8_lossy(&buf).into_owned();
            let what = format!("connection closed before the response head: {partial:?}");
            return Err(Error::new(ErrorKind::UnexpectedEof, what));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| malformed("response head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed(format!("bad status line {status_line:?}")))?;
    let headers = lines
        .map(|line| match line.split_once(':') {
            Some((name, value)) => Ok((name.trim().to_string(), value.trim().to_string())),
            None => Err(malformed(format!("bad header line {line:?}"))),
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    let length: usize = match response.header("content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| malformed(format!("bad Content-Length {v:?}")))?,
        None => 0,
    };
    let mut body = buf.split_off(head_end + 4);
    if !head_request {
        while body.len() < length {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                let what = format!("connection closed mid-body at {} of {length}", body.len());
                return Err(Error::new(ErrorKind::UnexpectedEof, what));
            }
            body.extend_from_slice(&chunk[..n]);
        }
        if body.len() > length {
            return Err(malformed(format!(
                "body longer than Content-Length {length}"
            )));
        }
    }
    response.body = body;
    Ok(response)
}
