//! Test support: a real server on 127.0.0.1:0 in this process, and helpers
//! around the crate's own client.
#![allow(dead_code)]

use std::time::Duration;

use clap::Parser;
use rendezvous::client::{Client, ClientError};
use rendezvous::config::Config;
use rendezvous::server::{self, RunningServer};
use serde_json::Value;

/// A running server; stop it with [`TestServer::stop`] (tests that panic
/// leave it to the runtime, which ends with the test).
pub struct TestServer {
    pub server: RunningServer,
}

/// Builder: `TestServer::with_args(&["--reconnect-grace-ms", "200"])`.
impl TestServer {
    pub async fn start() -> TestServer {
        Self::with_args(&[]).await
    }

    pub async fn with_args(args: &[&str]) -> TestServer {
        let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
        let mut argv = vec!["rendezvous", "--listen", "127.0.0.1:0", "--web-dir", web];
        // Every test client comes from 127.0.0.1: lift the per-address cap
        // unless the test is about it.
        if !args.contains(&"--max-connections-per-ip") {
            argv.extend_from_slice(&["--max-connections-per-ip", "100000"]);
        }
        argv.extend_from_slice(args);
        let cfg = Config::try_parse_from(argv).expect("test config");
        let server = server::start(cfg).await.expect("server starts");
        TestServer { server }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.server.addr)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.server.addr, path)
    }

    pub async fn client(&self, name: &str) -> Client {
        Client::connect(&format!("{}?name={}", self.ws_url(), name))
            .await
            .expect("client connects")
    }

    pub async fn stats(&self) -> Value {
        http_get(&self.http("/api/stats")).await.1
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
    }
}

/// A minimal HTTP/1.1 GET over a raw socket: (status, JSON body or Null).
pub async fn http_get(url: &str) -> (u16, Value) {
    let (status, body) = http_raw("GET", url, &[]).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Any request; returns (status, body text).
pub async fn http_raw(method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    // Chunked bodies: take the JSON between the chunk sizes.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Asserts the call failed with the given server error code.
pub fn assert_code<T: std::fmt::Debug>(r: Result<T, ClientError>, code: &str) {
    match r {
        Err(ClientError::Server { code: c, message }) => {
            assert_eq!(c.as_str(), code, "message was: {message}");
            assert!(
                !message.is_empty(),
                "error messages are for people: never empty"
            );
        }
        other => panic!("expected error {code}, got {other:?}"),
    }
}

/// Asserts no event arrives within `wait`.
pub async fn expect_no_event(c: &Client, wait: Duration) {
    match c.next_event_within(wait).await {
        Err(ClientError::Timeout(_)) => {}
        other => panic!("expected no event, got {other:?}"),
    }
}

/// Waits until `cond` holds on the server's stats, or panics after 5 s.
pub async fn wait_stats(ts: &TestServer, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let s = ts.stats().await;
        if cond(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("stats never reached the expected state: {s}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A child process (a server binary) that is killed, by its pid, when the
/// guard drops: also when a test panics halfway.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Sends SIGTERM (a graceful shutdown) to the child.
    pub fn terminate(&self) {
        let _ = std::process::Command::new("kill")
            .arg(self.0.id().to_string())
            .status();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // std skips the signal when the child was already waited for.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the server binary on 127.0.0.1:0 with `args` (and `env`), stderr
/// piped when `keep_logs`; returns the guard and the bound address read from
/// its `listening on http://ADDR` line.
pub fn spawn_binary(args: &[&str], env: &[(&str, &str)], keep_logs: bool) -> (ChildGuard, String) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rendezvous"));
    cmd.args(["--listen", "127.0.0.1:0", "--web-dir", web])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(if keep_logs {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = ChildGuard(cmd.spawn().expect("server binary starts"));
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .expect("address line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}
