//! Engine.IO v4 and Socket.IO v5 text packets, as they travel over a WebSocket (one packet
//! per frame). Only the main namespace `/` is used.

use serde_json::Value;

/// An Engine.IO packet received from the server.
#[derive(Debug, PartialEq)]
pub(crate) enum Engine<'a> {
    /// `0{...}`: the handshake.
    Open(Handshake),
    /// `1`: the server closes the session.
    Close,
    /// `2`: heartbeat; answer with `3`.
    Ping,
    /// `4...`: a Socket.IO packet.
    Message(&'a str),
    /// `3`, `5`, `6`: nothing to do for a WebSocket-only client.
    Other,
}

/// The Engine.IO handshake values the client uses.
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Handshake {
    pub sid: String,
    pub ping_interval: u64,
    pub ping_timeout: u64,
}

/// A packet that cannot be understood.
#[derive(Debug, thiserror::Error)]
#[error("malformed packet: {0}")]
pub(crate) struct ParseError(pub String);

pub(crate) fn parse_engine(text: &str) -> Result<Engine<'_>, ParseError> {
    let mut chars = text.chars();
    let kind = chars
        .next()
        .ok_or_else(|| ParseError("empty frame".into()))?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => Engine::Open(
            serde_json::from_str(rest).map_err(|e| ParseError(format!("open packet: {e}")))?,
        ),
        '1' => Engine::Close,
        '2' => Engine::Ping,
        '4' => Engine::Message(rest),
        '3' | '5' | '6' => Engine::Other,
        other => return Err(ParseError(format!("unknown Engine.IO type {other:?}"))),
    })
}

/// What the CONNECT reply of the main namespace says.
#[derive(Default, PartialEq, serde::Deserialize)]
pub(crate) struct Accepted {
    /// The socket id.
    #[serde(default)]
    pub sid: String,
    /// The private session id, with connection state recovery on (a secret: not in
    /// `Debug`).
    #[serde(default)]
    pub pid: Option<String>,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("sid", &self.sid)
            .field("pid", &self.pid.as_ref().map(|_| "…"))
            .finish()
    }
}

/// A Socket.IO packet received from the server.
#[derive(Debug, PartialEq)]
pub(crate) enum Socket {
    /// `0{"sid":...,"pid":...}`: the namespace accepted the connection.
    Connect(Accepted),
    /// `1`: the server disconnected the socket.
    Disconnect,
    /// `2[ev, ...args]`, maybe with an ack id the server waits on; `5N-...` when `N`
    /// binary attachments follow in their own frames.
    Event {
        name: String,
        args: Vec<Value>,
        ack: Option<u64>,
        attachments: usize,
    },
    /// `3<id>[...args]` (`6N-...` with attachments): the reply to one of our emits.
    Ack {
        id: u64,
        args: Vec<Value>,
        attachments: usize,
    },
    /// `4{"message":...}`: the connection was refused.
    ConnectError(String),
}

impl Socket {
    /// How many binary attachments follow this packet.
    pub(crate) fn attachments(&self) -> usize {
        match self {
            Socket::Event { attachments, .. } | Socket::Ack { attachments, .. } => *attachments,
            _ => 0,
        }
    }
}

pub(crate) fn parse_socket(text: &str) -> Result<Socket, ParseError> {
    let mut chars = text.chars();
    let kind = chars
        .next()
        .ok_or_else(|| ParseError("empty Socket.IO packet".into()))?;
    let mut rest = chars.as_str();
    // Binary event and ack: `5<count>-...`, then as an event or an ack.
    let (kind, attachments) = match kind {
        '5' | '6' => {
            let (count, after) = rest
                .split_once('-')
                .ok_or_else(|| ParseError("binary packet without an attachment count".into()))?;
            let count = count
                .parse::<usize>()
                .map_err(|e| ParseError(format!("attachment count: {e}")))?;
            rest = after;
            (if kind == '5' { '2' } else { '3' }, count)
        }
        other => (other, 0),
    };
    // A namespace other than "/" is written before a comma; this client only uses "/".
    if rest.starts_with('/') {
        let (nsp, after) = rest.split_once(',').unwrap_or((rest, ""));
        if nsp != "/" {
            return Err(ParseError(format!("packet for namespace {nsp}")));
        }
        rest = after;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, payload) = rest.split_at(digits);
    let id = (!id.is_empty())
        .then(|| id.parse::<u64>())
        .transpose()
        .map_err(|e| ParseError(format!("ack id: {e}")))?;
    let json = |what: &str| decode::<Value>(payload, what);
    Ok(match kind {
        '0' if payload.is_empty() => Socket::Connect(Accepted::default()),
        '0' => Socket::Connect(decode(payload, "connect")?),
        '1' => Socket::Disconnect,
        '2' => {
            let Value::Array(mut args) = json("event")? else {
                return Err(ParseError("event payload is not an array".into()));
            };
            if args.is_empty() {
                return Err(ParseError("event without a name".into()));
            }
            let Value::String(name) = args.remove(0) else {
                return Err(ParseError("event name is not a string".into()));
            };
            Socket::Event {
                name,
                args,
                ack: id,
                attachments,
            }
        }
        '3' => {
            let Value::Array(args) = json("ack")? else {
                return Err(ParseError("ack payload is not an array".into()));
            };
            let id = id.ok_or_else(|| ParseError("ack without an id".into()))?;
            Socket::Ack {
                id,
                args,
                attachments,
            }
        }
        '4' => {
            let value = if payload.is_empty() {
                Value::Null
            } else {
                json("connect error")?
            };
            let message = value["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            Socket::ConnectError(message)
        }
        other => return Err(ParseError(format!("unknown Socket.IO type {other:?}"))),
    })
}

fn decode<T: serde::de::DeserializeOwned>(payload: &str, what: &str) -> Result<T, ParseError> {
    serde_json::from_str(payload).map_err(|e| ParseError(format!("{what}: {e}")))
}

/// `40` or `40{auth}`: connect to the main namespace.
pub(crate) fn connect(auth: Option<&Value>) -> String {
    match auth {
        Some(auth) => format!("40{auth}"),
        None => "40".to_owned(),
    }
}

/// `41`: leave the main namespace.
pub(crate) const DISCONNECT: &str = "41";
/// `3`: the answer to a server ping.
pub(crate) const PONG: &str = "3";

/// `42[name, ...args]` or `42<id>[name, ...args]`.
pub(crate) fn event(name: &str, args: &[Value], ack: Option<u64>) -> String {
    let mut array = Vec::with_capacity(args.len() + 1);
    array.push(Value::String(name.to_owned()));
    array.extend_from_slice(args);
    let id = ack.map(|id| id.to_string()).unwrap_or_default();
    format!("42{id}{}", Value::Array(array))
}

/// `43<id>[...args]`: our reply to a server emit that asked for one.
pub(crate) fn ack(id: u64, args: &[Value]) -> String {
    format!("43{id}{}", Value::Array(args.to_vec()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn engine_packets() {
        let open = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(
            parse_engine(open).unwrap(),
            Engine::Open(Handshake {
                sid: "abc".into(),
                ping_interval: 25000,
                ping_timeout: 20000
            })
        );
        assert_eq!(parse_engine("2").unwrap(), Engine::Ping);
        assert_eq!(parse_engine("1").unwrap(), Engine::Close);
        assert_eq!(
            parse_engine("42[\"a\"]").unwrap(),
            Engine::Message("2[\"a\"]")
        );
        assert!(parse_engine("").is_err());
        assert!(parse_engine("9").is_err());
        assert!(parse_engine("0{").is_err());
    }

    #[test]
    fn socket_packets() {
        assert_eq!(
            parse_socket(r#"0{"sid":"x"}"#).unwrap(),
            Socket::Connect(Accepted {
                sid: "x".into(),
                pid: None
            })
        );
        assert_eq!(
            parse_socket(r#"0{"sid":"x","pid":"p.1"}"#).unwrap(),
            Socket::Connect(Accepted {
                sid: "x".into(),
                pid: Some("p.1".into())
            })
        );
        assert_eq!(
            parse_socket("0").unwrap(),
            Socket::Connect(Accepted::default())
        );
        assert_eq!(parse_socket("1").unwrap(), Socket::Disconnect);
        assert_eq!(
            parse_socket(r#"2["hello",{"a":1},2]"#).unwrap(),
            Socket::Event {
                name: "hello".into(),
                args: vec![json!({"a": 1}), json!(2)],
                ack: None,
                attachments: 0
            }
        );
        assert_eq!(
            parse_socket(r#"212["q"]"#).unwrap(),
            Socket::Event {
                name: "q".into(),
                args: vec![],
                ack: Some(12),
                attachments: 0
            }
        );
        assert_eq!(
            parse_socket(r#"37[{"ok":true}]"#).unwrap(),
            Socket::Ack {
                id: 7,
                args: vec![json!({"ok": true})],
                attachments: 0
            }
        );
        assert_eq!(
            parse_socket(r#"4{"message":"nope"}"#).unwrap(),
            Socket::ConnectError("nope".into())
        );
        assert_eq!(
            parse_socket(r#"2/,["a"]"#).unwrap(),
            parse_socket(r#"2["a"]"#).unwrap()
        );
        assert_eq!(
            parse_socket(r#"52-3["a",{"_placeholder":true,"num":0}]"#).unwrap(),
            Socket::Event {
                name: "a".into(),
                args: vec![json!({"_placeholder": true, "num": 0})],
                ack: Some(3),
                attachments: 2
            }
        );
        assert_eq!(
            parse_socket(r#"61-4[{"_placeholder":true,"num":0}]"#).unwrap(),
            Socket::Ack {
                id: 4,
                args: vec![json!({"_placeholder": true, "num": 0})],
                attachments: 1
            }
        );
        for bad in [
            "",
            "2",
            "2{}",
            "2[]",
            "2[1]",
            "3[]",
            "2/admin,[\"a\"]",
            "7",
            "5[\"a\"]",
            "5x-[\"a\"]",
            "0{",
            r#"0{"sid":"x","pid":7}"#,
        ] {
            assert!(parse_socket(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn encoding() {
        assert_eq!(connect(None), "40");
        assert_eq!(connect(Some(&json!({"token": "t"}))), r#"40{"token":"t"}"#);
        assert_eq!(event("a", &[json!(1)], None), r#"42["a",1]"#);
        assert_eq!(event("a", &[], Some(3)), r#"423["a"]"#);
        assert_eq!(ack(5, &[json!("x")]), r#"435["x"]"#);
    }
}
