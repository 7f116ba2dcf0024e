//! Match: N clients ask for a match at once with room size K; the report
//! gives rooms filled per second, the time from each client's request to its
//! room being full, and checks that no room exceeds K and that no client
//! lands in two rooms.
//!
//! Rendezvous: connect, then `find_match` right after `welcome`; a room is
//! full when its members get `game_start`. matchbox_server: the connection
//! to `/<room>?next=K` is the request; its groups are rebuilt from the
//! `NewPeer` events the earlier members of a group receive, and a group is
//! full at the last of them. Both therefore time connect + match.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use futures_util::SinkExt;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::Message;

use super::{bar, nonce, Params};
use crate::target::{self, Kind, Spot};
use crate::util::{self, Latency};

#[derive(Debug, Clone, Serialize)]
pub struct MatchResult {
    pub clients: usize,
    pub room_size: usize,
    pub failed_clients: usize,
    pub rooms_full: usize,
    pub rooms_partial: usize,
    pub largest_room: usize,
    /// Rooms over K plus clients seen in more than one room.
    pub violations: usize,
    /// From the first request to the last full room.
    pub duration_s: f64,
    pub matches_per_s: f64,
    /// Request to room full, per client.
    pub latency: Latency,
    /// Rendezvous only: `find_match` sent to its `ok` reply.
    pub reply_latency: Option<Latency>,
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    id: String,
    requested_ns: u64,
    /// Rendezvous: room id, reply latency, game_start time and room size.
    room: Option<String>,
    reply_ns: Option<u64>,
    full_at: Option<u64>,
    full_size: usize,
    /// matchbox: (new peer, time).
    new_peers: Vec<(String, u64)>,
}

pub async fn run(kind: Kind, addr: SocketAddr, p: &Params) -> anyhow::Result<MatchResult> {
    if !kind.has_matchmaking() {
        bail!("{} has no matchmaking", kind.label());
    }
    let n = p.match_clients;
    let k = p.room_size;
    let mode = format!("m{}", nonce());
    let gate = Arc::new(Semaphore::new(p.connect_concurrency.max(1)));
    let done = Arc::new(AtomicUsize::new(0));
    // Rendezvous counts clients in full rooms; matchbox counts NewPeer events.
    let goal = match kind {
        Kind::Rendezvous => n / k * k,
        _ => n / k * k * (k - 1) / 2,
    };
    let (all_done_tx, all_done) = watch::channel(false);
    let cfg = target::client_config(4096, 4096);
    let pb = bar(goal as u64, format!("{} match", kind.name()));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (gate, done, mode, pb) = (gate.clone(), done.clone(), mode.clone(), pb.clone());
        let mut all_done = all_done.clone();
        let src = target::src_ip(i, p.src_ips);
        let all_done_tx = all_done_tx.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Seen::default();
            let permit = gate.acquire().await;
            seen.requested_ns = util::now_ns();
            let spot = Spot {
                room: &mode,
                next: Some(k),
            };
            let mut s = target::open(kind, addr, &spot, src, cfg).await?;
            seen.id = s.id.clone();
            let bump = |by: usize| {
                pb.inc(by as u64);
                if done.fetch_add(by, Ordering::Relaxed) + by >= goal {
                    let _ = all_done_tx.send(true);
                }
            };
            if kind == Kind::Rendezvous {
                let sent = util::now_ns();
                let req = json!({"type": "find_match", "rid": 1, "max_players": k, "mode": mode});
                s.ws.send(Message::text(req.to_string())).await?;
                drop(permit);
                let reply: Value = target::wait_for(&mut s.ws, Duration::from_secs(60), |t| {
                    serde_json::from_str::<Value>(t)
                        .ok()
                        .filter(|v| v["rid"] == 1)
                })
                .await?;
                seen.reply_ns = Some(util::now_ns() - sent);
                if reply["type"] != "ok" {
                    anyhow::bail!("find_match: {reply}");
                }
                seen.room = reply["room"]["room_id"].as_str().map(str::to_string);
            } else {
                drop(permit);
            }
            // Read events until the whole burst is matched.
            loop {
                // 15 s of silence ends the wait: the room stays partial.
                let text = tokio::select! {
                    t = target::next_text(&mut s.ws, Duration::from_secs(15)) => match t {
                        Ok(t) => t,
                        Err(_) => break,
                    },
                    _ = all_done.changed() => break,
                };
                let now = util::now_ns();
                if kind == Kind::Rendezvous {
                    if text.contains("\"game_start\"") && seen.full_at.is_none() {
                        let v: Value = serde_json::from_str(&text)?;
                        seen.full_at = Some(now);
                        seen.full_size = v["room"]["players"].as_array().map_or(0, Vec::len);
                        bump(1);
                    }
                } else if let Some(peer) = target::matchbox_event(&text, "NewPeer") {
                    seen.new_peers.push((peer, now));
                    bump(1);
                }
            }
            // Everyone holds its seat until the end, then leaves.
            target::close(s.ws).await;
            anyhow::Ok(seen)
        }));
    }
    drop(all_done_tx);
    let mut seen = Vec::new();
    let mut failed = 0;
    let mut first_err = None;
    let timeout = Duration::from_secs(60 + n as u64 / 200);
    let all = futures_util::future::join_all(tasks);
    let results = match tokio::time::timeout(timeout, all).await {
        Ok(r) => r,
        Err(_) => bail!("match scenario did not finish within {timeout:?}"),
    };
    for r in results {
        match r {
            Ok(Ok(s)) => seen.push(s),
            Ok(Err(e)) => {
                failed += 1;
                first_err.get_or_insert(format!("{e:#}"));
            }
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e.to_string());
            }
        }
    }
    pb.finish_and_clear();
    if let Some(e) = &first_err {
        eprintln!(
            "  {} match: {failed} clients failed; first: {e}",
            kind.name()
        );
    }
    let mut result = match kind {
        Kind::Rendezvous => rendezvous_rooms(&seen, k),
        _ => matchbox_groups(&seen, k),
    };
    result.clients = n;
    result.failed_clients = failed;
    if kind == Kind::Rendezvous {
        let mut h = util::new_hist();
        for s in &seen {
            if let Some(r) = s.reply_ns {
                util::record_ns(&mut h, r);
            }
        }
        result.reply_latency = Some(Latency::of(&h));
    }
    Ok(result)
}

fn summary(
    groups: Vec<(Vec<&Seen>, Option<u64>)>,
    k: usize,
    extra_violations: usize,
) -> MatchResult {
    let first = groups
        .iter()
        .flat_map(|(m, _)| m.iter().map(|s| s.requested_ns))
        .min()
        .unwrap_or(0);
    let mut last = first;
    let mut hist = util::new_hist();
    let (mut full, mut partial, mut largest, mut violations) = (0, 0, 0, extra_violations);
    for (members, full_at) in &groups {
        largest = largest.max(members.len());
        if members.len() > k {
            violations += 1;
        }
        match full_at {
            Some(t) if members.len() == k => {
                full += 1;
                last = last.max(*t);
                for m in members {
                    util::record_ns(&mut hist, t.saturating_sub(m.requested_ns));
                }
            }
            _ => partial += 1,
        }
    }
    let duration_s = (last.saturating_sub(first)) as f64 / 1e9;
    MatchResult {
        clients: 0,
        room_size: k,
        failed_clients: 0,
        rooms_full: full,
        rooms_partial: partial,
        largest_room: largest,
        violations,
        duration_s,
        matches_per_s: if duration_s > 0.0 {
            full as f64 / duration_s
        } else {
            0.0
        },
        latency: Latency::of(&hist),
        reply_latency: None,
    }
}

fn rendezvous_rooms(seen: &[Seen], k: usize) -> MatchResult {
    let mut rooms: HashMap<&str, Vec<&Seen>> = HashMap::new();
    let mut violations = 0;
    for s in seen {
        match &s.room {
            Some(r) => rooms.entry(r.as_str()).or_default().push(s),
            None => violations += 1,
        }
        if s.full_size > k {
            violations += 1;
        }
    }
    let groups = rooms
        .into_values()
        .map(|members| {
            let full_at = members.iter().filter_map(|m| m.full_at).min();
            (members, full_at)
        })
        .collect();
    summary(groups, k, violations)
}

fn matchbox_groups(seen: &[Seen], k: usize) -> MatchResult {
    // Union-find over "a was told about b".
    let index: HashMap<&str, usize> = seen
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut parent: Vec<usize> = (0..seen.len()).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut completion: Vec<u64> = vec![0; seen.len()];
    let mut violations = 0;
    for (i, s) in seen.iter().enumerate() {
        for (peer, t) in &s.new_peers {
            completion[i] = completion[i].max(*t);
            match index.get(peer.as_str()) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    parent[a] = b;
                }
                None => violations += 1,
            }
        }
        if s.new_peers.len() >= k {
            violations += 1;
        }
    }
    let mut groups: HashMap<usize, (Vec<&Seen>, u64)> = HashMap::new();
    for (i, s) in seen.iter().enumerate() {
        let root = find(&mut parent, i);
        let g = groups.entry(root).or_default();
        g.0.push(s);
        g.1 = g.1.max(completion[i]);
    }
    let groups = groups
        .into_values()
        .map(|(m, t)| (m, (t > 0).then_some(t)))
        .collect();
    summary(groups, k, violations)
}
