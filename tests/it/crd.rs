//! `crds/dockerbuild.yaml` is the output of `slipway crd`, checked in; it must not drift.

#[test]
fn checked_in_crd_matches_the_rust_types() {
    let generated = slipway::commands::crd_yaml().expect("crd renders");
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/dockerbuild.yaml"
    ))
    .expect("crds/dockerbuild.yaml exists");
    assert!(
        generated == checked_in,
        "crds/dockerbuild.yaml is stale: run `cargo run -- crd > crds/dockerbuild.yaml`"
    );
}

#[test]
fn crd_shows_phase_and_digest_columns() {
    let crd = slipway::commands::crd_yaml().unwrap();
    for col in [
        ".status.phase",
        ".status.imageDigest",
        "shortNames:\n    - dbuild",
    ] {
        assert!(crd.contains(col), "missing {col}");
    }
}

/// The CRD's CEL rules for registry, repository and tags (run by the API server's RE2;
/// by the `regex` crate here, RE2-style too) take exactly what slipway's own checks
/// take, for a watch folder or `slipway build`: one grammar, distribution's.
#[test]
fn cel_rules_and_slipway_agree_on_image_names() {
    let crd: serde_json::Value =
        slipway::yaml::from_str(&slipway::commands::crd_yaml().unwrap()).unwrap();
    let mut rules = Vec::new();
    collect_rules(&crd, &mut rules);
    // the pattern of the rule that checks `field`, from `matches(r'^...$')`
    let pattern = |field: &str| {
        let rule = rules
            .iter()
            .find(|r| r.contains(&format!("{field}.matches(")))
            .unwrap_or_else(|| panic!("no rule for {field}: {rules:?}"));
        let from = rule.find(&format!("{field}.matches(")).unwrap() + field.len() + 9;
        let quoted = rule[from..].trim_start_matches('r');
        let body = &quoted[1..];
        regex::Regex::new(&body[..body.find('\'').unwrap()]).unwrap()
    };
    let registry = pattern("self.registry");
    let repository = pattern("self.repository");
    let tag = pattern("t");
    type Check = fn(&str) -> slipway::Result<()>;
    let cases: [(&regex::Regex, Check, &[&str]); 3] = [
        (
            &registry,
            slipway::api::validate_registry,
            &[
                "r.example.org:5000",
                "127.0.0.1:5000",
                "[::1]:5000",
                "localhost",
                "r:65535",
                "r:99999",
                "r:port",
                "[::1",
                "-r.example.org",
                "r-.example.org",
                "r_x.org",
                "r..org",
                "http://r",
                "r:5000/x",
            ],
        ),
        (
            &repository,
            slipway::api::validate_repository,
            &[
                "wiki/gollum",
                "a.b_c__d---e/f",
                "-a",
                "a-",
                "a___b",
                "A/b",
                "a//b",
            ],
        ),
        (
            &tag,
            slipway::api::validate_tag,
            &["latest", "_x", "V1.2-rc", "-x", ".x", "a:b", "é"],
        ),
    ];
    for (re, check, values) in cases {
        for v in values {
            assert_eq!(re.is_match(v), check(v).is_ok(), "{v}: CEL vs slipway");
        }
    }
}

fn collect_rules(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::Array(rs)) = m.get("x-kubernetes-validations") {
                out.extend(
                    rs.iter()
                        .filter_map(|r| r["rule"].as_str().map(String::from)),
                );
            }
            m.values().for_each(|x| collect_rules(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_rules(x, out)),
        _ => {}
    }
}
