//! What the reconciler has been told exists, by key, and which of it the (re)list
//! under way has shown again: a relist after a lost watch reports the deletions it
//! missed. One map, each entry stamped with the listing that last saw it, instead of a
//! second set of every key, which at 100,000 objects was megabytes held at the
//! controller's memory peak (the first list; benches/kube_sync.rs).

use std::collections::HashMap;

use uuid::Uuid;

#[derive(Default)]
pub(super) struct Known {
    /// key -> (uid, the listing that last saw it; 0: seen outside a listing).
    objects: HashMap<String, (Uid, u32)>,
    /// The listing under way, or 0.
    listing: u32,
    listings: u32,
}

impl Known {
    /// A (re)list starts: what it does not show by [`Known::listed`] is gone.
    pub fn listing(&mut self) {
        self.listings = self.listings.wrapping_add(1).max(1);
        self.listing = self.listings;
    }

    /// The object `key` of `uid` exists; `deleting`: it carries a deletionTimestamp,
    /// and the reconciler hears of it as deleted.
    pub fn applied(&mut self, key: &str, uid: &str, deleting: bool) {
        if deleting {
            self.objects.remove(key);
            return;
        }
        let entry = (Uid::new(uid), self.listing);
        match self.objects.get_mut(key) {
            Some(e) => *e = entry,
            None => {
                self.objects.insert(key.to_string(), entry);
            }
        }
    }

    pub fn deleted(&mut self, key: &str) {
        self.objects.remove(key);
    }

    /// The listing is complete: forgets and returns (key, uid) of what it did not
    /// show, by key.
    pub fn listed(&mut self) -> Vec<(String, String)> {
        let now = std::mem::take(&mut self.listing);
        let gone: Vec<String> = self
            .objects
            .iter()
            .filter(|(_, (_, seen))| *seen != now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<(String, String)> = gone
            .into_iter()
            .filter_map(|k| self.objects.remove(&k).map(|(uid, _)| (k, uid.text())))
            .collect();
        out.sort();
        out
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }
}

/// A uid as Kubernetes writes it (a lowercase hyphenated UUID) in 16 bytes instead
/// of a 36-character string; anything else as written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Uid {
    Uuid(Uuid),
    Other(Box<str>),
}

impl Uid {
    fn new(s: &str) -> Self {
        match Uuid::try_parse(s) {
            Ok(u) if u.hyphenated().to_string() == s => Self::Uuid(u),
            _ => Self::Other(s.into()),
        }
    }

    fn text(&self) -> String {
        match self {
            Self::Uuid(u) => u.hyphenated().to_string(),
            Self::Other(s) => s.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0b5e9c1e-7f3a-4c2d-9e8f-1a2b3c4d5e6f";

    #[test]
    fn a_relist_reports_exactly_what_it_did_not_show_with_its_uid() {
        let mut k = Known::default();
        k.listing();
        k.applied("ns/a", A, false);
        k.applied("ns/b", "uid-b", false);
        k.applied("ns/c", "uid-c", false);
        assert_eq!(
            k.listed(),
            vec![],
            "the first list shows everything it lists"
        );
        assert_eq!(k.len(), 3);
        // changes seen while watching, then the watch is lost: b is deleted and d
        // created meanwhile, a relist shows a, c and d
        k.applied("ns/c", "uid-c", false);
        k.listing();
        k.applied("ns/a", A, false);
        k.applied("ns/c", "uid-c", false);
        k.applied("ns/d", "uid-d", false);
        assert_eq!(k.listed(), vec![("ns/b".to_string(), "uid-b".to_string())]);
        assert_eq!(k.len(), 3);
        // a relist that shows nothing: everything is gone, with the uids it had
        k.listing();
        assert_eq!(
            k.listed(),
            vec![
                ("ns/a".to_string(), A.to_string()),
                ("ns/c".to_string(), "uid-c".to_string()),
                ("ns/d".to_string(), "uid-d".to_string()),
            ]
        );
        assert_eq!(k.len(), 0);
    }

    #[test]
    fn deleted_and_deleting_objects_are_not_reported_again() {
        let mut k = Known::default();
        k.listing();
        k.applied("ns/a", "uid-a", false);
        k.applied("ns/b", "uid-b", false);
        k.listed();
        k.deleted("ns/a"); // a watch Delete: the reconciler was told
        k.applied("ns/b", "uid-b", true); // a deletionTimestamp: told too
        k.listing();
        assert_eq!(k.listed(), vec![]);
        assert_eq!(k.len(), 0);
    }

    #[test]
    fn a_namesake_replaces_the_uid_the_deletion_names() {
        let mut k = Known::default();
        k.applied("ns/a", "uid-1", false);
        k.applied("ns/a", A, false);
        k.listing();
        assert_eq!(k.listed(), vec![("ns/a".to_string(), A.to_string())]);
    }

    #[test]
    fn uids_read_back_exactly_as_written() {
        for s in [
            A,
            "0B5E9C1E-7F3A-4C2D-9E8F-1A2B3C4D5E6F",
            "0b5e9c1e7f3a4c2d9e8f1a2b3c4d5e6f",
            "{0b5e9c1e-7f3a-4c2d-9e8f-1a2b3c4d5e6f}",
            "file:builds/app.yaml",
            "",
        ] {
            assert_eq!(Uid::new(s).text(), s);
        }
        assert!(matches!(Uid::new(A), Uid::Uuid(_)));
    }
}
