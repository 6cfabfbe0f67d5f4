//! Makes sure the Rust toolchain that builds the guests has the
//! wasm32-wasip2 standard library. rustup installs a toolchain file's targets
//! by itself only when auto-install is on; where it is off (some CI images
//! set `RUSTUP_AUTO_INSTALL=0`), the build adds the target itself, and says so.
//!
//! Used by the build script and by `tests/wasm_target.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// What [`ensure`] found.
#[derive(Debug, PartialEq)]
pub enum Found {
    /// The target was installed already.
    Present,
    /// The target was missing and `rustup target add` installed it.
    Added,
}

/// Checks that `rustc`'s sysroot has the target's standard library and, if
/// not, runs `rustup target add` (in `dir`, so that rustup picks the
/// toolchain that directory uses). The error says what to run by hand.
pub fn ensure(rustc: &Path, rustup: &Path, dir: &Path) -> Result<Found, String> {
    let sysroot = sysroot(rustc)?;
    if has_target(&sysroot) {
        return Ok(Found::Present);
    }
    let by_hand = format!("install it with `rustup target add {TARGET}`");
    let status = Command::new(rustup)
        .current_dir(dir)
        .args(["target", "add", TARGET])
        // A build script's stdout is for cargo's directives.
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| {
            format!(
                "the Rust toolchain at {} lacks the {TARGET} target and rustup could not be run ({e}); {by_hand}",
                sysroot.display()
            )
        })?;
    if !status.success() {
        return Err(format!("`rustup target add {TARGET}` failed ({status}); {by_hand}"));
    }
    match has_target(&sysroot) {
        true => Ok(Found::Added),
        false => Err(format!(
            "`rustup target add {TARGET}` succeeded but {} still lacks the target (is it a toolchain rustup manages?); {by_hand}",
            sysroot.display()
        )),
    }
}

fn sysroot(rustc: &Path) -> Result<PathBuf, String> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("running `{} --print sysroot`: {e}", rustc.display()))?;
    if !out.status.success() {
        return Err(format!("`{} --print sysroot` failed ({})", rustc.display(), out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn has_target(sysroot: &Path) -> bool {
    sysroot.join("lib/rustlib").join(TARGET).join("lib").is_dir()
}
