//! The side-by-side tables, one for single nodes and one for two nodes on one Redis: one
//! row per measure, the median over the repeats of each stack (with the range when
//! repeated), the ratio, the design target (set for one node).

use std::fmt::Write;

use crate::{
    scenarios::{Measures, Plan},
    server::Kind,
};

struct Row {
    label: String,
    value: fn(&Measures) -> f64,
    decimals: usize,
    target: &'static str,
}

fn rows(plan: &Plan, nodes: usize) -> Vec<Row> {
    let cluster = nodes > 1;
    // The design's targets are set for one node.
    let target = |t: &'static str| if cluster { "" } else { t };
    let row = |label: String, value: fn(&Measures) -> f64, decimals, target| Row {
        label,
        value,
        decimals,
        target,
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
        ),
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
        row(
            format!(
                "burst room fan-out{} ({} sends, {} in flight): server CPU per delivery{cpu}, µs",
                room_via, plan.burst_sends, plan.burst_in_flight
            ),
            |m| m.burst.cpu_per_delivery_us(),
            2,
            target("≤ 1"),
        ),
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
        ),
        row(
            "  delivery latency p99, ms".into(),
            |m| quantile_ms(&m.unicast, 1),
            1,
            "",
        ),
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
            |m| batched(m, crate::scenarios::Delivery::cpu_per_command_us),
            2,
            target("≤ 6"),
        ),
        row(
            "  delivery latency p99, ms".into(),
            |m| batched(m, |d| quantile_ms(d, 1)),
            1,
            "",
        ),
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
fn batched(m: &Measures, f: impl Fn(&crate::scenarios::Delivery) -> f64) -> f64 {
    m.batched.as_ref().map_or(f64::NAN, f)
}

fn quantile_ms(d: &crate::scenarios::Delivery, i: usize) -> f64 {
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

/// The Markdown table of the measures of the runs on `nodes` nodes.
pub fn table(plan: &Plan, runs: &[Measures], nodes: usize) -> String {
    let runs: Vec<&Measures> = runs.iter().filter(|m| m.nodes == nodes).collect();
    let of = |kind: Kind, f: fn(&Measures) -> f64| {
        runs.iter()
            .filter(|m| m.kind == kind)
            .map(|m| f(m))
            .filter(|v| !v.is_nan())
            .collect::<Vec<_>>()
    };
    let repeats = runs
        .iter()
        .filter(|m| m.kind == Kind::Sockgate)
        .count()
        .max(runs.iter().filter(|m| m.kind == Kind::Reference).count());
    let repeated = repeats > 1;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| measure | reference | sockgate | sockgate ÷ reference | target (sockgate) |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- |");
    for row in rows(plan, nodes) {
        let r = median(of(Kind::Reference, row.value));
        let s = median(of(Kind::Sockgate, row.value));
        let ratio = match (r, s) {
            (Some((r, _, _)), Some((s, _, _))) if r != 0.0 => format!("{:.2}", s / r),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio} | {} |",
            row.label,
            cell(r, row.decimals, repeated),
            cell(s, row.decimals, repeated),
            row.target
        );
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
    use crate::scenarios::Delivery;

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
            batched: (kind == Kind::Sockgate).then(Delivery::default),
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
}
