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

mod lexer;

use lexer::{builder_flags, escape_char, expand, instructions, split_lines, split_words};

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

/// The value of every `RUN --mount=` flag, in file order, as BuildKit receives it (shell
/// quotes removed, still one CSV record): only the flags before the command count, so a
/// `--mount=` the command itself is given is not one.
pub(crate) fn run_mounts(dockerfile: &str) -> Vec<String> {
    instructions(&split_lines(dockerfile))
        .into_iter()
        .filter(|ins| ins.keyword.eq_ignore_ascii_case("run"))
        .flat_map(|ins| builder_flags(&ins.args))
        .filter_map(|f| f.strip_prefix("--mount=").map(str::to_string))
        .collect()
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

#[cfg(test)]
mod tests;
