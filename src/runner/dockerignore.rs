//! `.dockerignore` with Docker's semantics (moby/patternmatcher, as the docker CLI applies
//! it): the last pattern that matches a path *or one of its parent directories* decides,
//! `!` patterns re-include, `*` and `?` stay inside one path component, `**` spans any
//! number of directories.

use std::path::Path;

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};

mod class;
use class::go_class;

use crate::{Error, Result};

/// A parsed `.dockerignore`.
#[derive(Debug, Clone)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
    /// All patterns in file order, so one lookup tells which patterns match a path.
    set: GlobSet,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// A `!` pattern: re-includes what it matches.
    exception: bool,
    /// Per path component, to tell whether the pattern could match below a directory.
    components: Vec<Component>,
}

#[derive(Debug, Clone)]
enum Component {
    /// `**`: zero or more components.
    AnyDirs,
    Glob(GlobMatcher),
}

impl Default for DockerIgnore {
    fn default() -> Self {
        DockerIgnore {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore`. A pattern globset cannot compile (an
    /// unclosed `[`, say) is an `Error::Context` naming the line and the pattern.
    pub fn parse(text: &str) -> Result<Self> {
        let mut patterns = Vec::new();
        let mut set = GlobSetBuilder::new();
        for (i, line) in text.lines().enumerate() {
            let line = if i == 0 {
                line.strip_prefix('\u{feff}').unwrap_or(line)
            } else {
                line
            };
            // As Docker: a comment only when `#` is the very first character.
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let exception = p.starts_with('!');
            if exception {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(Error::Context(
                        format!(".dockerignore line {}: '!' needs a pattern after it", i + 1)
                            .into(),
                    ));
                }
            }
            let cleaned = clean(p);
            let cleaned = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => cleaned,
            };
            let bad = |e: &dyn std::fmt::Display| {
                Error::Context(
                    format!(
                        ".dockerignore line {}: bad pattern '{}': {e}",
                        i + 1,
                        line.trim(),
                    )
                    .into(),
                )
            };
            let glob_text = to_globset_syntax(&cleaned).map_err(|e| bad(&e))?;
            let bad = |e: globset::Error| bad(e.kind());
            set.add(build_glob(&glob_text).map_err(bad)?);
            let components = glob_text
                .split('/')
                .map(|c| {
                    if c == "**" {
                        Ok(Component::AnyDirs)
                    } else {
                        build_glob(c).map(|g| Component::Glob(g.compile_matcher()))
                    }
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(bad)?;
            patterns.push(Pattern {
                exception,
                components,
            });
        }
        let set = set
            .build()
            .map_err(|e| Error::context(format!(".dockerignore: {e}"), e))?;
        Ok(DockerIgnore { patterns, set })
    }

    /// Reads `root/.dockerignore`; no file means nothing is ignored.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(".dockerignore");
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::context(
                format!("cannot read {}: {e}", path.display()),
                e,
            )),
        }
    }

    /// True when the path (relative to the context root, `/`-separated, no leading
    /// `./`) is left out of the context.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        self.deciding_pattern(rel_path)
            .is_some_and(|i| !self.patterns[i].exception)
    }

    /// True when no exception pattern could re-include something under this excluded dir,
    /// so the walk can skip it whole.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        let Some(decider) = self.deciding_pattern(rel_dir) else {
            return false;
        };
        if self.patterns[decider].exception {
            return false;
        }
        let dir: Vec<&str> = normalize(rel_dir).split('/').collect();
        // Only a later pattern can overturn the decision, and only by matching a deeper
        // path (an earlier one, or one matching the dir itself, was already counted).
        !self.patterns[decider + 1..]
            .iter()
            .any(|p| p.exception && could_match_below(&p.components, &dir))
    }

    /// Index of the last pattern matching the path or one of its parent directories.
    fn deciding_pattern(&self, rel_path: &str) -> Option<usize> {
        if self.patterns.is_empty() {
            return None;
        }
        let path = normalize(rel_path);
        if path.is_empty() {
            return None;
        }
        let mut best = None;
        let mut hits = Vec::new();
        let ends = path
            .match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(path.len()));
        for end in ends {
            self.set.matches_into(&path[..end], &mut hits);
            best = best.max(hits.iter().copied().max());
        }
        best
    }
}

fn normalize(rel_path: &str) -> &str {
    let p = rel_path.trim_end_matches('/');
    p.strip_prefix("./").unwrap_or(p)
}

fn build_glob(text: &str) -> std::result::Result<Glob, globset::Error> {
    GlobBuilder::new(text)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// Whether a pattern (split in components) could match some path strictly below `dir`:
/// runs the components over the dir's as a small NFA, `**` consuming any number.
fn could_match_below(components: &[Component], dir: &[&str]) -> bool {
    let n = components.len();
    let closure = |states: &mut Vec<usize>| {
        let mut k = 0;
        while k < states.len() {
            let s = states[k];
            if s < n && matches!(components[s], Component::AnyDirs) && !states.contains(&(s + 1)) {
                states.push(s + 1);
            }
            k += 1;
        }
    };
    let mut states = vec![0];
    closure(&mut states);
    for part in dir {
        let mut next = Vec::new();
        for &s in &states {
            if s >= n {
                continue;
            }
            let to = match &components[s] {
                Component::AnyDirs => s,
                Component::Glob(g) if g.is_match(part) => s + 1,
                Component::Glob(_) => continue,
            };
            if !next.contains(&to) {
                next.push(to);
            }
        }
        closure(&mut next);
        if next.is_empty() {
            return false;
        }
        states = next;
    }
    // Pattern left over after the dir: it can still match one or more deeper components.
    states.iter().any(|&s| s < n)
}

/// Go's `filepath.Clean` for `/` paths: no empty or `.` components, `..` resolved
/// lexically, no trailing slash.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Adapts a Docker pattern to globset: `{` `}` are literal for Docker (no alternation),
/// a `**` that is not a whole component (Docker accepts `a**`) is read as `*`, which
/// globset would otherwise refuse, and character classes follow Go ([`go_class`]).
fn to_globset_syntax(pattern: &str) -> std::result::Result<String, String> {
    pattern
        .split('/')
        .map(|comp| {
            if comp.len() >= 2 && comp.bytes().all(|b| b == b'*') {
                return Ok("**".to_string());
            }
            let mut out = String::with_capacity(comp.len());
            let mut chars = comp.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        out.push('\\');
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    }
                    '{' | '}' => {
                        out.push('\\');
                        out.push(c);
                    }
                    '*' => {
                        out.push('*');
                        while chars.peek() == Some(&'*') {
                            chars.next();
                        }
                    }
                    '[' => out.push_str(&go_class(&mut chars)?),
                    c => out.push(c),
                }
            }
            Ok(out)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(|comps| comps.join("/"))
}

#[cfg(test)]
mod tests;
