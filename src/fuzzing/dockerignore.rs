//! `.dockerignore` patterns.

use crate::runner::dockerignore::DockerIgnore;

/// Input: the `.dockerignore` text, a NUL, then paths one per line. Parsing and
/// matching never panic, and a directory the context walk may skip whole
/// (`can_skip_dir`) only holds excluded paths: skipping loses nothing.
pub fn check_dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (patterns, paths) = text.split_once('\0').unwrap_or((&text, ""));
    let Ok(ignore) = DockerIgnore::parse(patterns) else {
        return;
    };
    // the paths the context walk asks about: relative, no empty, `.` or `..` component
    let walkable = |p: &&str| p.split('/').all(|c| !matches!(c, "" | "." | ".."));
    for path in paths.lines().filter(walkable) {
        let excluded = ignore.is_excluded(path);
        for (i, _) in path.match_indices('/') {
            let dir = &path[..i];
            if !dir.is_empty() && ignore.can_skip_dir(dir) {
                assert!(
                    excluded,
                    "'{dir}' may be skipped but '{path}' under it is not excluded"
                );
            }
        }
    }
}
