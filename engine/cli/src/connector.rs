//! `weft connector …`: scaffold, build, inspect and try connector components.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use clap::Subcommand;
use serde_json::{Value, json};
use weft_host::{CallContext, ConnectorInfo, Host, MemorySecrets, MemoryTokens};
use weft_store::DEFAULT_TENANT;

use crate::{Cli, Failure, bad, failed};

#[derive(Subcommand)]
pub enum ConnectorCommand {
    /// Create a connector crate from the template, in a new directory NAME.
    New {
        /// The connector's name: lower-case letters, digits, `-` and `_`, starting with a letter.
        name: String,
        /// Where weft-sdk is [default: this Weft checkout's sdk/].
        #[arg(long, value_name = "DIR")]
        sdk_path: Option<PathBuf>,
        /// Create the crate here instead of ./NAME.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Build the connector crate in the current directory (or --path) into a
    /// component, and check its manifest.
    Build {
        /// The crate's directory.
        #[arg(long, default_value = ".", value_name = "DIR")]
        path: PathBuf,
    },
    /// Print a component's manifest: actions with their schemas, secrets,
    /// OAuth needs and egress hosts.
    Inspect {
        /// A component file, or the name (or name@version) of a built-in or
        /// installed connector.
        file: PathBuf,
        /// Print the manifest and digest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install a component into the database, so that workflows can use it.
    ///
    /// A name@version always means one component: installing a different
    /// component under a name@version that is installed (or built in) is
    /// refused.
    Install {
        /// The component file (.wasm).
        file: PathBuf,
    },
    /// List the connectors workflows can use: built in, installed, and from
    /// --connectors-dir.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Call one action of a component locally and print its output.
    ///
    /// The call runs in the same sandbox as a workflow step, under the
    /// component's own manifest (its secrets, OAuth providers and egress
    /// hosts). The lines it logs are printed on stderr. Exits 1 when the
    /// action fails.
    Test {
        /// The component file (.wasm).
        file: PathBuf,
        /// The action to call.
        action: String,
        /// The input: JSON text, or @FILE.
        #[arg(long, short, default_value = "{}")]
        input: String,
        /// A secret the call may reveal, as NAME=VALUE (repeatable).
        #[arg(long = "secret", value_name = "NAME=VALUE")]
        secrets: Vec<String>,
        /// An OAuth access token the call may use, as PROVIDER=TOKEN
        /// (repeatable): a way to try an OAuth connector before accounts
        /// can be connected.
        #[arg(long = "oauth-token", value_name = "PROVIDER=TOKEN")]
        oauth_tokens: Vec<String>,
        /// Sends the connector's requests for HOST to a local stand-in
        /// instead, as HOST=ADDRESS (repeatable), e.g.
        /// api.example.com=127.0.0.1:8080. The path, query and Host header
        /// are kept; the connector must still be allowed to reach HOST.
        #[arg(long = "route", value_name = "HOST=ADDRESS")]
        routes: Vec<String>,
        /// The call's deadline, e.g. 5s [default: 30s].
        #[arg(long, value_parser = humantime::parse_duration)]
        timeout: Option<std::time::Duration>,
    },
}

const CARGO_TOML: &str = include_str!("../templates/connector/Cargo.toml.in");
const LIB_RS: &str = include_str!("../templates/connector/lib.rs.in");
const CARGO_CONFIG: &str = include_str!("../templates/connector/config.toml.in");
const GITIGNORE: &str = include_str!("../templates/connector/gitignore.in");

/// This checkout's SDK, found from where the CLI was built.
fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk")
}

pub async fn run(command: &ConnectorCommand, cli: &Cli) -> Result<u8, Failure> {
    let host = async || crate::new_host(cli, None).await;
    match command {
        ConnectorCommand::New { name, sdk_path, dir } => {
            let dir = dir.clone().unwrap_or_else(|| PathBuf::from(name));
            let sdk = sdk_path.clone().unwrap_or_else(default_sdk_path);
            let sdk = sdk.canonicalize().map_err(|e| {
                bad(anyhow!(
                    "weft-sdk is not at {} ({e}); pass --sdk-path with the sdk/ directory of a Weft checkout",
                    sdk.display()
                ))
            })?;
            if !sdk.join("Cargo.toml").is_file() {
                return Err(bad(anyhow!("{} is not the weft-sdk crate (no Cargo.toml there)", sdk.display())));
            }
            scaffold(name, &dir, &sdk.display().to_string()).map_err(bad)?;
            eprintln!("created connector `{name}` in {}", dir.display());
            eprintln!("next: cd {} && weft connector build", dir.display());
            Ok(0)
        }
        ConnectorCommand::Build { path } => {
            let wasm = build(path)?;
            let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display())).map_err(failed)?;
            let host = host().await?;
            let info = host.install(bytes).await.map_err(|e| bad(anyhow!("{}: {e}", wasm.display())))?;
            let wasm = named_after(&wasm, &info.manifest.name)?;
            println!("{}", wasm.display());
            eprintln!(
                "built {} ({}), {}",
                info.key(),
                info.digest,
                crate::terminal::count(info.manifest.actions.len(), "action")
            );
            Ok(0)
        }
        ConnectorCommand::Inspect { file, json } => {
            let info = if file.exists() {
                install_file(&host().await?, file).await?
            } else {
                let store = crate::existing_store(cli).await?;
                let host = crate::new_host(cli, store.as_ref()).await?;
                let text = file.display().to_string();
                let (name, version) = match text.split_once('@') {
                    Some((name, version)) => (name.to_string(), Some(version.to_string())),
                    None => (text.clone(), None),
                };
                host.resolve(DEFAULT_TENANT, &name, version.as_deref()).ok_or_else(|| {
                    bad(anyhow!("{text} is neither a file nor a connector that is built in or installed"))
                })?
            };
            if *json {
                let body = json!({ "digest": info.digest, "manifest": info.manifest });
                println!("{}", serde_json::to_string_pretty(&body).expect("JSON"));
            } else {
                print!("{}", describe(&info));
            }
            Ok(0)
        }
        ConnectorCommand::Install { file } => {
            let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display())).map_err(bad)?;
            let store = crate::open_store(cli).await?;
            let host = crate::new_host(cli, Some(&store)).await?;
            let info = host
                .install_for(DEFAULT_TENANT, bytes.clone())
                .await
                .map_err(|e| bad(anyhow!("{}: {e}", file.display())))?;
            // A built-in or installed component under the same name@version.
            let taken =
                host.connectors(DEFAULT_TENANT).into_iter().find(|c| c.key() == info.key() && c.digest != info.digest);
            if let Some(taken) = taken {
                return Err(bad(weft_store::Error::ConnectorConflict {
                    key: info.key(),
                    existing: taken.digest,
                    offered: info.digest,
                }));
            }
            let manifest = serde_json::to_string(&info.manifest).expect("manifests serialize");
            let new = weft_store::NewConnector {
                tenant: DEFAULT_TENANT,
                name: &info.manifest.name,
                version: &info.manifest.version,
                digest: &info.digest,
                manifest: &manifest,
                component: &bytes,
                installed_at: weft_runtime::now_ms(),
            };
            match store.install_connector(new).await {
                Ok(weft_store::Installed::New) => eprintln!("installed {} ({})", info.key(), info.digest),
                Ok(weft_store::Installed::Already) => {
                    eprintln!("{} ({}) is already installed", info.key(), info.digest)
                }
                Err(e @ weft_store::Error::ConnectorConflict { .. }) => return Err(bad(e)),
                Err(e) => return Err(failed(e)),
            }
            Ok(0)
        }
        ConnectorCommand::List { json } => {
            let store = crate::existing_store(cli).await?;
            let installed = match &store {
                Some(store) => store.installed_connectors(DEFAULT_TENANT).await.map_err(failed)?,
                None => Vec::new(),
            };
            // Loaded as `run` loads them: built-ins, installed, --connectors-dir.
            let host = crate::new_host(cli, store.as_ref()).await?;
            let builtins: Vec<String> =
                weft_host::BUILTINS.iter().map(|(_, bytes)| weft_host::digest_of(bytes)).collect();
            let all = host.connectors(DEFAULT_TENANT);
            let rows: Vec<Value> = all
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    // Of builds under one name@version, the last loaded serves.
                    let replaced_by = all[n + 1..].iter().rfind(|later| later.key() == c.key());
                    let source = if builtins.contains(&c.digest) {
                        "built-in"
                    } else if installed.iter().any(|i| i.digest == c.digest) {
                        "installed"
                    } else {
                        "connectors-dir"
                    };
                    json!({
                        "name": c.manifest.name,
                        "version": c.manifest.version,
                        "digest": c.digest,
                        "source": source,
                        "serves": replaced_by.is_none(),
                        "replaced_by": replaced_by.map(|later| later.digest.clone()),
                        "actions": c.manifest.actions.iter().map(|a| a.name.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows).expect("JSON"));
            } else {
                for row in &rows {
                    let text = |key: &str| row[key].as_str().unwrap_or_default().to_string();
                    let actions: Vec<&str> =
                        row["actions"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    let digest: String = text("digest").chars().take(19).collect();
                    let key = format!("{}@{}", text("name"), text("version"));
                    let mut line = format!("{key:<24} {:<15} {digest}…  {}", text("source"), actions.join(", "));
                    if row["serves"] == false {
                        let later: String = text("replaced_by").chars().take(19).collect();
                        line.push_str(&format!("  (not serving: {later}… serves {key})"));
                    }
                    println!("{line}");
                }
            }
            Ok(0)
        }
        ConnectorCommand::Test { file, action, input, secrets, oauth_tokens, routes, timeout } => {
            let input = crate::parse_json_arg(input, "--input")?;
            let mut source = MemorySecrets::new();
            for pair in secrets {
                let (name, value) = pair_of(pair, "--secret", "NAME=VALUE")?;
                source = source.with(name, value);
            }
            let mut tokens = MemoryTokens::new();
            for pair in oauth_tokens {
                let (provider, token) = pair_of(pair, "--oauth-token", "PROVIDER=TOKEN")?;
                tokens = tokens.with(provider, token);
            }
            let mut host = host().await?.with_secrets(Arc::new(source)).with_tokens(Arc::new(tokens));
            for pair in routes {
                let (name, address) = pair_of(pair, "--route", "HOST=ADDRESS")?;
                let base = if address.contains("://") { address.to_string() } else { format!("http://{address}") };
                host = host.with_route(name, &base).map_err(|e| bad(anyhow!("--route {pair}: {e}")))?;
            }
            let info = install_file(&host, file).await?;
            if !info.manifest.actions.iter().any(|a| a.name == *action) {
                let names: Vec<&str> = info.manifest.actions.iter().map(|a| a.name.as_str()).collect();
                return Err(bad(anyhow!("{} has no action `{action}`; it has {}", info.key(), names.join(", "))));
            }
            let id = uuid::Uuid::now_v7().to_string();
            let ctx = CallContext {
                tenant: DEFAULT_TENANT.to_string(),
                run_id: format!("test-{id}"),
                step_id: "test".into(),
                attempt: 1,
                idempotency_key: weft_core::idempotency_key(&format!("test-{id}"), "test", None),
            };
            let invocation = host.invoke_logged(&info.digest, &ctx, action, &input, *timeout).await;
            // What the connector logged goes to stderr, before the result.
            for line in &invocation.logs.lines {
                eprintln!("{} {}", line.level, crate::terminal::safe(&line.message));
            }
            if invocation.logs.dropped > 0 {
                eprintln!("… {} not shown", crate::terminal::count(invocation.logs.dropped, "more log line"));
            }
            match invocation.result {
                Ok(output) => {
                    println!("{}", serde_json::to_string_pretty(&output).expect("JSON"));
                    Ok(0)
                }
                Err(e) => Err(failed(anyhow!("{} `{action}` failed: {e}", info.key()))),
            }
        }
    }
}

/// `NAME=VALUE` split at its first `=`, with a name.
fn pair_of<'a>(pair: &'a str, flag: &str, shape: &str) -> Result<(&'a str, &'a str), Failure> {
    match pair.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name, value)),
        _ => Err(bad(anyhow!("{flag} wants {shape}, got {pair:?}"))),
    }
}

/// Writes the template into `dir`, which must not exist or be empty.
pub fn scaffold(name: &str, dir: &Path, sdk_path: &str) -> anyhow::Result<()> {
    // The names the built-ins have (`google_sheets`) and kebab-case alike.
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.ends_with(['-', '_']);
    if !valid {
        anyhow::bail!(
            "`{name}` is not a valid connector name: use lower-case letters, digits, `-` and `_`, starting with a \
             letter"
        );
    }
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        anyhow::bail!("{} already exists and is not empty", dir.display());
    }
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", sdk_path)
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        (".cargo/config.toml", fill(CARGO_CONFIG)),
        (".gitignore", fill(GITIGNORE)),
    ];
    for (path, body) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("template files have a parent"))
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `cargo build --release --target wasm32-wasip2` in `dir`; the component's path.
fn build(dir: &Path) -> Result<PathBuf, Failure> {
    if !dir.join("Cargo.toml").is_file() {
        return Err(bad(anyhow!(
            "{} has no Cargo.toml; run this in a connector crate (see `weft connector new`) or pass --path",
            dir.display()
        )));
    }
    let targets = Command::new("rustup").args(["target", "list", "--installed"]).current_dir(dir).output();
    if let Ok(out) = targets
        && out.status.success()
        && !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "wasm32-wasip2")
    {
        return Err(bad(anyhow!(
            "the wasm32-wasip2 target is not installed; install it with `rustup target add wasm32-wasip2`"
        )));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--message-format=json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failed(anyhow!("running cargo: {e}")))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut wasm = None;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
        let Ok(message) = serde_json::from_str::<Value>(&line) else { continue };
        if message["reason"] != "compiler-artifact" || !message["target"]["kind"].to_string().contains("cdylib") {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            wasm = files.iter().filter_map(Value::as_str).find(|f| f.ends_with(".wasm")).map(PathBuf::from).or(wasm);
        }
    }
    let status = child.wait().map_err(|e| failed(anyhow!("waiting for cargo: {e}")))?;
    if !status.success() {
        return Err(bad(anyhow!("cargo build failed (see its messages above)")));
    }
    wasm.ok_or_else(|| {
        bad(anyhow!(
            "cargo built no .wasm: is the crate's [lib] crate-type [\"cdylib\"], as `weft connector new` makes it?"
        ))
    })
}

/// The built component under its connector's name: cargo names the file
/// after the crate with `-` turned into `_` (`my_api.wasm` for `my-api`), so
/// a copy named after the connector (`my-api.wasm`) is put next to it.
fn named_after(wasm: &Path, connector: &str) -> Result<PathBuf, Failure> {
    let named = wasm.with_file_name(format!("{connector}.wasm"));
    if named != wasm {
        std::fs::copy(wasm, &named)
            .with_context(|| format!("copying {} to {}", wasm.display(), named.display()))
            .map_err(failed)?;
    }
    Ok(named)
}

async fn install_file(host: &Host, file: &Path) -> Result<ConnectorInfo, Failure> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display())).map_err(bad)?;
    host.install(bytes).await.map_err(|e| bad(anyhow::Error::new(e).context(file.display().to_string())))
}

/// The manifest for people.
fn describe(info: &ConnectorInfo) -> String {
    let m = &info.manifest;
    let mut out = format!("{}@{}\n  {}\n  digest: {}\n", m.name, m.version, m.description, info.digest);
    let list = |items: &[String]| if items.is_empty() { "none".to_string() } else { items.join(", ") };
    out.push_str(&format!("  secrets: {}\n", list(&m.secrets)));
    let oauth: Vec<String> =
        m.oauth
            .iter()
            .map(|o| {
                if o.scopes.is_empty() {
                    o.provider.clone()
                } else {
                    format!("{} ({})", o.provider, o.scopes.join(" "))
                }
            })
            .collect();
    out.push_str(&format!("  oauth: {}\n", list(&oauth)));
    out.push_str(&format!("  egress: {}\n", list(&m.egress)));
    out.push_str(&format!("\nactions ({}):\n", m.actions.len()));
    for action in &m.actions {
        let idempotent = if action.idempotent { " [idempotent]" } else { "" };
        out.push_str(&format!("\n  {}{idempotent}\n    {}\n", action.name, action.description));
        for (which, schema) in [("input", &action.input_schema), ("output", &action.output_schema)] {
            let text = serde_json::to_string_pretty(schema).expect("JSON");
            out.push_str(&format!("    {which} schema:\n"));
            for line in text.lines() {
                out.push_str(&format!("      {line}\n"));
            }
        }
    }
    out
}
