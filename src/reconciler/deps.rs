//! Base and leaf images: a build whose `FROM` names an image another resource builds
//! waits until that image is pushed, so a folder holding a base and its leaves builds
//! in the right order.

use std::collections::HashMap;

/// Which resource produces which image reference, and which references each needs.
#[derive(Debug, Default, Clone)]
pub struct Dependencies {
    producers: HashMap<String, String>,
}

impl Dependencies {
    pub fn add_producer(&mut self, key: &str, image_refs: &[String]) {
        for r in image_refs {
            self.producers.insert(normalize_ref(r), key.to_string());
        }
    }

    /// Resources (other than `key`) that produce one of `needs`, with the reference.
    pub fn producers_of<'a>(&'a self, key: &str, needs: &[String]) -> Vec<(String, &'a str)> {
        let mut out = Vec::new();
        for n in needs {
            if let Some(p) = self.producers.get(&normalize_ref(n))
                && p != key
            {
                out.push((n.clone(), p.as_str()));
            }
        }
        out
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
    fn leaf_finds_its_base() {
        let mut d = Dependencies::default();
        d.add_producer(
            "ex/base",
            &[
                "127.0.0.1:5000/ex/base:latest".into(),
                "127.0.0.1:5000/ex/base:1.0".into(),
            ],
        );
        let found = d.producers_of("ex/leaf", &["127.0.0.1:5000/ex/base".into()]);
        assert_eq!(
            found,
            vec![("127.0.0.1:5000/ex/base".to_string(), "ex/base")]
        );
        assert!(
            d.producers_of("ex/leaf", &["127.0.0.1:5000/ex/other:1".into()])
                .is_empty()
        );
        // a build never waits for itself
        assert!(
            d.producers_of("ex/base", &["127.0.0.1:5000/ex/base:1.0".into()])
                .is_empty()
        );
    }

    #[test]
    fn port_is_not_a_tag() {
        assert_eq!(normalize_ref("127.0.0.1:5000/a"), "127.0.0.1:5000/a:latest");
        assert_eq!(normalize_ref("a:1"), "a:1");
        assert_eq!(normalize_ref("a@sha256:00"), "a@sha256:00");
    }
}
