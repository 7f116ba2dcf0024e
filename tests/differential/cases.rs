//! Fixed cases through the same harness: one per difference between the
//! engines that the random search found (each fails until the engines
//! agree), and a few sequences the random steps reach rarely or cannot
//! (idle rooms, pipelined requests, the close handshake).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::steps::{CodeRef, Payload, PlayerRef, Req, RoomRef, Step};
use crate::world::World;
use crate::{run_case, Pair};

async fn check(n: usize, steps: Vec<Step>) {
    check_with(n, steps, &[]).await
}

/// Runs a fixed case; one cut short by a slow step (a loaded machine) is
/// run again, a few times at most.
async fn check_with(n: usize, steps: Vec<Step>, extra: &[&str]) {
    for _ in 0..3 {
        match run_case(n, &steps, extra).await {
            Ok(true) => return,
            Ok(false) => continue,
            Err(report) => panic!("{report}"),
        }
    }
    panic!("inconclusive three times: steps outlasted the timers' margins (machine too loaded?)");
}

fn find(max: Option<&'static str>, filters: Option<&'static str>) -> Req {
    Req::FindMatch {
        max,
        mode: None,
        filters,
        backfill: None,
        max_spectators: None,
        start_when_ready: None,
    }
}

fn create(max: Option<&'static str>, data: Option<&'static str>) -> Req {
    Req::CreateRoom {
        private: None,
        max,
        mode: None,
        data,
        allowed: None,
        backfill: None,
        max_spectators: None,
        start_when_ready: None,
    }
}

/// JSON data over the 16 KiB limit of room and player data.
fn oversized() -> &'static str {
    Box::leak(format!("{{\"x\":\"{}\"}}", "a".repeat(17_000)).into_boxed_str())
}

use Step::Send;

// ----- which check comes first: state or validation -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seated_find_match_with_bad_filters() {
    check(
        2,
        vec![
            Send(0, find(None, None)),
            Send(0, find(None, Some("{\"deep\":{\"x\":1}}"))),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seated_find_match_with_bad_max_players() {
    check(
        2,
        vec![
            Send(0, find(Some("3"), None)),
            Send(0, find(Some("1"), None)),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seated_create_room_with_bad_max_players() {
    check(
        2,
        vec![
            Send(0, find(None, None)),
            Send(0, create(Some("1000"), None)),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseated_chat_with_blank_text() {
    check(2, vec![Send(0, Req::Chat("\"   \""))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_host_set_room_data_oversized() {
    let big = oversized();
    check(
        2,
        vec![
            Send(0, find(Some("3"), None)),
            Send(1, find(Some("3"), None)),
            Send(1, Req::SetRoomData(Some(big))),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseated_set_player_data_oversized() {
    check(2, vec![Send(0, Req::SetPlayerData(Some(oversized())))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seated_join_room_with_an_overlong_id() {
    let id = RoomRef::Bad("0123456789012345678901234567890123456789012345678901234567890123456789");
    check(
        2,
        vec![Send(0, find(None, None)), Send(0, Req::JoinById(id))],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseated_join_room_with_an_overlong_id() {
    let id = RoomRef::Bad("0123456789012345678901234567890123456789012345678901234567890123456789");
    check(2, vec![Send(0, Req::JoinById(id))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseated_signal_to_an_overlong_id() {
    let to = PlayerRef::Bad(Box::leak("p".repeat(300).into_boxed_str()));
    let payload = Payload::Candidate { object: false };
    let signal = Req::Signal {
        kind: "ice_candidate",
        to,
        payload,
        rid: true,
    };
    check(2, vec![Send(0, signal)]).await;
}

// ----- error messages -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_of_an_id_with_quotes() {
    let kick = Req::Kick(PlayerRef::Bad("p_\"quoted\""));
    check(
        2,
        vec![
            Send(0, find(Some("3"), None)),
            Send(1, find(Some("3"), None)),
            Send(0, kick),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_room_by_an_id_with_quotes() {
    check(2, vec![Send(0, Req::JoinById(RoomRef::Bad("r\"q")))]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_room_by_an_unknown_lower_case_code() {
    check(2, vec![Send(0, Req::JoinByCode(CodeRef::Bad("zzzzzz")))]).await;
}

// ----- room listings -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_listed_comes_after_the_reply_and_the_change() {
    check(
        2,
        vec![
            Send(0, Req::SubscribeRooms(None)),
            Send(0, find(None, None)),
        ],
    )
    .await;
}

/// A change that leaves the public view of a room as it was (same player
/// data again) is no `room_updated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_room_updated_when_nothing_visible_changed() {
    check(
        3,
        vec![
            Send(0, Req::SubscribeRooms(None)),
            Send(2, find(None, None)),
            Send(2, Req::SetPlayerData(Some("{}"))),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rooms_with_limit_zero() {
    let list = Req::List {
        status: None,
        mode: None,
        limit: Some("0"),
    };
    check(2, vec![Send(0, find(None, None)), Send(1, list)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_rooms_with_an_empty_mode() {
    let list = Req::List {
        status: None,
        mode: Some("\"\""),
        limit: None,
    };
    check(2, vec![Send(0, find(None, None)), Send(1, list)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_rooms_with_an_empty_mode() {
    check(
        2,
        vec![
            Send(0, find(None, None)),
            Send(1, Req::SubscribeRooms(Some("\"\""))),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_room_list_with_limit_zero_or_an_empty_mode() {
    let mut pair = Pair::start(2, &[]).await;
    let r = pair.run(&[Send(0, find(None, None))]).await;
    let mut differ = Vec::new();
    for path in ["/api/rooms?limit=0", "/api/rooms?mode="] {
        let (a, b) = tokio::join!(
            pair.mem.http("GET", path, None),
            pair.clu.http("GET", path, None)
        );
        let rooms = |t: &str| {
            serde_json::from_str::<serde_json::Value>(t)
                .map(|v| v["rooms"].as_array().map(Vec::len))
        };
        if (a.0, rooms(&a.1).ok()) != (b.0, rooms(&b.1).ok()) {
            differ.push(format!("GET {path}: in memory {a:?}\n  cluster {b:?}"));
        }
    }
    pair.stop().await;
    r.unwrap();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

// ----- timers, pipelining, the close handshake -----

/// Idle waiting rooms close after `--room-idle-timeout-ms` without
/// activity; a chat line is activity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_rooms_close_alike() {
    let steps = vec![
        Send(0, create(Some("3"), None)),
        Send(1, Req::JoinById(RoomRef::Known(0))),
        Send(2, create(Some("3"), Some("{\"map\":\"b\"}"))),
        Step::Sleep(500),
        Send(1, Req::Chat("\"still here\"")),
        Step::Sleep(550),
        Step::Sleep(700),
    ];
    check_with(3, steps, &["--room-idle-timeout-ms", "800"]).await;
}

/// Replies come in the order of the requests even when a client does not
/// wait: a reply that travels with its change's notice (cluster mode) is
/// not overtaken by one sent at once (`ping`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_replies_keep_their_order() {
    for cluster in [false, true] {
        let w = World::start(cluster, 1, &[]).await;
        let url = format!("ws://{}/ws", w.server.as_ref().expect("running").addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connects");
        ws.next().await;
        for k in 0..100u64 {
            let req = if k % 2 == 0 {
                "create_room"
            } else {
                "leave_room"
            };
            for (kind, rid) in [(req, 2 * k), ("ping", 2 * k + 1)] {
                let text = format!("{{\"type\":\"{kind}\",\"rid\":{rid}}}");
                ws.send(Message::Text(text.into())).await.expect("send");
            }
            let mut rids = Vec::new();
            while rids.len() < 2 {
                let Some(Ok(Message::Text(t))) = ws.next().await else {
                    panic!("connection ended")
                };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                if v["type"] == "ok" || v["type"] == "error" {
                    rids.push(v["rid"].as_u64().expect("rid"));
                }
            }
            assert_eq!(rids, [2 * k, 2 * k + 1], "cluster mode: {cluster}");
        }
        w.stop().await;
    }
}

/// A client's close frame is answered at once in both modes (the seat's
/// grace starts when the server notices; a client should not hang): with
/// the server's own close frame, sent when the session's last frames are
/// out. Not timed against the machine: when something keeps the session's
/// queue open, the server gives up after its linger (1 s) and ends the
/// socket without a close frame, which this tells apart at any speed. The
/// 10 s bound only catches a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_is_answered_promptly() {
    for cluster in [false, true] {
        let w = World::start(cluster, 1, &[]).await;
        let url = format!("ws://{}/ws", w.server.as_ref().expect("running").addr);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("connects");
        ws.next().await;
        ws.send(Message::Close(None)).await.expect("close sent");
        let answer = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => continue,
                    other => return Err(format!("{other:?}")),
                }
            }
        };
        let answer = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .unwrap_or_else(|_| panic!("cluster mode {cluster}: no answer within 10 s"));
        if let Err(end) = answer {
            panic!(
                "cluster mode {cluster}: the socket ended ({end}) without the server's close frame"
            );
        }
        // Then the connection ends cleanly.
        let end = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the end within 10 s");
        assert!(
            end.is_none(),
            "cluster mode {cluster}: after the close: {end:?}"
        );
        w.stop().await;
    }
}

// ----- paths the random steps reach rarely (players seldom share a room
// while both are connected): relayed and held signals, kicks -----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_relayed_and_held_alike() {
    let sig = |kind, to, payload, rid| Req::Signal {
        kind,
        to: PlayerRef::Slot(to),
        payload,
        rid,
    };
    let offer = Payload::Sdp("chromium-offer-datachannel.sdp");
    let answer = Payload::Sdp("firefox-answer-datachannel.sdp");
    let steps = vec![
        Send(0, find(Some("3"), None)),
        Send(1, find(Some("3"), None)),
        Send(0, sig("offer", 1, offer, true)),
        Send(1, sig("answer", 0, answer, true)),
        Send(
            0,
            sig(
                "ice_candidate",
                1,
                Payload::Candidate { object: true },
                false,
            ),
        ),
        Send(
            0,
            sig(
                "ice_candidate",
                1,
                Payload::Field("\"candidate:bad\""),
                true,
            ),
        ),
        Send(
            0,
            sig("offer", 1, Payload::Field("\"v=0\\r\\nnot an sdp\""), true),
        ),
        Step::Drop(1),
        Send(0, sig("offer", 1, offer, true)),
        Send(
            0,
            sig(
                "ice_candidate",
                1,
                Payload::Candidate { object: false },
                false,
            ),
        ),
        Send(0, Req::Chat("\"while you were away\"")),
        Step::Resume(1),
        Send(1, sig("ice_candidate", 0, Payload::Field("\"\""), true)),
        Send(2, sig("offer", 0, offer, true)),
    ];
    check(3, steps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_host_changes_and_admin_calls_alike() {
    let steps = vec![
        Send(0, create(Some("4"), Some("{\"map\":\"a\"}"))),
        Send(1, Req::JoinById(RoomRef::Known(0))),
        Send(2, Req::JoinById(RoomRef::Known(0))),
        Send(0, Req::Kick(PlayerRef::Slot(1))),
        Send(1, Req::JoinById(RoomRef::Known(0))),
        Send(1, find(Some("4"), Some("{\"map\":\"a\"}"))),
        Send(0, Req::Leave),
        Send(2, Req::Start),
        Send(1, Req::JoinById(RoomRef::Known(0))),
        Send(2, Req::Start),
        Send(2, Req::Finish(Some("{\"winner\":\"ann\"}"))),
        Step::AdminCloseRoom(RoomRef::Known(1)),
        Step::AdminDisconnect(PlayerRef::Slot(2)),
        Step::WaitTimers,
        Step::Resume(2),
    ];
    check(3, steps).await;
}

// ----- backfill -----

fn find_backfill(filters: Option<&'static str>) -> Req {
    Req::FindMatch {
        max: Some("2"),
        mode: None,
        filters,
        backfill: Some("true"),
        max_spectators: None,
        start_when_ready: None,
    }
}

/// A backfill room that loses a player mid-game is offered first, before
/// an older waiting room; filters and kicks still apply; a refilled full
/// room does not start again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_rooms_are_refilled_first() {
    check(
        5,
        vec![
            // An older waiting room (player 4 alone in it).
            Send(4, find(Some("2"), None)),
            Send(0, create(Some("3"), None)),
            Send(0, Req::Leave),
            // A backfill game of 2, started.
            Send(0, find_backfill(Some("{\"map\":\"a\"}"))),
            Send(1, find_backfill(Some("{\"map\":\"a\"}"))),
            Send(1, Req::Leave),
            // Another filter does not fit it; the same one does, before
            // player 4's waiting room.
            Send(2, find(Some("2"), Some("{\"map\":\"b\"}"))),
            Send(3, find(Some("2"), Some("{\"map\":\"a\"}"))),
            Send(3, Req::Leave),
            Send(1, find(Some("2"), None)),
        ],
    )
    .await;
}

// ----- spectators -----

fn create_watched(max: &'static str, places: &'static str) -> Req {
    Req::CreateRoom {
        private: None,
        max: Some(max),
        mode: None,
        data: None,
        allowed: None,
        backfill: None,
        max_spectators: Some(places),
        start_when_ready: None,
    }
}

fn spectate(room: usize) -> Req {
    Req::JoinAs(RoomRef::Known(room), "\"spectator\"")
}

fn offer(to: usize) -> Req {
    Req::Signal {
        kind: "offer",
        to: PlayerRef::Slot(to),
        payload: Payload::Sdp("chromium-offer-datachannel.sdp"),
        rid: true,
    }
}

/// A watched game: spectators join before and after players, hear the
/// events and chat, signal players (not each other), have no player data,
/// can be kicked, drop and come back silently, and are dismissed when the
/// last player leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spectators_watch_a_game() {
    check(
        4,
        vec![
            Send(0, create_watched("2", "2")),
            Send(2, spectate(0)),
            Send(1, Req::JoinAs(RoomRef::Known(0), "\"player\"")),
            Send(3, spectate(0)),
            Send(3, Req::Chat("\"hello from the stands\"")),
            Send(3, Req::SetPlayerData(Some("{\"x\":1}"))),
            Send(2, offer(0)),
            Send(0, offer(2)),
            Send(2, offer(3)),
            Send(1, spectate(0)),
            Send(0, Req::Kick(PlayerRef::Slot(3))),
            Send(3, spectate(0)),
            Step::Drop(2),
            Step::Resume(2),
            Send(0, Req::Finish(Some("{\"winner\":\"ann\"}"))),
            Send(1, Req::Leave),
            Send(0, Req::Leave),
            Send(2, Req::Leave),
        ],
    )
    .await;
}

/// Places run out (`room_full`), rooms without places refuse, `as` must
/// be player or spectator, a spectator's grace runs out like a seat's, and
/// an admin close dismisses the spectators too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spectator_places_graces_and_closes() {
    check(
        5,
        vec![
            Send(0, create_watched("3", "1")),
            Send(1, spectate(0)),
            Send(2, spectate(0)),
            Send(2, Req::JoinAs(RoomRef::Known(0), "\"ghost\"")),
            Send(2, Req::JoinAs(RoomRef::Known(0), "1")),
            Send(3, create(Some("2"), None)),
            Send(2, spectate(1)),
            Send(4, Req::JoinById(RoomRef::Known(0))),
            Step::Drop(1),
            Step::WaitTimers,
            Send(2, spectate(0)),
            Send(4, Req::Chat("\"ok\"")),
            Step::AdminCloseRoom(RoomRef::Known(0)),
            Send(2, Req::Leave),
        ],
    )
    .await;
}

fn queue(
    max: Option<&'static str>,
    skill: Option<&'static str>,
    regions: Option<&'static str>,
    backfill: Option<&'static str>,
) -> Req {
    Req::QueueMatch {
        max,
        min: None,
        mode: None,
        skill,
        regions,
        filters: None,
        backfill,
    }
}

/// Tickets (1.1) in both engines: refusals, skills that match and one that
/// never does, regions, a player who drops while queued and comes back,
/// a grace that runs out under a ticket, cancel, and a backfill seat taken
/// by a ticket. Webhook events of the formed rooms are compared at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_form_alike() {
    check(
        5,
        vec![
            Send(0, queue(Some("1"), None, None, None)),
            Send(0, queue(Some("2"), Some("\"x\""), None, None)),
            Send(0, queue(Some("2"), None, Some("{\"eu west\":1}"), None)),
            Send(4, Req::CancelMatch),
            Send(0, queue(Some("2"), Some("1000"), None, None)),
            Send(0, queue(Some("2"), Some("1000"), None, None)),
            Send(0, find(Some("2"), None)),
            Send(1, queue(Some("2"), Some("5000"), None, None)),
            Send(2, queue(Some("2"), Some("1050"), None, None)),
            Send(3, queue(Some("2"), None, Some("{\"eu\":151}"), None)),
            Send(
                4,
                queue(Some("2"), None, Some("{\"us\":40,\"eu\":200}"), None),
            ),
            Send(1, Req::CancelMatch),
            Send(1, Req::CancelMatch),
            Step::Drop(3),
            Send(1, queue(Some("2"), None, Some("{\"eu\":30}"), None)),
            Step::Resume(3),
            Send(3, Req::CancelMatch),
            Send(3, queue(Some("2"), None, None, Some("true"))),
            Step::Drop(3),
            Step::WaitTimers,
            Send(0, Req::Leave),
            Send(2, Req::Leave),
            Send(0, queue(Some("2"), None, None, Some("true"))),
            Send(2, queue(Some("2"), None, None, Some("true"))),
            Send(2, Req::Leave),
            Send(3, queue(Some("2"), None, None, Some("true"))),
        ],
    )
    .await;
}

/// Parties (1.1) in both engines: create, join by code (one in lower case),
/// full, a leader's ticket for the whole party with a solo ticket, a
/// member's refused requests, a membership change cancelling the party's
/// ticket, the leader's find_match seating everyone, a drop and a grace
/// that runs out under a member, and the leader leaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_alike() {
    let code = |index| CodeRef::Known {
        index,
        lower: false,
    };
    check(
        5,
        vec![
            Send(0, Req::CreateParty(Some("3"))),
            Send(0, Req::CreateParty(None)),
            Send(1, Req::JoinParty(code(0))),
            Send(
                2,
                Req::JoinParty(CodeRef::Known {
                    index: 0,
                    lower: true,
                }),
            ),
            Send(3, Req::JoinParty(code(0))),
            Send(3, Req::JoinParty(CodeRef::Bad("ZZZZZZ"))),
            Send(1, queue(Some("4"), None, None, None)),
            Send(1, find(Some("4"), None)),
            Send(0, queue(Some("2"), None, None, None)),
            Send(0, queue(Some("4"), None, None, None)),
            Send(1, Req::CancelMatch),
            Send(2, Req::LeaveParty),
            Send(0, queue(Some("4"), None, None, None)),
            Send(0, Req::CancelMatch),
            Send(0, queue(Some("3"), None, None, Some("true"))),
            Send(3, queue(Some("3"), None, None, None)),
            Send(3, Req::CancelMatch),
            Send(2, queue(Some("3"), None, None, None)),
            Send(0, Req::Leave),
            Send(1, Req::Leave),
            Send(2, Req::Leave),
            Send(0, find(Some("4"), None)),
            Send(3, find(Some("4"), None)),
            Step::Drop(1),
            Step::WaitTimers,
            Send(0, Req::LeaveParty),
            Send(4, Req::LeaveParty),
        ],
    )
    .await;
}

// ----- ready checks (1.2) -----

fn create_when_ready(max: &'static str) -> Req {
    Req::CreateRoom {
        private: None,
        max: Some(max),
        mode: None,
        data: None,
        allowed: None,
        backfill: None,
        max_spectators: Some("1"),
        start_when_ready: Some("true"),
    }
}

fn ready(v: &'static str) -> Req {
    Req::SetReady(Some(v))
}

/// Ready flags change and are told once, a spectator cannot be ready, bad
/// values are refused, a dropped player keeps its flag, and the room starts
/// when the last seated player is ready, or when a player who was not
/// leaves or is kicked, or when its held seat runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_checks_start_rooms() {
    check(
        5,
        vec![
            Send(0, ready("true")),
            Send(0, create_when_ready("4")),
            Send(1, Req::JoinById(RoomRef::Known(0))),
            Send(2, Req::JoinById(RoomRef::Known(0))),
            Send(3, spectate(0)),
            Send(3, ready("true")),
            Send(0, ready("1")),
            Send(0, Req::SetReady(None)),
            Send(0, ready("true")),
            Send(0, ready("true")),
            Send(1, ready("true")),
            Step::Drop(1),
            Step::Resume(1),
            Send(2, ready("false")),
            Send(0, Req::Kick(PlayerRef::Slot(2))),
            Send(0, ready("false")),
            // A second room: the host leaves, the rest are ready.
            Send(0, Req::Leave),
            Send(1, Req::Leave),
            Send(3, Req::Leave),
            Send(2, create_when_ready("3")),
            Send(3, Req::JoinById(RoomRef::Known(1))),
            Send(4, Req::JoinById(RoomRef::Known(1))),
            Send(3, ready("true")),
            Send(4, ready("true")),
            Send(2, Req::Leave),
            // A third: a held seat that was not ready runs out.
            Send(3, Req::Leave),
            Send(4, Req::Leave),
            Send(0, create_when_ready("3")),
            Send(1, Req::JoinById(RoomRef::Known(2))),
            Send(2, Req::JoinById(RoomRef::Known(2))),
            Send(0, ready("true")),
            Send(1, ready("true")),
            Step::Drop(2),
            Step::WaitTimers,
        ],
    )
    .await;
}

// ----- room messages (1.2) -----

fn send_msg(to: Option<usize>, data: &'static str, rid: bool) -> Req {
    Req::SendMsg {
        to: to.map(PlayerRef::Slot),
        data: Some(data),
        rid,
    }
}

/// Messages to one member and to the room, with and without `rid`, from
/// players and spectators, to a held seat (kept for its resume), and every
/// refusal: not in a room, no such member, a spectator's `to`, too large.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_alike() {
    check(
        4,
        vec![
            Send(0, send_msg(None, "1", true)),
            Send(0, create_watched("3", "2")),
            Send(1, Req::JoinById(RoomRef::Known(0))),
            Send(3, spectate(0)),
            Send(0, send_msg(Some(1), "{\"move\":4}", true)),
            Send(0, send_msg(None, "[1,2,3]", false)),
            Send(3, send_msg(None, "\"cheer\"", true)),
            Send(3, send_msg(Some(0), "1", true)),
            Send(1, send_msg(Some(3), "null", true)),
            Send(0, send_msg(Some(2), "1", true)),
            Send(0, send_msg(Some(0), "1", false)),
            Send(0, send_msg(None, crate::steps::oversized_data(), true)),
            Send(
                0,
                Req::SendMsg {
                    to: None,
                    data: None,
                    rid: true,
                },
            ),
            Step::Drop(1),
            Send(0, send_msg(None, "\"while away\"", true)),
            Send(0, send_msg(Some(1), "2", false)),
            Step::Resume(1),
            Send(1, send_msg(None, "\"back\"", true)),
            Send(0, Req::Start),
            Send(0, send_msg(None, "\"active\"", true)),
        ],
    )
    .await;
}
