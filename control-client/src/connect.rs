//! Building a [`Client`]: endpoint, TLS, token, deadline and retry options.

use std::{path::Path, time::Duration};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::{
    Client,
    error::{Error, innermost},
    retry::RetryPolicy,
    token::{BearerToken, TokenSource},
};

/// TLS to the control plane: the CA that signed the gateway's certificate (the system roots
/// when none is given), an optional client certificate for mutual TLS, and the name to
/// check the certificate against (the endpoint's host when none is given).
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    ca_pem: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    domain: Option<String>,
}

impl TlsOptions {
    /// TLS checked against the system's root certificates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificate(s) in `pem`.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Trusts the CA certificate(s) of a PEM file.
    pub fn ca_file(self, path: impl AsRef<Path>) -> Result<Self, Error> {
        Ok(self.ca_pem(read(path.as_ref())?))
    }

    /// Presents a client certificate (PEM chain and PEM private key) for mutual TLS.
    pub fn identity_pem(mut self, cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// Presents the client certificate and key of two PEM files.
    pub fn identity_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<Self, Error> {
        Ok(self.identity_pem(read(cert.as_ref())?, read(key.as_ref())?))
    }

    /// Checks the gateway's certificate against `domain` instead of the endpoint's host.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    pub(crate) fn ca(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    pub(crate) fn identity(&self) -> Option<(&[u8], &[u8])> {
        self.identity
            .as_ref()
            .map(|(cert, key)| (cert.as_slice(), key.as_slice()))
    }

    pub(crate) fn domain_override(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    fn config(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new();
        config = match self.ca() {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = self.identity() {
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = self.domain_override() {
            config = config.domain_name(domain);
        }
        config
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// Options of a [`Client`]; start with [`Client::builder`].
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    endpoint: String,
    tls: Option<TlsOptions>,
    token: TokenSource,
    deadline: Duration,
    connect_timeout: Duration,
    retry: RetryPolicy,
}

impl ClientBuilder {
    pub(crate) fn new(endpoint: impl Into<String>) -> Self {
        ClientBuilder {
            endpoint: endpoint.into(),
            tls: None,
            token: TokenSource::None,
            deadline: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    /// Uses TLS (an `http://` endpoint then speaks TLS too).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Attaches `authorization: Bearer <token>` from `token` to every call.
    pub fn token(mut self, token: TokenSource) -> Self {
        self.token = token;
        self
    }

    /// The deadline of each unary call (10 s by default). A `send_with_ack` waits for the
    /// ack timeout on top of it. `watch_events` has none.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long to wait for the connection to be set up (5 s by default).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How the read-only calls are retried (see [`RetryPolicy`]).
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    fn endpoint(&self) -> Result<(String, Endpoint), Error> {
        let tls = self.tls.is_some();
        let uri = match self.endpoint.split_once("://") {
            Some(("http", rest)) if tls => format!("https://{rest}"),
            Some(("https", _)) if !tls => {
                return Err(Error::Tls(format!(
                    "{} is an https endpoint: give TLS options (a CA, or the system roots)",
                    self.endpoint
                )));
            }
            Some(("http" | "https", _)) => self.endpoint.clone(),
            Some((scheme, _)) => {
                return Err(Error::InvalidEndpoint {
                    endpoint: self.endpoint.clone(),
                    reason: format!("unsupported scheme {scheme:?} (use http or https)"),
                });
            }
            None if tls => format!("https://{}", self.endpoint),
            None => format!("http://{}", self.endpoint),
        };
        let invalid = |reason: String| Error::InvalidEndpoint {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| invalid(innermost(Some(&e)).unwrap_or_default()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if let Some(options) = &self.tls {
            endpoint = endpoint
                .tls_config(options.config())
                .map_err(|e| Error::Tls(innermost(Some(&e)).unwrap_or_default()))?;
        }
        Ok((uri, endpoint))
    }

    /// Connects now: fails if the gateway cannot be reached.
    pub async fn connect(self) -> Result<Client, Error> {
        let (uri, endpoint) = self.endpoint()?;
        let channel = endpoint.connect().await.map_err(|e| Error::Connect {
            endpoint: uri,
            reason: innermost(Some(&e)).unwrap_or_else(|| e.to_string()),
        })?;
        Ok(Client::new(
            channel,
            BearerToken::new(self.token),
            self.deadline,
            self.retry,
        ))
    }

    /// Connects on the first call (and reconnects when needed): never fails for an
    /// unreachable gateway, the calls do.
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let (_, endpoint) = self.endpoint()?;
        Ok(Client::new(
            endpoint.connect_lazy(),
            BearerToken::new(self.token),
            self.deadline,
            self.retry,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(builder: ClientBuilder) -> Result<String, Error> {
        builder.endpoint().map(|(uri, _)| uri)
    }

    #[test]
    fn schemes() {
        assert_eq!(
            uri(ClientBuilder::new("127.0.0.1:1")).unwrap(),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            uri(ClientBuilder::new("127.0.0.1:1").tls(TlsOptions::new())).unwrap(),
            "https://127.0.0.1:1"
        );
        assert_eq!(
            uri(ClientBuilder::new("http://h:1").tls(TlsOptions::new())).unwrap(),
            "https://h:1"
        );
        assert!(matches!(
            uri(ClientBuilder::new("https://h:1")),
            Err(Error::Tls(_))
        ));
        assert!(matches!(
            uri(ClientBuilder::new("ftp://h:1")),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert!(matches!(
            uri(ClientBuilder::new("http://bad host:1")),
            Err(Error::InvalidEndpoint { .. })
        ));
    }

    #[test]
    fn missing_files_name_the_file() {
        let error = TlsOptions::new()
            .ca_file("/nonexistent/ca.pem")
            .unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }
}
