//! YAML workflow files: read with saphyr (YAML 1.2, core schema) into the
//! same JSON value a JSON file gives, with the position of every node kept
//! so that diagnostics point into the YAML text.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use serde_json::{Map, Number, Value};

use crate::diagnostic::{JsonPath, Segment};

/// Where each node of a YAML document starts, shaped like the document.
#[derive(Debug)]
pub(crate) struct Positions {
    /// Line and column (1-based) of the node.
    at: (usize, usize),
    children: Children,
}

#[derive(Debug)]
enum Children {
    None,
    /// Object members: key, the key's position, and the value.
    Object(Vec<(String, (usize, usize), Positions)>),
    Array(Vec<Positions>),
}

impl Positions {
    /// Line and column of the deepest node on `path` that exists; an object
    /// member is located at its key.
    pub(crate) fn position(&self, path: &JsonPath) -> (usize, usize) {
        let mut node = self;
        let mut at = self.at;
        for segment in &path.0 {
            match (&node.children, segment) {
                (Children::Object(members), Segment::Key(key)) => {
                    let Some((_, key_at, value)) = members.iter().find(|(k, ..)| k == key) else { break };
                    at = *key_at;
                    node = value;
                }
                (Children::Array(items), Segment::Index(i)) => {
                    let Some(item) = items.get(*i) else { break };
                    at = item.at;
                    node = item;
                }
                _ => break,
            }
        }
        at
    }
}

/// A YAML problem that stops reading: a message, its line and column, and
/// the path of the node (the root when the text does not parse).
pub(crate) type YamlError = (String, (usize, usize), JsonPath);

/// A problem found while converting, placed by line and column alone.
type Problem = (String, (usize, usize));

/// How many nodes aliases may add to a document, all told: each alias adds
/// the whole subtree its anchor names, keys included.
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;

/// Reads the document's events once, without building anything, and
/// refuses it when its aliases would expand past [`MAX_ALIAS_NODES`] or it
/// (aliases included) nests deeper than the limit on values. This walk is
/// iterative, so that neither an alias bomb (through values or keys) nor
/// deep nesting reaches the loader. Syntax errors are left to the loader,
/// which reports them.
fn check_size_and_depth(text: &str) -> Result<(), YamlError> {
    use saphyr_parser::{Event, Parser};
    /// An anchored node's size in nodes and its height in levels.
    #[derive(Clone, Copy, Default)]
    struct Shape {
        nodes: usize,
        height: usize,
    }
    /// Where the next child of an open container goes.
    enum Slot {
        Sequence(usize),
        /// A mapping: the last key read, and whether the next node is a key.
        Mapping(String, bool),
    }
    /// The segment of a new node in its parent (none for a mapping's key),
    /// moving the parent on to its next child.
    fn place(parent: Option<&mut Slot>, scalar: Option<&str>) -> Option<Segment> {
        match parent? {
            Slot::Sequence(next) => {
                *next += 1;
                Some(Segment::Index(*next - 1))
            }
            Slot::Mapping(key, on_key) if *on_key => {
                *key = scalar.unwrap_or("?").to_string();
                *on_key = false;
                None
            }
            Slot::Mapping(key, on_key) => {
                *on_key = true;
                Some(Segment::Key(key.clone()))
            }
        }
    }
    struct Open {
        anchor: usize,
        shape: Shape,
        slot: Slot,
        segment: Option<Segment>,
    }
    let path = |open: &[Open], last: Option<Segment>| {
        JsonPath(open.iter().filter_map(|o| o.segment.clone()).chain(last).collect())
    };
    let max_depth = crate::limits::MAX_DEPTH;
    let mut anchors: std::collections::HashMap<usize, Shape> = std::collections::HashMap::new();
    // Open containers: their anchor, their shape so far, and their place.
    let mut open: Vec<Open> = Vec::new();
    let mut aliased = 0usize;
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { return Ok(()) };
        let here = (span.start.line().max(1), span.start.col() + 1);
        let done = match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let segment = place(open.last_mut().map(|o| &mut o.slot), None);
                if open.len() >= max_depth {
                    let message = format!("the workflow nests deeper than the limit of {max_depth} levels");
                    return Err((message, here, path(&open, segment)));
                }
                let slot = match event {
                    Event::SequenceStart(..) => Slot::Sequence(0),
                    _ => Slot::Mapping(String::new(), true),
                };
                open.push(Open { anchor, shape: Shape::default(), slot, segment });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(Open { anchor, shape, .. }) = open.pop() else { continue };
                (anchor, Shape { nodes: shape.nodes + 1, height: shape.height + 1 })
            }
            Event::Scalar(value, _, anchor, _) => {
                place(open.last_mut().map(|o| &mut o.slot), Some(&value));
                (anchor, Shape { nodes: 1, height: 0 })
            }
            Event::Alias(id) => {
                let segment = place(open.last_mut().map(|o| &mut o.slot), None);
                let shape = anchors.get(&id).copied().unwrap_or_default();
                aliased = aliased.saturating_add(shape.nodes);
                if aliased > MAX_ALIAS_NODES {
                    let message = format!("YAML aliases here expand past the limit of {MAX_ALIAS_NODES} nodes");
                    return Err((message, here, path(&open, segment)));
                }
                if open.len() + shape.height > max_depth {
                    let message = format!("this YAML alias nests deeper than the limit of {max_depth} levels");
                    return Err((message, here, path(&open, segment)));
                }
                (0, shape)
            }
            _ => continue,
        };
        let (anchor, shape) = done;
        if anchor != 0 {
            anchors.insert(anchor, shape);
        }
        if let Some(parent) = open.last_mut() {
            parent.shape.nodes = parent.shape.nodes.saturating_add(shape.nodes);
            parent.shape.height = parent.shape.height.max(shape.height);
        }
    }
    Ok(())
}

/// Reads a YAML document into JSON, with its positions.
pub(crate) fn parse(text: &str) -> Result<(Value, Positions), YamlError> {
    check_size_and_depth(text)?;
    read(text).map_err(|(message, at)| (message, at, JsonPath::root()))
}

fn read(text: &str) -> Result<(Value, Positions), Problem> {
    let documents = MarkedYaml::load_from_str(text).map_err(|e| {
        let marker = e.marker();
        (format!("invalid YAML: {}", e.info()), (marker.line().max(1), marker.col() + 1))
    })?;
    let mut documents = documents.into_iter().filter(|d| !matches!(d.data, YamlData::BadValue));
    let Some(document) = documents.next() else {
        return Err(("the file holds no YAML document".into(), (1, 1)));
    };
    if let Some(second) = documents.next() {
        return Err(("a workflow file holds one YAML document; this one has more".into(), at(&second)));
    }
    convert(&document)
}

fn at(node: &MarkedYaml<'_>) -> (usize, usize) {
    (node.span.start.line().max(1), node.span.start.col() + 1)
}

/// Converts a node. The recursion is bounded: `check_size_and_depth` has
/// refused any document nested deeper than the limit on values.
fn convert(node: &MarkedYaml<'_>) -> Result<(Value, Positions), Problem> {
    let here = at(node);
    let leaf = |value: Value| Ok((value, Positions { at: here, children: Children::None }));
    match &node.data {
        YamlData::Value(scalar) => leaf(scalar_value(scalar, here)?),
        // Left unresolved only when the loader is lazy; read as written.
        YamlData::Representation(text, ..) => leaf(Value::String(text.to_string())),
        YamlData::Sequence(items) => {
            let (mut values, mut positions) = (Vec::new(), Vec::new());
            for item in items {
                let (value, position) = convert(item)?;
                values.push(value);
                positions.push(position);
            }
            Ok((Value::Array(values), Positions { at: here, children: Children::Array(positions) }))
        }
        YamlData::Mapping(entries) => {
            let (mut map, mut members) = (Map::new(), Vec::new());
            for (key, value) in entries {
                let name = key_name(key)?;
                let (value, position) = convert(value)?;
                map.insert(name.clone(), value);
                members.push((name, at(key), position));
            }
            Ok((Value::Object(map), Positions { at: here, children: Children::Object(members) }))
        }
        YamlData::Tagged(tag, _) => Err((format!("YAML tags such as `{tag}` are not supported in workflows"), here)),
        YamlData::Alias(_) => Err(("this YAML alias does not name an anchor defined before it".into(), here)),
        YamlData::BadValue => Err(("this YAML value cannot be read".into(), here)),
    }
}

fn scalar_value(scalar: &Scalar<'_>, here: (usize, usize)) -> Result<Value, Problem> {
    Ok(match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Number((*i).into()),
        Scalar::FloatingPoint(f) => Value::Number(
            Number::from_f64(f.into_inner())
                .ok_or_else(|| (format!("{} has no JSON form; quote it to make it text", f.into_inner()), here))?,
        ),
        Scalar::String(s) => Value::String(s.to_string()),
    })
}

/// A mapping key as a JSON object key: text as is, and numbers and booleans
/// as written; other keys have no JSON form.
fn key_name(key: &MarkedYaml<'_>) -> Result<String, Problem> {
    match &key.data {
        YamlData::Value(Scalar::String(s)) => Ok(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Ok(i.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Ok(b.to_string()),
        YamlData::Representation(text, ..) => Ok(text.to_string()),
        // `with: {x: {{ input.x }}}` reads as a mapping used as a key.
        YamlData::Mapping(_) => Err((
            "a mapping key in a workflow must be text; a `{{ … }}` template must be quoted in YAML: \"{{ … }}\"".into(),
            at(key),
        )),
        _ => Err(("a mapping key in a workflow must be text".into(), at(key))),
    }
}

/// Whether a file name says YAML (`.yaml` or `.yml`).
pub(crate) fn is_yaml(file: &str) -> bool {
    let lower = file.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}
