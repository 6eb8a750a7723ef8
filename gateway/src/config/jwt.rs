//! What a JWT must pass, written once for the two sections that verify tokens: `auth.jwt`
//! (sockets) and `control.auth` (control-plane callers). Both hold these settings directly
//! under their own table (`[auth.jwt] keys = ...`, `[control.auth] keys = ...`), next to
//! keys of their own.

use std::{fmt, marker::PhantomData, path::PathBuf, time::Duration};

use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, DeserializeSeed, MapAccess, Visitor},
};

use super::ConfigError;

/// Verification keys and claim checks. A section holds them in its own table (see
/// [`JwtSection`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JwtRules {
    /// Verification keys (`{algorithm, secret_file | secret_env | public_key_file}`, see
    /// below); a token is checked with the keys of its `alg`.
    pub keys: Vec<JwtKeyConfig>,
    /// Accepted `iss` values; empty: not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty: not checked.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` / `nbf`, in seconds (`exp` is required).
    pub leeway_secs: u64,
    /// Keys published as a JSON Web Key Set, besides `keys`.
    pub jwks: JwksConfig,
}

impl Default for JwtRules {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway_secs: 5,
            jwks: JwksConfig::default(),
        }
    }
}

impl JwtRules {
    /// The keys of the rules in a section's table.
    const FIELDS: [&'static str; 5] = ["keys", "issuers", "audiences", "leeway_secs", "jwks"];

    /// Reads the value of `key` if it is one of the rules'.
    fn read<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<bool, A::Error> {
        match key {
            "keys" => self.keys = map.next_value()?,
            "issuers" => self.issuers = map.next_value()?,
            "audiences" => self.audiences = map.next_value()?,
            "leeway_secs" => self.leeway_secs = map.next_value()?,
            "jwks" => self.jwks = map.next_value()?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// True when there is something to verify a token with: a key or a JWKS.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty() || self.jwks.is_set()
    }

    /// Checks the rules of `section` (`auth.jwt`, `control.auth`), named in the errors.
    pub(super) fn validate(&self, section: &str) -> Result<(), ConfigError> {
        self.jwks.validate(&format!("{section}.jwks"))
    }
}

/// A section that holds [`JwtRules`] in its own table, next to keys of its own
/// (`auth.jwt`, `control.auth`). It serializes with the rules flattened
/// (`#[serde(flatten)]`) and deserializes with [`deserialize_section`]: key by key, so
/// that an error names the key it is about (`AUTH.JWT.LEEWAY_SECS`), which a flattened
/// `Deserialize` cannot do (serde buffers the table first).
pub(super) trait JwtSection: Default {
    /// The section's name in messages.
    const NAME: &'static str;
    /// Every key of the section, the rules' first (see [`section_fields`]).
    const FIELDS: &'static [&'static str];
    /// The rules.
    fn rules_mut(&mut self) -> &mut JwtRules;
    /// Reads the value of `key` if it is one of the section's own keys.
    fn read_own<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error>;
}

/// The keys of a [`JwtSection`]: the rules' and then `own`; `N` must be their number.
pub(super) const fn section_fields<const OWN: usize, const N: usize>(
    own: [&'static str; OWN],
) -> [&'static str; N] {
    assert!(N == JwtRules::FIELDS.len() + OWN, "N is the number of keys");
    let mut fields = [""; N];
    let mut i = 0;
    while i < N {
        fields[i] = if i < JwtRules::FIELDS.len() {
            JwtRules::FIELDS[i]
        } else {
            own[i - JwtRules::FIELDS.len()]
        };
        i += 1;
    }
    fields
}

/// Deserializes a [`JwtSection`]; keys it does not have keep their defaults, keys it does
/// not know are refused.
pub(super) fn deserialize_section<'de, D: Deserializer<'de>, S: JwtSection>(
    deserializer: D,
) -> Result<S, D::Error> {
    struct SectionVisitor<S>(PhantomData<S>);

    impl<'de, S: JwtSection> Visitor<'de> for SectionVisitor<S> {
        type Value = S;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "the {} table", S::NAME)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<S, A::Error> {
            let mut section = S::default();
            while let Some(key) = map.next_key_seed(KnownKey(S::FIELDS))? {
                if !section.rules_mut().read(&key, &mut map)?
                    && !section.read_own(&key, &mut map)?
                {
                    return Err(de::Error::unknown_field(&key, S::FIELDS));
                }
            }
            Ok(section)
        }
    }

    deserializer.deserialize_map(SectionVisitor(PhantomData))
}

/// A key of a section, refused while it is read if the section does not have it: the
/// error then names the key as a derived `deny_unknown_fields` does.
struct KnownKey(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for KnownKey {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        let key = String::deserialize(deserializer)?;
        if self.0.contains(&key.as_str()) {
            Ok(key)
        } else {
            Err(de::Error::unknown_field(&key, self.0))
        }
    }
}

/// One JWT verification key. HMAC keys come from `secret_file` or `secret_env`; public
/// keys (RSA, EC, Ed25519) from a PEM `public_key_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// `HS256`, `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`,
    /// `ES256`, `ES384` or `EdDSA`.
    pub algorithm: String,
    /// File holding the HMAC secret (trailing newline ignored).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Environment variable holding the HMAC secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// PEM file holding the public key.
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
}

/// A JSON Web Key Set: verification keys an issuer publishes, selected by the token's
/// `kid`, refreshed without a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwksConfig {
    /// `https://` or `http://` URL of the JWKS document; empty: none. Tokens with a `kid`
    /// are checked with that key.
    pub url: String,
    /// A JWKS file instead of a URL.
    pub file: Option<PathBuf>,
    /// How often the set is read again; 0: only when a token names an unknown `kid`.
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Least time between two reads caused by unknown `kid`s.
    #[serde(with = "humantime_serde")]
    pub min_refresh_interval: Duration,
    /// Deadline of one fetch.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM CA bundle for an `https://` URL; unset: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            file: None,
            refresh_interval: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }
}

impl JwksConfig {
    /// True when a set is configured.
    pub fn is_set(&self) -> bool {
        !self.url.is_empty() || self.file.is_some()
    }

    fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(format!("{section}: {msg}")));
        if !self.url.is_empty() && self.file.is_some() {
            return invalid("set url or file, not both".into());
        }
        let is_url = self.url.starts_with("https://") || self.url.starts_with("http://");
        if !self.url.is_empty() && !is_url {
            return invalid(format!(
                "url must be http:// or https://, got {:?}",
                self.url
            ));
        }
        if self.timeout.is_zero() {
            return invalid("timeout must be more than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::{
        Figment,
        providers::{Format, Serialized, Toml},
    };

    use super::*;
    use crate::config::Config;

    fn load(toml: &str) -> Result<Config, String> {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn both_sections_read_the_same_keys_with_the_same_defaults() {
        let defaults = Config::default();
        assert_eq!(defaults.auth.jwt.rules, JwtRules::default());
        assert_eq!(defaults.control.auth.rules, JwtRules::default());
        assert_eq!(JwtRules::default().leeway_secs, 5);
        let rules = r#"
keys = [{ algorithm = "HS256", secret_env = "SECRET" }]
issuers = ["issuer"]
audiences = ["audience"]
leeway_secs = 30
jwks = { url = "https://issuer.example/jwks.json", timeout = "2s" }
"#;
        let config = load(&format!(
            "[auth.jwt]\n{rules}\nquery_param = \"t\"\n[control.auth]\n{rules}\nscope_claim = \"scp\""
        ))
        .unwrap();
        let expected = JwtRules {
            keys: vec![JwtKeyConfig {
                algorithm: "HS256".into(),
                secret_file: None,
                secret_env: Some("SECRET".into()),
                public_key_file: None,
            }],
            issuers: vec!["issuer".into()],
            audiences: vec!["audience".into()],
            leeway_secs: 30,
            jwks: JwksConfig {
                url: "https://issuer.example/jwks.json".into(),
                timeout: Duration::from_secs(2),
                ..JwksConfig::default()
            },
        };
        assert_eq!(config.auth.jwt.rules, expected);
        assert_eq!(config.control.auth.rules, expected);
        assert_eq!(config.auth.jwt.query_param, "t");
        assert_eq!(config.auth.jwt.rooms_claim, "rooms");
        assert_eq!(config.control.auth.scope_claim, "scp");
    }

    #[test]
    fn a_misspelled_key_of_either_section_is_refused_by_name() {
        for (section, key) in [
            ("auth.jwt", "issuer"),
            ("control.auth", "leeway"),
            ("auth.jwt", "scope_claim"),
            ("control.auth", "rooms_claim"),
        ] {
            let err = load(&format!("[{section}]\n{key} = 1")).unwrap_err();
            assert!(
                err.contains(&format!("unknown field: found `{key}`")),
                "{err}"
            );
            assert!(err.contains("expected `one of `keys`, `issuers`"), "{err}");
            assert!(
                err.contains(&format!("for key \"default.{section}.{key}\"")),
                "{err}"
            );
        }
        let err = load("[control.auth.jwks]\nurl = \"https://x\"\nrefresh = \"1s\"").unwrap_err();
        assert!(err.contains("found `refresh`"), "{err}");
    }

    #[test]
    fn a_wrong_value_is_reported_with_its_whole_key() {
        for section in ["auth.jwt", "control.auth"] {
            let err = load(&format!("[{section}]\nleeway_secs = \"soon\"")).unwrap_err();
            assert!(
                err.contains(&format!("\"default.{section}.leeway_secs\"")),
                "{err}"
            );
            let err = load(&format!("[{section}.jwks]\ntimeout = \"soon\"")).unwrap_err();
            assert!(
                err.contains(&format!("\"default.{section}.jwks.timeout\"")),
                "{err}"
            );
            let err = load(&format!("[[{section}.keys]]\nalgorithm = 256")).unwrap_err();
            assert!(
                err.contains(&format!("\"default.{section}.keys.0.algorithm\"")),
                "{err}"
            );
        }
        let err = load("[control.auth]\nreflection = \"closed\"").unwrap_err();
        assert!(err.contains("\"default.control.auth.reflection\""), "{err}");
    }

    /// The rules of `section` in `config`.
    fn rules_of<'a>(config: &'a mut Config, section: &str) -> &'a mut JwtRules {
        match section {
            "auth.jwt" => &mut config.auth.jwt.rules,
            _ => &mut config.control.auth.rules,
        }
    }

    #[test]
    fn both_sections_check_their_jwks_under_their_own_name() {
        for section in ["auth.jwt", "control.auth"] {
            let check = |edit: &dyn Fn(&mut JwksConfig)| {
                let mut config = Config::default();
                edit(&mut rules_of(&mut config, section).jwks);
                config.validate().unwrap_err().to_string()
            };
            let err = check(&|jwks| jwks.url = "ftp://issuer.example/jwks".into());
            assert!(
                err.contains(&format!("{section}.jwks: url must be")),
                "{err}"
            );
            let err = check(&|jwks| {
                jwks.url = "https://issuer.example/jwks".into();
                jwks.file = Some("jwks.json".into());
            });
            assert!(
                err.contains(&format!("{section}.jwks: set url or file")),
                "{err}"
            );
            let err = check(&|jwks| jwks.timeout = Duration::ZERO);
            assert!(err.contains(&format!("{section}.jwks: timeout")), "{err}");
        }
    }

    #[test]
    fn a_jwks_alone_counts_as_keys() {
        let mut rules = JwtRules::default();
        assert!(!rules.has_keys());
        rules.jwks.file = Some("jwks.json".into());
        assert!(rules.has_keys());
        let mut rules = JwtRules::default();
        rules.keys.push(JwtKeyConfig {
            algorithm: "HS256".into(),
            secret_file: None,
            secret_env: Some("SECRET".into()),
            public_key_file: None,
        });
        assert!(rules.has_keys());
    }
}
