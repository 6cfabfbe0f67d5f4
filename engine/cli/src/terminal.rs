//! Text from outside (outputs, errors, names) on the way to a terminal:
//! control characters and bidirectional overrides are escaped, so that no
//! connector or workflow can move the cursor, clear the screen or reorder
//! what a line shows.

use std::borrow::Cow;

/// `text` for one line: every control character (line breaks included) and
/// every bidirectional formatting character escaped as `\u{…}` (or `\n`,
/// `\t`, `\r`).
pub fn safe(text: &str) -> Cow<'_, str> {
    escape(text, |c| c.is_control() || bidi(c))
}

/// `text` that may span lines: as [`safe`], but line breaks and tabs stay.
pub fn safe_lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| (c.is_control() && c != '\n' && c != '\t') || bidi(c))
}

/// `n` and a noun with a regular plural: `1 step`, `3 steps`, `0 items`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// An error and its causes, each cause once: `outer: inner: root`. A cause
/// whose text its parent already shows (as sqlx's and our own errors do when
/// they name their source) is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let part = next.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = next.source();
    }
    text
}

fn escape(text: &str, escaped: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn bidi(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::{error_chain, safe, safe_lines};

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(safe("plain ✓ text"), "plain ✓ text");
        assert_eq!(safe("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(safe("one\ntwo\r\u{7}"), "one\\ntwo\\r\\u{7}");
        assert_eq!(safe("x\u{202e}y\u{9b}"), "x\\u{202e}y\\u{9b}");
        assert_eq!(safe_lines("one\n\ttwo\u{1b}"), "one\n\ttwo\\u{1b}");
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let named =
            anyhow::Error::new(io).context("error communicating with database: Connection refused (os error 111)");
        let outer = named.context("cannot open the database at postgres://h/x");
        assert_eq!(
            error_chain(outer.as_ref()),
            "cannot open the database at postgres://h/x: error communicating with database: Connection refused (os error 111)"
        );
        let plain = anyhow::anyhow!("root").context("middle").context("top");
        assert_eq!(error_chain(plain.as_ref()), "top: middle: root");
    }
}
