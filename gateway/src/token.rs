//! `sockgate token`: mints a JWT the gateway accepts, for grpcurl, scripts and the
//! examples: a control-plane token with scopes, or with `--edge` a socket token.

use std::{str::FromStr, time::Duration};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Map, Value, json};

use crate::{
    auth::{Scope, SecretError, hmac_secret, is_hmac},
    config::{Config, JwtKeyConfig, TokenArgs},
};

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// A scope that does not exist.
    #[error("unknown scope {0:?}: use send, membership, read, disconnect, events or admin")]
    UnknownScope(String),
    /// A control token without any scope would be refused everywhere.
    #[error("name at least one --scope")]
    NoScope,
    /// Nothing to sign with.
    #[error(
        "{0} has no HMAC key to sign with; pass --private-key FILE --algorithm ALG for a public key"
    )]
    NoSecret(&'static str),
    /// The key cannot be read or used.
    #[error("{0}")]
    Key(String),
    /// The HMAC secret cannot be read.
    #[error("{section}: {error}")]
    Secret {
        /// The configuration section of the key (`auth.jwt.keys`).
        section: &'static str,
        /// Why.
        error: SecretError,
    },
}

/// The signed token of `args` under `config`.
pub fn mint(config: &Config, args: &TokenArgs) -> Result<String, MintError> {
    let (section, rules) = if args.edge {
        ("auth.jwt.keys", &config.auth.jwt.rules)
    } else {
        ("control.auth.keys", &config.control.auth.rules)
    };
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(args.subject));
    let now = get_current_timestamp();
    claims.insert("iat".into(), json!(now));
    claims.insert(
        "exp".into(),
        json!(now + args.ttl.max(Duration::from_secs(1)).as_secs()),
    );
    if let Some(iss) = args.issuer.as_ref().or(rules.issuers.first()) {
        claims.insert("iss".into(), json!(iss));
    }
    if let Some(aud) = args.audience.as_ref().or(rules.audiences.first()) {
        claims.insert("aud".into(), json!(aud));
    }
    if !args.edge {
        let scopes = args
            .scope
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(|s| Scope::parse(s).ok_or_else(|| MintError::UnknownScope(s.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        if scopes.is_empty() {
            return Err(MintError::NoScope);
        }
        let names: Vec<&str> = scopes.iter().map(|s| s.name()).collect();
        claims.insert(
            config.control.auth.scope_claim.clone(),
            json!(names.join(" ")),
        );
    }
    let (algorithm, key) = signing_key(section, &rules.keys, args)?;
    encode(&Header::new(algorithm), &Value::Object(claims), &key)
        .map_err(|e| MintError::Key(format!("cannot sign: {e}")))
}

fn signing_key(
    section: &'static str,
    keys: &[JwtKeyConfig],
    args: &TokenArgs,
) -> Result<(Algorithm, EncodingKey), MintError> {
    let Some(path) = &args.private_key else {
        let (algorithm, key) = keys
            .iter()
            .filter_map(|k| Some((Algorithm::from_str(&k.algorithm).ok()?, k)))
            .find(|(algorithm, _)| is_hmac(*algorithm))
            .ok_or(MintError::NoSecret(section))?;
        let secret = hmac_secret(key).map_err(|error| MintError::Secret { section, error })?;
        return Ok((algorithm, EncodingKey::from_secret(secret.as_bytes())));
    };
    let name = args.algorithm.as_deref().unwrap_or("RS256");
    let algorithm = Algorithm::from_str(name)
        .map_err(|_| MintError::Key(format!("unknown algorithm {name:?}")))?;
    let pem = std::fs::read(path)
        .map_err(|e| MintError::Key(format!("cannot read {}: {e}", path.display())))?;
    let key = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        a if is_hmac(a) => {
            return Err(MintError::Key(
                "an HMAC algorithm signs with the configured secret, not --private-key".into(),
            ));
        }
        _ => EncodingKey::from_rsa_pem(&pem),
    };
    let key = key.map_err(|e| MintError::Key(format!("{}: {e}", path.display())))?;
    Ok((algorithm, key))
}

#[cfg(test)]
mod tests {
    use crate::{
        auth::{CallerVerifier, Scope},
        config::{Config, JwtKeyConfig, TokenArgs},
    };

    use super::*;

    fn config() -> Config {
        let mut config = Config::default();
        let path = std::env::temp_dir().join(format!("sockgate-mint-{}", std::process::id()));
        std::fs::write(&path, "mint-test-secret-0123456789\n").unwrap();
        config.control.auth.rules.keys.push(JwtKeyConfig {
            algorithm: "HS384".into(),
            secret_file: Some(path),
            secret_env: None,
            public_key_file: None,
        });
        config.control.auth.rules.issuers = vec!["ops".into()];
        config.control.auth.rules.audiences = vec!["control".into()];
        config
    }

    fn args(scopes: &[&str]) -> TokenArgs {
        TokenArgs {
            scope: scopes.iter().map(|s| s.to_string()).collect(),
            subject: "billing".into(),
            ttl: Duration::from_secs(60),
            issuer: None,
            audience: None,
            edge: false,
            private_key: None,
            algorithm: None,
        }
    }

    #[tokio::test]
    async fn a_minted_token_passes_the_gateways_own_check() {
        let config = config();
        let token = mint(&config, &args(&["send read", "events"])).unwrap();
        let verifier = CallerVerifier::from_config(&config.control.auth)
            .unwrap()
            .unwrap();
        let caller = verifier
            .verify(Some(format!("Bearer {token}").as_bytes()))
            .await
            .unwrap();
        assert_eq!(caller.subject, "billing");
        assert_eq!(caller.scopes, vec![Scope::Send, Scope::Read, Scope::Events]);
    }

    #[test]
    fn unknown_or_missing_scopes_and_missing_secrets_are_errors() {
        let config = config();
        assert!(matches!(
            mint(&config, &args(&["sned"])),
            Err(MintError::UnknownScope(s)) if s == "sned"
        ));
        assert!(matches!(mint(&config, &args(&[])), Err(MintError::NoScope)));
        let edge = TokenArgs {
            edge: true,
            ..args(&[])
        };
        assert!(matches!(
            mint(&config, &edge),
            Err(MintError::NoSecret("auth.jwt.keys"))
        ));
    }
}
