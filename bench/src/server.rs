//! Starting and stopping the stacks under test: the sockgate binary, and the reference
//! stack (redis-server + the Node peer) through its own `run.sh` / `stop.sh`; alone, or as
//! two nodes on one `redis-server` started here.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{client::Endpoint, control::Control, process, redis::Redis, wire::Parser};

/// Which stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The Ignis helper on Node + Redis + REST.
    Reference,
    /// sockgate.
    Sockgate,
    /// sockgate with connection state recovery on (`recovery.enabled = true`).
    SockgateRecovery,
    /// sockgate with MessagePack clients (`edge.parser = "msgpack"`).
    SockgateMsgpack,
}

impl Kind {
    /// Every stack, in the order of the report's columns.
    pub const ALL: [Kind; 4] = [
        Kind::Reference,
        Kind::Sockgate,
        Kind::SockgateRecovery,
        Kind::SockgateMsgpack,
    ];

    /// Its name in reports and in `--targets`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Reference => "reference",
            Kind::Sockgate => "sockgate",
            Kind::SockgateRecovery => "sockgate-recovery",
            Kind::SockgateMsgpack => "sockgate-msgpack",
        }
    }

    /// How its clients encode Socket.IO packets.
    pub fn parser(self) -> Parser {
        match self {
            Kind::SockgateMsgpack => Parser::Msgpack,
            _ => Parser::Default,
        }
    }

    /// Whether it has a `Batch` call (the reference has none).
    pub fn has_batch(self) -> bool {
        self != Kind::Reference
    }
}

/// One node of a stack: the process that holds its sockets.
pub struct Node {
    /// Its PID (its memory holds the sockets connected to it).
    pub pid: u32,
    /// Where clients connect.
    pub endpoint: Endpoint,
    /// How to make it send.
    pub control: Control,
    stop: Stop,
}

/// A running stack: one node, or several on one Redis.
pub struct Server {
    /// Which stack.
    pub kind: Kind,
    /// Its nodes; the first one takes every command.
    pub nodes: Vec<Node>,
    /// The Redis the stack uses, if any (the single-node reference has its own).
    pub redis_pid: Option<u32>,
    /// The port of the Redis started here for a two-node stack (its counters are read).
    pub redis_port: Option<u16>,
    /// Every process of the stack, Redis included (CPU is summed over them).
    pub pids: Vec<u32>,
    /// The Redis started here for a two-node stack, stopped after the nodes.
    redis: Option<Redis>,
}

enum Stop {
    Child(Child),
    Script { dir: PathBuf, run_dir: PathBuf },
}

/// Names of the nodes of a cluster, in order.
pub const NODE_NAMES: [&str; 2] = ["node-a", "node-b"];

impl Server {
    /// Starts the sockgate binary alone, with the in-memory adapter; with recovery on
    /// when `kind` is [`Kind::SockgateRecovery`], the MessagePack parser for
    /// [`Kind::SockgateMsgpack`].
    pub async fn sockgate(binary: &Path, work: &Path, kind: Kind) -> anyhow::Result<Server> {
        let node = sockgate_node(binary, work, kind, None).await?;
        Ok(Server::assemble(kind, vec![node], None, None))
    }

    /// Starts a `redis-server` and two sockgate nodes on it (`cluster.adapter = "redis"`).
    pub async fn sockgate_cluster(
        binary: &Path,
        work: &Path,
        kind: Kind,
    ) -> anyhow::Result<Server> {
        let redis = Redis::start(work, &format!("{}-redis", kind.name())).await?;
        let mut nodes = Vec::new();
        for name in NODE_NAMES {
            let cluster = Some((redis.url(), name));
            match sockgate_node(binary, work, kind, cluster).await {
                Ok(node) => nodes.push(node),
                Err(e) => {
                    stop_all(nodes, Some(redis)).await;
                    return Err(e);
                }
            }
        }
        Ok(Server::assemble(kind, nodes, None, Some(redis)))
    }

    /// Starts the reference stack (its own redis-server and one Node peer) from a writable
    /// copy of `reference-ignis` in which `npm ci` has run, on free ports, with its log
    /// level set to `log_level`.
    pub async fn reference(dir: &Path, work: &Path, log_level: &str) -> anyhow::Result<Server> {
        let redis_port = process::free_port()?;
        let (node, redis_pid) =
            reference_peer(dir, work, "reference", redis_port, log_level).await?;
        let redis_pid = redis_pid.ok_or_else(|| {
            anyhow!("the reference's run.sh found a Redis already on port {redis_port}")
        });
        match redis_pid {
            Ok(pid) => Ok(Server::assemble(
                Kind::Reference,
                vec![node],
                Some(pid),
                None,
            )),
            Err(e) => {
                stop_all(vec![node], None).await;
                Err(e)
            }
        }
    }

    /// Starts a `redis-server` and two reference peers on it: `run.sh` twice, each with
    /// its own port and run folder, both finding the Redis already answering (so that
    /// `stop.sh` leaves it to this tool).
    pub async fn reference_cluster(
        dir: &Path,
        work: &Path,
        log_level: &str,
    ) -> anyhow::Result<Server> {
        let redis = Redis::start(work, "reference-redis").await?;
        let mut nodes = Vec::new();
        for name in NODE_NAMES {
            let started = reference_peer(
                dir,
                work,
                &format!("reference-{name}"),
                redis.port,
                log_level,
            )
            .await;
            match started {
                Ok((node, None)) => nodes.push(node),
                Ok((node, Some(_))) => {
                    nodes.push(node);
                    stop_all(nodes, Some(redis)).await;
                    bail!(
                        "the reference's run.sh started a Redis of its own instead of using ours"
                    );
                }
                Err(e) => {
                    stop_all(nodes, Some(redis)).await;
                    return Err(e);
                }
            }
        }
        Ok(Server::assemble(Kind::Reference, nodes, None, Some(redis)))
    }

    fn assemble(
        kind: Kind,
        nodes: Vec<Node>,
        redis_pid: Option<u32>,
        redis: Option<Redis>,
    ) -> Server {
        let redis_pid = redis_pid.or(redis.as_ref().map(|r| r.pid));
        let pids = nodes.iter().map(|n| n.pid).chain(redis_pid).collect();
        Server {
            kind,
            nodes,
            redis_pid,
            redis_port: redis.as_ref().map(|r| r.port),
            pids,
            redis,
        }
    }

    /// Stops the stack (the nodes, then the Redis started here) and waits for it.
    pub async fn stop(self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for node in self.nodes {
            let stopped = node.stop.run().await;
            result = result.and(stopped);
        }
        if let Some(redis) = self.redis {
            result = result.and(redis.stop().await);
        }
        result
    }
}

/// Stops what was started before a failure; its own errors are printed, not returned.
async fn stop_all(nodes: Vec<Node>, redis: Option<Redis>) {
    let server = Server::assemble(Kind::Sockgate, nodes, None, redis);
    if let Err(e) = server.stop().await {
        eprintln!("sockgate-bench: while stopping after a failed start: {e:#}");
    }
}

/// Starts one sockgate process on free loopback ports, in development mode (every
/// `authenticate` admitted), the benchmark room allowed, logging warnings only, with
/// recovery on for [`Kind::SockgateRecovery`] and the MessagePack parser for
/// [`Kind::SockgateMsgpack`]; with `cluster = (redis_url, node_id)` on the Redis adapter.
async fn sockgate_node(
    binary: &Path,
    work: &Path,
    kind: Kind,
    cluster: Option<(String, &str)>,
) -> anyhow::Result<Node> {
    let name = match &cluster {
        Some((_, node_id)) => format!("{}-{node_id}", kind.name()),
        None => kind.name().to_owned(),
    };
    let log_path = work.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut command = Command::new(binary);
    command
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
        .env(
            "SOCKGATE_RECOVERY__ENABLED",
            (kind == Kind::SockgateRecovery).to_string(),
        )
        .env(
            "SOCKGATE_EDGE__PARSER",
            match kind.parser() {
                Parser::Default => "default",
                Parser::Msgpack => "msgpack",
            },
        );
    if let Some((url, node_id)) = &cluster {
        command
            .args(["--node-id", node_id])
            .env("SOCKGATE_CLUSTER__ADAPTER", "redis")
            .env("SOCKGATE_CLUSTER__REDIS_URL", url);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("READY ") {
                return Ok(rest.to_owned());
            }
        }
        bail!("{name} exited before READY; see {}", log_path.display())
    })
    .await
    .with_context(|| format!("{name} not ready in 30 s"))??;
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
    Ok(Node {
        pid,
        endpoint: Endpoint {
            addr: edge,
            path: "/io".into(),
            join_acked: true,
            parser: kind.parser(),
        },
        control: Control::Grpc(client),
        stop: Stop::Child(child),
    })
}

/// Runs the reference's `run.sh` with its run folder `work/{name}-run` and the Redis port
/// `redis_port`; the peer, and the PID of the redis-server run.sh started (none when a
/// Redis already answered on that port).
async fn reference_peer(
    dir: &Path,
    work: &Path,
    name: &str,
    redis_port: u16,
    log_level: &str,
) -> anyhow::Result<(Node, Option<u32>)> {
    if !dir.join("node_modules/@venizia/ignis-helpers").is_dir() {
        bail!(
            "{} has no node_modules: copy ../shared/reference-ignis there and run `npm ci` (scripts/bench does)",
            dir.display()
        );
    }
    let port = process::free_port()?;
    let run_dir = work.join(format!("{name}-run"));
    std::fs::create_dir_all(&run_dir)?;
    let output = Command::new(dir.join("run.sh"))
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("REDIS_PORT", redis_port.to_string())
        .env("RUN_DIR", &run_dir)
        .env("PEER_LOG_LEVEL", log_level)
        .env(
            "APP_ENV_LOGGER_FOLDER_PATH",
            work.join(format!("{name}-logs")),
        )
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run the reference's run.sh")?;
    let stop = Stop::Script {
        dir: dir.to_owned(),
        run_dir: run_dir.clone(),
    };
    if !output.status.success() {
        let _ = stop.run().await;
        bail!(
            "reference run.sh ({name}) failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let pid_of = |file: &str| -> anyhow::Result<Option<u32>> {
        match std::fs::read_to_string(run_dir.join(file)) {
            Ok(text) => Ok(Some(text.trim().parse().context("bad pid file")?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    };
    let peer = match pid_of("peer.pid") {
        Ok(Some(pid)) => pid,
        other => {
            let _ = stop.run().await;
            bail!("run.sh ({name}) wrote no usable peer.pid: {other:?}");
        }
    };
    let redis = pid_of("redis.pid")?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    Ok((
        Node {
            pid: peer,
            endpoint: Endpoint {
                addr,
                path: "/io".into(),
                join_acked: false,
                parser: Parser::Default,
            },
            control: Control::Rest(addr),
            stop,
        },
        redis,
    ))
}

impl Stop {
    async fn run(self) -> anyhow::Result<()> {
        match self {
            Stop::Child(mut child) => process::terminate(&mut child, Duration::from_secs(15)).await,
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
