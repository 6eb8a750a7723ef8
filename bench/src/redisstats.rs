//! What a two-node run reads from its own `redis-server`: `INFO commandstats` and
//! `INFO memory`, over a plain TCP connection (one inline command, one bulk reply), so that
//! the cost of a scenario in Redis operations and memory can be told from deltas.

use anyhow::{Context, anyhow, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// Commands that change the data set among those sockgate and the reference use (Redis
/// flags them `write`). PUBLISH is not one: it stores nothing.
const WRITES: &[&str] = &[
    "xadd",
    "xtrim",
    "xdel",
    "set",
    "setex",
    "del",
    "unlink",
    "hset",
    "hdel",
    "sadd",
    "srem",
    "zadd",
    "zrem",
    "zremrangebyscore",
    "expire",
    "pexpire",
    "incr",
    "incrby",
];

/// Redis's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Commands executed so far, `INFO` itself left out (this tool sends it).
    pub calls: u64,
    /// Of which commands that change the data set ([`WRITES`]).
    pub writes: u64,
    /// `used_memory`: bytes the allocator holds for data, buffers and overhead.
    pub used_memory: u64,
}

/// The counters of the `redis-server` on `127.0.0.1:port`.
pub async fn read(port: u16) -> anyhow::Result<RedisStats> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot connect to Redis on port {port}"))?;
    let mut stream = BufReader::new(stream);
    stream
        .get_mut()
        .write_all(b"INFO commandstats memory\r\n")
        .await?;
    let mut header = String::new();
    stream.read_line(&mut header).await?;
    let len: usize = header
        .strip_prefix('$')
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow!("unexpected reply to INFO: {header:?}"))?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    parse(&String::from_utf8_lossy(&body))
}

/// Reads the counters out of an `INFO` reply.
fn parse(info: &str) -> anyhow::Result<RedisStats> {
    let mut stats = RedisStats::default();
    let mut memory = None;
    for line in info.lines() {
        if let Some(v) = line.strip_prefix("used_memory:") {
            memory = Some(v.trim().parse()?);
        }
        // cmdstat_xadd:calls=5,usec=…  (a subcommand reads cmdstat_client|setname)
        let Some((name, rest)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let calls: u64 = rest
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .ok_or_else(|| anyhow!("no calls in {line:?}"))?
            .parse()?;
        if name == "info" {
            continue;
        }
        stats.calls += calls;
        if WRITES.contains(&name) {
            stats.writes += calls;
        }
    }
    let Some(used_memory) = memory else {
        bail!("no used_memory in INFO");
    };
    stats.used_memory = used_memory;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_command_but_info_and_writes_apart() {
        let info = "# Commandstats\r\n\
            cmdstat_xadd:calls=5,usec=50,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_publish:calls=7,usec=7,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_info:calls=40,usec=400,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n\
            cmdstat_client|setname:calls=2,usec=2,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n\
            \r\n# Memory\r\nused_memory:1234567\r\nused_memory_human:1.18M\r\n";
        assert_eq!(
            parse(info).unwrap(),
            RedisStats {
                calls: 14,
                writes: 5,
                used_memory: 1_234_567,
            }
        );
    }

    #[test]
    fn a_reply_without_memory_is_an_error() {
        assert!(parse("# Commandstats\r\n").is_err());
    }
}
