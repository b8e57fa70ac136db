//! Replicas: what the caller asks for, what runs, and what happens to it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gantry_images::Reference;
use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// The longest replica id: it names files and containers.
const MAX_ID_LEN: usize = 128;

/// One replica to run: a service revision's image, command, environment and port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSpec {
    /// Unique within the runtime, chosen by the caller: `[A-Za-z0-9][A-Za-z0-9_.-]*`,
    /// at most 128 characters, because it names a file and a container.
    pub id: String,
    /// The environment the replica belongs to.
    pub environment: String,
    /// The service the replica belongs to.
    pub service: String,
    /// The service revision it runs.
    pub revision: u64,
    /// The image, pinned by digest (a tag is resolved once, at start).
    pub image: Reference,
    /// Overrides the image's entrypoint and cmd together.
    pub command: Option<Vec<String>>,
    /// Environment variables, over the image's.
    pub env: Vec<(String, String)>,
    /// The container port. The process runtime gives each replica its own port
    /// instead (in `PORT`); the docker runtime publishes this one.
    pub port: u16,
    /// A hard memory limit in bytes (docker only).
    pub memory: Option<u64>,
    /// A CPU limit in CPUs (docker only).
    pub cpus: Option<f64>,
    /// Extra labels (docker: container labels; process: kept with the replica).
    pub labels: BTreeMap<String, String>,
    /// Docker only: share the host's network instead of publishing `port`;
    /// the replica then gets its own port in `PORT`, as process replicas do.
    #[serde(default)]
    pub host_network: bool,
}

/// The label holding the user a replica runs as (see [`ReplicaSpec::user`]).
pub const USER_LABEL: &str = "gantry.user";

impl ReplicaSpec {
    /// The user the replica runs as, as a service's `user:` says: a user
    /// name or `uid[:gid]`; `None` runs it as gantry's own user (the process
    /// runtime) or the image's (docker). Kept in the label [`USER_LABEL`],
    /// so the spec keeps its shape.
    pub fn user(&self) -> Option<&str> {
        self.labels.get(USER_LABEL).map(String::as_str)
    }

    /// This spec running as `user` (see [`ReplicaSpec::user`]).
    pub fn with_user(mut self, user: Option<String>) -> ReplicaSpec {
        match user {
            Some(user) => self.labels.insert(USER_LABEL.to_owned(), user),
            None => self.labels.remove(USER_LABEL),
        };
        self
    }

    /// Checks what a runtime relies on: an id fit for file and container
    /// names, a non-empty command, environment names without `=` or NUL.
    pub(crate) fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |reason: String| RuntimeError::InvalidSpec {
            id: self.id.clone(),
            reason,
        };
        let id = self.id.as_bytes();
        let word = |b: &u8| b.is_ascii_alphanumeric();
        if id.is_empty()
            || id.len() > MAX_ID_LEN
            || !id.first().is_some_and(word)
            || !id
                .iter()
                .all(|b| word(b) || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(invalid(format!(
                "the id must match [A-Za-z0-9][A-Za-z0-9_.-]* and be at most {MAX_ID_LEN} characters"
            )));
        }
        if let Some(command) = &self.command
            && command.first().is_none_or(String::is_empty)
        {
            return Err(invalid(
                "command must name a program (it is empty)".to_owned(),
            ));
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') || value.contains('\0')
            {
                return Err(invalid(format!(
                    "environment variable {name:?}: a name must be non-empty without '=' or NUL, a value without NUL"
                )));
            }
        }
        if self.port == 0 {
            return Err(invalid("port must be 1-65535".to_owned()));
        }
        if let Some(user) = self.user()
            && !gantry_spec::service::is_user(user)
        {
            return Err(invalid(format!(
                "user {user:?}: expected a user name or uid[:gid]"
            )));
        }
        if let Some(cpus) = self.cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            return Err(invalid(format!("cpus {cpus}: must be a positive number")));
        }
        Ok(())
    }
}

/// Where a replica is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ReplicaState {
    /// Its image is being pulled or its process started.
    Starting,
    /// Its process (or container) runs.
    Running,
    /// It exited without being asked to; a restart follows.
    Exited {
        /// The exit code, when it exited rather than being killed (and when known:
        /// a re-adopted process's exit code cannot be read).
        code: Option<i32>,
    },
    /// Waiting out the backoff before it is started again.
    Restarting,
    /// A stop was asked for; the replica leaves [`Runtime::list`](crate::Runtime::list)
    /// once its processes are gone.
    Stopped,
}

/// A replica as a runtime runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Replica {
    /// The id from its spec.
    pub id: String,
    /// Where the load balancer sends its traffic, on 127.0.0.1.
    pub addr: SocketAddr,
    /// What it runs.
    pub spec: ReplicaSpec,
    /// Where it is in its life.
    pub state: ReplicaState,
    /// How many times it was restarted after exiting.
    pub restarts: u32,
    /// How its latest run that nobody asked to stop ended, while this
    /// server has watched it (not kept across restarts of gantry).
    pub last_exit: Option<ReplicaExit>,
}

/// How a replica's process (or container) ended: its exit code, or the
/// signal that killed it, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReplicaExit {
    /// The exit code, if it exited and the code is known.
    pub code: Option<i32>,
    /// The signal that killed it, if one did and it is known.
    pub signal: Option<i32>,
}

/// Something that happened to a replica. The deploy circuit breaker counts
/// `Exited` and `Restarting`; a replica stopped on request reports only `Stopped`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ReplicaEvent {
    /// Its process (or container) started: first start or restart.
    Started {
        /// The replica.
        id: String,
    },
    /// It exited without being asked to (or was found dead after a restart of gantry).
    Exited {
        /// The replica.
        id: String,
        /// Its exit code, if it exited and the code is known.
        code: Option<i32>,
        /// The signal that killed it, if one did and it is known.
        signal: Option<i32>,
    },
    /// It will be started again after `delay`.
    Restarting {
        /// The replica.
        id: String,
        /// Consecutive failed runs so far (1 for the first restart after a good run);
        /// it sets the backoff.
        attempt: u32,
        /// The wait before the restart.
        delay: Duration,
    },
    /// It was stopped on request and is forgotten.
    Stopped {
        /// The replica.
        id: String,
    },
}

impl ReplicaEvent {
    /// The replica the event is about.
    pub fn id(&self) -> &str {
        match self {
            ReplicaEvent::Started { id }
            | ReplicaEvent::Exited { id, .. }
            | ReplicaEvent::Restarting { id, .. }
            | ReplicaEvent::Stopped { id } => id,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(id: &str) -> ReplicaSpec {
        ReplicaSpec {
            id: id.to_owned(),
            environment: "staging".to_owned(),
            service: "web".to_owned(),
            revision: 1,
            image: Reference::parse(
                "127.0.0.1:5000/web@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            )
            .unwrap(),
            command: None,
            env: Vec::new(),
            port: 8080,
            memory: None,
            cpus: None,
            labels: BTreeMap::new(),
            host_network: false,
        }
    }

    #[test]
    fn ids_fit_for_file_and_container_names_are_accepted_others_refused() {
        for good in ["r1", "web-3.a_b", "0"] {
            assert!(spec(good).validate().is_ok(), "{good}");
        }
        let long = "a".repeat(129);
        for bad in ["", "-x", ".hidden", "a/b", "a b", "../x", long.as_str()] {
            let error = spec(bad).validate().unwrap_err();
            assert_eq!(error.code(), "invalid_spec", "{bad}");
        }
    }

    #[test]
    fn empty_commands_env_names_with_equals_and_zero_ports_are_refused() {
        let mut s = spec("r");
        s.command = Some(Vec::new());
        assert!(s.validate().is_err());
        let mut s = spec("r");
        s.env = vec![("A=B".into(), "x".into())];
        assert!(s.validate().is_err());
        let mut s = spec("r");
        s.port = 0;
        assert!(s.validate().is_err());
        let mut s = spec("r");
        s.cpus = Some(0.0);
        assert!(s.validate().is_err());
    }

    #[test]
    fn specs_round_trip_through_json() {
        let mut s = spec("r");
        s.command = Some(vec!["/app/run".into()]);
        s.env = vec![("A".into(), "1".into())];
        s.memory = Some(1 << 28);
        s.cpus = Some(0.5);
        s.labels.insert("team".into(), "core".into());
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<ReplicaSpec>(&text).unwrap(), s);
    }
}
