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
