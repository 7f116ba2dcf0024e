//! Nothing here: this crate only holds `tests/`, the real `matchbox_socket`
//! client against Rendezvous's `/matchbox` endpoint.
#![forbid(unsafe_code)]
