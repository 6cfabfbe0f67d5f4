//! A test-only connector whose actions misbehave on purpose, so that tests can
//! prove the host's limits: `trap` panics, `spin` never returns, `hog`
//! allocates without bound, `hoard` holds host resources without bound,
//! `big`, `nest` and `shout` return too much, `chatter` logs, and
//! the probes reach for secrets, tokens, hosts, files and environment
//! variables. It is not installed as a built-in connector.
//!
//! It declares the secret `declared`, the OAuth provider `github` and the
//! egress host `localhost`; anything else it asks for must be refused.

use serde_json::{Value, json};
use weft_sdk::http::Request;
use weft_sdk::{Action, Connector, Context, Error, Manifest};

fn name_of(input: &Value) -> Result<&str, Error> {
    input["name"].as_str().ok_or_else(|| Error::invalid_input("`name` is required"))
}

fn secret(cx: &Context, input: Value) -> Result<Value, Error> {
    let value = cx.secret(name_of(&input)?)?.reveal()?;
    Ok(json!({ "length": value.len() }))
}

/// Reveals the secret `declared` and gives it away: in its log, in its
/// output (as is, base64, hex and percent-encoded) or, with `fail`, in its
/// error message.
fn leak(cx: &Context, input: Value) -> Result<Value, Error> {
    let value = cx.secret("declared")?.reveal()?;
    weft_sdk::log::info(&format!("the secret is {value}"));
    let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
    let percent: String = value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let leaks = json!({ "raw": value, "base64": base64(value.as_bytes()), "hex": hex, "percent": percent,
                        "header": format!("Authorization: Bearer {value}") });
    if input["fail"].as_bool().unwrap_or(false) {
        return Err(Error::fatal(format!("upstream echoed the request: {leaks}")));
    }
    Ok(leaks)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn token(cx: &Context, input: Value) -> Result<Value, Error> {
    Ok(json!({ "token": cx.oauth_token(name_of(&input)?)? }))
}

fn fetch(_cx: &Context, input: Value) -> Result<Value, Error> {
    let url = input["url"].as_str().ok_or_else(|| Error::invalid_input("`url` is required"))?;
    let response = Request::get(url).send()?;
    Ok(json!({ "status": response.status }))
}

/// What the guest can see of the world outside: nothing.
fn snoop(_cx: &Context, _input: Value) -> Result<Value, Error> {
    let readable: Vec<&str> = ["/", "/etc/passwd", ".", "/proc/self/environ"]
        .into_iter()
        .filter(|p| std::fs::read_dir(p).is_ok() || std::fs::read(p).is_ok())
        .collect();
    Ok(json!({
        "env": std::env::vars().count(),
        "args": std::env::args().count(),
        "readable": readable,
        "cwd": std::env::current_dir().ok().map(|d| d.display().to_string()),
    }))
}

fn upload(_cx: &Context, input: Value) -> Result<Value, Error> {
    let url = input["url"].as_str().ok_or_else(|| Error::invalid_input("`url` is required"))?;
    let bytes = input["bytes"].as_u64().unwrap_or(1 << 20) as usize;
    let response = Request::post(url).body(vec![b'x'; bytes], "application/octet-stream").send()?;
    Ok(json!({ "status": response.status }))
}

fn big(_cx: &Context, input: Value) -> Result<Value, Error> {
    let bytes = input["bytes"].as_u64().unwrap_or(1 << 20) as usize;
    Ok(Value::String("x".repeat(bytes)))
}

fn nest(_cx: &Context, input: Value) -> Result<Value, Error> {
    let levels = input["levels"].as_u64().unwrap_or(100);
    Ok((0..levels).fold(json!(1), |inner, _| json!([inner])))
}

fn shout(_cx: &Context, input: Value) -> Result<Value, Error> {
    let bytes = input["bytes"].as_u64().unwrap_or(1 << 20) as usize;
    Err(Error::fatal("x".repeat(bytes)))
}

/// Holds on to wasi:http resources that live in the host, outside the
/// guest's memory: `fields` header maps, each with `header_bytes` bytes
/// appended to it (counting the appends the host refuses).
fn hoard(_cx: &Context, input: Value) -> Result<Value, Error> {
    use wasip2::http::types::Fields;
    let count = input["fields"].as_u64().unwrap_or(1_000_000);
    let header_bytes = input["header_bytes"].as_u64().unwrap_or(0) as usize;
    let value = vec![b'x'; 1024];
    let mut hoard = Vec::new();
    let mut refused = 0u64;
    for _ in 0..count {
        let fields = Fields::new();
        let mut written = 0;
        let mut n = 0;
        while written < header_bytes {
            if fields.append(&format!("x-h{n}"), &value).is_err() {
                refused += 1;
                break;
            }
            written += value.len();
            n += 1;
        }
        hoard.push(fields);
    }
    Ok(json!({ "held": hoard.len(), "refused_appends": refused }))
}

/// Logs `lines` lines (`line 0`, `line 1`, …), each level in turn from
/// `info`; with `fail`, fails after logging.
fn chatter(_cx: &Context, input: Value) -> Result<Value, Error> {
    let lines = input["lines"].as_u64().unwrap_or(3);
    let levels = [weft_sdk::log::info, weft_sdk::log::warn, weft_sdk::log::error, weft_sdk::log::debug];
    for i in 0..lines {
        levels[i as usize % levels.len()](&format!("line {i}"));
    }
    if input["fail"].as_bool().unwrap_or(false) {
        return Err(Error::fatal("failed after logging"));
    }
    Ok(json!({ "logged": lines }))
}

fn trap(_cx: &Context, _input: Value) -> Result<Value, Error> {
    panic!("testkit trap requested")
}

fn spin(_cx: &Context, _input: Value) -> Result<Value, Error> {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

fn hog(_cx: &Context, _input: Value) -> Result<Value, Error> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
    }
}

struct Testkit;

impl Connector for Testkit {
    fn manifest() -> Manifest {
        Manifest::new("testkit", env!("CARGO_PKG_VERSION"), "Misbehaving actions for sandbox tests.")
            .action(Action::new("trap", "Panic (a wasm trap).", trap).idempotent())
            .action(Action::new("spin", "Loop forever.", spin).idempotent())
            .action(Action::new("hoard", "Hold wasi:http header fields until refused.", hoard).idempotent())
            .action(Action::new("hog", "Allocate memory until refused.", hog).idempotent())
            .action(Action::new("secret", "Reveal the secret `name`; returns its length.", secret))
            .action(Action::new("token", "Ask for an OAuth token for provider `name`.", token))
            .action(Action::new("leak", "Reveal `declared` and give it away (output, error, log).", leak))
            .action(Action::new("fetch", "GET `url`; returns the status.", fetch))
            .action(Action::new("snoop", "Count what the sandbox lets the guest see.", snoop))
            .action(Action::new("upload", "POST `bytes` bytes to `url`; returns the status.", upload))
            .action(Action::new("big", "Return a string of `bytes` bytes.", big))
            .action(Action::new("nest", "Return a list nested `levels` deep.", nest))
            .action(Action::new("shout", "Fail with a message of `bytes` bytes.", shout))
            .action(Action::new("chatter", "Log `lines` lines; with `fail`, fail after them.", chatter).idempotent())
            .secret("declared")
            .oauth("github", &["repo"])
            .egress("localhost")
    }
}

weft_sdk::export!(Testkit);
