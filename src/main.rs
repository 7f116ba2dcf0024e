//! The `rendezvous` binary: parse the configuration, set up logging, serve
//! until SIGTERM or SIGINT, then shut down gracefully.

use anyhow::Context;
use clap::Parser;
use rendezvous::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

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
    let server = match rendezvous::server::start(cfg).await {
        Ok(s) => s,
        Err(rendezvous::server::StartError::Config(msg)) => {
            // Like clap's own usage errors: a message and exit code 2.
            eprintln!("error: {msg}");
            std::process::exit(2);
        }
        Err(e) => return Err(e).context("starting the server"),
    };
    // The one line on stdout: scripts and tests read the bound address here.
    println!("listening on http://{}", server.addr);
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
