//! `buildspec.yml`, CodeBuild 0.2 compatible (formats.md §2,
//! reference/aws-seed-system.md §3).
//!
//! CONTRACT: the validated types below are what the build runner consumes.
//! The spec helper implements `parse_buildspec` and may add fields, but must
//! not rename or remove the ones here.

/// Which buildspec version: 0.2 = one shell session for the whole build;
/// 0.1 = a fresh shell per command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildspecVersion {
    V01,
    V02,
}

#[derive(Debug, Clone, PartialEq)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFailure {
    #[default]
    Abort,
    Continue,
}

#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArtifactsSpec {
    /// Globs relative to `base_directory` (or the source dir): `**/*`, `dir/*`.
    pub files: Vec<String>,
    pub name: Option<String>,
    pub base_directory: Option<String>,
    pub discard_paths: bool,
    pub exclude_paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReportGroup {
    pub name: String,
    pub files: Vec<String>,
    pub base_directory: Option<String>,
    pub discard_paths: bool,
    /// `JUNITXML` (default) or another CodeBuild format name.
    pub file_format: String,
}

// CONTRACT (spec helper implements):
// /// Ok carries the buildspec and its warnings (ignored AWS-only keys).
// pub fn parse_buildspec(file: &str, text: &str) -> Result<(Buildspec, Vec<SpecError>), Vec<SpecError>>
