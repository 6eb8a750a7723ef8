//! The Socket.IO packets the load speaks, in either encoding a server may use (sockgate's
//! `edge.parser`): socket.io-parser's JSON text (`42["event",…]`, one text message per
//! packet) or socket.io-msgpack-parser's MessagePack map `{type, nsp, data, id}`, one binary
//! message per packet. Engine.IO's own packets (open, ping, pong) are text with both.

use std::fmt;

use anyhow::{Context, anyhow};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{IgnoredAny, SeqAccess, Visitor},
};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::client::EVENT;

/// Socket.IO packet types (socket.io-protocol v5).
const CONNECT: u8 = 0;
const EVENT_PACKET: u8 = 2;
const ACK: u8 = 3;
const CONNECT_ERROR: u8 = 4;

/// The encoding of Socket.IO packets, as the clients' `parser` option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parser {
    /// socket.io-parser: JSON text.
    Default,
    /// socket.io-msgpack-parser: MessagePack.
    Msgpack,
}

/// A Socket.IO packet of the main namespace that the handshake waits for.
#[derive(Debug, PartialEq)]
pub enum Packet {
    /// The namespace connect was accepted.
    Connect,
    /// The namespace connect was refused, with the server's data.
    ConnectError(String),
    /// An event: its name, then its arguments.
    Event(Vec<Value>),
    /// The acknowledgement `id` with its arguments.
    Ack(i64, Vec<Value>),
    /// Any other packet.
    Other,
}

/// A packet as socket.io-msgpack-parser encodes it (notepack leaves `undefined` keys out).
#[derive(Serialize, Deserialize)]
struct MsgpackPacket {
    r#type: u8,
    nsp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
}

impl Parser {
    /// The packet that connects to the main namespace.
    pub fn connect(self) -> Message {
        self.encode(CONNECT, None, None)
    }

    /// An event: `args` is the array `[name, ...arguments]`; `ack` asks for an
    /// acknowledgement with this id.
    pub fn event(self, args: Value, ack: Option<i64>) -> Message {
        self.encode(EVENT_PACKET, Some(args), ack)
    }

    fn encode(self, kind: u8, data: Option<Value>, id: Option<i64>) -> Message {
        match self {
            Parser::Default => {
                let mut text = format!("4{kind}");
                if let Some(id) = id {
                    text += &id.to_string();
                }
                if let Some(data) = data {
                    text += &data.to_string();
                }
                Message::text(text)
            }
            Parser::Msgpack => {
                let packet = MsgpackPacket {
                    r#type: kind,
                    nsp: "/".into(),
                    data,
                    id,
                };
                Message::binary(rmp_serde::to_vec_named(&packet).expect("JSON values encode"))
            }
        }
    }

    /// The Socket.IO packet in `msg`, if it is one of this encoding (an Engine.IO ping, for
    /// one, is not).
    pub fn decode(self, msg: &Message) -> anyhow::Result<Option<Packet>> {
        match (self, msg) {
            (Parser::Default, Message::Text(text)) => decode_text(text.as_str()),
            (Parser::Msgpack, Message::Binary(bytes)) => {
                let packet: MsgpackPacket =
                    rmp_serde::from_slice(bytes).context("bad MessagePack packet")?;
                Ok(Some(from_parts(packet.r#type, packet.id, packet.data)?))
            }
            _ => Ok(None),
        }
    }

    /// The `t` stamp of a benchmark event (`["bench", {"t": …, "s": …}, …]`) in `msg`; `None`
    /// for anything else. Runs for every delivery, so it reads no more than it needs.
    pub fn stamp(self, msg: &Message) -> Option<u64> {
        match (self, msg) {
            (Parser::Default, Message::Text(text)) => text_stamp(text.as_str()),
            (Parser::Msgpack, Message::Binary(bytes)) => {
                let packet: StampPacket = rmp_serde::from_slice(bytes).ok()?;
                (packet.r#type == EVENT_PACKET)
                    .then_some(packet.data?.0)
                    .flatten()
            }
            _ => None,
        }
    }
}

/// `4` (Engine.IO message), the packet type digit, the ack id if any, then the JSON data.
fn decode_text(text: &str) -> anyhow::Result<Option<Packet>> {
    let Some(rest) = text.strip_prefix('4') else {
        return Ok(None);
    };
    let mut chars = rest.chars();
    let Some(kind) = chars.next().and_then(|c| c.to_digit(10)) else {
        return Ok(Some(Packet::Other));
    };
    let rest = chars.as_str();
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let id = rest[..digits].parse().ok();
    let data = match &rest[digits..] {
        "" => None,
        json => Some(
            serde_json::from_str(json).with_context(|| format!("bad Socket.IO packet {text:?}"))?,
        ),
    };
    from_parts(kind as u8, id, data).map(Some)
}

fn from_parts(kind: u8, id: Option<i64>, data: Option<Value>) -> anyhow::Result<Packet> {
    let args = |data: Option<Value>| match data {
        Some(Value::Array(args)) => Ok(args),
        other => Err(anyhow!("packet data is not an array: {other:?}")),
    };
    Ok(match kind {
        CONNECT => Packet::Connect,
        CONNECT_ERROR => Packet::ConnectError(data.unwrap_or_default().to_string()),
        EVENT_PACKET => Packet::Event(args(data)?),
        ACK => Packet::Ack(
            id.ok_or_else(|| anyhow!("acknowledgement without id"))?,
            args(data)?,
        ),
        _ => Packet::Other,
    })
}

/// The `t` of a `42["bench",{"t":…,"s":…}]` packet.
fn text_stamp(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("42[\"bench\",")?;
    let start = rest.find("\"t\":")? + 4;
    let digits = &rest[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// What [`Parser::stamp`] reads of a MessagePack packet (other keys are skipped).
#[derive(Deserialize)]
struct StampPacket {
    r#type: u8,
    #[serde(default)]
    data: Option<StampArgs>,
}

/// The `t` of the first argument when the event is the benchmark's, else `None`.
struct StampArgs(Option<u64>);

#[derive(Deserialize)]
struct Stamp {
    t: u64,
}

impl<'de> Deserialize<'de> for StampArgs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Args;
        impl<'de> Visitor<'de> for Args {
            type Value = StampArgs;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event's arguments")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StampArgs, A::Error> {
                let stamp = match seq.next_element::<&str>()? {
                    Some(EVENT) => seq.next_element::<Stamp>()?.map(|s| s.t),
                    _ => None,
                };
                // The decoder wants every element read (recovery adds an offset).
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(StampArgs(stamp))
            }
        }
        deserializer.deserialize_seq(Args)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A packet as socket.io-msgpack-parser (notepack) would send it.
    fn msgpack(packet: Value) -> Message {
        Message::binary(rmp_serde::to_vec_named(&packet).unwrap())
    }

    #[test]
    fn text_packets_are_encoded_as_socket_io_parser_does() {
        assert_eq!(Parser::Default.connect(), Message::text("40"));
        assert_eq!(
            Parser::Default.event(json!(["join", {"rooms": ["bench"]}]), Some(0)),
            Message::text("420[\"join\",{\"rooms\":[\"bench\"]}]")
        );
        assert_eq!(
            Parser::Default.event(json!(["authenticate"]), None),
            Message::text("42[\"authenticate\"]")
        );
    }

    #[test]
    fn msgpack_packets_are_maps_of_type_nsp_data_and_id() {
        let decode = |m: Message| -> Value { rmp_serde::from_slice(&m.into_data()).unwrap() };
        assert_eq!(
            decode(Parser::Msgpack.connect()),
            json!({"type": 0, "nsp": "/"})
        );
        assert_eq!(
            decode(Parser::Msgpack.event(json!(["join", {"rooms": ["bench"]}]), Some(3))),
            json!({"type": 2, "nsp": "/", "data": ["join", {"rooms": ["bench"]}], "id": 3})
        );
    }

    #[test]
    fn handshake_packets_are_decoded_from_both_encodings() {
        let both = |text: &str, packet: Value| {
            let t = Parser::Default.decode(&Message::text(text)).unwrap();
            let m = Parser::Msgpack.decode(&msgpack(packet)).unwrap();
            assert_eq!(t, m, "{text}");
            t.unwrap()
        };
        assert_eq!(
            both(
                "40{\"sid\":\"x\"}",
                json!({"type": 0, "nsp": "/", "data": {"sid": "x"}})
            ),
            Packet::Connect
        );
        assert_eq!(
            both(
                "42[\"authenticated\",{\"id\":\"a\"}]",
                json!({"type": 2, "nsp": "/", "data": ["authenticated", {"id": "a"}]})
            ),
            Packet::Event(vec![json!("authenticated"), json!({"id": "a"})])
        );
        assert_eq!(
            both(
                "430[{\"joined\":[\"bench\"]}]",
                json!({"type": 3, "nsp": "/", "data": [{"joined": ["bench"]}], "id": 0})
            ),
            Packet::Ack(0, vec![json!({"joined": ["bench"]})])
        );
        assert_eq!(Parser::Default.decode(&Message::text("2")).unwrap(), None);
        assert_eq!(Parser::Msgpack.decode(&Message::text("2")).unwrap(), None);
    }

    #[test]
    fn stamps_are_read_from_benchmark_events_only() {
        let text = |t: &str| Parser::Default.stamp(&Message::text(t));
        assert_eq!(text("42[\"bench\",{\"t\":12345,\"s\":7}]"), Some(12345));
        assert_eq!(text("42[\"ping\",{\"time\":\"x\"}]"), None);
        assert_eq!(text("42[\"bench\",{\"s\":7}]"), None);

        let binary = |p: Value| Parser::Msgpack.stamp(&msgpack(p));
        let event = |data: Value| json!({"type": 2, "nsp": "/", "data": data});
        assert_eq!(
            binary(event(json!(["bench", {"t": 12345, "s": 7}]))),
            Some(12345)
        );
        assert_eq!(
            binary(event(json!(["bench", {"s": 7, "t": 9}, "offset-1"]))),
            Some(9),
            "recovery's offset after the data"
        );
        assert_eq!(binary(event(json!(["ping", {"time": "x"}]))), None);
        assert_eq!(binary(event(json!(["bench", {"s": 7}]))), None);
        assert_eq!(
            binary(json!({"type": 0, "nsp": "/", "data": {"sid": "x"}})),
            None
        );
    }
}
