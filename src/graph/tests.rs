use super::*;
use crate::api::BaseImage;

const REG: &str = "127.0.0.1:5000";

fn member(key: &str, pushes: &[&str], from: Option<&[&str]>) -> Member {
    Member {
        key: key.into(),
        pushes: pushes.iter().map(|p| format!("{REG}/{p}")).collect(),
        from: from.map(|f| f.iter().map(|s| s.to_string()).collect()),
        status: None,
    }
}

fn status(phase: Phase, digest: &str, done: &str) -> DockerBuildStatus {
    DockerBuildStatus {
        phase: Some(phase),
        image_digest: Some(digest.into()),
        completion_time: Some(done.into()),
        ..Default::default()
    }
}

fn node<'a>(g: &'a Graph, id: &str) -> &'a Node {
    g.nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("no node {id} in {g:#?}"))
}

fn edges(g: &Graph) -> Vec<(&str, &str, &str)> {
    g.edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str(), e.label.as_str()))
        .collect()
}

/// One base, two leaves (one naming it without a tag), an external base.
fn family() -> Vec<Member> {
    let base_ref = format!("{REG}/ex/base");
    let mut base = member(
        "ex/base",
        &["ex/base:latest", "ex/base:1.0"],
        Some(&["debian:12"]),
    );
    base.status = Some(status(
        Phase::Succeeded,
        "sha256:0123456789abcdef0123",
        "2026-11-27T23:00:00Z",
    ));
    let mut web = member("ex/web", &["ex/web:2"], Some(&[&base_ref]));
    web.status = Some(status(Phase::Failed, "sha256:feedfacecafe99", "t1"));
    let api = member(
        "ex/api",
        &["ex/api:latest"],
        Some(&[&format!("{base_ref}:1.0"), "scratch-less/tool:3"]),
    );
    vec![web, api, base]
}

#[test]
fn a_node_per_build_and_per_external_base_with_edges_base_to_leaf() {
    let g = build(&family());
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    // builds by key, then external bases by normalised reference
    assert_eq!(
        ids,
        [
            "ex/api",
            "ex/base",
            "ex/web",
            "debian:12",
            "scratch-less/tool:3"
        ]
    );
    assert!(node(&g, "debian:12").is_external());
    assert!(!node(&g, "ex/base").is_external());
    let base_ref = format!("{REG}/ex/base");
    assert_eq!(
        edges(&g),
        [
            ("debian:12", "ex/base", "debian:12"),
            ("ex/base", "ex/api", format!("{base_ref}:1.0").as_str()),
            ("ex/base", "ex/web", base_ref.as_str()),
            ("scratch-less/tool:3", "ex/api", "scratch-less/tool:3"),
        ]
    );
}

#[test]
fn nodes_show_image_short_digest_and_build_time_and_colour_by_phase() {
    let g = build(&family());
    let base = node(&g, "ex/base");
    assert_eq!(
        base.lines(),
        [
            "ex/base".to_string(),
            format!("{REG}/ex/base:latest +1 tags"),
            "Succeeded · 0123456789ab · 2026-11-27T23:00:00Z".to_string(),
        ]
    );
    assert_eq!(base.fill(), Some(phase_colour(Some(Phase::Succeeded))));
    assert_eq!(
        node(&g, "ex/web").fill(),
        Some(phase_colour(Some(Phase::Failed)))
    );
    // never built: grey, and says so
    let api = node(&g, "ex/api");
    assert_eq!(api.fill(), Some(phase_colour(None)));
    assert_eq!(api.lines().last().unwrap(), "Pending");
    assert_eq!(node(&g, "debian:12").fill(), None);
    // each state its own colour, except Pending and none
    let colours: BTreeSet<&str> = [
        Phase::Succeeded,
        Phase::Failed,
        Phase::Building,
        Phase::Pending,
    ]
    .into_iter()
    .map(|p| phase_colour(Some(p)))
    .collect();
    assert_eq!(colours.len(), 4);
    assert_eq!(phase_colour(Some(Phase::Pending)), phase_colour(None));
    assert_eq!(
        phase_colour(Some(Phase::Queued)),
        phase_colour(Some(Phase::Pushing))
    );
}

#[test]
fn a_remote_source_stands_on_what_its_last_build_recorded() {
    let mut members = family();
    // a git source: no Dockerfile here, only status.baseImages
    let mut remote = member("ex/remote", &["ex/remote:latest"], None);
    remote.status = Some(DockerBuildStatus {
        base_images: vec![
            BaseImage {
                image: format!("{REG}/ex/base:1.0"),
                digest: "sha256:0123456789abcdef0123".into(),
            },
            BaseImage {
                image: "alpine:3.20".into(),
                digest: "sha256:aaaabbbbccccdddd".into(),
            },
        ],
        ..Default::default()
    });
    members.push(remote);
    let g = build(&members);
    let e = edges(&g);
    assert!(e.contains(&("ex/base", "ex/remote", &format!("{REG}/ex/base:1.0"))));
    assert!(e.contains(&("alpine:3.20", "ex/remote", "alpine:3.20")));
    // the external base carries the digest the dependent's build resolved it to
    assert_eq!(
        node(&g, "alpine:3.20").kind,
        NodeKind::External {
            digest: Some("aaaabbbbcccc".into())
        }
    );
    // a local Dockerfile wins over a stale record: ex/api's recorded base is ignored
    let mut members = family();
    members[1].status = Some(DockerBuildStatus {
        base_images: vec![BaseImage {
            image: "old/base:1".into(),
            digest: "sha256:00".into(),
        }],
        ..Default::default()
    });
    let g = build(&members);
    assert!(g.nodes.iter().all(|n| n.id != "old/base:1"), "{g:#?}");
}

#[test]
fn a_build_on_its_own_image_and_duplicates_draw_no_extra_edges() {
    let mut members = vec![
        member(
            "ex/self",
            &["ex/self:1"],
            Some(&[&format!("{REG}/ex/self:1")]),
        ),
        // the same base named twice, and a second file claiming ex/self
        member(
            "ex/leaf",
            &["ex/leaf:1"],
            Some(&[&format!("{REG}/ex/self:1"), &format!("{REG}/ex/self:1")]),
        ),
    ];
    members.push(member("ex/self", &["ex/other:1"], None));
    let g = build(&members);
    assert_eq!(g.nodes.len(), 2, "{g:#?}");
    assert_eq!(
        edges(&g),
        [("ex/self", "ex/leaf", format!("{REG}/ex/self:1").as_str())]
    );
}

#[test]
fn short_digest_is_twelve_hex_digits() {
    assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    assert_eq!(short_digest("0123"), "0123");
}
