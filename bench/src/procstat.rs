//! What the benchmark reads from `/proc`: a process's CPU time and resident memory, and
//! the whole machine's busy time (to tell how much other load shared the cores).

use std::{fs, time::Duration};

use anyhow::{Context, anyhow};

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`).
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// User + system CPU time a process has used so far (its exited threads included).
pub fn cpu_time(pid: u32, ticks_per_sec: u64) -> anyhow::Result<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    // The command name (field 2) may contain spaces: fields are counted after its ')'.
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("bad stat"))? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields[11].parse()?;
    let stime: u64 = fields[12].parse()?;
    Ok(Duration::from_micros(
        (utime + stime) * 1_000_000 / ticks_per_sec,
    ))
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("bad VmRSS line"))?
        .parse()?;
    Ok(kb * 1024)
}

/// Busy and total CPU time of the whole machine, all cores, in ticks (`/proc/stat`).
#[derive(Clone, Copy, Debug)]
pub struct MachineCpu {
    busy: u64,
}

impl MachineCpu {
    /// Reads the counters now.
    pub fn now() -> anyhow::Result<Self> {
        let stat = fs::read_to_string("/proc/stat")?;
        let line = stat
            .lines()
            .next()
            .ok_or_else(|| anyhow!("empty /proc/stat"))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal
        let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v.get(7).copied().unwrap_or(0);
        Ok(Self { busy })
    }

    /// Busy CPU time of the machine since `earlier`.
    pub fn busy_since(&self, earlier: &Self, ticks_per_sec: u64) -> Duration {
        Duration::from_micros(self.busy.saturating_sub(earlier.busy) * 1_000_000 / ticks_per_sec)
    }
}

/// Number of CPUs and the model name, from `/proc/cpuinfo`.
pub fn cpu_model() -> (usize, String) {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let count = info.lines().filter(|l| l.starts_with("processor")).count();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    (count, model)
}
