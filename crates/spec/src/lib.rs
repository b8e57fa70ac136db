//! File formats of gantry, parsed in two phases: raw YAML (with locations) →
//! validated types. Every problem found is reported, each as
//! `FILE:LINE:COL: message`, and nothing downstream ever sees an unvalidated
//! string: names are newtypes built only by the validators here.
//!
//! - [`pipeline`]: `gantry.yaml`, the pipeline file (formats.md §1).
//! - [`buildspec`]: `buildspec.yml`, CodeBuild 0.2 compatible (formats.md §2).
//! - [`template`]: `#{namespace.NAME}` references inside strings.
//! - [`duration`]: `90s`, `30m`, `2h`, `7d`.
//!
//! Both parsers share one raw layer (`yaml`): serde-saphyr turns the text
//! into a tree of nodes that keep their line and column, and hand-written
//! decoders walk that tree so that one run reports every unknown key and
//! wrong type instead of stopping at the first, as a serde derive would.
//!
//! Invariant: this crate does no IO and reads no clock. Callers hand it text
//! and a file name to report errors against.

pub mod buildspec;
pub mod duration;
pub mod location;
pub mod pipeline;
pub mod template;
mod yaml;

pub use location::{Location, SpecError};
