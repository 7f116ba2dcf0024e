//! WebRTC signaling payload checks and ICE server configuration.
//!
//! The server relays session descriptions and ICE candidates between players
//! without understanding them, but everything it relays comes from untrusted
//! network clients. This module decides what is well-formed enough to forward
//! (so one player cannot feed another's browser garbage or oversized blobs),
//! and builds the STUN/TURN server list, including short-lived TURN REST API
//! credentials, that each player receives when joining a lobby. Nothing here
//! panics on any input.

pub mod candidate;
pub mod sdp;
pub mod turn;
pub(crate) mod words;

pub use candidate::{validate_candidate, validate_sdp_mid, CandidateError};
pub use sdp::{validate_sdp, SdpError};
pub use turn::{ice_servers, turn_credentials, IceServer};
