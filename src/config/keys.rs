//! Every unknown key at once. serde's `deny_unknown_fields` stops at the
//! first unknown key; when the file does not parse because of one, the
//! text is read again as a plain TOML table, every key that no section
//! knows is reported with its path (`sip.domian`, `agents[3].pasword`),
//! and the rest is deserialized and validated, so that `facd check-config`
//! lists the unknown keys together with every other problem.
//!
//! The known keys are taken from the serde types themselves (the field
//! list each struct hands its deserializer), so they cannot drift from the
//! structs.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::{Table, Value};

use super::{
    err, AgentConfig, ApiUserConfig, AuthConfig, CodesConfig, Config, ConfigError, ConfigErrors,
    HttpConfig, LimitsConfig, LogConfig, QueueConfig, ReasonConfig, SipConfig, StorageConfig,
    SubscribeConfig, TrustedProxyConfig,
};

/// The field names a serde struct asks for.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut found = None;
    let _ = T::deserialize(Probe(&mut found));
    found.unwrap_or(&[])
}

/// A deserializer that only records the field list it is shown.
struct Probe<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Self
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The known keys of each top-level section, and whether it is an array
/// of tables.
fn section(name: &str) -> Option<(&'static [&'static str], bool)> {
    Some(match name {
        "sip" => (fields::<SipConfig>(), false),
        "auth" => (fields::<AuthConfig>(), false),
        "codes" => (fields::<CodesConfig>(), false),
        "storage" => (fields::<StorageConfig>(), false),
        "limits" => (fields::<LimitsConfig>(), false),
        "subscribe" => (fields::<SubscribeConfig>(), false),
        "http" => (fields::<HttpConfig>(), false),
        "log" => (fields::<LogConfig>(), false),
        "reasons" => (fields::<ReasonConfig>(), true),
        "api_users" => (fields::<ApiUserConfig>(), true),
        "queues" => (fields::<QueueConfig>(), true),
        "agents" => (fields::<AgentConfig>(), true),
        "trusted_proxies" => (fields::<TrustedProxyConfig>(), true),
        _ => return None,
    })
}

fn unknown(key: String, known: &[&str]) -> ConfigError {
    err(
        key,
        format!("unknown key (known here: {})", known.join(", ")),
    )
}

/// Takes every unknown key out of `table`, reporting each.
fn strip_unknown(table: &mut Table) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let top = fields::<Config>();
    table.retain(|name, value| {
        let Some((known, array)) = section(name) else {
            problems.push(unknown(name.to_string(), top));
            return false;
        };
        let mut check = |prefix: String, t: &mut Table| {
            t.retain(|k, _| {
                let ok = known.contains(&k);
                if !ok {
                    problems.push(unknown(format!("{prefix}.{k}"), known));
                }
                ok
            });
        };
        match value {
            Value::Table(t) if !array => check(name.to_string(), t),
            Value::Array(items) if array => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let Value::Table(t) = item {
                        check(format!("{name}[{i}]"), t);
                    }
                }
            }
            _ => {}
        }
        true
    });
    problems
}

/// When `text` failed to deserialize: if it is TOML with unknown keys,
/// every unknown key and every other problem; else None (the first error
/// stands).
pub(super) fn all_problems(text: &str) -> Option<ConfigErrors> {
    let mut table: Table = text.parse().ok()?;
    let mut problems = strip_unknown(&mut table);
    if problems.is_empty() {
        return None;
    }
    match Config::deserialize(Value::Table(table)) {
        Ok(config) => problems.extend(config.check().1),
        Err(e) => problems.push(err("config", e.to_string().trim().to_string())),
    }
    Some(ConfigErrors(problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_come_from_the_structs() {
        assert!(fields::<SipConfig>().contains(&"listen"));
        assert!(fields::<LimitsConfig>().contains(&"exempt_loopback"));
        assert!(fields::<Config>().contains(&"trusted_proxies"));
        assert!(fields::<AgentConfig>().contains(&"ha1_sha256"));
    }

    #[test]
    fn every_unknown_key_and_every_other_problem_at_once() {
        let text = r#"
[sip]
domian = "x"
t1_ms = 10
[limits]
request_per_sec = 5
[[queues]]
number = "8000"
name = "A"
colour = "red"
[[agents]]
extension = "1001"
name = "A"
pasword = "p"
queues = ["8000"]
[sipp]
x = 1
"#;
        let Err(ConfigErrors(e)) = Config::from_toml(text) else {
            panic!("accepted")
        };
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
        for k in [
            "sip.domian",
            "limits.request_per_sec",
            "queues[0].colour",
            "agents[0].pasword",
            "sipp",
            "sip.t1_ms",
            "agents[0].password",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        let domian = e.iter().find(|e| e.key == "sip.domian").unwrap();
        assert!(domian.message.contains("domain"), "{}", domian.message);
    }
}
