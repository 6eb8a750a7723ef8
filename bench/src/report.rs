//! The side-by-side tables, one for single nodes and one for two nodes on one Redis: one
//! row per measure, the median over the repeats of each stack that ran (with the range
//! when repeated), the ratios (sockgate ÷ reference, recovery on ÷ off, MessagePack ÷ the
//! default parser), the design target (set for one node) and recovery's target (issue 15:
//! at most 10 % more CPU per delivery than with recovery off, at most one Redis write per
//! `Send`).

use std::fmt::Write;

use crate::{
    scenarios::{Delivery, Measures, Plan, RedisCost},
    server::Kind,
};

struct Row {
    label: String,
    value: Value,
    decimals: usize,
    target: &'static str,
    recovery_target: &'static str,
}

impl Row {
    fn recovery(mut self, target: &'static str) -> Row {
        self.recovery_target = target;
        self
    }
}

/// Recovery's CPU target, against the same measure with recovery off.
const RECOVERY_CPU: &str = "≤ 1.10 × off";

/// The ratio columns: (heading, numerator, denominator).
const RATIOS: [(&str, Kind, Kind); 3] = [
    ("sockgate ÷ reference", Kind::Sockgate, Kind::Reference),
    ("recovery on ÷ off", Kind::SockgateRecovery, Kind::Sockgate),
    ("msgpack ÷ default", Kind::SockgateMsgpack, Kind::Sockgate),
];

type Value = Box<dyn Fn(&Measures) -> f64>;

/// The rows of what one scenario (`scenario` reads it; `None` for a stack without it)
/// cost the Redis of a two-node run, per send.
fn redis_rows(scenario: fn(&Measures) -> Option<&Delivery>) -> Vec<Row> {
    let per_send = move |f: fn(&RedisCost) -> f64| -> Value {
        Box::new(move |m| scenario(m).map_or(f64::NAN, |d| d.redis_per_command(f).unwrap_or(0.0)))
    };
    vec![
        Row {
            label: "  Redis commands per send (net of idle)".into(),
            value: per_send(|r| r.calls),
            decimals: 2,
            target: "",
            recovery_target: "",
        },
        Row {
            label: "  Redis writes per send (net of idle)".into(),
            value: per_send(|r| r.writes),
            decimals: 2,
            target: "",
            recovery_target: "≤ 1",
        },
        Row {
            label: "  Redis used_memory growth per send, bytes".into(),
            value: per_send(|r| r.memory as f64),
            decimals: 0,
            target: "",
            recovery_target: "",
        },
    ]
}

fn rows(plan: &Plan, nodes: usize) -> Vec<Row> {
    let cluster = nodes > 1;
    // The design's targets are set for one node.
    let target = |t: &'static str| if cluster { "" } else { t };
    let row = |label: String, value: fn(&Measures) -> f64, decimals, target| Row {
        label,
        value: Box::new(value),
        decimals,
        target,
        recovery_target: "",
    };
    // Whose CPU is counted: one node alone (the single-node reference includes its Redis),
    // or every node and their Redis.
    let cpu = if cluster { " (nodes + Redis)" } else { "" };
    let room_via = if cluster {
        " via node A to a room on both nodes"
    } else {
        ""
    };
    let mut rows = vec![row(
        if cluster {
            "server RSS per idle authenticated socket on its node (each holds half), KB".into()
        } else {
            "server RSS per idle authenticated socket, KB".into()
        },
        |m| m.per_socket(m.rss_idle) / 1000.0,
        1,
        "≤ 8",
    )];
    if cluster {
        rows.push(row(
            "Redis RSS per idle socket, KB".into(),
            |m| m.redis_per_socket().unwrap_or(0.0) / 1000.0,
            2,
            "",
        ));
    }
    rows.extend([
        row(
            "server RSS per socket after the burst fan-out, KB".into(),
            |m| m.per_socket(m.rss_after_burst) / 1000.0,
            1,
            "",
        ),
        row(
            "  the same ÷ idle".into(),
            |m| m.per_socket(m.rss_after_burst) / m.per_socket(m.rss_idle).max(1.0),
            2,
            "≤ 1.2",
        ),
        row(
            "server RSS per socket after the unicast sends, KB".into(),
            |m| m.per_socket(m.rss_end) / 1000.0,
            1,
            "",
        ),
        row(
            format!(
                "connect + authenticate + join {} sockets{} ({} at once), s",
                plan.sockets,
                if cluster { ", half on each node" } else { "" },
                plan.connect_concurrency
            ),
            |m| m.connect_wall.as_secs_f64(),
            2,
            target("≤ 0.5 (server-bound part)"),
        ),
        row(
            format!("  server CPU per connection set-up{cpu}, µs"),
            |m| m.connect_cpu.as_secs_f64() * 1e6 / m.sockets as f64,
            0,
            "",
        ),
        row(
            format!(
                "paced room fan-out{} ({}/s, {} sends): server CPU per delivery{cpu}, µs",
                room_via, plan.paced_rate, plan.paced_sends
            ),
            |m| m.paced.cpu_per_delivery_us(),
            2,
            target("≤ 5"),
        )
        .recovery(RECOVERY_CPU),
        row(
            "  sends per second achieved (one command at a time)".into(),
            |m| m.paced.commands as f64 / m.paced.send_wall.as_secs_f64(),
            1,
            "",
        ),
        row(
            "  delivery latency p50, ms".into(),
            |m| quantile_ms(&m.paced, 0),
            1,
            "",
        ),
        row(
            "  delivery latency p99, ms".into(),
            |m| quantile_ms(&m.paced, 1),
            1,
            target("≤ 50"),
        ),
        row(
            "  delivery latency max, ms".into(),
            |m| quantile_ms(&m.paced, 3),
            1,
            "",
        ),
    ]);
    if cluster {
        rows.extend(redis_rows(|m| Some(&m.paced)));
    }
    rows.extend([
        row(
            format!(
                "burst room fan-out{} ({} sends, {} in flight): server CPU per delivery{cpu}, µs",
                room_via, plan.burst_sends, plan.burst_in_flight
            ),
            |m| m.burst.cpu_per_delivery_us(),
            2,
            target("≤ 1"),
        )
        .recovery(RECOVERY_CPU),
        row(
            "  deliveries per second".into(),
            |m| m.burst.delivered as f64 / m.burst.wall.as_secs_f64(),
            0,
            "",
        ),
        row(
            "  delivery latency p99, ms".into(),
            |m| quantile_ms(&m.burst, 1),
            1,
            "",
        ),
    ]);
    if cluster {
        rows.extend(redis_rows(|m| Some(&m.burst)));
    }
    rows.extend([
        row(
            format!(
                "unicast send {}({} in flight): calls per second",
                if cluster {
                    "via node A to socket ids on node B "
                } else {
                    "to a socket id "
                },
                plan.unicast_in_flight
            ),
            |m| m.unicast.commands as f64 / m.unicast.send_wall.as_secs_f64(),
            0,
            target("≥ 50000"),
        ),
        row(
            format!("  server CPU per call{cpu}, µs"),
            |m| m.unicast.cpu_per_command_us(),
            1,
            target("≤ 15"),
        )
        .recovery(RECOVERY_CPU),
        row(
            "  delivery latency p99, ms".into(),
            |m| quantile_ms(&m.unicast, 1),
            1,
            "",
        ),
    ]);
    if cluster {
        rows.extend(redis_rows(|m| Some(&m.unicast)));
    }
    rows.extend([
        row(
            format!(
                "unicast send {}through Batch calls of {} ({} in flight): sends per second",
                if cluster {
                    "via node A to socket ids on node B "
                } else {
                    "to a socket id "
                },
                plan.batch_size,
                plan.batch_in_flight
            ),
            |m| batched(m, |d| d.commands as f64 / d.send_wall.as_secs_f64()),
            0,
            if cluster { "≥ 75000" } else { "≥ 150000" },
        ),
        row(
            format!("  server CPU per send{cpu}, µs"),
            |m| batched(m, Delivery::cpu_per_command_us),
            2,
            target("≤ 6"),
        ),
        row(
            "  delivery latency p99, ms".into(),
            |m| batched(m, |d| quantile_ms(d, 1)),
            1,
            "",
        ),
    ]);
    if cluster {
        rows.extend(redis_rows(|m| m.batched.as_ref()));
    }
    rows.extend([
        row(
            "lost deliveries + failed commands + dropped connections".into(),
            |m| {
                let batched = m.batched.as_ref().map_or(0, |d| d.lost() + d.errors);
                (m.paced.lost()
                    + m.burst.lost()
                    + m.unicast.lost()
                    + m.paced.errors
                    + m.burst.errors
                    + m.unicast.errors
                    + batched
                    + m.connections_lost as u64) as f64
            },
            0,
            "0",
        ),
        row(
            format!("server CPU while idle{cpu}, % of one core"),
            |m| m.idle_cpu_per_sec * 100.0,
            1,
            "",
        ),
        row(
            "noise: CPU of other processes during the run, cores".into(),
            |m| m.other_load_cores,
            2,
            "",
        ),
    ]);
    rows
}

/// A figure of the batched unicast sends; NaN (shown as `–`) for a stack without them.
fn batched(m: &Measures, f: impl Fn(&Delivery) -> f64) -> f64 {
    m.batched.as_ref().map_or(f64::NAN, f)
}

fn quantile_ms(d: &Delivery, i: usize) -> f64 {
    d.latency_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some((mid, v[0], v[v.len() - 1]))
}

fn cell(stats: Option<(f64, f64, f64)>, decimals: usize, repeated: bool) -> String {
    match stats {
        None => "–".into(),
        Some((m, lo, hi)) if repeated && (hi - lo).abs() > f64::EPSILON => {
            format!("{m:.decimals$} ({lo:.decimals$}–{hi:.decimals$})")
        }
        Some((m, _, _)) => format!("{m:.decimals$}"),
    }
}

/// The Markdown table of the measures of the runs on `nodes` nodes: a column per stack
/// that ran, a ratio column per pair of them that ran.
pub fn table(plan: &Plan, runs: &[Measures], nodes: usize) -> String {
    let runs: Vec<&Measures> = runs.iter().filter(|m| m.nodes == nodes).collect();
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| runs.iter().any(|m| m.kind == *k))
        .collect();
    let ratios: Vec<_> = RATIOS
        .iter()
        .filter(|(_, a, b)| kinds.contains(a) && kinds.contains(b))
        .collect();
    let recovery = kinds.contains(&Kind::SockgateRecovery);
    let repeats = kinds
        .iter()
        .map(|k| runs.iter().filter(|m| m.kind == *k).count())
        .max()
        .unwrap_or(0);
    let repeated = repeats > 1;
    let mut heads: Vec<&str> = vec!["measure"];
    heads.extend(kinds.iter().map(|k| k.name()));
    heads.extend(ratios.iter().map(|(head, _, _)| *head));
    heads.push("target (sockgate)");
    if recovery {
        heads.push("target (sockgate-recovery)");
    }
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", heads.join(" | "));
    let _ = writeln!(out, "|{}", " --- |".repeat(heads.len()));
    for row in rows(plan, nodes) {
        // NaN: a measure the stack has not (the reference's batches).
        let stats = |kind: Kind| {
            median(
                runs.iter()
                    .filter(|m| m.kind == kind)
                    .map(|m| (row.value)(m))
                    .filter(|v| !v.is_nan())
                    .collect(),
            )
        };
        let mut cells = vec![row.label.clone()];
        cells.extend(
            kinds
                .iter()
                .map(|&k| cell(stats(k), row.decimals, repeated)),
        );
        // A ratio to a figure that shows as zero would say nothing.
        let shown = |v: f64| (v * 10f64.powi(row.decimals as i32)).round() != 0.0;
        cells.extend(ratios.iter().map(|(_, a, b)| match (stats(*a), stats(*b)) {
            (Some((a, _, _)), Some((b, _, _))) if shown(b) => format!("{:.2}", a / b),
            _ => "–".into(),
        }));
        cells.push(row.target.into());
        if recovery {
            cells.push(row.recovery_target.into());
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    if repeated {
        let _ = writeln!(
            out,
            "\nMedian of {repeats} runs per stack, range in parentheses; the stacks ran one after the other, alternating."
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn measures(kind: Kind, nodes: usize, rss_idle: u64) -> Measures {
        Measures {
            kind,
            nodes,
            sockets: 1000,
            rss_base: 0,
            rss_idle,
            rss_after_burst: rss_idle,
            rss_end: rss_idle,
            redis_rss: (nodes > 1).then_some((0, 50_000)),
            connect_wall: Duration::from_secs(1),
            connect_cpu: Duration::from_secs(1),
            idle_cpu_per_sec: 0.0,
            paced: Delivery::default(),
            burst: Delivery::default(),
            unicast: Delivery::default(),
            batched: kind.has_batch().then(Delivery::default),
            connections_lost: 0,
            other_load_cores: 0.0,
        }
    }

    fn plan() -> Plan {
        Plan {
            sockets: 1000,
            connect_concurrency: 10,
            settle: Duration::ZERO,
            idle_window: Duration::ZERO,
            paced_sends: 1,
            paced_rate: 10.0,
            burst_sends: 1,
            burst_in_flight: 1,
            unicast_time: Duration::ZERO,
            unicast_in_flight: 1,
            batch_size: 100,
            batch_in_flight: 1,
            drain_timeout: Duration::ZERO,
        }
    }

    #[test]
    fn each_table_shows_only_the_runs_of_its_setup() {
        let runs = [
            measures(Kind::Reference, 1, 20_000_000),
            measures(Kind::Sockgate, 1, 8_000_000),
            measures(Kind::Reference, 2, 30_000_000),
            measures(Kind::Sockgate, 2, 9_000_000),
        ];
        let one = table(&plan(), &runs, 1);
        assert!(
            one.contains("| server RSS per idle authenticated socket, KB | 20.0 | 8.0 | 0.40 |")
        );
        assert!(!one.contains("Redis RSS"));
        let two = table(&plan(), &runs, 2);
        assert!(
            two.contains("(each holds half), KB | 30.0 | 9.0 | 0.30 |"),
            "{two}"
        );
        assert!(
            two.contains("| Redis RSS per idle socket, KB | 0.05 | 0.05 |"),
            "{two}"
        );
        assert!(two.contains("via node A to socket ids on node B"));
        assert!(!two.contains("≥ 50000"), "one-node targets stay out: {two}");
        assert!(
            two.contains("through Batch calls of 100 (1 in flight): sends per second | – |"),
            "the reference has no batch: {two}"
        );
    }

    #[test]
    fn recovery_is_compared_with_sockgate_and_its_redis_cost_shown_per_send() {
        let with_cost = |kind, writes: f64| {
            let mut m = measures(kind, 2, 9_000_000);
            m.burst = Delivery {
                commands: 50,
                delivered: 50_000,
                net_cpu: Duration::from_millis(if writes > 0.0 { 110 } else { 100 }),
                redis: Some(RedisCost {
                    calls: 100.0,
                    writes,
                    memory: 5_000,
                }),
                ..Delivery::default()
            };
            m.batched = Some(Delivery {
                commands: 100,
                redis: Some(RedisCost {
                    calls: 10.0,
                    writes: writes * 2.0,
                    memory: 0,
                }),
                ..Delivery::default()
            });
            m
        };
        let runs = [
            with_cost(Kind::Sockgate, 0.0),
            with_cost(Kind::SockgateRecovery, 50.0),
        ];
        let two = table(&plan(), &runs, 2);
        assert!(
            two.starts_with(
                "| measure | sockgate | sockgate-recovery | recovery on ÷ off | target (sockgate) | target (sockgate-recovery) |"
            ),
            "{two}"
        );
        assert!(
            two.contains("server CPU per delivery (nodes + Redis), µs | 2.00 | 2.20 | 1.10 |  | ≤ 1.10 × off |"),
            "{two}"
        );
        assert!(
            two.contains("|   Redis writes per send (net of idle) | 0.00 | 1.00 | – |  | ≤ 1 |"),
            "{two}"
        );
        assert!(
            two.contains("|   Redis used_memory growth per send, bytes | 100 | 100 | 1.00 |"),
            "{two}"
        );
        let (_, batches) = two.split_once("through Batch calls").expect("batch rows");
        assert!(
            batches
                .contains("|   Redis writes per send (net of idle) | 0.00 | 1.00 | – |  | ≤ 1 |"),
            "both sockgate targets send through batches, with their Redis cost: {two}"
        );
        let one = table(&plan(), &runs, 1);
        assert!(!one.contains("Redis writes"), "{one}");
    }

    #[test]
    fn msgpack_is_compared_with_the_default_parser() {
        let with_cpu = |kind, micros: u64| {
            let mut m = measures(kind, 1, 8_000_000);
            m.paced = Delivery {
                commands: 10,
                delivered: 10_000,
                net_cpu: Duration::from_micros(micros * 10_000),
                ..Delivery::default()
            };
            m
        };
        let runs = [
            with_cpu(Kind::Sockgate, 10),
            with_cpu(Kind::SockgateMsgpack, 8),
        ];
        let one = table(&plan(), &runs, 1);
        assert!(
            one.starts_with(
                "| measure | sockgate | sockgate-msgpack | msgpack ÷ default | target (sockgate) |\n"
            ),
            "{one}"
        );
        assert!(
            one.contains("server CPU per delivery, µs | 10.00 | 8.00 | 0.80 | ≤ 5 |"),
            "{one}"
        );
    }
}
