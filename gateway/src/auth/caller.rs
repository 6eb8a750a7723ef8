//! Who calls the control plane: a bearer JWT verified with `control.auth` keys, and the
//! scopes its `scope` claim grants.

use std::fmt;

use serde_json::Value;

use super::{JwtError, KeySet, TokenError};
use crate::config::ControlAuthConfig;

/// A permission a control-plane token can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `Send`.
    Send,
    /// `Join`, `Leave`.
    Membership,
    /// `GetInfo`, `GetSocket`, `ListSockets`, `ListRooms`.
    Read,
    /// `Disconnect`.
    Disconnect,
    /// `WatchEvents`.
    Events,
    /// Everything.
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [
        Scope::Send,
        Scope::Membership,
        Scope::Read,
        Scope::Disconnect,
        Scope::Events,
        Scope::Admin,
    ];

    /// The name in the `scope` claim.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Membership => "membership",
            Scope::Read => "read",
            Scope::Disconnect => "disconnect",
            Scope::Events => "events",
            Scope::Admin => "admin",
        }
    }

    /// The scope named `name`, if it is one of ours.
    pub fn parse(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's `sub`, or `-` when it has none.
    pub subject: String,
    /// Scopes of ours the token grants (others are ignored).
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// Whether the caller may use what `needed` guards (`admin` grants everything).
    pub fn has(&self, needed: Scope) -> bool {
        self.scopes.contains(&needed) || self.scopes.contains(&Scope::Admin)
    }

    /// Why the caller may not use `what`, which needs `needed`; `None` when it may.
    pub fn refusal(&self, what: &str, needed: Scope) -> Option<String> {
        if self.has(needed) {
            return None;
        }
        let granted: Vec<&str> = self.scopes.iter().map(|s| s.name()).collect();
        Some(format!(
            "{what} needs scope `{needed}` (or `admin`); the token grants [{}]",
            granted.join(", ")
        ))
    }
}

/// Why a caller is refused. No message contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallerError {
    /// No `authorization` metadata.
    #[error("missing `authorization: Bearer <token>` metadata")]
    Missing,
    /// `authorization` is not `Bearer <token>`.
    #[error("the `authorization` metadata is not `Bearer <token>`")]
    NotBearer,
    /// The token does not verify.
    #[error("invalid token: {0}")]
    Invalid(#[from] TokenError),
}

/// Verifies control-plane callers.
#[derive(Debug)]
pub struct CallerVerifier {
    keys: KeySet,
    scope_claim: String,
}

impl CallerVerifier {
    /// The verifier of `config`; `None` when control authentication is off.
    pub fn from_config(config: &ControlAuthConfig) -> Result<Option<Self>, JwtError> {
        if !config.is_enabled() {
            return Ok(None);
        }
        Ok(Some(Self {
            keys: KeySet::load("control.auth", &config.rules)?,
            scope_claim: config.scope_claim.clone(),
        }))
    }

    /// Verifies the value of the `authorization` metadata.
    pub async fn verify(&self, authorization: Option<&[u8]>) -> Result<Caller, CallerError> {
        let value = authorization.ok_or(CallerError::Missing)?;
        let value = std::str::from_utf8(value).map_err(|_| CallerError::NotBearer)?;
        let token = bearer_token(value).ok_or(CallerError::NotBearer)?;
        let claims = self.keys.decode(token).await?;
        Ok(Caller {
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or("-")
                .to_owned(),
            scopes: scopes(claims.get(&self.scope_claim)),
        })
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, as RFC 6750 allows).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Our scopes in a claim that is a space-separated string or an array of strings.
fn scopes(claim: Option<&Value>) -> Vec<Scope> {
    let names: Vec<&str> = match claim {
        Some(Value::String(list)) => list.split_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    names.into_iter().filter_map(Scope::parse).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scope_claim_as_string_or_array() {
        assert_eq!(
            scopes(Some(&json!("send read openid"))),
            vec![Scope::Send, Scope::Read]
        );
        assert_eq!(
            scopes(Some(&json!(["events", "admin", 3]))),
            vec![Scope::Events, Scope::Admin]
        );
        assert!(scopes(Some(&json!(42))).is_empty());
        assert!(scopes(None).is_empty());
    }

    #[test]
    fn admin_grants_every_scope() {
        let admin = Caller {
            subject: "ops".into(),
            scopes: vec![Scope::Admin],
        };
        assert!(Scope::ALL.into_iter().all(|s| admin.has(s)));
        let reader = Caller {
            subject: "ro".into(),
            scopes: vec![Scope::Read],
        };
        assert!(reader.has(Scope::Read) && !reader.has(Scope::Send));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
