//! `sockgate config reference | check | print`: the configuration seen by an operator.

use std::process::ExitCode;

use figment::{
    Figment, Source,
    value::{Dict, Value},
};

use super::{Cli, Config, ConfigCommand, ConfigError, cli, reference};

/// Runs `sockgate config …`: what it prints goes to stdout, the problems it finds to
/// stderr (and the exit status is then 2).
pub fn run_config_command(cli: &Cli, command: &ConfigCommand) -> ExitCode {
    let result = match command {
        ConfigCommand::Reference { readme: None } => Ok(reference::markdown()),
        ConfigCommand::Reference { readme: Some(path) } => write_reference(path),
        ConfigCommand::Check => check(cli),
        ConfigCommand::Print => print(cli),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("{problems}");
            ExitCode::from(2)
        }
    }
}

/// Replaces the reference block of the README at `path`; prints nothing.
fn write_reference(path: &std::path::Path) -> Result<String, String> {
    let failed = |e: std::io::Error| format!("sockgate config: {}: {e}", path.display());
    let readme = std::fs::read_to_string(path).map_err(failed)?;
    let updated =
        reference::replace_in_readme(&readme, &reference::markdown()).ok_or_else(|| {
            format!(
                "sockgate config: {} has no {} … {} block",
                path.display(),
                reference::README_START,
                reference::README_END
            )
        })?;
    std::fs::write(path, updated).map_err(failed)?;
    Ok(String::new())
}

/// "ok", or every problem of the configuration the flags name, one a line: the ones that
/// stop it loading, or else the first of each section and those across sections.
fn check(cli: &Cli) -> Result<String, String> {
    let problems: Vec<String> = match Config::sources(cli) {
        Err(e) => vec![e.to_string()],
        Ok(sources) => match sources.extract::<Config>() {
            Err(errors) => errors
                .into_iter()
                .map(|e| ConfigError::Load(Box::new(e)).to_string())
                .collect(),
            Ok(config) => config.problems().iter().map(ToString::to_string).collect(),
        },
    };
    if problems.is_empty() {
        Ok("ok\n".into())
    } else {
        Err(problems.join("\n"))
    }
}

/// The effective configuration as TOML, secrets masked, each value followed by where it
/// came from.
fn print(cli: &Cli) -> Result<String, String> {
    let sources = Config::sources(cli).map_err(|e| e.to_string())?;
    let config: Config = sources.extract().map_err(|e| e.to_string())?;
    let Value::Dict(_, mut values) = Value::serialize(config).map_err(|e| e.to_string())? else {
        unreachable!("Config serializes to a table");
    };
    mask(&mut values);
    let mut out = String::new();
    write_table(&sources, "", &values, &mut out);
    Ok(out)
}

/// Writes the values of the table `path` (`""`: the top level) and then its sub-tables.
fn write_table(sources: &Figment, path: &str, table: &Dict, out: &mut String) {
    if !path.is_empty() {
        out.push_str(&format!("\n[{path}]\n"));
    }
    let key_of = |name: &str| match path {
        "" => name.to_owned(),
        _ => format!("{path}.{name}"),
    };
    for (name, value) in table.iter().filter(|(_, v)| !matches!(v, Value::Dict(..))) {
        let origin = origin(sources, &key_of(name));
        match reference::to_toml(value) {
            Some(toml) => out.push_str(&format!("{name} = {toml}  # {origin}\n")),
            None => out.push_str(&format!("# {name}: unset  # {origin}\n")),
        }
    }
    for (name, value) in table {
        if let Value::Dict(_, sub) = value {
            write_table(sources, &key_of(name), sub, out);
        }
    }
}

/// Where the value of `key` came from: default, file, environment (the variable) or flag.
fn origin(sources: &Figment, key: &str) -> String {
    let Some(metadata) = sources.find_metadata(key) else {
        return "default".into();
    };
    if metadata.name == cli::FLAGS {
        return "flag".into();
    }
    match &metadata.source {
        Some(Source::File(path)) => format!("file {}", path.display()),
        _ if metadata.name.contains("environment") => format!(
            "environment SOCKGATE_{}",
            key.replace('.', "__").to_ascii_uppercase()
        ),
        _ => "default".into(),
    }
}

/// What replaces a secret.
const MASK: &str = "****";

/// Masks the secrets of `table`: values of keys that name a secret (`password`, `secret`,
/// `token`, but not a `_file` or `_env` that says where one is) and the password of a
/// URL (`redis://user:password@host`).
fn mask(table: &mut Dict) {
    for (key, value) in table.iter_mut() {
        let names_secret = ["password", "secret", "token"]
            .iter()
            .any(|word| key.contains(word))
            && !key.ends_with("_file")
            && !key.ends_with("_env");
        mask_value(value, names_secret);
    }
}

fn mask_value(value: &mut Value, secret: bool) {
    match value {
        Value::String(_, s) if secret && !s.is_empty() => *s = MASK.into(),
        Value::String(_, s) => *s = mask_url_password(s),
        Value::Array(_, items) => items.iter_mut().for_each(|v| mask_value(v, secret)),
        Value::Dict(_, dict) => mask(dict),
        _ => {}
    }
}

/// `url` with the password of its user info (`scheme://user:password@host`) masked.
fn mask_url_password(url: &str) -> String {
    let Some(authority_start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let Some(at) = url[authority_start..authority_end].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &url[authority_start..authority_start + at];
    match userinfo.split_once(':') {
        Some((user, _)) => format!(
            "{}{user}:{MASK}{}",
            &url[..authority_start],
            &url[authority_start + at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_masked() {
        for (url, masked) in [
            (
                "redis://:hunter2@redis:6379/0",
                "redis://:****@redis:6379/0",
            ),
            (
                "redis://app:hunter2@redis:6379",
                "redis://app:****@redis:6379",
            ),
            ("redis://app:p@ss@redis", "redis://app:****@redis"),
            ("redis://redis:6379", "redis://redis:6379"),
            ("redis://app@redis:6379", "redis://app@redis:6379"),
            (
                "https://issuer.example/a:b@c",
                "https://issuer.example/a:b@c",
            ),
            ("", ""),
        ] {
            assert_eq!(mask_url_password(url), masked, "{url}");
        }
    }

    #[test]
    fn secrets_are_masked_but_where_they_are_is_shown() {
        let mut config = Config::default();
        config.cluster.redis_url = "redis://app:hunter2@redis:6379".into();
        config.auth.jwt.rules.keys.push(super::super::JwtKeyConfig {
            algorithm: "HS256".into(),
            secret_file: Some("/run/secrets/jwt".into()),
            secret_env: Some("JWT_SECRET".into()),
            public_key_file: None,
        });
        let Value::Dict(_, mut values) = Value::serialize(config).unwrap() else {
            unreachable!()
        };
        values.insert("api_token".into(), Value::from("abc"));
        mask(&mut values);
        let text = to_string(&values);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redis://app:****@redis:6379"), "{text}");
        assert!(text.contains("/run/secrets/jwt"), "{text}");
        assert!(text.contains("JWT_SECRET"), "{text}");
        assert!(!text.contains("abc"), "{text}");
    }

    #[test]
    fn the_printed_configuration_reads_back_as_the_same() {
        use figment::providers::{Format, Serialized, Toml};
        let mut config = Config::default();
        config.edge.default_rooms = vec!["lobby \"quoted\" \\ room".into()];
        config.cluster.redis_command_timeout = Some(std::time::Duration::from_millis(1500));
        config.auth.jwt.rules.keys.push(super::super::JwtKeyConfig {
            algorithm: "HS256".into(),
            secret_file: None,
            secret_env: Some("JWT_SECRET".into()),
            public_key_file: None,
        });
        let Value::Dict(_, values) = Value::serialize(&config).unwrap() else {
            unreachable!()
        };
        let mut out = String::new();
        write_table(
            &Figment::from(Serialized::defaults(&config)),
            "",
            &values,
            &mut out,
        );
        assert!(
            out.contains("redis_command_timeout = \"1s 500ms\"  # default"),
            "{out}"
        );
        let read: Config = Figment::from(Toml::string(&out)).extract().unwrap();
        assert_eq!(
            to_string(&values),
            reference::to_toml(&Value::serialize(read).unwrap()).unwrap()
        );
    }

    fn to_string(values: &Dict) -> String {
        reference::to_toml(&Value::from(values.clone())).unwrap()
    }
}
