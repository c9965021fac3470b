//! Properties the fuzz targets (`fuzz/`, cargo-fuzz) check, kept here so that
//! `tests/it/fuzz_corpus.rs` replays the committed corpora through the very same code on
//! the stable toolchain. Each `check_*` takes the raw fuzz input and panics when the
//! property does not hold; inputs it cannot use are simply ignored.

mod challenge;
mod dockerignore;
mod folder;
mod recordio;
mod unpack;

pub use challenge::check_challenge;
pub use dockerignore::check_dockerignore;
pub use folder::check_status_write;
pub use recordio::check_recordio;
pub use unpack::check_unpack;

/// A property: panics when the input breaks it.
pub type Check = fn(&[u8]);

/// The corpus directory names under `fuzz/corpus/`, each with its property.
pub const TARGETS: &[(&str, Check)] = &[
    ("directives", check_directives),
    ("status_write", check_status_write),
    ("recordio", check_recordio),
    ("dockerignore", check_dockerignore),
    ("unpack", check_unpack),
    ("challenge", check_challenge),
];

/// The Dockerfile directive lexer: never panics; what it returns is the input with
/// whole lines commented out (line count and every other byte kept), and reading that
/// again finds no directive and changes nothing.
pub fn check_directives(data: &[u8]) {
    use crate::runner::directives::{Directives, from_images, parse};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = from_images(text, &Default::default());
    let Ok((found, out)) = parse(text) else {
        return;
    };
    let before: Vec<&str> = text.split_inclusive('\n').collect();
    let after: Vec<&str> = out.split_inclusive('\n').collect();
    assert_eq!(before.len(), after.len(), "line count changed: {out:?}");
    for (b, a) in before.iter().zip(&after) {
        let (bom, rest) = match b.strip_prefix('\u{feff}') {
            Some(rest) => ("\u{feff}", rest),
            None => ("", *b),
        };
        assert!(
            a == b || *a == format!("{bom}# {rest}"),
            "line {b:?} became {a:?}"
        );
    }
    let mut tags = found.tags.clone();
    tags.sort();
    tags.dedup();
    assert_eq!(
        tags.len(),
        found.tags.len(),
        "duplicate tags {:?}",
        found.tags
    );
    let again = parse(&out).expect("the stripped Dockerfile parses");
    assert_eq!(
        again,
        (Directives::default(), out),
        "stripping is not idempotent"
    );
}
