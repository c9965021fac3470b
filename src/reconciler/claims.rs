//! Who holds each name. Several files may claim one `namespace/name`: the first valid
//! claim holds it and builds; the other valid ones are duplicates, told so in their
//! own file and taking over when the holder goes. A document that cannot be read (or
//! whose name is not a valid name) holds nothing, so it never stops a valid one.
//! Pure bookkeeping: the controller does the I/O.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::kept::Kept;
use crate::sources::Resource;

#[derive(Default)]
pub struct Claims {
    /// Boxed: an empty slot of the table then costs a pointer, not a holder.
    names: HashMap<String, Box<Holders>>,
    /// (key, origin) of each document that claims a name but cannot be built.
    broken: HashSet<(String, String)>,
}

struct Holders {
    holder: Kept,
    /// Other files defining the same name, by origin: first in line takes over.
    others: BTreeMap<String, Kept>,
}

/// What a valid claim amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Claimed {
    /// It holds the name (new, or a new version of the holder).
    Holds,
    /// The name is held by the resource from `holder`.
    Duplicate { holder: String },
}

/// What went away when a (key, origin) stopped claiming a name.
#[derive(Debug)]
pub enum Withdrawn {
    /// It held nothing (a duplicate, a broken document, or nothing known).
    Nothing,
    /// It held the name; `next` (a duplicate) holds it now.
    Holder { next: Option<Box<Resource>> },
}

impl Claims {
    /// A valid resource claims its name.
    pub fn apply(&mut self, res: Resource) -> Claimed {
        let key = res.key();
        self.broken.remove(&(key.clone(), res.origin.clone()));
        match self.names.get_mut(&key) {
            None => {
                self.names.insert(
                    key,
                    Box::new(Holders {
                        holder: Kept::new(res),
                        others: BTreeMap::new(),
                    }),
                );
                Claimed::Holds
            }
            Some(h) if h.holder.origin == res.origin => {
                h.holder = Kept::new(res);
                Claimed::Holds
            }
            Some(h) => {
                let holder = h.holder.origin.clone();
                h.others.insert(res.origin.clone(), Kept::new(res));
                Claimed::Duplicate { holder }
            }
        }
    }

    /// The document of `origin` claiming `key` cannot be built as written.
    pub fn broken(&mut self, key: &str, origin: &str) -> Withdrawn {
        let w = self.withdraw(key, origin);
        self.broken.insert((key.to_string(), origin.to_string()));
        w
    }

    /// The document of `origin` no longer claims `key` (its file or document is gone).
    pub fn withdraw(&mut self, key: &str, origin: &str) -> Withdrawn {
        self.broken.remove(&(key.to_string(), origin.to_string()));
        let Some(h) = self.names.get_mut(key) else {
            return Withdrawn::Nothing;
        };
        if h.holder.origin != origin {
            h.others.remove(origin);
            return Withdrawn::Nothing;
        }
        match h.others.pop_first() {
            Some((_, next)) => {
                h.holder = next;
                Withdrawn::Holder {
                    next: Some(Box::new(h.holder.resource())),
                }
            }
            None => {
                self.names.remove(key);
                Withdrawn::Holder { next: None }
            }
        }
    }

    /// The resource holding `key`, unpacked.
    pub fn holder(&self, key: &str) -> Option<Resource> {
        self.kept(key).map(Kept::resource)
    }

    /// What is kept typed of the resource holding `key`.
    pub(super) fn kept(&self, key: &str) -> Option<&Kept> {
        self.names.get(key).map(|h| &h.holder)
    }

    /// Each name and what is kept typed of its holder.
    pub(super) fn holders(&self) -> impl Iterator<Item = (&str, &Kept)> {
        self.names.iter().map(|(k, h)| (k.as_str(), &h.holder))
    }

    /// Claims that will not build: duplicates and broken documents.
    pub fn failed(&self) -> usize {
        self.broken.len() + self.names.values().map(|h| h.others.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DockerBuild, DockerBuildSpec};

    fn res(name: &str, origin: &str) -> Resource {
        let mut build = DockerBuild::new(name, DockerBuildSpec::default());
        build.metadata.namespace = Some("ns".into());
        Resource {
            build,
            origin: origin.into(),
            base_dir: None,
            warnings: Vec::new(),
        }
    }

    #[test]
    fn first_valid_claim_holds_and_a_second_file_is_a_duplicate() {
        let mut c = Claims::default();
        assert_eq!(c.apply(res("a", "one.yaml")), Claimed::Holds);
        assert_eq!(
            c.apply(res("a", "two.yaml")),
            Claimed::Duplicate {
                holder: "one.yaml".into()
            }
        );
        // the holder's file changing (a comment) keeps it the holder
        assert_eq!(c.apply(res("a", "one.yaml")), Claimed::Holds);
        assert_eq!(c.kept("ns/a").unwrap().origin, "one.yaml");
        assert_eq!(c.failed(), 1);
        // the duplicate's file goes: nothing changes for the holder
        assert!(matches!(c.withdraw("ns/a", "two.yaml"), Withdrawn::Nothing));
        assert_eq!(c.failed(), 0);
        assert_eq!(c.kept("ns/a").unwrap().origin, "one.yaml");
    }

    #[test]
    fn a_broken_document_elsewhere_leaves_the_holder_alone() {
        let mut c = Claims::default();
        c.apply(res("victim", "victim.yaml"));
        assert!(matches!(
            c.broken("ns/victim", "broken.yaml"),
            Withdrawn::Nothing
        ));
        assert_eq!(c.kept("ns/victim").unwrap().origin, "victim.yaml");
        assert_eq!(c.failed(), 1);
        assert!(matches!(
            c.withdraw("ns/victim", "broken.yaml"),
            Withdrawn::Nothing
        ));
        assert_eq!(c.failed(), 0);
        // broken first, valid second: the valid one still holds the name
        c.broken("ns/b", "a-broken.yaml");
        assert_eq!(c.apply(res("b", "b.yaml")), Claimed::Holds);
    }

    #[test]
    fn a_duplicate_takes_over_when_the_holder_goes_or_breaks() {
        let mut c = Claims::default();
        c.apply(res("a", "one.yaml"));
        c.apply(res("a", "two.yaml"));
        c.apply(res("a", "three.yaml"));
        match c.withdraw("ns/a", "one.yaml") {
            Withdrawn::Holder { next: Some(n) } => assert_eq!(n.origin, "three.yaml"),
            w => panic!("{w:?}"),
        }
        assert_eq!(c.kept("ns/a").unwrap().origin, "three.yaml");
        match c.broken("ns/a", "three.yaml") {
            Withdrawn::Holder { next: Some(n) } => assert_eq!(n.origin, "two.yaml"),
            w => panic!("{w:?}"),
        }
        assert_eq!(c.failed(), 1, "three.yaml is broken now");
        // fixed again: a duplicate of the new holder
        assert_eq!(
            c.apply(res("a", "three.yaml")),
            Claimed::Duplicate {
                holder: "two.yaml".into()
            }
        );
        match c.withdraw("ns/a", "two.yaml") {
            Withdrawn::Holder { next: Some(n) } => assert_eq!(n.origin, "three.yaml"),
            w => panic!("{w:?}"),
        }
        assert!(matches!(
            c.withdraw("ns/a", "three.yaml"),
            Withdrawn::Holder { next: None }
        ));
        assert!(c.kept("ns/a").is_none());
        assert_eq!(c.failed(), 0);
    }
}
