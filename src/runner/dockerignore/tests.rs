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
            let m = m.message();
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
