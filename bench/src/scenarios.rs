//! The scenarios, run in order against one running stack: connect storm, idle hold,
//! paced room fan-out, burst room fan-out, unicast sends, and (sockgate only) the same
//! unicast sends through `Batch` calls. Server CPU is read from `/proc`
//! around each and the idle cost (Engine.IO heartbeats, application pings) is taken out.
//! On a stack of several nodes the connections alternate between the nodes, every
//! command goes to the first node, and unicast sends target only sockets of the others.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::task::JoinSet;

use crate::{
    client::{self, Connections, Shared},
    control::Sender,
    procstat::{self, MachineCpu},
    redisstats::{self, RedisStats},
    server::{Kind, Server},
};

/// Sizes and durations of a run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Sockets held.
    pub sockets: usize,
    /// Connections being set up at once during the storm.
    pub connect_concurrency: usize,
    /// Pause after connecting, before measuring the idle state.
    pub settle: Duration,
    /// Window over which the idle CPU cost is measured.
    pub idle_window: Duration,
    /// Room sends of the paced fan-out.
    pub paced_sends: u64,
    /// Their rate, per second.
    pub paced_rate: f64,
    /// Room sends of the burst fan-out (below the per-socket send buffer, 128 packets in
    /// sockgate, so that none may be dropped).
    pub burst_sends: u64,
    /// Room sends in flight during the burst.
    pub burst_in_flight: usize,
    /// Duration of the unicast scenario.
    pub unicast_time: Duration,
    /// Unicast sends in flight.
    pub unicast_in_flight: usize,
    /// Unicast sends per `Batch` call (sockgate only).
    pub batch_size: usize,
    /// `Batch` calls in flight.
    pub batch_in_flight: usize,
    /// Longest wait for the deliveries of a scenario after its last send.
    pub drain_timeout: Duration,
}

/// Delivery figures of one scenario.
#[derive(Clone, Debug, Default)]
pub struct Delivery {
    /// Commands sent (and answered successfully).
    pub commands: u64,
    /// Commands that failed.
    pub errors: u64,
    /// Deliveries expected.
    pub expected: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// Wall time from the first command to the last delivery (or the drain deadline).
    pub wall: Duration,
    /// Time spent sending the commands.
    pub send_wall: Duration,
    /// Server CPU over `wall`, minus the idle cost of that time.
    pub net_cpu: Duration,
    /// Latency quantiles p50, p99, p99.9, max, in µs.
    pub latency_us: Vec<u64>,
    /// What it cost the Redis started for a two-node run.
    pub redis: Option<RedisCost>,
}

/// What a scenario cost Redis.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedisCost {
    /// Commands Redis executed over the scenario, minus those it executes idle in that time.
    pub calls: f64,
    /// Of which commands that change the data set, likewise net of the idle ones.
    pub writes: f64,
    /// Growth of Redis's `used_memory` over the scenario (negative when it shrank), bytes.
    pub memory: i64,
}

impl Delivery {
    /// Deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Net server CPU per delivery, µs.
    pub fn cpu_per_delivery_us(&self) -> f64 {
        self.net_cpu.as_secs_f64() * 1e6 / self.delivered.max(1) as f64
    }

    /// Net server CPU per command, µs.
    pub fn cpu_per_command_us(&self) -> f64 {
        self.net_cpu.as_secs_f64() * 1e6 / self.commands.max(1) as f64
    }

    /// Redis's cost per command: what `f` takes of it, divided by the commands sent.
    pub fn redis_per_command(&self, f: fn(&RedisCost) -> f64) -> Option<f64> {
        self.redis
            .as_ref()
            .map(|r| f(r) / self.commands.max(1) as f64)
    }
}

/// Everything measured against one server in one run.
#[derive(Clone, Debug)]
pub struct Measures {
    /// Which stack.
    pub kind: Kind,
    /// Its nodes.
    pub nodes: usize,
    /// Sockets held (over every node).
    pub sockets: usize,
    /// Server RSS before any connection (summed over the nodes, Redis apart).
    pub rss_base: u64,
    /// Server RSS with every socket connected, idle.
    pub rss_idle: u64,
    /// Server RSS after the burst fan-out.
    pub rss_after_burst: u64,
    /// Server RSS at the end (after the unicast scenarios).
    pub rss_end: u64,
    /// RSS of the stack's Redis before any connection and when idle, if it has one.
    pub redis_rss: Option<(u64, u64)>,
    /// Time to connect, authenticate and join every socket.
    pub connect_wall: Duration,
    /// Server CPU spent on it.
    pub connect_cpu: Duration,
    /// Server CPU per second while idle with every socket held.
    pub idle_cpu_per_sec: f64,
    /// Paced room fan-out.
    pub paced: Delivery,
    /// Burst room fan-out.
    pub burst: Delivery,
    /// Unicast sends.
    pub unicast: Delivery,
    /// Unicast sends through `Batch` calls (none for the reference, which has no batch).
    pub batched: Option<Delivery>,
    /// Connections the server closed during the run.
    pub connections_lost: usize,
    /// CPU used by other processes during the run, in cores (noise).
    pub other_load_cores: f64,
}

impl Measures {
    /// RSS per socket from the base, in bytes (each node's growth over its own sockets,
    /// averaged: the nodes hold equal shares).
    pub fn per_socket(&self, rss: u64) -> f64 {
        rss.saturating_sub(self.rss_base) as f64 / self.sockets as f64
    }

    /// Redis RSS growth per socket with every socket idle, in bytes.
    pub fn redis_per_socket(&self) -> Option<f64> {
        self.redis_rss
            .map(|(base, idle)| idle.saturating_sub(base) as f64 / self.sockets as f64)
    }

    /// Whether every delivery arrived and no command failed.
    pub fn lossless(&self) -> bool {
        [&self.paced, &self.burst, &self.unicast]
            .into_iter()
            .chain(&self.batched)
            .all(|d| d.lost() == 0 && d.errors == 0 && d.commands > 0)
            && self.connections_lost == 0
    }
}

struct Meter {
    pids: Vec<u32>,
    ticks: u64,
    redis_port: Option<u16>,
}

/// The server's CPU time and its Redis's counters at one moment.
struct Sample {
    cpu: Duration,
    redis: Option<RedisStats>,
}

/// The stack's cost per second while idle (heartbeats, pings, periodic Redis work).
struct Idle {
    cpu_per_sec: f64,
    /// Redis commands and writes per second.
    redis_per_sec: Option<(f64, f64)>,
}

impl Meter {
    fn cpu(&self) -> anyhow::Result<Duration> {
        self.pids
            .iter()
            .map(|&p| procstat::cpu_time(p, self.ticks))
            .sum()
    }

    async fn sample(&self) -> anyhow::Result<Sample> {
        let redis = match self.redis_port {
            Some(port) => Some(redisstats::read(port).await?),
            None => None,
        };
        Ok(Sample {
            cpu: self.cpu()?,
            redis,
        })
    }
}

impl Sample {
    /// The idle cost per second from `self` to `now`, `secs` apart.
    fn idle_until(&self, now: &Sample, secs: f64) -> Idle {
        let redis_per_sec = self.redis.zip(now.redis).map(|(a, b)| {
            (
                b.calls.saturating_sub(a.calls) as f64 / secs,
                b.writes.saturating_sub(a.writes) as f64 / secs,
            )
        });
        Idle {
            cpu_per_sec: (now.cpu - self.cpu).as_secs_f64() / secs,
            redis_per_sec,
        }
    }
}

/// RSS of each node of the stack.
fn nodes_rss(server: &Server) -> anyhow::Result<Vec<u64>> {
    server
        .nodes
        .iter()
        .map(|n| procstat::rss_bytes(n.pid))
        .collect()
}

/// Runs every scenario against `server`, printing progress to stderr.
pub async fn run(server: &Server, plan: &Plan) -> anyhow::Result<Measures> {
    let name = format!("{} ×{}", server.kind.name(), server.nodes.len());
    let meter = Meter {
        pids: server.pids.clone(),
        ticks: procstat::clock_ticks(),
        redis_port: server.redis_port,
    };
    let self_pid = std::process::id();
    let machine_start = MachineCpu::now()?;
    let server_start = meter.cpu()?;
    let tool_start = procstat::cpu_time(self_pid, meter.ticks)?;
    let run_start = Instant::now();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_base_each = nodes_rss(server)?;
    let rss_base = rss_base_each.iter().sum();
    let redis_rss_base = server.redis_pid.map(procstat::rss_bytes).transpose()?;
    let shared = Shared::new(plan.sockets);
    let endpoints: Vec<_> = server.nodes.iter().map(|n| n.endpoint.clone()).collect();

    eprintln!("[{name}] connecting {} sockets", plan.sockets);
    let cpu0 = meter.cpu()?;
    let t0 = Instant::now();
    let conns = client::connect_all(
        &endpoints,
        &shared,
        plan.sockets,
        plan.connect_concurrency,
        Duration::from_secs(60),
    )
    .await
    .context("connect storm")?;
    let connect_wall = t0.elapsed();
    let connect_cpu = meter.cpu()? - cpu0;
    // The reference does not acknowledge joins: wait until a room send reaches everyone
    // (sockgate's acknowledged joins pass at the first probe).
    room_gate(server, &shared, plan).await?;
    let connect_wall_gated = t0.elapsed();
    let connect_wall = if endpoints[0].join_acked {
        connect_wall
    } else {
        connect_wall_gated
    };
    eprintln!(
        "[{name}] {} sockets joined in {:.2} s",
        plan.sockets,
        connect_wall.as_secs_f64()
    );

    tokio::time::sleep(plan.settle).await;
    let idle0 = meter.sample().await?;
    let ti = Instant::now();
    tokio::time::sleep(plan.idle_window).await;
    let idle = idle0.idle_until(&meter.sample().await?, ti.elapsed().as_secs_f64());
    let rss_idle_each = nodes_rss(server)?;
    let rss_idle = rss_idle_each.iter().sum();
    let redis_rss = match (redis_rss_base, server.redis_pid) {
        (Some(base), Some(pid)) => Some((base, procstat::rss_bytes(pid)?)),
        _ => None,
    };
    let per_node: Vec<String> = rss_idle_each
        .iter()
        .zip(&rss_base_each)
        .enumerate()
        .map(|(node, (idle, base))| {
            let held = (0..plan.sockets)
                .filter(|&i| client::node_of(i, server.nodes.len()) == node)
                .count();
            format!(
                "{:.1}",
                idle.saturating_sub(*base) as f64 / held.max(1) as f64 / 1000.0
            )
        })
        .collect();
    eprintln!(
        "[{name}] idle: {} KB per socket (by node), {:.1} % CPU",
        per_node.join(" / "),
        idle.cpu_per_sec * 100.0
    );

    let paced = paced(server, &shared, &meter, &idle, plan).await?;
    eprintln!("[{name}] paced fan-out: {paced:?}");
    let burst = burst(server, &shared, &meter, &idle, plan).await?;
    let rss_after_burst = nodes_rss(server)?.iter().sum();
    eprintln!("[{name}] burst fan-out: {burst:?}");
    let unicast = unicast_sends(server, &shared, &conns, &meter, &idle, plan, Calls::Send).await?;
    eprintln!("[{name}] unicast: {unicast:?}");
    let batched = if server.kind.has_batch() {
        let calls = Calls::Batch(plan.batch_size);
        let batched = unicast_sends(server, &shared, &conns, &meter, &idle, plan, calls).await?;
        eprintln!("[{name}] unicast through batches: {batched:?}");
        Some(batched)
    } else {
        None
    };
    let rss_end = nodes_rss(server)?.iter().sum();

    let connections_lost = conns.ended();
    let wall = run_start.elapsed();
    let machine = MachineCpu::now()?.busy_since(&machine_start, meter.ticks);
    let server_cpu = meter.cpu()? - server_start;
    let tool_cpu = procstat::cpu_time(self_pid, meter.ticks)? - tool_start;
    let other = machine.saturating_sub(server_cpu + tool_cpu);
    conns.close().await;
    Ok(Measures {
        kind: server.kind,
        nodes: server.nodes.len(),
        sockets: plan.sockets,
        rss_base,
        rss_idle,
        rss_after_burst,
        rss_end,
        redis_rss,
        connect_wall,
        connect_cpu,
        idle_cpu_per_sec: idle.cpu_per_sec,
        paced,
        burst,
        unicast,
        batched,
        connections_lost,
        other_load_cores: other.as_secs_f64() / wall.as_secs_f64(),
    })
}

/// Sends probes to the room until every socket has received one.
async fn room_gate(server: &Server, shared: &Shared, plan: &Plan) -> anyhow::Result<()> {
    let mut sender = server.nodes[0].control.sender().await?;
    let deadline = Instant::now() + Duration::from_secs(60).max(plan.drain_timeout);
    shared.start_recording();
    let mut seq = 0;
    loop {
        sender.send_to_room(shared.payload(seq)).await?;
        seq += 1;
        let wait = Instant::now() + Duration::from_secs(2);
        while Instant::now() < wait {
            if shared
                .received
                .iter()
                .all(|r| r.load(Ordering::Relaxed) > 0)
            {
                shared.stop_recording();
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if Instant::now() > deadline {
            let missing = shared
                .received
                .iter()
                .filter(|r| r.load(Ordering::Relaxed) == 0)
                .count();
            bail!("{missing} sockets never received a room probe: not joined");
        }
    }
}

/// Waits until `expected` deliveries arrived or the drain deadline passed; the time of
/// the last delivery.
async fn drain(shared: &Shared, expected: u64, last_send: Instant, plan: &Plan) -> Instant {
    let deadline = last_send + plan.drain_timeout;
    loop {
        if shared.delivered.load(Ordering::Relaxed) >= expected {
            return Instant::now();
        }
        if Instant::now() >= deadline {
            return deadline;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The times, server CPU and Redis counters of one scenario.
struct Window {
    start: Instant,
    sent: Instant,
    end: Instant,
    before: Sample,
    after: Sample,
}

fn finish(
    shared: &Shared,
    (commands, errors, expected): (u64, u64, u64),
    window: Window,
    idle: &Idle,
) -> Delivery {
    shared.stop_recording();
    let wall = window.end - window.start;
    let secs = wall.as_secs_f64();
    let idle_cpu = Duration::from_secs_f64(idle.cpu_per_sec * secs);
    let redis = match (window.before.redis, window.after.redis, idle.redis_per_sec) {
        (Some(a), Some(b), Some((calls_per_sec, writes_per_sec))) => Some(RedisCost {
            calls: (b.calls.saturating_sub(a.calls) as f64 - calls_per_sec * secs).max(0.0),
            writes: (b.writes.saturating_sub(a.writes) as f64 - writes_per_sec * secs).max(0.0),
            memory: b.used_memory as i64 - a.used_memory as i64,
        }),
        _ => None,
    };
    Delivery {
        commands,
        errors,
        expected,
        delivered: shared.delivered.load(Ordering::Relaxed),
        wall,
        send_wall: window.sent - window.start,
        net_cpu: (window.after.cpu - window.before.cpu).saturating_sub(idle_cpu),
        latency_us: shared
            .latency
            .quantiles(&[0.5, 0.99, 0.999, 1.0])
            .unwrap_or_default(),
        redis,
    }
}

/// The commands of a room fan-out once the last one is answered.
struct Sends {
    start: Instant,
    before: Sample,
    total: u64,
    errors: u64,
}

/// Waits for a room fan-out's deliveries and measures it: every socket of the plan is in
/// the room, so each command that succeeded must reach each of them once.
async fn room_delivery(
    shared: &Shared,
    meter: &Meter,
    idle: &Idle,
    plan: &Plan,
    sends: Sends,
) -> anyhow::Result<Delivery> {
    let Sends {
        start,
        before,
        total,
        errors,
    } = sends;
    let sent = Instant::now();
    let commands = total - errors;
    let expected = commands * plan.sockets as u64;
    let end = drain(shared, expected, sent, plan).await;
    let after = meter.sample().await?;
    let mut delivery = finish(
        shared,
        (commands, errors, expected),
        Window {
            start,
            sent,
            end,
            before,
            after,
        },
        idle,
    );
    // A duplicate would hide a loss in the total: count per socket.
    delivery.delivered = shared
        .received
        .iter()
        .map(|r| u64::from(r.load(Ordering::Relaxed)).min(commands))
        .sum();
    Ok(delivery)
}

async fn paced(
    server: &Server,
    shared: &Shared,
    meter: &Meter,
    idle: &Idle,
    plan: &Plan,
) -> anyhow::Result<Delivery> {
    let mut sender = server.nodes[0].control.sender().await?;
    let period = Duration::from_secs_f64(1.0 / plan.paced_rate);
    shared.start_recording();
    let before = meter.sample().await?;
    let start = Instant::now();
    let mut errors = 0;
    for seq in 0..plan.paced_sends {
        tokio::time::sleep_until((start + period * seq as u32).into()).await;
        if sender.send_to_room(shared.payload(seq)).await.is_err() {
            errors += 1;
        }
    }
    let sends = Sends {
        start,
        before,
        total: plan.paced_sends,
        errors,
    };
    room_delivery(shared, meter, idle, plan, sends).await
}

async fn burst(
    server: &Server,
    shared: &Shared,
    meter: &Meter,
    idle: &Idle,
    plan: &Plan,
) -> anyhow::Result<Delivery> {
    let mut senders = Vec::new();
    for _ in 0..plan.burst_in_flight {
        senders.push(server.nodes[0].control.sender().await?);
    }
    let shared_next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    shared.start_recording();
    let before = meter.sample().await?;
    let start = Instant::now();
    let total = plan.burst_sends;
    let mut tasks = JoinSet::new();
    // The payload stamps are taken when each command is issued.
    let stamp = Arc::new(shared_epoch_stamper(shared));
    for mut sender in senders {
        let next = shared_next.clone();
        let errors = errors.clone();
        let stamp = stamp.clone();
        tasks.spawn(async move {
            loop {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                if seq >= total {
                    break;
                }
                if sender.send_to_room(stamp(seq)).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let sends = Sends {
        start,
        before,
        total,
        errors: errors.load(Ordering::Relaxed),
    };
    room_delivery(shared, meter, idle, plan, sends).await
}

/// The connections unicast sends go to: every one on a single node; on several, those
/// not on the first node, which takes the commands (every send crosses nodes).
fn unicast_targets(sockets: usize, nodes: usize) -> Vec<usize> {
    (0..sockets)
        .filter(|&i| nodes == 1 || client::node_of(i, nodes) != 0)
        .collect()
}

/// A `payload(seq)` that can move into tasks.
fn shared_epoch_stamper(shared: &Shared) -> impl Fn(u64) -> String + Send + Sync + 'static {
    let epoch = shared.epoch;
    move |seq| {
        format!(
            "{{\"t\":{},\"s\":{seq}}}",
            epoch.elapsed().as_micros() as u64
        )
    }
}

/// How unicast sends are made.
#[derive(Clone, Copy, Debug)]
enum Calls {
    /// One `Send` per call.
    Send,
    /// This many sends per `Batch` call.
    Batch(usize),
}

/// Where the senders of the unicast scenario count: what each socket should receive.
struct Unicast {
    ids: Vec<String>,
    targets: Vec<usize>,
    expected: Vec<AtomicU32>,
    next: AtomicU64,
    errors: AtomicU64,
}

impl Unicast {
    /// Sends until `stop_at`, `calls` at a time.
    async fn sender(
        &self,
        mut sender: Sender,
        calls: Calls,
        stop_at: Instant,
        stamp: impl Fn(u64) -> String,
    ) {
        let size = match calls {
            Calls::Send => 1,
            Calls::Batch(size) => size,
        };
        while Instant::now() < stop_at {
            let first = self.next.fetch_add(size as u64, Ordering::Relaxed);
            let indexes: Vec<usize> = (first..first + size as u64)
                .map(|seq| self.targets[(seq % self.targets.len() as u64) as usize])
                .collect();
            let outcomes = match calls {
                Calls::Send => {
                    let sent = sender
                        .send_to_socket(&self.ids[indexes[0]], stamp(first))
                        .await;
                    vec![sent.is_ok()]
                }
                Calls::Batch(_) => {
                    let sends = indexes
                        .iter()
                        .zip(first..)
                        .map(|(&i, seq)| (self.ids[i].as_str(), stamp(seq)))
                        .collect();
                    match sender.batch_to_sockets(sends).await {
                        Ok(outcomes) => outcomes,
                        Err(_) => vec![false; size],
                    }
                }
            };
            for (index, ok) in indexes.into_iter().zip(outcomes) {
                if ok {
                    self.expected[index].fetch_add(1, Ordering::Relaxed);
                } else {
                    self.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn unicast_sends(
    server: &Server,
    shared: &Shared,
    conns: &Connections,
    meter: &Meter,
    idle: &Idle,
    plan: &Plan,
    calls: Calls,
) -> anyhow::Result<Delivery> {
    let in_flight = match calls {
        Calls::Send => plan.unicast_in_flight,
        Calls::Batch(_) => plan.batch_in_flight,
    };
    let mut senders = Vec::new();
    for _ in 0..in_flight {
        senders.push(server.nodes[0].control.sender().await?);
    }
    let targets = unicast_targets(conns.ids.len(), server.nodes.len());
    if targets.is_empty() {
        bail!("no socket to send to");
    }
    let state = Arc::new(Unicast {
        ids: conns.ids.clone(),
        targets,
        expected: (0..conns.ids.len()).map(|_| AtomicU32::new(0)).collect(),
        next: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let stamp = Arc::new(shared_epoch_stamper(shared));
    shared.start_recording();
    let before = meter.sample().await?;
    let start = Instant::now();
    let stop_at = start + plan.unicast_time;
    let mut tasks = JoinSet::new();
    for sender in senders {
        let (state, stamp) = (state.clone(), stamp.clone());
        tasks.spawn(async move {
            state
                .sender(sender, calls, stop_at, move |seq| stamp(seq))
                .await;
        });
    }
    while tasks.join_next().await.is_some() {}
    let sent = Instant::now();
    let errors = state.errors.load(Ordering::Relaxed);
    let total: u64 = state
        .expected
        .iter()
        .map(|e| u64::from(e.load(Ordering::Relaxed)))
        .sum();
    let end = drain(shared, total, sent, plan).await;
    let after = meter.sample().await?;
    let mut delivery = finish(
        shared,
        (total, errors, total),
        Window {
            start,
            sent,
            end,
            before,
            after,
        },
        idle,
    );
    // Deliveries to the wrong socket or twice would hide losses in the total: count per
    // socket.
    let short: u64 = state
        .expected
        .iter()
        .zip(&shared.received)
        .map(|(e, r)| {
            u64::from(e.load(Ordering::Relaxed))
                .saturating_sub(u64::from(r.load(Ordering::Relaxed)))
        })
        .sum();
    delivery.delivered = total - short;
    Ok(delivery)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_targets_are_every_socket_on_one_node_and_only_other_nodes_on_two() {
        assert_eq!(unicast_targets(4, 1), vec![0, 1, 2, 3]);
        assert_eq!(unicast_targets(5, 2), vec![1, 3]);
        for i in unicast_targets(101, 2) {
            assert_eq!(client::node_of(i, 2), 1);
        }
    }
}
