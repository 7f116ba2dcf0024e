//! Profile of Rendezvous's relay path, so that the report can say what a
//! relayed signal costs and where that cost goes. `perf` needs hardware
//! counters that this kind of machine (a VM) does not expose, so the server
//! runs under valgrind's callgrind: instrumentation is switched on only
//! once the server is up, the relay scenario runs for a while, and
//! `callgrind_annotate` gives the self and inclusive instruction counts per
//! function, which are grouped here into shares (JSON, quoted by the report).
//! Callgrind counts user-space instructions only: time in the kernel
//! (socket syscalls) is not in these shares.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::json;

use crate::scenario::{relay, Params};
use crate::server;
use crate::target::{Kind, Payload};

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    #[arg(long, default_value = ".")]
    pub root: PathBuf,
    #[arg(long, default_value = "target/release/rendezvous")]
    pub rendezvous_bin: PathBuf,
    /// Extra flag for the server (repeat it).
    #[arg(long = "rendezvous-arg", allow_hyphen_values = true)]
    pub rendezvous_args: Vec<String>,
    #[arg(long, default_value_t = 8)]
    pub pairs: usize,
    /// How long signals are relayed under callgrind.
    #[arg(long, default_value_t = 8.0)]
    pub secs: f64,
    #[arg(long, value_enum, default_value_t = Payload::Candidate)]
    pub payload: Payload,
    /// Folder of the callgrind output and of `profile.json`.
    #[arg(long, default_value = "target/bench-profile")]
    pub out: PathBuf,
}

#[derive(Debug, Serialize)]
struct Entry {
    function: String,
    instructions: u64,
    share: f64,
}

pub fn run(a: ProfileArgs) -> anyhow::Result<()> {
    for tool in ["valgrind", "callgrind_control", "callgrind_annotate"] {
        if Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            bail!("{tool} not found (Debian: apt-get install valgrind)");
        }
    }
    let root = a.root.canonicalize()?;
    let out = root.join(&a.out);
    std::fs::create_dir_all(&out)?;
    let data = out.join("callgrind.out");
    let _ = std::fs::remove_file(&data);
    let bin = root.join(&a.rendezvous_bin);
    let mut server_args = crate::suite::limit_overrides(&bin);
    server_args.extend(a.rendezvous_args.iter().cloned());
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg("--instr-atstart=no")
        .arg(format!("--callgrind-out-file={}", data.display()))
        .arg(&bin)
        .args(["--listen", "127.0.0.1:0"])
        .args(&server_args)
        .env("RENDEZVOUS_WEB_DIR", root.join("web"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(out.join("valgrind.log"))?);
    eprintln!("== profile: Rendezvous under callgrind");
    let mut srv = server::launch(Kind::Rendezvous, cmd, None)?;
    let pid = srv.pid;
    let params = Params {
        quick: true,
        idle_counts: vec![],
        pairs: a.pairs,
        window: 8,
        warmup_s: 0.5,
        relay_s: a.secs,
        payload: a.payload,
        half_rate: false,
        match_clients: 0,
        room_size: 2,
        churn_s: 0.0,
        churn_concurrency: 0,
        churn_signals: 0,
        connect_concurrency: 16,
        src_ips: 4,
        rendezvous_args: Vec::new(),
        server_cpus: None,
        client_cpus: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let on = Command::new("callgrind_control")
        .args(["-i", "on", &pid.to_string()])
        .stdout(Stdio::null())
        .status()?;
    if !on.success() {
        bail!("callgrind_control -i on failed");
    }
    let run = rt.block_on(relay::run(Kind::Rendezvous, srv.addr, None, &params, None));
    srv.stop(Duration::from_secs(30));
    let run = run?;
    eprintln!(
        "  relayed {} signals ({:.0}/s under callgrind)",
        run.received, run.rate
    );
    if !data.exists() {
        bail!("no callgrind output at {}", data.display());
    }
    let self_cost = annotate(&data, false)?;
    let inclusive = annotate(&data, true)?;
    let total = self_cost.0;
    let mut categories: Vec<(String, u64)> = Vec::new();
    for e in &self_cost.1 {
        let c = category(&e.function);
        match categories.iter_mut().find(|(n, _)| n == c) {
            Some((_, v)) => *v += e.instructions,
            None => categories.push((c.to_string(), e.instructions)),
        }
    }
    categories.sort_by_key(|c| std::cmp::Reverse(c.1));
    let pct = |v: u64| 100.0 * v as f64 / total.max(1) as f64;
    let interesting = |f: &str| {
        f.contains("rendezvous::")
            || f.contains("serde_json::de::from_")
            || f.contains("serde_json::ser::to_")
            || f.contains("WebSocketContext::read")
            || f.contains("WebSocketContext::write")
            || f.contains("webrtc_sdp::parse_sdp")
            || f.contains("tokio::runtime::io::driver::Driver::turn")
    };
    let mut seen = std::collections::HashSet::new();
    let incl: Vec<&Entry> = inclusive
        .1
        .iter()
        .filter(|e| interesting(&e.function) && seen.insert(e.function.clone()))
        .take(20)
        .collect();
    let signals = run.received.max(1);
    let report = json!({
        "tool": "valgrind --tool=callgrind (user-space instructions)",
        "payload": a.payload,
        "pairs": a.pairs,
        "signals_relayed": run.received,
        "total_instructions": total,
        "instructions_per_signal": total / signals,
        "categories": categories.iter().map(|(n, v)| json!({"category": n, "share": pct(*v)})).collect::<Vec<_>>(),
        "self_top": self_cost.1.iter().take(15).collect::<Vec<_>>(),
        "inclusive": incl,
    });
    let path = out.join("profile.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    eprintln!("  {} instructions per relayed signal", total / signals);
    for (n, v) in categories.iter().take(8) {
        eprintln!("  {:5.1}%  {n}", pct(*v));
    }
    eprintln!("profile: {}", path.display());
    Ok(())
}

/// Runs `callgrind_annotate` and parses (total, entries by cost).
fn annotate(data: &std::path::Path, inclusive: bool) -> anyhow::Result<(u64, Vec<Entry>)> {
    let o = Command::new("callgrind_annotate")
        .arg(format!(
            "--inclusive={}",
            if inclusive { "yes" } else { "no" }
        ))
        .arg("--threshold=100")
        .arg("--auto=no")
        .arg(data)
        .output()
        .context("running callgrind_annotate")?;
    if !o.status.success() {
        bail!("callgrind_annotate: {}", String::from_utf8_lossy(&o.stderr));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let mut total = 0;
    // One function shows up once per source file its code came from
    // (inlining): the costs are summed per function.
    let mut by_fn: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut in_table = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Ir") && line.contains("file:function") {
            in_table = true;
            continue;
        }
        if in_table && !by_fn.is_empty() && line.starts_with("-----") {
            // The per-file annotations that may follow are not functions.
            break;
        }
        let Some(first) = line.split_whitespace().next() else {
            continue;
        };
        if !first.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let Ok(n) = first.replace(',', "").parse::<u64>() else {
            continue;
        };
        let rest = line[first.len()..].trim();
        // Newer callgrind_annotate prints "(12.3%)" after the count.
        let rest = match rest.strip_prefix('(') {
            Some(r) => r.split_once(')').map_or(r, |(_, after)| after).trim(),
            None => rest,
        };
        if rest.starts_with("PROGRAM TOTALS") {
            total = n;
            continue;
        }
        if !in_table {
            continue;
        }
        let function = function_of(rest);
        if !function.is_empty() {
            let e = by_fn.entry(function).or_default();
            // Inclusive costs of the same function overlap (recursion,
            // nested async polls): the largest is taken, not the sum.
            *e = if inclusive { (*e).max(n) } else { *e + n };
        }
    }
    if total == 0 {
        bail!("no PROGRAM TOTALS in callgrind_annotate output");
    }
    let mut entries: Vec<Entry> = by_fn
        .into_iter()
        .map(|(function, instructions)| Entry {
            share: 100.0 * instructions as f64 / total as f64,
            function,
            instructions,
        })
        .collect();
    entries.sort_by_key(|e| std::cmp::Reverse(e.instructions));
    Ok((total, entries))
}

/// `file:function [object]` -> `function` (Rust paths contain `::`, file
/// names do not contain a colon).
fn function_of(s: &str) -> String {
    let s = match s.rfind(" [") {
        Some(i) if s.ends_with(']') => &s[..i],
        _ => s,
    };
    let b = s.as_bytes();
    for i in 0..b.len() {
        if b[i] == b':' && b.get(i + 1) != Some(&b':') && (i == 0 || b[i - 1] != b':') {
            return s[i + 1..].trim().to_string();
        }
    }
    s.trim().to_string()
}

/// A coarse grouping of functions by what they do.
fn category(f: &str) -> &'static str {
    let has = |p: &str| f.contains(p);
    if has("serde_json") || has("serde::") {
        "serde_json: parse requests, serialize replies and events"
    } else if has("webrtc_sdp") {
        "webrtc-sdp parser"
    } else if has("rendezvous::signaling") {
        "candidate / SDP checks (rendezvous::signaling)"
    } else if has("tungstenite") || has("rendezvous::server::frames") {
        "WebSocket framing (`/ws`: rendezvous::server::frames; tungstenite)"
    } else if has("malloc")
        || has("free")
        || has("realloc")
        || has("calloc")
        || has("_int_")
        || has("tcache")
        || has("alloc::alloc")
        || f.starts_with("mi_")
        || f.starts_with("_mi_")
    {
        "allocator (malloc/free; mimalloc in the server)"
    } else if has("memcpy")
        || has("memmove")
        || has("memset")
        || has("memchr")
        || has("strlen")
        || has("__mem")
    {
        "memcpy / memmove / memchr"
    } else if has("tokio") || has("mio::") {
        "tokio runtime, timers and I/O driver"
    } else if has("hyper") || has("warp") || has("http::") {
        "hyper / warp"
    } else if has("parking_lot") || has("pthread") || has("futex") {
        "locks"
    } else if has("uuid") || has("chrono") {
        "ids and clocks (uuid, chrono)"
    } else if has("rendezvous::") {
        "rendezvous (session, lobby, delivery)"
    } else if has("core::") || has("alloc::") || has("std::") || has("hashbrown") {
        "Rust core/std (hashing, strings, formatting)"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_annotate_names() {
        assert_eq!(
            function_of("???:core::ptr::drop_in_place<x> [/bin/rendezvous]"),
            "core::ptr::drop_in_place<x>"
        );
        assert_eq!(
            function_of("./malloc/malloc.c:_int_malloc [/usr/lib/libc.so.6]"),
            "_int_malloc"
        );
        for f in [
            "_int_malloc",
            "_mi_page_malloc_zero",
            "mi_free",
            "_mi_segment_page_alloc",
        ] {
            assert_eq!(
                category(f),
                "allocator (malloc/free; mimalloc in the server)"
            );
        }
        assert_eq!(
            category("serde_json::de::from_str"),
            "serde_json: parse requests, serialize replies and events"
        );
    }
}
