//! Connection state recovery in a cluster ([`crate::recovery`]): the history is one Redis
//! stream, the sessions are Redis keys.
//!
//! - **History.** A replayable `Send` is one `XADD` (trimmed to about
//!   `recovery.max_history_events`); its stream id is its offset. The node that took the
//!   call does not emit it: every node reads the stream (its own connection, blocking
//!   `XREAD`) and delivers each entry to its own sockets in stream order, so that every
//!   socket of the cluster receives events in offset order, which recovery relies on. A
//!   node's memory keeps the recent part of the stream; a replay older than that is read
//!   back with `XRANGE`, and one whose events were trimmed (`max-deleted-entry-id`) is
//!   refused.
//! - **Sessions.** While a socket is authenticated, its session is a field of its node's
//!   hash `live:{uid}`, rewritten when its rooms change; the node's heartbeat keeps that
//!   hash a recovery window longer than the node (so a node killed without warning leaves
//!   its sessions recoverable for the window). When the socket goes away recoverably its
//!   session moves to `away:{sid}`, expiring with the window. Taking a session (a
//!   reconnecting client) is one Lua script, so it happens at most once.
//! - **Order.** Every session write of a node goes through one task, in order, and so do
//!   its takes: a client that comes back to the node it left finds its session where the
//!   node's last write put it.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::future::BoxFuture;
use prost::Message;
use redis::Value;
use socketioxide::socket::Sid;
use sockgate_proto::{GetSocketRequest, SendRequest};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{
    super::{ClusterError, messages::Query},
    Redis,
    link::{Link, LinkError},
    names::{
        recovery_away_ids_key, recovery_away_index_key, recovery_away_key, recovery_live_key,
        recovery_nodes_key, recovery_stream_key,
    },
};
use crate::{
    auth::Identity,
    clock,
    edge::index::Page,
    metrics::RecoveryOutcome,
    recovery::{
        Recovery,
        history::Entry,
        offset::Offset,
        pid::{SecretDigest, hex, unhex},
        saved::Saved,
        store::{AwayFilter, HistoryError, SessionsError, SharedHistory, Store},
    },
    rooms::{self, Owner},
};

/// Stream entries as Redis returns them: id, then field-value pairs.
type RawEntries = Vec<(String, Vec<(String, Vec<u8>)>)>;

/// Most entries one `XREAD` returns.
const READ_BATCH: usize = 512;

/// A session as Redis keeps it.
#[derive(Clone, PartialEq, prost::Message)]
struct SessionRecord {
    #[prost(string, optional, tag = "1")]
    user_id: Option<String>,
    #[prost(string, repeated, tag = "2")]
    room_patterns: Vec<String>,
    #[prost(message, optional, tag = "3")]
    metadata: Option<prost_types::Struct>,
    #[prost(uint64, optional, tag = "4")]
    expires_at: Option<u64>,
    #[prost(string, repeated, tag = "5")]
    server_rooms: Vec<String>,
    #[prost(string, repeated, tag = "6")]
    client_rooms: Vec<String>,
    #[prost(uint64, tag = "7")]
    since_ms: u64,
    #[prost(uint64, tag = "8")]
    since_seq: u64,
    #[prost(uint64, tag = "9")]
    away_since_ms: u64,
}

/// The stored form: the digest of the pid's secret in hex (64 bytes, which the take
/// script compares), then the record.
fn encode(saved: &Saved) -> Vec<u8> {
    let owned = |wanted: Owner| {
        saved
            .rooms
            .iter()
            .filter(|(_, owner)| *owner == wanted)
            .map(|(room, _)| room.clone())
            .collect()
    };
    let identity = &saved.identity;
    let record = SessionRecord {
        user_id: identity.user_id.clone(),
        room_patterns: identity.room_patterns.clone(),
        metadata: identity.metadata.clone(),
        expires_at: identity.expires_at,
        server_rooms: owned(Owner::Server),
        client_rooms: owned(Owner::Client),
        since_ms: saved.since.ms,
        since_seq: saved.since.seq,
        away_since_ms: crate::recovery::offset::unix_ms(saved.away_since),
    };
    let mut bytes = hex(&saved.digest).into_bytes();
    record.encode(&mut bytes).expect("a Vec grows");
    bytes
}

fn decode(bytes: &[u8], away_since: Option<u64>) -> Option<Saved> {
    let (digest, record) = (bytes.get(..64)?, bytes.get(64..)?);
    let record = SessionRecord::decode(record).ok()?;
    let mut rooms: Vec<(String, Owner)> = record
        .server_rooms
        .into_iter()
        .map(|r| (r, Owner::Server))
        .chain(record.client_rooms.into_iter().map(|r| (r, Owner::Client)))
        .collect();
    rooms.sort_by(|a, b| a.0.cmp(&b.0));
    Some(Saved {
        digest: unhex(digest)?,
        identity: Arc::new(Identity {
            user_id: record.user_id,
            room_patterns: record.room_patterns,
            rooms: Vec::new(),
            metadata: record.metadata,
            expires_at: record.expires_at,
        }),
        rooms,
        since: Offset {
            ms: record.since_ms,
            seq: record.since_seq,
        },
        away_since: SystemTime::UNIX_EPOCH
            + Duration::from_millis(away_since.unwrap_or(record.away_since_ms)),
    })
}

/// Takes a session: the away key (KEYS[1], then out of the away indexes KEYS[2] and
/// KEYS[3]) if the digest matches, else the live hash of a node that is gone (KEYS[4..]).
/// Returns `{1, record, live_index}` (0: the away key, n: the n-th live hash) or `{0}`.
const TAKE_SCRIPT: &str = r"
local away = redis.call('GET', KEYS[1])
if away then
  if string.sub(away, 1, 64) ~= ARGV[1] then return {0} end
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
  return {1, away, 0}
end
for i = 4, #KEYS do
  local live = redis.call('HGET', KEYS[i], ARGV[2])
  if live then
    if string.sub(live, 1, 64) ~= ARGV[1] then return {0} end
    redis.call('HDEL', KEYS[i], ARGV[2])
    return {1, live, i - 3}
  end
end
return {0}
";

/// Forgets the sessions whose window closed before ARGV[1] (ms) from the away index
/// (KEYS[1], by expiry) and the id-ordered one (KEYS[2]), at most ARGV[2] of them.
const EXPIRE_SCRIPT: &str = r"
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #gone > 0 then
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('ZREM', KEYS[1], unpack(gone))
end
return #gone
";

/// Most expired sessions one heartbeat forgets (the rest are the next one's; until then a
/// listing skips them, their keys having expired).
const EXPIRE_BATCH: usize = 1000;

/// One session operation of this node, in order.
enum Op {
    Live(String, Vec<u8>),
    Forget(String),
    Away(String, Vec<u8>),
    Take {
        sid: String,
        digest: SecretDigest,
        reply: oneshot::Sender<Result<Saved, RecoveryOutcome>>,
    },
}

/// The Redis store of a cluster node.
pub(super) struct RedisStore {
    ops: mpsc::UnboundedSender<Op>,
    link: Link,
    prefix: String,
    window: Duration,
    node_ttl: Duration,
    max_events: usize,
}

impl RedisStore {
    fn send(&self, op: Op) {
        // The task lives as long as the process; a send fails only at exit.
        let _ = self.ops.send(op);
    }

    /// The nodes that beat less than a node TTL and a window ago, with their last beat:
    /// those whose live hash may still hold sessions.
    async fn recent_nodes(&self) -> Result<Vec<(String, u64)>, LinkError> {
        let since = (self.node_ttl + self.window).as_millis() as u64;
        self.link
            .run(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(recovery_nodes_key(&self.prefix))
                    .arg(clock::now_ms().saturating_sub(since))
                    .arg("+inf")
                    .arg("WITHSCORES"),
            )
            .await
    }
}

impl RedisStore {
    /// The sessions away in id order after `from`, `filter`ed: the first `limit` after
    /// `after` (`from` is either `after` or, to count every match, the start), and how
    /// many matched up to where the reading stopped. Reads `limit + 1` ids per round trip
    /// (`ZRANGEBYLEX`), then their sessions (`MGET`); stops after one match past the page
    /// unless `count_all`.
    async fn scan_away(
        &self,
        filter: AwayFilter<'_>,
        from: Option<Sid>,
        after: Option<Sid>,
        limit: usize,
        count_all: bool,
    ) -> Result<Page<(Sid, Saved)>, LinkError> {
        let chunk = limit + 1;
        let mut cursor = from.map_or_else(|| "-".to_owned(), |sid| format!("({sid}"));
        let mut page = Page {
            items: Vec::new(),
            matched: 0,
            more: false,
        };
        loop {
            let ids: Vec<String> = self
                .link
                .run(
                    redis::cmd("ZRANGEBYLEX")
                        .arg(recovery_away_ids_key(&self.prefix))
                        .arg(&cursor)
                        .arg("+")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(chunk),
                )
                .await?;
            let Some(last) = ids.last() else {
                return Ok(page);
            };
            cursor = format!("({last}");
            let keys: Vec<String> = ids
                .iter()
                .map(|sid| recovery_away_key(&self.prefix, sid))
                .collect();
            let records: Vec<Option<Vec<u8>>> = self.link.run(redis::cmd("MGET").arg(keys)).await?;
            // An id whose key is gone (taken, or expired and not yet forgotten) is skipped.
            let sessions = ids.iter().zip(records).filter_map(|(id, record)| {
                let saved = decode(&record?, None)?;
                Some((rooms::parse_sid(id)?, saved))
            });
            for (sid, saved) in sessions.filter(|(_, saved)| filter.matches(saved)) {
                page.matched += 1;
                if after.is_some_and(|after| sid <= after) {
                    continue;
                }
                if page.items.len() < limit {
                    page.items.push((sid, saved));
                    continue;
                }
                page.more = true;
                if !count_all {
                    return Ok(page);
                }
            }
            if ids.len() < chunk {
                return Ok(page);
            }
        }
    }
}

impl Store for RedisStore {
    fn keeps_live(&self) -> bool {
        true
    }

    fn live(&self, sid: Sid, saved: &Saved) {
        self.send(Op::Live(sid.to_string(), encode(saved)));
    }

    fn forget(&self, sid: Sid) {
        self.send(Op::Forget(sid.to_string()));
    }

    fn away(&self, sid: Sid, saved: Saved) {
        self.send(Op::Away(sid.to_string(), encode(&saved)));
    }

    fn take<'a>(
        &'a self,
        sid: Sid,
        digest: &'a SecretDigest,
    ) -> BoxFuture<'a, Result<Saved, RecoveryOutcome>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.send(Op::Take {
                sid: sid.to_string(),
                digest: *digest,
                reply,
            });
            answer.await.unwrap_or(Err(RecoveryOutcome::StoreFailed))
        })
    }

    fn is_away(&self, sid: Sid) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let sid = sid.to_string();
            let dead = self.recent_nodes().await.unwrap_or_default();
            let mut pipe = redis::pipe();
            pipe.cmd("EXISTS")
                .arg(recovery_away_key(&self.prefix, &sid));
            for (uid, _) in &dead {
                pipe.cmd("HEXISTS")
                    .arg(recovery_live_key(&self.prefix, uid))
                    .arg(&sid);
            }
            let found: Vec<bool> = self.link.run_pipe(&pipe).await.unwrap_or_default();
            found.into_iter().any(|f| f)
        })
    }

    fn away_count(&self) -> BoxFuture<'_, u32> {
        Box::pin(async move {
            self.link
                .run(
                    redis::cmd("ZCOUNT")
                        .arg(recovery_away_index_key(&self.prefix))
                        .arg(format!("({}", clock::now_ms()))
                        .arg("+inf"),
                )
                .await
                .unwrap_or(0)
        })
    }

    fn away_page<'a>(
        &'a self,
        filter: AwayFilter<'a>,
        after: Option<Sid>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Page<(Sid, Saved)>, SessionsError>> {
        Box::pin(async move {
            let failed = |e: LinkError| SessionsError(e.to_string());
            if !filter.is_empty() {
                // Counting the matches reads them all.
                return self
                    .scan_away(filter, None, after, limit, true)
                    .await
                    .map_err(failed);
            }
            let mut count = redis::cmd("ZCOUNT");
            count
                .arg(recovery_away_index_key(&self.prefix))
                .arg(format!("({}", clock::now_ms()))
                .arg("+inf");
            let (page, count) = tokio::join!(
                self.scan_away(filter, after, after, limit, false),
                self.link.run::<u32>(&count)
            );
            Ok(Page {
                matched: count.map_err(failed)?,
                ..page.map_err(failed)?
            })
        })
    }

    fn away_session(&self, sid: Sid) -> BoxFuture<'_, Result<Option<Saved>, SessionsError>> {
        Box::pin(async move {
            let record: Option<Vec<u8>> = self
                .link
                .run(redis::cmd("GET").arg(recovery_away_key(&self.prefix, &sid.to_string())))
                .await
                .map_err(|e| SessionsError(e.to_string()))?;
            Ok(record.and_then(|bytes| decode(&bytes, None)))
        })
    }

    fn shared(&self) -> Option<&dyn SharedHistory> {
        Some(self)
    }
}

impl SharedHistory for RedisStore {
    fn append<'a>(
        &'a self,
        sends: &'a [SendRequest],
    ) -> BoxFuture<'a, Vec<Result<Offset, HistoryError>>> {
        Box::pin(async move {
            let key = recovery_stream_key(&self.prefix);
            let mut pipe = redis::pipe();
            for send in sends {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(self.max_events)
                    .arg("*")
                    .arg("s")
                    .arg(send.encode_to_vec());
            }
            // Each XADD's own reply: one failing does not fail the others.
            pipe.ignore_errors();
            let all_failed =
                |e: String| sends.iter().map(|_| Err(HistoryError(e.clone()))).collect();
            let ids = match self
                .link
                .run_pipe::<Vec<redis::RedisResult<String>>>(&pipe)
                .await
            {
                Ok(ids) if ids.len() == sends.len() => ids,
                Ok(ids) => {
                    return all_failed(format!("{} replies to {} XADDs", ids.len(), sends.len()));
                }
                Err(e) => return all_failed(e.to_string()),
            };
            ids.into_iter()
                .map(|id| {
                    let id = id.map_err(|e| HistoryError(e.to_string()))?;
                    id.parse()
                        .map_err(|_| HistoryError(format!("unexpected stream id {id:?}")))
                })
                .collect()
        })
    }

    fn range(
        &self,
        after: Offset,
        until: Offset,
    ) -> BoxFuture<'_, Result<Option<Vec<Entry>>, HistoryError>> {
        Box::pin(async move {
            let key = recovery_stream_key(&self.prefix);
            let mut pipe = redis::pipe();
            pipe.cmd("XINFO").arg("STREAM").arg(&key);
            pipe.cmd("XRANGE")
                .arg(&key)
                .arg(format!("({after}"))
                .arg(until.to_string());
            let (info, entries): (Value, Value) = match self.link.run_pipe(&pipe).await {
                Ok(reply) => reply,
                // No stream yet: nothing was ever recorded.
                Err(e) if e.to_string().contains("no such key") => return Ok(Some(Vec::new())),
                Err(e) => return Err(HistoryError(e.to_string())),
            };
            let deleted = field(&info, "max-deleted-entry-id")
                .and_then(|id| id.parse::<Offset>().ok())
                .unwrap_or_default();
            if deleted > after {
                return Ok(None);
            }
            Ok(Some(stream_entries(entries)))
        })
    }
}

/// A field of an `XINFO STREAM` reply (a map in RESP3, a flat list in RESP2).
fn field(info: &Value, name: &str) -> Option<String> {
    let text = |v: &Value| redis::from_redis_value::<String>(v.clone()).ok();
    match info {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .and_then(|(_, v)| text(v)),
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| text(&pair[0]).as_deref() == Some(name))
            .and_then(|pair| text(pair.get(1)?)),
        _ => None,
    }
}

/// The entries of an `XRANGE` / `XREAD` stream reply whose `s` field is a `SendRequest`.
fn stream_entries(reply: Value) -> Vec<Entry> {
    let Ok(items) = redis::from_redis_value::<RawEntries>(reply) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|(id, fields)| {
            let offset = id.parse().ok()?;
            let (_, bytes) = fields.into_iter().find(|(name, _)| name == "s")?;
            let send = SendRequest::decode(bytes.as_slice()).ok()?;
            Some(Entry {
                offset,
                send: Arc::new(send),
            })
        })
        .collect()
}

/// Starts recovery on this node of the cluster: the store, the task that applies its
/// operations in order, the housekeeping, and the stream reader that delivers to this
/// node's sockets.
pub(super) async fn start(
    redis: &Arc<Redis>,
    recovery: &Arc<Recovery>,
) -> Result<(), ClusterError> {
    let config = recovery.config();
    let (ops, queue) = mpsc::unbounded_channel();
    let store = Arc::new(RedisStore {
        ops,
        link: redis.link.clone(),
        prefix: redis.prefix.clone(),
        window: config.max_disconnection,
        node_ttl: redis.config.node_ttl,
        max_events: config.max_history_events,
    });
    let window = config.max_disconnection;
    recovery.use_store(store.clone());
    // XREAD blocks its connection: the reader has one of its own.
    let reader = Link::connect(&redis.config.redis_url, redis.config.command_timeout()).await?;
    let last: Option<String> = last_id(&redis.link, &redis.prefix).await?;
    let start = last.and_then(|id| id.parse().ok()).unwrap_or_default();
    recovery.order().restart_at(start);
    tokio::spawn(apply_ops(redis.clone(), store.clone(), queue));
    tokio::spawn(housekeeping(redis.clone(), window));
    tokio::spawn(read_stream(redis.clone(), reader, start));
    Ok(())
}

async fn last_id(link: &Link, prefix: &str) -> Result<Option<String>, LinkError> {
    let last: RawEntries = link
        .run(
            redis::cmd("XREVRANGE")
                .arg(recovery_stream_key(prefix))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1),
        )
        .await?;
    Ok(last.into_iter().next().map(|(id, _)| id))
}

/// Applies this node's session operations in order, each batch of writes in one
/// pipeline.
async fn apply_ops(
    redis: Arc<Redis>,
    store: Arc<RedisStore>,
    mut queue: mpsc::UnboundedReceiver<Op>,
) {
    let live = recovery_live_key(&redis.prefix, &redis.uid);
    let mut batch = Vec::new();
    while queue.recv_many(&mut batch, 256).await > 0 {
        let mut pipe = redis::pipe();
        let mut writes = 0;
        for op in batch.drain(..) {
            match op {
                Op::Live(sid, bytes) => {
                    pipe.cmd("HSET").arg(&live).arg(sid).arg(bytes).ignore();
                    writes += 1;
                }
                Op::Forget(sid) => {
                    pipe.cmd("HDEL").arg(&live).arg(sid).ignore();
                    writes += 1;
                }
                Op::Away(sid, bytes) => {
                    pipe.cmd("HDEL").arg(&live).arg(&sid).ignore();
                    pipe.cmd("SET")
                        .arg(recovery_away_key(&redis.prefix, &sid))
                        .arg(bytes)
                        .arg("PX")
                        .arg(store.window.as_millis() as u64)
                        .ignore();
                    pipe.cmd("ZADD")
                        .arg(recovery_away_index_key(&redis.prefix))
                        .arg(clock::now_ms() + store.window.as_millis() as u64)
                        .arg(&sid)
                        .ignore();
                    pipe.cmd("ZADD")
                        .arg(recovery_away_ids_key(&redis.prefix))
                        .arg(0)
                        .arg(&sid)
                        .ignore();
                    writes += 1;
                }
                Op::Take { sid, digest, reply } => {
                    if writes > 0 {
                        flush(&redis, &pipe).await;
                        pipe = redis::pipe();
                        writes = 0;
                    }
                    let _ = reply.send(take(&redis, &store, &sid, &digest).await);
                }
            }
        }
        if writes > 0 {
            flush(&redis, &pipe).await;
        }
    }
}

async fn flush(redis: &Redis, pipe: &redis::Pipeline) {
    if let Err(e) = redis.link.run_pipe::<()>(pipe).await {
        warn!("recovery: session writes failed (those sessions cannot be recovered): {e}");
    }
}

/// Takes a session: kept away, or live on a node that is gone. A session live on a node
/// that still beats is taken only when no node has its socket connected (the node was
/// killed and has not expired yet); when one has, it is `StillConnected`.
async fn take(
    redis: &Redis,
    store: &RedisStore,
    sid: &str,
    digest: &SecretDigest,
) -> Result<Saved, RecoveryOutcome> {
    let failed = |_| RecoveryOutcome::StoreFailed;
    let now = clock::now_ms();
    let ttl = store.node_ttl.as_millis() as u64;
    let nodes = store.recent_nodes().await.map_err(failed)?;
    let (beating, gone): (Vec<_>, Vec<_>) = nodes
        .into_iter()
        .partition(|(uid, beat)| beat + ttl > now && *uid != redis.uid);
    if let Some(saved) = run_take(store, sid, digest, &gone).await? {
        return Ok(saved);
    }
    let mut pipe = redis::pipe();
    for (uid, _) in &beating {
        pipe.cmd("HEXISTS")
            .arg(recovery_live_key(&store.prefix, uid))
            .arg(sid);
    }
    let held: Vec<bool> = store.link.run_pipe(&pipe).await.map_err(failed)?;
    let holders: Vec<(String, u64)> = beating
        .into_iter()
        .zip(held)
        .filter_map(|(node, held)| held.then_some(node))
        .collect();
    if holders.is_empty() {
        return Err(RecoveryOutcome::Unknown);
    }
    let asked = super::questions::ask(
        redis,
        Query::Socket(GetSocketRequest {
            socket_id: sid.to_owned(),
        }),
    )
    .await
    .map_err(|_| RecoveryOutcome::StoreFailed)?;
    if asked.answers.iter().any(|a| !a.sockets.is_empty()) {
        return Err(RecoveryOutcome::StillConnected);
    }
    // Nobody has it: its node died after its last beat.
    run_take(store, sid, digest, &holders)
        .await?
        .ok_or(RecoveryOutcome::Unknown)
}

/// Runs the take script on the away key and the live hashes of `nodes` (with their last
/// beat); `None` when none has the session.
async fn run_take(
    store: &RedisStore,
    sid: &str,
    digest: &SecretDigest,
    nodes: &[(String, u64)],
) -> Result<Option<Saved>, RecoveryOutcome> {
    static TAKE: std::sync::LazyLock<redis::Script> =
        std::sync::LazyLock::new(|| redis::Script::new(TAKE_SCRIPT));
    let mut script = TAKE.prepare_invoke();
    script.key(recovery_away_key(&store.prefix, sid));
    script.key(recovery_away_index_key(&store.prefix));
    script.key(recovery_away_ids_key(&store.prefix));
    for (uid, _) in nodes {
        script.key(recovery_live_key(&store.prefix, uid));
    }
    script.arg(hex(digest)).arg(sid);
    let reply: Value = store
        .link
        .run_script(&script)
        .await
        .map_err(|_| RecoveryOutcome::StoreFailed)?;
    let Ok((found, bytes, live_index)) = redis::from_redis_value::<(u8, Vec<u8>, usize)>(reply)
    else {
        return Ok(None);
    };
    if found != 1 {
        return Ok(None);
    }
    // A session of a node that is gone went away when the node last beat.
    let away_since = live_index
        .checked_sub(1)
        .and_then(|i| nodes.get(i))
        .map(|(_, beat)| *beat);
    let saved = decode(&bytes, away_since).ok_or(RecoveryOutcome::Unknown)?;
    if saved.away_since + store.window <= SystemTime::now() {
        return Err(RecoveryOutcome::Unknown);
    }
    Ok(Some(saved))
}

/// Every heartbeat: this node's live sessions outlive it by a window, and it is listed
/// with its last beat; the stream loses what is older than a window.
async fn housekeeping(redis: Arc<Redis>, window: Duration) {
    let mut ticker = tokio::time::interval(redis.config.heartbeat_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if redis.is_leaving() {
            return;
        }
        let now = clock::now_ms();
        let keep = (redis.config.node_ttl + window).as_millis() as u64;
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(recovery_nodes_key(&redis.prefix))
            .arg(now)
            .arg(&redis.uid)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(recovery_nodes_key(&redis.prefix))
            .arg("-inf")
            .arg(now.saturating_sub(keep))
            .ignore()
            .cmd("PEXPIRE")
            .arg(recovery_live_key(&redis.prefix, &redis.uid))
            .arg(keep)
            .ignore()
            .cmd("XTRIM")
            .arg(recovery_stream_key(&redis.prefix))
            .arg("MINID")
            .arg("~")
            .arg(now.saturating_sub(window.as_millis() as u64))
            .ignore();
        if let Err(e) = redis.link.run_pipe::<()>(&pipe).await {
            debug!("recovery housekeeping failed: {e}");
        }
        let mut expire = EXPIRE.prepare_invoke();
        expire
            .key(recovery_away_index_key(&redis.prefix))
            .key(recovery_away_ids_key(&redis.prefix))
            .arg(now)
            .arg(EXPIRE_BATCH);
        if let Err(e) = redis.link.run_script::<()>(&expire).await {
            debug!("recovery housekeeping failed: {e}");
        }
    }
}

static EXPIRE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(EXPIRE_SCRIPT));

/// Reads the stream from `after` and hands each batch to this node's sockets, in order.
async fn read_stream(redis: Arc<Redis>, reader: Link, mut after: Offset) {
    let key = recovery_stream_key(&redis.prefix);
    let block = (redis.config.command_timeout() / 2)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut failing = false;
    loop {
        let read = reader
            .run::<Value>(
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_BATCH)
                    .arg("BLOCK")
                    .arg(block.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(after.to_string()),
            )
            .await;
        let reply = match read {
            Ok(reply) => {
                failing = false;
                reply
            }
            Err(e) => {
                if !failing {
                    warn!("recovery: cannot read the event stream: {e}");
                    failing = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let entries = xread_entries(reply);
        if let Some(last) = entries.last() {
            after = last.offset;
            redis.node.local().deliver(entries).await;
        }
    }
}

/// The entries of an `XREAD` reply for one stream (nil when it timed out).
fn xread_entries(reply: Value) -> Vec<Entry> {
    let streams = match reply {
        Value::Map(pairs) => pairs.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                Value::Array(mut pair) if pair.len() == 2 => pair.pop(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    streams.into_iter().flat_map(stream_entries).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_reads_back_as_it_was_written() {
        let saved = Saved {
            digest: [7; 32],
            identity: Arc::new(Identity {
                user_id: Some("alice".into()),
                room_patterns: vec!["chat:*".into()],
                rooms: Vec::new(),
                metadata: None,
                expires_at: Some(1_900_000_000),
            }),
            rooms: vec![
                ("chat:x".into(), Owner::Client),
                ("user:alice".into(), Owner::Server),
            ],
            since: Offset { ms: 5, seq: 2 },
            away_since: SystemTime::UNIX_EPOCH + Duration::from_millis(1234),
        };
        let bytes = encode(&saved);
        assert_eq!(&bytes[..64], hex(&[7; 32]).as_bytes());
        let back = decode(&bytes, None).unwrap();
        assert_eq!(back.digest, saved.digest);
        assert_eq!(back.identity, saved.identity);
        assert_eq!(back.rooms, saved.rooms);
        assert_eq!(back.since, saved.since);
        assert_eq!(back.away_since, saved.away_since);
        let dead_since = decode(&bytes, Some(99)).unwrap();
        assert_eq!(
            dead_since.away_since,
            SystemTime::UNIX_EPOCH + Duration::from_millis(99)
        );
        assert!(decode(&bytes[..10], None).is_none());
    }
}
