//! The README's examples build, in order (base first), with `slipway watch --once`;
//! examples/gitops too (its kustomization.yaml is not a DockerBuild and is skipped:
//! tests/it/gitops.rs applies that folder to Kubernetes).

use crate::common::*;

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn rewrite(dir: &std::path::Path, reg: &str) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rewrite(&p, reg);
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            let text = text.replace("127.0.0.1:5000", reg);
            let text = text.split("\nstatus:\n").next().unwrap().to_string();
            std::fs::write(p, text).unwrap();
        }
    }
}

#[test]
fn examples_build_base_first_and_write_their_status() {
    let reg = registry();
    let fx = Fixture::new();
    let dir = fx.path("examples");
    copy_dir(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")),
        &dir,
    );
    // point them at the test registry, with no status from an earlier local run
    rewrite(&dir, &reg);
    std::fs::copy(busybox(), dir.join("base/context/busybox")).unwrap();

    let out = crate::common::watcher::watch_once(&dir, &["--concurrency", "4"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "8 succeeded, 0 failed, 0 not built"
    );
    // the leaves waited for the base instead of failing to find it
    assert!(log.contains("waiting for base image"), "{log}");

    let legacy = status_in(&dir.join("legacy.yaml"), "legacy").unwrap();
    assert_eq!(
        legacy["pushedTags"][0],
        format!("{reg}/slipway-examples/legacy:2024")
    );
    let checksums = status_in(&dir.join("tools.yaml"), "checksums").unwrap();
    assert_eq!(checksums["phase"], "Succeeded");
    assert_eq!(checksums["pushedTags"].as_array().unwrap().len(), 2);
    for name in ["motd", "web", "worker"] {
        let s = status_in(&dir.join(format!("gitops/{name}.yaml")), name).unwrap();
        assert_eq!(s["phase"], "Succeeded", "gitops/{name}.yaml: {s}");
    }
}
