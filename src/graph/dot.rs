//! The graph as Graphviz DOT: builds as filled boxes, external bases as dashed
//! ellipses, edges from base to leaf labelled with the `FROM` reference.

use std::fmt::Write;

use super::Graph;

/// A DOT string literal: quotes and backslashes escaped, line breaks as `\n`
/// (Graphviz's centred line break).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn to_dot(g: &Graph) -> String {
    let mut out = String::from("digraph slipway {\n");
    out.push_str("  rankdir=TB;\n");
    out.push_str("  node [fontname=\"Helvetica\", fontsize=11];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for n in &g.nodes {
        let label = quote(&n.lines().join("\n"));
        let id = quote(&n.id);
        // writing to a String cannot fail
        let _ = match n.fill() {
            Some(fill) => writeln!(
                out,
                "  {id} [label={label}, shape=box, style=\"filled,rounded\", fillcolor=\"{fill}\"];"
            ),
            None => writeln!(
                out,
                "  {id} [label={label}, shape=ellipse, style=dashed, color=\"#606060\"];"
            ),
        };
    }
    for e in &g.edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(&e.from),
            quote(&e.to),
            quote(&e.label)
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Edge, Node, NodeKind};

    #[test]
    fn names_are_quoted_and_lines_broken_the_dot_way() {
        let g = Graph {
            nodes: vec![
                Node {
                    id: "ns/a\"b".into(),
                    kind: NodeKind::Build {
                        phase: None,
                        image: Some("r/a:1".into()),
                        digest: None,
                        built: None,
                    },
                },
                Node {
                    id: "debian:12".into(),
                    kind: NodeKind::External { digest: None },
                },
            ],
            edges: vec![Edge {
                from: "debian:12".into(),
                to: "ns/a\"b".into(),
                label: "debian:12".into(),
            }],
        };
        let dot = to_dot(&g);
        assert!(
            dot.contains(r#""ns/a\"b" [label="ns/a\"b\nr/a:1\nPending", shape=box"#),
            "{dot}"
        );
        assert!(
            dot.contains(r#""debian:12" [label="debian:12\nexternal base", shape=ellipse"#),
            "{dot}"
        );
        assert!(
            dot.contains(r#""debian:12" -> "ns/a\"b" [label="debian:12"];"#),
            "{dot}"
        );
    }
}
