//! gantry's parameter store: hierarchical, versioned, labelled parameters with
//! SecureStrings encrypted at rest, behaving like AWS SSM Parameter Store.
//!
//! # Concepts
//!
//! - A **parameter** has a [`ParamName`] such as `/shop/production/SERVICE_DNS`: `/`
//!   separates up to 15 levels, characters are `a-zA-Z0-9_.-`, names are
//!   case-sensitive and can't start with `aws` or `ssm`. `a` and `/a` name the same
//!   parameter: the canonical form always has the leading `/`.
//! - Each **put** adds a **version**: 1 at creation, then +1, with no gaps. A version
//!   records its [`ParamType`] (`String`, `StringList`, `SecureString`), its value (at
//!   most 8 KiB), a description, when it was written (from a [`Clock`]) and by whom.
//!   The last 100 versions are kept.
//! - A **label** (`prod`, `v1.2`) points at one version of a parameter; a label is
//!   unique per parameter, so attaching it to another version moves it. A version
//!   carries at most 10 labels.
//! - A [`Selector`] picks a version: `name` (latest), `name:3` or `name:label`. A
//!   version or label that does not exist is an error, never a fallback.
//! - A [`ParamPath`] lists a subtree, one level or recursively.
//!
//! # Invariants
//!
//! - The database never holds the plaintext of a SecureString. Each version is sealed
//!   with XChaCha20-Poly1305 under the [`MasterKey`], with a random nonce and the
//!   parameter's name and version as associated data, so a ciphertext copied to
//!   another row does not decrypt. Each ciphertext records the [`KeyId`] that sealed it,
//!   and a wrong key is reported as such.
//! - Plaintext leaves the crate only as [`SecretValue`], whose `Debug` and `Display`
//!   print `***`.
//! - Writes run in serialized transactions (`gantry_db::Db::begin_write`: SQLite's
//!   `BEGIN IMMEDIATE`, or PostgreSQL's advisory lock), so concurrent puts of one name,
//!   from any number of servers, get consecutive versions, each recorded once; a failed
//!   operation changes nothing. Multi-selector reads see one snapshot.
//! - The store owns only tables prefixed `param_` in a database (SQLite or PostgreSQL)
//!   it shares with the rest of the server, and creates them itself in
//!   [`ParamStore::open`].
//!
//! # Use
//!
//! ```no_run
//! # async fn demo(db: gantry_db::Db, data_dir: &std::path::Path)
//! #     -> Result<(), gantry_params::ParamError> {
//! use gantry_params::*;
//! let store = ParamStore::open(db, MasterKey::load_or_create(data_dir)?).await?;
//! let name = ParamName::parse("/shop/staging/DB_PASSWORD")?;
//! store
//!     .put(PutParameter::new(&name, "hunter2", ParamType::SecureString, "alice"))
//!     .await?;
//! let selector = Selector::parse(&expand_environment("/shop/${environment}/DB_PASSWORD", "staging"))?;
//! let env = store.resolve(&[("DB_PASSWORD", selector)]).await?;
//! assert_eq!(env[0].value.expose(), "hunter2");
//! # Ok(()) }
//! ```

mod clock;
mod crypto;
mod error;
mod name;
mod resolve;
mod secret;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use crypto::{KeyId, MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKey};
pub use error::{LabelProblem, NameProblem, ParamError};
pub use name::{
    Label, MAX_DEPTH, MAX_LABEL_LEN, MAX_NAME_LEN, ParamName, ParamPath, ParamType, Pick, Selector,
};
pub use resolve::{ResolvedParam, expand_environment};
pub use secret::SecretValue;
pub use store::{
    GetMany, LabelOutcome, MAX_DESCRIPTION_LEN, MAX_HISTORY, MAX_LABELS_PER_VERSION,
    MAX_VALUE_BYTES, ParamStore, ParamValue, Parameter, PutParameter, UnlabelOutcome,
};
