//! Where and how the managed client connects.

use std::time::Duration;

use serde_json::{Value, json};

/// Connection options of a [`super::ManagedClient`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The edge's URL: `http://host:port` or `ws://host:port`.
    pub url: String,
    /// The Socket.IO path (`/io`, sockgate's default).
    pub path: String,
    /// The `auth` object of the Socket.IO connect packet (where sockgate reads `token`).
    pub auth: Option<Value>,
    /// Extra query parameters of the connection URL.
    pub query: Vec<(String, String)>,
    /// Extra HTTP headers of the WebSocket request (e.g. `authorization`).
    pub headers: Vec<(String, String)>,
    /// Reconnection after a lost connection.
    pub reconnect: Reconnect,
    /// TLS options for `wss://` (the system roots when `None`); setting them makes an
    /// `http://` / `ws://` URL connect with TLS too.
    pub tls: Option<crate::TlsOptions>,
}

impl ClientOptions {
    /// Options for the edge at `url`, path `/io`, reconnecting.
    pub fn new(url: impl Into<String>) -> Self {
        ClientOptions {
            url: url.into(),
            path: "/io".into(),
            auth: None,
            query: Vec::new(),
            headers: Vec::new(),
            reconnect: Reconnect::default(),
            tls: None,
        }
    }

    /// Connects with TLS (`wss://`) using `tls`: a CA (or the system roots) and an optional
    /// client certificate. The certificate is checked against the URL's host.
    pub fn tls(mut self, tls: crate::TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sends `token` in the connect packet's `auth` object (`{"token": ...}`), where the
    /// gateway's authenticator finds it when `authenticate` is emitted.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = Value::String(token.into());
        match &mut self.auth {
            Some(Value::Object(auth)) => {
                auth.insert("token".into(), token);
            }
            _ => self.auth = Some(json!({ "token": token })),
        }
        self
    }

    /// Uses another Socket.IO path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Changes the reconnection policy.
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// `ws://host:port/io/?EIO=4&transport=websocket&...`.
    pub(crate) fn websocket_url(&self) -> Result<String, String> {
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| format!("{:?} has no scheme (http:// or ws://)", self.url))?;
        let scheme = match scheme {
            "http" | "ws" if self.tls.is_none() => "ws",
            "http" | "ws" | "https" | "wss" => "wss",
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("{:?} has no host", self.url));
        }
        let path = self.path.trim_end_matches('/');
        let path = if path.starts_with('/') || path.is_empty() {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let mut url = format!("{scheme}://{authority}{path}/?EIO=4&transport=websocket");
        for (key, value) in &self.query {
            url.push('&');
            url.push_str(&encode(key));
            url.push('=');
            url.push_str(&encode(value));
        }
        Ok(url)
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reconnection after a lost connection (see the module documentation for when).
#[derive(Clone, Debug)]
pub struct Reconnect {
    /// Reconnect at all (true by default).
    pub enabled: bool,
    /// Delay before the first attempt (1 s); doubled after each failed attempt.
    pub initial_delay: Duration,
    /// Longest delay (5 s).
    pub max_delay: Duration,
    /// Attempts in a row before giving up (`None`: never give up).
    pub max_attempts: Option<u32>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            enabled: true,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

impl Reconnect {
    /// Never reconnect.
    pub fn never() -> Self {
        Reconnect {
            enabled: false,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls() {
        let options = ClientOptions::new("http://127.0.0.1:3000");
        assert_eq!(
            options.websocket_url().unwrap(),
            "ws://127.0.0.1:3000/io/?EIO=4&transport=websocket"
        );
        let mut options = ClientOptions::new("wss://edge.example/ignored").path("socket.io/");
        options.query.push(("token".into(), "a b&c".into()));
        assert_eq!(
            options.websocket_url().unwrap(),
            "wss://edge.example/socket.io/?EIO=4&transport=websocket&token=a%20b%26c"
        );
        assert!(
            ClientOptions::new("127.0.0.1:3000")
                .websocket_url()
                .is_err()
        );
        assert!(ClientOptions::new("ftp://h").websocket_url().is_err());
    }

    #[test]
    fn token_goes_into_auth() {
        let options = ClientOptions::new("http://h").token("t");
        assert_eq!(options.auth, Some(json!({"token": "t"})));
    }
}
