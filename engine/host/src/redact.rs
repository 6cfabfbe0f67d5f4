//! Secret values revealed to a call never leave it in the clear: before a
//! call's output, error message or log lines go anywhere (the journal, the
//! terminal, tracing), every value the call revealed is replaced by
//! [`REDACTED`], in the forms a connector or a provider is likely to echo it:
//! as is, JSON-escaped, percent-encoded, base64 (standard and URL-safe, with
//! and without padding) and hex.

use base64::Engine as _;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

/// What a secret's value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The values one call revealed, in every form they are looked for.
#[derive(Debug, Default)]
pub(crate) struct Redactor {
    /// Longest first, so that a form containing another is replaced whole.
    needles: Vec<String>,
}

impl Redactor {
    /// Looks for `secret` (and its encodings) from now on.
    pub(crate) fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let bytes = secret.as_bytes();
        let json = serde_json::to_string(secret).expect("a string serializes");
        let forms = [
            secret.to_string(),
            json[1..json.len() - 1].to_string(),
            utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
            form_encoded(secret),
            base64::engine::general_purpose::STANDARD.encode(bytes),
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
            base64::engine::general_purpose::URL_SAFE.encode(bytes),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
            hex::encode(bytes),
            hex::encode_upper(bytes),
        ];
        for form in forms {
            if !self.needles.contains(&form) {
                self.needles.push(form);
            }
        }
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// Whether there is nothing to look for.
    pub(crate) fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `text` with every form of every secret replaced.
    pub(crate) fn text(&self, text: String) -> String {
        if !self.needles.iter().any(|n| text.contains(n.as_str())) {
            return text;
        }
        let mut text = text;
        for needle in &self.needles {
            if text.contains(needle.as_str()) {
                text = text.replace(needle.as_str(), REDACTED);
            }
        }
        text
    }

    /// `value` with every string (and key) that holds a secret redacted; a
    /// number that spells one becomes the string [`REDACTED`].
    pub(crate) fn value(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        // Iterative: outputs may nest as deep as the value limit allows.
        let mut value = value;
        let mut stack: Vec<&mut Value> = vec![&mut value];
        while let Some(node) = stack.pop() {
            match node {
                Value::String(s) => *s = self.text(std::mem::take(s)),
                Value::Number(n) => {
                    let spelled = n.to_string();
                    if self.text(spelled.clone()) != spelled {
                        *node = Value::String(REDACTED.into());
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(map) => {
                    if map.keys().any(|k| self.text(k.clone()) != *k) {
                        let entries = std::mem::take(map);
                        *map = entries.into_iter().map(|(k, v)| (self.text(k), v)).collect();
                    }
                    stack.extend(map.values_mut());
                }
                Value::Null | Value::Bool(_) => {}
            }
        }
        value
    }
}

/// `application/x-www-form-urlencoded`: spaces as `+`.
fn form_encoded(secret: &str) -> String {
    secret.split(' ').map(|part| utf8_percent_encode(part, NON_ALPHANUMERIC).to_string()).collect::<Vec<_>>().join("+")
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use serde_json::json;

    use super::*;

    #[test]
    fn every_form_of_a_secret_is_redacted() {
        let secret = "s3cr3t/tok+en value\"";
        let mut r = Redactor::default();
        r.add(secret);
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let url = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
        let escaped = serde_json::to_string(secret).unwrap();
        for leak in [secret.to_string(), b64, url, escaped, hex::encode(secret), form_encoded(secret)] {
            let out = r.text(format!("provider said: {leak}!"));
            assert!(!out.contains(&leak), "{out}");
            assert!(out.contains(REDACTED), "{out}");
        }
        assert_eq!(r.text("nothing here".into()), "nothing here");
    }

    #[test]
    fn values_keep_their_shape() {
        let mut r = Redactor::default();
        r.add("hunter22");
        r.add("31337");
        let out = r.value(json!({ "echo": "Bearer hunter22", "hunter22": [1, 31337, { "n": "x-31337" }] }));
        assert_eq!(
            out,
            json!({ "echo": "Bearer [redacted]", "[redacted]": [1, "[redacted]", { "n": "x-[redacted]" }] })
        );
    }
}
