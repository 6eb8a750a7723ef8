//! What an authenticator may look at: the connection request of a socket and the data of
//! its `authenticate` event.

use std::{collections::HashMap, net::SocketAddr};

use serde_json::Value;
use sockgate_proto as proto;

use crate::clock;

/// A socket asking to authenticate.
pub struct Handshake<'a> {
    /// Socket id.
    pub socket_id: String,
    /// The HTTP request that opened the connection.
    pub request: &'a http::request::Parts,
    /// The Socket.IO `auth` object.
    pub auth: Option<&'a Value>,
    /// The `authenticate` event's data.
    pub event_data: Option<&'a Value>,
    /// Connection details.
    pub meta: &'a ConnectionMeta,
}

impl Handshake<'_> {
    /// The `Authorization` header.
    pub fn authorization(&self) -> Option<&str> {
        self.request
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
    }

    /// Decoded query parameters, in order.
    pub fn query(&self) -> Vec<(String, String)> {
        parse_query(self.request.uri.query().unwrap_or_default())
    }

    /// The handshake as the `Authenticate` hook receives it.
    pub fn to_proto(&self) -> proto::Handshake {
        let mut headers: HashMap<String, String> = HashMap::new();
        for (name, value) in &self.request.headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            headers
                .entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        proto::Handshake {
            headers,
            query: self.query().into_iter().collect(),
            auth_json: self.auth.map(Value::to_string).unwrap_or_default(),
            remote_address: self.meta.remote_address.clone(),
            transport: self.meta.transport.clone(),
            connected_at: Some(clock::timestamp_from_ms(self.meta.connected_at_ms)),
        }
    }
}

/// Splits and percent-decodes a query string.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' => {
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a socket's connection looked like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionMeta {
    /// Milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    /// `websocket` or `polling`.
    pub transport: String,
    /// Client address, empty when unknown.
    pub remote_address: String,
}

impl ConnectionMeta {
    /// Meta of a connection that starts now.
    pub fn now(transport: &str, remote: Option<SocketAddr>) -> Self {
        Self {
            connected_at_ms: clock::now_ms(),
            transport: transport.to_owned(),
            remote_address: remote.map(|a| a.to_string()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        assert_eq!(
            parse_query("EIO=4&token=a%2Db+c&flag&bad=%zz&end=%4"),
            vec![
                ("EIO".into(), "4".into()),
                ("token".into(), "a-b c".into()),
                ("flag".into(), String::new()),
                ("bad".into(), "%zz".into()),
                ("end".into(), "%4".into()),
            ]
        );
    }
}
