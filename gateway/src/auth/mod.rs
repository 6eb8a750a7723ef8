//! Who a socket is: the authenticators (`jwt`, `none`), chained in the configured order,
//! and the room validator that decides which rooms a client may join itself.

mod jwt;
mod room_validator;

use std::sync::Arc;

use serde_json::Value;

pub use jwt::{JwtError, JwtVerifier};
pub use room_validator::RoomValidator;

use crate::config::{AuthConfig, AuthenticatorKind};

/// What the gateway knows of an authenticated socket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// The user, when the authenticator names one.
    pub user_id: Option<String>,
    /// Room patterns this socket may join besides the static ones (JWT room claim).
    pub room_patterns: Vec<String>,
}

/// The authenticator's verdict.
#[derive(Debug)]
pub enum Outcome {
    /// Let the socket in.
    Allow(Identity),
    /// The credentials are wrong or missing.
    Deny(String),
    /// The authenticator could not decide (error, timeout).
    Fail(String),
}

/// What an authenticator may look at.
pub struct Credentials<'a> {
    /// `Authorization` header of the connection request.
    pub authorization: Option<&'a str>,
    /// The Socket.IO `auth` object.
    pub auth: Option<&'a Value>,
    /// Query string of the connection request.
    pub query: Option<&'a str>,
    /// Data of the `authenticate` event.
    pub event_data: Option<&'a Value>,
}

#[derive(Debug)]
enum Authenticator {
    Jwt(Arc<JwtVerifier>),
    AllowAll,
}

/// The configured authenticators, tried in order until one allows.
#[derive(Debug)]
pub struct AuthChain {
    authenticators: Vec<Authenticator>,
}

impl AuthChain {
    /// Builds the chain; development mode (nothing configured) allows everyone.
    pub fn from_config(config: &AuthConfig) -> Result<Self, JwtError> {
        let mut authenticators = Vec::new();
        for kind in &config.authenticators {
            authenticators.push(match kind {
                AuthenticatorKind::Jwt => {
                    Authenticator::Jwt(Arc::new(JwtVerifier::from_config(&config.jwt)?))
                }
                AuthenticatorKind::None => Authenticator::AllowAll,
            });
        }
        if authenticators.is_empty() {
            authenticators.push(Authenticator::AllowAll);
        }
        Ok(Self { authenticators })
    }

    /// Runs the chain: the first `Allow` wins; otherwise a failure is reported as such
    /// (fail closed with the "Failed to authenticate" message), else the last denial.
    pub async fn authenticate(&self, credentials: &Credentials<'_>) -> Outcome {
        let mut verdict = Outcome::Deny("no authenticator".into());
        for authenticator in &self.authenticators {
            let outcome = match authenticator {
                Authenticator::Jwt(verifier) => verifier.authenticate(credentials),
                Authenticator::AllowAll => Outcome::Allow(Identity::default()),
            };
            match outcome {
                Outcome::Allow(identity) => return Outcome::Allow(identity),
                Outcome::Fail(reason) => verdict = Outcome::Fail(reason),
                Outcome::Deny(reason) => {
                    if !matches!(verdict, Outcome::Fail(_)) {
                        verdict = Outcome::Deny(reason);
                    }
                }
            }
        }
        verdict
    }
}
