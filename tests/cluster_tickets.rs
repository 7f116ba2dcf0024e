//! The proof of ticket matchmaking in cluster mode: hundreds of players,
//! spread round-robin over three server processes sharing one
//! redis-server, send `queue_match` all at once, and exactly the rooms the
//! workload implies form. The workloads are chosen so that the expected
//! rooms are known in advance: 1 000 tickets of 4-player rooms in 250 skill
//! groups of 4 tickets each, so far apart that no window can reach a
//! neighbour group (each group must become one room, whatever the order in
//! which the nodes run their scripts), and 300 tickets without skill for
//! 2-player rooms (any pairing, but exactly 150 rooms). Every player must get
//! exactly one `game_start` with its own ticket, no player may sit in two
//! rooms, and the cluster-wide stats must agree on every node.

mod support;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use futures_util::future::join_all;
use rendezvous::client::{Client, ClientError};
use serde_json::{json, Value};
use support::*;
use tokio::time::Instant;

const NODES: usize = 3;
/// Every test body runs under this limit: a node that hangs fails the
/// test (and the guards stop every process) instead of hanging the run.
const TEST_LIMIT: Duration = Duration::from_secs(150);
/// How long, from the moment every ticket is queued, all `game_start`s may
/// take: generous for a 2-core machine shared with builds.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long nothing more may arrive once every room formed.
const QUIET: Duration = Duration::from_secs(1);
/// Clients connected at once while the crowd is built.
const CONNECT_BATCH: usize = 50;
/// Skill groups are this far apart; windows are capped at 100.
const SKILL_STEP: f64 = 10_000.0;

/// Each test starts three nodes and hundreds of clients: on a small machine
/// they run one at a time (a tokio mutex: no poisoning, usable across the
/// tests' runtimes).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {limit:?}"))
}

/// A workload: `players` tickets of `max_players`-seat rooms in `mode`;
/// with `skill_groups`, player `i` has skill `(i % skill_groups) * SKILL_STEP`.
struct Wave {
    players: usize,
    max_players: usize,
    mode: &'static str,
    skill_groups: Option<usize>,
}

impl Wave {
    fn skill(&self, i: usize) -> Option<f64> {
        self.skill_groups.map(|g| (i % g) as f64 * SKILL_STEP)
    }

    fn ticket(&self, i: usize) -> Value {
        let mut t = json!({"mode": self.mode, "max_players": self.max_players});
        if let Some(s) = self.skill(i) {
            t["skill"] = json!(s);
            t["skill_window"] = json!(100);
            t["skill_window_max"] = json!(100);
        }
        t
    }

    fn rooms(&self) -> usize {
        self.players / self.max_players
    }
}

/// A redis-server and three nodes on it; dropped, every process stops.
struct Cluster {
    _redis: RedisServer,
    _nodes: Vec<ChildGuard>,
    addrs: Vec<String>,
}

fn cluster() -> Cluster {
    let redis = RedisServer::start();
    let (nodes, addrs) = (0..NODES)
        .map(|k| spawn_node(&redis.url(), &format!("node-{k}"), &[]))
        .unzip();
    Cluster {
        _redis: redis,
        _nodes: nodes,
        addrs,
    }
}

/// `n` clients, client `i` on node `i % 3`, connected `CONNECT_BATCH` at a
/// time. No reconnection: a dropped connection shows as a missing event.
async fn crowd(c: &Cluster, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    let ids: Vec<usize> = (0..n).collect();
    for batch in ids.chunks(CONNECT_BATCH) {
        let connected = join_all(batch.iter().map(|&i| {
            let addr = &c.addrs[i % NODES];
            async move {
                client_at_with(addr, &format!("name=p{i}"), no_reconnect())
                    .await
                    .unwrap_or_else(|e| panic!("client p{i} connects to {addr}: {e}"))
            }
        }))
        .await;
        clients.extend(connected);
    }
    clients
}

/// The first `game_start` of `c` and the types of the events before it,
/// or what came instead, by `deadline`.
async fn first_game_start(c: &Client, deadline: Instant) -> Result<(Value, Vec<String>), String> {
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event_within(left).await {
            Ok(ev) if ev["type"] == "game_start" => return Ok((ev, before)),
            Ok(ev) => before.push(ev.to_string()),
            Err(e) => {
                return Err(format!(
                    "{}: {e} (events before: {before:?})",
                    c.player_id()
                ))
            }
        }
    }
}

/// Every event `c` receives within `wait`.
async fn drain(c: &Client, wait: Duration) -> Vec<Value> {
    let deadline = Instant::now() + wait;
    let mut evs = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.next_event_within(left).await {
            Ok(ev) => evs.push(ev),
            Err(ClientError::Timeout(_)) => return evs,
            Err(e) => panic!("{}: {e} after {evs:?}", c.player_id()),
        }
    }
}

fn player_ids(room: &Value) -> Vec<String> {
    room["players"]
        .as_array()
        .unwrap_or_else(|| panic!("no players in {room}"))
        .iter()
        .map(|p| p["player_id"].as_str().expect("player_id").to_string())
        .collect()
}

/// Runs `wave` on a fresh cluster and checks everything the protocol
/// promises about the rooms it forms.
async fn run(wave: Wave) {
    let cl = cluster();
    let began = Instant::now();
    let clients = within(
        Duration::from_secs(60),
        "connecting",
        crowd(&cl, wave.players),
    )
    .await;
    let connected = began.elapsed();
    let index: HashMap<&str, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c.player_id(), i))
        .collect();
    assert_eq!(index.len(), wave.players, "player ids are unique");

    // Every ticket at once, on all three nodes.
    let queued_at = Instant::now();
    let replies = join_all(
        clients
            .iter()
            .enumerate()
            .map(|(i, c)| c.queue_match(wave.ticket(i))),
    )
    .await;
    let mut tickets = Vec::with_capacity(wave.players);
    for (c, r) in clients.iter().zip(replies) {
        let t = r.unwrap_or_else(|e| panic!("queue_match of {}: {e:?}", c.player_id()));
        assert_eq!(t.players, [c.player_id()], "a ticket of one player");
        tickets.push(t.ticket_id);
    }
    let distinct: HashSet<&String> = tickets.iter().collect();
    assert_eq!(distinct.len(), wave.players, "ticket ids are unique");
    let replied = queued_at.elapsed();

    let deadline = Instant::now() + START_LIMIT;
    let starts = join_all(clients.iter().map(|c| first_game_start(c, deadline))).await;
    let started = queued_at.elapsed();
    let missing: Vec<&String> = starts.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        missing.is_empty(),
        "{} of {} players got no game_start within {START_LIMIT:?}; first ones: {:?}",
        missing.len(),
        wave.players,
        &missing[..missing.len().min(5)]
    );

    // Group the players by the room their game_start names.
    let mut rooms: HashMap<String, (Value, Vec<usize>)> = HashMap::new();
    for (i, r) in starts.into_iter().enumerate() {
        let (ev, before) = r.unwrap();
        let pid = clients[i].player_id();
        assert!(
            before.is_empty(),
            "{pid}: events before game_start: {before:?}"
        );
        assert_eq!(
            ev["ticket_id"],
            tickets[i].as_str(),
            "{pid}'s own ticket: {ev}"
        );
        let room = &ev["room"];
        let id = room["room_id"].as_str().unwrap_or_else(|| panic!("{ev}"));
        let entry = rooms
            .entry(id.to_string())
            .or_insert_with(|| (room.clone(), Vec::new()));
        assert_eq!(
            player_ids(&entry.0),
            player_ids(room),
            "every member of {id} is told the same players"
        );
        entry.1.push(i);
    }
    assert_eq!(rooms.len(), wave.rooms(), "rooms formed");
    let mut seated = HashSet::new();
    for (id, (room, told)) in &rooms {
        assert_eq!(room["status"], "active", "{room}");
        assert_eq!(room["mode"], wave.mode, "{room}");
        assert_eq!(room["max_players"], wave.max_players, "{room}");
        let ids = player_ids(room);
        assert_eq!(ids.len(), wave.max_players, "a full room: {room}");
        assert_eq!(
            room["host"],
            ids[0].as_str(),
            "the oldest ticket hosts: {room}"
        );
        let members: Vec<usize> = ids
            .iter()
            .map(|p| {
                *index
                    .get(p.as_str())
                    .unwrap_or_else(|| panic!("{p} is no client"))
            })
            .collect();
        for &m in &members {
            assert!(seated.insert(m), "p{m} sits in two rooms (one is {id})");
        }
        let mut listed = members.clone();
        listed.sort_unstable();
        let mut told = told.clone();
        told.sort_unstable();
        assert_eq!(
            listed, told,
            "{id}: its players are exactly those told of it"
        );
        let skills: HashSet<String> = members
            .iter()
            .map(|&m| format!("{:?}", wave.skill(m)))
            .collect();
        assert_eq!(skills.len(), 1, "{id} mixes skills {skills:?}: {room}");
    }
    assert_eq!(seated.len(), wave.players, "every player has a seat");

    // The cluster-wide counts, the same on every node.
    let rooms_n = wave.rooms() as u64;
    let want = json!({
        "tickets_queued": 0,
        "total_rooms": rooms_n,
        "waiting_rooms": 0,
        "active_rooms": rooms_n,
        "finished_rooms": 0,
        "total_players": wave.players,
        "players_waiting": 0,
        "held_seats": 0,
        "matches_started": rooms_n,
        "connections": wave.players,
    });
    for addr in &cl.addrs {
        let url = format!("http://{addr}/api/stats");
        let (status, s) = within(Duration::from_secs(5), "stats", http_get(&url)).await;
        assert_eq!(status, 200, "{s}");
        for (k, v) in want.as_object().unwrap() {
            assert_eq!(&s[k], v, "{k} on {addr}: {s}");
        }
    }

    // Nothing more: no second game_start, no expiry, no error.
    let late = join_all(clients.iter().map(|c| drain(c, QUIET))).await;
    for (c, evs) in clients.iter().zip(late) {
        assert!(
            evs.is_empty(),
            "{} got more after its game_start: {evs:?}",
            c.player_id()
        );
    }
    eprintln!(
        "{} players over {NODES} nodes: connected in {connected:?}, every queue_match \
         answered in {replied:?}, every game_start in {started:?}; {} rooms of {}",
        wave.players,
        rooms.len(),
        wave.max_players
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_tickets_over_three_nodes_form_exactly_the_skill_groups() {
    let wave = Wave {
        players: 1000,
        max_players: 4,
        mode: "m",
        skill_groups: Some(250),
    };
    let _serial = SERIAL.lock().await;
    within(TEST_LIMIT, "test", run(wave)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_unskilled_tickets_over_three_nodes_form_exactly_150_duels() {
    let wave = Wave {
        players: 300,
        max_players: 2,
        mode: "duel",
        skill_groups: None,
    };
    let _serial = SERIAL.lock().await;
    within(TEST_LIMIT, "test", run(wave)).await;
}
