//! `[[agents]]` sections in their plain shape, read without the toml crate.
//!
//! A million agents are 80 MB of TOML, and toml takes about 3 s of CPU to
//! parse them (it builds a token, an event and a tree node for everything,
//! [`super::split`]). Nearly every agent's section is written the same
//! plain way (the shipped `config.toml`, the benchmark's generated files):
//!
//! ```toml
//! [[agents]]
//! extension = "1001"
//! name = "Alice"
//! password = "secret"   # or ha1 / ha1_sha256
//! queues = ["8000", "8001"]
//! ```
//!
//! [`agents`] reads a run of such sections in one pass and gives up (None)
//! at the first thing outside that shape: then the caller hands the slice
//! to toml, which parses it or reports the error. The shape is a strict
//! subset of TOML on which toml's answer is obvious, so for every text this
//! accepts, toml gives the same agents (the tests check that against toml
//! itself, on generated texts):
//! - lines end in `\n` or `\r\n`; a line is blank, a comment, the header
//!   `[[agents]]` (alone at the start of its line), or `key = value`, each
//!   optionally indented with spaces or tabs and followed by a comment;
//! - a key is bare, one of [`AgentConfig`]'s fields, at most once per
//!   section; `extension` and `name` are required (toml: "missing field");
//! - `queues` is a one-line array of strings, every other value a string;
//! - a string is `"…"` with no escape, no quote and no control character
//!   but tab inside (so its text is exactly what is between the quotes);
//! - a comment holds no control character but tab.

use super::AgentConfig;

/// The agents of `text`, a run of plain `[[agents]]` sections (see the
/// module documentation), or None if anything in it is not plain.
pub(super) fn agents(text: &str) -> Option<Vec<AgentConfig>> {
    let mut out = Vec::new();
    let mut current: Option<Section> = None;
    for line in text.split_inclusive('\n') {
        let line = line
            .strip_suffix('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .unwrap_or(line);
        if line == HEADER || line.strip_prefix(HEADER).is_some_and(trailer) {
            if let Some(s) = current.take() {
                out.push(s.done()?);
            }
            current = Some(Section::default());
            continue;
        }
        let body = line.trim_start_matches([' ', '\t']);
        if trailer(body) {
            continue; // blank or a comment
        }
        // Nothing may come before the first header.
        current.as_mut()?.key_value(body)?;
    }
    // No section at all: toml says the `agents` field is missing.
    out.push(current?.done()?);
    Some(out)
}

const HEADER: &str = "[[agents]]";

/// One agent's keys so far.
#[derive(Default)]
struct Section {
    extension: Option<String>,
    name: Option<String>,
    password: Option<String>,
    ha1: Option<String>,
    ha1_sha256: Option<String>,
    queues: Option<Vec<String>>,
}

impl Section {
    /// Reads `key = value` (and what may follow it) into the section.
    fn key_value(&mut self, line: &str) -> Option<()> {
        let (key, rest) = line.split_once('=')?;
        let key = key.trim_end_matches([' ', '\t']);
        let value = rest.trim_start_matches([' ', '\t']);
        let slot = match key {
            "extension" => &mut self.extension,
            "name" => &mut self.name,
            "password" => &mut self.password,
            "ha1" => &mut self.ha1,
            "ha1_sha256" => &mut self.ha1_sha256,
            "queues" => {
                if self.queues.is_some() {
                    return None;
                }
                let (list, rest) = array(value)?;
                trailer(rest).then_some(())?;
                self.queues = Some(list);
                return Some(());
            }
            _ => return None,
        };
        if slot.is_some() {
            return None;
        }
        let (s, rest) = string(value)?;
        trailer(rest).then_some(())?;
        *slot = Some(s.to_owned());
        Some(())
    }

    fn done(self) -> Option<AgentConfig> {
        Some(AgentConfig {
            extension: self.extension?,
            name: self.name?,
            password: self.password,
            ha1: self.ha1,
            ha1_sha256: self.ha1_sha256,
            queues: self.queues.unwrap_or_default(),
        })
    }
}

/// Whether `s` is nothing, whitespace, or whitespace and a comment.
fn trailer(s: &str) -> bool {
    let s = s.trim_start_matches([' ', '\t']);
    s.is_empty() || (s.starts_with('#') && s.bytes().all(plain_byte))
}

/// A byte that may stand in a plain string or comment: no control
/// character but tab (TOML forbids the others there).
fn plain_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// A plain `"…"` string at the start of `s`, and what follows it.
fn string(s: &str) -> Option<(&str, &str)> {
    let body = s.strip_prefix('"')?;
    let end = body.find('"')?;
    let text = &body[..end];
    text.bytes()
        .all(|b| plain_byte(b) && b != b'\\')
        .then_some((text, &body[end + 1..]))
}

/// A one-line array of plain strings at the start of `s` (`[]`, `["a"]`,
/// `[ "a", "b", ]`), and what follows it.
fn array(s: &str) -> Option<(Vec<String>, &str)> {
    let mut rest = s.strip_prefix('[')?;
    let mut list = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix(']') {
            return Some((list, after));
        }
        let (item, after) = string(rest)?;
        list.push(item.to_owned());
        rest = after.trim_start_matches([' ', '\t']);
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None => {
                let after = rest.strip_prefix(']')?;
                return Some((list, after));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Agents {
        agents: Vec<AgentConfig>,
    }

    /// Whatever the plain reader accepts, toml reads the same; returns
    /// whether it was accepted.
    fn same_as_toml(text: &str) -> bool {
        let Some(plain) = agents(text) else {
            return false;
        };
        match toml::from_str::<Agents>(text) {
            Ok(t) => assert_eq!(format!("{plain:?}"), format!("{:?}", t.agents), "{text:?}"),
            Err(e) => panic!("plain reads what toml refuses ({e}): {text:?}"),
        }
        true
    }

    #[test]
    fn the_plain_shape_reads_as_toml_does() {
        let text = "[[agents]]\nextension = \"1001\"\nname = \"Alice Smith\"\npassword = \"s3cr#t\"\nqueues = [\"8000\", \"8001\"]\n\n[[agents]] # two\r\n  extension=\"1002\" # c\r\n\tname = \"Bob\"\nqueues = []\nha1 = \"0123456789abcdef0123456789abcdef\"\n[[agents]]\nname = \"Ünïcode ☎\"\nextension = \"1003\"\nqueues = [ \"8000\" , ]";
        assert!(same_as_toml(text));
        let a = agents(text).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].password.as_deref(), Some("s3cr#t"));
        assert_eq!(a[0].queues, ["8000", "8001"]);
        assert_eq!(
            a[1].ha1.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!(a[2].name, "Ünïcode ☎");
        assert_eq!(a[2].queues, ["8000"]);
        assert!(agents("").is_none() && agents("# c\n").is_none());
    }

    #[test]
    fn anything_else_is_left_to_toml() {
        let a = "[[agents]]\nextension = \"1\"\nname = \"A\"\n";
        let not_plain = [
            "extension = \"1\"\n[[agents]]\nextension = \"1\"\nname = \"A\"\n".to_owned(),
            a.replace("\"A\"", "\"A\\\"B\""),
            a.replace("\"A\"", "\"A\\u0042\""),
            a.replace("\"A\"", "'A'"),
            a.replace("\"A\"", "\"\"\"A\"\"\""),
            a.replace("\"A\"", "\"A\u{1}\""),
            a.replace("\"A\"", "\"A\" junk"),
            a.replace("\"A\"", "\"A\" # \u{7f}"),
            a.replace("name", "\"name\""),
            a.replace("name", "nmae"),
            a.replace("name", "name.x"),
            a.replace("\"1\"", "1"),
            format!("{a}name = \"B\"\n"),
            format!("{a}queues = []\nqueues = []\n"),
            format!("{a}queues = [\n\"8000\"]\n"),
            format!("{a}queues = [\"8000\" \"8001\"]\n"),
            format!("{a}queues = [\"8000\",,]\n"),
            format!("{a}queues = [[\"8000\"]]\n"),
            format!("{a}queues = \"8000\"\n"),
            format!("{a}password = [\"x\"]\n"),
            "[[agents]]\nname = \"A\"\n".to_owned(),
            "[[agents]]\nextension = \"1\"\n".to_owned(),
            format!("  {a}"),
            format!("{a}[[agents ]]\nextension = \"2\"\nname = \"B\"\n"),
            format!("{a}[x]\n"),
            a.replace('\n', "\r"),
        ];
        for t in &not_plain {
            assert!(agents(t).is_none(), "read as plain: {t:?}");
        }
    }

    /// Generated sections, from plain to broken: whenever the plain reader
    /// takes one, toml reads exactly the same agents.
    #[test]
    fn generated_sections_read_as_toml_does() {
        let keys = [
            "extension",
            "name",
            "password",
            "ha1",
            "ha1_sha256",
            "queues",
            "other",
        ];
        let strings = [
            "\"1001\"",
            "\"\"",
            "\"A B\"",
            "\"#x\"",
            "\"a'b\"",
            "\"é☎\"",
            "\"t\tb\"",
            "\"a\\b\"",
            "\"a\\\"b\"",
            "'lit'",
            "\"x\" # c",
            "\"x\"#c",
            "\"x\" y",
            "7",
        ];
        let arrays = [
            "[]",
            "[\"8000\"]",
            "[\"8000\",\"8001\"]",
            "[ \"8000\" , ]",
            "[\"8000\" # c",
            "[\"8000\"] # c",
            "[\"8000\",]x",
            "[\"a\\\\b\"]",
            "[8000]",
            "[\"8000\"\n]",
        ];
        let pads = ["", " ", "\t", "  "];
        let mut next = crate::config::picker(0x9e37_79b9_7f4a_7c15u64);
        let mut plain = 0;
        for round in 0..4000 {
            let mut t = String::new();
            for _ in 0..1 + next(3) {
                t += ["[[agents]]", "[[agents]] # h", "[[agents]]  "][next(3)];
                t += "\n";
                let mut order: Vec<usize> = (0..keys.len()).collect();
                for k in 0..keys.len() {
                    order.swap(k, next(keys.len()));
                }
                let n = if next(3) == 0 {
                    next(keys.len())
                } else {
                    2 + next(3)
                };
                // extension and name first most of the time, so many pass.
                let chosen: Vec<usize> = if next(4) == 0 {
                    order.into_iter().take(n).collect()
                } else {
                    [0, 1]
                        .into_iter()
                        .chain(order.into_iter().filter(|&k| k > 1).take(n))
                        .collect()
                };
                for k in chosen {
                    let v = if keys[k] == "queues" {
                        arrays[next(arrays.len())]
                    } else {
                        strings[if next(3) == 0 {
                            next(strings.len())
                        } else {
                            next(7)
                        }]
                    };
                    let (p1, p2, p3) = (pads[next(4)], pads[next(4)], pads[next(4)]);
                    t += &format!("{p1}{}{p2}={p3}{v}", keys[k]);
                    t += if round % 5 == 0 { "\r\n" } else { "\n" };
                    if next(6) == 0 {
                        t += ["\n", "# note\n", "  # [x]\n", "\t\n"][next(4)];
                    }
                }
            }
            plain += usize::from(same_as_toml(&t));
        }
        assert!(
            plain > 200,
            "only {plain} of 4000 generated texts were plain"
        );
    }
}
