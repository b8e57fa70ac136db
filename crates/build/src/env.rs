//! The build's environment variables.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use crate::BuildRequest;

/// `NAME` in `GANTRY_INPUT_<NAME>`: every character outside `[A-Za-z0-9_]`
/// becomes `_` (formats.md §1).
pub fn input_env_name(artifact: &str) -> String {
    artifact
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// True for a name a POSIX shell accepts as a variable name.
pub(crate) fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Where the build's directories are, as its shells see them: the host
/// paths in host mode, the mount points in container mode.
pub(crate) struct BuildPaths {
    pub(crate) src: PathBuf,
    /// Secondary inputs: artifact name → directory.
    pub(crate) inputs: Vec<(String, PathBuf)>,
}

/// The variables a host build takes from the environment of the process
/// running it (besides every `LC_*`): the ones describing the user, the
/// locale and the terminal. Nothing else passes: that process is gantry's
/// server, whose environment holds `GANTRY_MASTER_KEY`, `GANTRY_TOKEN` and
/// whatever else its operator set for it, and a build prints what it sees.
pub(crate) const HOST_PASSED: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TERM", "TMPDIR", "SHELL",
];

/// Whether a host build inherits the variable `name` (see [`HOST_PASSED`]).
pub(crate) fn host_passes(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| HOST_PASSED.contains(&n) || n.starts_with("LC_"))
}

/// The variables of this process that a child of gantry's may see (see
/// [`HOST_PASSED`]): for host builds and for the tools the server runs
/// itself (git), which start from a cleared environment plus these.
pub fn passed_host_env() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| host_passes(name))
        .collect()
}

/// The environment of every shell of the build, except
/// `CODEBUILD_BUILD_SUCCEEDING`, which changes during the build.
///
/// Precedence, lowest first: the host's variables of [`HOST_PASSED`] and
/// `LC_*` (host mode only: a container gets its image's environment
/// instead), buildspec
/// `env.variables`, `secrets` (parameter-store values resolved by the
/// caller), the request's `env` (the action's variables), then the
/// built-ins, which nothing overrides (CodeBuild reserves `CODEBUILD_`).
pub(crate) fn base_env(
    req: &BuildRequest,
    paths: &BuildPaths,
    inherit_host: bool,
    start_time_ms: i64,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = if inherit_host {
        std::env::vars_os()
            .filter(|(name, _)| host_passes(name))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut set = |k: &str, v: &str| {
        env.insert(k.into(), v.into());
    };
    for (k, v) in &req.buildspec.variables {
        set(k, v);
    }
    for (k, v) in &req.secrets {
        set(k, v);
    }
    for (k, v) in &req.env {
        set(k, v);
    }
    let src = paths.src.to_string_lossy();
    let number = req.build_number.to_string();
    let start = start_time_ms.to_string();
    for prefix in ["CODEBUILD", "GANTRY"] {
        set(&format!("{prefix}_SRC_DIR"), &src);
        set(&format!("{prefix}_BUILD_ID"), &req.build_id);
        set(&format!("{prefix}_BUILD_NUMBER"), &number);
        set(&format!("{prefix}_START_TIME"), &start);
        set(&format!("{prefix}_INITIATOR"), &req.initiator);
        if let Some(version) = &req.resolved_source_version {
            set(&format!("{prefix}_RESOLVED_SOURCE_VERSION"), version);
        }
    }
    for (name, dir) in &paths.inputs {
        let name = input_env_name(name);
        let dir = dir.to_string_lossy();
        set(&format!("CODEBUILD_SRC_DIR_{name}"), &dir);
        set(&format!("GANTRY_INPUT_{name}"), &dir);
    }
    env
}

/// `CODEBUILD_BUILD_SUCCEEDING` and its twin.
pub(crate) const SUCCEEDING_VARS: [&str; 2] =
    ["CODEBUILD_BUILD_SUCCEEDING", "GANTRY_BUILD_SUCCEEDING"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_names_keep_only_shell_safe_characters() {
        assert_eq!(input_env_name("Source-Artifact.v2"), "Source_Artifact_v2");
        assert_eq!(input_env_name("Plain_1"), "Plain_1");
    }

    #[test]
    fn only_the_users_locale_and_terminal_pass_from_the_host() {
        for name in ["PATH", "HOME", "LC_ALL", "LC_TIME", "TERM", "SHELL"] {
            assert!(host_passes(name.as_ref()), "{name}");
        }
        for name in [
            "GANTRY_MASTER_KEY",
            "GANTRY_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
            "DOCKER_HOST",
        ] {
            assert!(!host_passes(name.as_ref()), "{name}");
        }
    }

    #[test]
    fn shell_names() {
        assert!(is_shell_name("IMAGE_TAG"));
        assert!(is_shell_name("_x1"));
        assert!(!is_shell_name("1X"));
        assert!(!is_shell_name("A-B"));
        assert!(!is_shell_name(""));
    }
}
