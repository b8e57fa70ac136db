//! `gantry migrate-store`: copies a data dir's SQLite database into a new
//! PostgreSQL database, so that `gantry server --database URL` carries on
//! with everything it held — executions and their logs, registered
//! pipelines and trigger state, users, tokens and the audit log,
//! parameters (SecureStrings still encrypted under the data dir's master
//! key), deployments and the registry's metadata.
//!
//! No server may hold the data dir while it copies. The target must be a
//! database without gantry's tables: the copy makes them the way each
//! store makes its own, then fills them in one transaction, so a failed
//! copy leaves the target with empty tables and the source untouched.

use std::path::Path;

use gantry_db::{CopyReport, Db};
use gantry_store::{Store, StoreError};

use crate::error::ControlError;
use crate::server_info::DataDirLock;

/// Tables the stores write a row to when they open (a schema version);
/// the source's rows replace them.
const SEEDED: &[&str] = &["param_meta"];

/// Copies the store of `data_dir` into the PostgreSQL database at `url`.
pub async fn migrate_store(data_dir: &Path, url: &str) -> Result<CopyReport, ControlError> {
    let file = data_dir.join("gantry.db");
    if !file.is_file() {
        return Err(ControlError::Options(format!(
            "{} holds no store (no gantry.db)",
            data_dir.display()
        )));
    }
    let _lock = DataDirLock::acquire(data_dir)?;
    let source = Db::open_sqlite(&file).await.map_err(StoreError::from)?;
    let target = Db::connect(url).await.map_err(StoreError::from)?;
    let existing = target.has_table("events").await.map_err(StoreError::from)?;
    if existing {
        return Err(ControlError::Options(format!(
            "{} already holds a gantry store: migrate into a new, empty database",
            gantry_db::redact(url)
        )));
    }
    // Every store makes its tables as it does when a server opens it.
    let store = Store::connect(target.clone()).await?;
    // The parameter store's tables need no key to be made, and values are
    // copied as stored: a key of the moment (never kept) serves, and the
    // data dir's key is neither read nor created here.
    gantry_params::ParamStore::open(target.clone(), gantry_params::MasterKey::generate()?).await?;
    gantry_auth::Auth::open(target.clone()).await?;
    gantry_deploy::create_tables(&store).await?;
    gantry_registry::create_tables(target.clone())
        .await
        .map_err(|e| ControlError::Internal(format!("registry tables: {e}")))?;
    let report = gantry_db::copy_database(&source, &target, SEEDED)
        .await
        .map_err(StoreError::from)?;
    source.pool().close().await;
    target.pool().close().await;
    Ok(report)
}
