//! A consistent copy of a live database, for `gantry backup`: SQLite's
//! `VACUUM INTO` reads the database in one read transaction and writes a
//! compact, self-contained copy (no -wal), while the server that owns the
//! database goes on writing. The copy is made owner-only before SQLite
//! writes into it.

use std::path::Path;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

use crate::StoreError;

/// Writes a consistent snapshot of the database at `database` to `into`,
/// which must not exist. Never creates `database`.
pub async fn snapshot_database(database: &Path, into: &Path) -> Result<(), StoreError> {
    if into.exists() {
        return Err(StoreError::Permissions {
            path: into.display().to_string(),
            reason: "the snapshot's file exists already".into(),
        });
    }
    // An empty 0600 file first: VACUUM INTO writes into an empty file and
    // keeps its mode, so the copy is never readable by others.
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(into)
            .map_err(|e| StoreError::Permissions {
                path: into.display().to_string(),
                reason: e.to_string(),
            })?;
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(database)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await?;
    let target = into.to_str().ok_or_else(|| StoreError::Permissions {
        path: into.display().to_string(),
        reason: "the path is not UTF-8".into(),
    })?;
    sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await?;
    drop(conn);
    Ok(())
}
