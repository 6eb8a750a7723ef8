//! The client's part of Socket.IO connection state recovery, as socket.io-client 4.8 does
//! it (`socket.js`: `_pid`, `_lastOffset`, `recovered`):
//!
//! - the CONNECT reply may carry a private session id (`pid`) next to `sid`; the client
//!   keeps the last one it was given (none when the reply has none);
//! - while it has a pid, the last argument of each event it receives, when that is a
//!   string, is taken for the event's offset (an event the server wants acknowledged ends
//!   with the ack callback in socket.io-client, so it never sets the offset);
//! - the CONNECT of each later connection merges `{pid, offset}` into `auth` (the `auth`
//!   keys win, an offset never received is left out);
//! - a connection recovered its session when the reply's pid is the one the client
//!   presented.
//!
//! The offset is not removed from the event's arguments: socket.io-client does not remove
//! it either.

use serde_json::{Map, Value};

/// The CONNECT `auth` keys of recovery.
const PID: &str = "pid";
const OFFSET: &str = "offset";

/// What the client keeps between connections to recover its session (no `Debug`: the pid
/// is a secret).
#[derive(Default)]
pub(super) struct Recovery {
    /// The private session id of the last connection, if the server gave one.
    pid: Option<String>,
    /// The offset of the last event received while a pid was set.
    offset: Option<String>,
}

impl Recovery {
    /// The `auth` of the next CONNECT: `auth` with the session to recover merged in, when
    /// there is one. An `auth` that is not an object is sent as it is (socket.io-client
    /// only ever merges into an object).
    pub(super) fn connect_auth(&self, auth: Option<&Value>) -> Option<Value> {
        let Some(pid) = &self.pid else {
            return auth.cloned();
        };
        let mut merged = Map::new();
        merged.insert(PID.into(), Value::String(pid.clone()));
        if let Some(offset) = &self.offset {
            merged.insert(OFFSET.into(), Value::String(offset.clone()));
        }
        match auth {
            None => {}
            Some(Value::Object(auth)) => {
                merged.extend(auth.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            Some(other) => return Some(other.clone()),
        }
        Some(Value::Object(merged))
    }

    /// The server accepted a connection and gave it `pid`; returns whether the session
    /// was recovered (the pid is the one presented).
    pub(super) fn connected(&mut self, pid: Option<String>) -> bool {
        let recovered = pid.is_some() && pid == self.pid;
        self.pid = pid;
        recovered
    }

    /// An event arrived with `args`; `wants_ack` when the server waits for its ack.
    pub(super) fn received(&mut self, args: &[Value], wants_ack: bool) {
        if self.pid.is_none() || wants_ack {
            return;
        }
        if let Some(Value::String(offset)) = args.last() {
            self.offset = Some(offset.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nothing_is_added_before_the_server_gives_a_pid() {
        let mut recovery = Recovery::default();
        recovery.received(&[json!("1-0")], false);
        assert_eq!(recovery.connect_auth(None), None);
        let auth = json!({"token": "t"});
        assert_eq!(recovery.connect_auth(Some(&auth)), Some(auth));
        assert!(!recovery.connected(None), "no pid: not recovered");
        recovery.received(&[json!("1-0")], false);
        assert_eq!(recovery.offset, None, "no offset is read without a pid");
    }

    #[test]
    fn the_pid_and_the_last_offset_are_presented_on_reconnect() {
        let mut recovery = Recovery::default();
        assert!(!recovery.connected(Some("p1".into())), "a first connection");
        assert_eq!(recovery.connect_auth(None), Some(json!({"pid": "p1"})));
        recovery.received(&[json!({"n": 1}), json!("5-0")], false);
        recovery.received(&[json!({"n": 2}), json!("5-1")], true);
        recovery.received(&[json!({"n": 3})], false);
        recovery.received(&[], false);
        assert_eq!(
            recovery.connect_auth(Some(&json!({"token": "t"}))),
            Some(json!({"pid": "p1", "offset": "5-0", "token": "t"})),
            "the last string argument of an event that asks no ack"
        );
        assert_eq!(
            recovery.connect_auth(Some(&json!({"offset": "mine"}))),
            Some(json!({"pid": "p1", "offset": "mine"})),
            "the application's auth keys win, as in Object.assign"
        );
        assert_eq!(
            recovery.connect_auth(Some(&json!("text"))),
            Some(json!("text"))
        );
        assert!(recovery.connected(Some("p1".into())), "the same pid");
    }

    #[test]
    fn a_new_pid_is_a_new_session_and_no_pid_ends_recovery() {
        let mut recovery = Recovery::default();
        recovery.connected(Some("p1".into()));
        recovery.received(&[json!("5-0")], false);
        assert!(!recovery.connected(Some("p2".into())));
        assert_eq!(
            recovery.connect_auth(None),
            Some(json!({"pid": "p2", "offset": "5-0"})),
            "socket.io-client keeps the last offset across sessions"
        );
        assert!(!recovery.connected(None));
        assert_eq!(recovery.connect_auth(None), None);
    }
}
