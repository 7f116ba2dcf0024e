//! The bare relay: the baseline that stands for the limit of the stack
//! (tokio + tungstenite, the same building blocks and buffer sizes as
//! Rendezvous). It pairs the two sockets that ask for the same URL path,
//! tells both `{"type":"paired"}`, and then forwards every text frame of
//! one to the other verbatim: no JSON, no rooms, no checks. A signaling
//! server cannot relay faster than this on the same machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Outbound frames queued per connection; beyond, frames are dropped.
const QUEUE: usize = 1024;

type Tx = mpsc::Sender<Message>;

/// A socket waiting for its partner: its id and where its partner's queue
/// will be put.
struct Waiting {
    id: u64,
    tx: Tx,
    peer: Arc<OnceLock<Tx>>,
}

#[derive(Default)]
struct State {
    waiting: Mutex<HashMap<String, Waiting>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Serves until the process is killed; prints `listening on http://ADDR`.
/// tungstenite's buffer sizes per socket.
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    /// Read buffer (Rendezvous: 4096).
    pub read: usize,
    /// Frames are written out once this much is buffered, or on flush
    /// (Rendezvous: 0, every frame is a write of its own).
    pub write: usize,
}

pub async fn serve(listen: SocketAddr, buffers: Buffers) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let state = Arc::new(State::default());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors: back off instead of spinning.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let _ = handle(state, stream, buffers).await;
        });
    }
}

fn ws_config(b: Buffers) -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    c.read_buffer_size = b.read;
    c.write_buffer_size = b.write;
    c.max_write_buffer_size = 4 * 65536 + 4096;
    c.max_message_size = Some(4 * 65536);
    c.max_frame_size = Some(4 * 65536);
    c
}

async fn handle(state: Arc<State>, stream: TcpStream, buffers: Buffers) -> anyhow::Result<()> {
    let mut key = String::new();
    // tungstenite's callback type fixes the (large) error type.
    #[allow(clippy::result_large_err)]
    let remember = |req: &Request, resp: Response| {
        key = req.uri().path().to_string();
        Ok(resp)
    };
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, remember, Some(ws_config(buffers)))
            .await?;
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    let id = state
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let peer: Arc<OnceLock<Tx>> = Arc::default();
    {
        let mut waiting = state.waiting.lock().expect("lock");
        match waiting.remove(&key) {
            Some(w) => {
                let _ = w.peer.set(tx.clone());
                let _ = peer.set(w.tx.clone());
                let paired = Message::text(r#"{"type":"paired"}"#);
                let _ = w.tx.try_send(paired.clone());
                let _ = tx.try_send(paired);
            }
            None => {
                waiting.insert(
                    key.clone(),
                    Waiting {
                        id,
                        tx: tx.clone(),
                        peer: peer.clone(),
                    },
                );
            }
        }
    }
    drop(tx);
    let writer = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.feed(m).await.is_err() {
                return;
            }
            while let Ok(m) = rx.try_recv() {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                if let Some(p) = peer.get() {
                    // A full queue drops the frame: no backpressure, no checks.
                    let _ = p.try_send(msg);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    {
        let mut waiting = state.waiting.lock().expect("lock");
        if waiting.get(&key).is_some_and(|w| w.id == id) {
            waiting.remove(&key);
        }
    }
    // tungstenite queued the answer to a close frame; one more read sends it.
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await;
    drop(peer);
    writer.abort();
    Ok(())
}
