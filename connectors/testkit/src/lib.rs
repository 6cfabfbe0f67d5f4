//! A test-only connector whose actions misbehave on purpose, so that tests can
//! prove the host's limits: `trap` panics, `spin` never returns, `hog`
//! allocates without bound. It is not installed as a built-in connector.

use serde_json::Value;
use weft_sdk::{Action, Connector, Context, Error, Manifest};

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
            .action(Action::new("hog", "Allocate memory until refused.", hog).idempotent())
    }
}

weft_sdk::export!(Testkit);
