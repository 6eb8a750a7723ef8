//! The `jwt` authenticator: a token from the `authenticate` event (`{token}`), the
//! Socket.IO `auth.token`, `Authorization: Bearer` or a query parameter, verified locally.

use std::{collections::HashMap, fs, str::FromStr};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

use super::{Handshake, Identity, Outcome};
use crate::config::{JwtConfig, JwtKeyConfig};

/// A key that cannot be loaded. Secrets are never part of the message.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Unknown or unsupported `algorithm`.
    #[error("auth.jwt.keys: unknown algorithm {0:?}")]
    Algorithm(String),
    /// The key source does not fit the algorithm.
    #[error("auth.jwt.keys ({algorithm}): {message}")]
    Key {
        /// The key's algorithm.
        algorithm: String,
        /// What is wrong.
        message: String,
    },
}

/// Verifies tokens with the configured keys.
pub struct JwtVerifier {
    keys: HashMap<Algorithm, Vec<DecodingKey>>,
    validation: HashMap<Algorithm, Validation>,
    query_param: String,
    rooms_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithms", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Loads every key.
    pub fn from_config(config: &JwtConfig) -> Result<Self, JwtError> {
        let mut keys: HashMap<Algorithm, Vec<DecodingKey>> = HashMap::new();
        let mut validation = HashMap::new();
        for key in &config.keys {
            let algorithm = Algorithm::from_str(&key.algorithm)
                .map_err(|_| JwtError::Algorithm(key.algorithm.clone()))?;
            keys.entry(algorithm)
                .or_default()
                .push(load_key(algorithm, key)?);
            validation
                .entry(algorithm)
                .or_insert_with(|| validation_for(algorithm, config));
        }
        Ok(Self {
            keys,
            validation,
            query_param: config.query_param.clone(),
            rooms_claim: config.rooms_claim.clone(),
        })
    }

    pub(super) fn authenticate(&self, handshake: &Handshake<'_>) -> Outcome {
        let query = handshake.query();
        let sources = TokenSources {
            event_data: handshake.event_data,
            auth: handshake.auth,
            authorization: handshake.authorization(),
            query: &query,
        };
        let Some(token) = sources.find(&self.query_param) else {
            return Outcome::Deny("no token".into());
        };
        match self.verify(&token) {
            Ok(identity) => Outcome::Allow(identity),
            Err(reason) => Outcome::Deny(reason),
        }
    }

    /// Verifies a token and reads the identity from its claims.
    pub fn verify(&self, token: &str) -> Result<Identity, String> {
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let (Some(keys), Some(validation)) =
            (self.keys.get(&header.alg), self.validation.get(&header.alg))
        else {
            return Err(format!("no key for algorithm {:?}", header.alg));
        };
        let mut last_error = String::new();
        for key in keys {
            match decode::<serde_json::Map<String, Value>>(token, key, validation) {
                Ok(data) => return Ok(self.identity(&data.claims)),
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(last_error)
    }

    fn identity(&self, claims: &serde_json::Map<String, Value>) -> Identity {
        let room_patterns = match claims.get(&self.rooms_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Identity {
            rooms: Vec::new(),
            metadata: None,
            user_id: claims
                .get("sub")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            room_patterns,
        }
    }
}

fn validation_for(algorithm: Algorithm, config: &JwtConfig) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = config.leeway_secs;
    validation.validate_nbf = true;
    if config.issuers.is_empty() {
        validation.iss = None;
    } else {
        validation.set_issuer(&config.issuers);
    }
    if config.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&config.audiences);
    }
    validation
}

fn load_key(algorithm: Algorithm, key: &JwtKeyConfig) -> Result<DecodingKey, JwtError> {
    let fail = |message: String| JwtError::Key {
        algorithm: key.algorithm.clone(),
        message,
    };
    let is_hmac = matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    );
    if is_hmac {
        let secret = match (&key.secret_file, &key.secret_env) {
            (Some(path), None) => fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read secret_file {}: {e}", path.display())))?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| fail(format!("environment variable {var} is not set")))?,
            _ => return Err(fail("set exactly one of secret_file or secret_env".into())),
        };
        if secret.len() < 16 {
            return Err(fail("the secret is shorter than 16 bytes".into()));
        }
        return Ok(DecodingKey::from_secret(secret.as_bytes()));
    }
    let path = key
        .public_key_file
        .as_ref()
        .ok_or_else(|| fail("public_key_file is required".into()))?;
    let pem = fs::read(path).map_err(|e| {
        fail(format!(
            "cannot read public_key_file {}: {e}",
            path.display()
        ))
    })?;
    let parsed = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
        _ => DecodingKey::from_rsa_pem(&pem),
    };
    parsed.map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// Where a token may be, in the order they are looked at.
struct TokenSources<'a> {
    event_data: Option<&'a Value>,
    auth: Option<&'a Value>,
    authorization: Option<&'a str>,
    query: &'a [(String, String)],
}

impl TokenSources<'_> {
    fn find(&self, query_param: &str) -> Option<String> {
        let from_object = |value: Option<&Value>| {
            value
                .and_then(|v| v.get("token"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
        };
        from_object(self.event_data)
            .or_else(|| from_object(self.auth))
            .or_else(|| {
                self.authorization
                    .and_then(|h| {
                        h.strip_prefix("Bearer ")
                            .or_else(|| h.strip_prefix("bearer "))
                    })
                    .map(|t| t.trim().to_owned())
                    .filter(|t| !t.is_empty())
            })
            .or_else(|| {
                self.query
                    .iter()
                    .find(|(name, value)| name == query_param && !value.is_empty())
                    .map(|(_, value)| value.clone())
            })
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::auth::parse_query;

    const SECRET: &str = "unit-test-secret-0123456789";

    fn token(claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn file_verifier(issuers: &[&str]) -> JwtVerifier {
        let path = std::env::temp_dir().join(format!(
            "sockgate-unit-secret-{}-{}",
            std::process::id(),
            issuers.len()
        ));
        fs::write(&path, format!("{SECRET}\n")).unwrap();
        JwtVerifier::from_config(&JwtConfig {
            keys: vec![JwtKeyConfig {
                algorithm: "HS256".into(),
                secret_file: Some(path),
                secret_env: None,
                public_key_file: None,
            }],
            issuers: issuers.iter().map(|s| s.to_string()).collect(),
            ..JwtConfig::default()
        })
        .unwrap()
    }

    fn exp_in(secs: i64) -> i64 {
        jsonwebtoken::get_current_timestamp() as i64 + secs
    }

    #[test]
    fn valid_token_gives_user_and_rooms() {
        let v = file_verifier(&[]);
        let id = v
            .verify(&token(
                json!({"sub": "u1", "exp": exp_in(60), "rooms": ["chat:*"]}),
            ))
            .unwrap();
        assert_eq!(id.user_id.as_deref(), Some("u1"));
        assert_eq!(id.room_patterns, vec!["chat:*"]);
    }

    fn testdata(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/auth/testdata")
            .join(name)
    }

    #[test]
    fn public_keys_verify_rsa_ec_and_ed25519_tokens() {
        let key = |algorithm: &str, public: &str| JwtKeyConfig {
            algorithm: algorithm.into(),
            secret_file: None,
            secret_env: None,
            public_key_file: Some(testdata(public)),
        };
        let verifier = JwtVerifier::from_config(&JwtConfig {
            keys: vec![
                key("RS256", "rsa-public.pem"),
                key("ES256", "ec-public.pem"),
                key("EdDSA", "ed-public.pem"),
            ],
            ..JwtConfig::default()
        })
        .unwrap();
        let claims = json!({"sub": "pk-user", "exp": exp_in(60)});
        let read = |name: &str| fs::read(testdata(name)).unwrap();
        let signed = [
            (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(&read("rsa-private.pem")).unwrap(),
            ),
            (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(&read("ec-private.pem")).unwrap(),
            ),
            (
                Algorithm::EdDSA,
                EncodingKey::from_ed_pem(&read("ed-private.pem")).unwrap(),
            ),
        ];
        for (algorithm, private) in signed {
            let token = encode(&Header::new(algorithm), &claims, &private).unwrap();
            let identity = verifier
                .verify(&token)
                .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
            assert_eq!(identity.user_id.as_deref(), Some("pk-user"));
        }
        // A token whose algorithm has no configured key is refused.
        let other = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let hs = encode(&Header::new(Algorithm::HS256), &claims, &other).unwrap();
        assert!(
            verifier
                .verify(&hs)
                .unwrap_err()
                .contains("no key for algorithm")
        );
    }

    #[test]
    fn unsigned_and_hostile_tokens_are_refused_without_a_crash() {
        let v = file_verifier(&[]);
        let signed = token(json!({"sub": "admin", "exp": exp_in(60)}));
        let mut parts = signed.split('.');
        let (_, claims, signature) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        // Base64url of {"alg":"none","typ":"JWT"} and its case variants.
        for header in [
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            "eyJhbGciOiJOb25lIiwidHlwIjoiSldUIn0",
            "eyJhbGciOiJOT05FIiwidHlwIjoiSldUIn0",
        ] {
            assert!(
                v.verify(&format!("{header}.{claims}.")).is_err(),
                "unsigned token accepted"
            );
            assert!(v.verify(&format!("{header}.{claims}.{signature}")).is_err());
        }
        // {"alg":"HS384","typ":"JWT"}: a valid HS256 signature under another algorithm.
        let relabeled = format!("eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9.{claims}.{signature}");
        assert!(v.verify(&relabeled).is_err());
        // Claims nested past serde_json's recursion limit, and a megabyte of claims.
        let mut deep = json!([]);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let nested = token(json!({"sub": "u", "exp": exp_in(60), "x": deep}));
        assert!(v.verify(&nested).is_err());
        let huge = token(json!({"sub": "u", "exp": exp_in(60), "pad": "x".repeat(1 << 20)}));
        assert_eq!(v.verify(&huge).unwrap().user_id.as_deref(), Some("u"));
    }

    #[test]
    fn a_public_key_of_the_wrong_kind_is_a_config_error() {
        let config = JwtConfig {
            keys: vec![JwtKeyConfig {
                algorithm: "ES256".into(),
                secret_file: None,
                secret_env: None,
                public_key_file: Some(testdata("rsa-public.pem")),
            }],
            ..JwtConfig::default()
        };
        let err = JwtVerifier::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("ES256"), "{err}");
    }

    #[test]
    fn expired_and_wrong_issuer_are_refused() {
        let v = file_verifier(&["me"]);
        let expired = v.verify(&token(
            json!({"sub": "u", "exp": exp_in(-3600), "iss": "me"}),
        ));
        assert!(expired.unwrap_err().contains("xpired"));
        assert!(
            v.verify(&token(
                json!({"sub": "u", "exp": exp_in(60), "iss": "other"})
            ))
            .is_err()
        );
        assert!(v.verify("not.a.token").is_err());
    }

    #[test]
    fn token_sources_in_order() {
        let event = json!({"token": "from-event"});
        let auth = json!({"token": "from-auth"});
        let query = parse_query("EIO=4&token=from%2Dquery");
        let sources = TokenSources {
            authorization: Some("Bearer from-header"),
            auth: Some(&auth),
            query: &query,
            event_data: Some(&event),
        };
        assert_eq!(sources.find("token").as_deref(), Some("from-event"));
        let sources = TokenSources {
            event_data: None,
            ..sources
        };
        assert_eq!(sources.find("token").as_deref(), Some("from-auth"));
        let sources = TokenSources {
            auth: None,
            ..sources
        };
        assert_eq!(sources.find("token").as_deref(), Some("from-header"));
        let sources = TokenSources {
            authorization: None,
            ..sources
        };
        assert_eq!(sources.find("token").as_deref(), Some("from-query"));
        assert_eq!(sources.find("other"), None);
        let sources = TokenSources {
            query: &[],
            ..sources
        };
        assert_eq!(sources.find("token"), None);
    }

    #[test]
    fn short_secret_and_unknown_algorithm_are_config_errors() {
        let mut config = JwtConfig::default();
        config.keys.push(JwtKeyConfig {
            algorithm: "HS999".into(),
            secret_file: None,
            secret_env: None,
            public_key_file: None,
        });
        assert!(matches!(
            JwtVerifier::from_config(&config),
            Err(JwtError::Algorithm(_))
        ));
    }
}
