//! Persistence for gantry, in the data dir.
//!
//! - [`Store`]: one database — SQLite (WAL) in the data dir, or a shared
//!   PostgreSQL, through [`gantry_db`] — holding the append-only **event
//!   log** of every execution, the **queryable state** derived from it (one
//!   row per execution, rewritten after each event), each execution's
//!   pipeline **definition** as it was when it started, **action logs** with
//!   timestamps, and **approval records** (each person's vote, and the
//!   decision). An SQLite file and its -wal/-shm are mode 0600.
//!   It also keeps what the trigger runtime needs across restarts
//!   (`triggers`): **registered pipelines**, each trigger's **state**, the
//!   **dedup keys** of what already started a pipeline, and the webhook
//!   **delivery ids** already seen.
//! - [`ArtifactStore`]: content-addressed files. A file's bytes are stored
//!   once under their SHA-256; an artifact is a manifest (paths, modes,
//!   digests) stored the same way, so its id is the digest of its manifest and
//!   identical artifacts share one id. Nothing is ever modified once written.
//!
//! - Leases (`lease`): which of several servers sharing one database leads,
//!   with a fencing token every engine write checks.
//! - [`snapshot_database`]: a consistent copy of the live database
//!   (`VACUUM INTO`), for `gantry backup`.
//!
//! The store knows nothing of the engine's types: events and states are JSON
//! text handed in by the server. That keeps the dependency pointing one way
//! and lets the event log outlive any one version of the engine's structs.
//!
//! Invariant: an event and the state it produced are written in one
//! transaction, so after a crash the state rows never run ahead of the log.

mod artifacts;
mod backup;
mod db;
mod lease;
mod triggers;

pub use artifacts::{Artifact, ArtifactEntry, ArtifactError, ArtifactStore};
pub use backup::snapshot_database;
pub use db::{
    ActionDetail, ApprovalRecord, ApprovalVote, BatchName, EventRecord, ExecutionRow, LogLine,
    NewEvent, Store, StoreError,
};
pub use lease::{LEADER, LeaseHolder};
pub use triggers::{RegisteredPipeline, TriggerOutcome, TriggerState};
