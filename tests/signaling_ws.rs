//! The signaling relay through the real server: offers, answers and ICE
//! candidates captured from real browsers go between players of one room,
//! unchanged, with `from` set by the server; everything else is refused and
//! nothing is delivered.

mod support;

use std::time::Duration;

use rendezvous::client::Client;
use serde_json::{json, Value};
use support::*;

const QUIET: Duration = Duration::from_millis(300);

const CHROMIUM_OFFER: &str = include_str!("fixtures/sdp/chromium-offer-datachannel.sdp");
const CHROMIUM_ANSWER: &str = include_str!("fixtures/sdp/chromium-answer-datachannel.sdp");
const CHROMIUM_OFFER_AV: &str = include_str!("fixtures/sdp/chromium-offer-av-data.sdp");
const CHROMIUM_ANSWER_AV: &str = include_str!("fixtures/sdp/chromium-answer-av-data.sdp");
const FIREFOX_OFFER: &str = include_str!("fixtures/sdp/firefox-offer-datachannel.sdp");
const FIREFOX_ANSWER: &str = include_str!("fixtures/sdp/firefox-answer-datachannel.sdp");
const FIREFOX_OFFER_AV: &str = include_str!("fixtures/sdp/firefox-offer-av-data.sdp");
const FIREFOX_ANSWER_AV: &str = include_str!("fixtures/sdp/firefox-answer-av-data.sdp");
const CHROMIUM_CANDIDATES: &str = include_str!("fixtures/sdp/chromium-candidates.txt");
const FIREFOX_CANDIDATES: &str = include_str!("fixtures/sdp/firefox-candidates.txt");

/// Two players in one room of 3 (so it stays waiting), events drained.
async fn pair(ts: &TestServer) -> (Client, Client) {
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    let room = ann.create_room(json!({"max_players": 3})).await.unwrap();
    bob.join_room(&room.room_id).await.unwrap();
    ann.wait_for("player_joined").await.unwrap();
    bob.wait_for("chat_history").await.unwrap();
    (ann, bob)
}

fn candidate_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("candidate:"))
        .collect()
}

#[tokio::test]
async fn offers_and_answers_from_real_browsers_are_relayed_unchanged() {
    let ts = TestServer::start().await;
    let (ann, bob) = pair(&ts).await;
    let pairs = [
        (CHROMIUM_OFFER, CHROMIUM_ANSWER),
        (CHROMIUM_OFFER_AV, CHROMIUM_ANSWER_AV),
        (FIREFOX_OFFER, FIREFOX_ANSWER),
        (FIREFOX_OFFER_AV, FIREFOX_ANSWER_AV),
    ];
    let mut relayed = 0;
    for (offer, answer) in pairs {
        let r = ann
            .request("offer", json!({"to": bob.player_id(), "sdp": offer}))
            .await
            .unwrap();
        assert_eq!(r["type"], "ok");
        let ev = bob.next_event().await.unwrap();
        assert_eq!(ev["type"], "offer");
        assert_eq!(ev["from"], ann.player_id());
        assert_eq!(ev["sdp"].as_str().unwrap(), offer, "byte for byte");
        assert!(ev.get("to").is_none() && ev.get("rid").is_none(), "{ev}");

        bob.request("answer", json!({"to": ann.player_id(), "sdp": answer}))
            .await
            .unwrap();
        let ev = ann.next_event().await.unwrap();
        assert_eq!(ev["type"], "answer");
        assert_eq!(ev["from"], bob.player_id());
        assert_eq!(ev["sdp"].as_str().unwrap(), answer);
        relayed += 2;
    }
    let s = ts.stats().await;
    assert_eq!(s["signals_relayed"], relayed);
    ts.stop().await;
}

#[tokio::test]
async fn ice_candidates_from_real_browsers_are_relayed() {
    let ts = TestServer::start().await;
    let (ann, bob) = pair(&ts).await;
    let mut lines = candidate_lines(CHROMIUM_CANDIDATES);
    lines.extend(candidate_lines(FIREFOX_CANDIDATES));
    assert!(lines.len() >= 4, "fixtures hold candidates");
    for (i, line) in lines.iter().enumerate() {
        let cand = json!({
            "candidate": line, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "Uqnz"
        });
        ann.request(
            "ice_candidate",
            json!({"to": bob.player_id(), "candidate": cand}),
        )
        .await
        .unwrap_or_else(|e| panic!("candidate {i} {line}: {e}"));
        let ev = bob.next_event().await.unwrap();
        assert_eq!(ev["type"], "ice_candidate");
        assert_eq!(ev["from"], ann.player_id());
        assert_eq!(ev["candidate"], cand);
        assert!(ev.get("to").is_none());
    }
    // End of candidates, with the nulls browsers send.
    let end =
        json!({"candidate": "", "sdpMid": null, "sdpMLineIndex": null, "usernameFragment": null});
    ann.request(
        "ice_candidate",
        json!({"to": bob.player_id(), "candidate": end}),
    )
    .await
    .unwrap();
    let ev = bob.next_event().await.unwrap();
    assert_eq!(ev["candidate"]["candidate"], "");
    // The bare-string form of PROTOCOL.md (`candidate: ""`), relayed as sent.
    ann.request(
        "ice_candidate",
        json!({"to": bob.player_id(), "candidate": ""}),
    )
    .await
    .unwrap();
    let ev = bob.next_event().await.unwrap();
    assert_eq!(
        (ev["type"].as_str(), ev["candidate"].as_str()),
        (Some("ice_candidate"), Some(""))
    );
    ts.stop().await;
}

#[tokio::test]
async fn signals_without_rid_are_fire_and_forget() {
    let ts = TestServer::with_args(&["--rate-limit", "5000", "--rate-burst", "5000"]).await;
    let (ann, bob) = pair(&ts).await;
    let lines = candidate_lines(CHROMIUM_CANDIDATES);
    // Trickled candidates: no `ok` for any of them, all relayed in order.
    for round in 0..10 {
        for line in &lines {
            let cand = json!({"candidate": line, "sdpMid": "0", "sdpMLineIndex": round % 2});
            ann.send_ice_candidate(bob.player_id(), cand).await.unwrap();
        }
    }
    ann.send_ice_candidate(bob.player_id(), json!(""))
        .await
        .unwrap();
    for round in 0..10 {
        for line in &lines {
            let ev = bob.next_event().await.unwrap();
            assert_eq!(ev["type"], "ice_candidate");
            assert_eq!(ev["from"], ann.player_id());
            assert_eq!(ev["candidate"]["candidate"], *line);
            assert_eq!(ev["candidate"]["sdpMLineIndex"], round % 2);
            assert!(ev.get("to").is_none() && ev.get("rid").is_none());
        }
    }
    assert_eq!(bob.next_event().await.unwrap()["candidate"], "");
    // An offer without rid too.
    ann.send(
        "offer",
        json!({"to": bob.player_id(), "sdp": CHROMIUM_OFFER}),
    )
    .await
    .unwrap();
    assert_eq!(bob.next_event().await.unwrap()["sdp"], CHROMIUM_OFFER);
    // Refusals still come back, with rid null, as events of the sender.
    ann.send_ice_candidate("nobody-here", json!(""))
        .await
        .unwrap();
    let err = ann.next_event().await.unwrap();
    assert_eq!(
        (err["type"].as_str(), err["code"].as_str(), &err["rid"]),
        (Some("error"), Some("peer_not_found"), &Value::Null)
    );
    ann.send_ice_candidate(bob.player_id(), json!("candidate:1 1 udp x"))
        .await
        .unwrap();
    let err = ann.next_event().await.unwrap();
    assert_eq!(err["code"], "invalid_candidate");
    assert_eq!(err["rid"], Value::Null);
    // A null rid counts as none; a rid still gets its `ok`.
    let quiet =
        json!({"type": "ice_candidate", "rid": null, "to": bob.player_id(), "candidate": ""});
    ann.send_text(quiet.to_string()).await.unwrap();
    assert_eq!(bob.next_event().await.unwrap()["candidate"], "");
    let ok = ann
        .request(
            "ice_candidate",
            json!({"to": bob.player_id(), "candidate": ""}),
        )
        .await
        .unwrap();
    assert_eq!(ok["type"], "ok");
    assert_eq!(bob.next_event().await.unwrap()["candidate"], "");
    // Nothing else came: no `ok` frames for the quiet ones.
    expect_no_event(&ann, QUIET).await;
    expect_no_event(&bob, QUIET).await;
    let stats = ts.stats().await;
    assert_eq!(stats["signals_relayed"], 10 * lines.len() as u64 + 4);
    ts.stop().await;
}

#[tokio::test]
async fn signals_never_cross_rooms_or_come_from_outside() {
    let ts = TestServer::start().await;
    let (ann, bob) = pair(&ts).await;
    let other = ts.client("other").await;
    other.create_room(json!({"max_players": 2})).await.unwrap();
    other.wait_for("chat_history").await.unwrap();
    let loner = ts.client("loner").await;

    for kind in ["offer", "answer"] {
        let to_other = ann
            .request(
                kind,
                json!({"to": other.player_id(), "sdp": CHROMIUM_OFFER}),
            )
            .await;
        assert_code(to_other, "peer_not_found");
        let from_other = other
            .request(kind, json!({"to": ann.player_id(), "sdp": CHROMIUM_OFFER}))
            .await;
        assert_code(from_other, "peer_not_found");
        let from_outside = loner
            .request(kind, json!({"to": bob.player_id(), "sdp": CHROMIUM_OFFER}))
            .await;
        assert_code(from_outside, "not_in_room");
        let to_self = ann
            .request(kind, json!({"to": ann.player_id(), "sdp": CHROMIUM_OFFER}))
            .await;
        assert_code(to_self, "peer_not_found");
        let unknown = ann
            .request(kind, json!({"to": "p_nobody", "sdp": CHROMIUM_OFFER}))
            .await;
        assert_code(unknown, "peer_not_found");
    }
    let cand = json!({"candidate": candidate_lines(CHROMIUM_CANDIDATES)[0], "sdpMid": "0", "sdpMLineIndex": 0});
    assert_code(
        ann.request(
            "ice_candidate",
            json!({"to": other.player_id(), "candidate": cand}),
        )
        .await,
        "peer_not_found",
    );
    assert_code(
        loner
            .request(
                "ice_candidate",
                json!({"to": ann.player_id(), "candidate": cand}),
            )
            .await,
        "not_in_room",
    );
    for c in [&ann, &bob, &other, &loner] {
        expect_no_event(c, QUIET).await;
    }
    assert_eq!(ts.stats().await["signals_relayed"], 0);
    ts.stop().await;
}

#[tokio::test]
async fn bad_sdp_is_refused_with_the_parsers_reason() {
    let ts = TestServer::with_args(&["--max-sdp-bytes", "8192"]).await;
    let (ann, bob) = pair(&ts).await;
    let no_t: String = CHROMIUM_OFFER
        .split("\r\n")
        .filter(|l| !l.starts_with("t="))
        .collect::<Vec<_>>()
        .join("\r\n");
    let bad_fingerprint = CHROMIUM_OFFER
        .lines()
        .map(|l| {
            if l.starts_with("a=fingerprint:") {
                "a=fingerprint:sha-256 ZZ:not:hex"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let oversized = format!("{CHROMIUM_OFFER}{}", "a=x-pad:y\r\n".repeat(1000));
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "hello world".into()),
        ("empty", String::new()),
        ("missing t=", no_t),
        ("bad fingerprint", bad_fingerprint),
        ("oversized", oversized),
    ];
    for (what, sdp) in cases {
        for kind in ["offer", "answer"] {
            let r = ann
                .request(kind, json!({"to": bob.player_id(), "sdp": sdp}))
                .await;
            match r {
                Err(e) => {
                    assert_eq!(
                        e.code().map(|c| c.as_str()),
                        Some("invalid_sdp"),
                        "{what}: {e}"
                    );
                    assert!(
                        e.to_string().len() > "invalid_sdp: ".len(),
                        "{what} has a reason"
                    );
                }
                Ok(v) => panic!("{what} was accepted: {v}"),
            }
        }
    }
    // A wrong type for sdp is a bad request, not a parser matter.
    assert_code(
        ann.request("offer", json!({"to": bob.player_id(), "sdp": 5}))
            .await,
        "bad_request",
    );
    assert_code(
        ann.request("offer", json!({"sdp": CHROMIUM_OFFER})).await,
        "bad_request",
    );
    expect_no_event(&bob, QUIET).await;
    ts.stop().await;
}

#[tokio::test]
async fn bad_candidates_are_refused() {
    let ts = TestServer::start().await;
    let (ann, bob) = pair(&ts).await;
    let good = candidate_lines(CHROMIUM_CANDIDATES)[0].to_string();
    let cases: Vec<(&str, Value)> = vec![
        (
            "no typ",
            json!({"candidate": "candidate:1 1 udp 2113937151 10.0.0.1 5000", "sdpMid": "0"}),
        ),
        (
            "bad typ",
            json!({"candidate": "candidate:1 1 udp 2113937151 10.0.0.1 5000 typ best", "sdpMid": "0"}),
        ),
        (
            "bad priority",
            json!({"candidate": "candidate:1 1 udp high 10.0.0.1 5000 typ host", "sdpMid": "0"}),
        ),
        (
            "bad port",
            json!({"candidate": "candidate:1 1 udp 1 10.0.0.1 70000 typ host", "sdpMid": "0"}),
        ),
        (
            "not a candidate",
            json!({"candidate": "hello", "sdpMid": "0"}),
        ),
        (
            "control chars",
            json!({"candidate": format!("{good}\u{0}"), "sdpMid": "0"}),
        ),
        (
            "too long",
            json!({"candidate": format!("{good} {}", "x y ".repeat(300)), "sdpMid": "0"}),
        ),
        (
            "long sdpMid",
            json!({"candidate": good, "sdpMid": "m".repeat(65)}),
        ),
    ];
    for (what, cand) in cases {
        let r = ann
            .request(
                "ice_candidate",
                json!({"to": bob.player_id(), "candidate": cand}),
            )
            .await;
        match r {
            Err(e) => assert_eq!(
                e.code().map(|c| c.as_str()),
                Some("invalid_candidate"),
                "{what}: {e}"
            ),
            Ok(v) => panic!("{what} accepted: {v}"),
        }
    }
    // Missing or wrongly typed candidate object: bad_request.
    assert_code(
        ann.request("ice_candidate", json!({"to": bob.player_id()}))
            .await,
        "bad_request",
    );
    assert_code(
        ann.request(
            "ice_candidate",
            json!({"to": bob.player_id(), "candidate": {"candidate": 7}}),
        )
        .await,
        "bad_request",
    );
    expect_no_event(&bob, QUIET).await;
    ts.stop().await;
}

#[tokio::test]
async fn from_cannot_be_forged() {
    let ts = TestServer::start().await;
    let (ann, bob) = pair(&ts).await;
    ann.request(
        "offer",
        json!({"to": bob.player_id(), "from": "p_someone_else", "sdp": CHROMIUM_OFFER, "extra": 1}),
    )
    .await
    .unwrap();
    let ev = bob.next_event().await.unwrap();
    assert_eq!(ev["from"], ann.player_id());
    assert!(
        ev.get("extra").is_none(),
        "only the protocol's fields are relayed"
    );
    ts.stop().await;
}

#[tokio::test]
async fn signals_to_a_held_seat_are_accepted() {
    let ts = TestServer::with_args(&["--reconnect-grace-ms", "5000"]).await;
    let (ann, bob) = pair(&ts).await;
    let bob_id = bob.player_id().to_string();
    bob.close().await;
    drop(bob);
    ann.wait_for("player_disconnected").await.unwrap();
    ann.request("offer", json!({"to": bob_id, "sdp": CHROMIUM_OFFER}))
        .await
        .unwrap();
    // In cluster mode the queue is a list in Redis: one key.
    let held = ts.server.app.footprint().await.unwrap();
    assert_eq!(held.pending, 1, "one queue of held signals: {held:?}");
    ts.stop().await;
}

#[tokio::test]
async fn offers_have_their_own_rate_limit() {
    let ts = TestServer::start().await;
    let (ann, bob) = pair(&ts).await;
    let mut limited = 0;
    let sent_at = std::time::Instant::now();
    for _ in 0..30 {
        match ann
            .request(
                "offer",
                json!({"to": bob.player_id(), "sdp": CHROMIUM_OFFER}),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.code().map(|c| c.as_str()) == Some("rate_limited") => limited += 1,
            Err(e) => panic!("{e}"),
        }
    }
    // A burst of 20 passes; beyond it, only what refilled meanwhile (10/s).
    let refilled = (sent_at.elapsed().as_secs_f64() * 10.0).ceil() as u64;
    let passed = 30 - limited;
    assert!(
        (20..=20 + refilled).contains(&passed),
        "{passed} of 30 offers passed ({refilled} refilled)"
    );
    // Candidates and the lobby are not held up by it.
    let cand =
        json!({"candidate": "candidate:1 1 udp 2113937151 192.0.2.1 5000 typ host", "sdpMid": "0"});
    ann.request(
        "ice_candidate",
        json!({"to": bob.player_id(), "candidate": cand}),
    )
    .await
    .unwrap();
    assert_eq!(
        ts.stats().await["signals_relayed"].as_u64(),
        Some(passed + 1)
    );
    ts.stop().await;
}
