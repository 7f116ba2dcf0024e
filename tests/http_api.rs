//! The HTTP side and the JSON shapes: API routes, refused handshakes, the
//! static web client, snapshots of the wire messages, and the binary's
//! command line.

mod support;

use std::process::Command;

use serde_json::{json, Value};
use support::*;

#[tokio::test]
async fn api_routes_answer_with_json() {
    let ts = TestServer::start().await;
    for probe in ["/healthz", "/readyz", "/livez"] {
        let (st, health) = http_get(&ts.http(probe)).await;
        assert_eq!((st, health), (200, json!({"status": "ok"})), "{probe}");
    }

    let (st, stats) = http_get(&ts.http("/api/stats")).await;
    assert_eq!(st, 200);
    for key in [
        "total_rooms",
        "waiting_rooms",
        "active_rooms",
        "finished_rooms",
        "total_players",
        "connections",
        "players_waiting",
        "matches_started",
        "signals_relayed",
        "uptime_s",
    ] {
        assert!(stats[key].is_u64(), "{key} in {stats}");
    }

    let ann = ts.client("ann").await;
    let room = ann
        .create_room(json!({"max_players": 3, "data": {"map": "moon"}}))
        .await
        .unwrap();
    let (st, rooms) = http_get(&ts.http("/api/rooms")).await;
    assert_eq!(st, 200);
    assert_eq!(rooms["rooms"][0]["room_id"], room.room_id.as_str());
    assert_eq!(rooms["rooms"][0]["data"], json!({"map": "moon"}));
    let (st, one) = http_get(&ts.http(&format!("/api/rooms/{}", room.room_id))).await;
    assert_eq!(st, 200);
    assert_eq!(one["players"][0]["name"], "ann");
    assert!(one.get("code").is_none());

    let (st, missing) = http_get(&ts.http("/api/rooms/00000000-0000-4000-8000-000000000000")).await;
    assert_eq!(st, 404);
    assert_eq!(missing["error"]["code"], "room_not_found");
    let (st, p) = http_get(&ts.http(&format!("/api/players/{}", ann.player_id()))).await;
    assert_eq!(st, 200);
    assert_eq!(p["connected"], true);
    assert_eq!(p["room_id"], room.room_id.as_str());
    assert_eq!(p["name"], "ann");
    let (st, p) = http_get(&ts.http("/api/players/p_nobody")).await;
    assert_eq!(
        (st, p["error"]["code"].as_str()),
        (404, Some("player_not_found"))
    );
    let (st, e) = http_get(&ts.http("/api/rooms?status=finished")).await;
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    let (st, e) = http_get(&ts.http("/no/such/route")).await;
    assert_eq!(st, 404);
    assert!(e["error"]["code"].is_string());
    ts.stop().await;
}

#[tokio::test]
async fn web_client_is_served() {
    let ts = TestServer::start().await;
    let root = env!("CARGO_MANIFEST_DIR");
    // Each page is its source file, byte for byte, with its content type
    // (the client library's one source is the npm package's).
    for (path, file, mime) in [
        ("/", "web/index.html", "text/html"),
        ("/dashboard", "web/dashboard.html", "text/html"),
        ("/rendezvous.js", "clients/js/rendezvous.js", "javascript"),
    ] {
        let want = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let (st, head, body) = http_with_head(&ts.http(path)).await;
        assert_eq!(st, 200, "{path}");
        assert!(
            head.to_ascii_lowercase().contains(mime),
            "{path}: {mime} in {head}"
        );
        assert!(body == want, "{path} is not {file}");
    }
    ts.stop().await;
}

#[tokio::test]
async fn refused_handshakes_answer_before_the_upgrade() {
    let ts = TestServer::start().await;
    // A plain GET of /ws is no upgrade.
    let (st, body) = http_raw("GET", &ts.http("/ws"), &[]).await;
    assert_eq!(st, 400);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
    // A name over 32 characters is refused with a reason.
    let long = "x".repeat(33);
    let err = rendezvous::client::Client::connect(&format!("{}?name={long}", ts.ws_url()))
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("400"), "{err}");
    // Names are trimmed; a blank one becomes "player".
    let c = ts.client("%20%20ann%20").await;
    assert_eq!(c.welcome.name, "ann");
    let c = rendezvous::client::Client::connect(&ts.ws_url())
        .await
        .unwrap();
    assert_eq!(c.welcome.name, "player");
    ts.stop().await;
}

#[tokio::test]
async fn welcome_and_room_shapes() {
    let ts = TestServer::with_args(&[
        "--stun-urls",
        "stun:stun.example.org:3478",
        "--turn-urls",
        "turn:turn.example.org:3478",
        "--turn-secret",
        "s3cret",
    ])
    .await;
    // The welcome as it comes off the wire (not the client's parsed copy,
    // which drops what it does not know).
    let welcome = first_frame(&format!("{}?name=ann", ts.ws_url())).await;
    let ann = ts.client("ann").await;
    let bob = ts.client("bob").await;
    assert_eq!(welcome["type"], "welcome");
    let player_id = welcome["player_id"].as_str().unwrap();
    assert!(player_id.starts_with("p_"));
    assert_eq!(
        welcome["ice_servers"][0]["urls"][0],
        "stun:stun.example.org:3478"
    );
    let user = welcome["ice_servers"][1]["username"].as_str().unwrap();
    assert!(user.ends_with(&format!(":{player_id}")), "{user}");
    insta::assert_json_snapshot!("welcome", welcome, {
        ".player_id" => "[player_id]",
        ".resume_token" => "[token]",
        ".server_time" => "[time]",
        ".ice_servers[1].username" => "[expiry:player_id]",
        ".ice_servers[1].credential" => "[hmac]",
    });

    let created = ann
        .request(
            "create_room",
            json!({"max_players": 2, "mode": "duel", "data": {"map": "moon"}}),
        )
        .await
        .unwrap();
    let redact = |v: &Value| {
        let mut v = v.clone();
        redact_ids(&mut v);
        v
    };
    insta::assert_json_snapshot!("create_room_reply", redact(&created));
    let room_id = created["room"]["room_id"].as_str().unwrap().to_string();
    bob.join_room(&room_id).await.unwrap();
    let joined = ann.wait_for("player_joined").await.unwrap();
    insta::assert_json_snapshot!("player_joined", redact(&joined));
    let start = ann.wait_for("game_start").await.unwrap();
    insta::assert_json_snapshot!("game_start", redact(&start));
    let err = bob.send_text(r#"{"type":"start_game","rid":"x"}"#).await;
    err.unwrap();
    let reply = bob.next_event().await;
    let reply = match reply {
        Ok(v) if v["type"] == "error" => v,
        Ok(_) => bob.wait_for("error").await.unwrap(),
        Err(e) => panic!("{e}"),
    };
    insta::assert_json_snapshot!("error_reply", redact(&reply));
    ts.stop().await;
}

/// The first text frame a fresh WebSocket at `url` receives, as JSON.
async fn first_frame(url: &str) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let limit = std::time::Duration::from_secs(10);
    let (mut ws, _) = tokio::time::timeout(limit, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("handshake");
    let frame = tokio::time::timeout(limit, ws.next())
        .await
        .expect("first frame in time");
    match frame {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

/// Replaces ids, codes and timestamps, which change on every run.
fn redact_ids(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                let join_code = k == "code"
                    && val.as_str().is_some_and(|c| {
                        c.len() == 6
                            && c.bytes()
                                .all(|b| rendezvous::lobby::CODE_ALPHABET.contains(&b))
                    });
                match k.as_str() {
                    "room_id" | "player_id" | "host" | "created_at" | "joined_at" | "ts"
                    | "server_time" => *val = json!(format!("[{k}]")),
                    _ if join_code => *val = json!("[join_code]"),
                    _ => redact_ids(val),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_ids),
        _ => {}
    }
}

/// A binary that should have exited and did not fails its test past this.
const EXIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

#[test]
fn bad_flags_exit_with_code_2() {
    let bin = env!("CARGO_BIN_EXE_rendezvous");
    for args in [
        vec!["--max-players", "1"],
        vec!["--listen", "not-an-address"],
        vec!["--log-format", "xml"],
        vec!["--no-such-flag"],
    ] {
        let out = output_within(Command::new(bin).args(&args), EXIT_LIMIT);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
    }
    // Environment variables configure the same flags.
    let out = output_within(
        Command::new(bin).env("RENDEZVOUS_MAX_PLAYERS", "999"),
        EXIT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Boolean flags read from the environment accept what compose files and
/// Helm charts write: 1/0, yes/no, on/off, true/false.
#[test]
fn boolean_environment_variables_take_the_usual_spellings() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (value, on) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("true", true),
        ("0", false),
        ("no", false),
        ("off", false),
        ("false", false),
    ] {
        let (mut child, addr) = spawn_binary(&[], &[("RENDEZVOUS_PEERJS_DISCOVERY", value)], false);
        let (st, _) = rt.block_on(http_raw(
            "GET",
            &format!("http://{addr}/peerjs/peerjs/peers"),
            &[],
        ));
        assert_eq!(
            st,
            if on { 200 } else { 401 },
            "RENDEZVOUS_PEERJS_DISCOVERY={value}"
        );
        child.terminate();
        child.wait_within(EXIT_LIMIT);
    }
    let bin = env!("CARGO_BIN_EXE_rendezvous");
    let out = output_within(
        Command::new(bin).env("RENDEZVOUS_PEERJS_DISCOVERY", "maybe"),
        EXIT_LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "an unknown spelling is refused");
}

#[test]
fn the_binary_serves_and_prints_its_address() {
    let (mut child, addr) = spawn_binary(&[], &[], false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (st, _) = rt.block_on(http_get(&format!("http://{addr}/healthz")));
    assert_eq!(st, 200);
    child.terminate();
    let status = child.wait_within(EXIT_LIMIT);
    assert!(
        status.success(),
        "SIGTERM ends the server cleanly: {status:?}"
    );
}
