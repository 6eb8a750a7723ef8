//! Who a socket is: the authenticators (`jwt`, `hook`, `none`), chained in the configured
//! order, and the room validator that decides which rooms a client may join itself; and
//! the control plane's callers with their scopes (`caller`).

mod caller;
mod handshake;
mod hook;
mod jwks;
mod jwt;
mod room_validator;
pub mod user_id;

use std::sync::Arc;

use tracing::warn;

pub use caller::{Caller, CallerError, CallerVerifier, Scope};
pub use handshake::{ConnectionMeta, Handshake, parse_query};
pub use jwks::{FetchError, Jwks, JwksError};
pub use jwt::{JwtError, JwtVerifier, KeySet, SecretError, TokenError, hmac_secret, is_hmac};
pub use room_validator::RoomValidator;

use crate::{
    config::{AuthConfig, AuthenticatorKind},
    hooks::Hooks,
    metrics::{METRICS, Refusal},
};

/// What the gateway knows of an authenticated socket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    /// The user, when the authenticator names one.
    pub user_id: Option<String>,
    /// Room patterns this socket may join besides the static ones (JWT room claim).
    pub room_patterns: Vec<String>,
    /// Rooms to join right away (from the `Authenticate` hook).
    pub rooms: Vec<String>,
    /// Backend data kept with the socket and passed to the other hooks.
    pub metadata: Option<prost_types::Struct>,
    /// When the credentials expire (the JWT's `exp`, Unix seconds): a session is not
    /// recovered past it.
    pub expires_at: Option<u64>,
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

#[derive(Debug)]
enum Authenticator {
    Jwt(JwtVerifier),
    Hook(Arc<Hooks>),
    AllowAll,
}

/// Why the chain cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// A JWT key is unusable.
    #[error(transparent)]
    Jwt(#[from] JwtError),
    /// `hook` without a hooks endpoint.
    #[error("the `hook` authenticator needs hooks.endpoint")]
    NoHooks,
}

/// The configured authenticators, tried in order until one allows.
#[derive(Debug)]
pub struct AuthChain {
    authenticators: Vec<Authenticator>,
}

impl AuthChain {
    /// Builds the chain; development mode (nothing configured) allows everyone.
    pub fn from_config(
        config: &AuthConfig,
        hooks: Option<&Arc<Hooks>>,
    ) -> Result<Self, AuthSetupError> {
        let mut authenticators = Vec::new();
        for kind in &config.authenticators {
            authenticators.push(match kind {
                AuthenticatorKind::Jwt => {
                    Authenticator::Jwt(JwtVerifier::from_config(&config.jwt)?)
                }
                AuthenticatorKind::Hook => {
                    Authenticator::Hook(hooks.cloned().ok_or(AuthSetupError::NoHooks)?)
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
    pub async fn authenticate(&self, handshake: &Handshake<'_>) -> Outcome {
        let mut verdict = Outcome::Deny("no authenticator".into());
        for authenticator in &self.authenticators {
            let outcome = match authenticator {
                Authenticator::Jwt(verifier) => verifier.authenticate(handshake).await,
                Authenticator::Hook(hooks) => hook::authenticate(hooks, handshake).await,
                Authenticator::AllowAll => Outcome::Allow(Identity::default()),
            };
            let outcome = check_user_id(authenticator, outcome, &handshake.socket_id);
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

impl AuthChain {
    /// The user that credentials this node can verify itself (a JWT) name, if the
    /// handshake presents valid ones: `Some(None)` for a token without a subject. No hook
    /// is called. A recovered socket's `authenticate` is checked with it.
    pub async fn user_named(&self, handshake: &Handshake<'_>) -> Option<Option<String>> {
        for authenticator in &self.authenticators {
            if let Authenticator::Jwt(verifier) = authenticator
                && let Outcome::Allow(identity) = verifier.authenticate(handshake).await
            {
                return Some(identity.user_id);
            }
        }
        None
    }
}

/// Refuses an `Allow` whose user id is not a valid one: a token naming such a user is an
/// invalid token; a backend answering with one has failed.
fn check_user_id(authenticator: &Authenticator, outcome: Outcome, sid: &str) -> Outcome {
    let Outcome::Allow(identity) = &outcome else {
        return outcome;
    };
    let Some(Err(error)) = identity.user_id.as_deref().map(user_id::check) else {
        return outcome;
    };
    METRICS.refused(Refusal::InvalidUserId);
    let shown: String = identity
        .user_id
        .iter()
        .flat_map(|u| u.chars())
        .take(64)
        .collect();
    warn!(sid, user = ?shown, %error, "authenticator returned an invalid user id; refused");
    match authenticator {
        Authenticator::Hook(_) => Outcome::Fail(format!(
            "the Authenticate hook returned an invalid user id: {error}"
        )),
        _ => Outcome::Deny(format!(
            "the token's subject is not a valid user id: {error}"
        )),
    }
}
