//! The registry's metadata in gantry's database (SQLite or PostgreSQL,
//! through [`gantry_db::Db`]): repositories, which blobs each repository
//! may serve, manifests (their exact bytes), tags and open uploads. Blob
//! bytes are not here; they live in the artifact store.
//!
//! Queries are written once, in the dialect both engines accept (see
//! `gantry_db`); writes that check before they write (quotas, upload
//! limits) run alone, in [`Db::begin_write`].

use gantry_db::{Backend, Db};
use sqlx::{AnyConnection, Executor as _, Row as _};

use crate::names::{Digest, RepoName};

/// The registry's tables, written for SQLite; [`Db::apply_schema`]
/// translates them for PostgreSQL.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS registry_repositories (
        name       TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL
    );
    -- A link makes a blob of the shared store visible in one repository.
    CREATE TABLE IF NOT EXISTS registry_blobs (
        repository TEXT NOT NULL REFERENCES registry_repositories (name),
        digest     TEXT NOT NULL,
        size       INTEGER NOT NULL,
        linked_at  INTEGER NOT NULL,
        PRIMARY KEY (repository, digest)
    );
    CREATE INDEX IF NOT EXISTS registry_blobs_digest ON registry_blobs (digest);
    CREATE TABLE IF NOT EXISTS registry_manifests (
        repository TEXT NOT NULL REFERENCES registry_repositories (name),
        digest     TEXT NOT NULL,
        media_type TEXT NOT NULL,
        content    BLOB NOT NULL,
        pushed_at  INTEGER NOT NULL,
        PRIMARY KEY (repository, digest)
    );
    CREATE TABLE IF NOT EXISTS registry_tags (
        repository TEXT NOT NULL,
        tag        TEXT NOT NULL,
        digest     TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (repository, tag),
        FOREIGN KEY (repository, digest) REFERENCES registry_manifests (repository, digest)
    );
    CREATE TABLE IF NOT EXISTS registry_uploads (
        id         TEXT PRIMARY KEY,
        repository TEXT NOT NULL,
        started_at INTEGER NOT NULL
    );
    -- Digests whose last link went (a blob DELETE, a link refused by a
    -- quota, garbage collection): their bytes may now be unused in the
    -- shared store, and the next garbage collection looks at them.
    CREATE TABLE IF NOT EXISTS registry_released (
        digest      TEXT PRIMARY KEY,
        released_at INTEGER NOT NULL
    )";

/// The referrers index: one row per manifest with a `subject`, holding
/// what the referrers API lists about it. Created (and filled from the
/// manifests already stored) when a registry first opens a database
/// without it. Written for SQLite, like [`SCHEMA`].
const REFERRERS_TABLE: &str = "CREATE TABLE registry_referrers (
        repository    TEXT NOT NULL,
        subject       TEXT NOT NULL,
        digest        TEXT NOT NULL,
        media_type    TEXT NOT NULL,
        size          INTEGER NOT NULL,
        artifact_type TEXT,
        annotations   TEXT,
        PRIMARY KEY (repository, subject, digest),
        FOREIGN KEY (repository, digest) REFERENCES registry_manifests (repository, digest)
    );
    CREATE INDEX registry_referrers_digest ON registry_referrers (repository, digest)";

/// What the referrers API lists about a manifest with a `subject`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Referrer {
    pub subject: Digest,
    pub artifact_type: Option<String>,
    /// A JSON object, as text.
    pub annotations: Option<String>,
}

impl Referrer {
    /// The referrer entry of a parsed manifest, if it has a subject.
    pub(crate) fn of(parsed: &crate::manifest::ParsedManifest) -> Option<Referrer> {
        Some(Referrer {
            subject: parsed.subject.clone()?,
            artifact_type: parsed.artifact_type.clone(),
            annotations: parsed
                .annotations
                .as_ref()
                .map(|a| serde_json::Value::Object(a.clone()).to_string()),
        })
    }
}

/// A row of a referrers list.
#[derive(Debug, Clone)]
pub(crate) struct ReferrerRow {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
}

/// A stored manifest.
#[derive(Debug)]
pub(crate) struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
}

/// What a manifest PUT writes, all in one transaction.
pub(crate) struct NewManifest<'a> {
    pub repo: &'a RepoName,
    pub digest: &'a Digest,
    pub media_type: &'a str,
    pub content: &'a [u8],
    pub tag: Option<&'a str>,
    /// Blobs found in the store but not yet linked to the repository.
    pub links: &'a [(Digest, u64)],
    /// Its entry in the referrers index, when it has a subject.
    pub referrer: Option<&'a Referrer>,
}

/// A stored manifest, as garbage collection reads it.
#[derive(Debug, Clone)]
pub(crate) struct ManifestRecord {
    pub repository: String,
    pub digest: String,
    pub media_type: String,
    pub content: Vec<u8>,
    pub pushed_at: i64,
}

/// A blob link, as garbage collection reads it.
#[derive(Debug, Clone)]
pub(crate) struct LinkRecord {
    pub repository: String,
    pub digest: String,
    pub size: u64,
    pub linked_at: i64,
}

/// Everything garbage collection decides from, read in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    pub manifests: Vec<ManifestRecord>,
    /// `(repository, digest)` of every tag.
    pub tags: Vec<(String, String)>,
    pub links: Vec<LinkRecord>,
    /// `(name, created_at)`.
    pub repositories: Vec<(String, i64)>,
    /// Repositories with an upload open.
    pub uploading: std::collections::BTreeSet<String>,
    /// Digests recorded in `registry_released`.
    pub released: Vec<String>,
}

/// Byte quotas a new link must fit in; `None` is no limit.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Quotas {
    pub repository: Option<u64>,
    pub total: Option<u64>,
}

/// A link refused because it would take a quota over its limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QuotaExceeded {
    Repository {
        repo: String,
        held: u64,
        limit: u64,
        adding: u64,
    },
    Total {
        held: u64,
        limit: u64,
        adding: u64,
    },
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let adding = match self {
            QuotaExceeded::Repository {
                repo, held, limit, ..
            } => {
                write!(
                    f,
                    "quota exceeded: repository {repo} holds {held} of {limit} bytes"
                )?;
                self.adding()
            }
            QuotaExceeded::Total { held, limit, .. } => {
                write!(
                    f,
                    "quota exceeded: the registry holds {held} of {limit} bytes"
                )?;
                self.adding()
            }
        };
        if adding > 0 {
            write!(f, ", and this would add {adding}")?;
        }
        Ok(())
    }
}

impl QuotaExceeded {
    fn adding(&self) -> u64 {
        match self {
            QuotaExceeded::Repository { adding, .. } | QuotaExceeded::Total { adding, .. } => {
                *adding
            }
        }
    }
}

/// Why a new upload session was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UploadsFull {
    Registry { limit: usize },
    Repository { repo: String, limit: usize },
}

/// A write that adds links: the database failed, or a quota refused it.
#[derive(Debug)]
pub(crate) enum LinkError {
    Database(sqlx::Error),
    Quota(QuotaExceeded),
}

impl From<sqlx::Error> for LinkError {
    fn from(e: sqlx::Error) -> LinkError {
        LinkError::Database(e)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    db: Db,
}

/// A size read from the database (never negative: only [`db_size`]s are
/// written).
fn size_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A size as the database holds it: a signed 64-bit integer on both
/// engines (the `Any` driver carries no unsigned type).
fn db_size(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Metadata {
    /// The database, for the catalog's read-only listings.
    pub(crate) fn pool(&self) -> &sqlx::AnyPool {
        self.db.pool()
    }

    pub(crate) async fn open(db: Db) -> Result<Metadata, sqlx::Error> {
        db.apply_schema(SCHEMA).await?;
        // The referrers index is created, and filled, by whichever registry
        // first finds it missing: the check and the creation run alone.
        let mut tx = db.begin_write().await?;
        let exists = match db.backend() {
            Backend::Sqlite => {
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'registry_referrers'"
            }
            Backend::Postgres => "SELECT 1 WHERE to_regclass('registry_referrers') IS NOT NULL",
        };
        let has_referrers: Option<i64> =
            sqlx::query_scalar(exists).fetch_optional(&mut *tx).await?;
        if has_referrers.is_none() {
            let ddl = match db.backend() {
                Backend::Sqlite => REFERRERS_TABLE.to_string(),
                Backend::Postgres => gantry_db::postgres_schema(REFERRERS_TABLE),
            };
            (&mut *tx).execute(sqlx::AssertSqlSafe(ddl)).await?;
            Self::index_existing_referrers(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(Metadata { db })
    }

    /// Enabling the referrers API on a registry that already holds
    /// manifests: the specification wants those listed in a referrers-tag
    /// index listed, and allows every stored manifest with a subject; all
    /// of them are. A manifest that no longer parses is left out.
    async fn index_existing_referrers(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        let rows =
            sqlx::query("SELECT repository, digest, media_type, content FROM registry_manifests")
                .fetch_all(&mut *conn)
                .await?;
        let mut indexed = 0;
        for row in rows {
            let media_type: String = row.try_get("media_type")?;
            let content: Vec<u8> = row.try_get("content")?;
            let Ok(parsed) = crate::manifest::parse(&content, Some(&media_type)) else {
                continue;
            };
            let Some(referrer) = Referrer::of(&parsed) else {
                continue;
            };
            let repository: String = row.try_get("repository")?;
            let digest: String = row.try_get("digest")?;
            Self::insert_referrer(
                &mut *conn,
                &repository,
                &digest,
                &media_type,
                content.len(),
                &referrer,
            )
            .await?;
            indexed += 1;
        }
        if indexed > 0 {
            tracing::info!(indexed, "indexed the referrers of stored manifests");
        }
        Ok(())
    }

    async fn insert_referrer(
        conn: &mut AnyConnection,
        repository: &str,
        digest: &str,
        media_type: &str,
        size: usize,
        referrer: &Referrer,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO registry_referrers
               (repository, subject, digest, media_type, size, artifact_type, annotations)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (repository, subject, digest) DO NOTHING",
        )
        .bind(repository)
        .bind(referrer.subject.as_str())
        .bind(digest)
        .bind(media_type)
        .bind(i64::try_from(size).unwrap_or(i64::MAX))
        .bind(referrer.artifact_type.as_deref())
        .bind(referrer.annotations.as_deref())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Up to `n` manifests of `repo` whose subject is `subject`, after the
    /// digest `last`, in digest order; only those of `artifact_type` when
    /// one is given.
    pub(crate) async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
        last: &str,
        n: i64,
    ) -> Result<Vec<ReferrerRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT digest, media_type, size, artifact_type, annotations FROM registry_referrers
             WHERE repository = $1 AND subject = $2 AND digest > $3
               AND ($4 IS NULL OR artifact_type = $4)
             ORDER BY digest LIMIT $5",
        )
        .bind(repo.as_str())
        .bind(subject.as_str())
        .bind(last)
        .bind(artifact_type)
        .bind(n)
        .fetch_all(self.db.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ReferrerRow {
                    digest: row.try_get("digest")?,
                    media_type: row.try_get("media_type")?,
                    size: size_of(row.try_get("size")?),
                    artifact_type: row.try_get("artifact_type")?,
                    annotations: row.try_get("annotations")?,
                })
            })
            .collect()
    }

    async fn ensure_repository(
        conn: &mut AnyConnection,
        repo: &RepoName,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO registry_repositories (name, created_at) VALUES ($1, $2)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(repo.as_str())
        .bind(gantry_clock::now_ms())
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn insert_link(
        conn: &mut AnyConnection,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO registry_blobs (repository, digest, size, linked_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (repository, digest) DO NOTHING",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .bind(db_size(size))
        .bind(gantry_clock::now_ms())
        .execute(conn)
        .await?;
        Ok(())
    }

    pub(crate) async fn repository_exists(&self, repo: &RepoName) -> Result<bool, sqlx::Error> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM registry_repositories WHERE name = $1")
                .bind(repo.as_str())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(found.is_some())
    }

    /// Makes a blob of the store visible in `repo`.
    pub(crate) async fn link_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        quotas: Quotas,
    ) -> Result<(), LinkError> {
        let mut tx = self.db.begin_write().await?;
        Self::check_quotas_in(&mut tx, repo, &[(digest.clone(), size)], quotas)
            .await?
            .map_err(LinkError::Quota)?;
        Self::ensure_repository(&mut tx, repo).await?;
        Self::insert_link(&mut tx, repo, digest, size).await?;
        Ok(tx.commit().await?)
    }

    /// Whether linking `new` into `repo` fits the quotas. The writes that
    /// link check again inside their transaction; this early check spares
    /// a client uploading bytes that could never be linked.
    pub(crate) async fn check_quotas(
        &self,
        repo: &RepoName,
        new: &[(Digest, u64)],
        quotas: Quotas,
    ) -> Result<Result<(), QuotaExceeded>, sqlx::Error> {
        if quotas.repository.is_none() && quotas.total.is_none() {
            return Ok(Ok(()));
        }
        let mut conn = self.db.pool().acquire().await?;
        Self::check_quotas_in(&mut conn, repo, new, quotas).await
    }

    /// The bytes of the blobs linked to `repo`.
    pub(crate) async fn repository_bytes(&self, repo: &RepoName) -> Result<u64, sqlx::Error> {
        let held: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM registry_blobs WHERE repository = $1",
        )
        .bind(repo.as_str())
        .fetch_one(self.db.pool())
        .await?;
        Ok(size_of(held))
    }

    /// Only bytes a link adds count: a blob already linked to `repo` adds
    /// nothing to its quota, and a blob linked anywhere adds nothing to the
    /// total (the store holds it once). So pushing content again always
    /// works, even over a quota lowered since.
    async fn check_quotas_in(
        conn: &mut AnyConnection,
        repo: &RepoName,
        new: &[(Digest, u64)],
        quotas: Quotas,
    ) -> Result<Result<(), QuotaExceeded>, sqlx::Error> {
        if quotas.repository.is_none() && quotas.total.is_none() {
            return Ok(Ok(()));
        }
        let mut seen = std::collections::HashSet::new();
        let (mut repo_adding, mut total_adding) = (0u64, 0u64);
        for (digest, size) in new {
            if !seen.insert(digest) {
                continue;
            }
            let in_repo: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM registry_blobs WHERE repository = $1 AND digest = $2",
            )
            .bind(repo.as_str())
            .bind(digest.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            if in_repo.is_some() {
                continue;
            }
            repo_adding += size;
            let anywhere: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM registry_blobs WHERE digest = $1 LIMIT 1")
                    .bind(digest.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
            if anywhere.is_none() {
                total_adding += size;
            }
        }
        if let Some(limit) = quotas.repository
            && repo_adding > 0
        {
            let held: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM registry_blobs WHERE repository = $1",
            )
            .bind(repo.as_str())
            .fetch_one(&mut *conn)
            .await?;
            let held = size_of(held);
            if held.saturating_add(repo_adding) > limit {
                return Ok(Err(QuotaExceeded::Repository {
                    repo: repo.to_string(),
                    held,
                    limit,
                    adding: repo_adding,
                }));
            }
        }
        if let Some(limit) = quotas.total
            && total_adding > 0
        {
            let held: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM
                 (SELECT MAX(size) AS size FROM registry_blobs GROUP BY digest) AS held",
            )
            .fetch_one(&mut *conn)
            .await?;
            let held = size_of(held);
            if held.saturating_add(total_adding) > limit {
                return Ok(Err(QuotaExceeded::Total {
                    held,
                    limit,
                    adding: total_adding,
                }));
            }
        }
        Ok(Ok(()))
    }

    /// The size of a blob linked to `repo`, or `None` when it isn't linked.
    pub(crate) async fn blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<u64>, sqlx::Error> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT size FROM registry_blobs WHERE repository = $1 AND digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(size.map(size_of))
    }

    /// The size of a blob linked to any repository (for a mount that names
    /// no source repository).
    pub(crate) async fn blob_size_anywhere(
        &self,
        digest: &Digest,
    ) -> Result<Option<u64>, sqlx::Error> {
        let size: Option<i64> =
            sqlx::query_scalar("SELECT size FROM registry_blobs WHERE digest = $1 LIMIT 1")
                .bind(digest.as_str())
                .fetch_optional(self.db.pool())
                .await?;
        Ok(size.map(size_of))
    }

    /// Up to `n` repositories a blob is linked to.
    pub(crate) async fn repositories_with_blob(
        &self,
        digest: &Digest,
        n: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT repository FROM registry_blobs WHERE digest = $1 ORDER BY repository LIMIT $2",
        )
        .bind(digest.as_str())
        .bind(n)
        .fetch_all(self.db.pool())
        .await
    }

    /// Removes a blob's link; the bytes stay in the shared store, where
    /// other repositories and gantry's artifacts may still use them, until
    /// garbage collection finds them unused (the digest is recorded as
    /// released).
    pub(crate) async fn unlink_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query("DELETE FROM registry_blobs WHERE repository = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            Self::insert_released(&mut tx, digest.as_str()).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn insert_released(conn: &mut AnyConnection, digest: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO registry_released (digest, released_at) VALUES ($1, $2)
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(gantry_clock::now_ms())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Records that `digest`'s bytes may be unused: stored, but linked by
    /// no repository (a link a quota refused after the upload).
    pub(crate) async fn record_released(&self, digest: &Digest) -> Result<(), sqlx::Error> {
        let mut conn = self.db.pool().acquire().await?;
        Self::insert_released(&mut conn, digest.as_str()).await
    }

    /// Everything garbage collection looks at, as of one moment.
    pub(crate) async fn inventory(&self) -> Result<Inventory, sqlx::Error> {
        let mut tx = self.db.begin_snapshot().await?;
        let manifests = sqlx::query(
            "SELECT repository, digest, media_type, content, pushed_at FROM registry_manifests",
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|row| {
            Ok(ManifestRecord {
                repository: row.try_get("repository")?,
                digest: row.try_get("digest")?,
                media_type: row.try_get("media_type")?,
                content: row.try_get("content")?,
                pushed_at: row.try_get("pushed_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let tags = sqlx::query_as("SELECT repository, digest FROM registry_tags")
            .fetch_all(&mut *tx)
            .await?;
        let links = sqlx::query("SELECT repository, digest, size, linked_at FROM registry_blobs")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|row| {
                Ok(LinkRecord {
                    repository: row.try_get("repository")?,
                    digest: row.try_get("digest")?,
                    size: size_of(row.try_get("size")?),
                    linked_at: row.try_get("linked_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        let repositories = sqlx::query_as("SELECT name, created_at FROM registry_repositories")
            .fetch_all(&mut *tx)
            .await?;
        let uploading = sqlx::query_scalar("SELECT DISTINCT repository FROM registry_uploads")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let released = sqlx::query_scalar("SELECT digest FROM registry_released")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Inventory {
            manifests,
            tags,
            links,
            repositories,
            uploading,
            released,
        })
    }

    /// Deletes garbage in one transaction: manifests (with their referrer
    /// entries), links (their digests recorded as released, so that bytes
    /// a crash leaves behind are found next time), and repositories left
    /// with nothing in them.
    pub(crate) async fn remove_garbage(
        &self,
        manifests: &[(String, String)],
        links: &[(String, String)],
        repositories: &[String],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        for (repository, digest) in manifests {
            for statement in [
                "DELETE FROM registry_referrers WHERE repository = $1 AND digest = $2",
                "DELETE FROM registry_tags WHERE repository = $1 AND digest = $2",
                "DELETE FROM registry_manifests WHERE repository = $1 AND digest = $2",
            ] {
                sqlx::query(statement)
                    .bind(repository)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for (repository, digest) in links {
            sqlx::query("DELETE FROM registry_blobs WHERE repository = $1 AND digest = $2")
                .bind(repository)
                .bind(digest)
                .execute(&mut *tx)
                .await?;
            Self::insert_released(&mut tx, digest).await?;
        }
        for repository in repositories {
            sqlx::query(
                "DELETE FROM registry_repositories WHERE name = $1
                   AND NOT EXISTS (SELECT 1 FROM registry_manifests WHERE repository = $1)
                   AND NOT EXISTS (SELECT 1 FROM registry_blobs WHERE repository = $1)
                   AND NOT EXISTS (SELECT 1 FROM registry_uploads WHERE repository = $1)",
            )
            .bind(repository)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Whether any repository links `digest`.
    pub(crate) async fn linked_anywhere(&self, digest: &str) -> Result<bool, sqlx::Error> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM registry_blobs WHERE digest = $1 LIMIT 1")
                .bind(digest)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(found.is_some())
    }

    /// Forgets a released digest once garbage collection dealt with it.
    pub(crate) async fn forget_released(&self, digest: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM registry_released WHERE digest = $1")
            .bind(digest)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    pub(crate) async fn manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<StoredManifest>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT media_type, content FROM registry_manifests WHERE repository = $1 AND digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(StoredManifest {
                digest: digest.clone(),
                media_type: row.try_get("media_type")?,
                content: row.try_get("content")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn manifest_exists(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, sqlx::Error> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM registry_manifests WHERE repository = $1 AND digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(found.is_some())
    }

    /// The digest a tag points at.
    pub(crate) async fn tag(
        &self,
        repo: &RepoName,
        tag: &str,
    ) -> Result<Option<Digest>, sqlx::Error> {
        let digest: Option<String> = sqlx::query_scalar(
            "SELECT digest FROM registry_tags WHERE repository = $1 AND tag = $2",
        )
        .bind(repo.as_str())
        .bind(tag)
        .fetch_optional(self.db.pool())
        .await?;
        // Only valid digests were ever written; a row that no longer parses
        // is treated as absent rather than served.
        Ok(digest.and_then(|d| Digest::parse(&d).ok()))
    }

    /// Stores a manifest, links the blobs it found in the store, and moves
    /// the tag, in one transaction: a client sees all of it or none.
    pub(crate) async fn put_manifest(
        &self,
        m: NewManifest<'_>,
        quotas: Quotas,
    ) -> Result<(), LinkError> {
        let mut tx = self.db.begin_write().await?;
        Self::check_quotas_in(&mut tx, m.repo, m.links, quotas)
            .await?
            .map_err(LinkError::Quota)?;
        Self::ensure_repository(&mut tx, m.repo).await?;
        for (digest, size) in m.links {
            Self::insert_link(&mut tx, m.repo, digest, *size).await?;
        }
        let now = gantry_clock::now_ms();
        // Same digest, same bytes: a second PUT of a manifest changes nothing
        // but its tag.
        sqlx::query(
            "INSERT INTO registry_manifests (repository, digest, media_type, content, pushed_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (repository, digest) DO NOTHING",
        )
        .bind(m.repo.as_str())
        .bind(m.digest.as_str())
        .bind(m.media_type)
        .bind(m.content)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if let Some(referrer) = m.referrer {
            Self::insert_referrer(
                &mut tx,
                m.repo.as_str(),
                m.digest.as_str(),
                m.media_type,
                m.content.len(),
                referrer,
            )
            .await?;
        }
        if let Some(tag) = m.tag {
            sqlx::query(
                "INSERT INTO registry_tags (repository, tag, digest, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repository, tag)
                 DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
            )
            .bind(m.repo.as_str())
            .bind(tag)
            .bind(m.digest.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        Ok(tx.commit().await?)
    }

    /// Deletes a manifest and every tag pointing at it.
    pub(crate) async fn delete_manifest(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM registry_tags WHERE repository = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        // Its own entry goes; entries of manifests naming it as their
        // subject stay, as they would had it never been pushed.
        sqlx::query("DELETE FROM registry_referrers WHERE repository = $1 AND digest = $2")
            .bind(repo.as_str())
            .bind(digest.as_str())
            .execute(&mut *tx)
            .await?;
        let done =
            sqlx::query("DELETE FROM registry_manifests WHERE repository = $1 AND digest = $2")
                .bind(repo.as_str())
                .bind(digest.as_str())
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub(crate) async fn delete_tag(&self, repo: &RepoName, tag: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM registry_tags WHERE repository = $1 AND tag = $2")
            .bind(repo.as_str())
            .bind(tag)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Up to `n` tags of `repo` after `last`, in lexical order.
    pub(crate) async fn tags(
        &self,
        repo: &RepoName,
        last: &str,
        n: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT tag FROM registry_tags WHERE repository = $1 AND tag > $2 ORDER BY tag LIMIT $3",
        )
        .bind(repo.as_str())
        .bind(last)
        .bind(n)
        .fetch_all(self.db.pool())
        .await
    }

    /// Up to `n` repository names after `last`, in lexical order.
    pub(crate) async fn repositories(
        &self,
        last: &str,
        n: i64,
    ) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT name FROM registry_repositories WHERE name > $1 ORDER BY name LIMIT $2",
        )
        .bind(last)
        .bind(n)
        .fetch_all(self.db.pool())
        .await
    }

    /// Records a new upload session unless the registry already holds
    /// `max_total` open uploads, or `repo` holds `max_per_repository`.
    pub(crate) async fn insert_upload(
        &self,
        id: &str,
        repo: &RepoName,
        max_total: usize,
        max_per_repository: usize,
    ) -> Result<Result<(), UploadsFull>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM registry_uploads")
            .fetch_one(&mut *tx)
            .await?;
        if usize::try_from(total).unwrap_or(usize::MAX) >= max_total {
            return Ok(Err(UploadsFull::Registry { limit: max_total }));
        }
        let in_repo: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM registry_uploads WHERE repository = $1")
                .bind(repo.as_str())
                .fetch_one(&mut *tx)
                .await?;
        if usize::try_from(in_repo).unwrap_or(usize::MAX) >= max_per_repository {
            return Ok(Err(UploadsFull::Repository {
                repo: repo.to_string(),
                limit: max_per_repository,
            }));
        }
        sqlx::query(
            "INSERT INTO registry_uploads (id, repository, started_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(repo.as_str())
        .bind(gantry_clock::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// The repository an upload was started in.
    pub(crate) async fn upload_repository(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT repository FROM registry_uploads WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
    }

    pub(crate) async fn delete_upload(&self, id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM registry_uploads WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Links a completed upload's blob and forgets the upload, together.
    pub(crate) async fn complete_upload(
        &self,
        id: &str,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
        quotas: Quotas,
    ) -> Result<(), LinkError> {
        let mut tx = self.db.begin_write().await?;
        Self::check_quotas_in(&mut tx, repo, &[(digest.clone(), size)], quotas)
            .await?
            .map_err(LinkError::Quota)?;
        Self::ensure_repository(&mut tx, repo).await?;
        Self::insert_link(&mut tx, repo, digest, size).await?;
        sqlx::query("DELETE FROM registry_uploads WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    pub(crate) async fn upload_ids(&self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT id FROM registry_uploads")
            .fetch_all(self.db.pool())
            .await
    }
}
