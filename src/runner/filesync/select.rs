//! Which entries a DiffCopy sends, in which order, with which stat: pure, so the
//! parts BuildKit is strict about (order, parents, mode bits) are tested without it.
//!
//! fsutil's receiver checks that stats arrive in its walk order — each directory's
//! names sorted bytewise, a directory's children right after it (`a`, `a/x`, `a-b`) —
//! and that every path's parent directory came before it.

use bollard_buildkit_proto::fsutil::types::Stat;

use super::Item;
use crate::runner::context::EntryKind;
use crate::runner::dockerignore::DockerIgnore;

/// Go's `os.FileMode` bits, which fsutil sends where Unix has `S_IF*`.
pub(super) mod go_mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const STICKY: u32 = 1 << 20;
    /// `os.ModeType`: a stat with none of these is a regular file, whose data the
    /// receiver may request.
    pub const TYPE: u32 = DIR | SYMLINK | (1 << 26) | (1 << 25) | (1 << 24) | (1 << 21) | (1 << 19);
}

/// Longest symlink chain followed for `followpaths`, as Linux's ELOOP.
const MAX_HOPS: usize = 40;

/// What the receiver asked for in the request's metadata (fsutil's `FilterOpt`).
#[derive(Debug, Default)]
pub(super) struct Request {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub follow: Vec<String>,
}

/// The request's patterns, compiled with the `.dockerignore` matcher: BuildKit's
/// include/exclude patterns are moby/patternmatcher's, the same semantics.
pub(super) struct Filter<'a> {
    include: Option<DockerIgnore>,
    exclude: Option<DockerIgnore>,
    /// Paths no exclude pattern removes (the Dockerfile and `.dockerignore`, which the
    /// context always carries).
    keep: &'a [String],
}

impl<'a> Filter<'a> {
    pub(super) fn new(items: &[Item], req: &Request, keep: &'a [String]) -> Result<Self, String> {
        let mut include = req.include.clone();
        if !req.follow.is_empty() {
            include.extend(follow_links(items, &req.follow));
        }
        let compile = |what: &str, patterns: &[String]| -> Result<Option<DockerIgnore>, String> {
            if patterns.is_empty() {
                return Ok(None);
            }
            // one per line; a leading `#` would read as a comment there
            let text = patterns
                .iter()
                .map(|p| match p.starts_with('#') {
                    true => format!("\\{p}"),
                    false => p.clone(),
                })
                .collect::<Vec<_>>()
                .join("\n");
            DockerIgnore::parse(&text)
                .map(Some)
                .map_err(|e| format!("invalid {what} patterns {patterns:?}: {e}"))
        };
        Ok(Filter {
            include: compile("include", &include)?,
            exclude: compile("exclude", &req.exclude)?,
            keep,
        })
    }

    fn passes(&self, path: &str) -> bool {
        // a path is included when it or a parent matches, as it is excluded
        let included = self.include.as_ref().is_none_or(|i| i.is_excluded(path));
        let excluded = self.exclude.as_ref().is_some_and(|e| e.is_excluded(path))
            && !self.keep.iter().any(|k| k == path);
        included && !excluded
    }
}

/// Indexes of the items to send, in order. A directory the filter leaves out is
/// still sent, just before the first thing below it that is sent, as fsutil does.
pub(super) fn select(items: &[Item], filter: &Filter) -> Vec<usize> {
    let mut out = Vec::new();
    // directories above the current item: (index, sent yet)
    let mut parents: Vec<(usize, bool)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = &item.entry.path;
        while let Some(&(p, _)) = parents.last() {
            let dir = &items[p].entry.path;
            if path.len() > dir.len()
                && path.starts_with(dir.as_str())
                && path.as_bytes()[dir.len()] == b'/'
            {
                break;
            }
            parents.pop();
        }
        let sent = item.own && filter.passes(path);
        if sent {
            for (p, done) in parents.iter_mut().filter(|(_, done)| !*done) {
                out.push(*p);
                *done = true;
            }
            out.push(i);
        }
        if item.entry.kind == EntryKind::Dir {
            parents.push((i, sent));
        }
    }
    out
}

/// The stat fsutil would send for this item: Go mode bits, nanosecond mtime, uid and
/// gid 0 (as the tar carried them, and as `docker build` resets them), the link
/// target's length as a symlink's size.
pub(super) fn stat(item: &Item) -> Stat {
    let e = &item.entry;
    let mut mode = e.mode & 0o777;
    for (unix, go) in [
        (0o4000, go_mode::SETUID),
        (0o2000, go_mode::SETGID),
        (0o1000, go_mode::STICKY),
    ] {
        if e.mode & unix != 0 {
            mode |= go;
        }
    }
    let link = e.link_target.clone().unwrap_or_default();
    let (kind, size) = match e.kind {
        EntryKind::Dir => (go_mode::DIR, 0),
        EntryKind::Symlink => (go_mode::SYMLINK, link.len() as i64),
        EntryKind::File => (
            0,
            item.content
                .as_ref()
                .map_or(e.size, |c| c.len() as u64)
                .try_into()
                .unwrap_or(i64::MAX),
        ),
    };
    Stat {
        path: e.path.clone(),
        mode: mode | kind,
        size,
        mod_time: e.mtime.saturating_mul(1_000_000_000) + i64::from(e.mtime_nsec),
        linkname: link,
        ..Default::default()
    }
}

/// `followpaths`: each path, and every symlink met resolving it, with the link's
/// target followed in turn (fsutil's `FollowLinks`; its `*` wildcards are not
/// followed, the pattern itself is still included).
fn follow_links(items: &[Item], paths: &[String]) -> Vec<String> {
    let link = |p: &str| {
        items
            .iter()
            .find(|i| i.entry.path == p && i.entry.kind == EntryKind::Symlink)
            .and_then(|i| i.entry.link_target.clone())
    };
    let mut out = Vec::new();
    for p in paths {
        let mut pending = clean(p);
        let mut hops = 0;
        'resolve: loop {
            let parts: Vec<&str> = pending.split('/').collect();
            for n in 1..=parts.len() {
                let current = parts[..n].join("/");
                let Some(target) = link(&current) else {
                    continue;
                };
                out.push(current.clone());
                hops += 1;
                if hops > MAX_HOPS {
                    break 'resolve;
                }
                let base = match target.starts_with('/') {
                    true => String::new(),
                    false => parts[..n - 1].join("/"),
                };
                let rest = parts[n..].join("/");
                pending = clean(&format!("{base}/{target}/{rest}"));
                continue 'resolve;
            }
            out.push(pending);
            break;
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// `a//b/./c/../d` → `a/b/d`, never above the root.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests;
