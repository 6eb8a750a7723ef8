//! A client message as the gateway forwards it: the event name, the first argument as
//! JSON, every binary attachment, and whether the client passed an ack callback.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use socketioxide::{
    adapter::Adapter,
    handler::{FromMessageParts, Value as Payload},
    socket::Socket,
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
}

/// The packet is not a JSON array starting with an event name.
#[derive(Debug, thiserror::Error)]
#[error("malformed event packet: {0}")]
pub struct MalformedMessage(String);

fn is_placeholder(value: &Value) -> bool {
    value.get("_placeholder").and_then(Value::as_bool) == Some(true)
}

impl<A: Adapter> FromMessageParts<A> for ClientMessage {
    type Error = MalformedMessage;

    fn from_message_parts(
        _socket: &Arc<Socket<A>>,
        payload: &mut Payload,
        ack_id: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        let Payload::Str(text, binaries) = payload else {
            return Err(MalformedMessage("binary frame without a header".into()));
        };
        let mut args: Vec<Value> =
            serde_json::from_str(text).map_err(|e| MalformedMessage(e.to_string()))?;
        if args.is_empty() {
            return Err(MalformedMessage("no event name".into()));
        }
        let Value::String(event) = args.remove(0) else {
            return Err(MalformedMessage("the event name is not a string".into()));
        };
        let data = args
            .into_iter()
            .next()
            .filter(|first| !is_placeholder(first));
        Ok(ClientMessage {
            event,
            data: data.filter(|d| !d.is_null()),
            attachments: binaries
                .as_ref()
                .map(|b| b.iter().cloned().collect())
                .unwrap_or_default(),
            wants_ack: ack_id.is_some(),
        })
    }
}
