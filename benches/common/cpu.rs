//! The CPU time of the calling thread, for the benchmarks of the lobby
//! engine: the machine is shared, so the wall clock alone would count
//! other processes' time.

use std::time::Duration;

/// The CPU time this thread has run (Linux), from the kernel's scheduler
/// stats.
pub fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("thread CPU time needs Linux's /proc/thread-self/schedstat");
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat starts with the run time in ns");
    Duration::from_nanos(ns)
}
