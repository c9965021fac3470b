//! The graph as SVG, laid out by layout-rs (a Sugiyama-style layered layout in pure
//! Rust), so no Graphviz install is needed. Drawn like the DOT: builds as boxes
//! filled by phase, external bases as white ellipses, edges base -> leaf.

use std::collections::HashMap;

use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::geometry::Point;
use layout::core::style::{LineStyleKind, StyleAttr};
use layout::std_shapes::shapes::{Arrow, Element, LineEndKind, ShapeKind};
use layout::topo::layout::VisualGraph;

use super::{Graph, Node};

const FONT: usize = 12;
const EDGE_FONT: usize = 10;

/// layout-rs sizes text at one font size per character, twice what a proportional
/// font takes: nodes are sized here instead.
fn node_size(label: &str, ellipse: bool) -> Point {
    let chars = label.lines().map(|l| l.chars().count()).max().unwrap_or(1);
    let lines = label.lines().count().max(1);
    let (w, h) = (
        chars as f64 * FONT as f64 * 0.62,
        lines as f64 * FONT as f64 * 1.3,
    );
    // an ellipse needs more room around the same text
    let pad = if ellipse { 1.45 } else { 1.0 };
    Point::new(w * pad + 20., h * pad + 14.)
}

fn element(n: &Node) -> Element {
    let label = n.lines().join("\n");
    let ellipse = n.is_external();
    let (shape, look) = match n.fill() {
        Some(fill) => (
            ShapeKind::Box(label.clone()),
            StyleAttr::new(Color::fast("black"), 1, Color::from_name(fill), 6, FONT),
        ),
        None => (
            ShapeKind::Circle(label.clone()),
            StyleAttr::new(
                Color::fast("#606060"),
                1,
                Color::from_name("white"),
                0,
                FONT,
            ),
        ),
    };
    let size = node_size(&label, ellipse);
    Element::create(shape, look, Orientation::TopToBottom, size)
}

/// A complete SVG document of `g`.
pub fn to_svg(g: &Graph) -> String {
    if g.nodes.is_empty() {
        // layout-rs cannot lay out nothing; say so instead of drawing an empty page
        return format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"240\" height=\"40\">\
             <text x=\"10\" y=\"25\" font-size=\"{FONT}\">no DockerBuilds</text></svg>\n"
        );
    }
    let mut vg = VisualGraph::new(Orientation::TopToBottom);
    let mut handles = HashMap::new();
    for n in &g.nodes {
        handles.insert(n.id.as_str(), vg.add_node(element(n)));
    }
    for e in &g.edges {
        let (Some(from), Some(to)) = (handles.get(e.from.as_str()), handles.get(e.to.as_str()))
        else {
            continue;
        };
        let external = g.nodes.iter().any(|n| n.id == e.from && n.is_external());
        let style = if external {
            LineStyleKind::Dashed
        } else {
            LineStyleKind::Normal
        };
        let look = StyleAttr::new(Color::fast("#404040"), 1, None, 0, EDGE_FONT);
        let arrow = Arrow::new(
            LineEndKind::None,
            LineEndKind::Arrow,
            style,
            &e.label,
            &look,
            &None,
            &None,
        );
        vg.add_edge(arrow, *from, *to);
    }
    let mut svg = SVGWriter::new();
    vg.do_it(false, false, false, &mut svg);
    svg.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;
    use crate::graph::{Edge, NodeKind, phase_colour};

    fn graph() -> Graph {
        Graph {
            nodes: vec![
                Node {
                    id: "ex/base".into(),
                    kind: NodeKind::Build {
                        phase: Some(Phase::Succeeded),
                        image: Some("r/base:1".into()),
                        digest: Some("0123456789ab".into()),
                        built: None,
                    },
                },
                Node {
                    id: "ex/leaf".into(),
                    kind: NodeKind::Build {
                        phase: Some(Phase::Failed),
                        image: Some("r/leaf:1".into()),
                        digest: None,
                        built: None,
                    },
                },
                Node {
                    id: "debian:12".into(),
                    kind: NodeKind::External { digest: None },
                },
            ],
            edges: vec![
                Edge {
                    from: "debian:12".into(),
                    to: "ex/base".into(),
                    label: "debian:12".into(),
                },
                Edge {
                    from: "ex/base".into(),
                    to: "ex/leaf".into(),
                    label: "r/base:1 <&>".into(),
                },
            ],
        }
    }

    #[test]
    fn every_label_is_drawn_escaped_and_filled_by_phase() {
        let svg = to_svg(&graph());
        for text in [
            "ex/base",
            "ex/leaf",
            "debian:12",
            "r/base:1",
            "0123456789ab",
            "r/base:1 &lt;&amp;&gt;",
        ] {
            assert!(svg.contains(text), "{text} not in {svg}");
        }
        let fill = |p| {
            let c = phase_colour(Some(p));
            format!("fill=\"{}ff\"", c)
        };
        assert!(svg.contains(&fill(Phase::Succeeded)), "{svg}");
        assert!(svg.contains(&fill(Phase::Failed)), "{svg}");
        assert!(svg.contains("<ellipse"), "external base: {svg}");
        assert!(svg.contains("stroke-dasharray"), "edge from outside: {svg}");
    }

    #[test]
    fn nothing_to_draw_says_so() {
        assert!(to_svg(&Graph::default()).contains("no DockerBuilds"));
    }
}
