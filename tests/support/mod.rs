//! Test support: a real server on 127.0.0.1:0 in this process, and helpers
//! around the crate's own client.
#![allow(dead_code)]

pub mod hooks;

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
    /// With `RENDEZVOUS_TEST_CLUSTER=1` every test server runs in cluster
    /// mode on a Redis of its own (the same tests, the other store).
    pub redis: Option<RedisServer>,
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
        let redis = (std::env::var("RENDEZVOUS_TEST_CLUSTER").as_deref() == Ok("1"))
            .then(RedisServer::start);
        let url = redis.as_ref().map(RedisServer::url);
        if let Some(url) = &url {
            argv.extend_from_slice(&["--redis-url", url]);
        }
        let cfg = Config::try_parse_from(argv).expect("test config");
        let server = server::start(cfg).await.expect("server starts");
        TestServer { server, redis }
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

    /// A client without automatic reconnection: the test sees every drop
    /// and resumes by hand.
    pub async fn manual_client(&self, name: &str) -> Client {
        Client::connect_with(&format!("{}?name={name}", self.ws_url()), no_reconnect())
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

/// How long any one HTTP exchange of a test may take: a server that stops
/// answering fails the test instead of hanging it.
pub const HTTP_LIMIT: Duration = Duration::from_secs(15);

/// Any request; returns (status, body text). Panics past [`HTTP_LIMIT`].
pub async fn http_raw(method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = http_full(method, url, headers).await;
    (status, body)
}

/// A GET; returns (status, response head, body text).
pub async fn http_with_head(url: &str) -> (u16, String, String) {
    http_full("GET", url, &[]).await
}

/// Any request; returns (status, response head, body text). Panics past
/// [`HTTP_LIMIT`].
pub async fn http_full(method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    tokio::time::timeout(HTTP_LIMIT, http_full_unlimited(method, url, headers))
        .await
        .unwrap_or_else(|_| panic!("{method} {url}: no full answer within {HTTP_LIMIT:?}"))
}

async fn http_full_unlimited(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
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
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Chunked bodies: take the JSON between the chunk sizes.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

/// The body of a chunked HTTP/1.1 answer, chunks joined.
pub fn dechunk(mut body: &str) -> String {
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

/// Skips the events of `c` until one of type `kind`, which must come within
/// `wait`.
pub async fn event_within(c: &Client, kind: &str, wait: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = c
            .next_event_within(left)
            .await
            .unwrap_or_else(|e| panic!("{}: no {kind} within {wait:?}: {e:?}", c.welcome.name));
        if ev["type"] == kind {
            return ev;
        }
    }
}

/// The player ids of a room object, in seat order.
pub fn player_ids(room: &Value) -> Vec<String> {
    room["players"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["player_id"].as_str().unwrap().to_string())
        .collect()
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
    /// Waits for the child to exit, at most `limit`: past it the test
    /// panics (and the guard kills the child) instead of hanging.
    pub fn wait_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            if std::time::Instant::now() > deadline {
                panic!("process {} still running after {limit:?}", self.0.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

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

/// Runs `cmd` to its end and returns its output, like `Command::output`,
/// but kills it (by pid, through the guard) and panics past `limit`.
pub fn output_within(cmd: &mut std::process::Command, limit: Duration) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard(cmd.spawn().expect("command starts"));
    // Drained on threads so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .0
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .0
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = child.wait_within(limit);
    std::process::Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
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

impl ChildGuard {
    /// Sends SIGKILL to the child, by its pid, and reaps it: the process dies
    /// on the spot, without any chance to clean up (a crashed node).
    pub fn kill9(&mut self) {
        let pid = self.0.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -KILL {pid} failed");
        let _ = self.0.wait();
    }
}

/// Where `redis-server` is looked for (Debian's `redis-server` package).
const REDIS_SERVER: &str = "redis-server";

/// A `redis-server` on a free loopback port, with no persistence, stopped
/// (SIGKILL, by pid) when the guard drops. [`RedisServer::kill`] and
/// [`RedisServer::restart`] simulate an outage: the restarted server listens
/// on the same port and starts empty.
pub struct RedisServer {
    port: u16,
    child: Option<std::process::Child>,
    /// More `redis-server` arguments (users, passwords).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a port the OS picks and waits until it answers
    /// PING. Panics with a hint when `redis-server` is not installed.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// [`RedisServer::start`] with more `redis-server` arguments, such as
    /// `--requirepass` (a server that wants a password counts as up when
    /// it answers PING with `NOAUTH`).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        // The port is free when picked, but something else may take it
        // before redis binds it: try a few ports.
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                port,
                child: None,
                extra: extra.iter().map(|a| a.to_string()).collect(),
            };
            match server.launch() {
                Ok(()) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server never came up: {last_err}");
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL, by pid, and reap: every connection to it drops at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    /// Sends a signal (`STOP`, `CONT`...) to the server process: a frozen
    /// Redis keeps its data but answers nothing.
    pub fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &child.id().to_string()])
                .status();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        // The old socket may linger for a moment after the kill.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.launch() {
                Ok(()) => return,
                Err(e) if std::time::Instant::now() > deadline => {
                    panic!("redis-server did not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Starts the process on `self.port` and waits for PONG (at most 10 s).
    fn launch(&mut self) -> Result<(), String> {
        use std::process::{Command, Stdio};
        let port = self.port.to_string();
        let spawned = Command::new(REDIS_SERVER)
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`{REDIS_SERVER}` is not installed: the cluster tests need a real Redis. \
                 scripts/test installs it (apt-get install redis-server)"
            ),
            Err(e) => panic!("cannot start {REDIS_SERVER}: {e}"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if redis_ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("redis-server on port {port} never answered PING"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// True when a Redis server on 127.0.0.1:`port` answers PING with PONG
/// (or, wanting a password, with `NOAUTH`).
pub fn redis_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 7 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"+PONG") || got.starts_with(b"-NOAUTH")
}

/// Starts one cluster node (the server binary) sharing `redis_url`, named
/// `node_id`, with `extra_args`; returns its guard and address. The
/// per-address connection cap is lifted unless `extra_args` sets it (every
/// test client comes from 127.0.0.1). With `RENDEZVOUS_TEST_LOGS=1` in the
/// environment the node's log goes to the test's stderr, prefixed by its id.
pub fn spawn_node(redis_url: &str, node_id: &str, extra_args: &[&str]) -> (ChildGuard, String) {
    let mut args = vec!["--redis-url", redis_url, "--node-id", node_id];
    if !extra_args.contains(&"--max-connections-per-ip") {
        args.extend_from_slice(&["--max-connections-per-ip", "100000"]);
    }
    args.extend_from_slice(extra_args);
    let logs = std::env::var_os("RENDEZVOUS_TEST_LOGS").is_some_and(|v| v != "0");
    let (mut child, addr) = spawn_binary(&args, &[], logs);
    if let Some(stderr) = child.0.stderr.take() {
        let prefix = node_id.to_string();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[{prefix}] {line}");
            }
        });
    }
    (child, addr)
}

/// A client of the server at `addr` (`host:port`), named `name`, with the
/// default options (reconnection on).
pub async fn client_at(addr: &str, name: &str) -> Client {
    Client::connect(&format!("ws://{addr}/ws?name={name}"))
        .await
        .unwrap_or_else(|e| panic!("client {name} connects to {addr}: {e}"))
}

/// A client of the server at `addr` with a raw query string (`name=x&resume=...`)
/// and explicit options.
pub async fn client_at_with(
    addr: &str,
    query: &str,
    opts: rendezvous::client::ClientOptions,
) -> Result<Client, ClientError> {
    Client::connect_with(&format!("ws://{addr}/ws?{query}"), opts).await
}

/// Tries a WebSocket handshake with extra headers: Ok(()) (the socket is
/// dropped) or the refusal's HTTP status and JSON body.
pub async fn handshake(url: &str, headers: &[(&str, &str)]) -> Result<(), (u16, Value)> {
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => Ok(()),
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| serde_json::from_slice(b).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("unexpected handshake error {e}"),
    }
}

/// Client options without automatic reconnection: the test sees every drop.
pub fn no_reconnect() -> rendezvous::client::ClientOptions {
    rendezvous::client::ClientOptions {
        reconnect: false,
        ..Default::default()
    }
}

/// The sum of the samples of metric `name` in a Prometheus text (every
/// label set), 0 when absent.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
