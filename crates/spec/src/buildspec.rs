//! `buildspec.yml`, CodeBuild 0.2 compatible (formats.md §2,
//! reference/aws-seed-system.md §3).
//!
//! CONTRACT: the validated types below are what the build runner consumes.
//! Fields may be added; none may be renamed or removed.
//!
//! [`parse_buildspec`] accepts the whole 0.2 grammar so that existing files
//! run unmodified. Keys that only mean something on AWS (`runtime-versions`,
//! `proxy`, `batch`, `env.git-credential-helper`, `artifacts.s3-prefix`,
//! `cache.key`, `cache.fallback-keys`, `cache.action`) are accepted with any
//! content and come back as warnings, never as errors. Everything else that
//! is unknown or of the wrong type is an error, and all of them are reported
//! together.
//!
//! Leniencies that real-world files rely on: a single string where a list of
//! globs is expected (`files: '**/*'`), numbers and booleans as variable
//! values (`FOO: 5` is `"5"`, as written), `version` as the number `0.2` or
//! the string `"0.2"`, a key left empty (all its items commented out)
//! meaning an empty list, version 0.1's names `environment_variables` and
//! `plaintext` for `env` and `variables` (in either version; a warning in
//! 0.2), and `artifacts.type`, dropped in 0.2 but still written by CodeStar's
//! templates (a warning).

use crate::location::SpecError;
use crate::yaml::{self, Diagnostics, Fields, Node};

/// Which buildspec version: 0.2 = one shell session for the whole build;
/// 0.1 = a fresh shell per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BuildspecVersion {
    V01,
    V02,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Buildspec {
    pub version: BuildspecVersion,
    /// `env.shell`: the program to run commands in; `sh` by default.
    pub shell: String,
    /// Global `run-as`.
    pub run_as: Option<String>,
    /// `env.variables`, in file order.
    pub variables: Vec<(String, String)>,
    /// `env.parameter-store`: variable → parameter name (with optional `:selector`).
    pub parameter_store: Vec<(String, String)>,
    /// `env.secrets-manager`: variable → secret reference (mapped to the parameter store).
    pub secrets_manager: Vec<(String, String)>,
    /// `env.exported-variables`.
    pub exported_variables: Vec<String>,
    /// Phases present in the file, in execution order (install, pre_build, build, post_build).
    pub phases: Vec<Phase>,
    pub reports: Vec<ReportGroup>,
    /// `artifacts` (the primary artifact).
    pub artifacts: Option<ArtifactsSpec>,
    /// `artifacts.secondary-artifacts`: identifier → spec, in file order.
    pub secondary_artifacts: Vec<(String, ArtifactsSpec)>,
    /// `cache.paths`.
    pub cache_paths: Vec<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum PhaseName {
    Install,
    PreBuild,
    Build,
    PostBuild,
}

impl PhaseName {
    /// `INSTALL`, `PRE_BUILD`, `BUILD`, `POST_BUILD`, as CodeBuild reports them.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Install => "INSTALL",
            PhaseName::PreBuild => "PRE_BUILD",
            PhaseName::Build => "BUILD",
            PhaseName::PostBuild => "POST_BUILD",
        }
    }
}

/// A phase's `on-failure`: what happens when one of its commands fails.
/// The reference's values are `ABORT`, `CONTINUE`, `RETRY`, `RETRY-count`,
/// `RETRY-regex` and `RETRY-count-regex`; leaving it out is a behaviour of
/// its own ("the failure process follows the transition phases").
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum OnFailure {
    /// Not written: CodeBuild's phase transitions. A failed INSTALL or
    /// PRE_BUILD ends the build; a failed BUILD goes on to POST_BUILD; the
    /// artifacts are uploaded after BUILD and POST_BUILD ran, failed or not.
    #[default]
    Unspecified,
    /// `ABORT`, written: "Abort the build". No later phase runs and no
    /// artifact is uploaded, whichever phase failed.
    Abort,
    /// `CONTINUE`: "Continue to the next phase".
    Continue,
    /// `RETRY`, `RETRY-<count>`, `RETRY-<regex>`, `RETRY-<count>-<regex>`:
    /// the phase runs again, up to `retries` more times (3 unless a count
    /// is written; 0 to 100), as long as the failed attempt's log holds a
    /// line `pattern` matches (`None`: any failure, the reference's `.*`).
    /// Once the retries are spent, the failure follows the transitions of
    /// [`OnFailure::Unspecified`].
    Retry {
        retries: u32,
        pattern: Option<String>,
    },
}

impl OnFailure {
    /// Retries of a bare `RETRY` or `RETRY-<regex>`.
    pub const DEFAULT_RETRIES: u32 = 3;
    /// The largest count `RETRY-<count>` takes.
    pub const MAX_RETRIES: u32 = 100;
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Phase {
    pub name: PhaseName,
    /// Each item is one command; a multi-line block is one command.
    pub commands: Vec<String>,
    pub finally: Vec<String>,
    pub on_failure: OnFailure,
    pub run_as: Option<String>,
}

/// `artifacts` (and each secondary artifact): which files the build outputs.
/// Also used by the `shell` action's `artifacts:` key.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct ArtifactsSpec {
    /// Globs relative to `base_directory` (or the source dir): `**/*`, `dir/*`.
    pub files: Vec<String>,
    pub name: Option<String>,
    pub base_directory: Option<String>,
    pub discard_paths: bool,
    pub exclude_paths: Vec<String>,
    /// `enable-symlinks`: keep symbolic links as links instead of following them.
    pub enable_symlinks: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportGroup {
    pub name: String,
    pub files: Vec<String>,
    pub base_directory: Option<String>,
    pub discard_paths: bool,
    /// `JUNITXML` (default) or another CodeBuild format name.
    pub file_format: String,
}

impl PhaseName {
    /// The key under `phases:` in a buildspec.
    pub fn key(self) -> &'static str {
        match self {
            PhaseName::Install => "install",
            PhaseName::PreBuild => "pre_build",
            PhaseName::Build => "build",
            PhaseName::PostBuild => "post_build",
        }
    }

    /// All phases, in execution order.
    pub const ALL: [PhaseName; 4] = [
        PhaseName::Install,
        PhaseName::PreBuild,
        PhaseName::Build,
        PhaseName::PostBuild,
    ];
}

/// The report formats CodeBuild knows; the first is the default.
pub const REPORT_FILE_FORMATS: [&str; 10] = [
    "JUNITXML",
    "CUCUMBERJSON",
    "NUNITXML",
    "NUNIT3XML",
    "TESTNGXML",
    "VISUALSTUDIOTRX",
    "CLOVERXML",
    "COBERTURAXML",
    "JACOCOXML",
    "SIMPLECOV",
];

const TOP_KEYS: &[&str] = &[
    "version",
    "run-as",
    "env",
    "environment_variables",
    "proxy",
    "batch",
    "phases",
    "reports",
    "artifacts",
    "cache",
];
const ENV_KEYS: &[&str] = &[
    "shell",
    "variables",
    "plaintext",
    "parameter-store",
    "secrets-manager",
    "exported-variables",
    "git-credential-helper",
];
const PHASE_KEYS: &[&str] = &[
    "run-as",
    "on-failure",
    "runtime-versions",
    "commands",
    "finally",
];
const REPORT_KEYS: &[&str] = &["files", "base-directory", "discard-paths", "file-format"];
const CACHE_KEYS: &[&str] = &["paths", "key", "fallback-keys", "action"];
/// `artifacts` keys gantry implements, valid in a buildspec and in a
/// `shell` action of gantry.yaml alike.
pub(crate) const ARTIFACT_KEYS: &[&str] = &[
    "files",
    "name",
    "base-directory",
    "discard-paths",
    "exclude-paths",
    "enable-symlinks",
];

/// Parses a buildspec. `Ok` carries the buildspec and its warnings (ignored
/// AWS-only keys); `Err` carries every error found, in file order.
pub fn parse_buildspec(
    file: &str,
    text: &str,
) -> Result<(Buildspec, Vec<SpecError>), Vec<SpecError>> {
    let root = yaml::parse(file, text).map_err(|e| vec![e])?;
    let mut diag = Diagnostics::new(file);
    let buildspec = decode_buildspec(&mut diag, &root);
    let (errors, warnings) = diag.into_sorted();
    match buildspec {
        Some(buildspec) if errors.is_empty() => Ok((buildspec, warnings)),
        _ => Err(errors),
    }
}

/// Whether `text` is a buildspec rather than a gantry file: a mapping whose
/// `version` is 0.1 or 0.2 (gantry files say `version: 1`), or one with
/// `phases` and no `stages`. `None` when it is not YAML at all (then only
/// its name can tell).
pub fn is_buildspec(text: &str) -> Option<bool> {
    let root = yaml::parse("", text).ok()?;
    let yaml::Value::Map(entries) = &root.value else {
        return Some(false);
    };
    let value = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| k.scalar_text().as_deref() == Some(key))
            .map(|(_, v)| v)
    };
    let version = value("version").and_then(|v| v.scalar_text().map(|t| t.trim().to_owned()));
    Some(
        matches!(version.as_deref(), Some("0.1" | "0.2"))
            || (value("phases").is_some() && value("stages").is_none()),
    )
}

/// Notes that an AWS-only key is present and otherwise leaves it alone.
fn ignored(diag: &mut Diagnostics<'_>, fields: &Fields<'_>, key: &str, shown_as: &str) {
    if let Some(field) = fields.field(key) {
        diag.warn(
            field.key_node.location,
            format!("`{shown_as}` is ignored by gantry (AWS only)"),
        );
    }
}

fn decode_buildspec(diag: &mut Diagnostics<'_>, root: &Node) -> Option<Buildspec> {
    let top = diag.map(root, "a buildspec")?;
    top.deny_unknown(diag, TOP_KEYS, "in a buildspec");
    ignored(diag, &top, "proxy", "proxy");
    ignored(diag, &top, "batch", "batch");

    let version = top
        .required(diag, "version", "(the buildspec version, 0.2)")
        .and_then(|node| decode_version(diag, node));
    let run_as = top
        .get("run-as")
        .and_then(|n| diag.string(n, "`run-as`"))
        .map(|s| s.value);

    let mut buildspec = Buildspec {
        version: version.unwrap_or(BuildspecVersion::V02),
        shell: "sh".to_owned(),
        run_as,
        variables: Vec::new(),
        parameter_store: Vec::new(),
        secrets_manager: Vec::new(),
        exported_variables: Vec::new(),
        phases: Vec::new(),
        reports: Vec::new(),
        artifacts: None,
        secondary_artifacts: Vec::new(),
        cache_paths: Vec::new(),
    };
    if let Some(env) = env_section(diag, &top, buildspec.version) {
        decode_env(diag, env, &mut buildspec);
    }
    if let Some(phases) = top.get("phases") {
        buildspec.phases = decode_phases(diag, phases);
    }
    if let Some(reports) = top
        .get("reports")
        .and_then(|n| diag.map_or_empty(n, "`reports`"))
    {
        for field in &reports.fields {
            if let Some(report) = decode_report(diag, &field.key, field.value) {
                buildspec.reports.push(report);
            }
        }
    }
    if let Some(artifacts) = top.get("artifacts") {
        decode_all_artifacts(diag, artifacts, &mut buildspec);
    }
    if let Some(cache) = top
        .get("cache")
        .and_then(|n| diag.map_or_empty(n, "`cache`"))
    {
        cache.deny_unknown(diag, CACHE_KEYS, "in `cache`");
        for key in ["key", "fallback-keys", "action"] {
            ignored(diag, &cache, key, &format!("cache.{key}"));
        }
        if let Some(paths) = cache.get("paths") {
            buildspec.cache_paths = strings(diag.string_list(paths, "`cache.paths`", true));
        }
    }
    Some(buildspec)
}

fn strings(list: Option<Vec<yaml::Located<String>>>) -> Vec<String> {
    list.unwrap_or_default()
        .into_iter()
        .map(|s| s.value)
        .collect()
}

fn decode_version(diag: &mut Diagnostics<'_>, node: &Node) -> Option<BuildspecVersion> {
    // `0.2` arrives as a number and `"0.2"` as a string; both are compared
    // as written, so no float rounding is involved.
    let text = node.scalar_text();
    match text.as_deref().map(str::trim) {
        Some("0.2") => Some(BuildspecVersion::V02),
        Some("0.1") => Some(BuildspecVersion::V01),
        _ => {
            let found = text
                .map(|t| format!("`{t}`"))
                .unwrap_or_else(|| node.kind().to_owned());
            diag.error(
                node.location,
                format!("unsupported buildspec version {found}: only 0.1 and 0.2 exist"),
            );
            None
        }
    }
}

/// A mapping of names to strings, in file order (`env.variables` and friends).
fn string_map(diag: &mut Diagnostics<'_>, node: &Node, what: &str) -> Vec<(String, String)> {
    let Some(map) = diag.map_or_empty(node, what) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(map.fields.len());
    for field in &map.fields {
        let item = format!("the value of `{}` in {what}", field.key);
        if let Some(value) = diag.string_or_empty(field.value, &item) {
            out.push((field.key.clone(), value.value));
        }
    }
    out
}

/// `env`, or `environment_variables`, its name in version 0.1 (CodeBuild's
/// version table: "`environment_variables` has been renamed to `env`").
/// Either name is read in either version; the old one in a 0.2 file is
/// worth a warning, and both at once are an error.
fn env_section<'n>(
    diag: &mut Diagnostics<'_>,
    top: &Fields<'n>,
    version: BuildspecVersion,
) -> Option<&'n Node> {
    let old = top.field("environment_variables");
    match (top.get("env"), old) {
        (Some(_), Some(old)) => {
            diag.error(
                old.key_node.location,
                "`environment_variables` is the 0.1 name of `env`; write only one of them",
            );
            top.get("env")
        }
        (Some(env), None) => Some(env),
        (None, Some(old)) => {
            if version == BuildspecVersion::V02 {
                diag.warn(
                    old.key_node.location,
                    "`environment_variables` is the version 0.1 name of `env`; read as `env`",
                );
            }
            Some(old.value)
        }
        (None, None) => None,
    }
}

fn decode_env(diag: &mut Diagnostics<'_>, node: &Node, buildspec: &mut Buildspec) {
    let Some(env) = diag.map_or_empty(node, "`env`") else {
        return;
    };
    env.deny_unknown(diag, ENV_KEYS, "in `env`");
    ignored(
        diag,
        &env,
        "git-credential-helper",
        "env.git-credential-helper",
    );
    if let Some(shell) = env.get("shell").and_then(|n| diag.string(n, "`env.shell`")) {
        buildspec.shell = shell.value;
    }
    // `plaintext` is the 0.1 name of `variables`.
    match (env.get("variables"), env.field("plaintext")) {
        (Some(_), Some(old)) => diag.error(
            old.key_node.location,
            "`plaintext` is the 0.1 name of `variables`; write only one of them",
        ),
        (Some(n), None) => buildspec.variables = string_map(diag, n, "`env.variables`"),
        (None, Some(old)) => {
            if buildspec.version == BuildspecVersion::V02 {
                diag.warn(
                    old.key_node.location,
                    "`plaintext` is the version 0.1 name of `variables`; read as `variables`",
                );
            }
            buildspec.variables = string_map(diag, old.value, "`env.plaintext`");
        }
        (None, None) => {}
    }
    if let Some(n) = env.get("parameter-store") {
        buildspec.parameter_store = string_map(diag, n, "`env.parameter-store`");
    }
    if let Some(n) = env.get("secrets-manager") {
        buildspec.secrets_manager = string_map(diag, n, "`env.secrets-manager`");
    }
    if let Some(n) = env.get("exported-variables") {
        buildspec.exported_variables =
            strings(diag.string_list(n, "`env.exported-variables`", false));
    }
}

fn decode_phases(diag: &mut Diagnostics<'_>, node: &Node) -> Vec<Phase> {
    let Some(phases) = diag.map_or_empty(node, "`phases`") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in &phases.fields {
        let Some(name) = PhaseName::ALL.into_iter().find(|p| p.key() == field.key) else {
            diag.error(
                field.key_node.location,
                format!(
                    "unknown phase `{}`{}; expected one of: install, pre_build, build, post_build",
                    field.key,
                    crate::suggest::did_you_mean(
                        &field.key,
                        PhaseName::ALL.into_iter().map(PhaseName::key)
                    )
                ),
            );
            continue;
        };
        if let Some(phase) = decode_phase(diag, name, field.value) {
            out.push(phase);
        }
    }
    // CodeBuild runs the phases in a fixed order whatever order the file uses.
    out.sort_by_key(|phase| phase.name);
    out
}

fn decode_phase(diag: &mut Diagnostics<'_>, name: PhaseName, node: &Node) -> Option<Phase> {
    let key = name.key();
    let fields = diag.map_or_empty(node, &format!("phase `{key}`"))?;
    fields.deny_unknown(diag, PHASE_KEYS, &format!("in phase `{key}`"));
    ignored(
        diag,
        &fields,
        "runtime-versions",
        &format!("phases.{key}.runtime-versions"),
    );
    let mut phase = Phase {
        name,
        commands: Vec::new(),
        finally: Vec::new(),
        on_failure: OnFailure::Unspecified,
        run_as: None,
    };
    if let Some(n) = fields.get("commands") {
        phase.commands = strings(diag.string_list(n, &format!("`phases.{key}.commands`"), false));
    }
    if let Some(n) = fields.get("finally") {
        phase.finally = strings(diag.string_list(n, &format!("`phases.{key}.finally`"), false));
    }
    if let Some(n) = fields.get("run-as") {
        phase.run_as = diag
            .string(n, &format!("`phases.{key}.run-as`"))
            .map(|s| s.value);
    }
    if let Some(n) = fields.get("on-failure") {
        let what = format!("`phases.{key}.on-failure`");
        if let Some(value) = diag.string(n, &what) {
            match parse_on_failure(&value.value) {
                Ok(on_failure) => phase.on_failure = on_failure,
                Err(why) => diag.error(value.location, format!("{what} {why}")),
            }
        }
    }
    Some(phase)
}

/// One `on-failure` value. Keywords are read in any case; a regular
/// expression is kept as written. After `RETRY-`, digits alone are a count,
/// digits and a `-` start a count and a regular expression, anything else
/// is a regular expression.
fn parse_on_failure(text: &str) -> Result<OnFailure, String> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    match upper.as_str() {
        "ABORT" => return Ok(OnFailure::Abort),
        "CONTINUE" => return Ok(OnFailure::Continue),
        "RETRY" => {
            return Ok(OnFailure::Retry {
                retries: OnFailure::DEFAULT_RETRIES,
                pattern: None,
            });
        }
        _ => {}
    }
    let Some(rest) = upper.starts_with("RETRY-").then(|| &text["RETRY-".len()..]) else {
        return Err(format!(
            "must be ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or \
             RETRY-<count>-<regex>, found `{text}`"
        ));
    };
    if rest.is_empty() {
        return Err(format!(
            "`{text}`: a count or a regular expression must follow `RETRY-`"
        ));
    }
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (count, pattern) = match (&rest[..digits], &rest[digits..]) {
        ("", pattern) => (None, pattern),
        (count, "") => (Some(count), ""),
        (count, after) => match after.strip_prefix('-') {
            Some(pattern) => (Some(count), pattern),
            // `RETRY-3x`: not a count, so all of it is the expression.
            None => (None, rest),
        },
    };
    let retries = match count {
        None => OnFailure::DEFAULT_RETRIES,
        Some(count) => match count.parse::<u32>() {
            Ok(n) if n <= OnFailure::MAX_RETRIES => n,
            _ => {
                return Err(format!(
                    "`{text}`: the retry count must be between 0 and {}, found {count}",
                    OnFailure::MAX_RETRIES
                ));
            }
        },
    };
    if count.is_some() && pattern.is_empty() && rest.ends_with('-') {
        return Err(format!(
            "`{text}`: a regular expression must follow `RETRY-{}-`",
            count.unwrap_or_default()
        ));
    }
    let pattern = if pattern.is_empty() {
        None
    } else {
        if let Err(e) = regex_automata::meta::Regex::new(pattern) {
            let why = match e.syntax_error() {
                Some(syntax) => regex_error(&syntax.to_string()),
                None => e.to_string(),
            };
            return Err(format!(
                "`{text}`: `{pattern}` is not a valid regular expression: {why}"
            ));
        }
        Some(pattern.to_owned())
    };
    Ok(OnFailure::Retry { retries, pattern })
}

/// The one line of a regex error that says what is wrong (the full text
/// draws the expression with a caret under it, over several lines).
fn regex_error(text: &str) -> String {
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(text.lines().next().unwrap_or(text))
        .trim()
        .to_owned()
}

fn decode_report(diag: &mut Diagnostics<'_>, name: &str, node: &Node) -> Option<ReportGroup> {
    let fields = diag.map(node, &format!("report `{name}`"))?;
    fields.deny_unknown(diag, REPORT_KEYS, &format!("in report `{name}`"));
    let files = fields
        .required(diag, "files", &format!("in report `{name}`"))
        .map(|n| strings(diag.string_list(n, &format!("`files` of report `{name}`"), true)))
        .unwrap_or_default();
    let base_directory = fields
        .get("base-directory")
        .and_then(|n| diag.string(n, &format!("`base-directory` of report `{name}`")))
        .map(|s| s.value);
    let discard_paths = fields
        .get("discard-paths")
        .and_then(|n| diag.boolean(n, &format!("`discard-paths` of report `{name}`")))
        .unwrap_or(false);
    let mut file_format = REPORT_FILE_FORMATS[0].to_owned();
    if let Some(n) = fields.get("file-format") {
        let what = format!("`file-format` of report `{name}`");
        if let Some(format) = diag.string(n, &what) {
            let upper = format.value.to_ascii_uppercase();
            if REPORT_FILE_FORMATS.contains(&upper.as_str()) {
                file_format = upper;
            } else {
                diag.error(
                    format.location,
                    format!(
                        "unknown file-format `{}` in report `{name}`; expected one of: {}",
                        format.value,
                        REPORT_FILE_FORMATS.join(", ")
                    ),
                );
            }
        }
    }
    Some(ReportGroup {
        name: name.to_owned(),
        files,
        base_directory,
        discard_paths,
        file_format,
    })
}

fn decode_all_artifacts(diag: &mut Diagnostics<'_>, node: &Node, buildspec: &mut Buildspec) {
    let Some(fields) = diag.map(node, "`artifacts`") else {
        return;
    };
    let mut known = ARTIFACT_KEYS.to_vec();
    known.extend(["s3-prefix", "secondary-artifacts", "type"]);
    fields.deny_unknown(diag, &known, "in `artifacts`");
    ignored(diag, &fields, "s3-prefix", "artifacts.s3-prefix");
    dropped_type(diag, &fields, "artifacts.type");

    let secondary = fields.get("secondary-artifacts");
    if let Some(secondary) = secondary.and_then(|n| diag.map(n, "`artifacts.secondary-artifacts`"))
    {
        for field in &secondary.fields {
            let what = format!("secondary artifact `{}`", field.key);
            let Some(spec) = diag.map(field.value, &what) else {
                continue;
            };
            let mut known = ARTIFACT_KEYS.to_vec();
            known.extend(["s3-prefix", "type"]);
            spec.deny_unknown(diag, &known, &format!("in {what}"));
            ignored(
                diag,
                &spec,
                "s3-prefix",
                &format!("{}.s3-prefix", field.key),
            );
            dropped_type(diag, &spec, &format!("{}.type", field.key));
            if let Some(artifact) = decode_artifact_fields(diag, &spec, &what) {
                buildspec
                    .secondary_artifacts
                    .push((field.key.clone(), artifact));
            }
        }
    }
    // With secondary artifacts only, the primary artifact may be absent; any
    // other primary key without `files` is a mistake.
    let primary_keys = fields
        .fields
        .iter()
        .any(|f| ARTIFACT_KEYS.contains(&f.key.as_str()));
    if secondary.is_none() || primary_keys {
        buildspec.artifacts = decode_artifact_fields(diag, &fields, "`artifacts`");
    }
}

/// `artifacts.type` (`zip`, `none`) was dropped from the buildspec in 0.2,
/// but CodeStar's templates still write it and CodeBuild still takes it:
/// accepted with any value, and reported.
fn dropped_type(diag: &mut Diagnostics<'_>, fields: &Fields<'_>, shown_as: &str) {
    if let Some(field) = fields.field("type") {
        diag.warn(
            field.key_node.location,
            format!(
                "`{shown_as}` is ignored by gantry (not part of buildspec 0.2; \
                 an artifact is a directory of files)"
            ),
        );
    }
}

/// Decodes an artifacts mapping as written in a `shell` action of gantry.yaml,
/// where only the keys gantry implements are allowed.
pub(crate) fn decode_artifacts(diag: &mut Diagnostics<'_>, node: &Node) -> Option<ArtifactsSpec> {
    let fields = diag.map(node, "`artifacts`")?;
    fields.deny_unknown(diag, ARTIFACT_KEYS, "in `artifacts`");
    decode_artifact_fields(diag, &fields, "`artifacts`")
}

/// The keys of [`ARTIFACT_KEYS`] in `fields`; unknown keys are checked by the caller.
fn decode_artifact_fields(
    diag: &mut Diagnostics<'_>,
    fields: &Fields<'_>,
    what: &str,
) -> Option<ArtifactsSpec> {
    let errors_before = diag.errors.len();
    let files = fields
        .required(diag, "files", &format!("in {what}"))
        .and_then(|n| {
            let files = diag.string_list(n, &format!("`files` of {what}"), true)?;
            if files.is_empty() {
                diag.error(
                    n.location,
                    format!("`files` of {what} must list at least one glob"),
                );
            }
            Some(files)
        });
    let mut spec = ArtifactsSpec {
        files: strings(files),
        ..ArtifactsSpec::default()
    };
    if let Some(n) = fields.get("name") {
        spec.name = diag
            .string(n, &format!("`name` of {what}"))
            .map(|s| s.value);
    }
    if let Some(n) = fields.get("base-directory") {
        spec.base_directory = diag
            .string(n, &format!("`base-directory` of {what}"))
            .map(|s| s.value);
    }
    if let Some(n) = fields.get("discard-paths") {
        spec.discard_paths = diag
            .boolean(n, &format!("`discard-paths` of {what}"))
            .unwrap_or(false);
    }
    if let Some(n) = fields.get("enable-symlinks") {
        spec.enable_symlinks = diag
            .boolean(n, &format!("`enable-symlinks` of {what}"))
            .unwrap_or(false);
    }
    if let Some(n) = fields.get("exclude-paths") {
        spec.exclude_paths =
            strings(diag.string_list(n, &format!("`exclude-paths` of {what}"), true));
    }
    (diag.errors.len() == errors_before).then_some(spec)
}
