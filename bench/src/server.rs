//! Starting and stopping the servers under test. Each run gets a fresh
//! server process bound to 127.0.0.1, optionally pinned to a CPU with
//! `taskset`; its pid is kept so that its memory and CPU time can be read,
//! and it is always stopped by pid (SIGTERM, then SIGKILL) when the handle
//! is dropped, on error paths too.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::target::Kind;

/// Where the programs under test are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub rendezvous: PathBuf,
    pub rendezvous_args: Vec<String>,
    pub matchbox: PathBuf,
    pub peerjs: PathBuf,
    pub node: PathBuf,
    /// This binary, for `bare-relay`.
    pub bench: PathBuf,
    /// `redis-server`, for the cluster scenario.
    pub redis: PathBuf,
    /// The repository root (working directory of the servers).
    pub root: PathBuf,
    pub logs: PathBuf,
    /// CPU list for `taskset -c`, or none.
    pub cpus: Option<String>,
}

impl Programs {
    /// Whether the program of `kind` is there.
    pub fn check(&self, kind: Kind) -> anyhow::Result<()> {
        let p = match kind {
            Kind::Rendezvous => &self.rendezvous,
            Kind::Matchbox => &self.matchbox,
            Kind::Peerjs => &self.peerjs,
            Kind::Bare => &self.bench,
        };
        if !p.exists() {
            bail!("{} not found at {}", kind.label(), p.display());
        }
        Ok(())
    }
}

/// A running server; dropping it stops the process.
pub struct Server {
    /// What it is, for messages.
    pub label: String,
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
}

/// A free port on 127.0.0.1 (for servers that cannot report the one they bound).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

pub fn with_cpus(cpus: &Option<String>, program: &Path) -> Command {
    match cpus {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Starts a server of `kind` with its output in `logs/<kind>-<tag>.log`.
pub fn start(kind: Kind, p: &Programs, tag: &str, extra_args: &[&str]) -> anyhow::Result<Server> {
    p.check(kind)?;
    std::fs::create_dir_all(&p.logs)?;
    let log_path = p.logs.join(format!("{}-{tag}.log", kind.name()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd;
    let mut port = None;
    match kind {
        Kind::Rendezvous => {
            cmd = with_cpus(&p.cpus, &p.rendezvous);
            cmd.args(["--listen", "127.0.0.1:0"])
                .args(&p.rendezvous_args);
            cmd.env("RENDEZVOUS_WEB_DIR", p.root.join("web"));
        }
        Kind::Bare => {
            cmd = with_cpus(&p.cpus, &p.bench);
            cmd.args(["bare-relay", "--listen", "127.0.0.1:0"]);
        }
        Kind::Matchbox => {
            let pt = free_port()?;
            port = Some(pt);
            cmd = with_cpus(&p.cpus, &p.matchbox);
            // Its only setting is the address (positional, or HOST).
            cmd.arg(format!("127.0.0.1:{pt}"));
            // Per-connection info and tower_http debug lines would be
            // measured as server cost; keep warnings and errors.
            cmd.env("RUST_LOG", "warn");
        }
        Kind::Peerjs => {
            let pt = free_port()?;
            port = Some(pt);
            cmd = with_cpus(&p.cpus, &p.node);
            cmd.arg(&p.peerjs).args([
                "--host",
                "127.0.0.1",
                "--port",
                &pt.to_string(),
                // The default of 5000 clients would stop the idle scenario.
                "--concurrent_limit",
                "1000000",
                // Real clients send HEARTBEAT every 5 s; the idle sockets of
                // the benchmark send nothing, so the 60 s reaper is pushed out.
                "--alive_timeout",
                "3600000",
            ]);
        }
    }
    cmd.args(extra_args);
    cmd.current_dir(&p.root)
        .stdin(Stdio::null())
        .stderr(log.try_clone()?);
    if port.is_some() {
        cmd.stdout(log);
    } else {
        cmd.stdout(Stdio::piped());
    }
    launch(kind, cmd, port)
}

/// Spawns a prepared server command (stdout piped unless `port` is known)
/// and waits until it listens.
pub fn launch(kind: Kind, cmd: Command, port: Option<u16>) -> anyhow::Result<Server> {
    launch_named(kind.label(), cmd, port)
}

/// [`launch`] for any program, named `label` in messages.
pub fn launch_named(label: &str, mut cmd: Command, port: Option<u16>) -> anyhow::Result<Server> {
    let mut child = cmd.spawn().with_context(|| format!("starting {label}"))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let mut server = Server {
        label: label.to_string(),
        addr: SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0))),
        pid,
        child,
    };
    match stdout {
        Some(out) => server.addr = read_listen_line(out, &mut server)?,
        None => wait_accepting(&mut server)?,
    }
    Ok(server)
}

/// Reads `listening on http://ADDR` from the server's stdout within 60 s.
/// A thread reads (and then drains) the pipe, so nothing blocks forever
/// and a later write to stdout never meets a closed pipe.
fn read_listen_line(out: ChildStdout, server: &mut Server) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(out);
        let mut line = String::new();
        let mut sent = false;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !sent {
                if let Some(rest) = line.trim().strip_prefix("listening on http://") {
                    let _ = tx.send(rest.to_string());
                    sent = true;
                }
            }
        }
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(addr) => return addr.parse().context("parsing the listen address"),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = server.child.try_wait()? {
                    bail!("{} exited at start: {status}", server.label);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("{} closed its stdout before listening", server.label)
            }
        }
    }
    bail!("{} did not print its address within 60 s", server.label)
}

fn wait_accepting(server: &mut Server) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some(status) = server.child.try_wait()? {
            bail!("{} exited at start: {status}", server.label);
        }
        if std::net::TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} did not accept connections within 30 s", server.label)
}

impl Server {
    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) {
        if !self.alive() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}
