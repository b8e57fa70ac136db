//! What the trigger runtime keeps across restarts (formats.md §7): the
//! pipelines `gantry apply` registered with their triggers, each trigger's
//! last event and error, the keys of what already started a pipeline (a
//! commit starts it once), and the webhook delivery ids already seen
//! (replay protection).
//!
//! The tables are created with the rest of the schema, idempotently, so a
//! database from before triggers opens and gains them.

use sqlx::Row;

use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS registered_pipelines (
    name          TEXT PRIMARY KEY,
    file          TEXT NOT NULL,
    text          TEXT NOT NULL,
    includes      TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    registered_by TEXT
);

CREATE TABLE IF NOT EXISTS trigger_state (
    pipeline             TEXT NOT NULL,
    trigger              INTEGER NOT NULL,
    last_event           TEXT,
    last_event_at        INTEGER,
    last_commit          TEXT,
    last_result          TEXT,
    last_execution       TEXT,
    last_error           TEXT,
    last_error_at        INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    bad_signatures       INTEGER NOT NULL DEFAULT 0,
    known_refs           TEXT,
    PRIMARY KEY (pipeline, trigger)
);

CREATE TABLE IF NOT EXISTS trigger_dedup (
    key          TEXT PRIMARY KEY,
    pipeline     TEXT NOT NULL,
    execution_id TEXT,
    at           INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    pipeline    TEXT NOT NULL,
    provider    TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (pipeline, provider, delivery_id)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_at ON webhook_deliveries (at);
"#;

/// A pipeline registered by `gantry apply`, as the client sent it: its
/// triggers start executions of this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredPipeline {
    pub name: String,
    /// The pipeline file's path as the client named it.
    pub file: String,
    pub text: String,
    /// The included files' texts, as a JSON object (name → text).
    pub includes: String,
    /// Unix milliseconds.
    pub registered_at: i64,
    pub registered_by: Option<String>,
}

/// What one trigger (an item of a pipeline's `triggers`, by index) last
/// saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TriggerState {
    pub pipeline: String,
    pub trigger: i64,
    /// A sentence: what arrived (`github delivery 72d3…: refs/heads/main a1b2…`).
    pub last_event: Option<String>,
    pub last_event_at: Option<i64>,
    pub last_commit: Option<String>,
    /// What came of the last event: `started`, `skipped: …`, `duplicate`, `failed`.
    pub last_result: Option<String>,
    /// The execution the last event started (or found already started).
    pub last_execution: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// Failures in a row; 0 after a success. Polls back off by it.
    pub consecutive_failures: i64,
    /// Webhook deliveries refused for a bad or missing signature.
    pub bad_signatures: i64,
    /// The refs the poller last saw, as JSON (full ref → commit).
    pub known_refs: Option<String>,
}

/// One trigger's outcome to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerOutcome<'a> {
    pub event: &'a str,
    pub commit: Option<&'a str>,
    pub result: &'a str,
    pub execution: Option<&'a str>,
    pub at: i64,
}

impl Store {
    /// Registers (or replaces) a pipeline. Trigger states whose index is
    /// past `triggers` are dropped: they belonged to triggers the new text
    /// no longer has.
    pub async fn register_pipeline(
        &self,
        pipeline: &RegisteredPipeline,
        triggers: usize,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO registered_pipelines (name, file, text, includes, registered_at, registered_by)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET file = excluded.file, text = excluded.text,
               includes = excluded.includes, registered_at = excluded.registered_at,
               registered_by = excluded.registered_by",
        )
        .bind(&pipeline.name)
        .bind(&pipeline.file)
        .bind(&pipeline.text)
        .bind(&pipeline.includes)
        .bind(pipeline.registered_at)
        .bind(&pipeline.registered_by)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM trigger_state WHERE pipeline = $1 AND trigger >= $2")
            .bind(&pipeline.name)
            .bind(i64::try_from(triggers).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets a registered pipeline and its triggers' states (its dedup
    /// keys stay: re-registering it must not start old commits again).
    /// Returns whether it was registered.
    pub async fn unregister_pipeline(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let gone = sqlx::query("DELETE FROM registered_pipelines WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM trigger_state WHERE pipeline = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(gone > 0)
    }

    /// Every registered pipeline, by name.
    pub async fn registered_pipelines(&self) -> Result<Vec<RegisteredPipeline>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, file, text, includes, registered_at, registered_by
             FROM registered_pipelines ORDER BY name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| RegisteredPipeline {
                name: r.get(0),
                file: r.get(1),
                text: r.get(2),
                includes: r.get(3),
                registered_at: r.get(4),
                registered_by: r.get(5),
            })
            .collect())
    }

    /// The states of every trigger (of one pipeline, or all), by pipeline
    /// and index. A trigger that has seen nothing has no row.
    pub async fn trigger_states(
        &self,
        pipeline: Option<&str>,
    ) -> Result<Vec<TriggerState>, StoreError> {
        let rows = sqlx::query(
            "SELECT pipeline, trigger, last_event, last_event_at, last_commit, last_result,
                    last_execution, last_error, last_error_at, consecutive_failures,
                    bad_signatures, known_refs
             FROM trigger_state WHERE ($1 IS NULL OR pipeline = $1) ORDER BY pipeline, trigger",
        )
        .bind(pipeline)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| TriggerState {
                pipeline: r.get(0),
                trigger: r.get(1),
                last_event: r.get(2),
                last_event_at: r.get(3),
                last_commit: r.get(4),
                last_result: r.get(5),
                last_execution: r.get(6),
                last_error: r.get(7),
                last_error_at: r.get(8),
                consecutive_failures: r.get(9),
                bad_signatures: r.get(10),
                known_refs: r.get(11),
            })
            .collect())
    }

    /// Records what a trigger's event came to; clears its error and its
    /// failures in a row.
    pub async fn record_trigger_outcome(
        &self,
        pipeline: &str,
        trigger: i64,
        outcome: &TriggerOutcome<'_>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO trigger_state (pipeline, trigger, last_event, last_event_at, last_commit,
                                        last_result, last_execution, consecutive_failures)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0)
             ON CONFLICT (pipeline, trigger) DO UPDATE SET last_event = $3, last_event_at = $4,
               last_commit = COALESCE($5, trigger_state.last_commit), last_result = $6,
               last_execution = COALESCE($7, trigger_state.last_execution), last_error = NULL,
               last_error_at = NULL, consecutive_failures = 0",
        )
        .bind(pipeline)
        .bind(trigger)
        .bind(outcome.event)
        .bind(outcome.at)
        .bind(outcome.commit)
        .bind(outcome.result)
        .bind(outcome.execution)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a trigger's failure (an unreachable repository, a commit
    /// that is not there) and returns its failures in a row.
    pub async fn record_trigger_error(
        &self,
        pipeline: &str,
        trigger: i64,
        event: Option<&str>,
        error: &str,
        at: i64,
    ) -> Result<i64, StoreError> {
        let failures = sqlx::query_scalar(
            "INSERT INTO trigger_state (pipeline, trigger, last_event, last_event_at, last_result,
                                        last_error, last_error_at, consecutive_failures)
             VALUES ($1, $2, $3, CASE WHEN $3 IS NULL THEN NULL ELSE $5 END, 'failed', $4, $5, 1)
             ON CONFLICT (pipeline, trigger) DO UPDATE SET
               last_event = COALESCE($3, trigger_state.last_event),
               last_event_at = CASE WHEN $3 IS NULL THEN trigger_state.last_event_at ELSE $5 END,
               last_result = 'failed', last_error = $4, last_error_at = $5,
               consecutive_failures = trigger_state.consecutive_failures + 1
             RETURNING consecutive_failures",
        )
        .bind(pipeline)
        .bind(trigger)
        .bind(event)
        .bind(error)
        .bind(at)
        .fetch_one(self.pool())
        .await?;
        Ok(failures)
    }

    /// Counts a webhook delivery refused for its signature against a trigger.
    pub async fn count_bad_signature(
        &self,
        pipeline: &str,
        trigger: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO trigger_state (pipeline, trigger, bad_signatures) VALUES ($1, $2, 1)
             ON CONFLICT (pipeline, trigger) DO UPDATE SET bad_signatures = trigger_state.bad_signatures + 1",
        )
        .bind(pipeline)
        .bind(trigger)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Stores the refs a poller saw (JSON), so that a restarted server
    /// notices only what changed since.
    pub async fn set_known_refs(
        &self,
        pipeline: &str,
        trigger: i64,
        known_refs: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO trigger_state (pipeline, trigger, known_refs) VALUES ($1, $2, $3)
             ON CONFLICT (pipeline, trigger) DO UPDATE SET known_refs = $3",
        )
        .bind(pipeline)
        .bind(trigger)
        .bind(known_refs)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Claims a dedup key (`DedupKey::as_string`): `true` when nothing
    /// claimed it before, and the caller may start the pipeline; `false`
    /// when something did (its execution, if it has one yet, is
    /// [`Store::dedup_execution`]).
    pub async fn claim_dedup(
        &self,
        key: &str,
        pipeline: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let claimed = sqlx::query(
            "INSERT INTO trigger_dedup (key, pipeline, at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(pipeline)
        .bind(at)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    /// Records the execution a claimed key started.
    pub async fn set_dedup_execution(
        &self,
        key: &str,
        execution_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE trigger_dedup SET execution_id = $1 WHERE key = $2")
            .bind(execution_id)
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Gives a claimed key back, when starting the execution failed, so
    /// that a retry may claim it again.
    pub async fn release_dedup(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM trigger_dedup WHERE key = $1 AND execution_id IS NULL")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The execution a key started: `None` if the key is unclaimed,
    /// `Some(None)` while its execution is being started.
    pub async fn dedup_execution(&self, key: &str) -> Result<Option<Option<String>>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT execution_id FROM trigger_dedup WHERE key = $1")
                .bind(key)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Records a webhook delivery's id: `true` the first time, `false` for
    /// a replay.
    pub async fn record_delivery(
        &self,
        pipeline: &str,
        provider: &str,
        delivery_id: &str,
        at: i64,
    ) -> Result<bool, StoreError> {
        let new = sqlx::query(
            "INSERT INTO webhook_deliveries (pipeline, provider, delivery_id, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(pipeline)
        .bind(provider)
        .bind(delivery_id)
        .bind(at)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(new == 1)
    }

    /// Forgets delivery ids recorded before `before` (Unix ms); returns how
    /// many went.
    pub async fn prune_deliveries(&self, before: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM webhook_deliveries WHERE at < $1")
            .bind(before)
            .execute(self.pool())
            .await?
            .rows_affected())
    }
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

    fn pipeline(name: &str, text: &str) -> RegisteredPipeline {
        RegisteredPipeline {
            name: name.into(),
            file: "/p/gantry.yaml".into(),
            text: text.into(),
            includes: "{}".into(),
            registered_at: 1,
            registered_by: Some("admin".into()),
        }
    }

    #[tokio::test]
    async fn registered_pipelines_and_trigger_states_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let url = gantry_testkit::database::database_url(dir.path()).await;
        let open = async || {
            Store::connect(gantry_db::Db::connect(&url).await.unwrap())
                .await
                .unwrap()
        };
        {
            let store = open().await;
            store
                .register_pipeline(&pipeline("shop", "v1"), 2)
                .await
                .unwrap();
            store
                .record_trigger_outcome(
                    "shop",
                    0,
                    &TriggerOutcome {
                        event: "poll: refs/heads/main abc",
                        commit: Some("abc"),
                        result: "started",
                        execution: Some("e1"),
                        at: 5,
                    },
                )
                .await
                .unwrap();
            store.count_bad_signature("shop", 1).await.unwrap();
            store.count_bad_signature("shop", 1).await.unwrap();
        }
        let store = open().await;
        assert_eq!(
            store.registered_pipelines().await.unwrap(),
            [pipeline("shop", "v1")]
        );
        let states = store.trigger_states(Some("shop")).await.unwrap();
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].last_commit.as_deref(), Some("abc"));
        assert_eq!(states[0].last_execution.as_deref(), Some("e1"));
        assert_eq!(states[1].bad_signatures, 2);
        assert!(
            store
                .trigger_states(Some("other"))
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// A data dir from before triggers: its database gains the tables.
    #[tokio::test]
    async fn a_database_from_before_triggers_opens_and_gains_the_tables() {
        use sqlx::sqlite::SqliteConnectOptions;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gantry.db");
        {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            sqlx::raw_sql(
                "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, pipeline TEXT NOT NULL,
                   execution_id TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL);
                 PRAGMA user_version = 1;",
            )
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        let store = Store::open(&path).await.unwrap();
        store
            .register_pipeline(&pipeline("shop", "v1"), 1)
            .await
            .unwrap();
        assert!(store.claim_dedup("k", "shop", 1).await.unwrap());
    }

    #[tokio::test]
    async fn errors_count_in_a_row_until_an_outcome_clears_them() {
        let store = store().await;
        for n in 1..=3 {
            let failures = store
                .record_trigger_error("shop", 0, None, "unreachable", n)
                .await
                .unwrap();
            assert_eq!(failures, n);
        }
        let state = &store.trigger_states(None).await.unwrap()[0];
        assert_eq!(state.last_error.as_deref(), Some("unreachable"));
        assert_eq!(state.last_result.as_deref(), Some("failed"));
        assert_eq!(state.last_event, None);
        let outcome = TriggerOutcome {
            event: "poll",
            commit: None,
            result: "skipped",
            execution: None,
            at: 9,
        };
        store
            .record_trigger_outcome("shop", 0, &outcome)
            .await
            .unwrap();
        let state = &store.trigger_states(None).await.unwrap()[0];
        assert_eq!(
            (state.last_error.as_deref(), state.consecutive_failures),
            (None, 0)
        );
    }

    #[tokio::test]
    async fn re_registering_drops_the_states_of_triggers_that_are_gone() {
        let store = store().await;
        store
            .register_pipeline(&pipeline("shop", "v1"), 3)
            .await
            .unwrap();
        for trigger in 0..3 {
            store.set_known_refs("shop", trigger, "{}").await.unwrap();
        }
        store
            .register_pipeline(&pipeline("shop", "v2"), 1)
            .await
            .unwrap();
        let states = store.trigger_states(None).await.unwrap();
        assert_eq!(states.iter().map(|s| s.trigger).collect::<Vec<_>>(), [0]);
        assert_eq!(store.registered_pipelines().await.unwrap()[0].text, "v2");
        assert!(store.unregister_pipeline("shop").await.unwrap());
        assert!(store.registered_pipelines().await.unwrap().is_empty());
        assert!(store.trigger_states(None).await.unwrap().is_empty());
        assert!(!store.unregister_pipeline("shop").await.unwrap());
    }

    #[tokio::test]
    async fn a_dedup_key_is_claimed_once_and_released_only_without_an_execution() {
        let store = store().await;
        let key = "commit:shop/checkout/abc";
        assert_eq!(store.dedup_execution(key).await.unwrap(), None);
        assert!(store.claim_dedup(key, "shop", 1).await.unwrap());
        assert!(!store.claim_dedup(key, "shop", 2).await.unwrap());
        assert_eq!(store.dedup_execution(key).await.unwrap(), Some(None));
        store.release_dedup(key).await.unwrap();
        assert!(store.claim_dedup(key, "shop", 3).await.unwrap());
        store.set_dedup_execution(key, "e1").await.unwrap();
        store.release_dedup(key).await.unwrap();
        assert_eq!(
            store.dedup_execution(key).await.unwrap(),
            Some(Some("e1".to_string()))
        );
        assert!(!store.claim_dedup(key, "shop", 4).await.unwrap());
    }

    #[tokio::test]
    async fn a_delivery_id_is_new_once_until_it_is_pruned() {
        let store = store().await;
        assert!(
            store
                .record_delivery("shop", "github", "d1", 10)
                .await
                .unwrap()
        );
        assert!(
            !store
                .record_delivery("shop", "github", "d1", 11)
                .await
                .unwrap()
        );
        // Another pipeline or forge may use the same id.
        assert!(
            store
                .record_delivery("shop", "gitlab", "d1", 12)
                .await
                .unwrap()
        );
        assert!(
            store
                .record_delivery("other", "github", "d1", 12)
                .await
                .unwrap()
        );
        assert_eq!(store.prune_deliveries(11).await.unwrap(), 1);
        assert!(
            store
                .record_delivery("shop", "github", "d1", 20)
                .await
                .unwrap()
        );
    }
}
