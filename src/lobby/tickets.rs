//! Ticket matchmaking (1.1 `queue_match`): the queue of tickets and the rule
//! that turns a set of them into a room. No I/O, no lobby state: the lobby
//! owns a [`TicketQueue`], asks it which groups can form, and seats them.
//!
//! Tickets wait in pools: one per (mode, room size, filters, with or without
//! skill), since only tickets of one pool may ever share a room. Within a
//! pool they are kept twice, by skill and by age, so that finding the
//! tickets a given one could play with is a range read of the skill order
//! (O(log n + k), k the tickets inside its window), never a scan of the
//! queue. Forming is greedy and oldest first: the oldest ticket that is
//! present anchors a group, and the tickets within its window join it in
//! age order while the group stays within every member's window, every
//! member's RTT limit in one common region, and the room's size.
//!
//! A ticket is looked at (as the anchor of a group) only when something
//! that could let it form happened: it arrived, its player came back, it
//! passed the fill delay, or its widening window reached a ticket it did
//! not reach before. So a tick costs a range read per ticket whose window
//! is still widening (they are indexed by when they stop), and nothing for
//! the others.
//!
//! The same rule runs in the Redis engine (`lobby.lua`), on sorted sets of
//! the same orders; the differential test compares the two.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::validate::{check_filters, check_max_players, check_mode};
use crate::protocol::{JsonObject, ProtoError, QueueMatch, TicketInfo};

/// Most tickets one anchor looks at when it builds a group: in a crowded
/// pool the group fills from the first ones (in age order), and the cost
/// of a look stays bounded.
pub const SCAN_CAP: usize = 256;
/// Most regions a ticket may name.
pub const MAX_REGIONS: usize = 32;
pub const MAX_REGION_CHARS: usize = 64;
/// Largest skill, window or RTT a ticket may give (in absolute value).
pub const MAX_TICKET_NUMBER: f64 = 1e9;

/// What a ticket asks for (the fields of `queue_match`, defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct TicketSpec {
    pub mode: String,
    pub max_players: u64,
    pub min_players: u64,
    pub skill: Option<f64>,
    pub skill_window: f64,
    pub skill_widen_per_s: f64,
    pub skill_window_max: f64,
    /// Region name to the round-trip time (ms) the client measured.
    pub regions: BTreeMap<String, f64>,
    pub max_rtt_ms: f64,
    pub filters: JsonObject,
    pub backfill: bool,
}

fn number(name: &str, v: Option<f64>, default: f64) -> Result<f64, ProtoError> {
    let v = v.unwrap_or(default);
    if !v.is_finite() || v.abs() > MAX_TICKET_NUMBER {
        return Err(ProtoError::bad_request(format!(
            "{name} must be a number between -{MAX_TICKET_NUMBER:e} and {MAX_TICKET_NUMBER:e}"
        )));
    }
    Ok(v)
}

fn non_negative(name: &str, v: Option<f64>, default: f64) -> Result<f64, ProtoError> {
    let v = number(name, v, default)?;
    if v < 0.0 {
        return Err(ProtoError::bad_request(format!(
            "{name} must not be negative"
        )));
    }
    Ok(v)
}

impl TicketSpec {
    /// A `queue_match` request's fields, checked, with the contract's
    /// defaults; the same in both stores.
    pub fn from_request(req: &QueueMatch, max_players_limit: u64) -> Result<Self, ProtoError> {
        let mode = check_mode(req.mode.as_deref())?;
        let max_players = check_max_players(max_players_limit, req.max_players)?;
        let min_players = req.min_players.unwrap_or(max_players);
        if min_players < 1 || min_players > max_players {
            return Err(ProtoError::bad_request(format!(
                "min_players must be 1 to max_players ({max_players}), got {min_players}"
            )));
        }
        let skill = match req.skill {
            Some(s) => Some(number("skill", Some(s), 0.0)?),
            None => None,
        };
        let regions = req.regions.clone().unwrap_or_default();
        if regions.len() > MAX_REGIONS {
            return Err(ProtoError::bad_request(format!(
                "at most {MAX_REGIONS} regions"
            )));
        }
        for (name, rtt) in &regions {
            if name.is_empty()
                || name.len() > MAX_REGION_CHARS
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(ProtoError::bad_request(format!(
                    "region names must be 1 to {MAX_REGION_CHARS} letters, digits, '-', '_' or '.'"
                )));
            }
            non_negative("a region's rtt", Some(*rtt), 0.0)?;
        }
        let max_rtt_ms = non_negative("max_rtt_ms", req.max_rtt_ms, 150.0)?;
        // A ticket none of whose regions is within its limit could never
        // form a room: refused rather than left to expire.
        if !regions.is_empty() && regions.values().all(|rtt| *rtt > max_rtt_ms) {
            return Err(ProtoError::bad_request(format!(
                "no region within max_rtt_ms ({max_rtt_ms} ms)"
            )));
        }
        let filters = req.filters.clone().unwrap_or_default();
        check_filters(&filters)?;
        Ok(TicketSpec {
            mode,
            max_players,
            min_players,
            skill,
            skill_window: non_negative("skill_window", req.skill_window, 100.0)?,
            skill_widen_per_s: non_negative("skill_widen_per_s", req.skill_widen_per_s, 50.0)?,
            skill_window_max: non_negative("skill_window_max", req.skill_window_max, 1000.0)?,
            regions,
            max_rtt_ms,
            filters,
            backfill: req.backfill,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Ticket {
    pub id: String,
    /// The players it seats together (a party's members, leader first).
    pub players: Vec<String>,
    pub spec: TicketSpec,
    /// Queue order: older tickets are served first.
    pub seq: u64,
    pub queued: Instant,
    pub queued_at: DateTime<Utc>,
    /// Players of the ticket whose connection is gone: never matched then.
    pub away: BTreeSet<String>,
    /// Its expiry timer in the lobby's timers.
    pub timer: Option<super::timers::TimerKey>,
}

impl Ticket {
    /// The skill window after waiting until `now`.
    pub fn info(&self) -> TicketInfo {
        TicketInfo {
            ticket_id: self.id.clone(),
            players: self.players.clone(),
            queued_at: self.queued_at,
        }
    }

    /// When its window stops widening (reaches `skill_window_max`), for a
    /// ticket with skill whose window widens; capped at a day (no ticket
    /// lives longer).
    pub fn widens_until(&self) -> Option<Instant> {
        let s = &self.spec;
        if s.skill.is_none() || s.skill_widen_per_s <= 0.0 || s.skill_window_max <= s.skill_window {
            return None;
        }
        let secs = ((s.skill_window_max - s.skill_window) / s.skill_widen_per_s).min(86_400.0);
        self.queued.checked_add(Duration::from_secs_f64(secs))
    }

    pub fn window(&self, now: Instant) -> f64 {
        let s = &self.spec;
        let waited = now.saturating_duration_since(self.queued).as_secs_f64();
        (s.skill_window + s.skill_widen_per_s * waited).min(s.skill_window_max)
    }

    pub fn size(&self) -> u64 {
        self.players.len() as u64
    }

    /// The regions this ticket accepts, with its RTT there; `None` when it
    /// gave none (it accepts any).
    pub fn acceptable_regions(&self) -> Option<BTreeMap<&str, f64>> {
        if self.spec.regions.is_empty() {
            return None;
        }
        Some(
            self.spec
                .regions
                .iter()
                .filter(|(_, rtt)| **rtt <= self.spec.max_rtt_ms)
                .map(|(r, rtt)| (r.as_str(), *rtt))
                .collect(),
        )
    }
}

/// A group of tickets that forms one room: in queue order, and the region
/// chosen for it (the lowest worst RTT), if any ticket gave regions.
#[derive(Debug, Clone)]
pub struct Formed {
    pub tickets: Vec<Ticket>,
    pub region: Option<String>,
}

/// The tickets that may share a room: same mode, size, filters, and skill
/// or not.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct PoolKey {
    mode: String,
    max_players: u64,
    /// The filters' JSON text (serde_json's maps are ordered by key, so
    /// equal filters give equal text).
    filters: String,
    skilled: bool,
}

impl PoolKey {
    fn of(spec: &TicketSpec) -> Self {
        PoolKey {
            mode: spec.mode.clone(),
            max_players: spec.max_players,
            filters: serde_json::Value::Object(spec.filters.clone()).to_string(),
            skilled: spec.skill.is_some(),
        }
    }
}

/// The text key of the pool a ticket waits in (the Redis store's key
/// suffix): mode, room size, filters and whether it has a skill.
pub fn pool_key(spec: &TicketSpec) -> String {
    let k = PoolKey::of(spec);
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}",
        k.mode,
        k.max_players,
        k.filters,
        if k.skilled { "s" } else { "n" }
    )
}

/// A skill as an ordered key (skills are finite: checked on the way in).
#[derive(Debug, Clone, Copy)]
struct Skill(f64);

impl PartialEq for Skill {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Skill {}

impl PartialOrd for Skill {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Skill {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Debug, Default)]
struct Pool {
    by_skill: BTreeMap<(Skill, u64), String>,
    by_age: BTreeMap<u64, String>,
}

#[derive(Debug, Default)]
pub struct TicketQueue {
    tickets: HashMap<String, Ticket>,
    by_player: HashMap<String, String>,
    pools: BTreeMap<PoolKey, Pool>,
    /// Every ticket by the time it was queued: the ones passing the fill
    /// delay between two ticks are a range of it.
    by_time: BTreeMap<(Instant, u64), String>,
    /// Tickets to look at on the next pass (a player came back).
    woken: Vec<String>,
    /// Tickets whose window still widens, by when it stops.
    widening: BTreeMap<(Instant, u64), (String, PoolKey)>,
}

impl TicketQueue {
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Ticket> {
        self.tickets.get(id)
    }

    /// The ticket a player is in.
    pub fn ticket_of(&self, player_id: &str) -> Option<&Ticket> {
        self.tickets.get(self.by_player.get(player_id)?)
    }

    /// Queues a ticket. The caller checked that none of its players is in
    /// a ticket or a room.
    pub fn add(&mut self, ticket: Ticket) {
        let key = PoolKey::of(&ticket.spec);
        if let Some(until) = ticket.widens_until() {
            self.widening
                .insert((until, ticket.seq), (ticket.id.clone(), key.clone()));
        }
        let pool = self.pools.entry(key).or_default();
        let skill = Skill(ticket.spec.skill.unwrap_or(0.0));
        pool.by_skill.insert((skill, ticket.seq), ticket.id.clone());
        pool.by_age.insert(ticket.seq, ticket.id.clone());
        self.by_time
            .insert((ticket.queued, ticket.seq), ticket.id.clone());
        for p in &ticket.players {
            self.by_player.insert(p.clone(), ticket.id.clone());
        }
        self.tickets.insert(ticket.id.clone(), ticket);
    }

    /// Takes a ticket out of the queue (cancelled, expired or formed).
    pub fn remove(&mut self, id: &str) -> Option<Ticket> {
        let ticket = self.tickets.remove(id)?;
        let key = PoolKey::of(&ticket.spec);
        if let Some(until) = ticket.widens_until() {
            self.widening.remove(&(until, ticket.seq));
        }
        if let Some(pool) = self.pools.get_mut(&key) {
            let skill = Skill(ticket.spec.skill.unwrap_or(0.0));
            pool.by_skill.remove(&(skill, ticket.seq));
            pool.by_age.remove(&ticket.seq);
            if pool.by_age.is_empty() {
                self.pools.remove(&key);
            }
        }
        self.by_time.remove(&(ticket.queued, ticket.seq));
        for p in &ticket.players {
            self.by_player.remove(p);
        }
        Some(ticket)
    }

    /// Marks a player of a ticket away (its connection dropped) or back.
    pub fn set_away(&mut self, player_id: &str, away: bool) {
        let Some(id) = self.by_player.get(player_id) else {
            return;
        };
        if let Some(t) = self.tickets.get_mut(id) {
            if away {
                t.away.insert(player_id.to_string());
            } else if t.away.remove(player_id) && t.away.is_empty() {
                self.woken.push(id.clone());
            }
        }
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Ticket> {
        self.tickets.get_mut(id)
    }

    /// The tickets worth a look at `now`, the last look having been at
    /// `last`: those whose player came back, those that passed the fill
    /// delay since, and those whose widening window reached another
    /// ticket of their pool since.
    pub fn due(&mut self, last: Instant, now: Instant, fill_after: Duration) -> Vec<String> {
        let mut out = std::mem::take(&mut self.woken);
        if let (Some(from), Some(to)) = (last.checked_sub(fill_after), now.checked_sub(fill_after))
        {
            use std::ops::Bound::{Excluded, Included};
            out.extend(
                self.by_time
                    .range((Excluded((from, u64::MAX)), Included((to, u64::MAX))))
                    .map(|(_, id)| id.clone()),
            );
        }
        {
            use std::ops::Bound::{Excluded, Unbounded};
            // Only the tickets whose window widened after `last`.
            for (id, key) in self
                .widening
                .range((Excluded((last, u64::MAX)), Unbounded))
                .map(|(_, v)| v)
            {
                let (Some(t), Some(pool)) = (self.tickets.get(id), self.pools.get(key)) else {
                    continue;
                };
                let (before, after) = (t.window(last), t.window(now));
                if after <= before {
                    continue;
                }
                let s = t.spec.skill.unwrap_or(0.0);
                use std::ops::Bound::{Excluded, Included};
                // Skills newly inside the window, on either side (the old
                // edge itself was inside already).
                let below = (
                    Included((Skill(s - after), 0)),
                    Excluded((Skill(s - before), 0)),
                );
                let above = (
                    Excluded((Skill(s + before), u64::MAX)),
                    Included((Skill(s + after), u64::MAX)),
                );
                if pool.by_skill.range(below).next().is_some()
                    || pool.by_skill.range(above).next().is_some()
                {
                    out.push(id.clone());
                }
            }
        }
        out
    }

    /// Forms the rooms that the given tickets, as anchors, can form now,
    /// oldest anchor first, and takes their tickets out of the queue.
    /// `limit`: at most this many rooms.
    pub fn form(
        &mut self,
        mut anchors: Vec<String>,
        now: Instant,
        fill_after: Duration,
        limit: usize,
    ) -> Vec<Formed> {
        anchors.sort_by_key(|id| self.tickets.get(id).map_or(u64::MAX, |t| t.seq));
        anchors.dedup();
        let mut out = Vec::new();
        for id in anchors {
            if out.len() >= limit {
                break;
            }
            let Some(t) = self.tickets.get(&id) else {
                continue;
            };
            let key = PoolKey::of(&t.spec);
            let Some(pool) = self.pools.get(&key) else {
                continue;
            };
            if let Some((ids, region)) = self.group_for(pool, &id, now, fill_after) {
                let tickets = ids.iter().filter_map(|id| self.remove(id)).collect();
                out.push(Formed { tickets, region });
            }
        }
        out
    }

    /// Every ticket as an anchor: a full pass (tests, and the first pass).
    pub fn form_all(&mut self, now: Instant, fill_after: Duration) -> Vec<Formed> {
        let ids: Vec<String> = self.tickets.keys().cloned().collect();
        self.form(ids, now, fill_after, usize::MAX)
    }

    /// The oldest tickets of every pool of `mode` and room size
    /// `max_players` (at most `per_pool` each): the ones offered a backfill
    /// seat that opened.
    pub fn oldest_of(&self, mode: &str, max_players: u64, per_pool: usize) -> Vec<&Ticket> {
        let mut out = Vec::new();
        for (key, pool) in &self.pools {
            if key.mode != mode || key.max_players != max_players {
                continue;
            }
            out.extend(
                pool.by_age
                    .values()
                    .filter_map(|id| self.tickets.get(id))
                    .filter(|t| t.away.is_empty())
                    .take(per_pool),
            );
        }
        out.sort_by_key(|t| t.seq);
        out
    }

    /// Every ticket, for invariant checks.
    pub fn iter(&self) -> impl Iterator<Item = &Ticket> {
        self.tickets.values()
    }

    /// Recounts the indexes from the tickets.
    pub fn check(&self) -> Result<(), String> {
        let in_pools: usize = self.pools.values().map(|p| p.by_age.len()).sum();
        let by_skill: usize = self.pools.values().map(|p| p.by_skill.len()).sum();
        let players: usize = self.tickets.values().map(|t| t.players.len()).sum();
        let widening = self
            .tickets
            .values()
            .filter(|t| t.widens_until().is_some())
            .count();
        if widening != self.widening.len() {
            return Err(format!(
                "{} tickets widen, {} in the widening index",
                widening,
                self.widening.len()
            ));
        }
        if in_pools != self.tickets.len()
            || by_skill != self.tickets.len()
            || self.by_time.len() != self.tickets.len()
            || self.by_player.len() != players
        {
            return Err(format!(
                "ticket indexes out of step: {} tickets, {in_pools} by age, {by_skill} by skill, {} by time, {} players of {players}",
                self.tickets.len(),
                self.by_time.len(),
                self.by_player.len()
            ));
        }
        Ok(())
    }

    /// The group `anchor_id` would form now, if any: the anchor and the
    /// tickets in its window, in age order, while every rule holds.
    fn group_for(
        &self,
        pool: &Pool,
        anchor_id: &str,
        now: Instant,
        fill_after: Duration,
    ) -> Option<(Vec<String>, Option<String>)> {
        let anchor = self.tickets.get(anchor_id)?;
        if !anchor.away.is_empty() {
            return None;
        }
        let max = anchor.spec.max_players;
        let w = anchor.window(now);
        let candidates: Vec<&Ticket> = match anchor.spec.skill {
            Some(s) => {
                let lo = (Skill(s - w), 0);
                let hi = (Skill(s + w), u64::MAX);
                // The window's tickets nearest the anchor's skill first,
                // then in age order.
                let below = pool.by_skill.range(lo..(Skill(s), 0)).rev();
                let above = pool.by_skill.range((Skill(s), 0)..=hi);
                let mut c: Vec<&Ticket> = interleave(below, above, s)
                    .take(SCAN_CAP)
                    .filter_map(|id| self.tickets.get(id))
                    .collect();
                c.sort_by_key(|t| t.seq);
                c
            }
            None => pool
                .by_age
                .values()
                .take(SCAN_CAP)
                .filter_map(|id| self.tickets.get(id))
                .collect(),
        };
        let mut group = Group::new(anchor, now);
        for c in candidates {
            if group.size == max {
                break;
            }
            if c.id == anchor.id || !c.away.is_empty() {
                continue;
            }
            group.try_add(c, now, max);
        }
        group.done(max, now, fill_after)
    }
}

/// The ids of two runs of the skill order going away from `s` (one down,
/// one up), nearest first.
fn interleave<'a>(
    below: impl Iterator<Item = (&'a (Skill, u64), &'a String)>,
    above: impl Iterator<Item = (&'a (Skill, u64), &'a String)>,
    s: f64,
) -> impl Iterator<Item = &'a String> {
    let mut below = below.peekable();
    let mut above = above.peekable();
    std::iter::from_fn(move || {
        let take_below = match (below.peek(), above.peek()) {
            (Some(((b, _), _)), Some(((a, _), _))) => s - b.0 < a.0 - s,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let next = if take_below {
            below.next()
        } else {
            above.next()
        };
        next.map(|(_, id)| id)
    })
}

/// A group being built by [`TicketQueue::group_for`].
struct Group<'a> {
    members: Vec<&'a Ticket>,
    size: u64,
    lo: f64,
    hi: f64,
    /// The smallest window among the members.
    window: f64,
    /// Regions every member with regions accepts, with the worst RTT
    /// there; `None` while no member gave regions.
    regions: Option<BTreeMap<&'a str, f64>>,
}

impl<'a> Group<'a> {
    fn new(anchor: &'a Ticket, now: Instant) -> Self {
        let s = anchor.spec.skill.unwrap_or(0.0);
        Group {
            members: vec![anchor],
            size: anchor.size(),
            lo: s,
            hi: s,
            window: anchor.window(now),
            regions: anchor.acceptable_regions(),
        }
    }

    fn try_add(&mut self, c: &'a Ticket, now: Instant, max: u64) {
        if self.size + c.size() > max {
            return;
        }
        let s = c.spec.skill.unwrap_or(0.0);
        let (lo, hi) = (self.lo.min(s), self.hi.max(s));
        let window = self.window.min(c.window(now));
        if hi - lo > window {
            return;
        }
        let regions = match (&self.regions, c.acceptable_regions()) {
            (None, theirs) => theirs,
            (Some(ours), None) => Some(ours.clone()),
            (Some(ours), Some(theirs)) => Some(
                ours.iter()
                    .filter_map(|(r, worst)| theirs.get(r).map(|rtt| (*r, worst.max(*rtt))))
                    .collect(),
            ),
        };
        if regions.as_ref().is_some_and(|r| r.is_empty()) {
            return;
        }
        self.members.push(c);
        self.size += c.size();
        self.lo = lo;
        self.hi = hi;
        self.window = window;
        self.regions = regions;
    }

    /// The group's tickets (queue order) and region, if it may form now:
    /// full, or at least every member's `min_players` once the oldest has
    /// waited `fill_after`.
    fn done(
        mut self,
        max: u64,
        now: Instant,
        fill_after: Duration,
    ) -> Option<(Vec<String>, Option<String>)> {
        if self.regions.as_ref().is_some_and(|r| r.is_empty()) {
            return None;
        }
        self.members.sort_by_key(|t| t.seq);
        let oldest = self.members[0];
        let min = self
            .members
            .iter()
            .map(|t| t.spec.min_players)
            .max()
            .unwrap_or(max);
        let full = self.size == max;
        let filled =
            self.size >= min.max(2) && now.saturating_duration_since(oldest.queued) >= fill_after;
        if !(full || filled) {
            return None;
        }
        let region = self.regions.as_ref().and_then(|r| {
            r.iter()
                .min_by(|(n1, w1), (n2, w2)| w1.total_cmp(w2).then(n1.cmp(n2)))
                .map(|(name, _)| name.to_string())
        });
        Some((self.members.iter().map(|t| t.id.clone()).collect(), region))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn spec(skill: Option<f64>) -> TicketSpec {
        TicketSpec {
            mode: "m".into(),
            max_players: 2,
            min_players: 2,
            skill,
            skill_window: 100.0,
            skill_widen_per_s: 50.0,
            skill_window_max: 1000.0,
            regions: BTreeMap::new(),
            max_rtt_ms: 150.0,
            filters: JsonObject::new(),
            backfill: false,
        }
    }

    struct Q {
        q: TicketQueue,
        seq: u64,
        t0: Instant,
    }

    impl Q {
        fn new() -> Self {
            Q {
                q: TicketQueue::default(),
                seq: 0,
                t0: Instant::now(),
            }
        }

        fn add(&mut self, players: &[&str], spec: TicketSpec, at_ms: u64) -> String {
            self.seq += 1;
            let id = format!("t{}", self.seq);
            self.q.add(Ticket {
                id: id.clone(),
                players: players.iter().map(|p| p.to_string()).collect(),
                spec,
                seq: self.seq,
                queued: self.t0 + Duration::from_millis(at_ms),
                queued_at: Utc::now(),
                away: BTreeSet::new(),
                timer: None,
            });
            id
        }

        fn form(&mut self, at_ms: u64) -> Vec<Vec<String>> {
            self.q
                .form_all(self.t0 + Duration::from_millis(at_ms), FILL)
                .into_iter()
                .map(|f| f.tickets.into_iter().map(|t| t.id).collect())
                .collect()
        }
    }

    const FILL: Duration = Duration::from_millis(10_000);

    #[test]
    fn windows_widen_until_two_skills_meet() {
        let mut q = Q::new();
        let a = q.add(&["a"], spec(Some(1000.0)), 0);
        let b = q.add(&["b"], spec(Some(1250.0)), 0);
        assert!(q.form(0).is_empty(), "250 apart, windows of 100");
        assert!(q.form(2_000).is_empty(), "windows of 200 after 2 s");
        assert_eq!(q.form(3_000), vec![vec![a, b]], "windows of 250 after 3 s");
        assert!(q.q.is_empty());
    }

    #[test]
    fn skilled_and_unskilled_tickets_never_mix() {
        let mut q = Q::new();
        q.add(&["a"], spec(Some(1000.0)), 0);
        q.add(&["b"], spec(None), 0);
        assert!(q.form(60_000).is_empty());
        let c = q.add(&["c"], spec(None), 0);
        assert_eq!(q.form(0), vec![vec!["t2".to_string(), c]]);
    }

    #[test]
    fn oldest_first_and_parties_stay_whole() {
        let mut q = Q::new();
        let four = |s| TicketSpec {
            max_players: 4,
            min_players: 4,
            ..spec(s)
        };
        let a = q.add(&["a1", "a2"], four(None), 0);
        let b = q.add(&["b1"], four(None), 1);
        let c = q.add(&["c1", "c2"], four(None), 2);
        let d = q.add(&["d1"], four(None), 3);
        // a (2) + b (1) + c (2) would overflow: c waits, d completes.
        assert_eq!(q.form(5), vec![vec![a, b, d]]);
        assert_eq!(q.q.ticket_of("c2").map(|t| t.id.clone()), Some(c));
    }

    #[test]
    fn small_rooms_form_only_after_the_fill_delay() {
        let mut q = Q::new();
        let four = TicketSpec {
            max_players: 4,
            min_players: 2,
            ..spec(None)
        };
        let a = q.add(&["a"], four.clone(), 0);
        let b = q.add(&["b"], four, 0);
        assert!(q.form(9_999).is_empty());
        assert_eq!(q.form(10_000), vec![vec![a, b]]);
    }

    #[test]
    fn regions_pick_the_lowest_worst_rtt_within_every_limit() {
        let mut q = Q::new();
        let with = |rtts: &[(&str, f64)]| TicketSpec {
            regions: rtts.iter().map(|(r, t)| (r.to_string(), *t)).collect(),
            ..spec(None)
        };
        q.add(&["a"], with(&[("eu", 30.0), ("us", 90.0)]), 0);
        q.add(&["b"], with(&[("us", 40.0), ("asia", 20.0)]), 0);
        let formed = q.q.form_all(q.t0, FILL);
        assert_eq!(formed.len(), 1);
        assert_eq!(formed[0].region.as_deref(), Some("us"));

        let mut q = Q::new();
        q.add(&["a"], with(&[("eu", 30.0)]), 0);
        q.add(&["b"], with(&[("us", 40.0), ("eu", 151.0)]), 0);
        assert!(q.form(0).is_empty(), "eu is over b's limit");
        q.add(&["c"], spec(None), 0);
        let formed = q.q.form_all(q.t0, FILL);
        assert_eq!(formed.len(), 1, "a ticket without regions accepts any");
        assert_eq!(formed[0].region.as_deref(), Some("eu"));
    }

    #[test]
    fn away_players_hold_their_ticket_back() {
        let mut q = Q::new();
        q.add(&["a"], spec(None), 0);
        q.q.set_away("a", true);
        q.add(&["b"], spec(None), 0);
        assert!(q.form(0).is_empty());
        q.q.set_away("a", false);
        assert_eq!(q.form(0).len(), 1);
    }

    #[derive(Debug, Clone)]
    struct Arb {
        players: u64,
        skill: Option<u16>,
        max: u64,
        min: u64,
        regions: Vec<(u8, u16)>,
        at_ms: u64,
    }

    fn arb() -> impl Strategy<Value = Arb> {
        (
            1..=3u64,
            proptest::option::weighted(0.8, 0..3000u16),
            2..=4u64,
            2..=4u64,
            proptest::collection::vec((0..3u8, 0..300u16), 0..3),
            0..30_000u64,
        )
            .prop_map(|(players, skill, max, min, regions, at_ms)| Arb {
                players: players.min(max),
                skill,
                max,
                min: min.min(max),
                regions,
                at_ms,
            })
    }

    proptest! {
        /// Whatever arrives, every room formed holds each player once, fits
        /// its size, keeps every member's skill window and RTT limit at the
        /// moment it formed, and its tickets leave the queue.
        #[test]
        fn formed_rooms_keep_every_rule(tickets in proptest::collection::vec(arb(), 1..40), step in 100..5_000u64) {
            let mut q = Q::new();
            let mut arrivals = tickets.clone();
            arrivals.sort_by_key(|t| t.at_ms);
            let mut seen_players = BTreeSet::new();
            let mut n = 0;
            let mut now = 0;
            let mut next = 0;
            while now <= 40_000 {
                while next < arrivals.len() && arrivals[next].at_ms <= now {
                    let a = &arrivals[next];
                    let players: Vec<String> = (0..a.players).map(|i| format!("p{n}_{i}")).collect();
                    n += 1;
                    let refs: Vec<&str> = players.iter().map(String::as_str).collect();
                    let s = TicketSpec {
                        max_players: a.max,
                        min_players: a.min,
                        skill: a.skill.map(f64::from),
                        regions: a.regions.iter().map(|(r, t)| (format!("r{r}"), f64::from(*t))).collect(),
                        ..spec(None)
                    };
                    q.add(&refs, s, a.at_ms);
                    next += 1;
                }
                let at = q.t0 + Duration::from_millis(now);
                for f in q.q.form_all(at, FILL) {
                    let max = f.tickets[0].spec.max_players;
                    let size: u64 = f.tickets.iter().map(|t| t.players.len() as u64).sum();
                    prop_assert!(size <= max);
                    let min = f.tickets.iter().map(|t| t.spec.min_players).max().unwrap();
                    prop_assert!(size == max || (size >= min && at.duration_since(f.tickets[0].queued) >= FILL));
                    for t in &f.tickets {
                        prop_assert_eq!(PoolKey::of(&t.spec), PoolKey::of(&f.tickets[0].spec));
                        for p in &t.players {
                            prop_assert!(seen_players.insert(p.clone()), "{} seated twice", p);
                            prop_assert!(q.q.ticket_of(p).is_none());
                        }
                    }
                    let skills: Vec<f64> = f.tickets.iter().filter_map(|t| t.spec.skill).collect();
                    if let (Some(lo), Some(hi)) = (skills.iter().copied().reduce(f64::min), skills.iter().copied().reduce(f64::max)) {
                        let w = f.tickets.iter().map(|t| t.window(at)).fold(f64::INFINITY, f64::min);
                        prop_assert!(hi - lo <= w, "spread {} over window {}", hi - lo, w);
                    }
                    if let Some(region) = &f.region {
                        for t in &f.tickets {
                            if !t.spec.regions.is_empty() {
                                let rtt = t.spec.regions.get(region);
                                prop_assert!(rtt.is_some_and(|r| *r <= t.spec.max_rtt_ms));
                            }
                        }
                    } else {
                        prop_assert!(f.tickets.iter().all(|t| t.spec.regions.is_empty()));
                    }
                    prop_assert!(f.tickets.windows(2).all(|w| w[0].seq < w[1].seq), "queue order");
                }
                now += step;
            }
        }
    }
}
