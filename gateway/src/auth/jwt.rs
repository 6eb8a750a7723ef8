//! The `jwt` authenticator: a token from the `authenticate` event (`{token}`), the
//! Socket.IO `auth.token`, `Authorization: Bearer` or a query parameter, verified locally.
//! [`KeySet`] (keys and claim checks) is shared with the control plane's caller
//! authentication.

use std::{collections::HashMap, fs, path::PathBuf, str::FromStr, sync::Arc};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde_json::Value;

use super::{
    Handshake, Identity, Outcome,
    jwks::{Jwks, JwksError},
};
use crate::config::{JwtConfig, JwtKeyConfig, JwtRules};

/// A key that cannot be loaded. Secrets are never part of the message.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Unknown or unsupported `algorithm`.
    #[error("{section}.keys: unknown algorithm {algorithm:?}")]
    Algorithm {
        /// The configuration section of the key.
        section: &'static str,
        /// What was configured.
        algorithm: String,
    },
    /// The key source does not fit the algorithm.
    #[error("{section}.keys ({algorithm}): {message}")]
    Key {
        /// The configuration section of the key.
        section: &'static str,
        /// The key's algorithm.
        algorithm: String,
        /// What is wrong.
        message: String,
    },
    /// The HMAC secret of the key cannot be read.
    #[error("{section}.keys ({algorithm}): {error}")]
    Secret {
        /// The configuration section of the key.
        section: &'static str,
        /// The key's algorithm.
        algorithm: String,
        /// Why.
        error: SecretError,
    },
    /// The JWKS cannot be read.
    #[error("{section}.jwks: {error}")]
    Jwks {
        /// The configuration section of the keys.
        section: &'static str,
        /// Why.
        error: JwksError,
    },
}

/// Why an HMAC secret cannot be read. Never contains the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `secret_file` cannot be read.
    #[error("cannot read secret_file {}: {error}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// `secret_env` names a variable that is not set (or not Unicode).
    #[error("environment variable {0} is not set")]
    Env(String),
    /// Neither or both of `secret_file` and `secret_env`.
    #[error("set exactly one of secret_file or secret_env")]
    Source,
    /// The secret is too short to be safe.
    #[error("the secret is shorter than 16 bytes")]
    TooShort,
}

/// Why a token is refused. The messages never contain the token or a claim value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header and claims.
    #[error("malformed token")]
    Malformed,
    /// No key is configured for the header's `alg`.
    #[error("no key for algorithm {0:?}")]
    NoKey(Algorithm),
    /// No key verifies the signature.
    #[error("the signature does not verify")]
    Signature,
    /// The token's `kid` is not in the key set, even after reading it again.
    #[error("unknown key id (kid) {0:?}")]
    UnknownKeyId(String),
    /// The key set binds the token's `kid` to another algorithm.
    #[error("the token's alg does not match its key")]
    KeyAlgorithm,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// `iss` is not an accepted issuer.
    #[error("the token's issuer (iss) is not accepted")]
    Issuer,
    /// `aud` names no accepted audience.
    #[error("the token's audience (aud) is not accepted")]
    Audience,
    /// A required claim is absent.
    #[error("the token has no `{0}` claim")]
    MissingClaim(String),
    /// A claim has the wrong type.
    #[error("the token's `{0}` claim has the wrong type")]
    ClaimFormat(String),
}

impl From<jsonwebtoken::errors::Error> for TokenError {
    fn from(error: jsonwebtoken::errors::Error) -> Self {
        match error.into_kind() {
            ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Self::Signature,
            ErrorKind::ExpiredSignature => Self::Expired,
            ErrorKind::ImmatureSignature => Self::NotYetValid,
            ErrorKind::InvalidIssuer => Self::Issuer,
            ErrorKind::InvalidAudience => Self::Audience,
            ErrorKind::MissingRequiredClaim(claim) => Self::MissingClaim(claim),
            ErrorKind::InvalidClaimFormat(claim) => Self::ClaimFormat(claim),
            _ => Self::Malformed,
        }
    }
}

/// Every algorithm a token may name.
const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// Verification keys: configured ones by algorithm, and a JWKS by key id, with the claim
/// checks.
pub struct KeySet {
    keys: HashMap<Algorithm, Vec<DecodingKey>>,
    validation: HashMap<Algorithm, Validation>,
    jwks: Option<Arc<Jwks>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("algorithms", &self.keys.keys().collect::<Vec<_>>())
            .field("jwks", &self.jwks)
            .finish_non_exhaustive()
    }
}

impl KeySet {
    /// Loads every key of `rules`, starts their JWKS if set, and prepares their claim
    /// checks (`exp` is required); `section` names them in errors (`auth.jwt`).
    pub fn load(section: &'static str, rules: &JwtRules) -> Result<Self, JwtError> {
        let mut loaded: HashMap<Algorithm, Vec<DecodingKey>> = HashMap::new();
        for key in &rules.keys {
            let algorithm =
                Algorithm::from_str(&key.algorithm).map_err(|_| JwtError::Algorithm {
                    section,
                    algorithm: key.algorithm.clone(),
                })?;
            loaded
                .entry(algorithm)
                .or_default()
                .push(load_key(section, algorithm, key)?);
        }
        let jwks = rules
            .jwks
            .is_set()
            .then(|| Jwks::start(section, &rules.jwks))
            .transpose()
            .map_err(|error| JwtError::Jwks { section, error })?;
        Ok(Self {
            keys: loaded,
            validation: ALGORITHMS
                .into_iter()
                .map(|a| (a, validation_for(a, rules)))
                .collect(),
            jwks,
        })
    }

    /// Verifies `token` and returns its claims. A token with a `kid` is checked with that
    /// key of the JWKS (read again once if unknown); others, and those whose `kid` is in no
    /// set, with the configured keys of their `alg`.
    pub async fn decode(&self, token: &str) -> Result<serde_json::Map<String, Value>, TokenError> {
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        let validation = self
            .validation
            .get(&header.alg)
            .ok_or(TokenError::NoKey(header.alg))?;
        let static_keys = self.keys.get(&header.alg);
        if let (Some(jwks), Some(kid)) = (&self.jwks, &header.kid) {
            match jwks.key(kid).await {
                Ok(key) => {
                    if key.algorithm.is_some_and(|a| a != header.alg) {
                        return Err(TokenError::KeyAlgorithm);
                    }
                    return decode::<serde_json::Map<String, Value>>(token, &key.key, validation)
                        .map(|data| data.claims)
                        .map_err(TokenError::from);
                }
                // Issuers of the configured keys may put a `kid` in their headers too.
                Err(unknown) if static_keys.is_none() => return Err(unknown),
                Err(_) => {}
            }
        }
        let Some(keys) = static_keys else {
            return Err(TokenError::NoKey(header.alg));
        };
        let mut last_error = TokenError::Signature;
        for key in keys {
            match decode::<serde_json::Map<String, Value>>(token, key, validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last_error = e.into(),
            }
        }
        Err(last_error)
    }
}

/// Verifies tokens with the configured keys.
#[derive(Debug)]
pub struct JwtVerifier {
    keys: KeySet,
    query_param: String,
    rooms_claim: String,
}

impl JwtVerifier {
    /// Loads every key.
    pub fn from_config(config: &JwtConfig) -> Result<Self, JwtError> {
        Ok(Self {
            keys: KeySet::load("auth.jwt", &config.rules)?,
            query_param: config.query_param.clone(),
            rooms_claim: config.rooms_claim.clone(),
        })
    }

    pub(super) async fn authenticate(&self, handshake: &Handshake<'_>) -> Outcome {
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
        match self.verify(&token).await {
            Ok(identity) => Outcome::Allow(identity),
            Err(reason) => Outcome::Deny(reason.to_string()),
        }
    }

    /// Verifies a token and reads the identity from its claims.
    pub async fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        self.keys
            .decode(token)
            .await
            .map(|claims| self.identity(&claims))
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
            expires_at: claims.get("exp").and_then(Value::as_u64),
            user_id: claims
                .get("sub")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            room_patterns,
        }
    }
}

fn validation_for(algorithm: Algorithm, rules: &JwtRules) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = rules.leeway_secs;
    validation.validate_nbf = true;
    if rules.issuers.is_empty() {
        validation.iss = None;
    } else {
        validation.set_issuer(&rules.issuers);
    }
    if rules.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        validation.set_audience(&rules.audiences);
    }
    validation
}

/// Whether `algorithm` is an HMAC one (a shared secret).
pub fn is_hmac(algorithm: Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    )
}

/// The HMAC secret of `key`, from its file (trailing newline ignored) or its variable.
pub fn hmac_secret(key: &JwtKeyConfig) -> Result<String, SecretError> {
    let secret = match (&key.secret_file, &key.secret_env) {
        (Some(path), None) => fs::read_to_string(path)
            .map_err(|error| SecretError::File {
                path: path.clone(),
                error,
            })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        (None, Some(var)) => std::env::var(var).map_err(|_| SecretError::Env(var.clone()))?,
        _ => return Err(SecretError::Source),
    };
    if secret.len() < 16 {
        return Err(SecretError::TooShort);
    }
    Ok(secret)
}

fn load_key(
    section: &'static str,
    algorithm: Algorithm,
    key: &JwtKeyConfig,
) -> Result<DecodingKey, JwtError> {
    let fail = |message: String| JwtError::Key {
        section,
        algorithm: key.algorithm.clone(),
        message,
    };
    if is_hmac(algorithm) {
        let secret = hmac_secret(key).map_err(|error| JwtError::Secret {
            section,
            algorithm: key.algorithm.clone(),
            error,
        })?;
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
            rules: JwtRules {
                keys: vec![JwtKeyConfig {
                    algorithm: "HS256".into(),
                    secret_file: Some(path),
                    secret_env: None,
                    public_key_file: None,
                }],
                issuers: issuers.iter().map(|s| s.to_string()).collect(),
                ..JwtRules::default()
            },
            ..JwtConfig::default()
        })
        .unwrap()
    }

    fn exp_in(secs: i64) -> i64 {
        jsonwebtoken::get_current_timestamp() as i64 + secs
    }

    #[tokio::test]
    async fn valid_token_gives_user_and_rooms() {
        let v = file_verifier(&[]);
        let id = v
            .verify(&token(
                json!({"sub": "u1", "exp": exp_in(60), "rooms": ["chat:*"]}),
            ))
            .await
            .unwrap();
        assert_eq!(id.user_id.as_deref(), Some("u1"));
        assert_eq!(id.room_patterns, vec!["chat:*"]);
    }

    fn testdata(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/auth/testdata")
            .join(name)
    }

    #[tokio::test]
    async fn public_keys_verify_rsa_ec_and_ed25519_tokens() {
        let key = |algorithm: &str, public: &str| JwtKeyConfig {
            algorithm: algorithm.into(),
            secret_file: None,
            secret_env: None,
            public_key_file: Some(testdata(public)),
        };
        let verifier = JwtVerifier::from_config(&JwtConfig {
            rules: JwtRules {
                keys: vec![
                    key("RS256", "rsa-public.pem"),
                    key("ES256", "ec-public.pem"),
                    key("EdDSA", "ed-public.pem"),
                ],
                ..JwtRules::default()
            },
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
                .await
                .unwrap_or_else(|e| panic!("{algorithm:?}: {e}"));
            assert_eq!(identity.user_id.as_deref(), Some("pk-user"));
        }
        // A token whose algorithm has no configured key is refused.
        let other = EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let hs = encode(&Header::new(Algorithm::HS256), &claims, &other).unwrap();
        assert!(
            verifier
                .verify(&hs)
                .await
                .unwrap_err()
                .to_string()
                .contains("no key for algorithm")
        );
    }

    #[tokio::test]
    async fn unsigned_and_hostile_tokens_are_refused_without_a_crash() {
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
                v.verify(&format!("{header}.{claims}.")).await.is_err(),
                "unsigned token accepted"
            );
            assert!(
                v.verify(&format!("{header}.{claims}.{signature}"))
                    .await
                    .is_err()
            );
        }
        // {"alg":"HS384","typ":"JWT"}: a valid HS256 signature under another algorithm.
        let relabeled = format!("eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9.{claims}.{signature}");
        assert!(v.verify(&relabeled).await.is_err());
        // Claims nested past serde_json's recursion limit, and a megabyte of claims.
        let mut deep = json!([]);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let nested = token(json!({"sub": "u", "exp": exp_in(60), "x": deep}));
        assert!(v.verify(&nested).await.is_err());
        let huge = token(json!({"sub": "u", "exp": exp_in(60), "pad": "x".repeat(1 << 20)}));
        assert_eq!(v.verify(&huge).await.unwrap().user_id.as_deref(), Some("u"));
    }

    #[test]
    fn a_public_key_of_the_wrong_kind_is_a_config_error() {
        let config = JwtConfig {
            rules: JwtRules {
                keys: vec![JwtKeyConfig {
                    algorithm: "ES256".into(),
                    secret_file: None,
                    secret_env: None,
                    public_key_file: Some(testdata("rsa-public.pem")),
                }],
                ..JwtRules::default()
            },
            ..JwtConfig::default()
        };
        let err = JwtVerifier::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("ES256"), "{err}");
    }

    #[tokio::test]
    async fn expired_and_wrong_issuer_are_refused() {
        let v = file_verifier(&["me"]);
        let expired = v
            .verify(&token(
                json!({"sub": "u", "exp": exp_in(-3600), "iss": "me"}),
            ))
            .await;
        assert!(expired.unwrap_err().to_string().contains("xpired"));
        assert!(
            v.verify(&token(
                json!({"sub": "u", "exp": exp_in(60), "iss": "other"})
            ))
            .await
            .is_err()
        );
        assert!(v.verify("not.a.token").await.is_err());
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
    fn unreadable_secrets_are_explained() {
        let key =
            |secret_file: Option<std::path::PathBuf>, secret_env: Option<&str>| JwtKeyConfig {
                algorithm: "HS256".into(),
                secret_file,
                secret_env: secret_env.map(str::to_owned),
                public_key_file: None,
            };
        let error = |key: JwtKeyConfig| hmac_secret(&key).unwrap_err().to_string();
        assert_eq!(
            error(key(None, None)),
            "set exactly one of secret_file or secret_env"
        );
        assert_eq!(
            error(key(None, Some("SOCKGATE_UNIT_TEST_NEVER_SET"))),
            "environment variable SOCKGATE_UNIT_TEST_NEVER_SET is not set"
        );
        let missing = std::env::temp_dir().join("sockgate-unit-no-such-secret");
        assert!(
            error(key(Some(missing.clone()), None))
                .starts_with(&format!("cannot read secret_file {}: ", missing.display()))
        );
        let short =
            std::env::temp_dir().join(format!("sockgate-unit-short-secret-{}", std::process::id()));
        fs::write(&short, "too-short\n").unwrap();
        assert_eq!(
            error(key(Some(short.clone()), None)),
            "the secret is shorter than 16 bytes"
        );
        let config = JwtConfig {
            rules: JwtRules {
                keys: vec![key(Some(short), None)],
                ..JwtRules::default()
            },
            ..JwtConfig::default()
        };
        assert_eq!(
            JwtVerifier::from_config(&config).unwrap_err().to_string(),
            "auth.jwt.keys (HS256): the secret is shorter than 16 bytes"
        );
    }

    #[test]
    fn short_secret_and_unknown_algorithm_are_config_errors() {
        let mut config = JwtConfig::default();
        config.rules.keys.push(JwtKeyConfig {
            algorithm: "HS999".into(),
            secret_file: None,
            secret_env: None,
            public_key_file: None,
        });
        assert!(matches!(
            JwtVerifier::from_config(&config),
            Err(JwtError::Algorithm { .. })
        ));
    }
}
