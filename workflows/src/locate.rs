//! Maps JSON paths back to line:column in the source text.

use jsonc_parser::ast::{ObjectPropName, Value};
use jsonc_parser::common::Ranged;
use jsonc_parser::{CollectOptions, ParseOptions};

use crate::diagnostic::{JsonPath, Segment};
use crate::yaml::Positions;

/// Source positions of a parsed document, JSON or YAML.
pub(crate) enum Locator<'a> {
    Json(JsonLocator<'a>),
    Yaml(Positions),
}

impl Locator<'_> {
    /// Line and column (1-based) of the deepest node on `path` that exists.
    /// An object member is located at its key, so that both "unknown field"
    /// and "bad value" land on the line a reader looks for.
    pub(crate) fn position(&self, path: &JsonPath) -> (usize, usize) {
        match self {
            Locator::Json(json) => json.position(path),
            Locator::Yaml(positions) => positions.position(path),
        }
    }
}

/// Positions in JSON text.
pub(crate) struct JsonLocator<'a> {
    text: &'a str,
    root: Option<Value<'a>>,
    line_starts: Vec<usize>,
}

impl<'a> JsonLocator<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        let root = jsonc_parser::parse_to_ast(text, &CollectOptions::default(), &ParseOptions::default())
            .ok()
            .and_then(|parsed| parsed.value);
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        JsonLocator { text, root, line_starts }
    }

    fn position(&self, path: &JsonPath) -> (usize, usize) {
        let Some(mut node) = self.root.as_ref() else { return (1, 1) };
        let mut offset = node.range().start;
        for segment in &path.0 {
            match (node, segment) {
                (Value::Object(object), Segment::Key(key)) => {
                    let Some(prop) = object.properties.iter().find(|p| prop_name(&p.name) == key.as_str()) else {
                        break;
                    };
                    offset = prop.range.start;
                    node = &prop.value;
                }
                (Value::Array(array), Segment::Index(i)) => {
                    let Some(element) = array.elements.get(*i) else { break };
                    offset = element.range().start;
                    node = element;
                }
                _ => break,
            }
        }
        self.line_column(offset)
    }

    /// Line and column (1-based) of a byte offset.
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text.get(start..offset).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

fn prop_name<'b>(name: &'b ObjectPropName<'_>) -> &'b str {
    match name {
        ObjectPropName::String(s) => &s.value,
        ObjectPropName::Word(w) => w.value,
    }
}
