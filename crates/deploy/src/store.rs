//! The deployment tables, in the server's database (prefixed `deploy_`).

use gantry_store::Store;
use sqlx::Row;

use crate::error::DeployError;
use crate::revision::Revision;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deploy_project (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    files      TEXT NOT NULL,
    applied_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deploy_revisions (
    environment TEXT NOT NULL,
    service     TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (environment, service, revision)
);
CREATE TABLE IF NOT EXISTS deploy_current (
    environment TEXT NOT NULL,
    service     TEXT NOT NULL,
    revision    INTEGER NOT NULL,
    PRIMARY KEY (environment, service)
);
CREATE TABLE IF NOT EXISTS deploy_deployments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    environment   TEXT NOT NULL,
    service       TEXT NOT NULL,
    from_revision INTEGER,
    to_revision   INTEGER NOT NULL,
    status        TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    message       TEXT
);
CREATE TABLE IF NOT EXISTS deploy_shifts (
    environment   TEXT NOT NULL,
    service       TEXT NOT NULL,
    deployment    INTEGER NOT NULL,
    from_revision INTEGER NOT NULL,
    to_revision   INTEGER NOT NULL,
    step          INTEGER NOT NULL,
    weight        INTEGER NOT NULL,
    paused        INTEGER NOT NULL,
    PRIMARY KEY (environment, service)
);
"#;

/// Where a progressive deployment is, kept while it shifts traffic so that
/// a server restarting in the middle resumes it (or puts the old revision
/// back to all the traffic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShiftRow {
    pub(crate) environment: String,
    pub(crate) service: String,
    pub(crate) deployment: i64,
    pub(crate) from_revision: u64,
    pub(crate) to_revision: u64,
    /// The index of the step it reached.
    pub(crate) step: usize,
    /// The new revision's share of the traffic, in percent.
    pub(crate) weight: u32,
    pub(crate) paused: bool,
}

/// One row of a service's deployment history, as `env status` shows it.
/// Fields are in alphabetical order, the order the JSON had when it was
/// built as a `serde_json::Value`, so the bytes stay the same.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct DeploymentRecord {
    /// Unix milliseconds; `None` while it runs.
    pub finished_at: Option<i64>,
    pub from_revision: Option<i64>,
    pub id: i64,
    /// Why it ended as it did (the circuit breaker's reason, say).
    pub message: Option<String>,
    /// Unix milliseconds.
    pub started_at: i64,
    /// `InProgress`, `Succeeded`, `Failed`, `RolledBack` or `Interrupted`.
    pub status: String,
    pub to_revision: i64,
}

#[derive(Clone)]
pub(crate) struct DeployStore {
    store: Store,
}

impl DeployStore {
    pub(crate) async fn open(store: Store) -> Result<DeployStore, DeployError> {
        store.db().apply_schema(SCHEMA).await?;
        Ok(DeployStore { store })
    }

    pub(crate) async fn save_project(&self, files: &str, at: i64) -> Result<(), DeployError> {
        sqlx::query(
            "INSERT INTO deploy_project (id, files, applied_at) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET files = excluded.files, applied_at = excluded.applied_at",
        )
        .bind(files)
        .bind(at)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    pub(crate) async fn project(&self) -> Result<Option<String>, DeployError> {
        Ok(
            sqlx::query_scalar("SELECT files FROM deploy_project WHERE id = 1")
                .fetch_optional(self.store.pool())
                .await?,
        )
    }

    pub(crate) async fn save_revision(&self, r: &Revision) -> Result<(), DeployError> {
        let body = serde_json::to_string(r).map_err(|e| DeployError::Spec(e.to_string()))?;
        sqlx::query("INSERT INTO deploy_revisions (environment, service, revision, body) VALUES ($1, $2, $3, $4)")
            .bind(&r.environment)
            .bind(&r.service)
            .bind(i64::try_from(r.number).unwrap_or(i64::MAX))
            .bind(body)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    pub(crate) async fn revision(
        &self,
        env: &str,
        service: &str,
        number: u64,
    ) -> Result<Option<Revision>, DeployError> {
        let body: Option<String> = sqlx::query_scalar(
            "SELECT body FROM deploy_revisions WHERE environment = $1 AND service = $2 AND revision = $3",
        )
        .bind(env)
        .bind(service)
        .bind(i64::try_from(number).unwrap_or(i64::MAX))
        .fetch_optional(self.store.pool())
        .await?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|e| DeployError::Spec(format!("stored revision: {e}")))
        })
        .transpose()
    }

    pub(crate) async fn last_revision_number(
        &self,
        env: &str,
        service: &str,
    ) -> Result<u64, DeployError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(revision) FROM deploy_revisions WHERE environment = $1 AND service = $2",
        )
        .bind(env)
        .bind(service)
        .fetch_one(self.store.pool())
        .await?;
        Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    pub(crate) async fn set_current(
        &self,
        env: &str,
        service: &str,
        number: u64,
    ) -> Result<(), DeployError> {
        sqlx::query(
            "INSERT INTO deploy_current (environment, service, revision) VALUES ($1, $2, $3)
             ON CONFLICT (environment, service) DO UPDATE SET revision = excluded.revision",
        )
        .bind(env)
        .bind(service)
        .bind(i64::try_from(number).unwrap_or(i64::MAX))
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    pub(crate) async fn clear_current(&self, env: &str) -> Result<(), DeployError> {
        sqlx::query("DELETE FROM deploy_current WHERE environment = $1")
            .bind(env)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// The image of every stored revision (`registry/repo@sha256:…`),
    /// each once, in order.
    pub(crate) async fn revision_images(
        &self,
    ) -> Result<std::collections::BTreeSet<String>, DeployError> {
        let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM deploy_revisions")
            .fetch_all(self.store.pool())
            .await?;
        let mut images = std::collections::BTreeSet::new();
        for body in bodies {
            // Only the image is read, so a body of any age will do.
            let body: serde_json::Value = serde_json::from_str(&body)
                .map_err(|e| DeployError::Spec(format!("stored revision: {e}")))?;
            if let Some(image) = body["image"].as_str() {
                images.insert(image.to_string());
            }
        }
        Ok(images)
    }

    /// `(environment, service, revision)` of every service that runs something.
    pub(crate) async fn currents(&self) -> Result<Vec<(String, String, u64)>, DeployError> {
        let rows = sqlx::query("SELECT environment, service, revision FROM deploy_current")
            .fetch_all(self.store.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    u64::try_from(r.get::<i64, _>(2)).unwrap_or(0),
                )
            })
            .collect())
    }

    pub(crate) async fn start_deployment(
        &self,
        env: &str,
        service: &str,
        from: Option<u64>,
        to: u64,
        at: i64,
    ) -> Result<i64, DeployError> {
        let id = sqlx::query_scalar(
            "INSERT INTO deploy_deployments (environment, service, from_revision, to_revision, status, started_at)
             VALUES ($1, $2, $3, $4, 'InProgress', $5) RETURNING id",
        )
        .bind(env)
        .bind(service)
        .bind(from.map(|f| i64::try_from(f).unwrap_or(i64::MAX)))
        .bind(i64::try_from(to).unwrap_or(i64::MAX))
        .bind(at)
        .fetch_one(self.store.pool())
        .await?;
        Ok(id)
    }

    pub(crate) async fn finish_deployment(
        &self,
        id: i64,
        status: &str,
        message: Option<&str>,
        at: i64,
    ) -> Result<(), DeployError> {
        sqlx::query(
            "UPDATE deploy_deployments SET status = $1, message = $2, finished_at = $3 WHERE id = $4",
        )
        .bind(status)
        .bind(message)
        .bind(at)
        .bind(id)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Deployments still marked in progress (a server stopped during them),
    /// but for progressive ones with a shift row: re-adoption resumes or
    /// ends those.
    pub(crate) async fn interrupt_unfinished(&self, at: i64) -> Result<u64, DeployError> {
        let done = sqlx::query(
            "UPDATE deploy_deployments SET status = 'Interrupted', finished_at = $1,
               message = 'the server stopped during this deployment' WHERE status = 'InProgress'
               AND id NOT IN (SELECT deployment FROM deploy_shifts)",
        )
        .bind(at)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Records where a shift is (replacing what was recorded).
    pub(crate) async fn save_shift(&self, row: &ShiftRow) -> Result<(), DeployError> {
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        sqlx::query(
            "INSERT INTO deploy_shifts
               (environment, service, deployment, from_revision, to_revision, step, weight, paused)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (environment, service) DO UPDATE SET deployment = excluded.deployment,
               from_revision = excluded.from_revision, to_revision = excluded.to_revision,
               step = excluded.step, weight = excluded.weight, paused = excluded.paused",
        )
        .bind(&row.environment)
        .bind(&row.service)
        .bind(row.deployment)
        .bind(int(row.from_revision))
        .bind(int(row.to_revision))
        .bind(int(row.step as u64))
        .bind(i64::from(row.weight))
        .bind(i64::from(row.paused))
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    pub(crate) async fn clear_shift(&self, env: &str, service: &str) -> Result<(), DeployError> {
        sqlx::query("DELETE FROM deploy_shifts WHERE environment = $1 AND service = $2")
            .bind(env)
            .bind(service)
            .execute(self.store.pool())
            .await?;
        Ok(())
    }

    /// Every shift a stopped server left in progress.
    pub(crate) async fn shifts(&self) -> Result<Vec<ShiftRow>, DeployError> {
        let rows = sqlx::query(
            "SELECT environment, service, deployment, from_revision, to_revision, step, weight, paused
             FROM deploy_shifts",
        )
        .fetch_all(self.store.pool())
        .await?;
        let num = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok(rows
            .into_iter()
            .map(|r| ShiftRow {
                environment: r.get(0),
                service: r.get(1),
                deployment: r.get(2),
                from_revision: num(r.get(3)),
                to_revision: num(r.get(4)),
                step: usize::try_from(r.get::<i64, _>(5)).unwrap_or(0),
                weight: u32::try_from(r.get::<i64, _>(6)).unwrap_or(0),
                paused: r.get::<i64, _>(7) != 0,
            })
            .collect())
    }

    pub(crate) async fn deployments(
        &self,
        env: &str,
        service: &str,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>, DeployError> {
        let rows = sqlx::query(
            "SELECT id, from_revision, to_revision, status, started_at, finished_at, message FROM deploy_deployments
             WHERE environment = $1 AND service = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(env)
        .bind(service)
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeploymentRecord {
                id: r.get(0),
                from_revision: r.get(1),
                to_revision: r.get(2),
                status: r.get(3),
                started_at: r.get(4),
                finished_at: r.get(5),
                message: r.get(6),
            })
            .collect())
    }
}
