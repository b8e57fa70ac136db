//! Leadership among servers that share one database: a lease row per name
//! (`leader`), taken by one holder until it expires, with a **fencing
//! token** that grows by one with every new holder.
//!
//! Times are the database's clock, never a server's, so servers whose
//! clocks disagree still agree on who leads. A holder renews its lease well
//! before it expires; another may take it only once it has expired. A
//! store fenced with a token ([`Store::fence`]) checks in the transaction of
//! every engine write that the token is still the lease's: a leader that
//! was paused past its lease and resumed finds another's token and writes
//! nothing ([`StoreError::Fenced`]). A takeover updates the lease row under
//! the database's write lock; a fenced write reads it `FOR SHARE` in its
//! own transaction (SQLite: under the write lock), so a write is either
//! wholly before a takeover or refused.

use std::sync::atomic::Ordering;

use gantry_db::Backend;
use sqlx::Row as _;

use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS gantry_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    token      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#;

/// The row of the lease table that keeps the id of a database's servers
/// ([`Store::cluster_id`]).
const CLUSTER: &str = "cluster";

/// The name of the lease the server that runs the engine holds.
pub const LEADER: &str = "leader";

/// Who holds a lease, as the database says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub holder: String,
    pub token: i64,
    /// The database's clock, Unix milliseconds.
    pub expires_at: i64,
    /// Whether it had expired when read.
    pub expired: bool,
}

/// The database's clock in Unix milliseconds, as an SQL expression.
fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

impl Store {
    /// Takes the lease `name` for `holder` for `ttl_ms` if nobody holds it
    /// or its holder let it expire; returns the new fencing token, or
    /// `None` while another holds it.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let now = now_sql(self.db().backend());
        // The row locked (PostgreSQL; SQLite's write lock covers it): a
        // renewal between this read and the update would otherwise be
        // overwritten by a takeover decided on the expiry it extended.
        let lock = match self.db().backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let mut tx = self.db().begin_write().await?;
        let current = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT token, expires_at <= {now} FROM gantry_lease WHERE name = $1{lock}"
        )))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let token = match current {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO gantry_lease (name, holder, token, expires_at) \
                     VALUES ($1, $2, 1, {now} + $3)"
                )))
                .bind(name)
                .bind(holder)
                .bind(ttl_ms)
                .execute(&mut *tx)
                .await?;
                1
            }
            Some(row) if expired(&row)? => {
                let token = row.try_get::<i64, _>(0)? + 1;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE gantry_lease SET holder = $2, token = $3, expires_at = {now} + $4 \
                     WHERE name = $1"
                )))
                .bind(name)
                .bind(holder)
                .bind(token)
                .bind(ttl_ms)
                .execute(&mut *tx)
                .await?;
                token
            }
            Some(_) => return Ok(None),
        };
        tx.commit().await?;
        Ok(Some(token))
    }

    /// Extends the lease by `ttl_ms` from now if `holder` still holds it
    /// with `token` (nobody took it meanwhile); `false` when it is lost.
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        token: i64,
        ttl_ms: i64,
    ) -> Result<bool, StoreError> {
        // One statement, outside the write lock, so that a long write never
        // holds a renewal back: the row's own lock orders it against a
        // takeover, after which the token no longer matches.
        let now = now_sql(self.db().backend());
        let renewed = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE gantry_lease SET expires_at = {now} + $4 \
             WHERE name = $1 AND holder = $2 AND token = $3"
        )))
        .bind(name)
        .bind(holder)
        .bind(token)
        .bind(ttl_ms)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    /// Gives the lease up at once (a clean shutdown), so that another may
    /// take it without waiting for it to expire.
    pub async fn release_lease(
        &self,
        name: &str,
        holder: &str,
        token: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.db().begin_write().await?;
        sqlx::query(
            "UPDATE gantry_lease SET expires_at = 0 WHERE name = $1 AND holder = $2 AND token = $3",
        )
        .bind(name)
        .bind(holder)
        .bind(token)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The id every server of this database shares, made by the first
    /// that asks (`candidate`) and kept in the row `cluster` of the lease
    /// table (never a lease: nothing takes or renews it). The docker and
    /// swarm runtimes label their replicas with it, so whichever server
    /// leads adopts them.
    pub async fn cluster_id(&self, candidate: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO gantry_lease (name, holder, token, expires_at) VALUES ($1, $2, 0, 0) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(CLUSTER)
        .bind(candidate)
        .execute(self.pool())
        .await?;
        let row = sqlx::query("SELECT holder FROM gantry_lease WHERE name = $1")
            .bind(CLUSTER)
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Who holds the lease `name`, if anyone ever took it.
    pub async fn lease_holder(&self, name: &str) -> Result<Option<LeaseHolder>, StoreError> {
        let now = now_sql(self.db().backend());
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT holder, token, expires_at, expires_at <= {now} FROM gantry_lease \
             WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(LeaseHolder {
                holder: r.try_get(0)?,
                token: r.try_get(1)?,
                expires_at: r.try_get(2)?,
                expired: flag(&r, 3)?,
            })
        })
        .transpose()
    }

    /// From now on every engine write ([`Store::write_batch`]) checks that
    /// the leader's lease still carries `token`, and fails with
    /// [`StoreError::Fenced`] otherwise.
    pub fn fence(&self, token: i64) {
        self.fence.token.store(token, Ordering::SeqCst);
    }

    /// Whether a write was refused because another server leads now.
    pub fn deposed(&self) -> bool {
        self.fence.deposed.load(Ordering::SeqCst)
    }

    /// In a write's transaction: refuses it if this store is fenced and the
    /// leader's lease has another token.
    pub(crate) async fn check_fence(&self, tx: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        let mine = self.fence.token.load(Ordering::SeqCst);
        if mine == 0 {
            return Ok(());
        }
        // FOR SHARE: a takeover (which updates the row) waits for this
        // write to commit, or this check waits for the takeover and reads
        // its token. SQLite's write lock orders them already.
        let sql = match self.db().backend() {
            Backend::Sqlite => "SELECT token FROM gantry_lease WHERE name = $1",
            Backend::Postgres => "SELECT token FROM gantry_lease WHERE name = $1 FOR SHARE",
        };
        let current: Option<i64> = sqlx::query_scalar(sql)
            .bind(LEADER)
            .fetch_optional(&mut *tx)
            .await?;
        if current == Some(mine) {
            Ok(())
        } else {
            self.fence.deposed.store(true, Ordering::SeqCst);
            Err(StoreError::Fenced {
                mine,
                current: current.unwrap_or(0),
            })
        }
    }
}

/// A boolean comparison's result: PostgreSQL answers a bool, SQLite an
/// integer.
fn flag(row: &sqlx::any::AnyRow, index: usize) -> Result<bool, StoreError> {
    Ok(match row.try_get::<bool, _>(index) {
        Ok(b) => b,
        Err(_) => row.try_get::<i64, _>(index)? != 0,
    })
}

fn expired(row: &sqlx::any::AnyRow) -> Result<bool, StoreError> {
    flag(row, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NewEvent;

    async fn store(db: &gantry_db::Db) -> Store {
        Store::connect(db.clone()).await.unwrap()
    }

    fn event() -> NewEvent {
        NewEvent {
            pipeline: "p".into(),
            execution_id: "e".into(),
            at: 1,
            body: "{}".into(),
            states: Vec::new(),
        }
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_deposed_one_writes_nothing() {
        let db = gantry_testkit::database::database().await;
        let (a, b) = (store(&db).await, store(&db).await);
        assert_eq!(a.acquire_lease(LEADER, "a", 300).await.unwrap(), Some(1));
        assert_eq!(b.acquire_lease(LEADER, "b", 300).await.unwrap(), None);
        assert!(a.renew_lease(LEADER, "a", 1, 300).await.unwrap());
        a.fence(1);
        a.write_batch(&[], &[event()]).await.unwrap();
        // a stops renewing (paused): once its lease expires, b takes it
        // with the next token.
        let taken = loop {
            if let Some(token) = b.acquire_lease(LEADER, "b", 60_000).await.unwrap() {
                break token;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(taken, 2);
        let held = b.lease_holder(LEADER).await.unwrap().unwrap();
        assert_eq!(
            (held.holder.as_str(), held.token, held.expired),
            ("b", 2, false)
        );
        // a resumes: it can neither renew nor write.
        assert!(!a.renew_lease(LEADER, "a", 1, 300).await.unwrap());
        let before = a.events().await.unwrap().len();
        let refused = a.write_batch(&[], &[event()]).await.unwrap_err();
        assert!(
            matches!(
                refused,
                StoreError::Fenced {
                    mine: 1,
                    current: 2
                }
            ),
            "{refused}"
        );
        assert!(a.deposed());
        assert_eq!(a.events().await.unwrap().len(), before);
        b.fence(2);
        b.write_batch(&[], &[event()]).await.unwrap();
        assert_eq!(b.events().await.unwrap().len(), before + 1);
        // A clean shutdown gives it back at once.
        b.release_lease(LEADER, "b", 2).await.unwrap();
        assert_eq!(a.acquire_lease(LEADER, "a", 300).await.unwrap(), Some(3));
    }

    /// A leader frozen in the middle of a write keeps its transaction, and
    /// with it a lock on the lease row, open: PostgreSQL ends the idle
    /// session, so a standby still takes over (seen as a standby that never
    /// took over when the leader was SIGSTOPped mid-write).
    #[tokio::test]
    async fn a_leader_frozen_mid_write_does_not_keep_a_standby_out() {
        let db = gantry_testkit::database::database().await;
        if db.backend() != Backend::Postgres {
            println!("skipped: PostgreSQL only (set GANTRY_TEST_POSTGRES)");
            return;
        }
        let (a, b) = (store(&db).await, store(&db).await);
        assert_eq!(a.acquire_lease(LEADER, "a", 300).await.unwrap(), Some(1));
        let mut frozen = db.pool().begin().await.unwrap();
        sqlx::query("SELECT token FROM gantry_lease WHERE name = $1 FOR SHARE")
            .bind(LEADER)
            .fetch_all(&mut *frozen)
            .await
            .unwrap();
        let takeover = async {
            loop {
                if let Some(token) = b.acquire_lease(LEADER, "b", 60_000).await.unwrap() {
                    return token;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        let taken = tokio::time::timeout(std::time::Duration::from_secs(15), takeover)
            .await
            .expect("the standby never took over");
        assert_eq!(taken, 2);
        drop(frozen);
    }
}
