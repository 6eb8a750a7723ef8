//! `sockgate-bench`: holds N real Socket.IO WebSocket clients against sockgate and
//! against the reference stack (the Ignis helper on Node + Redis + REST), one after the
//! other in the same run, each as one node and as two nodes on one Redis, and prints
//! their figures side by side. See `BENCHMARKS.md`.

mod client;
mod control;
mod histogram;
mod http;
mod process;
mod procstat;
mod reads;
mod redis;
mod redisstats;
mod report;
mod scenarios;
mod server;
mod wire;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Parser;

use scenarios::{Measures, Plan};
use server::{Kind, Server};

/// Benchmark sockgate side by side with the reference stack.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Which stacks to run, comma separated: `reference`, `sockgate`,
    /// `sockgate-recovery` (sockgate with connection state recovery on, to compare with
    /// `sockgate`), `sockgate-msgpack` (sockgate and its clients on the MessagePack
    /// parser) (default: reference,sockgate; with --smoke, every sockgate target).
    #[arg(long, value_delimiter = ',')]
    targets: Option<Vec<String>>,
    /// Which setups to run: `1` (one node), `2` (two nodes on one Redis, started here), or
    /// both, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    nodes: Vec<usize>,
    /// Sockets held on one node.
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// Runs per stack on one node (alternating stacks), reported as median and range.
    #[arg(long, default_value_t = 2)]
    repeat: usize,
    /// Sockets held by two nodes (half on each).
    #[arg(long, default_value_t = 4_000)]
    cluster_sockets: usize,
    /// Runs per stack on two nodes.
    #[arg(long, default_value_t = 2)]
    cluster_repeat: usize,
    /// A few seconds with a few sockets, sockgate only unless --targets says otherwise:
    /// checks the tool itself (every message delivered), no timing meaning; on two nodes
    /// too unless --nodes says otherwise.
    #[arg(long)]
    smoke: bool,
    /// The sockgate binary (default: `sockgate` next to this executable).
    #[arg(long)]
    sockgate_bin: Option<PathBuf>,
    /// A writable copy of `reference-ignis` in which `npm ci` has run.
    #[arg(long, default_value = "target/bench/reference-ignis")]
    reference_dir: PathBuf,
    /// The reference's `PEER_LOG_LEVEL` (sockgate runs at `warn` too).
    #[arg(long, default_value = "warn")]
    reference_log_level: String,
    /// Where server logs go (default: a fresh folder under `target/bench/`).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Also write the report (machine, versions, date, table) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 500)]
    connect_concurrency: usize,
    /// Sends of the paced fan-out (at 10 per second).
    #[arg(long, default_value_t = 100)]
    paced_sends: u64,
    /// Sends of the burst fan-out.
    #[arg(long, default_value_t = 50)]
    burst_sends: u64,
    /// Seconds of unicast sends (one `Send` per call, then again through `Batch` calls
    /// of 100).
    #[arg(long, default_value_t = 5.0)]
    unicast_secs: f64,
    /// Instead of the comparison: time sockgate's control reads (GetInfo, GetSocket,
    /// ListSockets, ListRooms) on one node holding each of these numbers of sockets, e.g.
    /// `--reads 1000,18000`.
    #[arg(long, value_delimiter = ',')]
    reads: Option<Vec<usize>>,
}

impl Args {
    /// The plan of the runs on `nodes` nodes.
    fn plan(&self, nodes: usize) -> Plan {
        let sockets = if nodes == 1 {
            self.sockets
        } else {
            self.cluster_sockets
        };
        if self.smoke {
            return Plan {
                sockets: sockets.min(20),
                connect_concurrency: 20,
                settle: Duration::from_millis(200),
                idle_window: Duration::from_millis(500),
                paced_sends: 10,
                paced_rate: 10.0,
                burst_sends: 20,
                burst_in_flight: 4,
                unicast_time: Duration::from_millis(500),
                unicast_in_flight: 32,
                batch_size: 100,
                batch_in_flight: 4,
                drain_timeout: Duration::from_secs(20),
            };
        }
        Plan {
            sockets,
            connect_concurrency: self.connect_concurrency,
            settle: Duration::from_secs(3),
            idle_window: Duration::from_secs(5),
            paced_sends: self.paced_sends,
            paced_rate: 10.0,
            burst_sends: self.burst_sends,
            burst_in_flight: 4,
            unicast_time: Duration::from_secs_f64(self.unicast_secs),
            unicast_in_flight: 32,
            batch_size: 100,
            batch_in_flight: 4,
            drain_timeout: Duration::from_secs(60),
        }
    }

    /// Runs per stack on `nodes` nodes.
    fn repeats(&self, nodes: usize) -> usize {
        match (self.smoke, nodes) {
            (true, _) => 1,
            (false, 1) => self.repeat.max(1),
            (false, _) => self.cluster_repeat.max(1),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sockgate-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    if let Some(sizes) = &args.reads {
        return run_reads(&args, sizes).await;
    }
    let mut setups = Vec::new();
    for &nodes in &args.nodes {
        if !matches!(nodes, 1 | 2) {
            bail!("unknown --nodes {nodes} (1, 2)");
        }
        if !setups.contains(&nodes) {
            setups.push(nodes);
        }
    }
    if setups.is_empty() {
        bail!("--nodes names no setup (1, 2)");
    }
    // The smoke runs sockgate alone (plain, recovery on, MessagePack) unless told
    // otherwise: the reference needs a prepared copy (`npm ci`) and Redis.
    let default_targets = if args.smoke {
        Kind::ALL
            .into_iter()
            .filter(|k| *k != Kind::Reference)
            .map(|k| k.name().to_owned())
            .collect()
    } else {
        vec!["reference".to_owned(), "sockgate".to_owned()]
    };
    let mut kinds = Vec::new();
    for t in args.targets.as_ref().unwrap_or(&default_targets) {
        match Kind::ALL.into_iter().find(|k| k.name() == t) {
            Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
            Some(_) => {}
            None => bail!(
                "unknown target {t:?} ({})",
                Kind::ALL.map(Kind::name).join(", ")
            ),
        }
    }
    if setups.contains(&2) {
        // Before any run: a missing Redis would otherwise fail only after the one-node runs.
        redis::binary()?;
    }
    let most_sockets = setups
        .iter()
        .map(|&n| args.plan(n).sockets)
        .max()
        .unwrap_or(0);
    raise_fd_limit(most_sockets)?;
    let sockgate_bin = sockgate_binary(&args)?;
    let work = work_dir(&args)?;
    let reference_dir =
        std::fs::canonicalize(&args.reference_dir).unwrap_or(args.reference_dir.clone());

    let mut runs = Vec::new();
    for &nodes in &setups {
        let plan = args.plan(nodes);
        let repeats = args.repeats(nodes);
        for round in 0..repeats {
            // Alternate the order so that neither stack always runs on a warmer machine.
            let mut order = kinds.clone();
            if round % 2 == 1 {
                order.reverse();
            }
            for &kind in &order {
                let name = format!("{} on {nodes} node(s)", kind.name());
                eprintln!("== {name}, run {} of {repeats}", round + 1);
                let log = &args.reference_log_level;
                let server = match (kind, nodes) {
                    (Kind::Reference, 1) => Server::reference(&reference_dir, &work, log).await,
                    (Kind::Reference, _) => {
                        Server::reference_cluster(&reference_dir, &work, log).await
                    }
                    (_, 1) => Server::sockgate(&sockgate_bin, &work, kind).await,
                    (_, _) => Server::sockgate_cluster(&sockgate_bin, &work, kind).await,
                }
                .with_context(|| format!("cannot start {name}"))?;
                let result = scenarios::run(&server, &plan).await;
                server.stop().await?;
                runs.push(result.with_context(|| format!("{name}: run failed"))?);
                // Let sockets close and the machine calm down between stacks.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }

    let tables: Vec<(usize, String)> = setups
        .iter()
        .map(|&n| (n, report::table(&args.plan(n), &runs, n)))
        .collect();
    for (nodes, table) in &tables {
        println!("{}\n\n{table}", setup_title(*nodes));
    }
    if let Some(out) = &args.out {
        let doc = document(&args, &runs, &tables, &sockgate_bin, &reference_dir);
        std::fs::write(out, doc).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    let ok = runs.iter().all(Measures::lossless);
    if !ok {
        eprintln!(
            "sockgate-bench: some deliveries were lost or some commands failed (see the table)"
        );
    }
    Ok(ok)
}

/// The control reads scenario alone (see `reads.rs`).
async fn run_reads(args: &Args, sizes: &[usize]) -> anyhow::Result<bool> {
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("--reads needs socket counts above 0, e.g. --reads 1000,18000");
    }
    raise_fd_limit(sizes.iter().copied().max().unwrap_or(0))?;
    let binary = sockgate_binary(args)?;
    let work = work_dir(args)?;
    let table = reads::run(&binary, &work, sizes).await?;
    println!("### Control reads, one node\n\n{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(true)
}

/// Raises the open-file limit to what `sockets` connections need (the servers started
/// from here inherit it).
fn raise_fd_limit(sockets: usize) -> anyhow::Result<()> {
    let need = sockets as u64 + 1024;
    let limit = rlimit::increase_nofile_limit(need)?;
    if limit < need {
        bail!(
            "the open-file limit is {limit} and cannot be raised to {need} (the hard limit is lower): raise it (ulimit -Hn) or use fewer --sockets"
        );
    }
    Ok(())
}

/// The sockgate binary to run (`--sockgate-bin`, or the one next to this executable).
fn sockgate_binary(args: &Args) -> anyhow::Result<PathBuf> {
    Ok(match &args.sockgate_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no parent folder")?
            .join("sockgate"),
    })
}

/// Where server logs go, created.
fn work_dir(args: &Args) -> anyhow::Result<PathBuf> {
    let work = match &args.work_dir {
        Some(w) => w.clone(),
        None => PathBuf::from(format!("target/bench/run-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    Ok(std::fs::canonicalize(&work)?)
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            })
            .trim()
            .to_owned()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Version of a package in the workspace's Cargo.lock.
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.find(&needle)
        .map(|i| {
            let rest = &lock[i + needle.len()..];
            rest[..rest.find('"').unwrap_or(0)].to_owned()
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The heading of the table of runs on `nodes` nodes.
fn setup_title(nodes: usize) -> &'static str {
    if nodes == 1 {
        "### One node"
    } else {
        "### Two nodes on one Redis"
    }
}

/// What the two-node table measures, under its heading.
const CLUSTER_NOTE: &str = "Each stack runs two nodes on one redis-server started for the run; \
half the sockets connect to each node, every command goes to node A, the room spans both \
nodes and unicast sends go only to socket ids held by node B. Server CPU is the two nodes' \
and Redis' together. The reference's REST send to a client id publishes through its Redis \
emitter whichever node holds the socket (on one node too) and answers success without \
checking that the id exists; sockgate's `Send` checks the id in the socket directory in \
Redis (one round trip) before it publishes to the node that holds it. With recovery on \
(`sockgate-recovery`), a replayable `Send` is an XADD to the Redis stream that every node \
reads instead of a publish; the Redis rows are read from its `INFO` before and after each \
scenario, net of its idle rate.";

fn document(
    args: &Args,
    runs: &[Measures],
    tables: &[(usize, String)],
    sockgate_bin: &Path,
    reference_dir: &Path,
) -> String {
    let (cpus, model) = procstat::cpu_model();
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let mut doc = String::new();
    let _ = writeln!(doc, "# Benchmarks\n");
    let _ = writeln!(
        doc,
        "Written by `scripts/bench` (`sockgate-bench`, source in [`bench/`](bench)); the method, the \
         scenarios and how to read the figures are in [`bench/README.md`](bench/README.md).\n"
    );
    let _ = writeln!(doc, "## Latest run\n");
    let _ = writeln!(
        doc,
        "- date: {}",
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    let _ = writeln!(
        doc,
        "- machine: {cpus} × {model}, {mem_gb:.1} GiB RAM, Linux {}; the load tool runs on the same cores",
        command_output("uname", &["-r"])
    );
    let _ = writeln!(
        doc,
        "- sockgate: {} (`{}`), socketioxide {}, engineioxide {}, tokio {}, {}",
        command_output("git", &["describe", "--always", "--dirty"]),
        relative(sockgate_bin),
        locked_version("socketioxide"),
        locked_version("engineioxide"),
        locked_version("tokio"),
        command_output("rustc", &["-V"]),
    );
    let _ = writeln!(
        doc,
        "- reference: `{}`: @venizia/ignis-helpers 0.0.7, socket.io 4.8.3, Node {}, {}; `PEER_LOG_LEVEL={}`",
        relative(reference_dir),
        command_output("node", &["-v"]),
        command_output("redis-server", &["-v"])
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        args.reference_log_level
    );
    for (nodes, _) in tables {
        let plan = args.plan(*nodes);
        let _ = writeln!(
            doc,
            "- load on {}: {} WebSocket clients{}, {} run(s) per stack; noise: other processes used {} cores on average during the runs",
            if *nodes == 1 { "one node" } else { "two nodes" },
            plan.sockets,
            if *nodes == 1 { "" } else { " (half on each)" },
            args.repeats(*nodes),
            runs.iter()
                .filter(|m| m.nodes == *nodes)
                .map(|m| format!("{}={:.2}", m.kind.name(), m.other_load_cores))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (nodes, table) in tables {
        let _ = writeln!(doc, "\n{}\n", setup_title(*nodes));
        if *nodes > 1 {
            let _ = writeln!(doc, "{CLUSTER_NOTE}\n");
        }
        let _ = write!(doc, "{table}");
    }
    doc
}

/// A path as the report shows it: relative to the repository when it lies inside, so the
/// committed report names no folder of the machine it ran on.
fn relative(path: &std::path::Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| path.display().to_string())
}
