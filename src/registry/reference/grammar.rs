//! The one image-reference grammar: the distribution project's (distribution/reference,
//! regexp.go), written as patterns so that the CRD's CEL rules (RE2 in the API server)
//! and every Rust check (the `regex` crate, also RE2-style) run the same strings.
//!
//! ```text
//! reference := name [":" tag] ["@" digest]
//! name      := [domain "/"] path                    (at most 255 characters)
//! domain    := host [":" port]
//! host      := component ("." component)* | "[" IPv6 "]"
//! component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
//! path      := path-component ("/" path-component)*
//! path-component := [a-z0-9]+ (([._] | "__" | "-"+) [a-z0-9]+)*
//! tag       := [\w][\w.-]{0,127}
//! digest    := algorithm ":" hex                    (sha256/384/512, lowercase hex)
//! ```
//! One deliberate difference: a port is 0 to 65535 (distribution takes any digits),
//! since a registry's port is dialled.

use std::sync::LazyLock;

use regex::Regex;

// Literal building blocks, so the patterns are `&'static str` constants (concat!).
macro_rules! domain_component {
    () => {
        "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    };
}
macro_rules! port {
    () => {
        "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
    };
}
macro_rules! domain {
    () => {
        concat!(
            "(?:",
            domain_component!(),
            "(?:[.]",
            domain_component!(),
            ")*|\\[[a-fA-F0-9:]+\\])(?::",
            port!(),
            ")?"
        )
    };
}
macro_rules! path_component {
    () => {
        "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    };
}
macro_rules! path {
    () => {
        concat!(path_component!(), "(?:/", path_component!(), ")*")
    };
}
// `\w` spelled out: RE2's is ASCII, the regex crate's is Unicode
macro_rules! tag {
    () => {
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
    };
}
macro_rules! digest {
    () => {
        "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
    };
}

/// `host[:port]` (a registry). Holds `\[`: put it in a raw CEL string (`r'...'`).
pub const REGISTRY_RE: &str = domain!();
/// A repository path (without its registry).
pub const REPOSITORY_RE: &str = path!();
/// A tag.
pub const TAG_RE: &str = tag!();
/// A digest's shape (which algorithms and lengths are known is checked apart).
pub const DIGEST_RE: &str = digest!();

/// The longest name (registry and repository) a registry takes.
pub const NAME_MAX: usize = 255;

const REFERENCE_RE: &str = concat!(
    "^(?:(",
    domain!(),
    ")/)?(",
    path!(),
    ")(?::(",
    tag!(),
    "))?(?:@(",
    digest!(),
    "))?$"
);

fn anchored(re: &str) -> Regex {
    Regex::new(&format!("^(?:{re})$")).expect("the grammar compiles")
}

static REGISTRY: LazyLock<Regex> = LazyLock::new(|| anchored(REGISTRY_RE));
static REPOSITORY: LazyLock<Regex> = LazyLock::new(|| anchored(REPOSITORY_RE));
static TAG: LazyLock<Regex> = LazyLock::new(|| anchored(TAG_RE));
static DIGEST: LazyLock<Regex> = LazyLock::new(|| anchored(DIGEST_RE));
static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(REFERENCE_RE).expect("the grammar compiles"));

pub fn is_registry(s: &str) -> bool {
    REGISTRY.is_match(s)
}

pub fn is_repository(s: &str) -> bool {
    s.len() <= NAME_MAX && REPOSITORY.is_match(s)
}

pub fn is_tag(s: &str) -> bool {
    TAG.is_match(s)
}

/// A digest of an algorithm registries know, with its length of lowercase hex (as
/// go-digest's `Validate` checks it).
pub fn is_digest(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    DIGEST.is_match(s)
        && hex.len() == len
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A reference split as distribution's `Parse` splits it: the first part is the
/// domain whenever it can be one (Docker's `docker.io/library` reading is
/// [`super::ImageRef`]'s business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    pub domain: Option<&'a str>,
    pub path: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl Parts<'_> {
    /// `domain/path`, as distribution's `Name()`.
    pub fn name(&self) -> String {
        match self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.to_string(),
        }
    }
}

/// None for anything that is not a reference by the grammar above.
pub fn parse(reference: &str) -> Option<Parts<'_>> {
    let c = REFERENCE.captures(reference)?;
    let parts = Parts {
        domain: c.get(1).map(|m| m.as_str()),
        path: c.get(2)?.as_str(),
        tag: c.get(3).map(|m| m.as_str()),
        digest: c.get(4).map(|m| m.as_str()),
    };
    let name_len = c.get(2)?.end();
    (name_len <= NAME_MAX && parts.digest.is_none_or(is_digest)).then_some(parts)
}

#[cfg(test)]
#[path = "grammar_tests.rs"]
mod tests;
