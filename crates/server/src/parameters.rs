//! The parameter store as the control plane uses it: opening it with the
//! master key, and resolving the references builds make to it.
//!
//! Two kinds of reference reach an action:
//! - a buildspec's `env.parameter-store` (and `env.secrets-manager`, mapped to
//!   the same store): every value is masked in the build's log, as CodeBuild
//!   does;
//! - `{{param:NAME}}` (or `{{param:NAME:3}}`, `{{param:NAME:label}}`) inside a
//!   pipeline action's `env` values: SecureString values are masked, plain
//!   ones are configuration and stay readable.
//!
//! Every resolution is recorded (variable, parameter, version) with the
//! action, so what a build used can be audited and an approval can be bound
//! to it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use gantry_params::{MASTER_KEY_ENV, MasterKey, ParamError, ParamStore, Selector};
use gantry_spec::buildspec::Buildspec;

use crate::error::ControlError;

/// Where the master key came from: rotation rewrites the file, but can only
/// be told the new key when it lives in the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File,
}

/// Opens the parameter store of a data dir and checks that the master key
/// opens what is stored: a wrong key stops the server with a clear error
/// instead of failing later, one secret at a time.
pub async fn open(
    store: &gantry_store::Store,
    data_dir: &Path,
) -> Result<(Arc<ParamStore>, KeySource), ControlError> {
    let source = match std::env::var(MASTER_KEY_ENV) {
        Ok(v) if !v.trim().is_empty() => KeySource::Environment,
        _ => KeySource::File,
    };
    let key = MasterKey::load_or_create(data_dir)?;
    mask_master_key(&key);
    let params = ParamStore::open(store.db().clone(), key).await?;
    params.check_master_key().await?;
    Ok((Arc::new(params), source))
}

/// Makes every build mask the master key, in the forms a build could print
/// it: as stored (hex) and as `GANTRY_MASTER_KEY` holds it.
///
/// Builds never get `GANTRY_MASTER_KEY` (a host build's environment is an
/// allowlist, see `gantry_build`), and the server cannot remove it from its
/// own environment (`std::env::remove_var` is unsafe, and unsafe code is
/// forbidden), so every process gantry starts is given an explicit
/// environment instead. A build running as gantry's user can still read
/// `params-master.key`; masking keeps the key out of the log even then.
/// Call it again with a rotated key.
pub fn mask_master_key(key: &MasterKey) {
    gantry_build::mask_everywhere(key.to_hex().as_str());
    if let Ok(value) = std::env::var(MASTER_KEY_ENV) {
        let value = value.trim();
        if !value.is_empty() {
            gantry_build::mask_everywhere(value);
        }
    }
}

/// One parameter an action used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParamRecord {
    /// The environment variable it fed.
    pub var: String,
    pub name: String,
    pub version: u64,
    pub secure: bool,
    /// Where the reference was written (`buildspec env.parameter-store`, `env`).
    pub source: String,
}

/// Values for a build: variables, which of them are secret, and the record.
#[derive(Debug, Default)]
pub struct Resolved {
    pub env: Vec<(String, String)>,
    pub secrets: Vec<(String, String)>,
    pub records: Vec<ParamRecord>,
}

fn selector(text: &str, var: &str, source: &str) -> Result<Selector, String> {
    Selector::parse(text).map_err(|e| format!("{source}: variable {var}: {e}"))
}

/// Why a buildspec's references could not all be resolved.
enum Unresolvable {
    /// References that pick nothing: each as `VAR (SECTION `REF`): why`.
    Missing(Vec<String>),
    /// Anything else (a malformed reference, the store itself): fatal.
    Failed(String),
}

/// Resolves `refs` from one snapshot; when some pick nothing, looks each one
/// up again to name all of them, not only the first.
async fn fetch(
    params: &ParamStore,
    refs: Vec<(String, Selector, String)>,
    source: &str,
    out: &mut Vec<(String, gantry_params::ResolvedParam)>,
) -> Result<(), Unresolvable> {
    if refs.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(String, Selector)> = refs
        .iter()
        .map(|(var, selector, _)| (var.clone(), selector.clone()))
        .collect();
    match params.resolve(&pairs).await {
        Ok(resolved) => {
            for r in resolved {
                out.push((source.to_string(), r));
            }
            Ok(())
        }
        Err(ParamError::Unresolved { .. }) => {
            let mut missing = Vec::new();
            for ((var, selector), (_, _, written)) in pairs.into_iter().zip(&refs) {
                match params.resolve(&[(var.as_str(), selector)]).await {
                    Ok(_) => {}
                    Err(ParamError::Unresolved { source: cause, .. }) => {
                        let fix = cause
                            .how_to_fix()
                            .map(|f| format!(": {f}"))
                            .unwrap_or_default();
                        missing.push(format!("{var} ({source} `{written}`): {cause}{fix}"));
                    }
                    Err(other) => return Err(Unresolvable::Failed(describe(&other, source))),
                }
            }
            Err(Unresolvable::Missing(missing))
        }
        Err(other) => Err(Unresolvable::Failed(describe(&other, source))),
    }
}

fn describe(error: &ParamError, source: &str) -> String {
    match error {
        ParamError::Unresolved {
            var,
            selector,
            source: cause,
        } => {
            let fix = cause
                .how_to_fix()
                .map(|f| format!("; {f}"))
                .unwrap_or_default();
            format!(
                "parameter {selector} (for variable {var} in {source}) cannot be read: {cause}{fix}"
            )
        }
        other => format!("{source}: {other}"),
    }
}

/// Resolves a buildspec's `env.parameter-store` and `env.secrets-manager`
/// into secret variables for the runner. `secrets-manager` references are
/// `name[:json-key[:version-stage[:version-id]]]`: the parameter's value is
/// JSON when a key is given; stage and id are not modelled and are refused.
/// When references pick nothing, the error names every one of them (of
/// both sections) and how to supply them.
pub async fn resolve_buildspec(
    params: &ParamStore,
    buildspec: &Buildspec,
) -> Result<Resolved, String> {
    let mut out = Resolved::default();
    let mut fetched = Vec::new();
    let mut missing = Vec::new();
    let mut collect = |result: Result<(), Unresolvable>| match result {
        Ok(()) => Ok(()),
        Err(Unresolvable::Missing(more)) => {
            missing.extend(more);
            Ok(())
        }
        Err(Unresolvable::Failed(why)) => Err(why),
    };
    let ps = "buildspec env.parameter-store";
    let refs = buildspec
        .parameter_store
        .iter()
        .map(|(var, name)| Ok((var.clone(), selector(name, var, ps)?, name.clone())))
        .collect::<Result<Vec<_>, String>>()?;
    collect(fetch(params, refs, ps, &mut fetched).await)?;

    let sm = "buildspec env.secrets-manager";
    let mut json_keys = BTreeMap::new();
    let mut refs = Vec::new();
    for (var, reference) in &buildspec.secrets_manager {
        let mut parts = reference.splitn(4, ':');
        let name = parts.next().unwrap_or_default();
        let key = parts.next().filter(|k| !k.is_empty());
        if parts.any(|p| !p.is_empty()) {
            return Err(format!(
                "{sm}: variable {var}: version stages and ids are not supported; pin with a parameter label instead"
            ));
        }
        if let Some(key) = key {
            json_keys.insert(var.clone(), key.to_string());
        }
        refs.push((var.clone(), selector(name, var, sm)?, reference.clone()));
    }
    collect(fetch(params, refs, sm, &mut fetched).await)?;
    if !missing.is_empty() {
        let count = match missing.len() {
            1 => "1 variable has".to_owned(),
            n => format!("{n} variables have"),
        };
        return Err(format!(
            "{count} no value: {}; put each parameter in the parameter store \
             (`gantry param put NAME --type SecureString`)",
            missing.join("; ")
        ));
    }

    for (source, r) in fetched {
        let mut value = r.value.expose().to_string();
        if let Some(key) = json_keys.get(&r.var).filter(|_| source == sm) {
            let json: serde_json::Value = serde_json::from_str(&value)
                .map_err(|_| format!("{sm}: {} is not JSON, so it has no key {key}", r.name))?;
            value = match &json[key] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => {
                    return Err(format!("{sm}: {} has no key {key}", r.name));
                }
                other => other.to_string(),
            };
        }
        out.records.push(ParamRecord {
            var: r.var.clone(),
            name: r.name.to_string(),
            version: r.version,
            secure: r.secret,
            source,
        });
        out.secrets.push((r.var, value));
    }
    Ok(out)
}

pub(crate) const PARAM_OPEN: &str = OPEN;
const OPEN: &str = "{{param:";
const CLOSE: &str = "}}";

/// Replaces `{{param:SELECTOR}}` in action env values. Values that took a
/// SecureString are returned in `secrets` (and masked); the others in `env`.
pub async fn resolve_env(
    params: &ParamStore,
    env: &BTreeMap<String, String>,
) -> Result<Resolved, String> {
    let mut out = Resolved::default();
    // A `{{param:` brought by a `#{…}` value was marked by
    // `resolve_action`: it is text, never a reference (unmarked below).
    let unmark = |text: &str| text.replace(crate::resolve::PARAM_ESCAPED, OPEN);
    for (var, value) in env {
        if !value.contains(OPEN) {
            out.env.push((var.clone(), unmark(value)));
            continue;
        }
        let mut result = String::new();
        let mut secret = false;
        let mut rest = value.as_str();
        while let Some(start) = rest.find(OPEN) {
            result.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let end = after
                .find(CLOSE)
                .ok_or_else(|| format!("env {var}: unterminated {OPEN}"))?;
            let sel = selector(after[..end].trim(), var, "env")?;
            let resolved = params
                .resolve(&[(var.as_str(), sel)])
                .await
                .map_err(|e| describe(&e, &format!("env {var}")))?;
            for r in resolved {
                secret |= r.secret;
                result.push_str(r.value.expose());
                out.records.push(ParamRecord {
                    var: var.clone(),
                    name: r.name.to_string(),
                    version: r.version,
                    secure: r.secret,
                    source: "env".to_string(),
                });
            }
            rest = &after[end + CLOSE.len()..];
        }
        result.push_str(rest);
        let result = unmark(&result);
        if secret {
            out.secrets.push((var.clone(), result));
        } else {
            out.env.push((var.clone(), result));
        }
    }
    Ok(out)
}
