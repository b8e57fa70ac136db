//! Why a runtime call failed, naming the replica or image it was about.

use std::path::PathBuf;

/// A runtime call that failed. Every variant names its replica or image; the
/// text of the underlying failure (a registry's answer, docker's stderr) is
/// kept verbatim.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The spec cannot be run as given.
    #[error("replica {id}: invalid spec: {reason}")]
    InvalidSpec {
        /// The replica.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A replica with this id already exists.
    #[error("replica {id} already exists")]
    AlreadyExists {
        /// The replica.
        id: String,
    },
    /// The image could not be fetched from its registry.
    #[error("pulling image {image}: {reason}")]
    ImagePull {
        /// The image.
        image: String,
        /// The registry's (or docker's) answer.
        reason: String,
    },
    /// The image's layers could not be unpacked (or were refused).
    #[error("unpacking image {image}: {reason}")]
    Unpack {
        /// The image.
        image: String,
        /// What went wrong, naming the layer and entry.
        reason: String,
    },
    /// The replica's program could not be started.
    #[error("replica {id}: cannot start {program}: {reason}")]
    Spawn {
        /// The replica.
        id: String,
        /// The program, as the image or command names it.
        program: String,
        /// Why not.
        reason: String,
    },
    /// No free loopback port could be found for the replica.
    #[error("replica {id}: no free port on 127.0.0.1: {reason}")]
    PortUnavailable {
        /// The replica.
        id: String,
        /// Why not.
        reason: String,
    },
    /// The replica was stopped before its start finished.
    #[error("replica {id} was stopped while it was starting")]
    StoppedWhileStarting {
        /// The replica.
        id: String,
    },
    /// A docker command failed.
    #[error("`{command}` failed: {stderr}")]
    Docker {
        /// The command line (environment values are never part of it).
        command: String,
        /// Docker's error output, verbatim.
        stderr: String,
    },
    /// The docker CLI is missing or the engine does not answer.
    #[error("docker is unavailable: {reason}")]
    DockerUnavailable {
        /// What `docker version` said, or that the CLI was not found.
        reason: String,
    },
    /// The runtime's own files (state, logs, roots) could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    State {
        /// What was being done.
        what: String,
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// A stable code for APIs and tests.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::InvalidSpec { .. } => "invalid_spec",
            RuntimeError::AlreadyExists { .. } => "replica_exists",
            RuntimeError::ImagePull { .. } => "image_pull",
            RuntimeError::Unpack { .. } => "image_unpack",
            RuntimeError::Spawn { .. } => "spawn",
            RuntimeError::PortUnavailable { .. } => "port_unavailable",
            RuntimeError::StoppedWhileStarting { .. } => "stopped_while_starting",
            RuntimeError::Docker { .. } => "docker",
            RuntimeError::DockerUnavailable { .. } => "docker_unavailable",
            RuntimeError::State { .. } => "runtime_state",
        }
    }

    pub(crate) fn state(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> RuntimeError {
        let (what, path) = (what.into(), path.into());
        move |source| RuntimeError::State { what, path, source }
    }
}
