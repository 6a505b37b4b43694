//! Line numbers for parts of a YAML document.
//!
//! The YAML crate ([`crate::yaml`]) gives values without positions, so error messages would
//! have no line. This module reads the same text once more with yaml-rust2's event parser,
//! which marks every node, and keeps a tree of lines that [`LineIndex::line`] walks by path
//! (`phases`, 0, `steps`, 2, ...).
//! It is only built when a document has an error to report, so valid documents pay nothing.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

#[derive(Debug)]
enum Node {
    Scalar(usize),
    Seq(usize, Vec<Node>),
    /// Each entry: key text, line of the key, value.
    Map(usize, Vec<(String, usize, Node)>),
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar(l) | Node::Seq(l, _) | Node::Map(l, _) => *l,
        }
    }
}

/// Lines of the nodes of a YAML text (1-based).
#[derive(Debug, Default)]
pub struct LineIndex {
    root: Option<Node>,
}

enum Frame {
    Seq(usize, Vec<Node>),
    Map(usize, Vec<(String, usize, Node)>, Option<(String, usize)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
}

impl Builder {
    fn push_node(&mut self, node: Node, key_text: Option<String>) {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, items)) => items.push(node),
            Some(Frame::Map(_, entries, pending)) => match pending.take() {
                Some((key, line)) => entries.push((key, line, node)),
                None => *pending = Some((key_text.unwrap_or_default(), node.line())),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(text, ..) => self.push_node(Node::Scalar(line), Some(text)),
            Event::Alias(_) => self.push_node(Node::Scalar(line), None),
            Event::SequenceStart(..) => self.stack.push(Frame::Seq(line, Vec::new())),
            Event::MappingStart(..) => self.stack.push(Frame::Map(line, Vec::new(), None)),
            Event::SequenceEnd => {
                if let Some(Frame::Seq(l, items)) = self.stack.pop() {
                    self.push_node(Node::Seq(l, items), None);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(l, entries, _)) = self.stack.pop() {
                    self.push_node(Node::Map(l, entries), None);
                }
            }
            _ => {}
        }
    }
}

impl LineIndex {
    /// Indexes `text`; a text yaml-rust2 cannot read gives an index that knows no lines.
    pub fn build(text: &str) -> LineIndex {
        Self::try_build(text)
            // The libyaml-derived parser of `crate::yaml` accepts a tab after `key:`, yaml-rust2
            // does not; a space in its place keeps every line where it was.
            .or_else(|| Self::try_build(&text.replace(":\t", ": ")))
            .unwrap_or_default()
    }

    fn try_build(text: &str) -> Option<LineIndex> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut builder, false).ok()?;
        Some(LineIndex { root: builder.root })
    }

    /// The line of the node at `path`; for a path ending in a key, the line of that key. When
    /// the path goes further than the document, the line of the deepest node that exists.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        let mut node = self.root.as_ref()?;
        let mut line = node.line();
        for seg in path {
            match (seg, node) {
                (Seg::Index(i), Node::Seq(_, items)) => match items.get(*i) {
                    Some(n) => {
                        node = n;
                        line = n.line();
                    }
                    None => break,
                },
                (Seg::Key(k), Node::Map(_, entries)) => {
                    match entries.iter().find(|(key, _, _)| key == k) {
                        Some((_, key_line, n)) => {
                            node = n;
                            line = *key_line;
                        }
                        None => break,
                    }
                }
                _ => break,
            }
        }
        // yaml-rust2 counts lines from 1 since 0.9; older versions counted from 0.
        Some(line.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_by_path() {
        let text = "schemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n      - name: B\n        action: Nope\n";
        let index = LineIndex::build(text);
        let cases: &[(&[Seg], usize)] = &[
            (&[Seg::Key("schemaVersion")], 1),
            (&[Seg::Key("phases")], 2),
            (&[Seg::Key("phases"), Seg::Index(0)], 3),
            (
                &[
                    Seg::Key("phases"),
                    Seg::Index(0),
                    Seg::Key("steps"),
                    Seg::Index(1),
                ],
                7,
            ),
            (
                &[
                    Seg::Key("phases"),
                    Seg::Index(0),
                    Seg::Key("steps"),
                    Seg::Index(1),
                    Seg::Key("action"),
                ],
                8,
            ),
            (&[Seg::Key("phases"), Seg::Index(0), Seg::Key("nope")], 3),
        ];
        for (path, want) in cases {
            assert_eq!(index.line(path), Some(*want), "{path:?}");
        }
        assert_eq!(LineIndex::build("a: [").line(&[]), None);
    }
}
