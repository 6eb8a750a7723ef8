//! `[auth]`: how sockets authenticate, and `[auth.jwt]`, the `jwt` authenticator.

use serde::{Deserialize, Deserializer, Serialize, de::MapAccess};

use super::{
    ConfigError, JwtRules,
    jwt::{self, JwtSection},
};

/// Authenticators and their settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Authenticators tried in order, the first that allows wins: `jwt`, `hook`, `none`
    /// (e.g. `["jwt", "hook"]`: JWT first, the backend for the rest). A hook error or
    /// timeout fails closed. Empty: development mode (`none`, edge on loopback only).
    pub authenticators: Vec<AuthenticatorKind>,
    /// Must be true for `none` to be accepted in `authenticators`.
    pub allow_none: bool,
    /// The `jwt` authenticator.
    pub jwt: JwtConfig,
}

/// An authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticatorKind {
    /// Verify a JWT locally.
    Jwt,
    /// Ask the backend's `SocketHooks.Authenticate`.
    Hook,
    /// Allow everyone (development only).
    None,
}

/// Local JWT verification.
#[derive(Debug, Clone, Serialize)]
pub struct JwtConfig {
    /// Verification keys and claim checks, as in `control.auth`.
    #[serde(flatten)]
    pub rules: JwtRules,
    /// Query parameter that may carry the token.
    pub query_param: String,
    /// Claim holding the room patterns the user may join (array of strings).
    pub rooms_claim: String,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            rules: JwtRules::default(),
            query_param: "token".into(),
            rooms_claim: "rooms".into(),
        }
    }
}

impl JwtSection for JwtConfig {
    const NAME: &'static str = "auth.jwt";
    const FIELDS: &'static [&'static str] =
        &jwt::section_fields::<2, 7>(["query_param", "rooms_claim"]);

    fn rules_mut(&mut self) -> &mut JwtRules {
        &mut self.rules
    }

    fn read_own<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        match key {
            "query_param" => self.query_param = map.next_value()?,
            "rooms_claim" => self.rooms_claim = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl<'de> Deserialize<'de> for JwtConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        jwt::deserialize_section(deserializer)
    }
}

impl AuthConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.authenticators.contains(&AuthenticatorKind::None) && !self.allow_none {
            return Err(ConfigError::Invalid(
                "auth.authenticators contains `none`, which lets anyone in: set \
                 auth.allow_none = true to confirm"
                    .into(),
            ));
        }
        if self.authenticators.contains(&AuthenticatorKind::Jwt) && !self.jwt.rules.has_keys() {
            return Err(ConfigError::Invalid(
                "the `jwt` authenticator needs at least one auth.jwt.keys entry or auth.jwt.jwks"
                    .into(),
            ));
        }
        self.jwt.rules.validate("auth.jwt")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, JwtKeyConfig};

    #[test]
    fn none_needs_an_explicit_opt_in() {
        let mut config = Config::default();
        config.auth.authenticators = vec![AuthenticatorKind::None];
        assert!(config.validate().is_err());
        config.auth.allow_none = true;
        config.validate().unwrap();
    }

    #[test]
    fn the_jwt_authenticator_needs_a_key_or_a_jwks() {
        let mut config = Config::default();
        config.auth.authenticators = vec![AuthenticatorKind::Jwt];
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("auth.jwt.keys entry or auth.jwt.jwks"),
            "{err}"
        );
        config.auth.jwt.rules.jwks.file = Some("jwks.json".into());
        config.validate().unwrap();
        config.auth.jwt.rules.jwks.file = None;
        config.auth.jwt.rules.keys.push(JwtKeyConfig {
            algorithm: "HS256".into(),
            secret_file: None,
            secret_env: Some("EDGE_JWT_SECRET".into()),
            public_key_file: None,
        });
        config.validate().unwrap();
    }
}
