//! The audit log: every mutation and every refused request, append-only.
//! Triggers make the table refuse updates and deletes, so even a bug in
//! gantry cannot rewrite history through SQL.

use serde::Serialize;
use sqlx::Row as _;

use crate::{Auth, AuthError};

pub(crate) const AUDIT_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit_log (
        seq       INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms     INTEGER NOT NULL,
        principal TEXT,
        remote    TEXT,
        action    TEXT NOT NULL,
        target    TEXT,
        outcome   TEXT NOT NULL
    ) STRICT",
    "CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at_ms)",
];

/// The triggers that refuse rewrites, in SQLite's dialect.
pub(crate) const AUDIT_SCHEMA_SQLITE: &[&str] = &[
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
];

/// The same in PostgreSQL's, which can also truncate a table.
pub(crate) const AUDIT_SCHEMA_POSTGRES: &[&str] = &[
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS
     $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "CREATE OR REPLACE TRIGGER audit_log_no_rewrite BEFORE UPDATE OR DELETE ON audit_log
     FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
     FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
];

/// Longest text kept per field; longer values are cut (they come from
/// requests, so a caller must not be able to grow the log without bound).
const MAX_FIELD: usize = 512;

/// One entry: who did what, from where, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Set by the store when appended; ignored on append.
    #[serde(default)]
    pub seq: i64,
    pub at_ms: i64,
    /// The authenticated identity, or `None` when authentication failed.
    pub principal: Option<String>,
    /// The peer address.
    pub remote: Option<String>,
    /// What was asked: `POST /api/v1/executions`, `registry.push_manifest`.
    pub action: String,
    /// What it was about: a pipeline, parameter name, `repo:tag`.
    pub target: Option<String>,
    /// `ok`, or the error code that refused it (`auth.forbidden`).
    pub outcome: String,
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since_ms: Option<i64>,
    pub principal: Option<String>,
    pub limit: Option<u32>,
    /// Only entries older than this one (by `seq`): the next page back.
    pub before: Option<i64>,
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_FIELD {
        return text.to_string();
    }
    let mut end = MAX_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Auth {
    /// Appends an entry.
    pub async fn audit(&self, record: &AuditRecord) -> Result<(), AuthError> {
        sqlx::query(
            "INSERT INTO audit_log (at_ms, principal, remote, action, target, outcome)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(record.at_ms)
        .bind(record.principal.as_deref().map(cut))
        .bind(record.remote.as_deref().map(cut))
        .bind(cut(&record.action))
        .bind(record.target.as_deref().map(cut))
        .bind(cut(&record.outcome))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Entries oldest first, at most `limit` (default 1,000) of the newest
    /// that match.
    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, AuthError> {
        let limit = query.limit.unwrap_or(1000).clamp(1, 100_000);
        let rows = sqlx::query(
            "SELECT seq, at_ms, principal, remote, action, target, outcome FROM (
               SELECT * FROM audit_log
               WHERE at_ms >= $1 AND ($2 IS NULL OR principal = $3) AND seq < $4
               ORDER BY seq DESC LIMIT $5
             ) AS newest ORDER BY seq",
        )
        .bind(query.since_ms.unwrap_or(i64::MIN))
        .bind(query.principal.as_deref())
        .bind(query.principal.as_deref())
        .bind(query.before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                seq: r.get(0),
                at_ms: r.get(1),
                principal: r.get(2),
                remote: r.get(3),
                action: r.get(4),
                target: r.get(5),
                outcome: r.get(6),
            })
            .collect())
    }
}
