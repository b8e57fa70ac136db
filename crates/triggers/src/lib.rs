//! What starts a pipeline by itself, as pure functions: the server brings
//! the IO (mirrors, HTTP, the store, the clock) and asks this crate what to
//! do (formats.md §7).
//!
//! The concepts:
//!
//! - A **trigger** is an item of a pipeline's `triggers` (validated by
//!   `gantry_spec::trigger`): `git` on a source action's repository,
//!   `schedule`, or `pipeline`.
//! - A **delivery** is one webhook request. [`webhook::detect_provider`]
//!   tells the forge from its event header; [`webhook::receive`] checks the
//!   signature over the raw body in constant time, then reads GitHub's,
//!   GitLab's, Gitea's (Forgejo's) or gantry's generic JSON into one
//!   [`webhook::WebhookEvent`]: a push (ref, before and after commits,
//!   changed files, pusher), a pull request (number, opened / updated /
//!   closed, head and base), a ping, or an event that starts nothing.
//! - A **filter** decides whether a push or pull request starts the
//!   pipeline ([`filter::GitTriggerMatcher`]): branch and tag globs, and
//!   changed-file globs, with excludes winning. When the forge did not list
//!   the changed files, the verdict says so and the caller works them out.
//! - A **poll** finds the same pushes without a webhook; [`poll`] says how
//!   long to wait between polls: the interval with jitter, backing off
//!   while the repository is unreachable.
//! - A **schedule** fires at the instants of a cron expression in an IANA
//!   time zone, daylight saving included ([`schedule::Schedule`]).
//! - A **dedup key** ([`dedup::DedupKey`]) makes a commit start a pipeline
//!   once, however many times and ways it is announced.
//!
//! Invariant: no IO and no clock. Time comes in as an argument (a
//! `jiff::Timestamp`), randomness as a number, request bodies and headers
//! as values. Errors ([`TriggerError`]) carry stable codes and HTTP
//! statuses, and never a secret.

pub mod dedup;
mod error;
pub mod filter;
pub mod git;
pub mod poll;
pub mod schedule;
pub mod signature;
pub mod webhook;

pub use dedup::DedupKey;
pub use error::TriggerError;
pub use filter::{GitTriggerMatcher, PullRequestMatcher, PushMatcher, Skip, Verdict};
pub use git::{CommitId, GitRef, RepositoryAddress};
pub use schedule::Schedule;
pub use webhook::{Delivery, MAX_BODY_BYTES, PullRequest, Push, Repository, WebhookEvent};
