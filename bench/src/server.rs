//! Starting and stopping the servers under test: the sockgate binary, and the reference
//! stack (redis-server + the Node peer) through its own `run.sh` / `stop.sh`.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{client::Endpoint, control::Control};

/// Which stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The Ignis helper on Node + Redis + REST.
    Reference,
    /// sockgate.
    Sockgate,
}

impl Kind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reference => "reference",
            Kind::Sockgate => "sockgate",
        }
    }
}

/// A running server.
pub struct Server {
    /// Which stack.
    pub kind: Kind,
    /// The process whose memory holds the sockets.
    pub main_pid: u32,
    /// Every process of the stack (CPU is summed over them).
    pub pids: Vec<u32>,
    /// Where clients connect.
    pub endpoint: Endpoint,
    /// How to make it send.
    pub control: Control,
    stop: Stop,
}

enum Stop {
    Child(Child),
    Script { dir: PathBuf, run_dir: PathBuf },
}

/// A free loopback port (the listener is dropped, so another process may take it; the
/// reference's run.sh then fails clearly).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Server {
    /// Starts the sockgate binary on free loopback ports, in development mode (every
    /// `authenticate` admitted), the benchmark room allowed, logging warnings only.
    pub async fn sockgate(binary: &Path, work: &Path) -> anyhow::Result<Server> {
        let log = std::fs::File::create(work.join("sockgate.log"))?;
        let mut child = Command::new(binary)
            .args([
                "--edge-listen",
                "127.0.0.1:0",
                "--control-listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .env_remove("RUST_LOG")
            .env_remove("SOCKGATE_CONFIG")
            .env("SOCKGATE_LOG__LEVEL", "warn")
            .env(
                "SOCKGATE_ROOMS__ALLOW",
                format!("[\"{}\"]", crate::client::ROOM),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("sockgate exited at once"))?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("READY ") {
                    return Ok(rest.to_owned());
                }
            }
            bail!(
                "sockgate exited before READY; see {}",
                work.join("sockgate.log").display()
            )
        })
        .await
        .context("sockgate not ready in 30 s")??;
        let field = |key: &str| -> anyhow::Result<SocketAddr> {
            ready
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| anyhow!("no {key} in READY line {ready:?}"))?
                .parse()
                .context("bad address in READY line")
        };
        let edge = field("edge")?;
        let control = field("control")?;
        let client = sockgate_client::connect(format!("http://{control}")).await?;
        Ok(Server {
            kind: Kind::Sockgate,
            main_pid: pid,
            pids: vec![pid],
            endpoint: Endpoint {
                addr: edge,
                path: "/io".into(),
                join_acked: true,
            },
            control: Control::Grpc(client),
            stop: Stop::Child(child),
        })
    }

    /// Starts the reference stack from a writable copy of `reference-ignis` in which
    /// `npm ci` has run, on free ports, with its log level set to `log_level`.
    pub async fn reference(dir: &Path, work: &Path, log_level: &str) -> anyhow::Result<Server> {
        if !dir.join("node_modules/@venizia/ignis-helpers").is_dir() {
            bail!(
                "{} has no node_modules: copy ../shared/reference-ignis there and run `npm ci` (scripts/bench does)",
                dir.display()
            );
        }
        let port = free_port()?;
        let redis_port = free_port()?;
        let run_dir = work.join("reference-run");
        std::fs::create_dir_all(&run_dir)?;
        let output = Command::new(dir.join("run.sh"))
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("REDIS_PORT", redis_port.to_string())
            .env("RUN_DIR", &run_dir)
            .env("PEER_LOG_LEVEL", log_level)
            .env("APP_ENV_LOGGER_FOLDER_PATH", work.join("reference-logs"))
            .stdin(Stdio::null())
            .output()
            .await
            .context("cannot run the reference's run.sh")?;
        let pid_of = |name: &str| -> anyhow::Result<u32> {
            std::fs::read_to_string(run_dir.join(name))
                .with_context(|| format!("run.sh wrote no {name}"))?
                .trim()
                .parse()
                .context("bad pid file")
        };
        if !output.status.success() {
            let _ = stop_script(dir, &run_dir).await;
            bail!(
                "reference run.sh failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let peer = pid_of("peer.pid")?;
        let redis = pid_of("redis.pid")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        Ok(Server {
            kind: Kind::Reference,
            main_pid: peer,
            pids: vec![peer, redis],
            endpoint: Endpoint {
                addr,
                path: "/io".into(),
                join_acked: false,
            },
            control: Control::Rest(addr),
            stop: Stop::Script {
                dir: dir.to_owned(),
                run_dir,
            },
        })
    }

    /// Stops the stack and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.stop {
            Stop::Child(mut child) => {
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .await;
                }
                if tokio::time::timeout(Duration::from_secs(15), child.wait())
                    .await
                    .is_err()
                {
                    child.kill().await?;
                }
                Ok(())
            }
            Stop::Script { dir, run_dir } => stop_script(&dir, &run_dir).await,
        }
    }
}

async fn stop_script(dir: &Path, run_dir: &Path) -> anyhow::Result<()> {
    let output = Command::new(dir.join("stop.sh"))
        .env("RUN_DIR", run_dir)
        .stdin(Stdio::null())
        .output()
        .await?;
    if !output.status.success() {
        bail!(
            "reference stop.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
