//! Parsing a configuration with many `[[agents]]` tables a slice at a time.
//!
//! The toml crate lexes the whole document into a token vector, turns that
//! into an event vector and builds a document tree, all alive at once: about
//! 35 bytes of heap per byte of TOML, 340 MB for a 9.9 MB file of 100,000
//! agents. Here the document is cut at its top-level table headers, found
//! by a scan of TOML's lexical structure that toml's own lexer checks in the
//! tests. Runs of consecutive `[[agents]]` sections (slices of the
//! text, about [`CHUNK`] bytes each) are parsed one at a time, and the other
//! sections, concatenated in order, are parsed as one small document.
//!
//! Why this gives exactly what parsing the whole text gives, for any text on
//! which it succeeds:
//! - A cut is made only at a `[` token that is the first token of a line
//!   (after whitespace) outside any string, comment, array or inline table.
//!   In TOML that is a table header and nothing else, and TOML's lexical
//!   structure is context-free, so each piece lexes exactly as it does
//!   inside the whole text.
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
/// Empty (so the caller parses whole) if [`headers`] gives up.
pub(super) fn pieces(text: &str, chunk: usize) -> Pieces {
    let mut p = Pieces::default();
    let Some(headers) = headers(text) else {
        return p;
    };
    let mut close = |start: usize, end: usize| {
        if start == end {
            return;
        }
        if !text[start..].starts_with(AGENTS_HEADER) {
            p.rest.push_str(&text[start..end]);
            return;
        }
        p.agents += 1;
        match p.chunks.last_mut() {
            Some(c) if c.end == start && c.len() < chunk => c.end = end,
            _ => p.chunks.push(start..end),
        }
    };
    let mut start = 0;
    for &h in &headers {
        close(start, h);
        start = h;
    }
    close(start, text.len());
    p
}

/// Where the top-level table headers of `text` start: each `[` that is the
/// first token of a line outside any string, comment, array or inline
/// table. None if the text is not lexically valid TOML as far as this scan
/// sees (an unterminated string, a newline in a one-line string, an
/// unbalanced bracket): the caller then parses whole, and toml reports it.
///
/// This is TOML's lexical structure (toml.io v1.0.0: comments, the four
/// kinds of string, brackets), scanned with `memchr` from one byte that
/// matters to the next: many times faster than toml's lexer, which builds a
/// token for everything (0.3 s of a million agents' start-up). The tests
/// check it against toml's own lexer, on the tricky texts and generated ones.
fn headers(text: &str) -> Option<Vec<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0i64; // open `[` and `{` minus closed ones
    let mut line_start = true; // only whitespace since the last newline
                               // A byte order mark is not part of the document.
    let mut i = if text.starts_with('\u{feff}') { 3 } else { 0 };
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => {
                i += 1;
                continue;
            }
            b'\n' => {
                line_start = true;
                i += 1;
                continue;
            }
            b'\r' if b.get(i + 1) == Some(&b'\n') => {
                line_start = true;
                i += 2;
                continue;
            }
            b'[' => {
                if depth == 0 && line_start {
                    out.push(i);
                }
                depth += 1;
                i += 1;
            }
            b'{' => {
                depth += 1;
                i += 1;
            }
            b']' | b'}' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
                i += 1;
            }
            // A comment runs to the end of the line (its newline is not in it).
            b'#' => i = memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |p| i + p),
            quote @ (b'"' | b'\'') => i = string_end(b, i, quote)?,
            // Keys, `=`, numbers…: on to the next byte that matters.
            _ => {
                i += 1 + b[i + 1..]
                    .iter()
                    .take_while(|&&c| ORDINARY[c as usize])
                    .count()
            }
        }
        line_start = false;
    }
    (depth == 0).then_some(out)
}

/// The bytes [`headers`] passes over: all but whitespace, newlines,
/// brackets, braces, `#` and quotes.
static ORDINARY: [bool; 256] = {
    let mut t = [true; 256];
    let special = b" \t\r\n[]{}#\"'";
    let mut k = 0;
    while k < special.len() {
        t[special[k] as usize] = false;
        k += 1;
    }
    t
};

/// The index just past the string that starts at `b[start]` (`"` basic,
/// `'` literal, tripled: multi-line), or None if it does not end validly.
fn string_end(b: &[u8], start: usize, quote: u8) -> Option<usize> {
    let escapes = quote == b'"'; // only basic strings have escapes
    let multi = b[start..].starts_with(&[quote; 3]);
    let mut i = start + if multi { 3 } else { 1 };
    loop {
        // The next quote, backslash (basic strings) or newline (one-line).
        // One-line strings are short: a plain loop beats memchr's set-up.
        let rest = &b[i..];
        let next = match (escapes, multi) {
            (true, true) => memchr::memchr2(quote, b'\\', rest),
            (false, true) => memchr::memchr(quote, rest),
            (true, false) => rest
                .iter()
                .position(|&c| c == quote || c == b'\\' || c == b'\n'),
            (false, false) => rest.iter().position(|&c| c == quote || c == b'\n'),
        };
        i += next?;
        match b[i] {
            b'\\' => i += 2, // the escaped byte is never a delimiter
            b'\n' => return None,
            _ if !multi => return Some(i + 1),
            _ => {
                // Up to two quotes may sit just inside the closing delimiter.
                let run = b[i..].iter().take_while(|&&x| x == quote).count();
                if run >= 3 {
                    return (run <= 5).then_some(i + run);
                }
                i += run;
            }
        }
        if i > b.len() {
            return None;
        }
    }
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
    // Most slices are plain (see `plain`): read at once, or parsed by toml.
    let one = |c: &Range<usize>| {
        let slice = &text[c.clone()];
        super::plain::agents(slice)
            .map(|agents| Agents { agents })
            .or_else(|| toml::from_str::<Agents>(slice).ok())
    };
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

    /// [`headers`] as toml's own lexer finds them: a `[` token first on its
    /// line (after whitespace) outside any array or inline table.
    fn headers_by_lexer(text: &str) -> Vec<usize> {
        use toml_parser::lexer::TokenKind;
        let mut out = Vec::new();
        let mut depth = 0i64;
        let mut line_start = true;
        for token in toml_parser::Source::new(text).lex() {
            let start = token.span().start();
            match token.kind() {
                TokenKind::Whitespace => continue,
                TokenKind::Newline => {
                    line_start = true;
                    continue;
                }
                TokenKind::LeftSquareBracket if depth == 0 && line_start => out.push(start),
                _ => {}
            }
            match token.kind() {
                TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => depth += 1,
                TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => depth -= 1,
                _ => {}
            }
            line_start = false;
        }
        out
    }

    /// Where the scan finds headers in a text toml accepts, toml's lexer
    /// finds the same ones; and it never gives up on a text toml accepts.
    fn scan_agrees(text: &str) -> bool {
        let valid = toml::from_str::<toml::Table>(text).is_ok();
        match headers(text) {
            Some(h) if valid => assert_eq!(h, headers_by_lexer(text), "{text:?}"),
            None if valid => panic!("the scan gives up on valid TOML: {text:?}"),
            _ => {}
        }
        valid
    }

    #[test]
    fn the_header_scan_agrees_with_tomls_lexer() {
        // Values of every kind around brackets, quotes, escapes and newlines.
        let values = [
            r#"1"#,
            r#""a""#,
            r#""""#,
            r#""a\"[x]""#,
            r#""\\""#,
            r#"'a\'"#,
            r#"''"#,
            r#"'#'"#,
            "\"\"\"\n[x]\n\"\"\"",
            r#""""a"""""#,
            r#""""a""""""#,
            r#"""""a""""#,
            "\"\"\"\\\n  [y]\"\"\"",
            "\"\"\"\\\"\"\"\n[z]\"\"\"",
            "'''\n[[agents]]\n'''",
            "''''a'''''",
            r"'''\'''",
            "[\n[1],\n[2], # ]\n]",
            r#"[ '[', "]", { a = "{" } ]"#,
            r#"{ a = [1, { b = "]" }] }"#,
            r##""#""##,
        ];
        let heads = [
            "[x]",
            "[[agents]]",
            "  [y.z]",
            "\t[[w]]",
            "[ \"q\" ]",
            "['r']",
        ];
        let mut next = crate::config::picker(0x2545_f491_4f6c_dd1du64);
        let mut valid = 0;
        for round in 0..3000 {
            let mut t = String::new();
            for line in 0..1 + next(8) {
                match next(5) {
                    0 => t += heads[next(heads.len())],
                    1 => t += &format!("# c {}", values[next(values.len())].replace('\n', " ")),
                    _ => t += &format!("k{line}_{round} = {}", values[next(values.len())]),
                }
                if next(4) == 0 {
                    t += r#" # ] [ " '''"#;
                }
                t += if round % 7 == 0 { "\r\n" } else { "\n" };
            }
            // Now and then break it: the scan may give up, never disagree.
            if next(5) == 0 {
                let cut = next(t.len() + 1);
                if t.is_char_boundary(cut) {
                    t.truncate(cut);
                }
            }
            valid += usize::from(scan_agrees(&t));
        }
        assert!(
            valid > 1000,
            "only {valid} of 3000 generated texts are valid TOML"
        );
        for t in [
            "\u{feff}[x]\na = 1\n",
            "a = \"x\ny\"\n[z]\n",
            "a = ]\n[b]\n",
            "[[agents]]\nx = '''\n",
            "a = [\n]\n  [b]\n",
        ] {
            scan_agrees(t);
        }
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
