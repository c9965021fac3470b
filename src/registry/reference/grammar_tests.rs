use super::*;

const SHA256: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// distribution/reference's TestReferenceParse: input, then (domain, path, tag,
/// digest) or None where Parse fails.
#[test]
fn distribution_reference_vectors() {
    let sha512 = format!("sha512:{}", "f".repeat(128));
    let long_ok = format!("{}a:tag-puts-this-over-max", "a/".repeat(127));
    let long_path = format!("{}a", "a/".repeat(126));
    type Want<'a> = Option<(Option<&'a str>, &'a str, Option<&'a str>, Option<&'a str>)>;
    let cases: Vec<(String, Want)> = vec![
        ("test_com".into(), Some((None, "test_com", None, None))),
        (
            "test.com:tag".into(),
            Some((None, "test.com", Some("tag"), None)),
        ),
        (
            "test.com:5000".into(),
            Some((None, "test.com", Some("5000"), None)),
        ),
        (
            "test.com/repo:tag".into(),
            Some((Some("test.com"), "repo", Some("tag"), None)),
        ),
        (
            "test:5000/repo".into(),
            Some((Some("test:5000"), "repo", None, None)),
        ),
        (
            "test:5000/repo:tag".into(),
            Some((Some("test:5000"), "repo", Some("tag"), None)),
        ),
        (
            format!("test:5000/repo@{SHA256}"),
            Some((Some("test:5000"), "repo", None, Some(SHA256))),
        ),
        (
            format!("test:5000/repo:tag@{SHA256}"),
            Some((Some("test:5000"), "repo", Some("tag"), Some(SHA256))),
        ),
        ("".into(), None),
        (":justtag".into(), None),
        (format!("@{SHA256}"), None),
        (
            "repo@sha256:ffffffffffffffffffffffffffffffffff".into(),
            None,
        ),
        (format!("validname@invaliddigest:{}", "f".repeat(64)), None),
        ("Uppercase:tag".into(), None),
        ("test:5000/Uppercase/lowercase:tag".into(), None),
        (
            "lowercase:Uppercase".into(),
            Some((None, "lowercase", Some("Uppercase"), None)),
        ),
        (format!("{}a:tag", "a/".repeat(128)), None),
        (
            long_ok,
            Some((
                Some("a"),
                long_path.as_str(),
                Some("tag-puts-this-over-max"),
                None,
            )),
        ),
        ("aa/asdf$$^/aa".into(), None),
        (
            "sub-dom1.foo.com/bar/baz/quux".into(),
            Some((Some("sub-dom1.foo.com"), "bar/baz/quux", None, None)),
        ),
        (
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
            Some((
                Some("sub-dom1.foo.com"),
                "bar/baz/quux",
                Some("some-long-tag"),
                None,
            )),
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com".into(),
            Some((
                Some("b.gcr.io"),
                "test.example.com/my-app",
                Some("test.example.com"),
                None,
            )),
        ),
        (
            "xn--n3h.com/myimage:xn--n3h.com".into(),
            Some((Some("xn--n3h.com"), "myimage", Some("xn--n3h.com"), None)),
        ),
        (
            format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}"),
            Some((
                Some("xn--7o8h.com"),
                "myimage",
                Some("xn--7o8h.com"),
                Some(sha512.as_str()),
            )),
        ),
        (
            "foo_bar.com:8080".into(),
            Some((None, "foo_bar.com", Some("8080"), None)),
        ),
        (
            "foo/foo_bar.com:8080".into(),
            Some((Some("foo"), "foo_bar.com", Some("8080"), None)),
        ),
        (
            "192.168.1.1".into(),
            Some((None, "192.168.1.1", None, None)),
        ),
        (
            "192.168.1.1:tag".into(),
            Some((None, "192.168.1.1", Some("tag"), None)),
        ),
        (
            "192.168.1.1:5000".into(),
            Some((None, "192.168.1.1", Some("5000"), None)),
        ),
        (
            "192.168.1.1/repo".into(),
            Some((Some("192.168.1.1"), "repo", None, None)),
        ),
        (
            "192.168.1.1:5000/repo".into(),
            Some((Some("192.168.1.1:5000"), "repo", None, None)),
        ),
        (
            "192.168.1.1:5000/repo:5050".into(),
            Some((Some("192.168.1.1:5000"), "repo", Some("5050"), None)),
        ),
        ("[2001:db8::1]".into(), None),
        ("[2001:db8::1]:5000".into(), None),
        ("[2001:db8::1]:tag".into(), None),
        (
            "[2001:db8::1]/repo".into(),
            Some((Some("[2001:db8::1]"), "repo", None, None)),
        ),
        (
            "[2001:db8:1:2:3:4:5:6]/repo:tag".into(),
            Some((Some("[2001:db8:1:2:3:4:5:6]"), "repo", Some("tag"), None)),
        ),
        (
            "[2001:db8::1]:5000/repo".into(),
            Some((Some("[2001:db8::1]:5000"), "repo", None, None)),
        ),
        (
            "[2001:db8::1]:5000/repo:tag".into(),
            Some((Some("[2001:db8::1]:5000"), "repo", Some("tag"), None)),
        ),
        (
            format!("[2001:db8::1]:5000/repo@{SHA256}"),
            Some((Some("[2001:db8::1]:5000"), "repo", None, Some(SHA256))),
        ),
        (
            "[2001:db8::]:5000/repo".into(),
            Some((Some("[2001:db8::]:5000"), "repo", None, None)),
        ),
        (
            "[::1]:5000/repo".into(),
            Some((Some("[::1]:5000"), "repo", None, None)),
        ),
        ("[fe80::1%eth0]:5000/repo".into(), None),
        ("[fe80::1%@invalidzone]:5000/repo".into(), None),
    ];
    for (input, want) in &cases {
        let got = parse(input).map(|p| (p.domain, p.path, p.tag, p.digest));
        assert_eq!(&got, want, "{input}");
    }
}

/// distribution's TestDomainAndPath.
#[test]
fn domains_and_paths() {
    for (input, domain, path) in [
        ("test.com/foo", Some("test.com"), "foo"),
        ("test_com/foo", None, "test_com/foo"),
        ("test:8080/foo", Some("test:8080"), "foo"),
        ("test.com:8080/foo", Some("test.com:8080"), "foo"),
        ("test-com:8080/foo", Some("test-com:8080"), "foo"),
        ("xn--n3h.com:18080/foo", Some("xn--n3h.com:18080"), "foo"),
    ] {
        let p = parse(input).unwrap();
        assert_eq!((p.domain, p.path), (domain, path), "{input}");
        assert_eq!(p.name(), input);
    }
}

#[test]
fn parts_on_their_own() {
    for ok in [
        "r.example.org:5000",
        "127.0.0.1:5000",
        "localhost",
        "[::1]:5000",
        "a",
        "r:65535",
        "xn--n3h.com",
    ] {
        assert!(is_registry(ok), "{ok}");
    }
    // a '-' at either end of a host part, a port that is no port (or over 65535)
    for bad in [
        "-r.example.org",
        "r-.example.org",
        "r..org",
        "r:port",
        "r:65536",
        "r:",
        "[::1",
        "r_x.org",
        "r:5000/x",
        "",
    ] {
        assert!(!is_registry(bad), "{bad}");
    }
    for ok in [
        "wiki/gollum",
        "a",
        "a.b_c__d---e/f",
        "library/busybox",
        &"a".repeat(255),
    ] {
        assert!(is_repository(ok), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "a-",
        "a_",
        "a..b",
        "a___b",
        "A",
        "a//b",
        "/a",
        "a:b",
        &"a".repeat(256),
    ] {
        assert!(!is_repository(bad), "{bad}");
    }
    for ok in ["latest", "1.2", "_x", "Upper", &"x".repeat(128)] {
        assert!(is_tag(ok), "{ok}");
    }
    for bad in ["", ".x", "-x", "a:b", "a/b", "é", &"x".repeat(129)] {
        assert!(!is_tag(bad), "{bad}");
    }
    assert!(is_digest(SHA256));
    assert!(is_digest(&format!("sha384:{}", "0".repeat(96))));
    assert!(!is_digest(&SHA256.to_uppercase().replace("SHA", "sha")));
    assert!(!is_digest("sha256:0123"));
    assert!(!is_digest(&format!("md5:{}", "0".repeat(32))));
}
