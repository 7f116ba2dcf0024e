//! The web pages the server hands out (the demo at `/`, the dashboard at
//! `/dashboard`, their scripts and stylesheet, and `rendezvous.js`), compiled
//! into the binary so that `rendezvous` started from any folder, or copied
//! alone to a server, serves them. `--web-dir` serves a folder from disk
//! first (for editing the pages without a rebuild); what the folder lacks
//! still comes from the binary.
//!
//! Every answer carries an ETag and `Cache-Control: no-cache`: the names are
//! not fingerprinted, so a browser must revalidate (a cheap 304) rather than
//! keep a stale `rendezvous.js` after an upgrade.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha1::{Digest, Sha1};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::{Filter, Rejection, Reply};

/// The embedded files by the name they are served under. `rendezvous.js` is
/// the npm package's own source (clients/js/), so the served client and the
/// published one are one file.
const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../../web/index.html")),
    ("app.js", include_bytes!("../../web/app.js")),
    ("dashboard.html", include_bytes!("../../web/dashboard.html")),
    ("dashboard.js", include_bytes!("../../web/dashboard.js")),
    ("style.css", include_bytes!("../../web/style.css")),
    (
        "rendezvous.js",
        include_bytes!("../../clients/js/rendezvous.js"),
    ),
];

/// Names of the embedded files (a test checks that web/ has no file left out).
pub fn embedded_names() -> impl Iterator<Item = &'static str> {
    EMBEDDED.iter().map(|(name, _)| *name)
}

/// The ETags of the embedded files, computed once.
fn embedded_etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| EMBEDDED.iter().map(|(_, bytes)| etag(bytes)).collect())
}

fn etag(bytes: &[u8]) -> String {
    let digest = Sha1::digest(bytes);
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Where the pages come from, said once at start-up.
pub fn describe(web_dir: Option<&Path>) -> String {
    match web_dir {
        Some(dir) => format!(
            "web pages from {} (missing files from the binary)",
            dir.display()
        ),
        None => "web pages embedded in the binary".to_string(),
    }
}

/// Checks `--web-dir` at start-up: a folder that is not there is a
/// configuration error, not a silent 404 on every page.
pub fn check_dir(web_dir: Option<&Path>) -> Result<(), String> {
    match web_dir {
        Some(dir) if !dir.is_dir() => Err(format!("--web-dir {}: not a folder", dir.display())),
        _ => Ok(()),
    }
}

/// The file name a request path maps to, or None when it names no page.
/// Paths with hidden or parent segments, backslashes or escapes are refused
/// outright so that a `--web-dir` lookup never leaves the folder.
fn file_name(tail: &str) -> Option<String> {
    let name = match tail {
        "" => "index.html",
        "dashboard" => "dashboard.html",
        other => other,
    };
    let bad = name
        .split('/')
        .any(|seg| seg.is_empty() || seg.starts_with('.') || seg.contains(['\\', '%', '\0', ':']));
    (!bad && name.len() <= 255).then(|| name.to_string())
}

/// `GET`/`HEAD` of every path that names a page; anything else is rejected
/// as not found (the JSON 404 of the HTTP API).
pub fn routes(
    web_dir: Option<PathBuf>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::method()
        .and(warp::path::tail())
        .and(warp::header::headers_cloned())
        .and_then(move |method: Method, tail: warp::path::Tail, headers| {
            let web_dir = web_dir.clone();
            async move {
                if method != Method::GET && method != Method::HEAD {
                    return Err(warp::reject::not_found());
                }
                let name = file_name(tail.as_str()).ok_or_else(warp::reject::not_found)?;
                let (bytes, tag) = match lookup(web_dir.as_deref(), &name).await {
                    Some(found) => found,
                    None => return Err(warp::reject::not_found()),
                };
                Ok::<_, Rejection>(answer(&name, bytes, tag, &headers))
            }
        })
}

/// The bytes of a page and its ETag: from `--web-dir` when the file is
/// there, else from the binary.
async fn lookup(web_dir: Option<&Path>, name: &str) -> Option<(Vec<u8>, String)> {
    if let Some(dir) = web_dir {
        if let Ok(bytes) = tokio::fs::read(dir.join(name)).await {
            let tag = etag(&bytes);
            return Some((bytes, tag));
        }
    }
    let i = EMBEDDED.iter().position(|(n, _)| *n == name)?;
    Some((EMBEDDED[i].1.to_vec(), embedded_etags()[i].clone()))
}

fn answer(name: &str, bytes: Vec<u8>, tag: String, headers: &HeaderMap) -> warp::reply::Response {
    let fresh = headers
        .get_all("if-none-match")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*");
    let mut resp = if fresh {
        warp::reply::with_status(warp::reply(), StatusCode::NOT_MODIFIED).into_response()
    } else {
        let mut r = warp::reply::Response::new(bytes.into());
        r.headers_mut().insert(
            "content-type",
            warp::http::HeaderValue::from_static(content_type(name)),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = warp::http::HeaderValue::from_str(&tag) {
        h.insert("etag", v);
    }
    h.insert(
        "cache-control",
        warp::http::HeaderValue::from_static("no-cache"),
    );
    h.insert(
        "x-content-type-options",
        warp::http::HeaderValue::from_static("nosniff"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_web_is_embedded() {
        let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        for entry in std::fs::read_dir(web).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                embedded_names().any(|n| n == name),
                "web/{name} is not in EMBEDDED"
            );
        }
    }

    #[test]
    fn paths_that_leave_the_folder_name_no_page() {
        assert_eq!(file_name("").as_deref(), Some("index.html"));
        assert_eq!(file_name("dashboard").as_deref(), Some("dashboard.html"));
        for bad in [
            "../Cargo.toml",
            "a/../b",
            ".git/config",
            "a//b",
            "%2e%2e/x",
            "a\\b",
        ] {
            assert_eq!(file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("rendezvous.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }
}
