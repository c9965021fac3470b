//! `slipway graph`, the real binary: a watch folder's image family as DOT (parsed by a
//! real DOT parser) and as SVG (opened in headless Chromium, its screenshot checked
//! for the phase colours), and a cluster's family read from the shared API server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use graphviz_rust::dot_structures::{Attribute, EdgeTy, Graph, Id, Stmt, Vertex};
use slipway::api::Phase;
use slipway::graph::phase_colour;

const REG: &str = "127.0.0.1:5000";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const BUILT: &str = "2026-11-27T23:00:00Z";

fn slipway(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slipway"));
    c.args(args).env("SLIPWAY_LOG", "warn");
    c
}

fn ok(mut c: Command) -> String {
    let out: Output = c.output().expect("slipway runs");
    assert!(
        out.status.success(),
        "{c:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A base FROM an external image (a `path` source), a leaf FROM the base (inline),
/// and a leaf whose Dockerfile is remote (git): its base only its status records.
fn family() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("base")).unwrap();
    std::fs::write(d.join("base/Dockerfile"), "FROM debian:12\nRUN true\n").unwrap();
    let yaml = format!(
        r#"apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {{name: base, namespace: fam}}
spec:
  source: {{path: base}}
  output: {{registry: '{REG}', repository: fam/base, tags: [latest, '1']}}
status:
  phase: Succeeded
  imageDigest: {DIGEST}
  completionTime: {BUILT}
---
apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {{name: web, namespace: fam}}
spec:
  source: {{inline: {{dockerfile: "FROM {REG}/fam/base:1\nRUN true\n"}}}}
  output: {{registry: '{REG}', repository: fam/web}}
status:
  phase: Failed
---
apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {{name: tool, namespace: fam}}
spec:
  source: {{git: {{url: 'https://git.example.org/tool.git'}}}}
  output: {{registry: '{REG}', repository: fam/tool}}
status:
  phase: Building
  baseImages:
  - {{image: '{REG}/fam/base', digest: '{DIGEST}'}}
"#
    );
    std::fs::write(d.join("family.yaml"), yaml).unwrap();
    dir
}

/// An ID as written, quotes and DOT escapes removed.
fn text(id: &Id) -> String {
    let s = match id {
        Id::Escaped(s) => s
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(s)
            .replace("\\\"", "\"")
            .replace("\\n", "\n"),
        Id::Html(s) | Id::Plain(s) | Id::Anonymous(s) => s.clone(),
    };
    s.replace("\\\\", "\\")
}

fn attrs(list: &[Attribute]) -> BTreeMap<String, String> {
    list.iter()
        .map(|Attribute(k, v)| (text(k), text(v)))
        .collect()
}

/// Nodes (id -> attributes) and edges (from, to, label) of a DOT document, which must
/// parse as a directed graph.
struct Dot {
    nodes: BTreeMap<String, BTreeMap<String, String>>,
    edges: BTreeSet<(String, String, String)>,
}

fn parse(dot: &str) -> Dot {
    let g = graphviz_rust::parse(dot).unwrap_or_else(|e| panic!("DOT does not parse: {e}\n{dot}"));
    let Graph::DiGraph { stmts, .. } = g else {
        panic!("not a digraph: {dot}")
    };
    let mut out = Dot {
        nodes: BTreeMap::new(),
        edges: BTreeSet::new(),
    };
    for s in stmts {
        match s {
            Stmt::Node(n) => {
                out.nodes.insert(text(&n.id.0), attrs(&n.attributes));
            }
            Stmt::Edge(e) => {
                let EdgeTy::Pair(Vertex::N(a), Vertex::N(b)) = e.ty else {
                    panic!("unexpected edge {:?}", e.ty)
                };
                let label = attrs(&e.attributes).remove("label").unwrap_or_default();
                out.edges.insert((text(&a.0), text(&b.0), label));
            }
            _ => {}
        }
    }
    out
}

fn edge(from: &str, to: &str, label: &str) -> (String, String, String) {
    (from.into(), to.into(), label.into())
}

#[test]
fn dot_of_a_folder_has_every_build_external_base_and_edge() {
    let dir = family();
    let dot = parse(&ok(slipway(&["graph", dir.path().to_str().unwrap()])));
    let ids: BTreeSet<&str> = dot.nodes.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        BTreeSet::from(["fam/base", "fam/web", "fam/tool", "debian:12"])
    );
    let base_ref = format!("{REG}/fam/base");
    assert_eq!(
        dot.edges,
        BTreeSet::from([
            edge("debian:12", "fam/base", "debian:12"),
            // the inline Dockerfile's FROM line
            edge("fam/base", "fam/web", &format!("{base_ref}:1")),
            // a remote source: what its last build recorded
            edge("fam/base", "fam/tool", &base_ref),
        ])
    );
    let base = &dot.nodes["fam/base"];
    let label = &base["label"];
    for want in [
        "fam/base",
        &format!("{base_ref}:latest"),
        "0123456789ab",
        BUILT,
    ] {
        assert!(
            label.contains(want),
            "{want} not in the base's label {label:?}"
        );
    }
    assert!(
        !label.contains("0123456789abc"),
        "a short digest: {label:?}"
    );
    let fill = |id: &str| dot.nodes[id]["fillcolor"].clone();
    assert_eq!(fill("fam/base"), phase_colour(Some(Phase::Succeeded)));
    assert_eq!(fill("fam/web"), phase_colour(Some(Phase::Failed)));
    assert_eq!(fill("fam/tool"), phase_colour(Some(Phase::Building)));
    assert_eq!(base["shape"], "box");
    // the external base is drawn another way, unfilled
    let ext = &dot.nodes["debian:12"];
    assert_eq!(ext["shape"], "ellipse");
    assert!(!ext.contains_key("fillcolor"), "{ext:?}");

    // DIR defaults to the current directory
    let mut here = slipway(&["graph"]);
    here.current_dir(dir.path());
    assert_eq!(parse(&ok(here)).edges, dot.edges);
}

fn chromium() -> PathBuf {
    PathBuf::from(std::env::var_os("SLIPWAY_TEST_CHROMIUM").unwrap_or_else(|| {
        panic!(
            "SLIPWAY_TEST_CHROMIUM is not set: run the tests with scripts/test.sh, which installs Chromium (scripts/ensure-chromium.sh)"
        )
    }))
}

/// Headless Chromium's screenshot of `svg`, decoded: (width, RGBA pixels).
fn screenshot(svg: &Path) -> (usize, Vec<[u8; 4]>) {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("shot.png");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg("--window-size=1600,1200")
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", svg.display()))
        .output()
        .expect("chromium runs");
    assert!(
        png.is_file(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|p| match channels {
            3 => [p[0], p[1], p[2], 255],
            4 => [p[0], p[1], p[2], p[3]],
            _ => [p[0], p[0], p[0], 255],
        })
        .collect();
    (info.width as usize, pixels)
}

fn rgb(hex: &str) -> [u8; 3] {
    let v = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap();
    [(v >> 16) as u8, (v >> 8) as u8, v as u8]
}

fn near(p: [u8; 4], c: [u8; 3]) -> bool {
    (0..3).all(|i| p[i].abs_diff(c[i]) <= 6)
}

#[test]
fn svg_of_a_folder_holds_every_label_and_renders_in_chromium() {
    let dir = family();
    let out = dir.path().join("family.svg");
    let stdout = ok(slipway(&[
        "graph",
        dir.path().to_str().unwrap(),
        "--svg",
        out.to_str().unwrap(),
    ]));
    assert!(stdout.is_empty(), "no DOT when writing SVG: {stdout}");
    let svg = std::fs::read_to_string(&out).expect("the SVG is written");
    // every node's name and each of its lines, every edge's label, as SVG text
    let dot = parse(&ok(slipway(&["graph", dir.path().to_str().unwrap()])));
    for (id, a) in &dot.nodes {
        for line in a["label"].lines() {
            assert!(svg.contains(line), "node {id}: {line:?} not in the SVG");
        }
    }
    for (from, to, label) in &dot.edges {
        assert!(
            svg.contains(&format!(">{label}<")),
            "edge {from} -> {to}: {label:?} not in the SVG"
        );
    }
    assert_eq!(
        svg.matches("marker-end").count(),
        dot.edges.len(),
        "an arrow per edge"
    );

    let (width, pixels) = screenshot(&out);
    let background = pixels[0];
    let drawn = pixels.iter().filter(|p| **p != background).count();
    assert!(
        drawn > 5_000,
        "the screenshot is (nearly) blank: {drawn} of {} pixels drawn",
        pixels.len()
    );
    // the boxes are there, filled by phase
    for phase in [Phase::Succeeded, Phase::Failed, Phase::Building] {
        let c = rgb(phase_colour(Some(phase)));
        let n = pixels.iter().filter(|p| near(**p, c)).count();
        assert!(
            n > 2_000,
            "{phase:?} ({}) fills {n} pixels of a {width}-wide screenshot",
            phase_colour(Some(phase))
        );
    }
}

#[test]
fn dot_of_a_cluster_namespace() {
    let k = crate::common::kube::Kube::shared();
    let ns = k.new_bare_namespace("graph");
    let base_ref = format!("{REG}/{ns}/base");
    k.apply(
        &ns,
        &format!(
            r#"apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {{name: base}}
spec:
  source: {{inline: {{dockerfile: "FROM scratch\nCOPY a /a\n"}}}}
  output: {{registry: '{REG}', repository: {ns}/base}}
---
apiVersion: slipway.dev/v1alpha1
kind: DockerBuild
metadata: {{name: leaf}}
spec:
  source: {{inline: {{dockerfile: "FROM {base_ref}\n"}}}}
  output: {{registry: '{REG}', repository: {ns}/leaf}}
"#
        ),
    );
    // what a controller would have written, through the status subresource
    let status = format!(
        r#"{{"status":{{"phase":"Succeeded","imageDigest":"{DIGEST}","completionTime":"{BUILT}"}}}}"#
    );
    k.kubectl_ok(&[
        "patch",
        "dockerbuild",
        "base",
        "-n",
        &ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    let mut c = slipway(&["graph", "--kube", "-n", &ns]);
    c.env("KUBECONFIG", k.admin_kubeconfig());
    let dot = parse(&ok(c));
    let base = format!("{ns}/base");
    let leaf = format!("{ns}/leaf");
    let ids: BTreeSet<&str> = dot.nodes.keys().map(String::as_str).collect();
    assert_eq!(ids, BTreeSet::from([base.as_str(), leaf.as_str()]));
    assert_eq!(dot.edges, BTreeSet::from([edge(&base, &leaf, &base_ref)]));
    let label = &dot.nodes[&base]["label"];
    assert!(
        label.contains("0123456789ab") && label.contains(BUILT),
        "{label:?}"
    );
    assert_eq!(
        dot.nodes[&base]["fillcolor"],
        phase_colour(Some(Phase::Succeeded))
    );
}
