//! W3: the whole `weft` process running `examples/workflows/hello.json`
//! (without its sleep), with the compiled-component cache empty and warm,
//! next to the floor of starting the same binary for `weft --version`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::percentile;

/// The example, as the binary was built with it.
const HELLO: &str = include_str!("../../../examples/workflows/hello.json");

/// Wall times of whole processes, in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `weft --version`: starting the binary and nothing else.
    pub floor: Vec<f64>,
    /// The first run with an empty cache and a new store.
    pub empty: Vec<f64>,
    /// A run with the cache and the store of an earlier run.
    pub warm: Vec<f64>,
    /// `weft validate` of the workflow with an empty cache.
    pub validate: Vec<f64>,
    /// `weft connector list` with an empty cache.
    pub list: Vec<f64>,
}

/// `hello.json` without its `sleep` step, which W3 leaves out.
pub fn hello_without_sleep() -> anyhow::Result<Value> {
    let mut hello: Value = serde_json::from_str(HELLO).context("examples/workflows/hello.json")?;
    let object = hello.as_object_mut().context("hello.json is an object")?;
    object.remove("$schema");
    let steps = object.get_mut("steps").and_then(Value::as_array_mut).context("hello.json has steps")?;
    steps.retain(|step| step.get("sleep").is_none());
    Ok(hello)
}

/// Times `samples` processes of each kind, running `exe` (the `weft`
/// binary) in a scratch directory under `scratch`.
pub fn measure(exe: &Path, scratch: &Path, samples: usize) -> anyhow::Result<Report> {
    std::fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let workflow = scratch.join("hello.json");
    std::fs::write(&workflow, serde_json::to_vec_pretty(&hello_without_sleep()?)?)?;
    let weft = |dir: &Path, command: &[&str]| -> anyhow::Result<f64> {
        let db = format!("sqlite://{}", dir.join("weft.db").display());
        let cache = dir.join("cache");
        let mut args = vec!["--db", &db, "--cache-dir", path_text(&cache)?];
        args.extend_from_slice(command);
        time(exe, &args, dir)
    };
    let workflow = path_text(&workflow)?;
    let run = |dir: &Path| weft(dir, &["run", workflow]);
    let mut report = Report::default();
    eprintln!("W3: timing {samples} processes of each kind…");
    for i in 0..samples {
        report.floor.push(time(exe, &["--version"], scratch)?);
        let fresh = scratch.join(format!("empty-{i}"));
        std::fs::create_dir_all(&fresh)?;
        report.empty.push(run(&fresh)?);
        // The same directory again: its cache and its store exist now.
        report.warm.push(run(&fresh)?);
        for (command, samples) in
            [(["validate", workflow], &mut report.validate), (["connector", "list"], &mut report.list)]
        {
            let fresh = scratch.join(format!("{}-{i}", command[0]));
            std::fs::create_dir_all(&fresh)?;
            samples.push(weft(&fresh, &command)?);
        }
    }
    for samples in [&mut report.floor, &mut report.empty, &mut report.warm, &mut report.validate, &mut report.list] {
        samples.sort_by(f64::total_cmp);
    }
    Ok(report)
}

fn path_text(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

/// The wall time of one `exe ARGS…` in `dir`, which must succeed.
fn time(exe: &Path, args: &[&str], dir: &Path) -> anyhow::Result<f64> {
    let start = Instant::now();
    let out = Command::new(exe)
        .args(args)
        .current_dir(dir)
        .env_remove("WEFT_DB")
        .env_remove("WEFT_CONNECTORS_DIR")
        .env_remove("WEFT_CACHE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("starting {}", exe.display()))?;
    let elapsed = start.elapsed().as_secs_f64() * 1000.0;
    if !out.status.success() {
        bail!("`weft {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(elapsed)
}

/// The Markdown table kept in docs/BENCHMARKS.md.
pub fn print(report: &Report) {
    let floor = percentile(&report.floor, 0.5);
    println!("| process | median | min | max | median ÷ floor | target |");
    println!("|---|---|---|---|---|---|");
    let rows: [(&str, &[f64], &str); 5] = [
        ("`weft --version` (floor)", &report.floor, "-"),
        ("`weft run hello.json`, empty cache, new store", &report.empty, "≤ 300 ms"),
        ("`weft run hello.json`, warm cache", &report.warm, "≤ 30 ms"),
        ("`weft validate hello.json`, empty cache", &report.validate, "≤ 300 ms"),
        ("`weft connector list`, empty cache", &report.list, "≤ 300 ms"),
    ];
    for (what, samples, target) in rows {
        let (median, min, max) = (percentile(samples, 0.5), percentile(samples, 0.0), percentile(samples, 1.0));
        println!("| {what} | {median:.1} ms | {min:.1} ms | {max:.1} ms | {:.1}x | {target} |", median / floor);
    }
}

/// Where a W3 measurement keeps its scratch directories.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("weft-bench-w3-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::hello_without_sleep;

    #[test]
    fn the_w3_workflow_is_hello_without_its_sleep() {
        let hello = hello_without_sleep().unwrap();
        let steps = hello["steps"].as_array().unwrap();
        assert!(steps.iter().all(|s| s.get("sleep").is_none()), "{steps:?}");
        assert_eq!(steps.len(), 3, "greet, double and fan_out stay");
        assert!(hello.get("$schema").is_none());
    }
}
