//! A small HTTP/1.1 client for the tests: one request per connection,
//! bodies by `content-length` or chunked, and a reader of Server-Sent
//! Events. Plain std, so the tests check the node against the protocol,
//! not against another library's reading of it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status, lower-cased headers, body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("authorization: Bearer {token}\r\n")
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    BufReader::new(s)
}

fn head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            return (status, headers);
        }
        let (k, v) = l.split_once(':').expect("a header");
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
}

/// One chunk of a chunked body; `None` at its end.
fn chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n = usize::from_str_radix(line.trim(), 16).ok()?;
    let mut buf = vec![0; n + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(n);
    (n > 0).then_some(buf)
}

/// A whole request and response.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> Reply {
    let mut r = send(addr, method, path, token, body);
    let (status, headers) = head(&mut r);
    let mut body = Vec::new();
    if let Some(n) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap())
    {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    } else if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked")
    {
        while let Some(c) = chunk(&mut r) {
            body.extend(c);
        }
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// An open SSE stream.
pub(crate) struct Events {
    r: BufReader<TcpStream>,
    pending: String,
}

/// Open `GET path` as an event stream; the status if it is not 200.
pub(crate) fn events(addr: SocketAddr, path: &str, token: &str) -> Result<Events, Reply> {
    let mut r = send(addr, "GET", path, token, b"");
    let (status, headers) = head(&mut r);
    if status != 200 {
        let mut body = Vec::new();
        if let Some(n) = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse::<usize>().unwrap())
        {
            body.resize(n, 0);
            r.read_exact(&mut body).unwrap();
        }
        return Err(Reply {
            status,
            headers,
            body,
        });
    }
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")));
    Ok(Events {
        r,
        pending: String::new(),
    })
}

impl Events {
    /// The next event: its name and its data as JSON.
    pub(crate) fn next(&mut self) -> Option<(String, serde_json::Value)> {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let ev: String = self.pending.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for l in ev.lines() {
                    if let Some(n) = l.strip_prefix("event: ") {
                        name = n.to_owned();
                    } else if let Some(d) = l.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                return Some((name, serde_json::from_str(&data).expect("JSON data")));
            }
            let c = chunk(&mut self.r)?;
            self.pending
                .push_str(std::str::from_utf8(&c).expect("UTF-8 events"));
        }
    }
}
