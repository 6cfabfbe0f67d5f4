//! A test-only connector whose actions misbehave on purpose, so that tests can
//! prove the host's limits: `trap` panics, `spin` never returns, `hog`
//! allocates without bound. It is not installed as a built-in connector.

wit_bindgen::generate!({ path: "../../connectors-wit/wit", world: "connector" });

use weft::connector::types::Action;

struct Testkit;

impl Guest for Testkit {
    fn describe() -> Manifest {
        let action = |name: &str, description: &str| Action {
            name: name.into(),
            description: description.into(),
            input_schema: "{}".into(),
            output_schema: "{}".into(),
            idempotent: true,
        };
        Manifest {
            name: "testkit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Misbehaving actions for sandbox tests.".into(),
            actions: vec![
                action("trap", "Panic (a wasm trap)."),
                action("spin", "Loop forever."),
                action("hog", "Allocate memory until refused."),
            ],
            secrets: vec![],
            egress: vec![],
        }
    }

    fn invoke(_ctx: Context, action: String, _input: String) -> Result<String, Error> {
        match action.as_str() {
            "trap" => panic!("testkit trap requested"),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(std::hint::black_box(vec![1u8; 1 << 20]));
                }
            }
            other => Err(Error::InvalidInput(format!("testkit has no action `{other}`"))),
        }
    }
}

export!(Testkit);
