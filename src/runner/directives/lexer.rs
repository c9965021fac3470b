//! Line scanning, after moby/buildkit's frontend/dockerfile/parser: physical lines,
//! parser directives, `\` continuations, heredocs, and Docker's word processing.

use std::collections::HashMap;

pub(super) struct PhysicalLine<'a> {
    /// The BOM, on the first line only when present; kept so output stays byte for byte.
    pub(super) bom: &'a str,
    /// The line with its terminator, without the BOM.
    pub(super) raw_without_bom: &'a str,
    /// The line without BOM and terminator (`\n` or `\r\n`).
    pub(super) text: &'a str,
}

pub(super) fn split_lines(s: &str) -> Vec<PhysicalLine<'_>> {
    let mut out = Vec::new();
    for (i, raw) in s.split_inclusive('\n').enumerate() {
        let (bom, rest) = match raw.strip_prefix('\u{feff}') {
            Some(rest) if i == 0 => ("\u{feff}", rest),
            _ => ("", raw),
        };
        let text = rest.strip_suffix('\n').unwrap_or(rest);
        let text = text.strip_suffix('\r').unwrap_or(text);
        out.push(PhysicalLine {
            bom,
            raw_without_bom: rest,
            text,
        });
    }
    out
}

/// One instruction: its keyword, its arguments joined across continuation lines, and the
/// physical lines (0-based, inclusive) it spans, heredoc bodies excluded.
pub(super) struct Instruction {
    pub(super) keyword: String,
    pub(super) args: String,
    pub(super) first: usize,
    pub(super) last: usize,
}

/// The `# escape=` parser directive, only honoured in the leading run of directive lines.
pub(super) fn escape_char(lines: &[PhysicalLine<'_>]) -> char {
    for line in lines {
        let Some((key, value)) = parser_directive(line.text) else {
            break;
        };
        if key.eq_ignore_ascii_case("escape") {
            match value {
                "`" => return '`',
                _ => return '\\',
            }
        }
    }
    '\\'
}

fn parser_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches([' ', '\t']);
    let (key, value) = rest.split_once('=')?;
    let key = key.trim_end_matches([' ', '\t']);
    let mut chars = key.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric());
    ok.then_some((key, value.trim_matches([' ', '\t'])))
}

/// Strips a trailing escape character (plus trailing blanks after it); true when the
/// instruction goes on to the next line.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(rest) => (rest, true),
        None => (line, false),
    }
}

pub(super) fn instructions(lines: &[PhysicalLine<'_>]) -> Vec<Instruction> {
    let escape = escape_char(lines);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let first_text = lines[i].text.trim_start();
        if first_text.is_empty() || first_text.starts_with('#') {
            i += 1;
            continue;
        }
        let first = i;
        let (mut text, mut more) = {
            let (t, c) = trim_continuation(first_text, escape);
            (t.to_string(), c)
        };
        i += 1;
        while more && i < lines.len() {
            let raw = lines[i].text;
            i += 1;
            let t = raw.trim_start();
            // Docker drops comment and blank lines inside a continuation.
            if t.starts_with('#') || t.trim_end().is_empty() {
                continue;
            }
            let (piece, c) = trim_continuation(raw, escape);
            text.push_str(piece);
            more = c;
        }
        let last = i - 1;
        let (keyword, args) = match text.find(char::is_whitespace) {
            Some(pos) => (
                text[..pos].to_string(),
                text[pos..].trim_start().to_string(),
            ),
            None => (text.clone(), String::new()),
        };
        let upper = keyword.to_ascii_uppercase();
        if matches!(upper.as_str(), "RUN" | "COPY" | "ADD") {
            i = skip_heredocs(lines, i, &args, escape);
        }
        out.push(Instruction {
            keyword,
            args,
            first,
            last,
        });
    }
    out
}

/// Skips the bodies of the heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) an instruction opens,
/// returning the index of the first line after them. A heredoc whose terminator never
/// comes is treated as no heredoc, so a misread `<<` cannot hide the rest of the file.
fn skip_heredocs(lines: &[PhysicalLine<'_>], mut i: usize, args: &str, escape: char) -> usize {
    for word in split_words(args, escape) {
        let digits = word.bytes().take_while(u8::is_ascii_digit).count();
        let Some(rest) = word[digits..].strip_prefix("<<") else {
            continue;
        };
        let (strip_tabs, name) = match rest.strip_prefix('-') {
            Some(n) => (true, n),
            None => (false, rest),
        };
        if name.is_empty() || name.contains('<') {
            continue;
        }
        let name = unquote(name);
        let end = (i..lines.len()).find(|&j| {
            let t = lines[j].text;
            let t = if strip_tabs {
                t.trim_start_matches('\t')
            } else {
                t
            };
            t == name
        });
        if let Some(end) = end {
            i = end + 1;
        }
    }
    i
}

fn unquote(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\'').collect()
}

/// Splits on blanks outside quotes, keeping quotes and escapes in the words (they are
/// resolved by [`expand`]).
pub(super) fn split_words(s: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                } else if c == escape
                    && q == '"'
                    && let Some(n) = chars.next()
                {
                    cur.push(n);
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else if c == escape
                    && let Some(n) = chars.next()
                {
                    cur.push(n);
                }
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Docker's word processing for one word: quotes removed, escapes resolved, `$VAR`,
/// `${VAR}`, `${VAR:-w}`, `${VAR-w}`, `${VAR:+w}`, `${VAR+w}` substituted; unset
/// variables are empty.
pub(super) fn expand(word: &str, env: &HashMap<String, String>, escape: char) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut quote: Option<char> = None;
    while i < chars.len() {
        let c = chars[i];
        if quote == Some('\'') {
            if c == '\'' {
                quote = None;
            } else {
                out.push(c);
            }
            i += 1;
            continue;
        }
        if c == escape && i + 1 < chars.len() {
            let n = chars[i + 1];
            // Inside double quotes the escape only escapes what would otherwise be special.
            if quote == Some('"') && !matches!(n, '$' | '"') && n != escape {
                out.push(c);
            }
            out.push(n);
            i += 2;
            continue;
        }
        match c {
            '"' if quote == Some('"') => quote = None,
            '"' | '\'' if quote.is_none() => quote = Some(c),
            '$' => {
                let (value, next) = expand_var(&chars, i + 1, env, escape);
                out.push_str(&value);
                i = next;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// Expands the variable reference starting just after a `$` at `start`; returns the
/// value and the index after the reference.
fn expand_var(
    chars: &[char],
    start: usize,
    env: &HashMap<String, String>,
    escape: char,
) -> (String, usize) {
    let is_name = |c: char, first: bool| {
        c == '_' || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit())
    };
    if chars.get(start) == Some(&'{') {
        // Find the matching brace, allowing nested `${...}` in the modifier word.
        let mut depth = 1;
        let mut j = start + 1;
        while j < chars.len() {
            match chars[j] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            j += 1;
        }
        if j >= chars.len() {
            return ("$".to_string(), start); // unterminated: keep it literal
        }
        let inner: String = chars[start + 1..j].iter().collect();
        let name_len = inner
            .char_indices()
            .take_while(|&(k, c)| is_name(c, k == 0))
            .count();
        let (name, modifier) = inner.split_at(name_len);
        let value = env.get(name);
        let result = match modifier {
            "" => value.cloned().unwrap_or_default(),
            m => {
                let (colon, rest) = match m.strip_prefix(':') {
                    Some(r) => (true, r),
                    None => (false, m),
                };
                let set = match value {
                    Some(v) => !colon || !v.is_empty(),
                    None => false,
                };
                let (op, w) = rest.split_at(rest.chars().next().map_or(0, char::len_utf8));
                match op {
                    "-" if set => value.cloned().unwrap_or_default(),
                    "-" => expand(w, env, escape),
                    "+" if set => expand(w, env, escape),
                    "+" => String::new(),
                    _ => value.cloned().unwrap_or_default(),
                }
            }
        };
        return (result, j + 1);
    }
    let mut j = start;
    while j < chars.len() && is_name(chars[j], j == start) {
        j += 1;
    }
    if j == start {
        return ("$".to_string(), start);
    }
    let name: String = chars[start..j].iter().collect();
    (env.get(&name).cloned().unwrap_or_default(), j)
}

/// The `--flag=value` words that open an instruction's arguments, as BuildKit's
/// `extractBuilderFlags` reads them: quotes removed (a quoted span may hold blanks), `\`
/// escaping the next character whatever the `escape` directive, ending at the first word
/// that is not a flag or at a bare `--`.
pub(super) fn builder_flags(args: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let mut chars = args.trim_start().chars().peekable();
    while chars.peek().is_some() {
        let mut rest = chars.clone();
        if !(rest.next() == Some('-') && rest.next() == Some('-')) {
            break;
        }
        let (mut word, mut quote) = (String::new(), None);
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => word.extend(chars.next()),
                (_, c) => word.push(c),
            }
        }
        if word == "--" {
            break;
        }
        flags.push(word);
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
    }
    flags
}
