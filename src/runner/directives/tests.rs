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
