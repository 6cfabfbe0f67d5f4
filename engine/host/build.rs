//! Compiles the guest workspace in `connectors/` to wasm32-wasip2 components,
//! so that a plain `cargo build` of the engine embeds up-to-date built-in
//! connectors. The guests get their own target directory (their target,
//! profile and features differ from the host's), shared by every host profile.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[&str] = &[
    "transform",
    "http",
    "testkit",
    "slack",
    "github",
    "stripe",
    "discord",
    "google_sheets",
    "sendgrid",
    "notion",
    "hubspot",
    "wordpress",
    "zoho_crm",
];

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
    for guest in GUESTS {
        println!("cargo:rerun-if-changed={}", guests.join(guest).display());
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
        panic!(
            "building the guest connectors in {} failed; is the wasm32-wasip2 target installed? \
             (`rustup target add wasm32-wasip2`)",
            guests.display()
        );
    }

    let out = target_dir.join("wasm32-wasip2/release");
    for guest in GUESTS {
        let file = out.join(format!("weft_connector_{guest}.wasm"));
        assert!(file.exists(), "missing guest component {}", file.display());
        println!("cargo:rustc-env=WEFT_GUEST_{}={}", guest.to_uppercase(), file.display());
    }
    println!("cargo:rustc-env=WEFT_GUEST_DIR={}", out.display());
}

/// `<target>/wasm-guests`, where `<target>` is the host's target directory,
/// found from OUT_DIR (`<target>/<profile>/build/<pkg>-<hash>/out`).
fn guest_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target = out_dir.ancestors().nth(4).map(Path::to_path_buf).unwrap_or(out_dir);
    target.join("wasm-guests")
}
