//! Parsing a configuration with many `[[agents]]` tables a slice at a time.
//!
//! The toml crate lexes the whole document into a token vector, turns that
//! into an event vector and builds a document tree, all alive at once: about
//! 35 bytes of heap per byte of TOML, 340 MB for a 9.9 MB file of 100,000
//! agents. Here the document is cut, with toml's own lexer, at its top-level
//! table headers. Runs of consecutive `[[agents]]` sections (slices of the
//! text, about [`CHUNK`] bytes each) are parsed one at a time, and the other
//! sections, concatenated in order, are parsed as one small document.
//!
//! Why this gives exactly what parsing the whole text gives, for any text on
//! which it succeeds:
//! - A cut is made only at a `[` token that is the first token of a line
//!   (after whitespace) outside any array or inline table. In TOML that is
//!   a table header and nothing else, and the lexer is context-free, so each
//!   piece lexes exactly as it does inside the whole text.
//! - A TOML document is a sequence of expressions, each header starting a
//!   section whose key/values belong to that header's table. A section whose
//!   header is exactly `[[agents]]` appends one table to the root's `agents`
//!   array and touches nothing else; parsed on its own it gives that same
//!   table.
//! - Every other section (and the root key/values before the first header)
//!   keeps its meaning when the `[[agents]]` sections are taken out, as long
//!   as none of them mentions `agents` (`agents = []`, `[agents.x]`,
//!   `[["agents"]]`, `[[agents.sub]]`, …): that is checked, and such a text
//!   is parsed whole.
//! - Every byte of the text is in exactly one piece, and every piece must
//!   parse and deserialize without error; on any error, or any doubt, the
//!   caller parses the whole text, so errors (and their line numbers) are
//!   always toml's own for the whole file.

use std::ops::Range;

use serde::Deserialize;
use toml_parser::lexer::TokenKind;

use super::{AgentConfig, Config};

/// Target size of one slice of `[[agents]]` sections (parsing it takes about
/// 35 times this, briefly).
const CHUNK: usize = 128 << 10;

/// The header that starts one agent's section.
const AGENTS_HEADER: &str = "[[agents]]";

/// The pieces of a document: everything but the `[[agents]]` sections, and
/// those sections as slices of the text.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Pieces {
    /// The other sections, in their order.
    pub(super) rest: String,
    /// Runs of consecutive `[[agents]]` sections, in order.
    pub(super) chunks: Vec<Range<usize>>,
    /// How many `[[agents]]` headers there are.
    pub(super) agents: usize,
}

/// Cuts `text` at its top-level table headers (see the module comment).
pub(super) fn pieces(text: &str, chunk: usize) -> Pieces {
    let mut p = Pieces::default();
    let mut depth = 0i64; // open `[` and `{` minus closed ones
    let mut line_start = true; // only whitespace since the last newline
    let mut section = 0..0; // the section being read
    let mut agents_section = false;
    let close = |p: &mut Pieces, s: Range<usize>, agents: bool| {
        if s.is_empty() {
            return;
        }
        if !agents {
            p.rest.push_str(&text[s]);
        } else {
            match p.chunks.last_mut() {
                Some(c) if c.end == s.start && c.len() < chunk => c.end = s.end,
                _ => p.chunks.push(s),
            }
        }
    };
    for token in toml_parser::Source::new(text).lex() {
        let kind = token.kind();
        let start = token.span().start();
        match kind {
            TokenKind::Whitespace => continue,
            TokenKind::Newline => {
                line_start = true;
                continue;
            }
            TokenKind::LeftSquareBracket if depth == 0 && line_start => {
                close(&mut p, section.start..start, agents_section);
                section = start..start;
                agents_section = text[start..].starts_with(AGENTS_HEADER);
                p.agents += usize::from(agents_section);
            }
            _ => {}
        }
        match kind {
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => depth -= 1,
            _ => {}
        }
        line_start = false;
    }
    close(&mut p, section.start..text.len(), agents_section);
    p
}

/// One slice of `[[agents]]` sections.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Agents {
    agents: Vec<AgentConfig>,
}

/// Whether a document has an `agents` key at its root.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    agents: Option<serde::de::IgnoredAny>,
}

/// The configuration of `text` parsed a piece at a time, or None when that
/// does not apply (no `[[agents]]`) or anything fails: then parse it whole.
pub(super) fn parse(text: &str) -> Option<Config> {
    parse_with(text, CHUNK)
}

/// [`parse`] with slices of about `chunk` bytes.
pub(super) fn parse_with(text: &str, chunk: usize) -> Option<Config> {
    let p = pieces(text, chunk);
    if p.agents == 0 {
        return None;
    }
    let probe: Probe = toml::from_str(&p.rest).ok()?;
    if probe.agents.is_some() {
        return None;
    }
    let mut config: Config = toml::from_str(&p.rest).ok()?;
    drop(p.rest);
    let agents = parse_chunks(text, &p.chunks, p.agents)?;
    if agents.len() != p.agents {
        return None;
    }
    config.agents = agents;
    Some(config)
}

/// Parses the `[[agents]]` slices on up to as many threads as there are
/// CPUs (each thread parses one slice at a time, so the peak memory grows
/// by one slice's tree per thread, not with the file), in order.
fn parse_chunks(text: &str, chunks: &[Range<usize>], count: usize) -> Option<Vec<AgentConfig>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks.len())
        .max(1);
    let one = |c: &Range<usize>| toml::from_str::<Agents>(&text[c.clone()]).ok();
    let parsed: Vec<Option<Agents>> = if threads == 1 {
        chunks.iter().map(one).collect()
    } else {
        // Thread t parses slices t, t + threads, …; they are put back in order.
        let per: Vec<Vec<Option<Agents>>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| s.spawn(move || chunks.iter().skip(t).step_by(threads).map(one).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut iters: Vec<_> = per.into_iter().map(Vec::into_iter).collect();
        (0..chunks.len())
            .map(|i| iters[i % threads].next().flatten())
            .collect()
    };
    let mut agents = Vec::with_capacity(count);
    for a in parsed {
        agents.extend(a?.agents);
    }
    Some(agents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigErrors;

    /// The bench's shape (benches/sipp-load.sh `facdconf`), `n` agents.
    fn generated(n: usize) -> String {
        let mut t = String::from(
            "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\ndomain = \"127.0.0.1\"\n\n\
             [auth]\nrequired = false\n\n[storage]\ndir = \"data\"\n",
        );
        for q in 8000..8005 {
            t += &format!(
                "\n[[queues]]\nnumber = \"{q}\"\nname = \"Bench {q}\"\nwrap_up_secs = 0\n"
            );
        }
        for i in 0..n {
            let ext = 1000 + i;
            t += &format!(
                "\n[[agents]]\nextension = \"{ext}\"\nname = \"Agent {ext}\"\n\
                 queues = [\"8000\", \"8001\", \"8002\", \"8003\", \"8004\"]\n"
            );
        }
        t
    }

    /// Parsing whole and in pieces (at several slice sizes) agree: the same
    /// configuration, or the piecewise parse gives up; and
    /// [`Config::from_toml`] reports exactly what the whole parse does.
    /// Returns whether the piecewise parse was used.
    fn agree(text: &str) -> bool {
        let whole = Config::parse_whole(text);
        let mut used = false;
        for chunk in [1, 100, 1000, CHUNK] {
            if let Some(c) = parse_with(text, chunk) {
                used = true;
                match &whole {
                    Ok(w) => assert_eq!(format!("{c:?}"), format!("{w:?}"), "{text}"),
                    Err(e) => panic!("whole parse fails ({e}) but pieces load:\n{text}"),
                }
            }
        }
        match (Config::from_toml(text), whole) {
            (Ok(a), Ok(b)) => assert_eq!(format!("{a:?}"), format!("{:?}", b.checked().unwrap())),
            (Err(ConfigErrors(a)), Err(ConfigErrors(b))) => assert_eq!(a, b, "{text}"),
            (Err(ConfigErrors(a)), Ok(b)) => assert_eq!(a, b.validate(), "{text}"),
            (Ok(_), Err(e)) => panic!("from_toml loads what toml refuses ({e}):\n{text}"),
        }
        used
    }

    #[test]
    fn generated_config_loads_the_same_in_pieces() {
        let text = generated(2000);
        let p = pieces(&text, 1000);
        assert_eq!(p.agents, 2000);
        assert!(p.chunks.len() > 10, "{}", p.chunks.len());
        assert!(!p.rest.contains("agents"), "{}", p.rest);
        assert!(agree(&text));
        let c = parse(&text).expect("the common shape takes the piecewise path");
        assert_eq!(c.agents.len(), 2000);
        assert_eq!(c.agents[1999].extension, "2999");
        assert_eq!(c.agents[5].queues.len(), 5);
    }

    #[test]
    fn shipped_config_loads_the_same_in_pieces() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
        assert!(agree(&text));
    }

    #[test]
    fn pieces_are_cut_only_at_top_level_headers() {
        let text = "a = 1\n[[agents]]\nx = [\n[1],\n]\ns = \"\"\"\n[[agents]]\n\"\"\"\n  [b]\n[[agents]]\n";
        let p = pieces(text, 1 << 20);
        assert_eq!(p.agents, 2);
        assert_eq!(p.rest, "a = 1\n[b]\n");
        let agents: Vec<&str> = p.chunks.iter().map(|c| &text[c.clone()]).collect();
        assert_eq!(
            agents,
            [
                "[[agents]]\nx = [\n[1],\n]\ns = \"\"\"\n[[agents]]\n\"\"\"\n  ",
                "[[agents]]\n"
            ]
        );
    }

    /// Valid and invalid texts around the cuts: whatever the pieces give is
    /// what the whole gives, and errors are the whole parse's.
    #[test]
    fn tricky_texts_agree() {
        let agent = |ext: &str| format!("[[agents]]\nextension = \"{ext}\"\nname = \"A\"\n");
        let head = "[auth]\nrequired = false\n[[queues]]\nnumber = \"8000\"\nname = \"Q\"\n";
        let (a1, a2) = (agent("1001"), agent("1002"));
        let piecewise = [
            // plain, interleaved with other tables, indented, commented
            format!("{head}{a1}{a2}"),
            format!("{a1}{head}{a2}"),
            format!("{head}  {a1}\t{a2}"),
            format!("# c\n{head}{a1}# [[agents]]\n{a2}"),
            format!("{head}[[agents]] # c\nextension = \"1001\"\nname = \"A\"\n"),
            // CRLF, a BOM, no final newline
            format!("{head}{a1}{a2}").replace('\n', "\r\n"),
            format!("\u{feff}{head}{a1}{a2}"),
            format!("{head}{a1}[[agents]]\nextension = \"1002\"\nname = \"A\""),
            // header look-alikes inside values
            format!("{head}[[agents]]\nextension = \"1001\"\nname = \"\"\"\n[[agents]]\n[x]\n\"\"\"\n"),
            format!("{head}[[agents]]\nextension = \"1001\"\nname = '''\n[[agents]]\n'''\nqueues = [\n\"8000\",\n]\n"),
            format!("{head}[[agents]]\nextension = \"1001\"\nname = \"A\"\nqueues = [\n  # [[agents]]\n  \"8000\"\n]\n{a2}"),
            // errors inside an agent: unknown key, bad type, duplicate key, nesting
            format!("{head}{a1}[[agents]]\nextension = \"1002\"\nnmae = \"B\"\n"),
            format!("{head}{a1}[[agents]]\nextension = 1002\nname = \"B\"\n"),
            format!("{head}{a1}{a2}extension = \"x\"\n"),
            format!("{head}{a1}[[agents]]\nextension = \"1002\"\nname = \"B\"\nqueues = [\"8000\",\n[1]]\n"),
            // syntax errors in or between pieces
            format!("{head}{a1}x =\n{a2}"),
            format!("{head}{a1}[[agents]] junk\n"),
            format!("{head}{a1}[[agents]]]\n"),
            format!("{head}{a1}{a2}").replace("\n[[agents]]", "\r[[agents]]"),
            format!("{head}x = [\n{a1}"),
            format!("{head}x = ]\n{a1}"),
            format!("{head}{a1}[x]\n[x]\n{a2}"),
            // validation errors (the same Config either way)
            format!("{head}{a1}{a1}"),
            format!("{head}{a1}[[agents]]\nextension = \"1002\"\nname = \"B\"\nqueues = [\"9\"]\n"),
        ];
        for t in &piecewise {
            agree(t);
        }
        assert!(agree(&piecewise[0]) && agree(&piecewise[5]) && agree(&piecewise[9]));
        // `agents` also written some other way: parsed whole.
        let whole = [
            format!("{head}[[ agents ]]\nextension = \"1003\"\nname = \"C\"\n{a1}"),
            format!("{head}[[\"agents\"]]\nextension = \"1003\"\nname = \"C\"\n{a1}"),
            format!("{head}{a1}[agents.x]\ny = 1\n"),
            format!("{head}{a1}[[agents.queues]]\n"),
            format!("agents = []\n{head}{a1}"),
            format!("{head}agents = [{{ extension = \"1003\", name = \"C\" }}]\n{a1}"),
            format!("[agents]\n{head}{a1}"),
        ];
        for t in &whole {
            assert!(!agree(t), "took the piecewise path:\n{t}");
        }
    }
}
