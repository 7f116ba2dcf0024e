//! The load scenarios of the benchmark (idle sockets, relay, a burst of
//! matchmaking, churn, and the relay across a Rendezvous cluster), their
//! shared parameters and their result records.
//! Each scenario drives one already started server through a [`Kind`]
//! adapter, is bounded in count and time, and returns a serializable record
//! for the report.

pub mod churn;
pub mod cluster;
pub mod idle;
pub mod matching;
pub mod relay;

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::target::Payload;

/// Parameters common to every target of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub quick: bool,
    /// Idle socket counts, in increasing order (sockets are added step by step).
    pub idle_counts: Vec<usize>,
    /// Player pairs in the relay scenario.
    pub pairs: usize,
    /// Signals in flight per sender at the maximum rate.
    pub window: usize,
    pub warmup_s: f64,
    pub relay_s: f64,
    pub payload: Payload,
    /// Also measure latency at half the maximum rate.
    pub half_rate: bool,
    pub match_clients: usize,
    pub room_size: usize,
    pub churn_s: f64,
    pub churn_concurrency: usize,
    pub churn_signals: usize,
    /// Handshakes in flight at once.
    pub connect_concurrency: usize,
    /// Source addresses 127.0.0.2.. used by client sockets.
    pub src_ips: usize,
    /// Flags given to the Rendezvous server.
    pub rendezvous_args: Vec<String>,
    /// CPU of the server and of the generator (`taskset`), if pinned.
    pub server_cpus: Option<String>,
    pub client_cpus: Option<String>,
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn bar(len: u64, msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg:<28} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.into());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// A progress bar over a duration, in tenths of a second.
pub fn timer_bar(secs: f64, msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new((secs * 10.0).ceil() as u64);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg:<28} [{bar:30}] {elapsed}/{duration}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg.into());
    pb
}

/// A short nonce so that names of one run never meet those of another.
pub fn nonce() -> String {
    format!(
        "{:x}",
        crate::util::now_ns() ^ (std::process::id() as u64) << 40
    )
}
