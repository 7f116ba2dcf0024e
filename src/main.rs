//! The `rendezvous` binary: parse the configuration, set up logging, serve
//! until SIGTERM or SIGINT, then shut down gracefully.

use anyhow::Context;
use clap::Parser;
use rendezvous::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

// mimalloc instead of glibc's malloc: allocation was 8% of the server's CPU
// on the relay path; with it the quick relay max went 765k -> 826k signals/s
// and churn 81 -> 70 us of CPU per cycle, for 3.22 -> 3.47 KiB per idle
// socket at 19 900 (scripts/bench --quick, alternating; docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    let filter =
        EnvFilter::try_from_env("RENDEZVOUS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let scheme = if cfg.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let server = match rendezvous::server::start(cfg).await {
        Ok(s) => s,
        Err(rendezvous::server::StartError::Config(msg)) => {
            // Like clap's own usage errors: a message and exit code 2.
            eprintln!("error: {msg}");
            std::process::exit(2);
        }
        Err(e) => return Err(e).context("starting the server"),
    };
    // Handlers first: whoever reads the address below may signal at once.
    let signals = wait_for_signal()?;
    // The one line on stdout: scripts and tests read the bound address here.
    println!("listening on {scheme}://{}", server.addr);
    signals.await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now; the future ends at the
/// first of them.
fn wait_for_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
