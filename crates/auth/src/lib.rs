//! gantry's trust boundary: who is calling, what they may do, and a record
//! of what they did.
//!
//! # Concepts
//!
//! - A **user** has a name, an optional e-mail (matched against commit
//!   authors by approval policies) and **grants**.
//! - A **grant** is a [`Role`] with an optional **scope**: `operator` may
//!   operate everything, `operator:env=staging` only the `staging`
//!   environment, `approver:pipeline=shop` only the `shop` pipeline's
//!   approvals, `secrets:path=/shop/staging` may decrypt SecureStrings under
//!   that path. Scopes limit what a grant may *change or reveal*; every grant
//!   may read executions, logs and environments.
//! - A **token** is 256 random bits shown once (`gantry_<64 hex>`); only its
//!   SHA-256 is stored. Tokens may expire and can be revoked; removing a user
//!   revokes theirs. **Ephemeral tokens** (a build's registry token, the
//!   server's own) live in memory only and die with the server.
//! - An [`Identity`] is what authenticating a token yields: the user's name,
//!   e-mail and grants. [`Identity::allows`] answers every authorization
//!   question against a [`Permission`] and a [`Target`].
//! - The **audit log** is append-only: who, when, from where, what, outcome.
//!   It never holds a secret value or a token.
//! - An [`ApprovalPolicy`] says who may decide an approval and how many
//!   distinct approvals it needs; [`approval`] evaluates it, purely.
//!
//! # Invariants
//!
//! - A token's value is never stored, logged or returned after creation.
//! - Authentication reads memory only (the tables are cached and every
//!   change goes through [`Auth`]), so checking a token costs microseconds.
//! - Nothing here reads a clock: callers pass `now` in milliseconds.

pub mod approval;
mod audit;
mod error;
mod grant;
mod store;
mod token;

pub use approval::{ApprovalPolicy, ChangeAuthors, PolicyRefusal, Tally, Vote};
pub use audit::{AuditQuery, AuditRecord};
pub use error::AuthError;
pub use grant::{Grant, Identity, Permission, Role, Target};
pub use store::{ADMIN_USER, Audience, Auth, NewToken, TokenInfo, User};
pub use token::{Secret, TOKEN_PREFIX};
