//! A message refused by the rate limit is answered with `rate_limited` and
//! the message's own `rid` when one can be read (PROTOCOL.md 1.1), so a
//! client's pending request never hangs; `null` when the frame has none or
//! is not JSON.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::TestServer;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn refused_messages_carry_their_rid() {
    let ts = TestServer::with_args(&["--rate-limit", "1", "--rate-burst", "1"]).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}?name=ann", ts.ws_url()))
        .await
        .unwrap();
    let welcome = next(&mut ws).await;
    assert_eq!(welcome["type"], "welcome");
    let frames = [
        json!({"type": "ping", "rid": 1}).to_string(),
        json!({"type": "ping", "rid": 2}).to_string(),
        json!({"type": "chat", "rid": "two-and-a-half", "text": "hi"}).to_string(),
        // An object with a rid but no valid type is still refused by the
        // limit first, with its rid.
        json!({"rid": 3}).to_string(),
        "not json at all".to_string(),
        json!({"type": "ping", "rid": {"not": "a valid rid"}}).to_string(),
    ];
    for f in &frames {
        ws.send(Message::Text(f.clone().into())).await.unwrap();
    }
    let mut replies = Vec::new();
    for _ in 0..frames.len() {
        replies.push(next(&mut ws).await);
    }
    assert_eq!(replies[0]["type"], "ok", "{:?}", replies[0]);
    assert_eq!(replies[0]["rid"], 1);
    let refused: Vec<(Value, Value)> = replies[1..]
        .iter()
        .map(|r| (r["code"].clone(), r["rid"].clone()))
        .collect();
    assert_eq!(
        refused,
        vec![
            (json!("rate_limited"), json!(2)),
            (json!("rate_limited"), json!("two-and-a-half")),
            (json!("rate_limited"), json!(3)),
            (json!("rate_limited"), Value::Null),
            (json!("rate_limited"), Value::Null),
        ],
        "{replies:?}"
    );
    ts.stop().await;
}

async fn next(
    ws: &mut (impl StreamExt<Item = Result<Message, impl std::fmt::Debug>> + Unpin),
) -> Value {
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}
