//! File formats of gantry, parsed in two phases: raw YAML (with locations) →
//! validated types. Every problem found is reported, each as
//! `FILE:LINE:COL: message`, and nothing downstream ever sees an unvalidated
//! string: names are newtypes built only by the validators here.
//!
//! - [`pipeline`]: the pipeline of `gantry.yaml` (formats.md §1).
//! - [`environment`] and [`service`]: where services run and what they are
//!   (formats.md §4), beside the pipeline or in included files.
//! - [`document`]: one file as a whole ([`parse_document`]) and the files of
//!   a project put together and checked against each other ([`assemble`]).
//! - [`trigger`]: what starts a pipeline by itself (git pushes and pull
//!   requests, schedules, other pipelines), and [`notification`]: where its
//!   events are sent (formats.md §7).
//! - [`buildspec`]: `buildspec.yml`, CodeBuild 0.2 compatible (formats.md §2).
//! - [`template`]: `#{namespace.NAME}` references inside strings.
//! - [`duration`]: `90s`, `30m`, `2h`, `7d`.
//! - [`suggest`]: "did you mean …?" for mistyped keys and names.
//!
//! The parsers share one raw layer (`yaml`): serde-saphyr turns the text
//! into a tree of nodes that keep their line and column, and hand-written
//! decoders walk that tree so that one run reports every unknown key and
//! wrong type instead of stopping at the first, as a serde derive would.
//!
//! Invariant: this crate does no IO and reads no clock. Callers hand it text
//! and a file name to report errors against (and read included files
//! themselves).

pub mod buildspec;
pub mod document;
pub mod duration;
pub mod environment;
pub mod location;
mod names;
pub mod notification;
pub mod pipeline;
pub mod service;
pub mod suggest;
pub mod template;
pub mod trigger;
mod yaml;

pub use document::{Document, Project, assemble, parse_document};
pub use location::{Located, Location, SpecError};
