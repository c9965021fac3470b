//! The url source's tarball unpacker: no write outside the context, ever.
//!
//! Input: `RAW\n` then archive bytes (tar, tar.gz, tar.zst), or a tar described one
//! entry a line, `KIND PATH [ARG]`: `f` file (ARG its content), `d` directory,
//! `s` symlink and `h` hard link (ARG the target). A leading `@` in a path or target
//! stands for the sandbox's absolute path, so absolute targets can reach the
//! sentinel files beside the context.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::runner::fetch::{UrlLimits, unpack};

/// Unpacks the input into `sandbox/ctx` beside `sandbox/outside`; whatever the
/// outcome, nothing but `ctx` changed in the sandbox, and a context accepted holds no
/// symlink reaching out of it.
pub fn check_unpack(data: &[u8]) {
    let sandbox = tempfile::tempdir().expect("a temp dir");
    let root = sandbox.path();
    std::fs::create_dir(root.join("outside")).unwrap();
    std::fs::write(root.join("outside/secret"), b"keep").unwrap();
    std::os::unix::fs::symlink("outside", root.join("ln")).unwrap();
    let seen = snapshot(root);
    let archive = match data.strip_prefix(b"RAW\n") {
        Some(raw) => raw.to_vec(),
        None => describe(&String::from_utf8_lossy(data), &root.to_string_lossy()),
    };
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(&archive).unwrap();
    let ctx = root.join("ctx");
    let limits = UrlLimits {
        max_bytes: 1 << 20,
        ..Default::default()
    };
    let result = unpack(file, &ctx, limits, &CancellationToken::new());
    assert_eq!(
        snapshot(root),
        seen,
        "the unpacker wrote outside the context"
    );
    if result.is_ok() {
        let real_ctx = ctx.canonicalize().unwrap();
        for entry in walk(&ctx) {
            let meta = entry.symlink_metadata().unwrap();
            if !meta.file_type().is_symlink() {
                continue;
            }
            let target = std::fs::read_link(&entry).unwrap();
            assert!(!target.has_root(), "{entry:?} -> {target:?} accepted");
            if let Ok(real) = entry.canonicalize() {
                assert!(real.starts_with(&real_ctx), "{entry:?} leads to {real:?}");
            }
        }
    }
}

/// Everything in the sandbox but the context: kind, mode, content or target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    walk(root)
        .into_iter()
        // the root itself changes: it gains `ctx`
        .filter(|p| p != root && !p.starts_with(root.join("ctx")))
        .map(|p| {
            let meta = p.symlink_metadata().unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).unwrap())
            } else if meta.is_file() {
                format!("file {:?}", std::fs::read(&p).unwrap())
            } else {
                "dir".to_string()
            };
            let mode = meta.permissions().mode();
            (
                p.display().to_string(),
                format!("{what} {mode:o} {}", meta.nlink()),
            )
        })
        .collect()
}

/// Every path under `dir` (itself included), not following symlinks.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        i += 1;
        if p.symlink_metadata().is_ok_and(|m| m.is_dir())
            && let Ok(entries) = std::fs::read_dir(&p)
        {
            out.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out
}

/// A tar archive from the one-entry-a-line description, names written raw (the tar
/// crate's builder refuses `..`, which is what we want to feed the unpacker).
fn describe(text: &str, root: &str) -> Vec<u8> {
    let expand = |s: &str| match s.strip_prefix('@') {
        Some(rest) => format!("{root}{rest}"),
        None => s.to_string(),
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(kind), Some(path)) = (parts.next(), parts.next()) else {
            continue;
        };
        let arg = expand(parts.next().unwrap_or(""));
        let mut h = tar::Header::new_old();
        let (entry_type, mode, data) = match kind {
            "f" => (tar::EntryType::Regular, 0o644, arg.as_bytes()),
            "x" => (tar::EntryType::Regular, 0o4777, arg.as_bytes()),
            "d" => (tar::EntryType::Directory, 0o755, &b""[..]),
            "s" => (tar::EntryType::Symlink, 0o777, &b""[..]),
            "h" => (tar::EntryType::Link, 0o644, &b""[..]),
            _ => continue,
        };
        h.set_entry_type(entry_type);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        let raw = h.as_old_mut();
        let name = expand(path);
        let n = name.len().min(raw.name.len());
        raw.name[..n].copy_from_slice(&name.as_bytes()[..n]);
        if matches!(kind, "s" | "h") {
            let n = arg.len().min(raw.linkname.len());
            raw.linkname[..n].copy_from_slice(&arg.as_bytes()[..n]);
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
