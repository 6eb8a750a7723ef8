//! The `redis-server` the two-node runs share: found on `PATH`, started on a free
//! loopback port without persistence, its log kept in the run's folder, stopped by PID.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// What `redis-server` prints once it listens.
const READY: &str = "Ready to accept connections";

/// A running `redis-server`.
pub struct Redis {
    child: Child,
    /// Its PID.
    pub pid: u32,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// `redis-server` on `PATH`, or an error that says what to do.
pub fn binary() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "redis-server is not on PATH: the two-node runs need it (apt-get install redis-server; \
                 scripts/bench and scripts/test install it), or choose --nodes 1"
            )
        })
}

impl Redis {
    /// Starts `redis-server` on a free port, its log in `work/{name}.log`. Redis cannot
    /// listen on port 0 and report the port, so a free port is found by binding and
    /// releasing it; if another process takes it meanwhile, Redis exits and another port
    /// is tried.
    pub async fn start(work: &Path, name: &str) -> anyhow::Result<Redis> {
        let binary = binary()?;
        let log_path = work.join(format!("{name}.log"));
        for _ in 0..5 {
            let port = crate::process::free_port()?;
            if let Some(redis) = Self::spawn(&binary, port, &log_path).await? {
                return Ok(redis);
            }
        }
        bail!(
            "redis-server did not start on any of 5 free ports; see {}",
            log_path.display()
        )
    }

    /// One attempt on `port`: `None` when Redis exited before it was ready.
    async fn spawn(binary: &Path, port: u16, log_path: &Path) -> anyhow::Result<Option<Redis>> {
        let mut child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("redis-server exited at once"))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        // A few lines: written synchronously.
        let mut log = std::fs::File::create(log_path)?;
        let ready = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await? {
                writeln!(log, "{line}")?;
                if line.contains(READY) {
                    return anyhow::Ok(true);
                }
            }
            Ok(false)
        })
        .await
        .context("redis-server not ready in 10 s")??;
        if !ready {
            // Its output ended: it exited (the port was taken meanwhile).
            child.wait().await?;
            return Ok(None);
        }
        // Keep its log, and keep its stdout drained so that it never blocks on it.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if writeln!(log, "{line}").is_err() {
                    break;
                }
            }
        });
        Ok(Some(Redis { child, pid, port }))
    }

    /// `redis://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it (SIGTERM, SIGKILL after 10 s) and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        crate::process::terminate(&mut self.child, Duration::from_secs(10)).await
    }
}
