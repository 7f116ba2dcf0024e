//! The binary on its own, as a new user runs it after `cargo install` or a
//! copy to a server: the pages compiled into it (from any folder, with ETag
//! and caching headers, `--web-dir` overriding them from disk), HTTPS and
//! wss:// with `--tls-cert`/`--tls-key` (a certificate made here with
//! rcgen), and exit code 2 for TLS files that cannot be used.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rendezvous::client::{Client, ClientOptions};
use serde_json::{json, Value};
use support::ChildGuard;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A fresh folder under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "rendezvous-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for `localhost` and 127.0.0.1 (cert PEM, key PEM).
fn self_signed() -> (String, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names).expect("rcgen");
    (cert.pem(), signing_key.serialize_pem())
}

/// Runs `bin` in `dir` with `args` on 127.0.0.1:0 and reads the address of
/// its `listening on <scheme>://ADDR` line.
fn run_in(bin: &Path, dir: &Path, args: &[&str], scheme: &str) -> (ChildGuard, String) {
    use std::io::BufRead;
    let mut child = ChildGuard(
        Command::new(bin)
            .current_dir(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RENDEZVOUS_WEB_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("server binary starts"),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    let prefix = format!("listening on {scheme}://");
    let addr = line
        .trim()
        .strip_prefix(prefix.as_str())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

/// Runs the binary to its exit; returns (exit code, stderr).
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One HTTP/1.1 request (`Connection: close`) over an open stream.
async fn request<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    // A TLS peer may end without close_notify once the answer is complete.
    let _ = s.read_to_end(&mut buf).await;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    }
}

async fn plain(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    request(s, method, path, headers).await
}

async fn https(addr: &str, ca_pem: &str, path: &str) -> Answer {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    request(tls, "GET", path, &[]).await
}

/// The three pages a new user opens, as the embedded copies must serve them.
fn assert_pages(index: &Answer, dashboard: &Answer, js: &Answer) {
    assert_eq!(index.status, 200, "{}", index.text());
    assert_eq!(index.header("content-type"), "text/html; charset=utf-8");
    assert!(
        index.text().contains("<script type=\"module\""),
        "{}",
        index.text()
    );
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.text().contains("dashboard.js"));
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), "text/javascript; charset=utf-8");
    let source = include_str!("../clients/js/rendezvous.js");
    assert_eq!(
        js.text(),
        source,
        "the served client is the npm package's file"
    );
}

#[tokio::test]
async fn the_binary_alone_serves_the_pages_from_any_folder() {
    let dir = TempDir::new("alone");
    let (_child, addr) = run_in(
        Path::new(env!("CARGO_BIN_EXE_rendezvous")),
        &dir.0,
        &[],
        "http",
    );
    let index = plain(&addr, "GET", "/", &[]).await;
    let dashboard = plain(&addr, "GET", "/dashboard", &[]).await;
    let js = plain(&addr, "GET", "/rendezvous.js", &[]).await;
    assert_pages(&index, &dashboard, &js);
    for path in ["/app.js", "/dashboard.js"] {
        let a = plain(&addr, "GET", path, &[]).await;
        assert_eq!(
            (a.status, a.header("content-type")),
            (200, "text/javascript; charset=utf-8"),
            "{path}"
        );
    }
    let css = plain(&addr, "GET", "/style.css", &[]).await;
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");

    // Caching: revalidate every time, and a matching ETag is a bodiless 304.
    let etag = js.header("etag").to_string();
    assert!(etag.starts_with('"') && etag.len() > 8, "{etag:?}");
    assert_eq!(js.header("cache-control"), "no-cache");
    let again = plain(&addr, "GET", "/rendezvous.js", &[("If-None-Match", &etag)]).await;
    assert_eq!((again.status, again.body.len()), (304, 0));
    assert_eq!(again.header("etag"), etag);
    let stale = plain(
        &addr,
        "GET",
        "/rendezvous.js",
        &[("If-None-Match", "\"x\"")],
    )
    .await;
    assert_eq!(stale.status, 200);
    assert_ne!(index.header("etag"), etag, "one ETag per file");
    let head = plain(&addr, "HEAD", "/rendezvous.js", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), js.body.len().to_string());
    assert!(head.body.is_empty());

    // Unknown routes and files: the one JSON error shape, code not_found.
    for path in ["/no/such/route", "/nope.js", "/../Cargo.toml", "/.hidden"] {
        let a = plain(&addr, "GET", path, &[]).await;
        let v: Value = serde_json::from_slice(&a.body).expect("json error");
        assert_eq!(
            (a.status, v["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
    let post = plain(&addr, "POST", "/index.html", &[("Content-Length", "0")]).await;
    assert_eq!(post.status, 404);
}

#[tokio::test]
async fn web_dir_overrides_the_embedded_pages() {
    let dir = TempDir::new("webdir");
    std::fs::write(dir.0.join("index.html"), "<html>edited</html>").unwrap();
    let web = dir.0.to_str().unwrap();
    let (_child, addr) = run_in(
        Path::new(env!("CARGO_BIN_EXE_rendezvous")),
        &dir.0,
        &["--web-dir", web],
        "http",
    );
    let index = plain(&addr, "GET", "/", &[]).await;
    assert_eq!(
        (index.status, index.text().as_str()),
        (200, "<html>edited</html>")
    );
    // What the folder lacks still comes from the binary.
    let js = plain(&addr, "GET", "/rendezvous.js", &[]).await;
    assert_eq!(js.text(), include_str!("../clients/js/rendezvous.js"));
    // Edits show at once, with a new ETag.
    std::fs::write(dir.0.join("index.html"), "<html>again</html>").unwrap();
    let edited = plain(
        &addr,
        "GET",
        "/",
        &[("If-None-Match", index.header("etag"))],
    )
    .await;
    assert_eq!(
        (edited.status, edited.text().as_str()),
        (200, "<html>again</html>")
    );

    let (code, err) = run_to_exit(&["--web-dir", "/no/such/folder"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--web-dir /no/such/folder"), "{err}");
}

#[tokio::test]
async fn a_copied_binary_serves_https_and_wss() {
    let dir = TempDir::new("tls");
    let bin = dir.0.join("rendezvous");
    std::fs::copy(env!("CARGO_BIN_EXE_rendezvous"), &bin).expect("copy the binary");
    let (cert, key) = self_signed();
    std::fs::write(dir.0.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.0.join("key.pem"), &key).unwrap();
    let (mut child, addr) = run_in(
        &bin,
        &dir.0,
        &["--tls-cert", "cert.pem", "--tls-key", "key.pem"],
        "https",
    );
    let port = addr.rsplit(':').next().unwrap().to_string();
    let host = format!("localhost:{port}");

    let index = https(&host, &cert, "/").await;
    let dashboard = https(&host, &cert, "/dashboard").await;
    let js = https(&host, &cert, "/rendezvous.js").await;
    assert_pages(&index, &dashboard, &js);
    let missing = https(&host, &cert, "/api/nothing").await;
    assert_eq!(missing.status, 404);

    // Two Rust clients over wss:// meet in one room and relay a signal.
    let opts = ClientOptions {
        tls_root_pem: Some(cert.clone().into_bytes()),
        ..ClientOptions::default()
    };
    let url = format!("wss://{host}/ws");
    let ann = Client::connect_with(&format!("{url}?name=ann"), opts.clone())
        .await
        .expect("wss connect");
    let bob = Client::connect_with(&format!("{url}?name=bob"), opts)
        .await
        .expect("wss connect");
    let a = ann.find_match(2, "tls", json!({})).await.unwrap();
    let b = bob.find_match(2, "tls", json!({})).await.unwrap();
    assert_eq!(a.0.room_id, b.0.room_id);
    bob.wait_for("game_start").await.unwrap();
    bob.request("chat", json!({"text": "over TLS"}))
        .await
        .unwrap();
    let chat = ann.wait_for("chat").await.unwrap();
    assert_eq!(chat["text"], "over TLS");

    // Without the certificate among its roots the client refuses the server.
    let err = Client::connect_with(&format!("{url}?name=eve"), support::no_reconnect())
        .await
        .err()
        .expect("untrusted certificate refused");
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    // Plain HTTP on the TLS port gets no page.
    let s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), async move {
        let mut s = s;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
        buf
    })
    .await
    .expect("the server hangs up");
    assert!(!String::from_utf8_lossy(&got).contains("<html"));

    // SIGTERM: a graceful shutdown over TLS as over plain TCP.
    child.terminate();
    let notice = ann.wait_for("server_shutdown").await.unwrap();
    assert!(notice["reconnect_after_ms"].is_u64(), "{notice}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    ann.close().await;
    bob.close().await;
}

#[test]
fn unusable_tls_files_exit_with_code_2() {
    let dir = TempDir::new("badtls");
    let (cert, key) = self_signed();
    let (_, other_key) = self_signed();
    let path = |name: &str, text: &str| {
        let p = dir.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cert = path("cert.pem", &cert);
    let key = path("key.pem", &key);
    let other_key = path("other.pem", &other_key);
    let garbage = path("garbage.pem", "not a pem file");
    let missing = dir.0.join("missing.pem").to_str().unwrap().to_string();

    let cases: [(&[&str], &str); 6] = [
        (&["--tls-cert", &missing, "--tls-key", &key], "--tls-cert"),
        (&["--tls-cert", &cert, "--tls-key", &missing], "--tls-key"),
        (&["--tls-cert", &garbage, "--tls-key", &key], "--tls-cert"),
        (&["--tls-cert", &cert, "--tls-key", &garbage], "--tls-key"),
        (
            &["--tls-cert", &cert, "--tls-key", &other_key],
            "do not go together",
        ),
        (&["--tls-cert", &cert], "--tls-key"),
    ];
    for (args, says) in cases {
        let (code, err) = run_to_exit(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
