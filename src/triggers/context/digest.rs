//! The digest of a `path` context as Docker would see it: the entries
//! [`context::plan`] sends (after `.dockerignore`, the Dockerfile and `.dockerignore`
//! always in, escaping symlinks refused), each by path, kind, mode and content or link
//! target. Times, owners and the walk's order are left out, so `touch` or a
//! re-checkout of identical files changes nothing.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::runner::context::{self, Entry, EntryKind};
use crate::{Error, Result};

/// Bumped whenever the record format changes, so old and new digests never match.
const FORMAT: &[u8] = b"slipway-context-digest-v1\0";
const READ_BUF: usize = 64 * 1024;

/// `sha256:<hex>` of the context at `root` with `dockerfile` (relative to it), as
/// Docker would receive it. Errors are the ones the build would meet (a missing
/// Dockerfile, a symlink leaving the context, an unreadable file).
///
/// Blocking file-system work: call it from a blocking thread in async code.
pub fn digest(root: &Path, dockerfile: &str) -> Result<String> {
    compute(root, dockerfile).map_err(|f| f.error)
}

/// Why a digest could not be computed.
pub(super) struct Failure {
    pub error: crate::Error,
    /// The context itself is unusable (what [`context::plan`] refuses: no directory,
    /// no Dockerfile, an escaping symlink): the build would fail the same way. Else a
    /// file changed under the read, and the change's own event brings a recompute.
    pub unusable: bool,
}

pub(super) fn compute(root: &Path, dockerfile: &str) -> std::result::Result<String, Failure> {
    let plan = context::plan(root, dockerfile).map_err(|error| Failure {
        error,
        unusable: true,
    })?;
    // The plan is sorted today; sorting here keeps the digest independent of that.
    let mut entries: Vec<&Entry> = plan.entries.iter().collect();
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    let mut total = Sha256::new();
    total.update(FORMAT);
    let mut buf = vec![0u8; READ_BUF];
    for e in entries {
        // Length-prefixed fields: no two different contexts give the same byte stream.
        field(&mut total, e.path.as_bytes());
        match e.kind {
            EntryKind::Dir => {
                total.update(b"d");
                total.update(e.mode.to_be_bytes());
            }
            EntryKind::Symlink => {
                total.update(b"l");
                field(
                    &mut total,
                    e.link_target.as_deref().unwrap_or_default().as_bytes(),
                );
            }
            EntryKind::File => {
                total.update(b"f");
                total.update(e.mode.to_be_bytes());
                let follow = e.path == plan.dockerfile;
                let content =
                    file_sha256(root, &e.path, follow, &mut buf).map_err(|error| Failure {
                        error,
                        unusable: false,
                    })?;
                total.update(content);
            }
        }
    }
    Ok(format!("sha256:{}", hex::encode(total.finalize())))
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The content's sha256, read in chunks. `follow`: only for the Dockerfile, which
/// Docker reads through a symlink (the plan checked it stays inside); any other file
/// that became a symlink since the plan is refused rather than followed out.
fn file_sha256(root: &Path, rel: &str, follow: bool, buf: &mut [u8]) -> Result<[u8; 32]> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    if !follow {
        opts.custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
    }
    let mut file: File = opts.open(root.join(rel)).map_err(|e| read_error(rel, &e))?;
    let mut h = Sha256::new();
    loop {
        match file.read(buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(rel, &e)),
        }
    }
    Ok(h.finalize().into())
}

fn read_error(rel: &str, e: &io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => {
            Error::Context(format!("'{rel}' vanished while the context digest was computed").into())
        }
        _ if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => Error::Context(
            format!("'{rel}' became a symlink while the context digest was computed").into(),
        ),
        _ => Error::Context(format!("cannot read '{rel}': {e}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::time::{Duration, SystemTime};

    fn write(root: &Path, rel: &str, data: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }

    /// A context with a Dockerfile, a source tree, and an ignored build directory.
    fn ctx() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "Dockerfile", "FROM scratch\nCOPY . /\n");
        write(r, ".dockerignore", "build\n*.log\n");
        write(r, "src/main.c", "int main() { return 0; }\n");
        write(r, "src/util.c", "void util() {}\n");
        write(r, "build/out.o", "object");
        write(r, "debug.log", "noise");
        dir
    }

    fn d(r: &Path) -> String {
        digest(r, "Dockerfile").unwrap()
    }

    #[test]
    fn has_the_sha256_form_and_is_stable() {
        let dir = ctx();
        let a = d(dir.path());
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        assert_eq!(a, d(dir.path()));
    }

    #[test]
    fn editing_a_file_changes_it() {
        let dir = ctx();
        let before = d(dir.path());
        write(dir.path(), "src/main.c", "int main() { return 1; }\n");
        assert_ne!(before, d(dir.path()));
    }

    #[test]
    fn same_size_edit_changes_it() {
        // Content, not size or time: a one-byte flip of equal length still counts.
        let dir = ctx();
        let before = d(dir.path());
        write(dir.path(), "src/util.c", "void utix() {}\n");
        assert_ne!(before, d(dir.path()));
    }

    #[test]
    fn editing_an_ignored_file_does_not() {
        let dir = ctx();
        let before = d(dir.path());
        write(dir.path(), "build/out.o", "other object");
        write(dir.path(), "build/new.o", "new");
        write(dir.path(), "debug.log", "more noise");
        assert_eq!(before, d(dir.path()));
    }

    #[test]
    fn adding_removing_or_renaming_a_file_changes_it() {
        let dir = ctx();
        let r = dir.path();
        let before = d(r);
        write(r, "src/new.c", "");
        let added = d(r);
        assert_ne!(before, added);
        fs::remove_file(r.join("src/new.c")).unwrap();
        assert_eq!(
            before,
            d(r),
            "back to the same files, back to the same digest"
        );
        fs::rename(r.join("src/util.c"), r.join("src/util2.c")).unwrap();
        assert_ne!(before, d(r));
        fs::create_dir(r.join("empty")).unwrap();
        let with_dir = d(r);
        fs::remove_dir(r.join("empty")).unwrap();
        assert_ne!(with_dir, d(r), "an empty directory reaches the build too");
    }

    #[test]
    fn chmod_changes_it() {
        let dir = ctx();
        let before = d(dir.path());
        let p = dir.path().join("src/main.c");
        let mut perm = fs::metadata(&p).unwrap().permissions();
        perm.set_mode(perm.mode() | 0o111);
        fs::set_permissions(&p, perm).unwrap();
        assert_ne!(before, d(dir.path()));
    }

    #[test]
    fn touch_does_not_change_it() {
        let dir = ctx();
        let before = d(dir.path());
        let later = SystemTime::now() + Duration::from_secs(3600);
        for rel in ["src/main.c", "Dockerfile", "src"] {
            let f = File::open(dir.path().join(rel)).unwrap();
            f.set_modified(later).unwrap();
        }
        assert_eq!(before, d(dir.path()));
    }

    #[test]
    fn dockerfile_and_dockerignore_count_even_when_ignored() {
        let dir = ctx();
        let r = dir.path();
        // Docker sends both whatever .dockerignore says about them.
        write(
            r,
            ".dockerignore",
            "build\n*.log\nDockerfile\n.dockerignore\n",
        );
        let before = d(r);
        write(r, "Dockerfile", "FROM scratch\nCOPY src /src\n");
        let edited = d(r);
        assert_ne!(before, edited);
        write(
            r,
            ".dockerignore",
            "build\n*.log\nDockerfile\n.dockerignore\n# note\n",
        );
        assert_ne!(edited, d(r));
    }

    #[test]
    fn symlink_target_counts_and_is_not_followed_out() {
        let dir = ctx();
        let r = dir.path();
        symlink("src/main.c", r.join("link")).unwrap();
        let before = d(r);
        fs::remove_file(r.join("link")).unwrap();
        symlink("src/util.c", r.join("link")).unwrap();
        assert_ne!(before, d(r));

        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret", "s");
        symlink(outside.path().join("secret"), r.join("out")).unwrap();
        let err = digest(r, "Dockerfile").unwrap_err().to_string();
        assert!(err.contains("outside the build context"), "{err}");
    }

    #[test]
    fn a_symlinked_dockerfile_is_read_through_the_link() {
        let dir = ctx();
        let r = dir.path();
        write(r, "docker/Dockerfile.real", "FROM scratch\n");
        fs::remove_file(r.join("Dockerfile")).unwrap();
        symlink("docker/Dockerfile.real", r.join("Dockerfile")).unwrap();
        let before = d(r);
        write(r, "docker/Dockerfile.real", "FROM scratch\nCOPY . /\n");
        assert_ne!(before, d(r));
    }

    #[test]
    fn a_missing_context_or_dockerfile_is_an_error() {
        let dir = ctx();
        assert!(digest(&dir.path().join("nope"), "Dockerfile").is_err());
        let err = digest(dir.path(), "Other").unwrap_err().to_string();
        assert!(err.contains("not found"), "{err}");
    }
}
