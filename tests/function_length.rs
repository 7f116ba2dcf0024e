//! No function of `src/` (Rust and the Redis engine's Lua) runs over
//! `MAX_LINES` lines: a longer one mixes concerns and is split along its
//! seams. Declarative tables are the exception, named in `DECLARATIVE`.
//!
//! Functions are found by their first line (`fn name` in Rust, `function
//! name` in Lua) and end at the first line that closes them at their own
//! indentation (`}` in Rust, `end` in Lua), as `cargo fmt` and the Lua's
//! house style write them.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 100;

/// `(file under src/, function)`: tables written as code.
const DECLARATIVE: &[(&str, &str)] = &[
    // One registration per metric, with its name, labels and help text.
    ("metrics.rs", "new"),
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "lua") {
            out.push(path);
        }
    }
}

/// The name of the function a Rust line starts, if it starts one with a
/// body (not a trait method's declaration).
fn rust_fn(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let mut rest = t;
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("async ").unwrap_or(rest);
    let name = rest.strip_prefix("fn ")?;
    if line.trim_end().ends_with(';') {
        return None;
    }
    name.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
}

fn lua_fn(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("local ").unwrap_or(line);
    let name = rest.strip_prefix("function ")?;
    name.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == ':'))
        .next()
}

/// `(name, first line (1-based), length)` of every function in `text`.
fn functions(text: &str, lua: bool) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let name = if lua { lua_fn(line) } else { rust_fn(line) };
        let Some(name) = name else { continue };
        let indent = line.len() - line.trim_start().len();
        let close = if lua { "end" } else { "}" };
        // A one-line function closes on its own line.
        if !lua && line.trim_end().ends_with('}') {
            continue;
        }
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.len() - l.trim_start().len() == indent && l.trim() == close);
        if let Some(off) = end {
            found.push((name.to_string(), i + 1, off + 2));
        }
    }
    found
}

#[test]
fn no_function_is_over_the_limit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    all.sort();
    let mut seen = 0;
    let mut long = Vec::new();
    for file in all {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .to_string();
        let lua = rel.ends_with(".lua");
        let text = std::fs::read_to_string(&file).unwrap();
        for (name, line, len) in functions(&text, lua) {
            seen += 1;
            if len > MAX_LINES && !DECLARATIVE.contains(&(rel.as_str(), name.as_str())) {
                long.push(format!("src/{rel}:{line}: {name} is {len} lines"));
            }
        }
    }
    assert!(seen > 500, "only {seen} functions found");
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_reader_finds_functions_and_their_ends() {
    let rust = "impl X {\n    pub async fn a(&self) {\n        x();\n    }\n    fn b();\n}\nfn c() { 1 }\n";
    assert_eq!(functions(rust, false), vec![("a".to_string(), 2, 3)]);
    let lua = "local function f(a)\n  if a then\n  end\nend\nfunction OPS.g(a)\nend\n";
    assert_eq!(
        functions(lua, true),
        vec![("f".to_string(), 1, 4), ("OPS.g".to_string(), 5, 2)]
    );
}
