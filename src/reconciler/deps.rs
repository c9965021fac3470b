//! Base and leaf images: a build whose `FROM` names an image another resource builds
//! waits until that image is pushed, so a folder holding a base and its leaves builds
//! in the right order.

use std::collections::{BTreeSet, HashMap};

/// What one resource's Dockerfile resolves to, read once per version of the resource
/// (re-reading every Dockerfile on every reconcile made a first sync quadratic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Images {
    /// References the resource pushes.
    pub pushes: Vec<String>,
    /// Base images its local Dockerfile's `FROM` lines name (none when remote).
    pub needs: Vec<String>,
    /// Why its local Dockerfile cannot be built as written.
    pub invalid: Option<String>,
}

/// Which resource produces which image, and which resources wait for which producer.
#[derive(Debug, Default)]
pub struct Dependencies {
    images: HashMap<String, Images>,
    /// Normalised reference -> resources pushing it.
    producers: HashMap<String, Keys>,
    /// Normalised reference -> resources whose Dockerfile names it in a `FROM`.
    needed_by: HashMap<String, Keys>,
    /// Producer -> resources waiting for its image.
    waiters: HashMap<String, BTreeSet<String>>,
    /// Waiting resource -> producers it waits for.
    waiting_for: HashMap<String, BTreeSet<String>>,
}

impl Dependencies {
    /// Records what `key` pushes and needs. Returns the resources waiting for `key`
    /// when what it pushes changed: they must look again.
    pub fn set(&mut self, key: &str, images: Images) -> Vec<String> {
        let old = self.images.get(key);
        if old == Some(&images) {
            return Vec::new();
        }
        let changed = old.is_some_and(|o| o.pushes != images.pushes);
        self.unpublish(key);
        for r in &images.pushes {
            self.producers
                .entry(normalize_ref(r))
                .or_default()
                .insert(key.to_string());
        }
        for r in &images.needs {
            self.needed_by
                .entry(normalize_ref(r))
                .or_default()
                .insert(key.to_string());
        }
        self.images.insert(key.to_string(), images);
        if changed {
            self.take_waiters(key)
        } else {
            Vec::new()
        }
    }

    /// Forgets `key`; returns the resources that waited for it.
    pub fn remove(&mut self, key: &str) -> Vec<String> {
        self.unpublish(key);
        self.images.remove(key);
        self.wait(key, Vec::new());
        self.take_waiters(key)
    }

    fn unpublish(&mut self, key: &str) {
        let Some(old) = self.images.get(key) else {
            return;
        };
        for (map, refs) in [
            (&mut self.producers, &old.pushes),
            (&mut self.needed_by, &old.needs),
        ] {
            for r in refs {
                let n = normalize_ref(r);
                if let Some(set) = map.get_mut(&n) {
                    set.remove(key);
                    if set.is_empty() {
                        map.remove(&n);
                    }
                }
            }
        }
    }

    /// The resource (other than `key`) that pushes `image`, if any.
    pub fn producer(&self, image: &str, key: &str) -> Option<&str> {
        self.producers
            .get(&normalize_ref(image))?
            .iter()
            .find(|p| *p != key)
            .map(String::as_str)
    }

    /// The resources whose `FROM` names `image`.
    pub fn needing(&self, image: &str) -> Vec<String> {
        self.needed_by
            .get(&normalize_ref(image))
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The resources built `FROM` an image `producer` pushes: its family's next
    /// generation, which looks again when its digest changes.
    pub fn dependents(&self, producer: &str) -> Vec<String> {
        let Some(images) = self.images.get(producer) else {
            return Vec::new();
        };
        let mut out: BTreeSet<String> = BTreeSet::new();
        for r in &images.pushes {
            if let Some(set) = self.needed_by.get(&normalize_ref(r)) {
                out.extend(set.iter().filter(|k| *k != producer).cloned());
            }
        }
        out.into_iter().collect()
    }

    /// Base images that no resource builds, normalised: the ones to poll.
    pub fn external(&self) -> impl Iterator<Item = (&String, &Keys)> {
        self.needed_by
            .iter()
            .filter(|(r, _)| !self.producers.contains_key(*r))
    }

    /// A cycle of `FROM`s through `key` (`[a, b, a]`: a is built from b, b from a).
    pub fn cycle(&self, key: &str) -> Option<Vec<String>> {
        // depth-first over "is built from", each resource once
        let mut path = vec![key.to_string()];
        let mut seen = BTreeSet::new();
        self.find_cycle(key, &mut path, &mut seen).then_some(path)
    }

    fn find_cycle(&self, from: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        let Some(images) = self.images.get(from) else {
            return false;
        };
        for n in &images.needs {
            let Some(p) = self.producer(n, from) else {
                continue;
            };
            if p == path[0] {
                path.push(p.to_string());
                return true;
            }
            if !seen.insert(p.to_string()) {
                continue;
            }
            path.push(p.to_string());
            if self.find_cycle(p, path, seen) {
                return true;
            }
            path.pop();
        }
        false
    }

    pub fn images(&self, key: &str) -> Option<&Images> {
        self.images.get(key)
    }

    /// The base images `key` needs that another resource builds and `is_built` says
    /// are not built yet, each with its producer.
    pub fn blockers(&self, key: &str, is_built: impl Fn(&str) -> bool) -> Vec<(String, String)> {
        let Some(images) = self.images.get(key) else {
            return Vec::new();
        };
        images
            .needs
            .iter()
            .filter_map(|n| {
                // a build never waits for itself
                let p = self
                    .producers
                    .get(&normalize_ref(n))?
                    .iter()
                    .find(|p| *p != key)?;
                (!is_built(p)).then(|| (n.clone(), p.clone()))
            })
            .collect()
    }

    /// `key` now waits for exactly `producers` (none: it waits for nothing).
    pub fn wait(&mut self, key: &str, producers: Vec<String>) {
        for p in self.waiting_for.remove(key).unwrap_or_default() {
            if let Some(set) = self.waiters.get_mut(&p) {
                set.remove(key);
                if set.is_empty() {
                    self.waiters.remove(&p);
                }
            }
        }
        if producers.is_empty() {
            return;
        }
        for p in &producers {
            self.waiters
                .entry(p.clone())
                .or_default()
                .insert(key.to_string());
        }
        self.waiting_for
            .insert(key.to_string(), producers.into_iter().collect());
    }

    /// The resources waiting for `producer`, which stop waiting (they look again).
    pub fn take_waiters(&mut self, producer: &str) -> Vec<String> {
        let keys: Vec<String> = self
            .waiters
            .get(producer)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for k in &keys {
            self.wait(k, Vec::new());
        }
        keys
    }
}

/// The resources related to one image, in order: nearly always one (the resource
/// pushing it), held without the ~280-byte node a one-element BTreeSet allocates,
/// which was a tenth of a controller's memory at 100,000 resources
/// (benches/kube_sync.rs).
#[derive(Debug)]
pub enum Keys {
    One(String),
    Many(BTreeSet<String>),
}

impl Default for Keys {
    fn default() -> Self {
        Self::Many(BTreeSet::new())
    }
}

impl Keys {
    pub fn insert(&mut self, key: String) {
        match self {
            Self::Many(s) if s.is_empty() => *self = Self::One(key),
            Self::Many(s) => {
                s.insert(key);
            }
            Self::One(o) if *o == key => {}
            Self::One(o) => *self = Self::Many([std::mem::take(o), key].into()),
        }
    }

    pub fn remove(&mut self, key: &str) {
        match self {
            Self::One(o) if o == key => *self = Self::default(),
            Self::One(_) => {}
            Self::Many(s) => {
                s.remove(key);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Many(s) if s.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = &String> {
        let (one, many) = match self {
            Self::One(o) => (Some(o), None),
            Self::Many(s) => (None, Some(s)),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }
}

/// `host/repo` and `host/repo:latest` are one image.
pub fn normalize_ref(r: &str) -> String {
    if r.contains('@') {
        return r.to_string();
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_a_set_in_order_whatever_their_number() {
        let mut k = Keys::default();
        assert!(k.is_empty());
        k.insert("ns/b".into());
        k.insert("ns/b".into());
        assert!(matches!(k, Keys::One(_)), "one key takes no tree node");
        assert_eq!(k.iter().collect::<Vec<_>>(), ["ns/b"]);
        k.insert("ns/a".into());
        k.insert("ns/c".into());
        assert_eq!(k.iter().collect::<Vec<_>>(), ["ns/a", "ns/b", "ns/c"]);
        k.remove("ns/b");
        k.remove("ns/x");
        assert_eq!(k.iter().collect::<Vec<_>>(), ["ns/a", "ns/c"]);
        k.remove("ns/a");
        k.remove("ns/c");
        assert!(k.is_empty());
        let mut one = Keys::default();
        one.insert("ns/a".into());
        one.remove("ns/z");
        assert!(!one.is_empty());
        one.remove("ns/a");
        assert!(one.is_empty() && one.iter().next().is_none());
    }

    fn images(pushes: &[&str], needs: &[&str]) -> Images {
        Images {
            pushes: pushes.iter().map(|s| s.to_string()).collect(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            invalid: None,
        }
    }

    const BASE: &str = "127.0.0.1:5000/ex/base";

    #[test]
    fn leaf_waits_for_its_base_until_built() {
        let mut d = Dependencies::default();
        d.set(
            "ex/base",
            images(&[&format!("{BASE}:latest"), &format!("{BASE}:1.0")], &[]),
        );
        d.set("ex/leaf", images(&["r/leaf:latest"], &[BASE]));
        d.set("ex/other", images(&["r/other:latest"], &["r/elsewhere:1"]));
        assert_eq!(
            d.blockers("ex/leaf", |_| false),
            vec![(BASE.to_string(), "ex/base".to_string())]
        );
        assert!(d.blockers("ex/leaf", |p| p == "ex/base").is_empty());
        assert!(d.blockers("ex/other", |_| false).is_empty());
        // a build never waits for itself
        d.set("ex/self", images(&["r/self:1"], &["r/self:1"]));
        assert!(d.blockers("ex/self", |_| false).is_empty());
    }

    #[test]
    fn a_finished_base_wakes_only_its_own_waiters() {
        let mut d = Dependencies::default();
        d.set("b1", images(&["r/b1:latest"], &[]));
        d.set("b2", images(&["r/b2:latest"], &[]));
        d.wait("l1", vec!["b1".into()]);
        d.wait("l2", vec!["b1".into(), "b2".into()]);
        d.wait("l3", vec!["b2".into()]);
        assert_eq!(d.take_waiters("b1"), vec!["l1", "l2"]);
        // l2 stopped waiting altogether: it looks again and registers anew if need be
        assert_eq!(d.take_waiters("b2"), vec!["l3"]);
        assert!(d.take_waiters("b1").is_empty());
    }

    #[test]
    fn waiters_look_again_when_their_producer_changes_or_goes() {
        let mut d = Dependencies::default();
        d.set("b", images(&["r/b:1"], &[]));
        d.wait("l", vec!["b".into()]);
        // the same images again (a status write re-read the file): nobody wakes
        assert!(d.set("b", images(&["r/b:1"], &[])).is_empty());
        assert_eq!(d.set("b", images(&["r/b:2"], &[])), vec!["l"]);
        assert!(d.blockers("l", |_| false).is_empty(), "l has no images");
        d.set("l", images(&[], &["r/b:2"]));
        d.wait("l", vec!["b".into()]);
        assert_eq!(d.remove("b"), vec!["l"]);
        assert!(d.blockers("l", |_| false).is_empty(), "nobody builds r/b:2");
    }

    #[test]
    fn dependents_are_the_resources_built_from_any_tag_it_pushes() {
        let mut d = Dependencies::default();
        d.set("b", images(&["r/b:1", "r/b:latest"], &["debian:12"]));
        d.set("l1", images(&["r/l1:1"], &["r/b"]));
        d.set("l2", images(&["r/l2:1"], &["r/b:1"]));
        d.set("x", images(&["r/x:1"], &["debian:12"]));
        assert_eq!(d.dependents("b"), vec!["l1", "l2"]);
        assert_eq!(d.needing("debian:12"), vec!["b", "x"]);
        let ext: Vec<&String> = d.external().map(|(r, _)| r).collect();
        assert_eq!(ext, vec!["debian:12"]);
        assert_eq!(d.producer("r/b:latest", "l1"), Some("b"));
        d.remove("l1");
        assert_eq!(d.dependents("b"), vec!["l2"]);
    }

    #[test]
    fn a_cycle_of_froms_is_found_from_each_member() {
        let mut d = Dependencies::default();
        d.set("a", images(&["r/a:1"], &["r/b:1"]));
        d.set("b", images(&["r/b:1"], &["r/c:1"]));
        d.set("c", images(&["r/c:1"], &["r/a:1"]));
        d.set("leaf", images(&["r/leaf:1"], &["r/a:1"]));
        assert_eq!(d.cycle("a").unwrap(), vec!["a", "b", "c", "a"]);
        assert_eq!(d.cycle("b").unwrap(), vec!["b", "c", "a", "b"]);
        // built from a cycle, but not in it
        assert_eq!(d.cycle("leaf"), None);
        d.set("c", images(&["r/c:1"], &[]));
        assert_eq!(d.cycle("a"), None);
        // a build from its own previous image is no cycle
        d.set("s", images(&["r/s:1"], &["r/s:1"]));
        assert_eq!(d.cycle("s"), None);
    }

    #[test]
    fn port_is_not_a_tag() {
        assert_eq!(normalize_ref("127.0.0.1:5000/a"), "127.0.0.1:5000/a:latest");
        assert_eq!(normalize_ref("a:1"), "a:1");
        assert_eq!(normalize_ref("a@sha256:00"), "a@sha256:00");
    }
}
