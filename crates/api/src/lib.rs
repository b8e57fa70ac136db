//! The bodies of gantry's HTTP API, typed in one place. The server builds
//! them, the CLI and the tests read them, and their JSON Schemas
//! (`schemars`) are what an OpenAPI description is made of. Field names are
//! a contract (docs/formats.md §3 and §6): a change here is a change of
//! contract.
//!
//! - [`agent`]: build agents: polling for jobs, logs, blobs, heartbeats,
//!   the end of a job, the list of agents.
//! - [`execution`]: [`ExecutionView`] (`gantry status --json`,
//!   `GET /api/v1/executions/{id}`), starting, retrying, stopping, logs,
//!   the changes long poll.
//! - [`approval`]: what an approval waits for ([`ApprovalView`]), deciding
//!   it, the decisions so far.
//! - [`params`]: the parameter store.
//! - [`pipeline`]: the pipelines a server knows, each with its newest
//!   execution.
//! - [`identity`]: whoami, users, tokens, the audit log.
//! - [`trigger`]: the triggers of registered pipelines, and the webhook
//!   endpoint's answers.
//! - [`environment`]: apply, environment status, deploy, rollback, down,
//!   shutdown.
//! - [`registry`]: the embedded registry's garbage collection.
//! - [`image`]: the embedded registry's images: list, inspect, promote.
//! - [`query`]: the query strings of the GET routes.
//! - [`openapi`]: the route table and the OpenAPI 3.1 document made from it
//!   and from these types (`GET /api/v1/openapi.json`).
//! - [`error`]: [`ErrorBody`], every error answer, with its stable `code`
//!   and, for the few legacy codes, their canonical names
//!   ([`LEGACY_CODES`]).
//!
//! Answers that were built as `serde_json::Value` before they had types
//! declare their fields in alphabetical order: that is the order a `Value`
//! (a sorted map) wrote them in, so typing them changed no byte. Each
//! module's tests pin those bytes against the `json!` they replaced.
//!
//! This crate depends on nothing of gantry's: statuses are the contract's
//! strings, not the engine's enums, and the server converts its crates'
//! types (users, parameters, deployments) into these.

pub mod agent;
pub mod approval;
pub mod environment;
pub mod error;
pub mod execution;
pub mod identity;
pub mod image;
pub mod openapi;
pub mod params;
pub mod pipeline;
pub mod query;
pub mod registry;
pub mod trigger;

pub use agent::*;
pub use approval::*;
pub use environment::*;
pub use error::*;
pub use execution::*;
pub use identity::*;
pub use image::*;
pub use params::*;
pub use pipeline::*;
pub use query::*;
pub use registry::*;
pub use trigger::*;

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// `typed` writes exactly the bytes `old` (the `json!` it replaced)
    /// wrote, and reads back into itself.
    pub(crate) fn same_bytes<T>(typed: &T, old: serde_json::Value)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug,
    {
        let text = serde_json::to_string(typed).unwrap();
        assert_eq!(text, serde_json::to_string(&old).unwrap());
        assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), typed);
    }
}
