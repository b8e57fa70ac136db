//! The SQL database gantry's stores keep their tables in: SQLite in the
//! data dir (the embedded default) or a shared PostgreSQL server, reached
//! through sqlx's `Any` driver so that every store writes each query once.
//!
//! Queries are written in the dialect both engines accept:
//!
//! - `$N` placeholders (sqlx's SQLite driver numbers them as PostgreSQL
//!   does), built for multi-row statements with [`values`];
//! - `INSERT … ON CONFLICT (…) DO UPDATE/NOTHING` and `RETURNING`, never
//!   SQLite's `INSERT OR …` or `last_insert_rowid()`;
//! - only the types the `Any` driver carries: `i64`, `f64`, `bool`,
//!   `String` and `Vec<u8>` (aggregates that PostgreSQL widens to `numeric`,
//!   such as `SUM`, are cast back to `BIGINT`).
//!
//! Only the schema differs. Each store writes it for SQLite, and
//! [`Db::apply_schema`] translates it for PostgreSQL ([`postgres_schema`]):
//! 64-bit integers, `bytea`, identity keys, and the byte-order collation
//! (`"C"`) SQLite compares text with, so listings sort the same on both.
//!
//! Writers that must be alone (SQLite's `BEGIN IMMEDIATE`) begin with
//! [`Db::begin_write`]; on PostgreSQL it takes a transaction-scoped
//! advisory lock, the same one for every store, so writes serialize as they
//! do on SQLite.
//!
//! [`copy_database`] copies an SQLite database into an empty PostgreSQL one
//! (`gantry migrate-store`).

mod copy;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use copy::{CopyReport, copy_database};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor as _, Transaction};

/// The advisory lock every serialized write takes on PostgreSQL
/// ("gantry" in ASCII).
const WRITE_LOCK: i64 = 0x6761_6e74_7279;

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// The URL names no engine gantry speaks, or cannot be used.
    #[error("{0}")]
    Url(String),
    /// A copy between databases cannot be made (`gantry migrate-store`).
    #[error("{0}")]
    Copy(String),
    /// The server could not be reached or refused the login (the URL is
    /// shown without its password).
    #[error("cannot connect to the database at {url}: {reason}")]
    Connect { url: String, reason: String },
}

/// A pool of connections to one database, which engine it is, and whether
/// it was reachable at the last look.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    available: Arc<AtomicBool>,
}

impl Db {
    /// Opens (creating if needed) the SQLite database file at `path`: WAL
    /// journal, NORMAL synchronous (a killed process loses nothing), foreign
    /// keys on, and a 10 s busy timeout.
    pub async fn open_sqlite(path: &Path) -> Result<Db, DbError> {
        let Some(text) = path.to_str() else {
            return Err(DbError::Url(format!(
                "{} is not UTF-8; the database path must be",
                path.display()
            )));
        };
        let url = format!("sqlite://{}?mode=rwc", percent_encode(text));
        let pool = Self::sqlite_pool(&url, 4, true).await?;
        Ok(Db::new(pool, Backend::Sqlite))
    }

    /// A fresh in-memory SQLite database (tests). One connection: every
    /// connection to `:memory:` is its own database.
    pub async fn sqlite_in_memory() -> Result<Db, DbError> {
        let pool = Self::sqlite_pool("sqlite::memory:", 1, false).await?;
        Ok(Db::new(pool, Backend::Sqlite))
    }

    async fn sqlite_pool(url: &str, connections: u32, wal: bool) -> Result<AnyPool, DbError> {
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions = url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    let journal = if wal {
                        "PRAGMA journal_mode = WAL;"
                    } else {
                        ""
                    };
                    conn.execute(sqlx::AssertSqlSafe(format!(
                        "{journal} PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                         PRAGMA busy_timeout = 10000;"
                    )))
                    .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(pool)
    }

    /// Connects to a database by URL: `postgres://…` (or `postgresql://`),
    /// or `sqlite://PATH`. A PostgreSQL server that cannot be reached or
    /// refuses the login is an error naming the URL without its password.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        Self::connect_with(url, Duration::from_secs(10)).await
    }

    /// [`Db::connect`], waiting up to `acquire` for a PostgreSQL connection
    /// (tests on a paused clock, where time runs fast, wait for hours).
    pub async fn connect_with(url: &str, acquire: Duration) -> Result<Db, DbError> {
        if url.starts_with("sqlite:") {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            return Self::open_sqlite(Path::new(path)).await;
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(DbError::Url(format!(
                "{}: a database URL starts with postgres:// or sqlite://",
                redact(url)
            )));
        }
        sqlx::any::install_default_drivers();
        let options: AnyConnectOptions =
            url.parse().map_err(|e: sqlx::Error| DbError::Connect {
                url: redact(url),
                reason: e.to_string(),
            })?;
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(acquire)
            // gantry's transactions are a few statements sent back to back.
            // One left open — a server frozen (SIGSTOP, a VM paused) in the
            // middle of a write — would hold its locks, the lease row's
            // among them, and keep a standby from taking over: PostgreSQL
            // ends such a session after 2 s idle, releasing them.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET idle_in_transaction_session_timeout = '2s'")
                        .await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| DbError::Connect {
                url: redact(url),
                reason: hide_password(&e.to_string(), url),
            })?;
        Ok(Db::new(pool, Backend::Postgres))
    }

    fn new(pool: AnyPool, backend: Backend) -> Db {
        Db {
            pool,
            backend,
            available: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Whether the database answered at the last look: `false` from the
    /// moment a write found it unreachable ([`Db::set_available`]) until a
    /// later write or [`Db::probe`] reaches it.
    pub fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::Relaxed);
    }

    /// Asks the database a trivial question (within `limit`) and records
    /// whether it answered.
    pub async fn probe(&self, limit: Duration) -> bool {
        let answered = tokio::time::timeout(limit, sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .is_ok_and(|r| r.is_ok());
        self.set_available(answered);
        answered
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that no other serialized write runs beside:
    /// `BEGIN IMMEDIATE` on SQLite, a transaction-scoped advisory lock on
    /// PostgreSQL.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }

    /// Begins a read-only transaction whose statements all see one
    /// snapshot: SQLite's deferred transaction does (from its first read);
    /// PostgreSQL's default READ COMMITTED takes a new snapshot for every
    /// statement, so it asks for REPEATABLE READ.
    pub async fn begin_snapshot(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin().await,
            Backend::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
        }
    }

    /// Creates a store's tables and indexes: `ddl` is written for SQLite
    /// (`CREATE … IF NOT EXISTS`) and translated for PostgreSQL, where it
    /// runs under the write lock so that servers starting together do not
    /// race to create the same table.
    pub async fn apply_schema(&self, ddl: &str) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                self.pool
                    .execute(sqlx::AssertSqlSafe(ddl.to_string()))
                    .await?;
            }
            Backend::Postgres => {
                let mut tx = self.begin_write().await?;
                (&mut *tx)
                    .execute(sqlx::AssertSqlSafe(postgres_schema(ddl)))
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Whether the database has a table of this name (in PostgreSQL's
    /// current schema).
    pub async fn has_table(&self, name: &str) -> Result<bool, sqlx::Error> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        };
        let found: i64 = sqlx::query_scalar(sql)
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(found > 0)
    }

    /// The schema version of the whole database (SQLite's `user_version`;
    /// a one-row table on PostgreSQL); 0 for a new database.
    pub async fn user_version(&self) -> Result<i64, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::query_scalar("PRAGMA user_version")
                    .fetch_one(&self.pool)
                    .await
            }
            Backend::Postgres => {
                // Under the write lock: servers starting together would
                // otherwise race to create the table.
                let mut tx = self.begin_write().await?;
                (&mut *tx)
                    .execute(
                        "CREATE TABLE IF NOT EXISTS gantry_user_version \
                         (one BIGINT PRIMARY KEY CHECK (one = 1), version BIGINT NOT NULL)",
                    )
                    .await?;
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM gantry_user_version")
                        .fetch_optional(&mut *tx)
                        .await?;
                tx.commit().await?;
                Ok(found.unwrap_or(0))
            }
        }
    }

    pub async fn set_user_version(&self, version: i64) -> Result<(), sqlx::Error> {
        match self.backend {
            Backend::Sqlite => {
                self.pool
                    .execute(sqlx::AssertSqlSafe(format!(
                        "PRAGMA user_version = {version}"
                    )))
                    .await?;
            }
            Backend::Postgres => {
                sqlx::query(
                    "INSERT INTO gantry_user_version (one, version) VALUES (1, $1) \
                     ON CONFLICT (one) DO UPDATE SET version = excluded.version",
                )
                .bind(version)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}

/// Whether an error says the database could not be reached (a connection
/// refused or lost, a pool that timed out waiting for one, a server
/// shutting down or starting up) rather than that a statement was wrong.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01-57P03 (admin
        // shutdown, crash shutdown, cannot connect now).
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Whether `error` or any error it wraps is an [`is_unavailable`] one.
pub fn unavailable_in(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<sqlx::Error>().is_some_and(is_unavailable) {
            return true;
        }
        next = e.source();
    }
    false
}

/// `(($1, $2), ($3, $4))`-style rows for a multi-row statement: `rows`
/// groups of `columns` placeholders, numbered from `first`.
pub fn values(first: usize, rows: usize, columns: usize) -> String {
    let mut out = String::new();
    let mut n = first;
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            out.push('$');
            out.push_str(&n.to_string());
            n += 1;
        }
        out.push(')');
    }
    out
}

/// Translates a schema written for SQLite into PostgreSQL's dialect:
/// `PRAGMA` statements are dropped, `INTEGER PRIMARY KEY AUTOINCREMENT`
/// becomes an identity column, `INTEGER` `BIGINT`, `REAL` `DOUBLE
/// PRECISION`, `BLOB` `BYTEA`, `TEXT` compares bytes (`COLLATE "C"`), and
/// SQLite's `STRICT` tables are plain tables (PostgreSQL's are strict).
pub fn postgres_schema(ddl: &str) -> String {
    let statements = ddl
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty() && !s.to_ascii_uppercase().starts_with("PRAGMA"));
    let mut out = String::new();
    for statement in statements {
        let statement = statement.replace(
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
        );
        let mut words = String::new();
        let mut rest = statement.as_str();
        while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
            words.push_str(&rest[..start]);
            rest = &rest[start..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let word = &rest[..end];
            words.push_str(match word {
                "INTEGER" => "BIGINT",
                "REAL" => "DOUBLE PRECISION",
                "BLOB" => "BYTEA",
                "TEXT" => "TEXT COLLATE \"C\"",
                "STRICT" => "",
                other => other,
            });
            rest = &rest[end..];
        }
        words.push_str(rest);
        out.push_str(&words);
        out.push_str(";\n");
    }
    out
}

/// The URL with its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let secret = password(url);
    if secret.is_empty() {
        url.to_string()
    } else {
        url.replacen(&format!(":{secret}@"), ":***@", 1)
    }
}

/// `text` with the URL's password, if it has one, replaced by `***`.
fn hide_password(text: &str, url: &str) -> String {
    match password(url) {
        secret if secret.is_empty() => text.to_string(),
        secret => text.replace(&secret, "***"),
    }
}

/// The password part of `scheme://user:password@host…`, or "".
fn password(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return String::new();
    };
    userinfo
        .split_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default()
}

/// Percent-encodes every byte of a path outside the unreserved set and `/`,
/// for a `sqlite://` URL (sqlx decodes it, so `?` and `#` stay in the name).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_translated_word_by_word() {
        let ddl = "CREATE TABLE IF NOT EXISTS t (\n  seq INTEGER PRIMARY KEY AUTOINCREMENT,\n  \
                   name TEXT NOT NULL, n INTEGER, blob BLOB, ratio REAL, integers TEXT\n);\n\
                   PRAGMA user_version = 1;\nCREATE INDEX IF NOT EXISTS t_name ON t (name)";
        assert_eq!(
            postgres_schema(ddl),
            "CREATE TABLE IF NOT EXISTS t (\n  seq BIGINT GENERATED BY DEFAULT AS IDENTITY \
             PRIMARY KEY,\n  name TEXT COLLATE \"C\" NOT NULL, n BIGINT, blob BYTEA, ratio DOUBLE \
             PRECISION, integers TEXT COLLATE \"C\"\n);\nCREATE INDEX IF NOT EXISTS t_name ON t \
             (name);\n"
        );
    }

    #[test]
    fn placeholders_are_numbered_row_by_row() {
        assert_eq!(values(1, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(3, 1, 1), "($3)");
    }

    #[test]
    fn a_password_never_leaves_in_a_url() {
        assert_eq!(
            redact("postgres://gantry:s3cr@t@db:5432/gantry?sslmode=disable"),
            "postgres://gantry:***@db:5432/gantry?sslmode=disable"
        );
        assert_eq!(redact("postgres://db/gantry"), "postgres://db/gantry");
        assert_eq!(hide_password("refused", "postgres://db/gantry"), "refused");
        assert_eq!(
            hide_password("bad login hunter2", "postgres://u:hunter2@db/g"),
            "bad login ***"
        );
        assert_eq!(percent_encode("/tmp/a b?c"), "/tmp/a%20b%3Fc");
    }

    /// Against the test server of scripts/postgres (GANTRY_TEST_POSTGRES),
    /// which also serves TLS with a self-signed certificate: verified with
    /// it as the root, refused without.
    #[tokio::test]
    async fn postgres_over_tls_verifies_the_servers_certificate() {
        let Some(url) = std::env::var("GANTRY_TEST_POSTGRES")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            println!("skipped: set GANTRY_TEST_POSTGRES (scripts/postgres) to run it");
            return;
        };
        let dir = std::env::var("GANTRY_TEST_POSTGRES_DIR")
            .unwrap_or_else(|_| "/tmp/gantry-test-postgres".to_string());
        let root = format!("{dir}/ca.crt");
        let verified = format!("{url}?sslmode=verify-full&sslrootcert={root}");
        let db = Db::connect(&verified).await.unwrap();
        let ssl: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert!(ssl, "the connection is not encrypted");
        let error = Db::connect(&format!("{url}?sslmode=verify-full"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, DbError::Connect { .. }),
            "an unknown certificate was accepted: {error}"
        );
    }

    #[tokio::test]
    async fn sqlite_takes_numbered_placeholders_through_any() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_sqlite(&dir.path().join("a b?.db")).await.unwrap();
        db.apply_schema("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
            .await
            .unwrap();
        let mut tx = db.begin_write().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO t (k, n) VALUES {}",
            values(1, 2, 2)
        )))
        .bind("a")
        .bind(1_i64)
        .bind("b")
        .bind(2_i64)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT n FROM t WHERE k = $2 AND n > $1")
            .bind(1_i64)
            .bind("b")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(db.user_version().await.unwrap(), 0);
        db.set_user_version(3).await.unwrap();
        assert_eq!(db.user_version().await.unwrap(), 3);
    }
}
