//! The database: event log, execution state, logs, approvals; SQLite in
//! the data dir or a shared PostgreSQL ([`gantry_db`]).

use std::path::Path;

use gantry_db::{Db, values};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Connect(#[from] gantry_db::DbError),
    #[error("cannot make {path} private: {reason}")]
    Permissions { path: String, reason: String },
    #[error("the database in {path} is newer than this gantry (schema {found}, known {known})")]
    SchemaTooNew {
        path: String,
        found: i64,
        known: i64,
    },
    /// A batch of writes failed (the cause is logged once, where it
    /// happened; each waiter of the batch gets this).
    #[error("writing to the database failed: {0}")]
    WriteFailed(String),
    /// This server's fencing token is no longer the leader's lease's:
    /// another server leads now, and this one may not write.
    #[error(
        "another server leads now (lease token {current}, this server's {mine}): \
         this server writes nothing more"
    )]
    Fenced { mine: i64, current: i64 },
    /// The task that writes logs and events has stopped (the server is
    /// shutting down).
    #[error("the store's writer has stopped")]
    Closed,
}

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline     TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    at           INTEGER NOT NULL,
    body         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_pipeline ON events (pipeline, seq);

CREATE TABLE IF NOT EXISTS executions (
    id          TEXT PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    state       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_pipeline ON executions (pipeline, started_at);

CREATE TABLE IF NOT EXISTS definitions (
    execution_id TEXT PRIMARY KEY,
    definition   TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS logs (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT NOT NULL,
    stage        TEXT NOT NULL,
    action       TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    line         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_execution ON logs (execution_id, seq);

CREATE TABLE IF NOT EXISTS action_details (
    execution_id TEXT NOT NULL,
    stage        TEXT NOT NULL,
    action       TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    body         TEXT NOT NULL,
    PRIMARY KEY (execution_id, stage, action, attempt, kind)
);

CREATE TABLE IF NOT EXISTS approval_votes (
    execution_id TEXT NOT NULL,
    stage        TEXT NOT NULL,
    action       TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    by           TEXT NOT NULL,
    decision     TEXT NOT NULL,
    at           INTEGER NOT NULL,
    comment      TEXT,
    binding      TEXT NOT NULL,
    PRIMARY KEY (execution_id, stage, action, attempt, by)
);

-- The log writer's last batch ([`Store::write_named_batch`]): its name
-- and the numbers its events got, so a try whose COMMIT landed but whose
-- answer was lost is not written twice.
CREATE TABLE IF NOT EXISTS last_batch (
    writer TEXT PRIMARY KEY,
    batch  TEXT NOT NULL,
    seqs   TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS approvals (
    execution_id TEXT NOT NULL,
    stage        TEXT NOT NULL,
    action       TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    decision     TEXT NOT NULL,
    by           TEXT NOT NULL,
    at           INTEGER NOT NULL,
    comment      TEXT,
    PRIMARY KEY (execution_id, stage, action, attempt)
);
"#;

/// The name of one batch of [`Store::write_named_batch`]: the same on
/// every try of that batch, never used for another.
#[derive(Debug, Clone, Copy)]
pub struct BatchName<'a> {
    /// Who writes (one row is kept per writer).
    pub writer: &'a str,
    /// The batch: unique to it.
    pub name: &'a str,
    /// An earlier try of this batch failed: it may have landed.
    pub retry: bool,
}

/// The event numbers a landed batch recorded (`1,2,3`; empty for none).
fn parse_seqs(seqs: &str) -> Result<Vec<i64>, StoreError> {
    seqs.split(',')
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse().map_err(|_| {
                StoreError::WriteFailed(format!("last_batch holds `{seqs}`, not event numbers"))
            })
        })
        .collect()
}

/// One entry of the event log.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub seq: i64,
    pub pipeline: String,
    pub execution_id: String,
    pub at: i64,
    pub body: String,
}

/// The queryable state of one execution.
#[derive(Debug, Clone)]
pub struct ExecutionRow {
    pub id: String,
    pub pipeline: String,
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// The execution's state as JSON.
    pub state: String,
}

/// An event to append ([`Store::write_batch`]), with the execution rows
/// it changed.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub pipeline: String,
    pub execution_id: String,
    /// Unix milliseconds.
    pub at: i64,
    /// The event as JSON.
    pub body: String,
    pub states: Vec<ExecutionRow>,
}

/// Rows one multi-row INSERT carries: 6 values each stays far below
/// SQLite's limit of 32,766 bound values per statement.
const ROWS_PER_STATEMENT: usize = 500;

/// One line of an action's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub seq: i64,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub attempt: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub line: String,
}

/// A detail of one action attempt, as JSON under a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionDetail {
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub attempt: i64,
    pub kind: String,
    pub body: String,
}

/// Who approved or rejected an approval action, when, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalRecord {
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub attempt: i64,
    /// `Approved` or `Rejected`.
    pub decision: String,
    pub by: String,
    pub at: i64,
    pub comment: Option<String>,
}

/// One person's decision on an approval, with what they were shown
/// (`binding`: the commits, image digests and parameter versions, as JSON).
/// An approval that needs N approvals has up to N of these per attempt.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApprovalVote {
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub attempt: i64,
    pub by: String,
    /// `Approved` or `Rejected`.
    pub decision: String,
    pub at: i64,
    pub comment: Option<String>,
    pub binding: String,
}

/// The database of one data dir.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    pub(crate) fence: std::sync::Arc<Fence>,
}

/// The fencing token a leading server writes under (0: none), and whether
/// a write found it outdated.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    pub(crate) token: std::sync::atomic::AtomicI64,
    pub(crate) deposed: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens (creating if needed) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        // The database holds logs and the audit trail: owner only. SQLite
        // gives its -wal and -shm files the database file's mode, so making
        // the file 0600 before the first connection covers all three.
        private_file(path).map_err(|e| StoreError::Permissions {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        // WAL; NORMAL synchronous loses at most the last transactions on
        // power loss, never consistency; a killed process loses nothing.
        let db = Db::open_sqlite(path).await?;
        Store::with_db(db, &path.display().to_string()).await
    }

    /// An in-memory database, for tests.
    pub async fn in_memory() -> Result<Store, StoreError> {
        Store::with_db(Db::sqlite_in_memory().await?, ":memory:").await
    }

    /// The store in a database already connected to (PostgreSQL, or an
    /// SQLite file opened by [`Db::open_sqlite`]), its tables created if
    /// needed.
    pub async fn connect(db: Db) -> Result<Store, StoreError> {
        Store::with_db(db, "the database").await
    }

    async fn with_db(db: Db, shown: &str) -> Result<Store, StoreError> {
        let store = Store {
            db,
            fence: std::sync::Arc::default(),
        };
        store.migrate(shown).await?;
        Ok(store)
    }

    /// The database, for crates that keep their own tables in it (the
    /// parameter store, users, the registry, deployments).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The connection pool.
    pub fn pool(&self) -> &AnyPool {
        self.db.pool()
    }

    async fn migrate(&self, shown: &str) -> Result<(), StoreError> {
        let found = self.db.user_version().await?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                path: shown.to_string(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        self.db.apply_schema(SCHEMA).await?;
        self.db.apply_schema(crate::triggers::SCHEMA).await?;
        self.db.apply_schema(crate::lease::SCHEMA).await?;
        self.db.set_user_version(SCHEMA_VERSION).await?;
        Ok(())
    }

    /// Appends an event and writes the state it produced, in one transaction.
    /// Returns the event's sequence number.
    pub async fn record_event(
        &self,
        pipeline: &str,
        execution_id: &str,
        at: i64,
        body: &str,
        states: &[ExecutionRow],
    ) -> Result<i64, StoreError> {
        let event = NewEvent {
            pipeline: pipeline.to_string(),
            execution_id: execution_id.to_string(),
            at,
            body: body.to_string(),
            states: states.to_vec(),
        };
        let seqs = self.write_batch(&[], std::slice::from_ref(&event)).await?;
        Ok(seqs[0])
    }

    /// Writes log lines, then events with the states they produced, in
    /// one transaction, and returns the events' sequence numbers. The
    /// control plane commits each engine event together with the log
    /// lines its action wrote before it: one transaction, not two, and
    /// multi-row statements, because every statement is a round trip to
    /// SQLite's thread (issue 17's per-action overhead).
    pub async fn write_batch(
        &self,
        lines: &[LogLine],
        events: &[NewEvent],
    ) -> Result<Vec<i64>, StoreError> {
        self.write_batch_as(None, lines, events).await
    }

    /// [`Store::write_batch`], for a writer that tries a batch again when
    /// the database could not be reached: the batch's name is recorded in
    /// its transaction, and a try marked `retry` first looks for it. When
    /// the earlier try's COMMIT landed but its answer was lost (the
    /// connection dropped after COMMIT went out), the retry writes nothing
    /// and answers the numbers the events got then. Only the last batch is
    /// remembered, which is enough for the one writer that retries only
    /// its last batch.
    pub async fn write_named_batch(
        &self,
        batch: &BatchName<'_>,
        lines: &[LogLine],
        events: &[NewEvent],
    ) -> Result<Vec<i64>, StoreError> {
        self.write_batch_as(Some(batch), lines, events).await
    }

    async fn write_batch_as(
        &self,
        batch: Option<&BatchName<'_>>,
        lines: &[LogLine],
        events: &[NewEvent],
    ) -> Result<Vec<i64>, StoreError> {
        if lines.is_empty() && events.is_empty() {
            return Ok(Vec::new());
        }
        // The log writer is the only writer of events (the leader's, when
        // several servers share the database). On SQLite it takes the write
        // lock; on PostgreSQL the fence check's row lock is what orders a
        // write against a takeover, so no database-wide lock is needed.
        let mut tx = match self.db.backend() {
            gantry_db::Backend::Sqlite => self.db.begin_write().await?,
            gantry_db::Backend::Postgres => self.db.pool().begin().await?,
        };
        self.check_fence(&mut tx).await?;
        if let Some(batch) = batch.filter(|b| b.retry) {
            let written: Option<(String, String)> =
                sqlx::query("SELECT batch, seqs FROM last_batch WHERE writer = $1")
                    .bind(batch.writer)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| (r.get(0), r.get(1)));
            if let Some((name, seqs)) = written
                && name == batch.name
            {
                tx.rollback().await?;
                return parse_seqs(&seqs);
            }
        }
        for chunk in lines.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO logs (execution_id, stage, action, attempt, at, line) VALUES {}",
                values(1, chunk.len(), 6)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for l in chunk {
                insert = insert
                    .bind(&l.execution_id)
                    .bind(&l.stage)
                    .bind(&l.action)
                    .bind(l.attempt)
                    .bind(l.at)
                    .bind(&l.line);
            }
            insert.execute(&mut *tx).await?;
        }
        let mut seqs = Vec::with_capacity(events.len());
        // An execution's row is written once, with the newest state: the
        // states of one transaction's earlier events would be overwritten
        // in it anyway.
        let mut newest: Vec<&ExecutionRow> = Vec::new();
        for row in events.iter().rev().flat_map(|e| e.states.iter().rev()) {
            if !newest.iter().any(|r| r.id == row.id) {
                newest.push(row);
            }
        }
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO events (pipeline, execution_id, at, body) VALUES {} RETURNING seq",
                values(1, chunk.len(), 4)
            );
            let mut insert = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                insert = insert
                    .bind(&e.pipeline)
                    .bind(&e.execution_id)
                    .bind(e.at)
                    .bind(&e.body);
            }
            // The rows' numbers ascend in the order of VALUES; RETURNING
            // need not give them in that order.
            let mut returned: Vec<i64> = insert.fetch_all(&mut *tx).await?;
            returned.sort_unstable();
            seqs.extend(returned);
        }
        for chunk in newest.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO executions (id, pipeline, status, started_at, finished_at, state) \
                 VALUES {} ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                 finished_at = excluded.finished_at, state = excluded.state",
                values(1, chunk.len(), 6)
            );
            let mut upsert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                upsert = upsert
                    .bind(&r.id)
                    .bind(&r.pipeline)
                    .bind(&r.status)
                    .bind(r.started_at)
                    .bind(r.finished_at)
                    .bind(&r.state);
            }
            upsert.execute(&mut *tx).await?;
        }
        if let Some(batch) = batch {
            let numbers: Vec<String> = seqs.iter().map(i64::to_string).collect();
            sqlx::query(
                "INSERT INTO last_batch (writer, batch, seqs) VALUES ($1, $2, $3) \
                 ON CONFLICT (writer) DO UPDATE SET batch = excluded.batch, seqs = excluded.seqs",
            )
            .bind(batch.writer)
            .bind(batch.name)
            .bind(numbers.join(","))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(seqs)
    }

    /// Every event, in order.
    pub async fn events(&self) -> Result<Vec<EventRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, pipeline, execution_id, at, body FROM events ORDER BY seq")
                .fetch_all(self.pool())
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| EventRecord {
                seq: r.get(0),
                pipeline: r.get(1),
                execution_id: r.get(2),
                at: r.get(3),
                body: r.get(4),
            })
            .collect())
    }

    /// Saves the pipeline definition an execution runs with.
    pub async fn put_definition(
        &self,
        execution_id: &str,
        definition: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO definitions (execution_id, definition) VALUES ($1, $2)
             ON CONFLICT (execution_id) DO UPDATE SET definition = excluded.definition",
        )
        .bind(execution_id)
        .bind(definition)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn definition(&self, execution_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT definition FROM definitions WHERE execution_id = $1")
                .bind(execution_id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    pub async fn execution(&self, id: &str) -> Result<Option<ExecutionRow>, StoreError> {
        let row = sqlx::query("SELECT id, pipeline, status, started_at, finished_at, state FROM executions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(execution_row))
    }

    /// Recent executions, newest first.
    pub async fn executions(
        &self,
        pipeline: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ExecutionRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, pipeline, status, started_at, finished_at, state FROM executions
             WHERE ($1 IS NULL OR pipeline = $1) ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(pipeline)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(execution_row).collect())
    }

    /// Appends log lines (their `seq` is ignored and assigned here).
    pub async fn append_logs(&self, lines: &[LogLine]) -> Result<(), StoreError> {
        self.write_batch(lines, &[]).await.map(drop)
    }

    /// Log lines of an execution after `after_seq`, optionally of one action.
    pub async fn logs(
        &self,
        execution_id: &str,
        stage_action: Option<(&str, &str)>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<LogLine>, StoreError> {
        let (stage, action) = match stage_action {
            Some((s, a)) => (Some(s), Some(a)),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT seq, execution_id, stage, action, attempt, at, line FROM logs
             WHERE execution_id = $1 AND seq > $2 AND ($3 IS NULL OR stage = $3) AND ($4 IS NULL OR action = $4)
             ORDER BY seq LIMIT $5",
        )
        .bind(execution_id)
        .bind(after_seq)
        .bind(stage)
        .bind(action)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| LogLine {
                seq: r.get(0),
                execution_id: r.get(1),
                stage: r.get(2),
                action: r.get(3),
                attempt: r.get(4),
                at: r.get(5),
                line: r.get(6),
            })
            .collect())
    }

    /// Deletes the log lines of finished executions that finished before
    /// `finished_before` (Unix ms), or that are not among the newest
    /// `keep_per_pipeline` executions of their pipeline (running ones
    /// count among the newest but keep their logs). Returns how many lines
    /// went. One statement per execution, so a writer never waits long.
    pub async fn prune_logs(
        &self,
        finished_before: i64,
        keep_per_pipeline: i64,
    ) -> Result<u64, StoreError> {
        let doomed: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM (
                 SELECT id, finished_at, ROW_NUMBER() OVER (
                     PARTITION BY pipeline ORDER BY started_at DESC, id DESC) AS newest
                 FROM executions) AS ranked
             WHERE finished_at IS NOT NULL AND (finished_at < $1 OR newest > $2)
               AND EXISTS (SELECT 1 FROM logs WHERE logs.execution_id = id)",
        )
        .bind(finished_before)
        .bind(keep_per_pipeline)
        .fetch_all(self.pool())
        .await?;
        let mut deleted = 0;
        for id in doomed {
            deleted += sqlx::query("DELETE FROM logs WHERE execution_id = $1")
                .bind(&id)
                .execute(self.pool())
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }

    /// Records a detail of an action attempt as JSON, under a kind such as
    /// `parameters` (which versions it used) or `reports` (test results).
    pub async fn record_action_detail(&self, detail: &ActionDetail) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO action_details (execution_id, stage, action, attempt, kind, body)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (execution_id, stage, action, attempt, kind)
             DO UPDATE SET body = excluded.body",
        )
        .bind(&detail.execution_id)
        .bind(&detail.stage)
        .bind(&detail.action)
        .bind(detail.attempt)
        .bind(&detail.kind)
        .bind(&detail.body)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every recorded detail of an execution's actions.
    pub async fn action_details(
        &self,
        execution_id: &str,
    ) -> Result<Vec<ActionDetail>, StoreError> {
        let rows = sqlx::query(
            "SELECT execution_id, stage, action, attempt, kind, body FROM action_details
             WHERE execution_id = $1 ORDER BY stage, action, attempt, kind",
        )
        .bind(execution_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ActionDetail {
                execution_id: r.get(0),
                stage: r.get(1),
                action: r.get(2),
                attempt: r.get(3),
                kind: r.get(4),
                body: r.get(5),
            })
            .collect())
    }

    pub async fn record_approval(&self, a: &ApprovalRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO approvals (execution_id, stage, action, attempt, decision, by, at, comment)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (execution_id, stage, action, attempt) DO UPDATE SET
             decision = excluded.decision, by = excluded.by, at = excluded.at,
             comment = excluded.comment",
        )
        .bind(&a.execution_id)
        .bind(&a.stage)
        .bind(&a.action)
        .bind(a.attempt)
        .bind(&a.decision)
        .bind(&a.by)
        .bind(a.at)
        .bind(&a.comment)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records one person's decision; a second decision by the same person
    /// on the same attempt is refused by the primary key.
    pub async fn record_vote(&self, v: &ApprovalVote) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO approval_votes
               (execution_id, stage, action, attempt, by, decision, at, comment, binding)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&v.execution_id)
        .bind(&v.stage)
        .bind(&v.action)
        .bind(v.attempt)
        .bind(&v.by)
        .bind(&v.decision)
        .bind(v.at)
        .bind(&v.comment)
        .bind(&v.binding)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The decisions on one approval attempt, oldest first.
    pub async fn votes(
        &self,
        execution_id: &str,
        stage: &str,
        action: &str,
        attempt: i64,
    ) -> Result<Vec<ApprovalVote>, StoreError> {
        let rows = sqlx::query(
            "SELECT execution_id, stage, action, attempt, by, decision, at, comment, binding
             FROM approval_votes
             WHERE execution_id = $1 AND stage = $2 AND action = $3 AND attempt = $4
             ORDER BY at, by",
        )
        .bind(execution_id)
        .bind(stage)
        .bind(action)
        .bind(attempt)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ApprovalVote {
                execution_id: r.get(0),
                stage: r.get(1),
                action: r.get(2),
                attempt: r.get(3),
                by: r.get(4),
                decision: r.get(5),
                at: r.get(6),
                comment: r.get(7),
                binding: r.get(8),
            })
            .collect())
    }

    pub async fn approvals(&self, execution_id: &str) -> Result<Vec<ApprovalRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT execution_id, stage, action, attempt, decision, by, at, comment FROM approvals
             WHERE execution_id = $1 ORDER BY at",
        )
        .bind(execution_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ApprovalRecord {
                execution_id: r.get(0),
                stage: r.get(1),
                action: r.get(2),
                attempt: r.get(3),
                decision: r.get(4),
                by: r.get(5),
                at: r.get(6),
                comment: r.get(7),
            })
            .collect())
    }
}

fn execution_row(r: sqlx::any::AnyRow) -> ExecutionRow {
    ExecutionRow {
        id: r.get(0),
        pipeline: r.get(1),
        status: r.get(2),
        started_at: r.get(3),
        finished_at: r.get(4),
        state: r.get(5),
    }
}

/// Creates `path` with mode 0600 if it does not exist, and makes an
/// existing file 0600. In-memory databases are left alone.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on the backend the run chose (SQLite, or PostgreSQL with
    /// GANTRY_TEST_POSTGRES).
    async fn store() -> Store {
        Store::connect(gantry_testkit::database::database().await)
            .await
            .unwrap()
    }

    fn row(id: &str, status: &str) -> ExecutionRow {
        ExecutionRow {
            id: id.into(),
            pipeline: "p".into(),
            status: status.into(),
            started_at: 1,
            finished_at: None,
            state: "{}".into(),
        }
    }

    #[tokio::test]
    async fn events_and_state_round_trip_through_a_reopened_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = gantry_testkit::database::database_url(dir.path()).await;
        {
            let store = Store::connect(Db::connect(&url).await.unwrap())
                .await
                .unwrap();
            store
                .record_event("p", "e1", 1, "{\"a\":1}", &[row("e1", "InProgress")])
                .await
                .unwrap();
            store
                .record_event("p", "e1", 2, "{\"a\":2}", &[row("e1", "Succeeded")])
                .await
                .unwrap();
        }
        let store = Store::connect(Db::connect(&url).await.unwrap())
            .await
            .unwrap();
        let events = store.events().await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
            ["{\"a\":1}", "{\"a\":2}"]
        );
        assert_eq!(
            store.execution("e1").await.unwrap().unwrap().status,
            "Succeeded"
        );
        assert_eq!(store.executions(Some("p"), 10).await.unwrap().len(), 1);
        assert!(
            store
                .executions(Some("other"), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    fn event(execution: &str, body: &str, states: Vec<ExecutionRow>) -> NewEvent {
        NewEvent {
            pipeline: "p".into(),
            execution_id: execution.into(),
            at: 1,
            body: body.into(),
            states,
        }
    }

    #[tokio::test]
    async fn a_batch_writes_lines_then_events_in_order_and_each_rows_newest_state() {
        let store = store().await;
        let first = store
            .record_event("p", "e0", 1, "first", &[])
            .await
            .unwrap();
        let lines: Vec<LogLine> = (0..1200)
            .map(|i| LogLine {
                seq: 0,
                execution_id: "e1".into(),
                stage: "S".into(),
                action: "a".into(),
                attempt: 1,
                at: i,
                line: format!("line {i}"),
            })
            .collect();
        let events = [
            event("e1", "one", vec![row("e1", "InProgress")]),
            event(
                "e2",
                "two",
                vec![row("e2", "InProgress"), row("e1", "Failed")],
            ),
            event("e1", "three", vec![row("e1", "Succeeded")]),
        ];
        let seqs = store.write_batch(&lines, &events).await.unwrap();
        assert_eq!(seqs, [first + 1, first + 2, first + 3]);
        let bodies: Vec<String> = store
            .events()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.body)
            .collect();
        assert_eq!(bodies, ["first", "one", "two", "three"]);
        assert_eq!(
            store.execution("e1").await.unwrap().unwrap().status,
            "Succeeded"
        );
        assert_eq!(
            store.execution("e2").await.unwrap().unwrap().status,
            "InProgress"
        );
        // More lines than one statement carries, all there, in order.
        let stored = store.logs("e1", None, 0, 5000).await.unwrap();
        assert_eq!(stored.len(), 1200);
        assert!(
            stored
                .windows(2)
                .all(|w| w[0].seq < w[1].seq && w[0].at < w[1].at)
        );
    }

    #[tokio::test]
    async fn a_retried_batch_that_landed_is_not_written_twice() {
        let store = store().await;
        let line = |text: &str| LogLine {
            seq: 0,
            execution_id: "e".into(),
            stage: "S".into(),
            action: "a".into(),
            attempt: 1,
            at: 1,
            line: text.into(),
        };
        let name = |name, retry| BatchName {
            writer: "log",
            name,
            retry,
        };
        let events = [event("e", "one", vec![]), event("e", "two", vec![])];
        let lines = [line("first")];
        let seqs = store
            .write_named_batch(&name("b1", false), &lines, &events)
            .await
            .unwrap();
        assert_eq!(seqs.len(), 2);
        // The same batch again, as after a COMMIT whose answer was lost:
        // nothing more is written, and the numbers are the first try's.
        let again = store
            .write_named_batch(&name("b1", true), &lines, &events)
            .await
            .unwrap();
        assert_eq!(again, seqs);
        assert_eq!(store.events().await.unwrap().len(), 2);
        assert_eq!(store.logs("e", None, 0, 10).await.unwrap().len(), 1);
        // A retry of a batch that did not land writes it; so does a new one.
        let third = [event("e", "three", vec![])];
        let written = store
            .write_named_batch(&name("b2", true), &[line("second")], &third)
            .await
            .unwrap();
        assert_eq!(written, [seqs[1] + 1]);
        let lines_only = store
            .write_named_batch(&name("b3", false), &[line("third")], &[])
            .await
            .unwrap();
        assert!(lines_only.is_empty());
        assert_eq!(
            store
                .write_named_batch(&name("b3", true), &[line("third")], &[])
                .await
                .unwrap(),
            Vec::<i64>::new()
        );
        let bodies: Vec<String> = store
            .events()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.body)
            .collect();
        assert_eq!(bodies, ["one", "two", "three"]);
        let texts: Vec<String> = store
            .logs("e", None, 0, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect();
        assert_eq!(texts, ["first", "second", "third"]);
    }

    #[tokio::test]
    async fn logs_filter_by_action_and_page_by_seq() {
        let store = store().await;
        let line = |stage: &str, text: &str| LogLine {
            seq: 0,
            execution_id: "e".into(),
            stage: stage.into(),
            action: "a".into(),
            attempt: 1,
            at: 5,
            line: text.into(),
        };
        store
            .append_logs(&[line("S", "one"), line("T", "two"), line("S", "three")])
            .await
            .unwrap();
        let s = store.logs("e", Some(("S", "a")), 0, 100).await.unwrap();
        assert_eq!(
            s.iter().map(|l| l.line.as_str()).collect::<Vec<_>>(),
            ["one", "three"]
        );
        let after = store.logs("e", None, s[0].seq, 100).await.unwrap();
        assert_eq!(after.len(), 2);
    }

    #[tokio::test]
    async fn prune_logs_deletes_old_and_surplus_finished_executions_only() {
        let store = store().await;
        // Pipeline p: e1..e4 started in that order; e4 still runs. q: one old one.
        let executions = [
            ("p", "e1", 10, Some(20)),
            ("p", "e2", 30, Some(40)),
            ("p", "e3", 50, Some(1_000)),
            ("p", "e4", 60, None),
            ("q", "f1", 5, Some(6)),
        ];
        for (pipeline, id, started_at, finished_at) in executions {
            let row = ExecutionRow {
                id: id.into(),
                pipeline: pipeline.into(),
                status: "x".into(),
                started_at,
                finished_at,
                state: "{}".into(),
            };
            store
                .record_event(pipeline, id, started_at, "{}", &[row])
                .await
                .unwrap();
            let lines: Vec<LogLine> = (0..3)
                .map(|i| LogLine {
                    seq: 0,
                    execution_id: id.into(),
                    stage: "S".into(),
                    action: "a".into(),
                    attempt: 1,
                    at: started_at,
                    line: format!("{id} {i}"),
                })
                .collect();
            store.append_logs(&lines).await.unwrap();
        }
        let remaining = async |id: &str| store.logs(id, None, 0, 100).await.unwrap().len();

        // Keep the newest 3 per pipeline; nothing is old enough by age.
        assert_eq!(store.prune_logs(0, 3).await.unwrap(), 3);
        assert_eq!(remaining("e1").await, 0);
        for id in ["e2", "e3", "e4", "f1"] {
            assert_eq!(remaining(id).await, 3, "{id}");
        }
        // By age: finished before 100 goes (e2, f1); e3 finished later and
        // e4 runs.
        assert_eq!(store.prune_logs(100, 3).await.unwrap(), 6);
        assert_eq!(remaining("e3").await, 3);
        assert_eq!(remaining("e4").await, 3);
        // Keeping only one: e4 runs, so it keeps its logs anyway.
        assert_eq!(store.prune_logs(0, 1).await.unwrap(), 3);
        assert_eq!(remaining("e4").await, 3);
        assert_eq!(store.prune_logs(0, 1).await.unwrap(), 0);
    }
}
