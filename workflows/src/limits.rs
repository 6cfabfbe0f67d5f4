//! The limits every door applies to what users and connectors hand Weft, so
//! that whatever is accepted can be journaled and read back. One policy for
//! JSON values (a run's input, a workflow file, a signal's payload, a
//! rendered step input, a connector's output) and one budget for templates.
//! `docs/limits.md` lists them with the errors a user sees.

use serde_json::Value;

use crate::diagnostic::JsonPath;

/// How deeply arrays and objects may nest in any JSON value Weft accepts
/// (`{}` is 1 level, `{"a": []}` 2). The journal wraps values in a few
/// levels of its own and reads them back with a parser that stops at 128.
pub const MAX_DEPTH: usize = 64;

/// The largest JSON value (as compact text) accepted as a run input, a
/// signal payload, or a step's rendered input or a run's rendered output.
pub const MAX_VALUE_BYTES: usize = 4 << 20;

/// The largest workflow file, input file (`@file`) or child workflow file.
pub const MAX_FILE_BYTES: usize = 4 << 20;

/// The operations one template or expression may perform before it is
/// stopped: enough for loops over tens of thousands of items, not for
/// nested loops over a large input.
pub const TEMPLATE_FUEL: u64 = 10_000_000;

/// The longest text a connector's error message may carry into the journal;
/// the rest is cut off and says so.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 8 << 10;

/// The longest duration a workflow may give (a sleep, a timeout, a retry
/// interval): 100 years, so that adding it to a time cannot overflow.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(36_500 * 24 * 3600);

/// [`MAX_DURATION`] as the error message gives it.
pub const MAX_DURATION_TEXT: &str = "36500d (100 years)";

/// A value over one of the limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("{what} nests deeper than the limit of {MAX_DEPTH} levels (at {path})")]
    TooDeep {
        /// What was checked ("the run input").
        what: String,
        /// The first place past the limit.
        path: JsonPath,
    },
    /// Larger than its size limit.
    #[error("{what} is over the size limit of {limit} bytes")]
    TooLarge {
        /// What was checked.
        what: String,
        /// The limit.
        limit: usize,
    },
}

/// How deeply `value` nests (a scalar is 0), found without recursion and
/// without allocating more than a stack of the containers still to visit.
pub fn depth(value: &Value) -> usize {
    let is_container = |v: &&Value| matches!(v, Value::Array(_) | Value::Object(_));
    let mut deepest = 0;
    let mut pending: Vec<(&Value, usize)> = Vec::new();
    if is_container(&value) {
        pending.push((value, 1));
    }
    while let Some((value, level)) = pending.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => pending.extend(items.iter().filter(is_container).map(|c| (c, level + 1))),
            Value::Object(map) => pending.extend(map.values().filter(is_container).map(|c| (c, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// The path to the first container nested past `limit` levels, if any.
pub fn too_deep_at(value: &Value, limit: usize) -> Option<JsonPath> {
    if depth(value) <= limit {
        return None;
    }
    let mut pending = vec![(value, JsonPath::root())];
    while let Some((value, path)) = pending.pop() {
        if matches!(value, Value::Array(_) | Value::Object(_)) && path.0.len() >= limit {
            return Some(path);
        }
        match value {
            Value::Array(items) => pending.extend(items.iter().enumerate().map(|(i, v)| (v, path.index(i)))),
            Value::Object(map) => pending.extend(map.iter().map(|(k, v)| (v, path.key(k.as_str())))),
            _ => {}
        }
    }
    None
}

/// The size of `value` as compact JSON text, counted up to `limit + 1`
/// bytes without building the text.
pub fn json_size(value: &Value, limit: usize) -> usize {
    let mut counter = Capped { written: 0, limit };
    let _ = serde_json::to_writer(&mut counter, value);
    counter.written
}

/// Checks `value` against [`MAX_DEPTH`] and a size limit of `max_bytes`;
/// `what` names it in the error ("the run input").
pub fn check_value(value: &Value, what: &str, max_bytes: usize) -> Result<(), LimitError> {
    if let Some(path) = too_deep_at(value, MAX_DEPTH) {
        return Err(LimitError::TooDeep { what: what.to_string(), path });
    }
    if json_size(value, max_bytes) > max_bytes {
        return Err(LimitError::TooLarge { what: what.to_string(), limit: max_bytes });
    }
    Ok(())
}

/// Reads a text file of at most `limit` bytes. Anything but a regular file
/// (a device such as `/dev/zero`, a FIFO, a directory) is refused before it
/// is opened, so reading can neither hang nor fill memory.
pub fn read_text_file(path: &std::path::Path, limit: usize) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let too_large = || Error::new(ErrorKind::InvalidInput, format!("over the size limit of {limit} bytes"));
    if metadata.len() > limit as u64 {
        return Err(too_large());
    }
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit as u64 + 1).read_to_string(&mut text)?;
    if text.len() > limit {
        return Err(too_large());
    }
    Ok(text)
}

/// A writer that counts, and refuses past its limit.
pub(crate) struct Capped {
    pub(crate) written: usize,
    pub(crate) limit: usize,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len();
        if self.written > self.limit {
            return Err(std::io::Error::other("over the size limit"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `Vec` writer that refuses past its limit.
pub(crate) struct CappedBuffer {
    pub(crate) bytes: Vec<u8>,
    pub(crate) limit: usize,
}

impl std::io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::other("over the size limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `message` cut to at most `limit` bytes (on a character boundary), saying
/// how much was cut; a message within the limit is returned as it is.
pub fn truncate_message(message: String, limit: usize) -> String {
    if message.len() <= limit {
        return message;
    }
    let mut end = limit;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes cut)", &message[..end], message.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            value = json!({ "a": [value] });
        }
        value
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({ "a": [] })), 2);
        assert_eq!(depth(&nested(10)), 20);
    }

    #[test]
    fn the_first_place_past_the_limit_is_named() {
        assert!(check_value(&nested(32), "x", MAX_VALUE_BYTES).is_ok());
        let error = check_value(&nested(33), "the run input", MAX_VALUE_BYTES).unwrap_err();
        let LimitError::TooDeep { path, .. } = &error else { panic!("{error}") };
        assert_eq!(path.0.len(), MAX_DEPTH);
        assert!(error.to_string().starts_with("the run input nests deeper than the limit of 64 levels (at $.a[0]"));
    }

    #[test]
    fn sizes_are_counted_without_building_the_text() {
        let value = json!({ "text": "x".repeat(100) });
        assert_eq!(json_size(&value, 1000), value.to_string().len());
        assert!(json_size(&value, 10) > 10);
        assert!(matches!(check_value(&value, "x", 50), Err(LimitError::TooLarge { limit: 50, .. })));
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.json");
        std::fs::write(&file, "{}").unwrap();
        assert_eq!(read_text_file(&file, 10).unwrap(), "{}");
        std::fs::write(&file, "x".repeat(11)).unwrap();
        assert_eq!(read_text_file(&file, 10).unwrap_err().to_string(), "over the size limit of 10 bytes");
        assert_eq!(read_text_file(dir.path(), 10).unwrap_err().to_string(), "not a regular file");
        assert_eq!(read_text_file("/dev/zero".as_ref(), 10).unwrap_err().to_string(), "not a regular file");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert_eq!(read_text_file(&fifo, 10).unwrap_err().to_string(), "not a regular file");
    }

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncate_message("short".into(), 10), "short");
        let cut = truncate_message("é".repeat(10), 5);
        assert!(cut.starts_with("éé…"), "{cut}");
        assert!(cut.ends_with("(16 more bytes cut)"), "{cut}");
    }
}
