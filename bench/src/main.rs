//! `rendezvous-bench`: the load generator and side-by-side benchmark of
//! Rendezvous against matchbox_server, the PeerJS server and a bare
//! tokio-tungstenite relay. It exists so that the claim "fastest and leanest
//! signaling server" is measured, in one run, on one machine, with the same
//! clients and parameters for every target; `scripts/bench` drives it.
//!
//! Subcommands: `run` (scenarios against targets, results as JSON, and the
//! report; the `cluster` scenario starts its own redis-server and two
//! Rendezvous nodes), `report` (the report from a saved JSON), `profile` (the relay
//! path of Rendezvous under callgrind), `bare-relay` (the baseline server)
//! and the hidden `idle-worker` (holds idle sockets for `run`).

mod bare;
mod profile;
mod rawws;
mod report;
mod scenario;
mod server;
mod suite;
mod target;
mod util;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::target::Kind;

// mimalloc, as in the Rendezvous server: glibc's malloc was about 6% of the
// generator's CPU in churn, where the generator's core is the one that is
// full for Rendezvous. The bare relay is this binary too, so it has the same
// allocator as the server it is the baseline of.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rendezvous-bench",
    version,
    about = "Load generator and side-by-side benchmarks of signaling servers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenarios against targets, one after another with the same
    /// parameters; write the results (JSON) and optionally the report.
    Run(Box<suite::RunArgs>),
    /// Write the report (Markdown + SVG chart) from saved results.
    Report {
        /// Results written by `run --json`.
        #[arg(long)]
        results: PathBuf,
        #[arg(long, default_value = "docs/benchmarks.md")]
        md: PathBuf,
        #[arg(long, default_value = "docs/benchmarks.svg")]
        svg: PathBuf,
    },
    /// Profile Rendezvous's relay path under valgrind's callgrind.
    Profile(profile::ProfileArgs),
    /// The bare relay baseline server.
    BareRelay {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// tungstenite's read buffer per socket (Rendezvous uses 4096).
        #[arg(long, default_value_t = 4096)]
        read_buffer_size: usize,
        /// Bytes of frames buffered before a write; the writer flushes what
        /// is queued at once anyway (Rendezvous uses 0: a write per frame).
        #[arg(long, default_value_t = 65536)]
        write_buffer_size: usize,
    },
    /// Holds idle sockets for the idle scenario (started by `run`).
    #[command(hide = true)]
    IdleWorker {
        #[arg(long, value_enum)]
        target: Kind,
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        prefix: String,
        #[arg(long, default_value_t = 0)]
        src_offset: usize,
        #[arg(long, default_value_t = 16)]
        src_ips: usize,
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    util::epoch();
    match cli.cmd {
        Cmd::BareRelay {
            listen,
            read_buffer_size,
            write_buffer_size,
        } => {
            // Multi-threaded like Rendezvous (as many workers as CPUs allowed).
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(bare::serve(
                    listen,
                    bare::Buffers {
                        read: read_buffer_size,
                        write: write_buffer_size,
                    },
                ))
        }
        Cmd::IdleWorker {
            target,
            addr,
            count,
            prefix,
            src_offset,
            src_ips,
            concurrency,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(scenario::idle::worker(
                target,
                addr,
                count,
                prefix,
                src_offset,
                src_ips,
                concurrency,
            )),
        Cmd::Run(args) => suite::run(*args),
        Cmd::Report { results, md, svg } => {
            let text = std::fs::read_to_string(&results)?;
            let r: suite::Results = serde_json::from_str(&text)?;
            report::write(&r, &md, &svg)
        }
        Cmd::Profile(args) => profile::run(args),
    }
}
