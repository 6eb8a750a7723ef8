//! JWKS: verification keys published by an issuer as a JSON Web Key Set, read from a file or
//! fetched over HTTP(S), refreshed every `refresh_interval` and when a token names a key id
//! the set does not have (at most once per `min_refresh_interval`), so issuers rotate keys
//! without a restart. A failed refresh keeps the previous keys and is logged.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, Weak},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{Jwk, JwkSet},
};
use rustls_pki_types::{InvalidDnsNameError, ServerName};
use tokio::{net::TcpStream, sync::Mutex, time::Instant};
use tokio_rustls::rustls;
use tracing::{debug, info, warn};

use super::TokenError;
use crate::{config::JwksConfig, tls::TlsError};

/// Largest JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Why a JWKS cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file cannot be read.
    #[error("cannot read {0}")]
    File(String),
    /// The URL cannot be fetched.
    #[error("cannot fetch {url}: {error}")]
    Fetch {
        /// The URL.
        url: String,
        /// Why.
        error: FetchError,
    },
    /// Not a JWKS document.
    #[error("{0} is not a JWKS document: {1}")]
    Parse(String, String),
}

/// Why GETting the JWKS URL gave no document. Each message is the underlying error's own.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No answer within `jwks.timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The URL cannot be parsed.
    #[error("{0}")]
    Url(http::uri::InvalidUri),
    /// The URL names no host.
    #[error("no host in the URL")]
    NoHost,
    /// The request cannot be built from the URL.
    #[error("{0}")]
    Request(http::Error),
    /// The TCP connection or the TLS handshake failed.
    #[error("{0}")]
    Connect(std::io::Error),
    /// The host is not a valid TLS server name.
    #[error("{0}")]
    ServerName(InvalidDnsNameError),
    /// `jwks.ca_file` cannot be read.
    #[error("{0}")]
    CaFile(TlsError),
    /// rustls refused a CA certificate or its protocol versions.
    #[error("{0}")]
    Tls(rustls::Error),
    /// The HTTP exchange failed.
    #[error("{0}")]
    Http(hyper::Error),
    /// The answer's status is not a success.
    #[error("HTTP {0}")]
    Status(http::StatusCode),
    /// The body cannot be read, or is larger than `MAX_DOCUMENT_BYTES`.
    #[error("{0}")]
    Body(Box<dyn std::error::Error + Send + Sync>),
}

/// A key of the set.
#[derive(Clone)]
pub struct JwksKey {
    /// The key.
    pub key: Arc<DecodingKey>,
    /// The algorithm the set binds the key to (`alg`), if any.
    pub algorithm: Option<Algorithm>,
}

/// A JWKS and how to refresh it.
pub struct Jwks {
    section: &'static str,
    config: JwksConfig,
    keys: RwLock<Arc<HashMap<String, JwksKey>>>,
    /// When the set was last fetched; held while fetching so concurrent misses share one.
    last_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("section", &self.section)
            .field("url", &self.config.url)
            .field("file", &self.config.file)
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// The set of `config`: a file is read now (an error is a configuration error); a URL
    /// is fetched by a background task that starts at once and refreshes it.
    pub fn start(section: &'static str, config: &JwksConfig) -> Result<Arc<Self>, JwksError> {
        let jwks = Arc::new(Self {
            section,
            config: config.clone(),
            keys: RwLock::new(Arc::default()),
            last_fetch: Mutex::new(None),
        });
        if let Some(path) = &config.file {
            let text = std::fs::read(path)
                .map_err(|e| JwksError::File(format!("{}: {e}", path.display())))?;
            jwks.install(&path.display().to_string(), &text)?;
        }
        tokio::spawn(refresh_periodically(Arc::downgrade(&jwks)));
        Ok(jwks)
    }

    /// The key `kid`, fetching the set again when it is unknown (rate limited).
    pub async fn key(&self, kid: &str) -> Result<JwksKey, TokenError> {
        if let Some(key) = self.current().get(kid) {
            return Ok(key.clone());
        }
        self.refresh_unless_recent().await;
        self.current()
            .get(kid)
            .cloned()
            .ok_or_else(|| TokenError::UnknownKeyId(kid.to_owned()))
    }

    fn current(&self) -> Arc<HashMap<String, JwksKey>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn refresh_unless_recent(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.config.min_refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(e) = self.refresh().await {
            warn!(section = self.section, error = %e, "JWKS refresh failed; the previous keys stay in use");
        }
    }

    async fn refresh(&self) -> Result<(), JwksError> {
        let (source, text) = match &self.config.file {
            Some(path) => (
                path.display().to_string(),
                std::fs::read(path)
                    .map_err(|e| JwksError::File(format!("{}: {e}", path.display())))?,
            ),
            None => (
                self.config.url.clone(),
                fetch(&self.config)
                    .await
                    .map_err(|error| JwksError::Fetch {
                        url: self.config.url.clone(),
                        error,
                    })?,
            ),
        };
        self.install(&source, &text)
    }

    fn install(&self, source: &str, text: &[u8]) -> Result<(), JwksError> {
        let set: JwkSet = serde_json::from_slice(text)
            .map_err(|e| JwksError::Parse(source.to_owned(), e.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            match key_of(jwk) {
                Some((kid, key)) => {
                    keys.insert(kid, key);
                }
                None => {
                    debug!(section = self.section, %source, "JWKS key without kid or unusable, skipped")
                }
            }
        }
        let count = keys.len();
        let changed = {
            let mut current = self.keys.write().unwrap_or_else(|e| e.into_inner());
            let changed = {
                let mut old: Vec<&String> = current.keys().collect();
                let mut new: Vec<&String> = keys.keys().collect();
                old.sort_unstable();
                new.sort_unstable();
                old != new
            };
            *current = Arc::new(keys);
            changed
        };
        if changed {
            info!(section = self.section, %source, keys = count, "JWKS loaded");
        }
        Ok(())
    }
}

fn key_of(jwk: &Jwk) -> Option<(String, JwksKey)> {
    let kid = jwk.common.key_id.clone()?;
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let algorithm = match jwk.common.key_algorithm {
        Some(alg) => Some(Algorithm::try_from(alg).ok()?),
        None => None,
    };
    Some((
        kid,
        JwksKey {
            key: Arc::new(key),
            algorithm,
        },
    ))
}

async fn refresh_periodically(jwks: Weak<Jwks>) {
    let mut first = true;
    loop {
        let Some(strong) = jwks.upgrade() else { return };
        let interval = strong.config.refresh_interval;
        // A file was read at start; a URL is fetched at once.
        if !first || strong.config.file.is_none() {
            // Held while fetching: a token with an unknown kid meanwhile waits for this
            // fetch instead of being refused or starting another.
            let mut last = strong.last_fetch.lock().await;
            *last = Some(Instant::now());
            if let Err(e) = strong.refresh().await {
                warn!(section = strong.section, error = %e, "JWKS refresh failed; the previous keys stay in use");
            }
            drop(last);
        }
        first = false;
        drop(strong);
        if interval.is_zero() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// GETs the JWKS URL (HTTP/1.1; TLS for `https://` with `ca_file` or the system roots).
async fn fetch(config: &JwksConfig) -> Result<Vec<u8>, FetchError> {
    tokio::time::timeout(config.timeout, fetch_unbounded(config))
        .await
        .map_err(|_| FetchError::Timeout(config.timeout))?
}

async fn fetch_unbounded(config: &JwksConfig) -> Result<Vec<u8>, FetchError> {
    let uri: http::Uri = config.url.parse().map_err(FetchError::Url)?;
    let host = uri.host().ok_or(FetchError::NoHost)?.to_owned();
    let https = uri.scheme_str() == Some("https");
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(FetchError::Connect)?;
    let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(
            http::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(FetchError::Request)?;
    if https {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(config)?));
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
            .map_err(FetchError::ServerName)?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(FetchError::Connect)?;
        send(tls, request).await
    } else {
        send(tcp, request).await
    }
}

async fn send<Io>(io: Io, request: http::Request<Empty<Bytes>>) -> Result<Vec<u8>, FetchError>
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(FetchError::Http)?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(FetchError::Http)?;
    if !response.status().is_success() {
        return Err(FetchError::Status(response.status()));
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
        .collect()
        .await
        .map_err(FetchError::Body)?;
    Ok(body.to_bytes().to_vec())
}

fn client_config(config: &JwksConfig) -> Result<rustls::ClientConfig, FetchError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            for cert in
                crate::tls::read_certificates("jwks.ca_file", path).map_err(FetchError::CaFile)?
            {
                roots.add(cert).map_err(FetchError::Tls)?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(FetchError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}
