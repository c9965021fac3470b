//! Replacing a file by a merged copy of itself without losing a user's edit made
//! meanwhile. A plain "check, then rename" still loses an edit landing between the
//! two, so on Linux the copy is swapped in with `renameat2(RENAME_EXCHANGE)`: after
//! the swap the temp name holds exactly what the path held at that instant, which
//! is then checked against what the merge started from. Bytes appended to it are
//! carried over to the new file; a save that replaced it is put back and merged
//! again. Elsewhere (or where the filesystem cannot exchange) the check is made
//! just before a plain rename.
//!
//! A writer that opened the old file before the swap (`>>` between its open and its
//! write) may write into it after: the swapped-out file is drained until no one has
//! it open for writing, which Linux tells through a read lease (granted only then).
//! What no rename-based write can keep: bytes a program holding the old file open
//! for good (a logger) writes after `WRITER_WAIT`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempPath;
use tracing::warn;

/// Merges tried before giving up on a file that changes faster than we write it.
const ATTEMPTS: usize = 20;
const TMP_SUFFIX: &str = ".slipway-tmp";
/// How long writers still holding the swapped-out file get to close it.
const WRITER_WAIT: Duration = Duration::from_secs(2);
const WRITER_POLL: Duration = Duration::from_millis(5);
/// Without leases: a file modified this recently may have an appender in the
/// middle of a write, which gets a short grace to finish it.
const BUSY: Duration = Duration::from_millis(100);
const GRACE: Duration = Duration::from_millis(20);

/// Points where a test plays a user's edit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stage {
    /// The merged copy is written, the file not yet re-checked.
    Merged,
    /// The file was re-checked; the swap comes next.
    Checked,
}

/// Replaces `path` by `merge(its text)`, redoing the merge from the newest text
/// whenever the file changed meanwhile. `merge` returning None (or the same text)
/// leaves the file alone; so does a file that no longer exists.
pub fn update(
    path: &Path,
    merge: impl Fn(&str) -> Option<String>,
    hook: &mut dyn FnMut(Stage),
) -> io::Result<()> {
    for _ in 0..ATTEMPTS {
        let Some(base) = read(path)? else {
            return Ok(());
        };
        let text = std::str::from_utf8(&base)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8"))?;
        let Some(new) = merge(text) else {
            return Ok(());
        };
        if new == text {
            return Ok(());
        }
        let tmp = temp_copy(path, new.as_bytes())?;
        hook(Stage::Merged);
        match read(path)? {
            None => return Ok(()),
            Some(now) if now != base => continue, // edited while we merged
            Some(_) => {}
        }
        hook(Stage::Checked);
        if !exchange(&tmp, path)? {
            tmp.persist(path).map_err(|e| e.error)?;
            return Ok(());
        }
        // `tmp` now names what was at `path` an instant ago
        let mut old = File::open(&tmp)?;
        let mut was = Vec::new();
        old.read_to_end(&mut was)?;
        if let Some(added) = was.strip_prefix(&base[..]) {
            // the old file stays readable through `old`; its name goes at once
            tmp.close()?;
            append(path, added)?;
            return carry_appends(&mut old, path);
        }
        // replaced meanwhile (an editor's save): put it back, then merge again
        if !exchange(&tmp, path)? {
            return Err(io::Error::other("cannot swap the file back"));
        }
        let mut ours = File::open(&tmp)?;
        tmp.close()?;
        let mut got = Vec::new();
        ours.read_to_end(&mut got)?;
        if let Some(added) = got.strip_prefix(new.as_bytes()) {
            append(path, added)?;
            carry_appends(&mut ours, path)?;
        }
    }
    Err(io::Error::other(
        "the file kept changing while the status was written; not written",
    ))
}

fn read(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `content` in a hidden temp file next to `path` (the watcher skips hidden names),
/// with `path`'s permissions.
fn temp_copy(path: &Path, content: &[u8]) -> io::Result<TempPath> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(TMP_SUFFIX)
        .tempfile_in(dir)?;
    tmp.write_all(content)?;
    if let Ok(meta) = std::fs::metadata(path) {
        tmp.as_file().set_permissions(meta.permissions())?;
    }
    Ok(tmp.into_temp_path())
}

fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    OpenOptions::new().append(true).open(path)?.write_all(bytes)
}

/// Moves to `path` what writers still holding the swapped-out `old` write into it
/// (it is read up to its end already, and has no name any more, so no new writer
/// can open it): until none of them has it open.
fn carry_appends(old: &mut File, path: &Path) -> io::Result<()> {
    let deadline = Instant::now() + WRITER_WAIT;
    loop {
        // asked before reading: once no writer is left, the read gets every byte
        let writers = open_for_writing(old);
        let mut added = Vec::new();
        old.read_to_end(&mut added)?;
        append(path, &added)?;
        match writers {
            Some(false) => return Ok(()),
            Some(true) if Instant::now() < deadline => std::thread::sleep(WRITER_POLL),
            Some(true) => {
                warn!(
                    path = %path.display(),
                    "a program keeps the replaced copy of this file open for writing; \
                     what it writes there from now on is not carried over"
                );
                return Ok(());
            }
            None => return carry_recent_appends(old, path),
        }
    }
}

/// Where leases are unavailable: the grace for a writer caught mid-write.
fn carry_recent_appends(old: &mut File, path: &Path) -> io::Result<()> {
    let busy = old
        .metadata()?
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|d| d < BUSY);
    if !busy {
        return Ok(());
    }
    for _ in 0..5 {
        std::thread::sleep(GRACE);
        let mut added = Vec::new();
        old.read_to_end(&mut added)?;
        if added.is_empty() {
            break;
        }
        append(path, &added)?;
    }
    Ok(())
}

/// Whether anyone has `file` open for writing: Linux grants a read lease on a
/// read-only descriptor only when no one has (released at once). None where
/// leases are unavailable (another owner's file, NFS, not Linux).
#[cfg(target_os = "linux")]
fn open_for_writing(file: &File) -> Option<bool> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl with integer arguments on a descriptor `file` keeps open.
    if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) } == 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        return Some(false);
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => Some(true),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn open_for_writing(_: &File) -> Option<bool> {
    None
}

/// Swaps the two names atomically; false where the system cannot.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
        Ok(()) => Ok(true),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_: &Path, _: &Path) -> io::Result<bool> {
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status line at the end, standing in for the YAML merge.
    fn merge(t: &str) -> Option<String> {
        let mut out: String = t
            .lines()
            .filter(|l| !l.starts_with("status"))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str("status: ok\n");
        Some(out)
    }

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.yaml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    /// An editor's save: a new file renamed over the old one.
    fn save(p: &Path, text: &str) {
        let tmp = p.with_file_name("editor.swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, p).unwrap();
    }

    fn only_the_file_left(dir: &Path) {
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["f.yaml"]);
    }

    #[test]
    fn a_save_just_before_the_swap_is_merged_not_lost() {
        let (dir, p) = file("a: 1\nstatus: old\n");
        let mut saved = false;
        update(&p, merge, &mut |s| {
            if s == Stage::Checked && !saved {
                saved = true;
                save(&p, "a: 1\n# the user's line\nstatus: old\n");
            }
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "a: 1\n# the user's line\nstatus: ok\n"
        );
        only_the_file_left(dir.path());
    }

    #[test]
    fn an_append_just_before_the_swap_is_kept() {
        let (dir, p) = file("a: 1\n");
        let mut done = false;
        update(&p, merge, &mut |s| {
            if s == Stage::Checked && !done {
                done = true;
                append(&p, b"# appended\n").unwrap();
            }
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "a: 1\nstatus: ok\n# appended\n"
        );
        only_the_file_left(dir.path());
    }

    /// The file after a writer opened it just before the swap and wrote `pause`
    /// later (a `>>` descheduled between its open and its write).
    fn written_after_the_swap(pause: Duration) -> (tempfile::TempDir, String) {
        let (dir, p) = file("a: 1\n");
        let mut writer = None;
        update(&p, merge, &mut |s| {
            if s == Stage::Checked && writer.is_none() {
                let mut f = OpenOptions::new().append(true).open(&p).unwrap();
                writer = Some(std::thread::spawn(move || {
                    std::thread::sleep(pause);
                    f.write_all(b"# late\n").unwrap();
                }));
            }
        })
        .unwrap();
        writer.unwrap().join().unwrap();
        (dir, std::fs::read_to_string(&p).unwrap())
    }

    #[test]
    fn a_writer_that_opened_the_old_file_before_the_swap_finishes_into_the_new_one() {
        let (dir, text) = written_after_the_swap(Duration::from_millis(3));
        assert_eq!(text, "a: 1\nstatus: ok\n# late\n");
        only_the_file_left(dir.path());
    }

    /// Long after any grace: only knowing no writer is left makes this safe.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_writer_paused_between_its_open_and_its_write_loses_nothing() {
        let (dir, text) = written_after_the_swap(Duration::from_millis(400));
        assert_eq!(text, "a: 1\nstatus: ok\n# late\n");
        only_the_file_left(dir.path());
    }

    #[test]
    fn an_edit_while_merging_is_merged_again() {
        let (dir, p) = file("a: 1\n");
        let mut n = 0;
        update(&p, merge, &mut |s| {
            if s == Stage::Merged && n < 3 {
                n += 1;
                save(&p, &format!("a: 1\n# edit {n}\n"));
            }
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "a: 1\n# edit 3\nstatus: ok\n"
        );
        only_the_file_left(dir.path());
    }

    #[test]
    fn a_file_that_never_settles_keeps_the_users_last_edit() {
        let (dir, p) = file("a: 1\n");
        let mut n = 0;
        let e = update(&p, merge, &mut |s| {
            if s == Stage::Checked {
                n += 1;
                save(&p, &format!("b: {n}\n"));
            }
        })
        .unwrap_err();
        assert!(e.to_string().contains("kept changing"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("b: {n}\n"));
        only_the_file_left(dir.path());
    }

    #[test]
    fn a_deleted_file_is_not_recreated() {
        let (dir, p) = file("a: 1\n");
        update(&p, merge, &mut |s| {
            if s == Stage::Merged {
                std::fs::remove_file(&p).unwrap();
            }
        })
        .unwrap();
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
