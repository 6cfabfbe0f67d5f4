//! Compiles the guest workspace in `connectors/` to wasm32-wasip2 components,
//! so that a plain `cargo build` of the engine embeds up-to-date built-in
//! connectors. The guests get their own target directory (their target,
//! profile and features differ from the host's), shared by every host profile.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[path = "build/wasm_target.rs"]
mod wasm_target;

#[path = "src/config.rs"]
#[allow(dead_code)]
mod config;

/// Every guest crate under `connectors/`, and whether it is a built-in
/// connector (embedded in the host as `BUILTINS`), a test guest, or the
/// template sandbox (embedded as `TEMPLATE_SANDBOX`). This is the one list
/// of them.
const GUESTS: &[(&str, Guest)] = &[
    ("transform", Guest::BuiltIn),
    ("http", Guest::BuiltIn),
    ("testkit", Guest::Test),
    ("slack", Guest::BuiltIn),
    ("github", Guest::BuiltIn),
    ("stripe", Guest::BuiltIn),
    ("discord", Guest::BuiltIn),
    ("google_sheets", Guest::BuiltIn),
    ("sendgrid", Guest::BuiltIn),
    ("notion", Guest::BuiltIn),
    ("hubspot", Guest::BuiltIn),
    ("wordpress", Guest::BuiltIn),
    ("zoho_crm", Guest::BuiltIn),
    ("template_sandbox", Guest::TemplateSandbox),
];

#[derive(PartialEq)]
enum Guest {
    BuiltIn,
    Test,
    TemplateSandbox,
}

impl Guest {
    /// The component's file name: its crate's name, in snake case.
    fn file(&self, guest: &str) -> String {
        match self {
            Guest::TemplateSandbox => format!("weft_{guest}.wasm"),
            Guest::BuiltIn | Guest::Test => format!("weft_connector_{guest}.wasm"),
        }
    }
}

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().expect("workspace root");
    let guests = root.join("connectors");
    println!("cargo:rerun-if-changed={}", root.join("connectors-wit/wit").display());
    // Every guest is built on the SDK.
    println!("cargo:rerun-if-changed={}", root.join("sdk/src").display());
    println!("cargo:rerun-if-changed={}", root.join("sdk/Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", guests.join("Cargo.toml").display());
    println!("cargo:rerun-if-changed={}", guests.join("Cargo.lock").display());
    println!("cargo:rerun-if-changed={}", guests.join(".cargo/config.toml").display());
    for (guest, _) in GUESTS {
        println!("cargo:rerun-if-changed={}", guests.join(guest).display());
    }
    println!("cargo:rerun-if-changed={}", manifest_dir.join("build").display());

    let rustc = PathBuf::from(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    match wasm_target::ensure(&rustc, Path::new("rustup"), &guests) {
        Ok(wasm_target::Found::Present) => {}
        Ok(wasm_target::Found::Added) => println!(
            "cargo:warning=added the {} Rust target, which the built-in connectors are compiled to (rustup target add {})",
            wasm_target::TARGET,
            wasm_target::TARGET
        ),
        Err(message) => panic!("building the guest connectors needs the {} target: {message}", wasm_target::TARGET),
    }

    let target_dir = guest_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&guests).args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"]).arg(&target_dir);
    if std::env::var_os("WEFT_GUESTS_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    // The host build's flags and wrappers are for the host target, not the guests.
    for var in
        ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER"]
    {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the guest connectors");
    if !status.success() {
        panic!("building the guest connectors in {} failed (cargo's errors are above)", guests.display());
    }

    let out = target_dir.join("wasm32-wasip2/release");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let connectors = Precompiler::new(config::connectors(config::DEFAULT_MEMORY_BYTES));
    let sandbox_engine = Precompiler::new(config::template_sandbox());
    let mut builtins = String::from(
        "/// Built-in connectors: (name, component bytes), from the guest list in\n\
         /// this crate's build script.\n\
         pub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    let mut prebuilt = String::from(
        "/// What the build made of `BUILTINS`, in the same order.\n\
         pub(crate) static PREBUILT: &[Prebuilt] = &[\n",
    );
    let mut sandbox = String::new();
    for (guest, kind) in GUESTS {
        let file = out.join(kind.file(guest));
        assert!(file.exists(), "missing guest component {}", file.display());
        let path = file.display().to_string();
        match kind {
            Guest::BuiltIn => {
                builtins.push_str(&format!("    ({guest:?}, include_bytes!({path:?})),\n"));
                let bytes = std::fs::read(&file).expect("reading a guest component");
                let compiled = connectors.precompile(&file, &bytes, &out_dir);
                let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
                prebuilt.push_str(&format!(
                    "    Prebuilt {{ digest: {digest:?}, compiled: include_bytes!({:?}) }},\n",
                    compiled.display().to_string()
                ));
            }
            Guest::TemplateSandbox => {
                let bytes = std::fs::read(&file).expect("reading a guest component");
                let compiled = sandbox_engine.precompile(&file, &bytes, &out_dir);
                sandbox = format!(
                    "/// The template sandbox's component (`connectors/{guest}`).\n\
                     pub static TEMPLATE_SANDBOX: &[u8] = include_bytes!({path:?});\n\
                     /// `TEMPLATE_SANDBOX`, precompiled for the sandbox's engine.\n\
                     pub(crate) static TEMPLATE_SANDBOX_PRECOMPILED: &[u8] = include_bytes!({:?});\n",
                    compiled.display().to_string()
                )
            }
            Guest::Test => {}
        }
    }
    builtins.push_str("];\n");
    prebuilt.push_str("];\n");
    builtins.push_str(&prebuilt);
    builtins.push_str(&sandbox);
    std::fs::write(out_dir.join("builtins.rs"), builtins).expect("writing builtins.rs");
    println!("cargo:rustc-env=WEFT_GUEST_DIR={}", out.display());
}

/// Compiles components ahead of time for an engine configuration, so that
/// the first run of `weft` loads the built-ins instead of compiling them.
struct Precompiler {
    engine: wasmtime::Engine,
}

impl Precompiler {
    fn new(mut config: wasmtime::Config) -> Precompiler {
        // Compile for the target being built. Only when it is not this
        // machine is the target named: a named target means its baseline
        // CPU features, where this machine's are detected.
        let (target, host) = (std::env::var("TARGET").unwrap(), std::env::var("HOST").unwrap());
        if target != host {
            config.target(&target).expect("a target wasmtime compiles for");
        }
        Precompiler { engine: wasmtime::Engine::new(&config).expect("the engine configuration") }
    }

    /// Compiles `bytes`, the component at `component`, into `dir`, returning
    /// the compiled file's path.
    fn precompile(&self, component: &Path, bytes: &[u8], dir: &Path) -> PathBuf {
        let compiled = self
            .engine
            .precompile_component(bytes)
            .unwrap_or_else(|e| panic!("precompiling {}: {e:#}", component.display()));
        let path = dir.join(component.file_name().unwrap()).with_extension("cwasm");
        std::fs::write(&path, compiled).expect("writing a precompiled component");
        path
    }
}

/// `<target>/wasm-guests`, where `<target>` is the host's target directory,
/// found from OUT_DIR (`<target>/<profile>/build/<pkg>-<hash>/out`).
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target = out_dir.ancestors().nth(4).map(Path::to_path_buf).unwrap_or(out_dir);
    target.join("wasm-guests")
}
