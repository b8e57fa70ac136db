//! "A commit triggers a pipeline once": the key under which the server
//! records that something already started a pipeline, whichever way the
//! news came (webhook, poll, both, a redelivery, a restart).
//!
//! The server stores [`DedupKey::as_string`] under a unique constraint and
//! starts an execution only if the insert succeeds. Keys contain pipeline
//! and action names, whose characters exclude `/` and `:`, so the parts
//! cannot run into each other.

use std::fmt;

use gantry_spec::pipeline::{ActionName, PipelineName};
use gantry_spec::trigger::PullRequestEvent;
use jiff::Timestamp;

use crate::git::CommitId;

/// What one start of a pipeline is recorded as.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DedupKey {
    /// A pushed commit, for one source action of one pipeline: the same
    /// commit pushed again, to another matching branch, or seen by webhook
    /// and by poll, starts nothing more.
    Commit {
        pipeline: PipelineName,
        source: ActionName,
        commit: CommitId,
    },
    /// One pull-request event on one head commit: reopening or closing the
    /// same commit is a new event, a redelivery is not.
    PullRequest {
        pipeline: PipelineName,
        source: ActionName,
        number: u64,
        action: PullRequestEvent,
        commit: CommitId,
    },
    /// One fire time of a schedule, so a restart at that instant does not
    /// run it twice.
    Schedule {
        pipeline: PipelineName,
        /// The trigger's index in the pipeline's `triggers`.
        trigger: usize,
        at: Timestamp,
    },
    /// One ended execution of an upstream pipeline.
    Upstream {
        pipeline: PipelineName,
        upstream_execution: String,
    },
}

impl DedupKey {
    /// The key as stored: `commit:PIPELINE/SOURCE/COMMIT`,
    /// `pull_request:PIPELINE/SOURCE/#N/ACTION/COMMIT`,
    /// `schedule:PIPELINE/INDEX/RFC3339`, `upstream:PIPELINE/EXECUTION`.
    pub fn as_string(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DedupKey::Commit {
                pipeline,
                source,
                commit,
            } => write!(f, "commit:{pipeline}/{source}/{commit}"),
            DedupKey::PullRequest {
                pipeline,
                source,
                number,
                action,
                commit,
            } => write!(
                f,
                "pull_request:{pipeline}/{source}/#{number}/{}/{commit}",
                action.as_str()
            ),
            DedupKey::Schedule {
                pipeline,
                trigger,
                at,
            } => write!(f, "schedule:{pipeline}/{trigger}/{at}"),
            DedupKey::Upstream {
                pipeline,
                upstream_execution,
            } => write!(f, "upstream:{pipeline}/{upstream_execution}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> (PipelineName, ActionName, CommitId) {
        (
            PipelineName::new("shop").expect("pipeline"),
            ActionName::new("checkout").expect("action"),
            CommitId::parse("0D1A26E67D8F5EAF1F6BA5C57FC3C7D91AC0FD1C").expect("commit"),
        )
    }

    #[test]
    fn keys_name_what_started_the_pipeline() {
        let (pipeline, source, commit) = names();
        let at: Timestamp = "2026-01-02T03:00:00Z".parse().expect("time");
        let cases = [
            (
                DedupKey::Commit {
                    pipeline: pipeline.clone(),
                    source: source.clone(),
                    commit: commit.clone(),
                },
                "commit:shop/checkout/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            ),
            (
                DedupKey::PullRequest {
                    pipeline: pipeline.clone(),
                    source,
                    number: 42,
                    action: PullRequestEvent::Updated,
                    commit,
                },
                "pull_request:shop/checkout/#42/updated/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            ),
            (
                DedupKey::Schedule {
                    pipeline: pipeline.clone(),
                    trigger: 1,
                    at,
                },
                "schedule:shop/1/2026-01-02T03:00:00Z",
            ),
            (
                DedupKey::Upstream {
                    pipeline,
                    upstream_execution: "01J5ZK3F2M8Q".to_owned(),
                },
                "upstream:shop/01J5ZK3F2M8Q",
            ),
        ];
        for (key, expected) in cases {
            assert_eq!(key.as_string(), expected);
        }
    }

    /// The same commit announced by webhook (upper-case hex from one forge)
    /// and by poll (lower-case from git) is one key.
    #[test]
    fn a_commit_is_one_key_however_it_is_spelt() {
        let (pipeline, source, commit) = names();
        let from_poll =
            CommitId::parse("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c").expect("commit");
        let key = |commit| DedupKey::Commit {
            pipeline: pipeline.clone(),
            source: source.clone(),
            commit,
        };
        assert_eq!(key(commit), key(from_poll));
    }
}
