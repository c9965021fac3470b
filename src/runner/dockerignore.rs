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
                    return Err(Error::Context(format!(
                        ".dockerignore line {}: '!' needs a pattern after it",
                        i + 1
                    )));
                }
            }
            let cleaned = clean(p);
            let cleaned = match cleaned.strip_prefix('/') {
                Some(rest) if !rest.is_empty() => rest.to_string(),
                _ => cleaned,
            };
            let bad = |e: &dyn std::fmt::Display| {
                Error::Context(format!(
                    ".dockerignore line {}: bad pattern '{}': {e}",
                    i + 1,
                    line.trim(),
                ))
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
            .map_err(|e| Error::Context(format!(".dockerignore: {e}")))?;
        Ok(DockerIgnore { patterns, set })
    }

    /// Reads `root/.dockerignore`; no file means nothing is ignored.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(".dockerignore");
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::Context(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
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
mod tests {
    use super::*;

    fn di(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn docs_example_star_slash_temp() {
        let d = di("# comment\n*/temp*\n");
        assert!(d.is_excluded("somedir/temporary.txt"));
        assert!(d.is_excluded("somedir/temp"));
        assert!(d.is_excluded("somedir/temp/inside/file"));
        assert!(!d.is_excluded("temp"));
        assert!(!d.is_excluded("temporary.txt"));
        assert!(!d.is_excluded("a/b/temp"));
        assert!(!d.is_excluded("# comment"));
    }

    #[test]
    fn docs_example_two_levels() {
        let d = di("*/*/temp*");
        assert!(d.is_excluded("somedir/subdir/temporary.txt"));
        assert!(!d.is_excluded("somedir/temporary.txt"));
        assert!(!d.is_excluded("a/b/c/temp"));
    }

    #[test]
    fn docs_example_question_mark() {
        let d = di("temp?");
        assert!(d.is_excluded("tempa"));
        assert!(d.is_excluded("tempb"));
        assert!(!d.is_excluded("temp"));
        assert!(!d.is_excluded("tempab"));
        assert!(!d.is_excluded("temp/"));
        assert!(!d.is_excluded("x/tempa"));
    }

    #[test]
    fn star_does_not_cross_slash() {
        let d = di("a*b\nc?d");
        assert!(d.is_excluded("axxb"));
        assert!(!d.is_excluded("ax/xb"));
        assert!(!d.is_excluded("c/d"));
    }

    #[test]
    fn double_star() {
        let d = di("**/*.go");
        assert!(d.is_excluded("main.go"));
        assert!(d.is_excluded("a/b/c/main.go"));
        assert!(!d.is_excluded("main.rs"));
        let d = di("a/**/b");
        assert!(d.is_excluded("a/b"));
        assert!(d.is_excluded("a/x/y/b"));
        assert!(d.is_excluded("a/x/b/c"));
        assert!(!d.is_excluded("a/xb"));
        let d = di("a/**");
        assert!(d.is_excluded("a/x"));
        assert!(!d.is_excluded("a"));
        let d = di("**");
        assert!(d.is_excluded("anything/at/all"));
        // Not a whole component: Docker accepts it, read as `*`.
        let d = di("foo**");
        assert!(d.is_excluded("foobar"));
    }

    #[test]
    fn docs_example_markdown_exceptions() {
        let d = di("*.md\n!README.md");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));
        assert!(!d.is_excluded("docs/x.md"), "*.md only matches the root");

        let d = di("*.md\n!README*.md\nREADME-secret.md");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README.md"));
        assert!(!d.is_excluded("README-public.md"));
        assert!(d.is_excluded("README-secret.md"));

        let d = di("*.md\nREADME-secret.md\n!README*.md");
        assert!(d.is_excluded("CHANGES.md"));
        assert!(!d.is_excluded("README-secret.md"));
    }

    #[test]
    fn directory_patterns() {
        let d = di("node_modules\n/build/\n./dist\ndocs\n!docs/keep.md\n");
        assert!(d.is_excluded("node_modules"));
        assert!(d.is_excluded("node_modules/x/y.js"));
        assert!(!d.is_excluded("src/node_modules"));
        assert!(d.is_excluded("build"));
        assert!(d.is_excluded("build/out.o"));
        assert!(d.is_excluded("dist/a"));
        assert!(d.is_excluded("docs/other.md"));
        assert!(!d.is_excluded("docs/keep.md"));

        assert!(d.can_skip_dir("node_modules"));
        assert!(d.can_skip_dir("build"));
        assert!(!d.can_skip_dir("docs"));
        assert!(!d.can_skip_dir("src"), "not excluded at all");
    }

    #[test]
    fn can_skip_dir_with_wildcard_exceptions() {
        let d = di("vendor\n!**/LICENSE");
        assert!(!d.can_skip_dir("vendor"));
        assert!(!d.is_excluded("vendor/x/LICENSE"));
        assert!(d.is_excluded("vendor/x/main.go"));

        let d = di("a\n!*/keep");
        assert!(!d.can_skip_dir("a"));
        assert!(!d.is_excluded("a/keep"));

        let d = di("a\n!b/keep");
        assert!(d.can_skip_dir("a"));

        // An exception before the excluding pattern cannot re-include.
        let d = di("!a/keep\na");
        assert!(d.is_excluded("a/keep"));
        assert!(d.can_skip_dir("a"));

        // `!a/b` re-includes a/b/... : a can't be skipped but a/c can.
        let d = di("a\n!a/b");
        assert!(!d.can_skip_dir("a"));
        assert!(d.can_skip_dir("a/c"));
        assert!(!d.is_excluded("a/b/deep/file"));
    }

    #[test]
    fn cleaning_and_whitespace() {
        let d = di("\u{feff}  foo/../bar  \r\n ! bar/keep \r\n//x//y/\n");
        assert!(d.is_excluded("bar/z"));
        assert!(!d.is_excluded("bar/keep"));
        assert!(!d.is_excluded("foo"));
        assert!(d.is_excluded("x/y"));
        // `#` after leading blanks is a pattern, as in Docker.
        let d = di("  #file\n");
        assert!(d.is_excluded("#file"));
    }

    #[test]
    fn braces_are_literal_and_escapes_work() {
        let d = di("{a,b}\nstar\\*");
        assert!(d.is_excluded("{a,b}"));
        assert!(!d.is_excluded("a"));
        assert!(d.is_excluded("star*"));
        assert!(!d.is_excluded("starx"));
    }

    #[test]
    fn character_classes() {
        let d = di("file[0-9]\nx[^a]");
        assert!(d.is_excluded("file7"));
        assert!(!d.is_excluded("filex"));
        assert!(d.is_excluded("xb"));
        assert!(!d.is_excluded("xa"));
    }

    /// Go's `filepath.Match` (Docker's) class rules, not the shell's.
    #[test]
    fn character_classes_as_go_reads_them() {
        // (pattern, names excluded, names kept)
        let cases: &[(&str, &[&str], &[&str])] = &[
            // `!` is an ordinary member: "`!` or `a`".
            ("x[!a]", &["xa", "x!"], &["xb"]),
            ("x[^!a]", &["xb"], &["xa", "x!"]),
            ("x[!]", &["x!"], &["xa"]),
            ("x[!^]", &["x!", "x^"], &["xa"]),
            ("x[^^]", &["xa", "x!"], &["x^"]),
            ("x[a^]", &["xa", "x^"], &["xb"]),
            // Escapes work inside a class.
            ("x[\\]a]", &["x]", "xa"], &["xb"]),
            ("x[\\-]", &["x-"], &["xa"]),
            ("x[a\\-z]", &["xa", "x-", "xz"], &["xb"]),
            ("x[\\!]", &["x!"], &["xa"]),
            // Ranges, with specials inside them taken literally.
            ("x[a-c]", &["xa", "xb", "xc"], &["xd", "x-"]),
            ("x[ -#]", &["x ", "x!", "x\"", "x#"], &["x$"]),
            ("x[Z-a]", &["xZ", "x^", "x]", "xa"], &["xb", "x!"]),
            ("x[^ -#]", &["x$", "xa"], &["x!", "x#"]),
        ];
        for (pattern, excluded, kept) in cases {
            let d = di(pattern);
            for n in *excluded {
                assert!(d.is_excluded(n), "{pattern} should exclude {n}");
            }
            for n in *kept {
                assert!(!d.is_excluded(n), "{pattern} should keep {n}");
            }
        }
        // Go refuses these; Docker fails the build with "syntax error in pattern".
        for bad in ["x[]", "x[]a]", "x[-a]", "x[a-]", "x[^]", "x[a", "x[a\\"] {
            assert!(
                matches!(DockerIgnore::parse(bad), Err(Error::Context(_))),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn bad_pattern_is_a_context_error() {
        match DockerIgnore::parse("ok\nfoo[\n") {
            Err(Error::Context(m)) => {
                assert!(m.contains("line 2"), "{m}");
                assert!(m.contains("'foo['"), "{m}");
            }
            other => panic!("expected Context error, got {other:?}"),
        }
        assert!(matches!(DockerIgnore::parse("!\n"), Err(Error::Context(_))));
    }

    #[test]
    fn load_missing_and_present() {
        let dir = tempfile::tempdir().unwrap();
        let d = DockerIgnore::load(dir.path()).unwrap();
        assert!(!d.is_excluded("anything"));
        assert!(!d.can_skip_dir("anything"));
        std::fs::write(dir.path().join(".dockerignore"), "secret\n").unwrap();
        let d = DockerIgnore::load(dir.path()).unwrap();
        assert!(d.is_excluded("secret"));
    }

    #[test]
    fn go_clean() {
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean("/../a/"), "/a");
        assert_eq!(clean("./"), ".");
        assert_eq!(clean("/"), "/");
    }
}
