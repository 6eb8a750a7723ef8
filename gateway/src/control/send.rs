//! `Send`: validate, encode the payload once, emit through the adapter; in ack mode wait
//! for each recipient's reply.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures_util::{FutureExt, StreamExt};
use serde_json::Value;
use socketioxide::{
    AckError, AdapterError, BroadcastError, SocketIo, adapter::Adapter,
    operators::BroadcastOperators, socket::Sid,
};
use sockgate_proto::{AckReply, SendRequest, SendResponse, Target};
use tracing::debug;

use super::{
    ControlLimits,
    error::ControlError,
    target::{self, Audience},
};
use crate::{
    cluster::Cluster,
    config::Parser,
    edge::protocol::RESERVED_EVENTS,
    metrics::{METRICS, Refusal},
    outgoing::Args,
    outgoing::Data,
    recovery::{Recovery, history::Entry, store::SharedHistory},
    rooms,
};

/// Longest event name.
const MAX_EVENT_LEN: usize = 256;

/// Checks an event name a backend wants to emit.
pub fn check_event_name(event: &str) -> Result<(), ControlError> {
    if event.is_empty() {
        return Err(ControlError::invalid("event is empty"));
    }
    if event.len() > MAX_EVENT_LEN {
        return Err(ControlError::invalid(format!(
            "event is longer than {MAX_EVENT_LEN} bytes"
        )));
    }
    if RESERVED_EVENTS.contains(&event) {
        return Err(ControlError::invalid(format!(
            "event {event:?} is reserved (reserved: {})",
            RESERVED_EVENTS.join(", ")
        )));
    }
    Ok(())
}

/// A `Send`'s `data_json`, checked, as `parser` writes it.
fn parse_data(text: &str, parser: Parser) -> Result<Option<Data<'_>>, ControlError> {
    Data::parse(text, parser)
        .map_err(|e| ControlError::invalid(format!("data_json is not valid JSON: {e}")))
}

/// Handles `Send`.
pub async fn send<A: Adapter>(
    io: &SocketIo<A>,
    cluster: &Cluster,
    limits: &ControlLimits,
    parser: Parser,
    request: SendRequest,
) -> Result<SendResponse, ControlError> {
    let ack_timeout = check(&request, limits)?;
    // Kept whole when the event is replayable: the history holds it.
    let request = Arc::new(request);
    let data = parse_data(&request.data_json, parser)?;
    let target = request.target.as_ref();
    let operators = target::resolve(io, cluster, target, "target", Audience::Authenticated).await?;
    // Socket ids that all live on this node need no other node: no cluster round trip,
    // and delivery works while Redis is down. (A node alone has nothing else to reach.)
    let operators =
        if !cluster.is_single_node() && target.is_some_and(|t| only_local_sockets(io, t)) {
            operators.local()
        } else {
            operators
        };
    let args = Args {
        data,
        attachments: &request.attachments,
        offset: None,
    };

    // The rarer paths (acks, counts, the fallback) are boxed futures, allocated only when
    // taken: inline, they made the future of every call (which tonic boxes) larger.
    if let Some(timeout) = ack_timeout {
        return Box::pin(send_with_ack(
            operators,
            &request.event,
            &args,
            timeout,
            limits,
        ))
        .await;
    }

    let recipients = if request.count_recipients {
        let sockets = Box::pin(operators.clone().fetch_sockets())
            .await
            .map_err(ControlError::adapter)?;
        Some(sockets.len() as u32)
    } else {
        None
    };
    let emitted = match cluster.recovery() {
        // In a cluster the shared history is the delivery: every node, this one too,
        // reads it and delivers in offset order.
        Some(recovery) if let Some(shared) = recovery.store().shared() => {
            let mut recorded = record(shared, std::slice::from_ref(&*request)).await;
            recorded.pop().unwrap_or_else(|| {
                Err(ControlError::Unavailable(
                    "the event was not sent: no reply".into(),
                ))
            })
        }
        Some(recovery) => {
            // A single node: recorded and emitted in one step, so that every socket gets
            // events in offset order.
            let offset: String;
            let (args, emitted) = {
                let mut history = recovery.order();
                offset = Recovery::record(&mut history, request.clone()).to_string();
                let args = Args {
                    offset: Some(&offset),
                    ..args
                };
                let emitted = emit_here(operators, &request.event, &args);
                (args, emitted)
            };
            match emitted {
                // Only this node's sockets were asked: nothing to fall back to.
                Err(BroadcastError::Adapter(e)) => Err(ControlError::Unavailable(format!(
                    "the event was not sent: {e}"
                ))),
                emitted => emit_outcome(io, cluster, target, &request.event, &args, emitted).await,
            }
        }
        None => {
            let emitted = operators.emit(&request.event, &args).await;
            emit_outcome(io, cluster, target, &request.event, &args, emitted).await
        }
    };
    emitted?;
    Ok(SendResponse {
        recipients,
        ..SendResponse::default()
    })
}

/// Records replayable sends in a cluster's shared history, in order and in one round trip:
/// the history is their delivery (every node, this one too, reads it and delivers in
/// offset order). A result for each.
pub async fn record(
    shared: &dyn SharedHistory,
    sends: &[SendRequest],
) -> Vec<Result<(), ControlError>> {
    shared
        .append(sends)
        .await
        .into_iter()
        .map(|appended| {
            appended
                .map(drop)
                .map_err(|e| ControlError::Unavailable(format!("the event was not sent: {e}")))
        })
        .collect()
}

/// Delivers entries of the cluster's recovery history, in offset order, to this node's
/// sockets (each carries its offset), and keeps them for replays.
pub fn deliver_recorded<A: Adapter>(
    io: &SocketIo<A>,
    recovery: &Recovery,
    parser: Parser,
    entries: Vec<Entry>,
) {
    let mut history = recovery.order();
    for entry in entries {
        if entry.offset <= history.head() {
            continue;
        }
        let send = entry.send.clone();
        let offset = entry.offset.to_string();
        history.record(entry, SystemTime::now());
        let Some(target) = send.target.as_ref() else {
            continue;
        };
        let args = Args {
            data: Data::parse(&send.data_json, parser).ok().flatten(),
            attachments: &send.attachments,
            offset: Some(&offset),
        };
        let operators = target::select(io.local(), target, Audience::Authenticated);
        if let Err(e) = emit_here(operators, &send.event, &args) {
            debug!(event = %send.event, error = %e, "a recorded event could not reach every socket");
        }
    }
}

/// Emits to this node's sockets while the history's (blocking) lock is held: a broadcast
/// to local sockets only queues the packet on each of them, so its future is ready when
/// first polled and nothing waits under the lock. An adapter that would wait is an error,
/// not a wait.
fn emit_here<A: Adapter>(
    operators: BroadcastOperators<A>,
    event: &str,
    args: &Args<'_>,
) -> Result<(), BroadcastError> {
    operators
        .local()
        .emit(event, args)
        .now_or_never()
        .unwrap_or_else(|| {
            let waits = std::io::Error::other("the adapter waits for a broadcast to this node");
            Err(BroadcastError::Adapter(AdapterError(Box::new(waits))))
        })
}

/// Checks the event name, the payload's size and the ack deadline; the deadline, when
/// the caller wants acks.
fn check(request: &SendRequest, limits: &ControlLimits) -> Result<Option<Duration>, ControlError> {
    check_event_name(&request.event)?;
    let size = request.data_json.len()
        + request
            .attachments
            .iter()
            .map(bytes::Bytes::len)
            .sum::<usize>();
    if size > limits.max_payload_bytes {
        return Err(ControlError::invalid(format!(
            "data_json and attachments are {size} bytes; the limit is {} (control.max_payload_bytes)",
            limits.max_payload_bytes
        )));
    }
    let Some(ack) = &request.ack else {
        return Ok(None);
    };
    let timeout = Duration::from_millis(u64::from(ack.timeout_ms));
    if timeout.is_zero() || timeout > limits.max_ack_timeout {
        return Err(ControlError::invalid(format!(
            "ack.timeout_ms must be 1 to {}",
            limits.max_ack_timeout.as_millis()
        )));
    }
    Ok(Some(timeout))
}

/// What the caller of a `Send` without acks is told of the emit's outcome.
async fn emit_outcome<A: Adapter>(
    io: &SocketIo<A>,
    cluster: &Cluster,
    target: Option<&Target>,
    event: &str,
    args: &Args<'_>,
    emitted: Result<(), BroadcastError>,
) -> Result<(), ControlError> {
    match emitted {
        Ok(()) => Ok(()),
        Err(BroadcastError::Socket(errors)) => not_taken(target, event, errors.len()),
        Err(BroadcastError::Adapter(e)) => {
            // The other nodes cannot be reached (Redis down): this node's sockets still
            // get the event; the caller is told the rest did not.
            if let Some(local) = Box::pin(operators_for_fallback(io, cluster, target)).await {
                let _ = Box::pin(local.emit(event, args)).await;
            }
            Err(ControlError::Unavailable(format!(
                "delivered to this node's sockets only; other nodes unreachable: {e}"
            )))
        }
        Err(other) => Err(other.into()),
    }
}

/// What the caller is told when `failed` recipients could not take the event: a socket
/// that does not read fast enough (its send buffer is full) or is closing. The others got
/// it; a single target is told.
fn not_taken(target: Option<&Target>, event: &str, failed: usize) -> Result<(), ControlError> {
    METRICS.send_dropped.inc_by(failed as u64);
    debug!(event, failed, "sockets could not take the event");
    let unicast = target.filter(|t| {
        t.socket_ids.len() == 1 && t.rooms.is_empty() && t.user_ids.is_empty() && !t.all
    });
    match unicast {
        Some(t) => Err(ControlError::Exhausted(format!(
            "socket {} cannot take the event now: its send buffer is full or it is closing",
            t.socket_ids[0]
        ))),
        None => Ok(()),
    }
}

/// Whether a `Send` can be grouped with others in a `Batch`: no acks, no count, and a
/// target of socket ids only (which live on one node each).
pub fn groupable(request: &SendRequest) -> bool {
    recordable(request)
        && request.target.as_ref().is_some_and(|t| {
            !t.all
                && !t.socket_ids.is_empty()
                && t.rooms.is_empty()
                && t.user_ids.is_empty()
                && t.except_rooms.is_empty()
                && t.except_socket_ids.is_empty()
        })
}

/// Whether a `Send` is only recorded, with recovery on in a cluster ([`record`]): no ack
/// to wait for, no recipients to count.
pub fn recordable(request: &SendRequest) -> bool {
    request.ack.is_none() && !request.count_recipients
}

/// Checks a `Send` as [`send`] does before it looks for its sockets; returns its socket ids.
pub fn validate(request: &SendRequest, limits: &ControlLimits) -> Result<Vec<Sid>, ControlError> {
    check(request, limits)?;
    parse_data(&request.data_json, Parser::Default)?;
    let (_, sids) = target::validate(request.target.as_ref(), "target")?;
    Ok(sids)
}

/// Emits a [`groupable`] `Send`, validated by the node that took the call, to sockets of
/// this node, which is authoritative for them: an id not connected here is `NOT_FOUND`,
/// as [`send`] would answer. The grouped commands of a `Batch` arrive here.
pub async fn send_here<A: Adapter>(
    io: &SocketIo<A>,
    parser: Parser,
    request: SendRequest,
) -> Result<SendResponse, ControlError> {
    let SendRequest {
        event,
        data_json,
        attachments,
        target,
        ..
    } = request;
    let (target, sids) = target::validate(target.as_ref(), "target")?;
    target::ensure_here(io, &sids, Audience::Authenticated)?;
    let args = Args {
        data: parse_data(&data_json, parser)?,
        attachments: &attachments,
        offset: None,
    };
    let operators = target::select(io.local(), target, Audience::Authenticated);
    match operators.emit(&event, &args).await {
        Ok(()) => {}
        Err(BroadcastError::Socket(errors)) => {
            not_taken(Some(target), &event, errors.len())?;
        }
        Err(other) => return Err(other.into()),
    }
    Ok(SendResponse::default())
}

/// Emits with an ack and collects each recipient's reply (or its timeout).
async fn send_with_ack<A: Adapter>(
    operators: BroadcastOperators<A>,
    event: &str,
    args: &Args<'_>,
    timeout: Duration,
    limits: &ControlLimits,
) -> Result<SendResponse, ControlError> {
    let mut stream = std::pin::pin!(
        operators
            .timeout(timeout)
            .emit_with_ack::<_, Value>(event, args)
            .await
            .map_err(ControlError::adapter)?
    );
    let mut response = SendResponse::default();
    let mut bytes = 0usize;
    let mut recipients = 0u32;
    while let Some((sid, reply)) = stream.next().await {
        recipients += 1;
        let reply = match reply {
            Ok(value) => value.to_string(),
            Err(AckError::Decode(e)) => Value::String(format!("undecodable ack: {e}")).to_string(),
            Err(_) => {
                response.timed_out_socket_ids.push(sid.to_string());
                continue;
            }
        };
        bytes += reply.len();
        if bytes > limits.max_ack_reply_bytes {
            // Dropping the stream stops waiting for the other replies.
            METRICS.refused(Refusal::AckReplyBytes);
            return Err(ControlError::Exhausted(format!(
                "the ack replies exceed {} bytes (control.max_ack_reply_bytes) after {} \
                 replies: the event was sent, the replies are dropped; target fewer \
                 sockets or ask for smaller replies",
                limits.max_ack_reply_bytes,
                response.acks.len() + 1
            )));
        }
        response.acks.push(AckReply {
            socket_id: sid.to_string(),
            data_json: reply,
        });
    }
    response.recipients = Some(recipients);
    Ok(response)
}

/// Whether the target names only socket ids, all connected to this node.
fn only_local_sockets<A: Adapter>(io: &SocketIo<A>, target: &Target) -> bool {
    !target.all
        && target.rooms.is_empty()
        && target.user_ids.is_empty()
        && !target.socket_ids.is_empty()
        && target
            .socket_ids
            .iter()
            .all(|id| rooms::parse_sid(id).is_some_and(|sid| io.get_socket(sid).is_some()))
}

/// The target restricted to this node, resolved without asking other nodes.
async fn operators_for_fallback<A: Adapter>(
    io: &SocketIo<A>,
    cluster: &Cluster,
    target: Option<&Target>,
) -> Option<BroadcastOperators<A>> {
    let mut local_target = target?.clone();
    local_target
        .socket_ids
        .retain(|id| rooms::parse_sid(id).is_some_and(|sid| io.get_socket(sid).is_some()));
    if !local_target.all
        && local_target.socket_ids.is_empty()
        && local_target.rooms.is_empty()
        && local_target.user_ids.is_empty()
    {
        return None;
    }
    target::resolve(
        io,
        cluster,
        Some(&local_target),
        "target",
        Audience::Authenticated,
    )
    .await
    .ok()
    .map(|o| o.local())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        assert!(check_event_name("chat:message").is_ok());
        assert!(check_event_name("").is_err());
        assert!(check_event_name("disconnect").is_err());
        assert!(check_event_name("authenticated").is_err());
        assert!(check_event_name(&"e".repeat(MAX_EVENT_LEN + 1)).is_err());
    }
}
