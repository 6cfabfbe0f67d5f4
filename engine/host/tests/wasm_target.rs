//! The build adds the wasm32-wasip2 target itself when the toolchain lacks
//! it (where rustup does not install a toolchain file's targets on its own),
//! and says what to run when it cannot.
//!
//! Removing the target from the real toolchain would change the machine, so
//! the missing-target cases run against a stand-in `rustc` (which names a
//! temporary sysroot) and `rustup` (which installs into it, or fails).

#[path = "../build/wasm_target.rs"]
mod wasm_target;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use wasm_target::{Found, TARGET};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn the_toolchain_that_builds_weft_has_the_target() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    assert_eq!(wasm_target::ensure(Path::new(&rustc), Path::new("rustup"), here), Ok(Found::Present));
}

#[test]
fn a_missing_target_is_added_with_rustup_or_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
    let rustc = script(dir.path(), "rustc", &format!("echo {}", sysroot.display()));
    let log = dir.path().join("rustup.log");
    let rustup = script(
        dir.path(),
        "rustup",
        &format!("echo \"$PWD $*\" >> {}\nmkdir -p {}/lib/rustlib/$3/lib", log.display(), sysroot.display()),
    );
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();

    assert_eq!(wasm_target::ensure(&rustc, &rustup, &work), Ok(Found::Added));
    let ran = std::fs::read_to_string(&log).unwrap();
    assert_eq!(ran.trim(), format!("{} target add {TARGET}", work.display()));
    // Once added, nothing more is run.
    assert_eq!(wasm_target::ensure(&rustc, &rustup, &work), Ok(Found::Present));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), ran);

    std::fs::remove_dir_all(sysroot.join("lib/rustlib").join(TARGET)).unwrap();
    let by_hand = format!("rustup target add {TARGET}");
    let failing = script(dir.path(), "rustup-offline", "echo 'error: could not download' >&2; exit 1");
    let error = wasm_target::ensure(&rustc, &failing, &work).unwrap_err();
    assert!(error.contains("failed") && error.contains(&by_hand), "{error}");
    let absent = dir.path().join("no-rustup-here");
    let error = wasm_target::ensure(&rustc, &absent, &work).unwrap_err();
    assert!(error.contains("lacks the wasm32-wasip2 target") && error.contains(&by_hand), "{error}");
    let silent = script(dir.path(), "rustup-noop", "exit 0");
    let error = wasm_target::ensure(&rustc, &silent, &work).unwrap_err();
    assert!(error.contains("still lacks the target") && error.contains(&by_hand), "{error}");
}
