//! A client message as the gateway forwards it: the event name, the first argument as
//! JSON, every binary attachment, and whether the client passed an ack callback.
//!
//! socketioxide runs extractors in the socket's receive path, in arrival order, and only
//! then spawns the handler. So this extractor is where client events are published to
//! `WatchEvents` (watchers see each socket's events in the order the client sent them),
//! and where events over the socket's rate are dropped before any task is spawned.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use socketioxide::{
    adapter::Adapter,
    extract::State,
    handler::{FromMessageParts, Value as Payload},
    socket::Socket,
};
use sockgate_proto::{EventKind, WatchEventsResponse};

use super::{
    limits::{EventVerdict, Limits},
    msgpack, protocol,
    session::Session,
    state::Transition,
};
use tracing::{debug, info, warn};

use crate::{
    events::{self, EventBus},
    metrics::{EventOutcome, METRICS, Refusal},
};

/// An incoming event, read straight from the packet (no second decoding pass).
#[derive(Debug)]
pub struct ClientMessage {
    /// Event name.
    pub event: String,
    /// The first argument, unless it is binary.
    pub data: Option<Value>,
    /// Binary arguments (and binary values nested in the data), in order.
    pub attachments: Vec<Bytes>,
    /// Whether the client waits for an ack.
    pub wants_ack: bool,
    /// Whether the socket was authenticated when the event arrived. Handlers run as
    /// separate tasks, so the state when they run may be later than the client's view:
    /// an event sent before `authenticated` is dropped even if it is handled after.
    pub authenticated: bool,
}

/// Why an incoming event is not handled.
#[derive(Debug, thiserror::Error)]
pub enum RefusedMessage {
    /// The packet is not an array (JSON or MessagePack) starting with an event name.
    #[error("malformed event packet: {0}")]
    Malformed(String),
    /// Over the socket's event rate.
    #[error("event over the socket's rate dropped")]
    OverRate,
}

/// Why a socket that kept exceeding its event rate is disconnected (in its
/// `force_disconnect`).
pub const RATE_DISCONNECT_REASON: &str =
    "too many events: the connection kept sending faster than allowed";

fn state<A: Adapter, T: Clone + Send + Sync + 'static>(socket: &Arc<Socket<A>>) -> Option<T> {
    State::<T>::from_message_parts(socket, &mut Payload::Bytes(Bytes::new()), &None)
        .ok()
        .map(|State(value)| value)
}

/// Applies the socket's event rate.
fn check_rate<A: Adapter>(socket: &Arc<Socket<A>>) -> Result<(), RefusedMessage> {
    let (Some(limits), Some(session)) = (
        state::<A, Arc<Limits>>(socket),
        socket.extensions.get::<Arc<Session>>(),
    ) else {
        return Ok(());
    };
    if session.is_cut_off() {
        return Err(RefusedMessage::OverRate);
    }
    match limits.check_event(&session.events) {
        EventVerdict::Accept => return Ok(()),
        EventVerdict::Drop { first } => {
            if first {
                info!(
                    sid = %socket.id,
                    rate = limits.config.events_per_second,
                    burst = limits.config.event_burst,
                    "dropping events over the socket's rate (edge.limits.events_per_second)"
                );
            }
        }
        EventVerdict::Disconnect => {
            METRICS.refused(Refusal::EventRateDisconnect);
            warn!(
                sid = %socket.id,
                dropped = limits.config.max_dropped_events,
                "disconnecting a socket that keeps exceeding its event rate (edge.limits.max_dropped_events)"
            );
            if session.apply(socket, Transition::CutOff).is_ok() {
                // No more application events to it; the auth sweeper disconnects it once
                // it has had time to read why.
                let payload = protocol::ForceDisconnect::now(RATE_DISCONNECT_REASON);
                let _ = socket.emit(protocol::FORCE_DISCONNECT, &payload);
            }
        }
    }
    METRICS.refused(Refusal::EventRate);
    Err(RefusedMessage::OverRate)
}

fn is_placeholder(value: &Value) -> bool {
    value.get("_placeholder").and_then(Value::as_bool) == Some(true)
}

impl<A: Adapter> FromMessageParts<A> for ClientMessage {
    type Error = RefusedMessage;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        payload: &mut Payload,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        check_rate(socket)?;
        let (event, args, binaries) = parse(payload).inspect_err(|e| {
            METRICS.client_event(EventOutcome::Malformed);
            debug!(sid = %socket.id, error = %e, "malformed event dropped");
        })?;
        let data = args
            .into_iter()
            .next()
            .filter(|first| !is_placeholder(first));
        let authenticated = socket
            .extensions
            .get::<Arc<Session>>()
            .is_some_and(|s| s.is_authenticated());
        let message = ClientMessage {
            event,
            data: data.filter(|d| !d.is_null()),
            attachments: binaries,
            wants_ack: ack_id.is_some(),
            authenticated,
        };
        publish(socket, &message);
        Ok(message)
    }
}

/// Splits a packet into the event name, the JSON arguments and the binary attachments.
fn parse(payload: &Payload) -> Result<(String, Vec<Value>, Vec<Bytes>), RefusedMessage> {
    let (mut args, binaries) = match payload {
        Payload::Str(text, binaries) => {
            let args: Vec<Value> =
                serde_json::from_str(text).map_err(|e| RefusedMessage::Malformed(e.to_string()))?;
            let binaries = binaries
                .as_ref()
                .map(|b| b.iter().cloned().collect())
                .unwrap_or_default();
            (args, binaries)
        }
        Payload::Bytes(packet_data) => {
            msgpack::event_args(packet_data).map_err(RefusedMessage::Malformed)?
        }
    };
    if args.is_empty() {
        return Err(RefusedMessage::Malformed("no event name".into()));
    }
    let Value::String(event) = args.remove(0) else {
        return Err(RefusedMessage::Malformed(
            "the event name is not a string".into(),
        ));
    };
    Ok((event, args, binaries))
}

/// Publishes an application event of an authenticated socket to the watchers.
fn publish<A: Adapter>(socket: &Arc<Socket<A>>, message: &ClientMessage) {
    if protocol::CLIENT_REQUESTS.contains(&message.event.as_str()) {
        return;
    }
    let Some(bus) = state::<A, Arc<EventBus>>(socket) else {
        return;
    };
    if !bus.is_watched() {
        return;
    }
    if !message.authenticated {
        return;
    }
    let Some(session) = socket.extensions.get::<Arc<Session>>() else {
        return;
    };
    let Some(identity) = session.identity() else {
        return;
    };
    let event = WatchEventsResponse {
        event: message.event.clone(),
        data_json: message
            .data
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
        attachments: message.attachments.clone(),
        ..events::lifecycle(
            EventKind::ClientEvent,
            &socket.id.to_string(),
            identity.user_id.as_deref(),
        )
    };
    bus.publish(event, move || session.rooms());
}
