//! The layers of `src/` point one way. Every `crate::` path in a file under
//! `src/` (outside comments) must name a module of a lower layer than the
//! file's own, or its own module. The order, top to bottom:
//!
//! ```text
//! server, client        the shell; a client of the protocol
//! backend               the seam, delivery (connections, outboxes), the
//!                       ticker, the in-memory and Redis engines' drivers
//! config                the CLI, read by main, server and backend, which
//!                       hand the engines and hooks their own small structs
//! lobby                 the engine (owns HookEvent); no I/O
//! hooks                 webhook and allocation delivery
//! relay                 the signal fast path
//! metrics               the Prometheus registry and its labels
//! protocol, auth        wire types and the one request table; JWTs
//! signaling, ids        SDP/ICE checks, TURN; identifiers
//! ```
//!
//! `main.rs` sits above all and `lib.rs` only declares modules. Unit tests
//! of the crate (`src/tests/`) may use anything. A use that points up (or
//! sideways, between two modules of one layer) fails here with its file
//! and line.

use std::path::{Path, PathBuf};

const LAYERS: &[&[&str]] = &[
    &["server", "client"],
    &["backend"],
    &["config"],
    &["lobby"],
    &["hooks"],
    &["relay"],
    &["metrics"],
    &["protocol", "auth"],
    &["signaling", "ids"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None`: lib.rs,
/// main.rs and the crate's own tests).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    match name {
        "lib" | "main" | "tests" => None,
        _ => Some(name.to_string()),
    }
}

/// The modules named by `crate::x` in a line of code, comments left out.
fn crate_uses(line: &str) -> Vec<String> {
    let code = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        // `rendezvous_crate::` or `$crate::` are not this crate's paths.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        found.push(name);
    }
    found
}

/// `(file, line, from, to)` of every use that does not point down.
fn violations() -> (usize, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut checked = 0;
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let Some(from) = module_of(rel) else { continue };
        let from_layer = layer_of(&from)
            .unwrap_or_else(|| panic!("src/{}: module {from} is in no layer", rel.display()));
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            for to in crate_uses(line) {
                checked += 1;
                if to == from {
                    continue;
                }
                let ok = layer_of(&to).is_some_and(|l| l > from_layer);
                if !ok {
                    bad.push(format!(
                        "src/{}:{}: {from} uses crate::{to}: {}",
                        rel.display(),
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    (checked, bad)
}

#[test]
fn uses_point_down_the_layers() {
    let (checked, bad) = violations();
    assert!(checked > 100, "only {checked} crate:: paths found");
    assert!(
        bad.is_empty(),
        "{} uses point up or sideways:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn every_module_of_lib_rs_has_a_layer() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line.strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(layer_of(m).is_some(), "src/lib.rs: {m} is in no layer");
        }
    }
}

#[test]
fn the_reader_finds_uses_and_skips_comments() {
    assert_eq!(crate_uses("use crate::lobby::Room;"), vec!["lobby"]);
    assert_eq!(
        crate_uses("let x = crate::ids::new(); crate::metrics::f()"),
        vec!["ids", "metrics"]
    );
    assert!(crate_uses("// see crate::server").is_empty());
    assert!(crate_uses("$crate::x").is_empty());
    assert!(layer_of("server") < layer_of("backend"));
}
