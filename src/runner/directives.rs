//! The Dockerfile directives kept from ddocker and portainer (`REGISTRY`, `REPOSITORY`,
//! `CPUS`/`BUILD_CPU`, `MEM`/`BUILD_MEM`, `TAG`), and the base images a Dockerfile needs.
//!
//! Docker rejects unknown instructions, so [`parse`] turns each directive line into a
//! comment; the file keeps its line count, so Docker's line numbers still match the
//! user's file. The scanner follows Docker's own line rules (parser directives, `\`
//! continuations, comments inside continuations, heredocs) so that a `TAG` inside a
//! `RUN` continuation or a heredoc body is left alone.

use std::collections::{BTreeMap, HashMap};

use crate::registry::grammar;
use crate::{Error, Result};

/// What the directive lines of a Dockerfile ask for. The resource's spec wins where both
/// say something; merging is the caller's business.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Directives {
    pub registry: Option<String>,
    pub repository: Option<String>,
    pub cpus: Option<f64>,
    pub mem_mib: Option<u64>,
    /// In file order, without duplicates.
    pub tags: Vec<String>,
}

/// Which field a directive sets; the portainer spellings map onto the same kind so that
/// `CPUS` and `BUILD_CPU` in one file count as a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Registry,
    Repository,
    Cpus,
    Mem,
    Tag,
}

fn directive_kind(keyword: &str) -> Option<Kind> {
    match keyword.to_ascii_uppercase().as_str() {
        "REGISTRY" => Some(Kind::Registry),
        "REPOSITORY" => Some(Kind::Repository),
        "CPUS" | "BUILD_CPU" => Some(Kind::Cpus),
        "MEM" | "BUILD_MEM" => Some(Kind::Mem),
        "TAG" => Some(Kind::Tag),
        _ => None,
    }
}

/// Reads REGISTRY, REPOSITORY, CPUS, MEM, BUILD_CPU, BUILD_MEM (portainer spellings of the
/// last two) and TAG (repeatable) lines — instruction names case-insensitive like Docker's —
/// and returns them plus the Dockerfile with each such line replaced by a
/// `# <original line>` comment so Docker's line numbers in error messages still match the
/// user's file. Everything else byte for byte.
pub fn parse(dockerfile: &str) -> Result<(Directives, String)> {
    let physical = split_lines(dockerfile);
    let mut directives = Directives::default();
    // Line number (1-based) and spelling of the first occurrence, for duplicate errors.
    let mut seen: HashMap<Kind, (usize, String)> = HashMap::new();
    let mut commented = vec![false; physical.len()];

    for ins in instructions(&physical) {
        let Some(kind) = directive_kind(&ins.keyword) else {
            continue;
        };
        let line_no = ins.first + 1;
        let name = ins.keyword.to_ascii_uppercase();
        let arg = ins.args.trim();
        if arg.is_empty() {
            return Err(invalid(line_no, format!("{name} needs a value")));
        }
        if kind != Kind::Tag {
            if let Some((first, first_name)) = seen.get(&kind) {
                return Err(Error::InvalidSpec(format!(
                    "Dockerfile lines {first} and {line_no}: {first_name} and {name} both set the {}; keep one",
                    kind_label(kind)
                )));
            }
            seen.insert(kind, (line_no, name.clone()));
        }
        match kind {
            Kind::Registry => directives.registry = Some(parse_registry(line_no, &name, arg)?),
            Kind::Repository => {
                directives.repository = Some(parse_repository(line_no, &name, arg)?)
            }
            Kind::Cpus => directives.cpus = Some(parse_cpus(line_no, &name, arg)?),
            Kind::Mem => {
                directives.mem_mib = Some(parse_mem(arg).ok_or_else(|| {
                    invalid(
                        line_no,
                        format!("{name} expects a size such as 4096 or 4GiB, got '{arg}'"),
                    )
                })?)
            }
            Kind::Tag => {
                for tag in arg.split_whitespace() {
                    if !grammar::is_tag(tag) {
                        return Err(invalid(
                            line_no,
                            format!(
                                "TAG expects image tags such as latest or 1.2 (letters, digits, '_', '.', '-', at most 128), got '{tag}'"
                            ),
                        ));
                    }
                    if !directives.tags.iter().any(|t| t == tag) {
                        directives.tags.push(tag.to_string());
                    }
                }
            }
        }
        for c in &mut commented[ins.first..=ins.last] {
            *c = true;
        }
    }

    let mut out = String::with_capacity(dockerfile.len() + 16);
    for (i, line) in physical.iter().enumerate() {
        out.push_str(line.bom);
        if commented[i] {
            out.push_str("# ");
        }
        out.push_str(line.raw_without_bom);
    }
    Ok((directives, out))
}

/// Image references in FROM lines (not stage names, not `scratch`), with `$VAR`/`${VAR}`
/// substituted from ARG defaults declared before the first FROM and from `build_args`
/// (which win). Used to order builds whose base is built by another resource.
///
/// Like Docker, only ARGs declared before the first FROM are visible in FROM lines, so a
/// build arg that no such ARG declares is not substituted. `COPY --from=<image>` is an
/// image dependency too and is included; `--from` naming a stage or a stage index is not.
/// The references are returned as written (after substitution), in file order, without
/// duplicates.
pub fn from_images(dockerfile: &str, build_args: &BTreeMap<String, String>) -> Vec<String> {
    let physical = split_lines(dockerfile);
    let mut env: HashMap<String, String> = HashMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    let mut seen_from = false;
    let escape = escape_char(&physical);

    let mut push = |image: String, stages: &[String]| {
        let lower = image.to_ascii_lowercase();
        if image.is_empty() || lower == "scratch" || stages.contains(&lower) {
            return;
        }
        if !images.contains(&image) {
            images.push(image);
        }
    };

    for ins in instructions(&physical) {
        let keyword = ins.keyword.to_ascii_uppercase();
        match keyword.as_str() {
            "ARG" if !seen_from => {
                for word in split_words(&ins.args, escape) {
                    let (name, default) = match word.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (word.clone(), None),
                    };
                    if let Some(v) = build_args.get(&name) {
                        env.insert(name, v.clone());
                    } else if let Some(d) = default {
                        let value = expand(&d, &env, escape);
                        env.insert(name, value);
                    } else {
                        env.remove(&name);
                    }
                }
            }
            "FROM" => {
                seen_from = true;
                let words: Vec<String> = split_words(&ins.args, escape)
                    .into_iter()
                    .filter(|w| !w.starts_with("--"))
                    .collect();
                let Some(image) = words.first() else {
                    continue;
                };
                push(expand(image, &env, escape), &stages);
                if words.len() >= 3 && words[1].eq_ignore_ascii_case("as") {
                    stages.push(words[2].to_ascii_lowercase());
                }
            }
            "COPY" => {
                for word in split_words(&ins.args, escape) {
                    let Some(rest) = word.strip_prefix("--") else {
                        break; // flags come first; the rest are sources
                    };
                    if let Some(from) = rest.strip_prefix("from=") {
                        let from = expand(from, &env, escape);
                        if !from.is_empty() && !from.bytes().all(|b| b.is_ascii_digit()) {
                            push(from, &stages);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    images
}

fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Registry => "registry",
        Kind::Repository => "repository",
        Kind::Cpus => "CPU count",
        Kind::Mem => "memory",
        Kind::Tag => "tags",
    }
}

fn invalid(line_no: usize, message: String) -> Error {
    Error::InvalidSpec(format!("Dockerfile line {line_no}: {message}"))
}

fn single_word<'a>(line_no: usize, name: &str, arg: &'a str) -> Result<&'a str> {
    let mut words = arg.split_whitespace();
    match (words.next(), words.next()) {
        (Some(w), None) => Ok(w),
        _ => Err(invalid(
            line_no,
            format!("{name} takes one value, got '{arg}'"),
        )),
    }
}

fn parse_registry(line_no: usize, name: &str, arg: &str) -> Result<String> {
    let value = single_word(line_no, name, arg)?;
    if !grammar::is_registry(value) {
        return Err(invalid(
            line_no,
            format!(
                "{name} expects a registry host such as registry.example.org:5000, got '{value}'"
            ),
        ));
    }
    Ok(value.to_string())
}

/// The distribution grammar's repository path, as `spec.output.repository` is checked.
fn parse_repository(line_no: usize, name: &str, arg: &str) -> Result<String> {
    let value = single_word(line_no, name, arg)?;
    if !grammar::is_repository(value) {
        return Err(invalid(
            line_no,
            format!(
                "{name} expects a lowercase repository path such as wiki/gollum, got '{value}'"
            ),
        ));
    }
    Ok(value.to_string())
}

fn parse_cpus(line_no: usize, name: &str, arg: &str) -> Result<f64> {
    match arg.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(invalid(
            line_no,
            format!("{name} expects a positive number of CPUs such as 2 or 0.5, got '{arg}'"),
        )),
    }
}

/// Sizes in MiB: a bare number is MiB (as ddocker read it); M/G/T suffixes are binary
/// multiples whatever their spelling (m, MB, MiB...), as `docker run -m` reads them.
fn parse_mem(arg: &str) -> Option<u64> {
    let split = arg
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(arg.len());
    let (number, unit) = (arg[..split].trim(), arg[split..].trim());
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1,
        "g" | "gb" | "gib" => 1024,
        "t" | "tb" | "tib" => 1024 * 1024,
        _ => return None,
    };
    let mib = if let Ok(n) = number.parse::<u64>() {
        n.checked_mul(multiplier)?
    } else {
        let n = number.parse::<f64>().ok()?;
        let v = (n * multiplier as f64).ceil();
        if !v.is_finite() || v >= u64::MAX as f64 {
            return None;
        }
        v as u64
    };
    (mib > 0).then_some(mib)
}

// ---------------------------------------------------------------------------------------
// Line scanning, after moby/buildkit's frontend/dockerfile/parser.

struct PhysicalLine<'a> {
    /// The BOM, on the first line only when present; kept so output stays byte for byte.
    bom: &'a str,
    /// The line with its terminator, without the BOM.
    raw_without_bom: &'a str,
    /// The line without BOM and terminator (`\n` or `\r\n`).
    text: &'a str,
}

fn split_lines(s: &str) -> Vec<PhysicalLine<'_>> {
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
struct Instruction {
    keyword: String,
    args: String,
    first: usize,
    last: usize,
}

/// The `# escape=` parser directive, only honoured in the leading run of directive lines.
fn escape_char(lines: &[PhysicalLine<'_>]) -> char {
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

fn instructions(lines: &[PhysicalLine<'_>]) -> Vec<Instruction> {
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
fn split_words(s: &str, escape: char) -> Vec<String> {
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
fn expand(word: &str, env: &HashMap<String, String>, escape: char) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_msg(r: Result<(Directives, String)>) -> String {
        match r {
            Err(Error::InvalidSpec(m)) => m,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn reads_all_directives_and_comments_them_out() {
        let src = "FROM scratch\nREGISTRY registry.example.org:5000\nrepository wiki/gollum\nCPUS 2.5\nMem 4GiB\nTAG latest\nTAG 1.2\nCOPY . /\n";
        let (d, out) = parse(src).unwrap();
        assert_eq!(
            d,
            Directives {
                registry: Some("registry.example.org:5000".into()),
                repository: Some("wiki/gollum".into()),
                cpus: Some(2.5),
                mem_mib: Some(4096),
                tags: vec!["latest".into(), "1.2".into()],
            }
        );
        assert_eq!(
            out,
            "FROM scratch\n# REGISTRY registry.example.org:5000\n# repository wiki/gollum\n# CPUS 2.5\n# Mem 4GiB\n# TAG latest\n# TAG 1.2\nCOPY . /\n"
        );
        assert_eq!(out.lines().count(), src.lines().count());
    }

    #[test]
    fn portainer_spellings() {
        let (d, _) = parse("FROM scratch\nBUILD_CPU 1\nbuild_mem 512\n").unwrap();
        assert_eq!(d.cpus, Some(1.0));
        assert_eq!(d.mem_mib, Some(512));
    }

    #[test]
    fn no_directives_is_unchanged() {
        let src = "# syntax=docker/dockerfile:1\nFROM scratch\n\n  COPY a b\r\nRUN x";
        let (d, out) = parse(src).unwrap();
        assert_eq!(d, Directives::default());
        assert_eq!(out, src);
    }

    #[test]
    fn mem_sizes() {
        for (v, mib) in [
            ("4096", 4096),
            ("4096M", 4096),
            ("4096m", 4096),
            ("512MiB", 512),
            ("512MB", 512),
            ("4G", 4096),
            ("4GiB", 4096),
            ("2g", 2048),
            ("1.5G", 1536),
            ("1T", 1024 * 1024),
            ("4 GiB", 4096),
        ] {
            let (d, _) = parse(&format!("FROM scratch\nMEM {v}\n")).unwrap();
            assert_eq!(d.mem_mib, Some(mib), "{v}");
        }
    }

    #[test]
    fn bad_mem() {
        for v in ["x", "4Q", "0", "-1", "G", "1.2.3G", "99999999999999999999T"] {
            let m = invalid_msg(parse(&format!("FROM scratch\n\nMEM {v}\n")));
            assert_eq!(
                m,
                format!("Dockerfile line 3: MEM expects a size such as 4096 or 4GiB, got '{v}'")
            );
        }
        let m = invalid_msg(parse("BUILD_MEM lots\n"));
        assert!(
            m.starts_with("Dockerfile line 1: BUILD_MEM expects a size"),
            "{m}"
        );
    }

    #[test]
    fn bad_cpus() {
        for v in ["two", "0", "-1", "NaN", "inf"] {
            let m = invalid_msg(parse(&format!("CPUS {v}\n")));
            assert!(
                m.starts_with("Dockerfile line 1: CPUS expects a positive number"),
                "{m}"
            );
            assert!(m.contains(&format!("'{v}'")), "{m}");
        }
    }

    #[test]
    fn bad_registry_repository_tag() {
        let m = invalid_msg(parse("REGISTRY https://r.example\n"));
        assert!(m.contains("REGISTRY expects a registry host"), "{m}");
        let m = invalid_msg(parse("REGISTRY a b\n"));
        assert!(m.contains("REGISTRY takes one value"), "{m}");
        let m = invalid_msg(parse("REPOSITORY Wiki/Gollum\n"));
        assert!(
            m.contains("REPOSITORY expects a lowercase repository path"),
            "{m}"
        );
        let m = invalid_msg(parse("REPOSITORY wiki//gollum\n"));
        assert!(m.contains("REPOSITORY expects"), "{m}");
        let m = invalid_msg(parse("FROM scratch\nTAG -bad\n"));
        assert!(
            m.starts_with("Dockerfile line 2: TAG expects image tags"),
            "{m}"
        );
        // Valid repository spellings.
        let (d, _) = parse("REPOSITORY a.b/c__d/e---f/g_h\n").unwrap();
        assert_eq!(d.repository.as_deref(), Some("a.b/c__d/e---f/g_h"));
    }

    /// A REGISTRY, REPOSITORY or TAG line takes exactly what the spec's field takes:
    /// the two used to disagree (a port that is no number, a host starting with '-',
    /// a repository over 255 characters).
    #[test]
    fn directives_and_the_spec_read_names_alike() {
        use crate::api::{validate_registry, validate_repository, validate_tag};
        let long = "a".repeat(256);
        for (value, ok) in [
            ("r.example.org:5000", true),
            ("[::1]:5000", true),
            ("localhost", true),
            ("r:port", false),
            ("r:99999", false),
            ("r.example.org:", false),
            ("-r.example.org", false),
            ("r.example.org-", false),
            ("[::1", false),
        ] {
            assert_eq!(parse(&format!("REGISTRY {value}\n")).is_ok(), ok, "{value}");
            assert_eq!(validate_registry(value).is_ok(), ok, "{value}");
        }
        for (value, ok) in [("wiki/gollum", true), ("-a", false), (long.as_str(), false)] {
            assert_eq!(
                parse(&format!("REPOSITORY {value}\n")).is_ok(),
                ok,
                "{value}"
            );
            assert_eq!(validate_repository(value).is_ok(), ok, "{value}");
        }
        for (value, ok) in [("v1.2", true), ("_x", true), ("-x", false), (".x", false)] {
            assert_eq!(parse(&format!("TAG {value}\n")).is_ok(), ok, "{value}");
            assert_eq!(validate_tag(value).is_ok(), ok, "{value}");
        }
    }

    #[test]
    fn missing_argument() {
        for src in ["TAG\n", "FROM scratch\nREGISTRY   \n", "cpus"] {
            let m = invalid_msg(parse(src));
            assert!(m.contains("needs a value"), "{m}");
        }
        assert!(invalid_msg(parse("FROM scratch\nMEM\n")).starts_with("Dockerfile line 2: MEM"));
    }

    #[test]
    fn duplicates_name_both_lines() {
        let m = invalid_msg(parse("FROM scratch\nCPUS 1\nRUN true\nCPUS 2\n"));
        assert_eq!(
            m,
            "Dockerfile lines 2 and 4: CPUS and CPUS both set the CPU count; keep one"
        );
        let m = invalid_msg(parse("MEM 1G\nBUILD_MEM 2G\n"));
        assert!(
            m.starts_with("Dockerfile lines 1 and 2: MEM and BUILD_MEM"),
            "{m}"
        );
        let m = invalid_msg(parse("REGISTRY a\nregistry b\n"));
        assert!(m.contains("lines 1 and 2"), "{m}");
    }

    #[test]
    fn tags_repeat_and_dedupe() {
        let (d, _) = parse("TAG a\nTAG b c\nTAG a\n").unwrap();
        assert_eq!(d.tags, vec!["a", "b", "c"]);
    }

    #[test]
    fn crlf_and_bom() {
        let src = "\u{feff}TAG v1\r\nFROM scratch\r\nMEM 2g\r\nCOPY a b\r\n";
        let (d, out) = parse(src).unwrap();
        assert_eq!(d.tags, vec!["v1"]);
        assert_eq!(d.mem_mib, Some(2048));
        assert_eq!(
            out,
            "\u{feff}# TAG v1\r\nFROM scratch\r\n# MEM 2g\r\nCOPY a b\r\n"
        );
    }

    #[test]
    fn indented_and_tab_separated() {
        let (d, out) = parse("FROM scratch\n  \tTAG\tx  \n").unwrap();
        assert_eq!(d.tags, vec!["x"]);
        assert_eq!(out, "FROM scratch\n#   \tTAG\tx  \n");
    }

    #[test]
    fn not_directives_inside_continuations_heredocs_or_comments() {
        let src = "FROM scratch\nRUN echo \\\n  # a comment in the middle\nTAG not-a-tag\nRUN <<EOF\nTAG in-heredoc\nEOF\nRUN cat <<-'END' > f\n\tMEM 1\n\tEND\n# TAG commented\nTAGS x\nTAG real\n";
        let (d, out) = parse(src).unwrap();
        assert_eq!(d.tags, vec!["real"]);
        assert_eq!(d.mem_mib, None);
        assert_eq!(out, src.replace("\nTAG real\n", "\n# TAG real\n"));
    }

    #[test]
    fn unterminated_heredoc_does_not_hide_the_rest() {
        let (d, _) = parse("FROM scratch\nRUN echo '<<EOF'\nRUN echo <<EOF\nTAG t\n").unwrap();
        assert_eq!(d.tags, vec!["t"]);
    }

    #[test]
    fn escape_directive_backtick() {
        let src = "# escape=`\nFROM scratch\nRUN echo `\nTAG no\nRUN echo \\\nTAG yes\n";
        let (d, _) = parse(src).unwrap();
        assert_eq!(d.tags, vec!["yes"]);
    }

    #[test]
    fn multiline_directive_is_commented_on_every_line() {
        let (d, out) = parse("FROM scratch\nTAG a \\\n  b\nRUN x\n").unwrap();
        assert_eq!(d.tags, vec!["a", "b"]);
        assert_eq!(out, "FROM scratch\n# TAG a \\\n#   b\nRUN x\n");
    }

    fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn from_images_basic() {
        let src = "FROM registry:5000/base:1 AS build\nRUN x\nFROM build\nFROM scratch\nFROM --platform=linux/amd64 alpine:3 as Final\nFROM final\nCOPY --from=build /a /b\nCOPY --from=other/img:2 /c /d\nCOPY --from=0 /e /f\nFROM registry:5000/base:1\n";
        assert_eq!(
            from_images(src, &BTreeMap::new()),
            vec!["registry:5000/base:1", "alpine:3", "other/img:2"]
        );
    }

    #[test]
    fn from_images_substitution() {
        let src = "ARG REG=registry:5000\nARG TAG=1.0 OTHER\nARG IMG=\"${REG}/base\"\nFROM $IMG:${TAG}\nARG LATE=x\nFROM ${OTHER:-fallback}:$LATE\nFROM ${UNDECLARED}img\nFROM ${TAG:+set}-${NOPE:+no}\n";
        assert_eq!(
            from_images(src, &BTreeMap::new()),
            vec!["registry:5000/base:1.0", "fallback:", "img", "set-"]
        );
        let b = args(&[("TAG", "2.0"), ("OTHER", "o"), ("UNDECLARED", "u/")]);
        assert_eq!(
            from_images(src, &b),
            vec!["registry:5000/base:2.0", "o:", "img", "set-"]
        );
    }

    #[test]
    fn from_images_continuation_crlf_and_quotes() {
        let src = "\u{feff}ARG V='x y'\r\nFROM \\\r\n  base:1\r\nFROM \"q/img:$V\"\r\n";
        assert_eq!(
            from_images(src, &BTreeMap::new()),
            vec!["base:1", "q/img:x y"]
        );
    }

    #[test]
    fn expand_escapes() {
        let env: HashMap<String, String> = [("A".to_string(), "1".to_string())].into();
        assert_eq!(expand("\\$A$A", &env, '\\'), "$A1");
        assert_eq!(expand("'$A'\"$A\"", &env, '\\'), "$A1");
        assert_eq!(expand("a$", &env, '\\'), "a$");
        assert_eq!(expand("${A", &env, '\\'), "${A");
        assert_eq!(expand("${B:-${A}x}", &env, '\\'), "1x");
    }
}
