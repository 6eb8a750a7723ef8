//! The configuration reference (`sockgate config reference`, the README's table), made
//! from the configuration itself so that it cannot drift: each key and default from
//! `Config::default()` serialized, each meaning from the field's doc comment.
//!
//! The doc comments are read from this module's sources (compiled in with
//! `include_str!`): they are the one place a setting is described, for the code and for
//! the operator. A field whose type is a struct of these sources is a table, and its
//! fields are keys below it (`edge.limits.max_connections`); a `#[serde(flatten)]` field's
//! keys sit in its parent's table (`auth.jwt.keys`).

use std::collections::HashMap;

use figment::value::Value;

use super::Config;

/// The sources of the configuration's structs, in the order the reference lists them.
const SOURCES: [&str; 14] = [
    include_str!("mod.rs"),
    include_str!("edge.rs"),
    include_str!("limits.rs"),
    include_str!("tls.rs"),
    include_str!("control.rs"),
    include_str!("jwt.rs"),
    include_str!("auth.rs"),
    include_str!("rooms.rs"),
    include_str!("hooks.rs"),
    include_str!("watch.rs"),
    include_str!("recovery.rs"),
    include_str!("cluster.rs"),
    include_str!("admin.rs"),
    include_str!("log.rs"),
];

/// Where the reference sits in README.md.
pub const README_START: &str = "<!-- config-reference:start -->";
/// The end of the reference in README.md.
pub const README_END: &str = "<!-- config-reference:end -->";

/// One field of a configuration struct, as written in its source.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: String,
    doc: String,
    flatten: bool,
}

/// One row of the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The whole key, `section.key`.
    pub key: String,
    /// What kind of value it takes.
    pub kind: String,
    /// The default as TOML writes it; `None`: unset.
    pub default: Option<String>,
    /// The field's doc comment.
    pub doc: String,
}

/// Every setting, in the order of the structs' fields.
pub fn settings() -> Vec<Setting> {
    let structs = parse_structs();
    let defaults = Value::serialize(Config::default()).expect("Config serializes");
    let mut out = Vec::new();
    walk(&structs, "Config", "", Some(&defaults), &mut out);
    out
}

fn walk(
    structs: &HashMap<String, Vec<Field>>,
    name: &str,
    prefix: &str,
    defaults: Option<&Value>,
    out: &mut Vec<Setting>,
) {
    for field in &structs[name] {
        if field.flatten {
            walk(structs, &field.ty, prefix, defaults, out);
            continue;
        }
        let key = format!("{prefix}{}", field.name);
        let default = defaults.and_then(|d| d.find_ref(&field.name));
        if structs.contains_key(&field.ty) {
            walk(structs, &field.ty, &format!("{key}."), default, out);
            continue;
        }
        assert!(
            !matches!(default, Some(Value::Dict(..))),
            "{key} is a table of a struct that reference.rs's SOURCES does not include"
        );
        out.push(Setting {
            key,
            kind: kind_of(&field.ty),
            default: default.and_then(to_toml),
            doc: field.doc.clone(),
        });
    }
}

/// The structs with named fields of the sources, by name.
fn parse_structs() -> HashMap<String, Vec<Field>> {
    let mut structs = HashMap::new();
    for source in SOURCES {
        let mut lines = source.lines();
        while let Some(line) = lines.next() {
            let Some(name) = line
                .strip_prefix("pub struct ")
                .and_then(|rest| rest.strip_suffix(" {"))
            else {
                continue;
            };
            structs.insert(name.to_owned(), parse_fields(&mut lines));
        }
    }
    structs
}

/// The fields up to the struct's closing brace.
fn parse_fields<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Vec<Field> {
    let (mut fields, mut doc, mut flatten) = (Vec::new(), Vec::new(), false);
    for line in lines.by_ref() {
        let line = line.trim();
        if line == "}" {
            break;
        }
        if let Some(text) = line.strip_prefix("///") {
            doc.extend(
                Some(text.trim())
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            );
        } else if line.starts_with("#[") {
            flatten |= line.contains("flatten");
        } else if let Some((name, ty)) = line.strip_prefix("pub ").and_then(|f| f.split_once(": "))
        {
            fields.push(Field {
                name: name.to_owned(),
                ty: ty.trim_end_matches(',').to_owned(),
                doc: doc.join(" "),
                flatten,
            });
            (doc, flatten) = (Vec::new(), false);
        }
    }
    fields
}

/// What a Rust type takes in the file.
fn kind_of(ty: &str) -> String {
    let inner = ty
        .strip_prefix("Option<")
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(ty);
    let kind = match inner {
        "Duration" => "duration",
        "SocketAddr" => "address",
        "String" => "string",
        "PathBuf" => "path",
        "bool" => "boolean",
        "u32" | "u64" | "usize" => "integer",
        "Vec<JwtKeyConfig>" => "list of tables",
        // The other lists and types are of strings and enums, written as strings.
        list if list.starts_with("Vec<") => "list of strings",
        _ => "string",
    };
    kind.to_owned()
}

/// `value` as TOML writes it; `None` for an unset option.
pub(super) fn to_toml(value: &Value) -> Option<String> {
    Some(match value {
        Value::Empty(..) => return None,
        Value::String(_, s) => serde_json::to_string(s).expect("a string serializes"),
        Value::Char(_, c) => serde_json::to_string(&c.to_string()).expect("a string serializes"),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(..) => serde_json::to_string(value).expect("a number serializes"),
        Value::Array(_, items) => {
            let items: Vec<String> = items.iter().filter_map(to_toml).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Dict(_, dict) => {
            let entries: Vec<String> = dict
                .iter()
                .filter_map(|(k, v)| Some(format!("{k} = {}", to_toml(v)?)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
    })
}

/// The reference as a Markdown table.
pub fn markdown() -> String {
    let mut out = String::from("| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
    for setting in settings() {
        let default = setting
            .default
            .map_or_else(|| "unset".to_owned(), |d| format!("`{d}`"));
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            setting.key,
            setting.kind,
            default,
            setting.doc.replace('|', "\\|")
        ));
    }
    out
}

/// `readme` with its reference block replaced by `table`; `None` without the markers.
pub fn replace_in_readme(readme: &str, table: &str) -> Option<String> {
    let start = readme.find(README_START)? + README_START.len();
    let end = start + readme[start..].find(README_END)?;
    Some(format!("{}\n{table}{}", &readme[..start], &readme[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(key: &str) -> Setting {
        settings()
            .into_iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("{key} is in the reference"))
    }

    #[test]
    fn every_setting_has_its_key_default_and_doc() {
        let limit = find("edge.limits.max_connections");
        assert_eq!(limit.default.as_deref(), Some("100000"));
        assert_eq!(limit.kind, "integer");
        assert!(limit.doc.starts_with("Socket.IO connections of this node"));
        assert_eq!(
            find("edge.ping_interval").default.as_deref(),
            Some("\"25s\"")
        );
        assert_eq!(
            find("edge.transports").default.as_deref(),
            Some("[\"websocket\", \"polling\"]")
        );
        assert_eq!(find("cluster.redis_command_timeout").default, None);
        assert_eq!(find("control.tls.cert_file").kind, "path");
        for setting in settings() {
            assert!(!setting.doc.is_empty(), "{} has a doc comment", setting.key);
        }
    }

    /// The keys of `value`'s leaves, below `prefix`.
    fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Dict(_, dict) => {
                for (key, value) in dict {
                    leaves(&format!("{prefix}{key}."), value, out);
                }
            }
            _ => out.push(prefix.trim_end_matches('.').to_owned()),
        }
    }

    #[test]
    fn the_reference_has_every_key_of_the_configuration_once() {
        let mut expected = Vec::new();
        leaves(
            "",
            &Value::serialize(Config::default()).unwrap(),
            &mut expected,
        );
        expected.sort_unstable();
        let mut listed: Vec<String> = settings().into_iter().map(|s| s.key).collect();
        listed.sort_unstable();
        assert_eq!(listed, expected);
    }

    #[test]
    fn flattened_rules_are_keys_of_both_jwt_sections() {
        for section in ["auth.jwt", "control.auth"] {
            assert_eq!(
                find(&format!("{section}.leeway_secs")).default.as_deref(),
                Some("5")
            );
            assert_eq!(
                find(&format!("{section}.jwks.refresh_interval"))
                    .default
                    .as_deref(),
                Some("\"5m\"")
            );
        }
        assert!(settings().iter().all(|s| !s.key.contains("rules")));
    }

    #[test]
    fn the_table_escapes_pipes_and_the_readme_block_is_replaced() {
        let table = markdown();
        assert!(table.starts_with("| key | type | default | meaning |"));
        assert!(table.contains("| `node_id` | string | `\"\"` |"), "{table}");
        let readme = format!("intro\n{README_START}\nold\n{README_END}\nrest");
        assert_eq!(
            replace_in_readme(&readme, "new\n").unwrap(),
            format!("intro\n{README_START}\nnew\n{README_END}\nrest")
        );
        assert_eq!(replace_in_readme("no markers", "new"), None);
    }

    #[test]
    fn the_readme_reference_is_the_generated_one() {
        let readme = include_str!("../../../README.md");
        let expected = replace_in_readme(readme, &markdown()).expect("README has the markers");
        assert!(
            readme == expected,
            "README.md's configuration reference differs from the configuration's doc \
             comments and defaults; run `cargo run -p sockgate -- config reference --readme README.md` \
             to update it"
        );
    }
}
