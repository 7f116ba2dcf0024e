//! Player authentication through the real server: JWTs in the `token`
//! parameter (HS256 and RS256), refusals before the upgrade, identity-based
//! room access, one identity one seat, and tokens kept out of the logs.

mod support;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use rendezvous::auth::sign_hs256_for_tests;
use rendezvous::client::{Client, ClientError};
use serde_json::{json, Value};
use support::*;

const SECRET: &str = "test-secret-0123456789";
const RSA_PRIVATE: &[u8] = include_bytes!("fixtures/jwt/rsa-private.pem");
const RSA_PUBLIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/jwt/rsa-public.pem"
);

fn exp_in(secs: i64) -> i64 {
    chrono::Utc::now().timestamp() + secs
}

fn token(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "exp": exp_in(600)});
    if let (Some(c), Value::Object(e)) = (claims.as_object_mut(), extra) {
        c.extend(e);
    }
    sign_hs256_for_tests(SECRET, &claims)
}

/// Connects with a token; Ok(client) or the HTTP status of the refusal.
async fn connect(ts: &TestServer, token: Option<&str>) -> Result<Client, u16> {
    let url = match token {
        Some(t) => format!("{}?token={t}", ts.ws_url()),
        None => ts.ws_url(),
    };
    match Client::connect_with(&url, no_reconnect()).await {
        Ok(c) => Ok(c),
        Err(ClientError::Ws(tokio_tungstenite::tungstenite::Error::Http(resp))) => {
            let body: Value = resp
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            assert_eq!(body["error"]["code"], "unauthorized", "{body}");
            Err(resp.status().as_u16())
        }
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test]
async fn required_auth_refuses_missing_bad_and_expired_tokens() {
    let ts = TestServer::with_args(&["--auth", "required", "--jwt-secret", SECRET]).await;
    assert_eq!(connect(&ts, None).await.err(), Some(401));
    assert_eq!(connect(&ts, Some("not.a.jwt")).await.err(), Some(401));
    let wrong_key = sign_hs256_for_tests("other-secret", &json!({"sub": "u1", "exp": exp_in(60)}));
    assert_eq!(connect(&ts, Some(&wrong_key)).await.err(), Some(401));
    let expired = sign_hs256_for_tests(SECRET, &json!({"sub": "u1", "exp": exp_in(-3600)}));
    assert_eq!(connect(&ts, Some(&expired)).await.err(), Some(401));
    let no_exp = sign_hs256_for_tests(SECRET, &json!({"sub": "u1"}));
    assert_eq!(connect(&ts, Some(&no_exp)).await.err(), Some(401));

    let good = token("user-42", json!({"name": "Ann", "roles": ["vip"]}));
    let c = connect(&ts, Some(&good)).await.expect("valid token");
    assert_eq!(c.player_id(), "user-42", "sub is the player id");
    assert_eq!(c.welcome.name, "Ann", "name claim is the display name");
    let metrics = http_raw("GET", &ts.http("/metrics"), &[]).await.1;
    assert!(
        metrics.contains("rendezvous_auth_failures_total 5"),
        "{metrics}"
    );
    ts.stop().await;
}

#[tokio::test]
async fn optional_auth_takes_anonymous_players_but_checks_tokens_sent() {
    let ts = TestServer::with_args(&["--auth", "optional", "--jwt-secret", SECRET]).await;
    let anon = connect(&ts, None).await.unwrap();
    assert!(anon.player_id().starts_with("p_"));
    assert_eq!(connect(&ts, Some("garbage")).await.err(), Some(401));
    let c = connect(&ts, Some(&token("user-7", json!({}))))
        .await
        .unwrap();
    assert_eq!(c.player_id(), "user-7");
    ts.stop().await;

    // Auth off: tokens are ignored.
    let ts = TestServer::start().await;
    let c = connect(&ts, Some("garbage")).await.unwrap();
    assert!(c.player_id().starts_with("p_"));
    ts.stop().await;
}

#[tokio::test]
async fn rs256_tokens_verify_with_a_public_key_file() {
    let ts = TestServer::with_args(&["--auth", "required", "--jwt-public-key", RSA_PUBLIC]).await;
    let claims = json!({"sub": "rsa-user", "exp": exp_in(600)});
    let rs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap();
    let c = connect(&ts, Some(&rs)).await.unwrap();
    assert_eq!(c.player_id(), "rsa-user");
    // Algorithm confusion: HS256 signed with the public key's bytes.
    let public_pem = std::fs::read_to_string(RSA_PUBLIC).unwrap();
    let forged = sign_hs256_for_tests(&public_pem, &claims);
    assert_eq!(connect(&ts, Some(&forged)).await.err(), Some(401));
    ts.stop().await;
}

#[tokio::test]
async fn rooms_can_be_restricted_to_players_and_roles() {
    let ts = TestServer::with_args(&["--auth", "required", "--jwt-secret", SECRET]).await;
    let host = connect(&ts, Some(&token("host", json!({})))).await.unwrap();
    let bob = connect(&ts, Some(&token("bob", json!({})))).await.unwrap();
    let vip = connect(&ts, Some(&token("vip-user", json!({"roles": ["vip"]}))))
        .await
        .unwrap();
    let cat = connect(&ts, Some(&token("cat", json!({"roles": ["pleb"]}))))
        .await
        .unwrap();
    let room = host
        .create_room(
            json!({"max_players": 4, "allowed_players": ["bob"], "allowed_roles": ["vip"]}),
        )
        .await
        .unwrap();
    assert_code(cat.join_room(&room.room_id).await, "forbidden");
    bob.join_room(&room.room_id).await.unwrap();
    vip.join_room(&room.room_id).await.unwrap();
    // Restricted rooms are never handed out by matchmaking.
    let (m, created) = cat.find_match(4, "default", json!({})).await.unwrap();
    assert!(created && m.room_id != room.room_id);
    ts.stop().await;
}

#[tokio::test]
async fn one_identity_one_seat() {
    let ts = TestServer::with_args(&["--auth", "required", "--jwt-secret", SECRET]).await;
    let t = token("same-user", json!({"name": "Sam"}));
    let first = connect(&ts, Some(&t)).await.unwrap();
    let other = connect(&ts, Some(&token("other", json!({}))))
        .await
        .unwrap();
    let room = first.create_room(json!({"max_players": 3})).await.unwrap();
    other.join_room(&room.room_id).await.unwrap();
    let second = connect(&ts, Some(&t)).await.unwrap();
    assert!(second.welcome.resumed, "takes the seat over like a resume");
    assert_eq!(second.welcome.room.as_ref().unwrap().room_id, room.room_id);
    let close = first.wait_closed(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        close.map(|c| (c.code, c.reason)),
        Some((4001, "replaced".into()))
    );
    assert_eq!(ts.stats().await["total_players"], 2, "still one seat");
    second
        .request("chat", json!({"text": "still me"}))
        .await
        .unwrap();
    let ev = other.wait_for("chat").await.unwrap();
    assert_eq!(ev["from"], "same-user");
    ts.stop().await;
}

#[test]
fn tokens_never_reach_the_logs_and_bad_auth_config_exits_2() {
    let bin = env!("CARGO_BIN_EXE_rendezvous");
    let out = Command::new(bin)
        .args(["--auth", "required"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth"));
    let out = Command::new(bin)
        .args(["--auth", "required", "--jwt-public-key", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let (mut child, addr) = spawn_binary(
        &["--auth", "optional", "--jwt-secret", SECRET],
        &[("RENDEZVOUS_LOG", "trace")],
        true,
    );
    let good = token("log-user", json!({}));
    let bad = format!("{good}tampered");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!("ws://{addr}/ws");
        let c = Client::connect_with(&format!("{url}?token={good}"), no_reconnect())
            .await
            .unwrap();
        c.request("ping", json!({})).await.unwrap();
        assert!(
            Client::connect_with(&format!("{url}?token={bad}"), no_reconnect())
                .await
                .is_err()
        );
        c.close().await;
    });
    child.terminate();
    let mut logs = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = child.0.wait();
    assert!(!logs.is_empty(), "trace logs were written");
    let signature = good.rsplit('.').next().unwrap();
    assert!(!logs.contains(signature), "a token reached the logs");
}
