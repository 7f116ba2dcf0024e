//! A real webhook receiver for the tests of issue 16: a hyper 1 server on
//! 127.0.0.1 that records every POST (headers, raw body, when, what it
//! answered) and checks every `Rendezvous-Signature` with the shared secret.
//! The server under test talks to it as to any receiver on the network, so
//! faults are real ones: a scripted 500, an answer that never comes (or comes
//! too late), and a receiver that is down (connections refused) and then
//! comes back on the same port. The same type plays the allocator: its
//! answer body is settable.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// One POST as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    /// When the request was fully read.
    pub at: Instant,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    /// The body parsed (Null when it is not JSON: the tests then fail on it).
    pub json: Value,
    /// What the receiver answered; 0 when it never answered (a hang the
    /// client gave up on) or answered after the client had gone.
    pub status: u16,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    /// The event id of the body.
    pub fn id(&self) -> &str {
        self.json["id"].as_str().unwrap_or("")
    }
    pub fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
    pub fn delivered(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The room the event is about (`data.room.room_id` or `data.room_id`).
    pub fn room_id(&self) -> &str {
        let d = &self.json["data"];
        d["room"]["room_id"]
            .as_str()
            .or_else(|| d["room_id"].as_str())
            .unwrap_or("")
    }
}

/// What the receiver does with the next request.
#[derive(Debug, Clone)]
enum Fault {
    Status(u16),
    /// Never answers: the client has to give up.
    Hang,
    /// Answers the normal answer after this long.
    Late(Duration),
}

struct Shared {
    secret: String,
    hits: Mutex<Vec<Hit>>,
    bad: Mutex<Vec<String>>,
    faults: Mutex<VecDeque<Fault>>,
    answer: Mutex<(u16, String)>,
    changed: Notify,
}

/// The receiver; its URL stays the same across [`Receiver::down`] and
/// [`Receiver::up`]. Dropping it stops it.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    serving: Mutex<Option<JoinHandle<()>>>,
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1:0 that answers 200 `{}` and checks
    /// signatures with `secret`.
    pub async fn start(secret: &str) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver binds 127.0.0.1:0");
        let addr = listener.local_addr().expect("receiver address");
        let shared = Arc::new(Shared {
            secret: secret.to_string(),
            hits: Mutex::new(Vec::new()),
            bad: Mutex::new(Vec::new()),
            faults: Mutex::new(VecDeque::new()),
            answer: Mutex::new((200, "{}".to_string())),
            changed: Notify::new(),
        });
        let rx = Receiver {
            addr,
            shared,
            serving: Mutex::new(None),
        };
        rx.serve(listener);
        rx
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The normal answer (status, JSON body text), e.g. the allocator's.
    pub fn set_answer(&self, status: u16, body: &str) {
        *self.shared.answer.lock() = (status, body.to_string());
    }

    /// The next `n` requests are answered with `status`.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared
            .faults
            .lock()
            .extend(std::iter::repeat_n(Fault::Status(status), n));
    }

    /// The next `n` requests are never answered.
    pub fn hang_next(&self, n: usize) {
        self.shared
            .faults
            .lock()
            .extend(std::iter::repeat_n(Fault::Hang, n));
    }

    /// The next `n` requests get the normal answer, but only after `delay`.
    pub fn late_next(&self, n: usize, delay: Duration) {
        self.shared
            .faults
            .lock()
            .extend(std::iter::repeat_n(Fault::Late(delay), n));
    }

    /// Stops listening and cuts every open connection: from now on a
    /// connection to the URL is refused.
    pub async fn down(&self) {
        let task = self.serving.lock().take();
        if let Some(task) = task {
            task.abort();
            // The listener and the connection tasks go with the task.
            let _ = task.await;
        }
        // Connecting must now fail; a lingering accept queue would not.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(self.addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "receiver {} still accepts",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() > deadline => {
                    panic!("receiver cannot bind {} again: {e}", self.addr)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            // Owned here: aborting this task drops every connection at once.
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = shared.clone();
                        conns.spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                handle(shared.clone(), req)
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        *self.serving.lock() = Some(task);
    }

    /// Every request so far. Panics when any carried a bad signature (or
    /// was not a well-formed signed JSON POST).
    pub fn hits(&self) -> Vec<Hit> {
        self.assert_signed();
        self.shared.hits.lock().clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Hit> {
        self.hits().into_iter().filter(Hit::delivered).collect()
    }

    pub fn assert_signed(&self) {
        let bad = self.shared.bad.lock();
        assert!(
            bad.is_empty(),
            "receiver {} got badly signed or malformed requests: {bad:#?}",
            self.addr
        );
    }

    /// The problems seen so far (bad signatures...), forgotten: for the
    /// receiver's own test, which sends bad requests on purpose.
    pub fn take_problems(&self) -> Vec<String> {
        std::mem::take(&mut *self.shared.bad.lock())
    }

    /// Waits until `cond` holds on every request so far (checked on each
    /// new one), or panics after `limit` showing what arrived.
    pub async fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&[Hit]) -> bool,
    ) -> Vec<Hit> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.shared.changed.notified();
            let hits = self.hits();
            if cond(&hits) {
                return hits;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let hits = self.hits();
                if cond(&hits) {
                    return hits;
                }
                panic!(
                    "receiver {}: {what} not within {limit:?}; got:\n{}",
                    self.addr,
                    summary(&hits)
                );
            }
        }
    }

    /// Waits until `n` distinct event ids were delivered (answered 2xx);
    /// returns the delivered requests.
    pub async fn wait_delivered(&self, n: usize, limit: Duration) -> Vec<Hit> {
        self.wait_until(limit, &format!("{n} distinct delivered events"), |h| {
            distinct_delivered(h) >= n
        })
        .await
        .into_iter()
        .filter(Hit::delivered)
        .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(task) = self.serving.lock().take() {
            task.abort();
        }
    }
}

fn distinct_delivered(hits: &[Hit]) -> usize {
    hits.iter()
        .filter(|h| h.delivered())
        .map(Hit::id)
        .collect::<HashSet<_>>()
        .len()
}

/// One line per request: answer, type, id, room. For failure messages.
pub fn summary(hits: &[Hit]) -> String {
    hits.iter()
        .map(|h| {
            format!(
                "  {} {:<15} {} room {}",
                h.status,
                h.kind(),
                h.id(),
                h.room_id()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let problem = check(&shared.secret, &method, &headers, &body, &json);
    if let Some(p) = &problem {
        shared.bad.lock().push(p.clone());
    }
    let fault = shared.faults.lock().pop_front();
    let (ok_status, ok_body) = shared.answer.lock().clone();
    let (status, body_out, wait) = match (&problem, fault) {
        // A bad request is refused, so the server's retries show it too.
        (Some(p), _) => (401, p.clone(), None),
        (None, Some(Fault::Status(s))) => (s, "{\"error\":\"scripted\"}".to_string(), None),
        (None, Some(Fault::Hang)) => (0, String::new(), Some(None)),
        (None, Some(Fault::Late(d))) => (ok_status, ok_body, Some(Some(d))),
        (None, None) => (ok_status, ok_body, None),
    };
    let index = {
        let mut hits = shared.hits.lock();
        hits.push(Hit {
            at: Instant::now(),
            headers,
            body,
            json,
            // A late answer counts once it is written (below).
            status: if wait.is_some() { 0 } else { status },
        });
        hits.len() - 1
    };
    shared.changed.notify_waiters();
    match wait {
        Some(None) => std::future::pending::<()>().await,
        Some(Some(d)) => {
            tokio::time::sleep(d).await;
            // Whether the client still listens is unknown here: record the
            // answer as given; the tests treat a late answer as possibly lost.
            shared.hits.lock()[index].status = status;
            shared.changed.notify_waiters();
        }
        None => {}
    }
    let resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body_out)))
        .expect("response");
    Ok(resp)
}

/// Checks one request against the contract's envelope; the problem, if any.
fn check(
    secret: &str,
    method: &hyper::Method,
    headers: &HashMap<String, String>,
    body: &[u8],
    json: &Value,
) -> Option<String> {
    if method != hyper::Method::POST {
        return Some(format!("method {method}, not POST"));
    }
    let get = |k: &str| headers.get(k).map(String::as_str).unwrap_or("");
    if !get("content-type").starts_with("application/json") {
        return Some(format!("content-type {:?}", get("content-type")));
    }
    let sig = get("rendezvous-signature");
    let Some((t, v1)) = parse_signature(sig) else {
        return Some(format!("unparsable Rendezvous-Signature {sig:?}"));
    };
    if v1 != sign(secret, &t, body) {
        return Some(format!(
            "signature {sig:?} does not match the body {:?}",
            String::from_utf8_lossy(body)
        ));
    }
    let now = chrono::Utc::now().timestamp();
    match t.parse::<i64>() {
        Ok(t) if (now - t).abs() <= 300 => {}
        _ => {
            return Some(format!(
                "signature time t={t} is not a unix time near {now}"
            ))
        }
    }
    let id = json["id"].as_str().unwrap_or("");
    if id.is_empty() || get("rendezvous-delivery") != id {
        return Some(format!(
            "Rendezvous-Delivery {:?} is not the body's id {id:?}",
            get("rendezvous-delivery")
        ));
    }
    if get("rendezvous-event") != json["type"].as_str().unwrap_or("-") {
        return Some(format!(
            "Rendezvous-Event {:?} is not the body's type {}",
            get("rendezvous-event"),
            json["type"]
        ));
    }
    let created = json["created_at"].as_str().unwrap_or("");
    if chrono::DateTime::parse_from_rfc3339(created).is_err() || !created.ends_with('Z') {
        return Some(format!("created_at {created:?} is not RFC 3339 UTC"));
    }
    if !json["data"].is_object() {
        return Some(format!("data is not an object: {json}"));
    }
    None
}

/// POSTs `body` (JSON) with `headers` on a fresh connection; the answer's
/// status, or None when the connection is refused or cut before an answer.
pub async fn post_json(url: &str, body: &str, headers: &[(&str, &str)]) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `t=<secs>,v1=<hex>` into its two parts.
pub fn parse_signature(sig: &str) -> Option<(String, String)> {
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.to_string()),
            Some(("v1", v)) => v1 = Some(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    Some((t?, v1?))
}

/// Hex HMAC-SHA256(secret, "<t>.<body>"), as the contract defines it.
pub fn sign(secret: &str, t: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts no event id was delivered twice (where no answer can be lost,
/// every event is delivered exactly once).
pub fn assert_once_each(hits: &[Hit]) {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for h in hits.iter().filter(|h| h.delivered()) {
        *count.entry(h.id()).or_default() += 1;
    }
    let mut twice: Vec<_> = count.into_iter().filter(|(_, n)| *n > 1).collect();
    twice.sort();
    assert!(
        twice.is_empty(),
        "ids delivered more than once: {twice:?}\n{}",
        summary(hits)
    );
}

/// The delivered events, in delivery order, each asserted delivered once.
pub fn delivered_once_each(hits: &[Hit]) -> Vec<Hit> {
    assert_once_each(hits);
    first_deliveries(hits)
}

/// Each event once (its first delivery), in delivery order: for tests
/// where a delivery may repeat (an answer lost to a timeout).
pub fn first_deliveries(hits: &[Hit]) -> Vec<Hit> {
    let mut seen = HashSet::new();
    hits.iter()
        .filter(|h| h.delivered() && seen.insert(h.id().to_string()))
        .cloned()
        .collect()
}
