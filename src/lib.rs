//! Rendezvous: a multiplayer game lobby and WebRTC signaling server.
//!
//! - [`protocol`]: serde types of every wire message (PROTOCOL.md v1).
//! - [`lobby`]: the engine: rooms, seats, matchmaking, timers, stats. No I/O.
//! - [`relay`]: the signal fast path: one borrowed parse, the relayed
//!   frame spliced from the validated payload.
//! - [`signaling`]: SDP and ICE candidate validation, TURN credentials.
//! - [`backend`]: the one seam to the lobby state, in memory or in Redis,
//!   and the one validation of requests.
//! - [`server`]: warp routes, WebSocket sessions, delivery, HTTP API.
//! - [`cluster`]: cluster mode: the lobby in Redis, changed by one Lua
//!   script, events through pub/sub.
//! - [`client`]: a small async client of the protocol (tests, load
//!   generator, Rust games).
//! - [`auth`]: JWT verification of connecting players.
//! - [`config`]: flags and `RENDEZVOUS_*` environment variables.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod client;
pub mod cluster;
pub mod config;
pub mod hooks;
pub mod lobby;
pub mod protocol;
pub mod relay;
pub mod server;
pub mod signaling;
#[cfg(test)]
mod tests;
