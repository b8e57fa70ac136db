//! `gantry buildspec run`: runs one buildspec locally, without a server,
//! like CodeBuild's local agent; the build's log goes to standard error and,
//! with `--json`, its outcome to standard output.
//!
//! `env.parameter-store` and `env.secrets-manager` values come from
//! `--secret-env NAME=VALUE` first, then from the parameter store of the
//! data dir when one is reachable (`--server`, a server running for the data
//! dir, or a data dir with a database, whose server is started here for the
//! look-up): as CodeBuild's agent reads SSM. Every variable still without a
//! value is listed, with how to supply it, and nothing runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use gantry_api::ParameterView;
use gantry_build::UnresolvedParameter;

use crate::args::{BuildspecCommand, parse_pairs};
use crate::client::{self, ApiError, Connection};

struct StdoutLog;

impl gantry_build::LogSink for StdoutLog {
    fn line(&self, line: &str) {
        use std::io::Write;
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{line}");
    }
}

/// `explicit_data_dir` is `--data-dir` (or `GANTRY_DATA_DIR`); without one,
/// the nearest `.gantry/` in the current directory or its parents.
pub(crate) async fn run(
    command: BuildspecCommand,
    explicit_data_dir: Option<&Path>,
) -> Result<ExitCode> {
    let BuildspecCommand::Run {
        file,
        source,
        out,
        env,
        secret_env,
        timeout,
        image,
        json,
    } = command;
    let (file, source, out) = (file.as_path(), source.as_path(), out.as_path());
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (buildspec, warnings) =
        match gantry_spec::buildspec::parse_buildspec(&file.display().to_string(), &text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                for error in &errors {
                    eprintln!("{error}");
                }
                bail!(
                    "{} is invalid ({} errors); nothing was run",
                    file.display(),
                    errors.len()
                );
            }
        };
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    let mut secrets = parse_pairs(&secret_env, "--secret-env")?;
    let missing = gantry_build::unresolved_parameters(&buildspec, &secrets);
    if !missing.is_empty() {
        let data_dir = data_dir(explicit_data_dir)?;
        secrets.extend(resolve_parameters(file, &missing, &data_dir).await?);
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let source = std::fs::canonicalize(source)
        .with_context(|| format!("cannot resolve {}", source.display()))?;
    let out =
        std::fs::canonicalize(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    let request = gantry_build::BuildRequest {
        buildspec,
        source_dir: source,
        secondary_sources: Vec::new(),
        env: parse_pairs(&env, "--env")?,
        secrets,
        build_id: format!("local:{}", std::process::id()),
        build_number: 1,
        initiator: "gantry/local".to_string(),
        resolved_source_version: None,
        timeout,
        out_dir: out.clone(),
        scratch_dir: None,
        cancel: tokio_util::sync::CancellationToken::new(),
        // Run by the user on their own files, like CodeBuild's local
        // agent: absolute artifact paths outside the source directory are
        // read too (on the host, without run-as; see the build crate).
        read_outside_source: true,
        container: image.map(gantry_build::ContainerSpec::new),
        // A one-off local build keeps no cache between runs.
        cache_dir: None,
    };
    let outcome = gantry_build::run(request, &StdoutLog).await?;
    if json {
        println!("{}", gantry_build::outcome_json(&outcome, &out));
    } else {
        eprintln!("build {:?}", outcome.status);
    }
    Ok(if outcome.status == gantry_build::BuildStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The data dir whose parameter store is read: the explicit one, else the
/// nearest `.gantry/` in the current directory or its parents, else (none
/// found) `.gantry/` in the current directory, which then does not exist.
fn data_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    Ok(crate::data_dir::nearest(&cwd).unwrap_or_else(|| cwd.join(crate::data_dir::NAME)))
}

/// Whether a parameter store can be read without making a data dir: a
/// remote server, the data dir's running server, or its database (a server
/// is started on it for the look-up).
fn store_reachable(data_dir: &Path) -> bool {
    client::is_remote()
        || gantry_server::server_info::live_server(data_dir).is_some()
        || data_dir.join("gantry.db").is_file()
}

/// Values for the `missing` variables from the data dir's parameter store;
/// an error listing every variable left without one, and how to supply it.
async fn resolve_parameters(
    file: &Path,
    missing: &[UnresolvedParameter],
    data_dir: &Path,
) -> Result<Vec<(String, String)>> {
    if !store_reachable(data_dir) {
        let unresolved: Vec<_> = missing.iter().map(|m| (m, None)).collect();
        let mut text = unresolved_text(file, &unresolved);
        text.push_str(&format!(
            "\nno parameter store was read: there is no gantry server or database in {} \
             (--data-dir or GANTRY_DATA_DIR names a data dir, --server a server)",
            data_dir.display()
        ));
        text.push_str(&how_to_supply(&missing[0], None));
        bail!(text);
    }
    let conn = Connection::open(data_dir).await?;
    let mut values = Vec::new();
    let mut unresolved = Vec::new();
    for m in missing {
        match read_parameter(&conn, m).await {
            Ok(value) => values.push((m.variable.clone(), value)),
            Err(why) => unresolved.push((m, Some(why))),
        }
    }
    conn.close().await;
    if !unresolved.is_empty() {
        let store = if client::is_remote() {
            "the server's parameter store".to_owned()
        } else {
            format!("the parameter store of {}", data_dir.display())
        };
        let mut text = unresolved_text(file, &unresolved);
        text.push_str(&how_to_supply(unresolved[0].0, Some(&store)));
        bail!(text);
    }
    Ok(values)
}

/// One variable's value, or why it has none. A `secrets-manager` reference
/// is `name[:json-key[:version-stage[:version-id]]]`, as CodeBuild's, on
/// the same store the server maps it to: with a key, the parameter's value
/// is a JSON object; stages and ids are not modelled (pin with a label).
async fn read_parameter(conn: &Connection, m: &UnresolvedParameter) -> Result<String, String> {
    let (name, key) = if m.section == "env.secrets-manager" {
        let mut parts = m.parameter.splitn(4, ':');
        let name = parts.next().unwrap_or_default();
        let key = parts.next().filter(|k| !k.is_empty());
        if parts.any(|p| !p.is_empty()) {
            return Err(
                "version stages and ids are not supported; pin with a parameter \
                        label instead"
                    .to_owned(),
            );
        }
        (name, key)
    } else {
        (m.parameter.as_str(), None)
    };
    let path = format!("/api/v1/params/get?name={}&decrypt=true", query(name));
    // An answer's error displays as its message; any other, with its causes.
    let param: ParameterView = conn.client.get(&path).await.map_err(|e| {
        if e.is::<ApiError>() {
            e.to_string()
        } else {
            format!("{e:#}")
        }
    })?;
    let Some(key) = key else {
        return Ok(param.value);
    };
    let json: serde_json::Value = serde_json::from_str(&param.value)
        .map_err(|_| format!("{} is not JSON, so it has no key {key}", param.name))?;
    match &json[key] {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Null => Err(format!("{} has no key {key}", param.name)),
        other => Ok(other.to_string()),
    }
}

/// Every variable without a value, and why when the store said.
fn unresolved_text(file: &Path, unresolved: &[(&UnresolvedParameter, Option<String>)]) -> String {
    let count = match unresolved.len() {
        1 => "1 variable has".to_owned(),
        n => format!("{n} variables have"),
    };
    let mut text = format!("{}: {count} no value; nothing was run:", file.display());
    for (m, why) in unresolved {
        text.push_str(&format!(
            "\n  {} ({} `{}`)",
            m.variable, m.section, m.parameter
        ));
        if let Some(why) = why {
            text.push_str(&format!(": {why}"));
        }
    }
    text
}

/// How to give a value to a variable like `example`: in `store` (a data
/// dir's when `None`), or on the command line.
fn how_to_supply(example: &UnresolvedParameter, store: Option<&str>) -> String {
    let name = example.parameter.split(':').next().unwrap_or_default();
    let put = if example.section == "env.secrets-manager" && example.parameter.contains(':') {
        format!("`gantry param put {name} '{{\"KEY\": \"VALUE\"}}' --type SecureString`")
    } else {
        format!("`gantry param put {name} --type SecureString` (the value from stdin)")
    };
    format!(
        "\nsupply each one in {}, e.g. {put}, or for this run only with `--secret-env {}=VALUE`",
        store.unwrap_or("a data dir's parameter store"),
        example.variable
    )
}

/// `value` percent-encoded for a query string.
pub(crate) fn query(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
