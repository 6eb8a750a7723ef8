//! The `SOCKGATE_*` environment variables. The gateway and `sockctl` share the prefix, so
//! one shell or one container may hold the variables of both. The gateway reads its
//! settings, `SOCKGATE_<SECTION>__<KEY>` (`SOCKGATE_EDGE__LISTEN`) and `SOCKGATE_<KEY>` for
//! the settings outside any section (`SOCKGATE_NODE_ID`), ignores `sockctl`'s variables,
//! and refuses any other `SOCKGATE_*` variable by name: a misspelled setting would
//! otherwise be ignored without a word, as a misspelled key in the file is not.

use std::fmt;

use figment::{
    providers::Env,
    value::{Uncased, Value},
};

use super::{Config, ConfigError};

/// Prefix of every variable of the gateway and of `sockctl`.
const PREFIX: &str = "SOCKGATE_";

/// The configuration file (the `--config` flag).
pub(super) const CONFIG_FILE: &str = "SOCKGATE_CONFIG";

/// `sockctl`'s variables, one per flag of its connection options (`sockctl --help` shows
/// them; the operations tests start the gateway with every one of them set).
pub(super) const SOCKCTL: [&str; 9] = [
    "SOCKGATE_ADDR",
    "SOCKGATE_TOKEN",
    "SOCKGATE_TOKEN_FILE",
    "SOCKGATE_CA",
    "SOCKGATE_CERT",
    "SOCKGATE_KEY",
    "SOCKGATE_TLS",
    "SOCKGATE_TLS_DOMAIN",
    "SOCKGATE_TIMEOUT",
];

/// The top-level keys of the settings: the sections (tables) and the settings outside
/// any section, both in lowercase.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    sections: Vec<String>,
    settings: Vec<String>,
}

/// What a variable is to the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not `SOCKGATE_*`.
    Other,
    /// A setting (which the file's rules then check key by key).
    Setting,
    /// Read by the `--config` flag.
    ConfigFile,
    /// `sockctl`'s.
    Sockctl,
    /// None of those: a mistake.
    Unknown,
}

impl Keys {
    /// The keys of `Config`, read from its serialized defaults so that a new section is
    /// known here without a list to keep in step.
    pub(super) fn of_config() -> Keys {
        let Ok(Value::Dict(_, keys)) = Value::serialize(Config::default()) else {
            unreachable!("Config serializes to a table");
        };
        let (mut sections, mut settings): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for (key, value) in keys {
            match value {
                Value::Dict(..) => sections.push(key),
                _ => settings.push(key),
            }
        }
        sections.sort_unstable();
        settings.sort_unstable();
        Keys { sections, settings }
    }

    fn kind(&self, name: &str) -> Kind {
        let Some(rest) = name
            .get(..PREFIX.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(PREFIX))
            .map(|_| &name[PREFIX.len()..])
        else {
            return Kind::Other;
        };
        let upper = name.to_ascii_uppercase();
        if upper == CONFIG_FILE {
            return Kind::ConfigFile;
        }
        if SOCKCTL.contains(&upper.as_str()) {
            return Kind::Sockctl;
        }
        if self.is_setting(rest) {
            Kind::Setting
        } else {
            Kind::Unknown
        }
    }

    /// Whether `key` (the name after the prefix) names a setting: its first part is a
    /// section or a setting outside sections, and no part is empty.
    fn is_setting(&self, key: &str) -> bool {
        let mut parts = key.split("__");
        let first = parts.next().unwrap_or_default().to_ascii_lowercase();
        let known = self.sections.contains(&first) || self.settings.contains(&first);
        known && !first.is_empty() && parts.all(|part| !part.is_empty())
    }

    /// The settings among the variables, after checking that every `SOCKGATE_*` variable
    /// of `names` is a setting, `SOCKGATE_CONFIG` or `sockctl`'s.
    pub(super) fn provider(
        self,
        names: impl IntoIterator<Item = String>,
    ) -> Result<Env, ConfigError> {
        let mut unknown: Vec<String> = names
            .into_iter()
            .filter(|name| self.kind(name) == Kind::Unknown)
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(ConfigError::UnknownVariables(UnknownVariables {
                names: unknown,
                keys: self,
            }));
        }
        Ok(Env::prefixed(PREFIX)
            .filter(move |rest| self.is_setting(rest.as_str()))
            .split("__")
            .map(|key| Uncased::from(key.as_str().to_ascii_lowercase())))
    }
}

/// `SOCKGATE_*` variables that are neither settings, nor `SOCKGATE_CONFIG`, nor
/// `sockctl`'s.
#[derive(Debug)]
pub struct UnknownVariables {
    /// The variables.
    pub names: Vec<String>,
    keys: Keys,
}

impl fmt::Display for UnknownVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let upper = |keys: &[String], prefix: &str| -> String {
            let keys: Vec<String> = keys
                .iter()
                .map(|key| format!("{prefix}{}", key.to_ascii_uppercase()))
                .collect();
            keys.join(", ")
        };
        let (names, is, it) = match self.names.as_slice() {
            [one] => (
                format!("environment variable {one}"),
                "is not a setting",
                "it",
            ),
            many => (
                format!("environment variables {}", many.join(", ")),
                "are not settings",
                "them",
            ),
        };
        write!(
            f,
            "the {names} {is} of the gateway. Its settings are {PREFIX}<SECTION>__<KEY> \
             with a SECTION of {} (e.g. {PREFIX}EDGE__LISTEN), and {}; {CONFIG_FILE} names \
             the configuration file, and sockctl's {} are ignored. Rename or unset {it}.",
            upper(&self.keys.sections, ""),
            upper(&self.keys.settings, PREFIX),
            SOCKCTL.join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn the_keys_are_those_of_the_config() {
        let keys = Keys::of_config();
        assert_eq!(
            keys.sections,
            [
                "admin", "auth", "cluster", "control", "edge", "hooks", "log", "recovery", "rooms",
                "watch"
            ]
        );
        assert_eq!(
            keys.settings,
            ["node_id", "shutdown_delay", "shutdown_timeout"]
        );
    }

    #[test]
    fn settings_the_file_sockctl_and_other_programs_variables_are_accepted() {
        let keys = Keys::of_config();
        for (name, kind) in [
            ("SOCKGATE_EDGE__LISTEN", Kind::Setting),
            ("SOCKGATE_CONTROL__AUTH__KEYS", Kind::Setting),
            ("SOCKGATE_NODE_ID", Kind::Setting),
            ("SOCKGATE_SHUTDOWN_TIMEOUT", Kind::Setting),
            ("sockgate_log__level", Kind::Setting),
            ("SOCKGATE_CONFIG", Kind::ConfigFile),
            ("SOCKGATE_ADDR", Kind::Sockctl),
            ("SOCKGATE_TOKEN", Kind::Sockctl),
            ("SOCKGATE_TLS_DOMAIN", Kind::Sockctl),
            ("PATH", Kind::Other),
            ("SOCKGATEWAY", Kind::Other),
        ] {
            assert_eq!(keys.kind(name), kind, "{name}");
        }
        keys.provider(names(&[
            "SOCKGATE_EDGE__LISTEN",
            "SOCKGATE_CONFIG",
            "SOCKGATE_TOKEN",
            "SOCKGATE_ADDR",
            "HOME",
        ]))
        .unwrap();
    }

    #[test]
    fn sockctl_variables_are_not_settings() {
        let keys = Keys::of_config();
        for name in SOCKCTL {
            assert!(!keys.is_setting(&name[PREFIX.len()..]), "{name}");
        }
        assert!(!keys.is_setting(&CONFIG_FILE[PREFIX.len()..]));
    }

    #[test]
    fn any_other_sockgate_variable_is_refused_by_name() {
        let keys = Keys::of_config();
        for name in [
            "SOCKGATE_EGDE__LISTEN",
            "SOCKGATE_LISTEN",
            "SOCKGATE_",
            "SOCKGATE_EDGE__",
            "SOCKGATE_EDGE____LISTEN",
            "SOCKGATE_ADDRESS",
        ] {
            assert_eq!(keys.kind(name), Kind::Unknown, "{name}");
        }
        let err = Keys::of_config()
            .provider(names(&["SOCKGATE_TOKEN", "SOCKGATE_EGDE__LISTEN", "PATH"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("variable SOCKGATE_EGDE__LISTEN is not a setting of the gateway"),
            "{err}"
        );
        assert!(
            err.contains(
                "SECTION of ADMIN, AUTH, CLUSTER, CONTROL, EDGE, HOOKS, LOG, RECOVERY, ROOMS"
            ),
            "{err}"
        );
        assert!(
            err.contains("and SOCKGATE_NODE_ID, SOCKGATE_SHUTDOWN_DELAY"),
            "{err}"
        );
        assert!(
            err.contains("sockctl's SOCKGATE_ADDR, SOCKGATE_TOKEN"),
            "{err}"
        );
        let both = Keys::of_config()
            .provider(names(&["SOCKGATE_B", "SOCKGATE_A"]))
            .unwrap_err()
            .to_string();
        assert!(
            both.contains("variables SOCKGATE_A, SOCKGATE_B are not settings"),
            "{both}"
        );
    }
}
