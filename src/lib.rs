//! Rendezvous: a multiplayer game lobby and WebRTC signaling server.
//!
//! The modules, in layers: each uses only the layers below it
//! (`tests/layers.rs` fails on a use that points up or sideways).
//!
//! - [`server`]: the shell: the accept loop, upgrades, sessions, frames,
//!   the HTTP API, the drop-in endpoints (PeerJS, matchbox), assets, TLS.
//!   [`client`]: a small async client of the protocol (tests, load
//!   generator, Rust games).
//! - [`backend`]: the one seam to the lobby state, in memory or in Redis
//!   ([`backend::redis`], with the store and its Lua engine under
//!   `backend::redis::store`); the one validation of requests; delivery
//!   (the connection table and outboxes) and the ticker. It sees the shell
//!   only as a [`backend::Ctx`].
//! - [`config`]: flags and `RENDEZVOUS_*` environment variables; read by
//!   `main`, the server and the backend, which hand the engine and the
//!   hooks their own small config structs.
//! - [`lobby`]: the engine: rooms, seats, matchmaking, tickets, parties,
//!   timers, stats, and the [`lobby::HookEvent`]s of its changes. No I/O.
//! - [`hooks`]: webhook and allocation-hook delivery.
//! - [`relay`]: the signal fast path: one borrowed parse, the relayed
//!   frame spliced from the validated payload.
//! - [`metrics`]: the Prometheus registry.
//! - [`protocol`]: serde types of every wire message (docs/protocol.md),
//!   with the one request table; [`auth`]: JWT verification.
//! - [`signaling`]: SDP and ICE candidate validation, TURN credentials;
//!   [`ids`]: the identifiers the server makes.
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod client;
pub mod config;
pub mod hooks;
pub mod ids;
pub mod lobby;
pub mod metrics;
pub mod protocol;
pub mod relay;
pub mod server;
pub mod signaling;
#[cfg(test)]
mod tests;
