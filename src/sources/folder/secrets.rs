//! Build secrets of a resource file (watch folder, `slipway build`): each
//! `spec.secrets[].file` read from beside the resource's file. Messages name the id
//! and the path, never the content.

use std::path::Path;

use crate::api::BuildSecret;
use crate::runner::BuildSecrets;
use crate::runner::context::resolve_beside;
use crate::{Error, Result};

/// BuildKit refuses a secret larger than this (`MaxSecretSize` in its session code).
pub const MAX_SECRET_BYTES: u64 = 500 * 1024;

/// The values of `secrets`, by id, read from files relative to `base`.
pub fn read_files(secrets: &[BuildSecret], base: Option<&Path>) -> Result<BuildSecrets> {
    let base = base.unwrap_or(Path::new("."));
    let mut out = BuildSecrets::default();
    for s in secrets {
        let id = &s.id;
        let Some(file) = &s.file else {
            return Err(Error::InvalidSpec(format!(
                "spec.secrets '{id}': secretRef names a Kubernetes Secret; in a watch folder or with `slipway build` give file, a path beside the resource's file"
            )));
        };
        let path = resolve_beside(base, file, &format!("spec.secrets '{id}' file"))?;
        let cannot = |e: std::io::Error| {
            Error::InvalidSpec(format!(
                "spec.secrets '{id}': cannot read file '{file}' (in {}): {e}",
                base.display()
            ))
        };
        let meta = std::fs::metadata(&path).map_err(cannot)?;
        if !meta.is_file() {
            return Err(Error::InvalidSpec(format!(
                "spec.secrets '{id}': '{file}' (in {}) is not a file",
                base.display()
            )));
        }
        check_size(id, meta.len())?;
        out.0
            .insert(id.clone(), std::fs::read(&path).map_err(cannot)?);
    }
    Ok(out)
}

/// A secret BuildKit would refuse is refused here, saying which.
pub fn check_size(id: &str, len: u64) -> Result<()> {
    if len > MAX_SECRET_BYTES {
        return Err(Error::InvalidSpec(format!(
            "spec.secrets '{id}' is {len} bytes; BuildKit takes secrets of at most {MAX_SECRET_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SecretKeyRef;

    fn file(id: &str, path: &str) -> BuildSecret {
        BuildSecret {
            id: id.into(),
            file: Some(path.into()),
            ..Default::default()
        }
    }

    #[test]
    fn files_are_read_beside_the_resource_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/token"), "s3cr3t-value").unwrap();
        let got = read_files(&[file("npm", "sub/token")], Some(dir.path())).unwrap();
        assert_eq!(got.0["npm"], b"s3cr3t-value");
        assert_eq!(format!("{got:?}"), r#"{"npm"}"#);

        let missing = read_files(&[file("npm", "nope")], Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            missing,
            format!(
                "spec.secrets 'npm': cannot read file 'nope' (in {}): No such file or directory (os error 2)",
                dir.path().display()
            )
        );
        let dir_not_file = read_files(&[file("npm", "sub")], Some(dir.path())).unwrap_err();
        assert!(dir_not_file.to_string().contains("is not a file"));
    }

    #[test]
    fn paths_stay_beside_the_resource() {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("builds");
        std::fs::create_dir(&base).unwrap();
        std::fs::write(root.path().join("outside"), "not yours").unwrap();
        std::os::unix::fs::symlink("../outside", base.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", base.join("abs")).unwrap();
        let inside = "it must be a path inside the directory of the resource's file";
        for (path, why) in [
            ("../outside", "climbs out with '..'"),
            ("/etc/hostname", "is an absolute path"),
            ("link", "leads outside through symlink 'link'"),
            ("abs", "leads outside through symlink 'abs'"),
        ] {
            let e = read_files(&[file("x", path)], Some(&base)).unwrap_err();
            assert!(matches!(e, Error::InvalidSpec(_)), "{e:?}");
            assert_eq!(
                e.to_string(),
                format!("spec.secrets 'x' file '{path}' {why}: {inside}")
            );
        }
    }

    #[test]
    fn a_secret_ref_is_for_kubernetes_and_a_huge_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = BuildSecret {
            id: "npm".into(),
            secret_ref: Some(SecretKeyRef {
                name: "s".into(),
                key: "k".into(),
            }),
            ..Default::default()
        };
        let e = read_files(&[r], Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("secretRef names a Kubernetes Secret"), "{e}");
        let big = vec![b'x'; MAX_SECRET_BYTES as usize + 1];
        std::fs::write(dir.path().join("big"), big).unwrap();
        let e = read_files(&[file("big", "big")], Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "spec.secrets 'big' is 512001 bytes; BuildKit takes secrets of at most 512000 bytes"
        );
    }
}
