//! The parameter store over a [`Db`] (SQLite or PostgreSQL): versions, labels, listing,
//! history, key rotation.

use std::collections::BTreeSet;
use std::sync::Arc;

use gantry_db::{Backend, Db};
use jiff::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row as _, Transaction};
use tokio::sync::RwLock;

use crate::clock::{Clock, SystemClock};
use crate::crypto::{KeyId, MasterKey, NONCE_LEN, Sealed};
use crate::error::ParamError;
use crate::name::{Label, ParamName, ParamPath, ParamType, Pick, Selector};
use crate::secret::SecretValue;

/// Largest value, in bytes of UTF-8 (SSM's advanced tier).
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// Versions kept per parameter; older ones are dropped as new ones arrive.
pub const MAX_HISTORY: usize = 100;
/// Labels one version may carry.
pub const MAX_LABELS_PER_VERSION: usize = 10;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// Bumped when the tables below change shape, so an older binary refuses a newer store
/// instead of misreading it.
const SCHEMA_VERSION: &str = "1";

/// The store's tables, written for SQLite ([`Db::apply_schema`] translates them for
/// PostgreSQL, after [`schema_for`] drops SQLite's `STRICT`). All are prefixed `param_`
/// because the server shares one database among crates. sqlx's migrator is not used: its
/// one `_sqlx_migrations` table is the server's, and version numbers from two crates
/// would collide there.
const SCHEMA: &str = concat!(
    "CREATE TABLE IF NOT EXISTS param_meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;",
    // One row per parameter; `latest_version` only grows while the parameter exists, so
    // versions stay gap-free and ordered even after old ones are dropped.
    "CREATE TABLE IF NOT EXISTS param_parameters (
        name           TEXT PRIMARY KEY NOT NULL,
        latest_version INTEGER NOT NULL CHECK (latest_version >= 1)
    ) STRICT;",
    // One row per kept version. A SecureString row holds only ciphertext (`value` is
    // NULL); the CHECKs make a plaintext secret unrepresentable.
    "CREATE TABLE IF NOT EXISTS param_versions (
        name           TEXT NOT NULL,
        version        INTEGER NOT NULL CHECK (version >= 1),
        type           TEXT NOT NULL CHECK (type IN ('String', 'StringList', 'SecureString')),
        value          TEXT,
        key_id         BLOB,
        nonce          BLOB,
        ciphertext     BLOB,
        description    TEXT,
        modified_at_ms INTEGER NOT NULL,
        modified_by    TEXT NOT NULL,
        PRIMARY KEY (name, version),
        CHECK ((type = 'SecureString') = (value IS NULL)),
        CHECK ((type = 'SecureString') =
               (key_id IS NOT NULL AND nonce IS NOT NULL AND ciphertext IS NOT NULL))
    ) STRICT;",
    // The primary key makes a label unique per parameter: attaching it elsewhere moves it.
    "CREATE TABLE IF NOT EXISTS param_labels (
        name    TEXT NOT NULL,
        label   TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (name, label)
    ) STRICT;",
    "CREATE INDEX IF NOT EXISTS param_labels_by_version ON param_labels (name, version);",
    "INSERT INTO param_meta (key, value) VALUES ('schema_version', '1') \
     ON CONFLICT (key) DO NOTHING",
);

/// [`SCHEMA`] for `backend`: PostgreSQL has no `STRICT` tables (its columns are typed
/// anyway), so the word is dropped there.
fn schema_for(backend: Backend) -> String {
    match backend {
        Backend::Sqlite => SCHEMA.to_owned(),
        Backend::Postgres => SCHEMA.replace(") STRICT;", ");"),
    }
}

/// `SELECT` of every column a [`Parameter`] needs, with the version's labels folded into
/// one comma-separated column (labels can't contain commas) so a read is one statement
/// and therefore one consistent snapshot. `string_agg` is both engines' spelling
/// (SQLite has it since 3.44); the order is irrelevant, labels are sorted after.
macro_rules! select_versions {
    ($rest:literal) => {
        concat!(
            "SELECT v.name, v.version, v.type, v.value, v.key_id, v.nonce, v.ciphertext, \
             v.description, v.modified_at_ms, v.modified_by, \
             (SELECT string_agg(l.label, ',') FROM param_labels l \
              WHERE l.name = v.name AND l.version = v.version) AS labels \
             FROM param_versions v ",
            $rest
        )
    };
}

/// A parameter's value as returned by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// A `String` or `StringList` value.
    Plain(String),
    /// A decrypted `SecureString`.
    Secret(SecretValue),
    /// A `SecureString` read without decryption: the value is withheld.
    Encrypted,
}

impl ParamValue {
    /// The text, if this read carries it (`None` for [`ParamValue::Encrypted`]).
    pub fn expose(&self) -> Option<&str> {
        match self {
            Self::Plain(s) => Some(s),
            Self::Secret(s) => Some(s.expose()),
            Self::Encrypted => None,
        }
    }
}

/// One version of a parameter, as `get`, `list` and `history` return it.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: ParamName,
    pub param_type: ParamType,
    pub version: u64,
    pub value: ParamValue,
    /// Labels on this version, sorted.
    pub labels: Vec<Label>,
    pub description: Option<String>,
    pub last_modified: Timestamp,
    pub modified_by: String,
    /// For a SecureString, the master key that encrypted it.
    pub key_id: Option<KeyId>,
}

impl Parameter {
    /// The items of a `StringList` (split on `,`); `None` for other types or a withheld
    /// value.
    pub fn list_items(&self) -> Option<Vec<&str>> {
        if self.param_type != ParamType::StringList {
            return None;
        }
        self.value.expose().map(|v| v.split(',').collect())
    }
}

/// The arguments of [`ParamStore::put`].
#[derive(Clone)]
pub struct PutParameter<'a> {
    pub name: &'a ParamName,
    pub value: &'a str,
    pub param_type: ParamType,
    /// Without it, putting an existing name fails with `AlreadyExists`.
    pub overwrite: bool,
    /// `None` keeps the previous version's description.
    pub description: Option<&'a str>,
    /// Who made the change, recorded on the version (a user or a pipeline).
    pub modified_by: &'a str,
}

impl<'a> PutParameter<'a> {
    pub fn new(
        name: &'a ParamName,
        value: &'a str,
        param_type: ParamType,
        modified_by: &'a str,
    ) -> Self {
        Self {
            name,
            value,
            param_type,
            overwrite: false,
            description: None,
            modified_by,
        }
    }

    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    pub fn description(mut self, description: &'a str) -> Self {
        self.description = Some(description);
        self
    }
}

impl std::fmt::Debug for PutParameter<'_> {
    // Written by hand so the value, which may be a secret, never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutParameter")
            .field("name", self.name)
            .field("value", &"***")
            .field("param_type", &self.param_type)
            .field("overwrite", &self.overwrite)
            .field("description", &self.description)
            .field("modified_by", &self.modified_by)
            .finish()
    }
}

/// The result of [`ParamStore::get_many`]: found versions in request order, and the
/// selectors whose parameter, version or label does not exist.
#[derive(Debug, Clone)]
pub struct GetMany {
    pub parameters: Vec<Parameter>,
    pub invalid: Vec<Selector>,
}

/// The result of [`ParamStore::label`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOutcome {
    /// The version the labels now point at.
    pub version: u64,
    /// Labels that break the naming rules and were not attached.
    pub invalid_labels: Vec<String>,
}

/// The result of [`ParamStore::unlabel`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlabelOutcome {
    pub removed: Vec<Label>,
    /// Labels that are malformed or not attached to that version.
    pub invalid_labels: Vec<String>,
}

/// A hierarchical, versioned, labelled parameter store in a shared database (SQLite or
/// PostgreSQL).
///
/// Lock order: an operation takes the master-key lock before it takes a database
/// connection, so a key rotation (which holds the key exclusively while it rewrites
/// rows) can never deadlock against a reader holding a connection.
pub struct ParamStore {
    pub(crate) db: Db,
    /// Read-locked for every operation that seals or opens values, write-locked by
    /// `rotate_key`, so no value is sealed with a key that is being retired.
    pub(crate) key: RwLock<MasterKey>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ParamStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamStore").finish_non_exhaustive()
    }
}

pub(crate) fn to_db_version(version: u64) -> Option<i64> {
    i64::try_from(version).ok()
}

fn from_db_version(version: i64) -> Result<u64, ParamError> {
    u64::try_from(version).map_err(|_| ParamError::Corrupt {
        reason: format!("negative version {version}"),
    })
}

/// A `param_versions` row before decryption.
pub(crate) struct VersionRow {
    pub(crate) name: ParamName,
    pub(crate) version: u64,
    pub(crate) param_type: ParamType,
    value: Option<String>,
    sealed: Option<Sealed>,
    description: Option<String>,
    modified_at_ms: i64,
    modified_by: String,
    labels: Option<String>,
}

impl VersionRow {
    fn from_row(row: &AnyRow) -> Result<Self, ParamError> {
        let name = ParamName::from_stored(row.try_get("name")?)?;
        let version = from_db_version(row.try_get("version")?)?;
        let type_text: String = row.try_get("type")?;
        let param_type = type_text.parse().map_err(|_| ParamError::Corrupt {
            reason: format!("version {version} of {name} has type {type_text:?}"),
        })?;
        let key_id: Option<Vec<u8>> = row.try_get("key_id")?;
        let nonce: Option<Vec<u8>> = row.try_get("nonce")?;
        let ciphertext: Option<Vec<u8>> = row.try_get("ciphertext")?;
        let sealed = match (key_id, nonce, ciphertext) {
            (Some(key_id), Some(nonce), Some(ciphertext)) => {
                let bad = || ParamError::Corrupt {
                    reason: format!("version {version} of {name} has a malformed ciphertext"),
                };
                Some(Sealed {
                    key_id: KeyId::from_slice(&key_id).ok_or_else(bad)?,
                    nonce: <[u8; NONCE_LEN]>::try_from(nonce.as_slice()).map_err(|_| bad())?,
                    ciphertext,
                })
            }
            _ => None,
        };
        Ok(Self {
            name,
            version,
            param_type,
            value: row.try_get("value")?,
            sealed,
            description: row.try_get("description")?,
            modified_at_ms: row.try_get("modified_at_ms")?,
            modified_by: row.try_get("modified_by")?,
            labels: row.try_get("labels")?,
        })
    }

    /// The value, decrypted with `key` when asked for; plain values need no key.
    pub(crate) fn value(&self, decrypt: bool, key: &MasterKey) -> Result<ParamValue, ParamError> {
        let corrupt = |what: &str| ParamError::Corrupt {
            reason: format!("version {} of {} {what}", self.version, self.name),
        };
        if !self.param_type.is_secure() {
            return self
                .value
                .clone()
                .map(ParamValue::Plain)
                .ok_or_else(|| corrupt("has no value"));
        }
        if !decrypt {
            return Ok(ParamValue::Encrypted);
        }
        let sealed = self
            .sealed
            .as_ref()
            .ok_or_else(|| corrupt("has no ciphertext"))?;
        key.open(&self.name, self.version, sealed)
            .map(ParamValue::Secret)
    }

    fn into_parameter(self, decrypt: bool, key: &MasterKey) -> Result<Parameter, ParamError> {
        let value = self.value(decrypt, key)?;
        let mut labels = self
            .labels
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                Label::parse(l).map_err(|_| ParamError::Corrupt {
                    reason: format!("{} has an invalid stored label {l:?}", self.name),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        labels.sort();
        let last_modified =
            Timestamp::from_millisecond(self.modified_at_ms).map_err(|_| ParamError::Corrupt {
                reason: format!(
                    "version {} of {} has an impossible time {}",
                    self.version, self.name, self.modified_at_ms
                ),
            })?;
        Ok(Parameter {
            name: self.name,
            param_type: self.param_type,
            version: self.version,
            value,
            labels,
            description: self.description,
            last_modified,
            modified_by: self.modified_by,
            key_id: self.sealed.map(|s| s.key_id),
        })
    }
}

async fn parameter_exists(
    conn: &mut AnyConnection,
    name: &ParamName,
) -> Result<Option<i64>, ParamError> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT latest_version FROM param_parameters WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(conn)
            .await?,
    )
}

/// Reads the version a selector picks; a missing parameter, version or label is an
/// error of its own kind, never a fallback to another version.
pub(crate) async fn fetch_selected(
    conn: &mut AnyConnection,
    selector: &Selector,
) -> Result<VersionRow, ParamError> {
    let name = selector.name.as_str();
    let row = match &selector.pick {
        Pick::Latest => {
            sqlx::query(select_versions!(
                "JOIN param_parameters p ON p.name = v.name AND p.latest_version = v.version \
                 WHERE v.name = $1"
            ))
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
        }
        Pick::Version(version) => match to_db_version(*version) {
            Some(version) => {
                sqlx::query(select_versions!("WHERE v.name = $1 AND v.version = $2"))
                    .bind(name)
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?
            }
            None => None,
        },
        Pick::Label(label) => {
            sqlx::query(select_versions!(
                "JOIN param_labels sel ON sel.name = v.name AND sel.version = v.version \
                 WHERE v.name = $1 AND sel.label = $2"
            ))
            .bind(name)
            .bind(label.as_str())
            .fetch_optional(&mut *conn)
            .await?
        }
    };
    if let Some(row) = row {
        return VersionRow::from_row(&row);
    }
    let exists = parameter_exists(conn, &selector.name).await?.is_some();
    Err(match (&selector.pick, exists) {
        (_, false) => ParamError::NotFound {
            name: name.to_owned(),
        },
        (Pick::Version(version), true) => ParamError::VersionNotFound {
            name: name.to_owned(),
            version: *version,
        },
        (Pick::Label(label), true) => ParamError::LabelNotFound {
            name: name.to_owned(),
            label: label.to_string(),
        },
        (Pick::Latest, true) => ParamError::Corrupt {
            reason: format!("the latest version of {name} is missing"),
        },
    })
}

impl ParamStore {
    /// Opens the store on a shared database, creating its tables if needed. Stamps
    /// versions with the system clock.
    pub async fn open(db: Db, key: MasterKey) -> Result<Self, ParamError> {
        Self::open_with_clock(db, key, Arc::new(SystemClock)).await
    }

    /// [`ParamStore::open`] with a chosen clock (tests use [`crate::ManualClock`]).
    pub async fn open_with_clock(
        db: Db,
        key: MasterKey,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ParamError> {
        db.apply_schema(&schema_for(db.backend())).await?;
        let schema: String =
            sqlx::query_scalar("SELECT value FROM param_meta WHERE key = 'schema_version'")
                .fetch_one(db.pool())
                .await?;
        if schema != SCHEMA_VERSION {
            return Err(ParamError::Corrupt {
                reason: format!(
                    "parameter tables have schema version {schema}, this build reads \
                     {SCHEMA_VERSION}"
                ),
            });
        }
        Ok(Self {
            db,
            key: RwLock::new(key),
            clock,
        })
    }

    /// A read-only transaction whose statements all see one snapshot: SQLite's deferred
    /// transaction does (from its first read); PostgreSQL's default READ COMMITTED
    /// takes a new snapshot per statement, so it asks for REPEATABLE READ.
    pub(crate) async fn snapshot(&self) -> Result<Transaction<'static, Any>, ParamError> {
        Ok(self.db.begin_snapshot().await?)
    }

    /// The id of the master key the store currently encrypts with.
    pub async fn key_id(&self) -> KeyId {
        self.key.read().await.id()
    }

    /// Creates a parameter at version 1, or with `overwrite` adds the next version, and
    /// returns the new version number.
    ///
    /// Every successful put adds a version, even with an unchanged value, as SSM does.
    /// The type may change on overwrite (SSM allows it); earlier versions keep their
    /// type and value. When [`MAX_HISTORY`] versions exist the oldest is dropped, unless
    /// it carries a label, in which case the put fails and nothing changes.
    ///
    /// Puts run in a [`Db::begin_write`] transaction: concurrent puts of one name, even
    /// from other processes, are serialised by the database's write lock (SQLite's, or
    /// PostgreSQL's advisory lock) and get consecutive versions.
    pub async fn put(&self, req: PutParameter<'_>) -> Result<u64, ParamError> {
        let name = req.name;
        if req.value.is_empty() {
            return Err(ParamError::ValueEmpty {
                name: name.to_string(),
            });
        }
        if req.value.len() > MAX_VALUE_BYTES {
            return Err(ParamError::ValueTooLarge {
                name: name.to_string(),
                size: req.value.len(),
                max: MAX_VALUE_BYTES,
            });
        }
        if let Some(description) = req.description {
            let len = description.chars().count();
            if len > MAX_DESCRIPTION_LEN {
                return Err(ParamError::DescriptionTooLong {
                    name: name.to_string(),
                    len,
                    max: MAX_DESCRIPTION_LEN,
                });
            }
        }

        let key = self.key.read().await;
        let now = self.clock.now().as_millisecond();
        let mut tx = self.db.begin_write().await?;

        let latest = parameter_exists(&mut tx, name).await?;
        let (version, description) = match latest {
            Some(_) if !req.overwrite => {
                return Err(ParamError::AlreadyExists {
                    name: name.to_string(),
                });
            }
            None => (1_i64, req.description.map(str::to_owned)),
            Some(latest) => {
                make_room_for_a_version(&mut tx, name).await?;
                let description = match req.description {
                    Some(d) => Some(d.to_owned()),
                    None => sqlx::query_scalar::<_, Option<String>>(
                        "SELECT description FROM param_versions WHERE name = $1 AND version = $2",
                    )
                    .bind(name.as_str())
                    .bind(latest)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten(),
                };
                (latest + 1, description)
            }
        };

        let (value, sealed) = if req.param_type.is_secure() {
            let sealed = key.seal(name, from_db_version(version)?, req.value)?;
            (None, Some(sealed))
        } else {
            (Some(req.value), None)
        };
        sqlx::query(
            "INSERT INTO param_versions \
             (name, version, type, value, key_id, nonce, ciphertext, description, \
              modified_at_ms, modified_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(name.as_str())
        .bind(version)
        .bind(req.param_type.as_str())
        .bind(value)
        .bind(sealed.as_ref().map(|s| s.key_id.as_bytes().as_slice()))
        .bind(sealed.as_ref().map(|s| s.nonce.as_slice()))
        .bind(sealed.as_ref().map(|s| s.ciphertext.as_slice()))
        .bind(description)
        .bind(now)
        .bind(req.modified_by)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO param_parameters (name, latest_version) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET latest_version = excluded.latest_version",
        )
        .bind(name.as_str())
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        from_db_version(version)
    }

    /// Reads the version `selector` picks. A SecureString's value is decrypted only with
    /// `decrypt`; otherwise it is [`ParamValue::Encrypted`] and no key is needed.
    pub async fn get(&self, selector: &Selector, decrypt: bool) -> Result<Parameter, ParamError> {
        let key = self.key.read().await;
        let mut conn = self.db.pool().acquire().await?;
        fetch_selected(&mut conn, selector)
            .await?
            .into_parameter(decrypt, &key)
    }

    /// Reads several selectors from one snapshot, like SSM's GetParameters: selectors
    /// that pick nothing are returned in [`GetMany::invalid`] instead of failing the call.
    /// Any other error (a wrong master key, a database error) fails the call.
    pub async fn get_many(
        &self,
        selectors: &[Selector],
        decrypt: bool,
    ) -> Result<GetMany, ParamError> {
        let key = self.key.read().await;
        let mut tx = self.snapshot().await?;
        let mut out = GetMany {
            parameters: Vec::with_capacity(selectors.len()),
            invalid: Vec::new(),
        };
        for selector in selectors {
            match fetch_selected(&mut tx, selector).await {
                Ok(row) => out.parameters.push(row.into_parameter(decrypt, &key)?),
                Err(e) if e.is_not_found() => out.invalid.push(selector.clone()),
                Err(e) => return Err(e),
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// The latest version of every parameter below `path`, sorted by name, like SSM's
    /// GetParametersByPath: without `recursive` only direct children (`/a/b/x` for path
    /// `/a/b`, not `/a/b/x/y`); with it, all descendants. The path itself is not a child
    /// of itself. With `decrypt`, one SecureString that can't be decrypted fails the
    /// whole call rather than returning a partial list.
    pub async fn list(
        &self,
        path: &ParamPath,
        recursive: bool,
        decrypt: bool,
    ) -> Result<Vec<Parameter>, ParamError> {
        let prefix = path.child_prefix();
        // Every name under `prefix` sorts between `prefix` and `prefix` with its final
        // '/' replaced by '0', the next byte: a range scan on the primary key (names
        // compare bytewise on both engines: BINARY on SQLite, COLLATE "C" on
        // PostgreSQL), with no LIKE wildcards to escape (`_` is legal in names). A
        // direct child has no '/' after the prefix; the pattern `%/%` holds no letter
        // and no escape, so LIKE means the same on both engines. Names are ASCII, so
        // `substr`'s character position is the byte position.
        let upper = format!("{}0", prefix.strip_suffix('/').unwrap_or(&prefix));
        // i32: PostgreSQL's substr takes an integer, and has no implicit bigint cast.
        let rest_starts_at = i32::try_from(prefix.len() + 1).unwrap_or(i32::MAX);
        let key = self.key.read().await;
        let mut conn = self.db.pool().acquire().await?;
        let rows = sqlx::query(select_versions!(
            "JOIN param_parameters p ON p.name = v.name AND p.latest_version = v.version \
             WHERE v.name > $1 AND v.name < $2 \
               AND ($3 = 1 OR substr(v.name, $4) NOT LIKE '%/%' ESCAPE '\\') \
             ORDER BY v.name"
        ))
        .bind(prefix.as_str())
        .bind(upper)
        .bind(i64::from(recursive))
        .bind(rest_starts_at)
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| VersionRow::from_row(row)?.into_parameter(decrypt, &key))
            .collect()
    }

    /// Every kept version of a parameter, oldest first and newest last, with its labels.
    pub async fn history(
        &self,
        name: &ParamName,
        decrypt: bool,
    ) -> Result<Vec<Parameter>, ParamError> {
        let key = self.key.read().await;
        let mut conn = self.db.pool().acquire().await?;
        let rows = sqlx::query(select_versions!("WHERE v.name = $1 ORDER BY v.version"))
            .bind(name.as_str())
            .fetch_all(&mut *conn)
            .await?;
        if rows.is_empty() {
            return Err(ParamError::NotFound {
                name: name.to_string(),
            });
        }
        rows.iter()
            .map(|row| VersionRow::from_row(row)?.into_parameter(decrypt, &key))
            .collect()
    }

    /// Attaches labels to a version (the latest when `version` is `None`), moving any
    /// label that was on another version of the parameter. Malformed labels are not
    /// attached and are returned in [`LabelOutcome::invalid_labels`], as SSM does; the
    /// valid ones are attached. Fails without change if the version would end up with
    /// more than [`MAX_LABELS_PER_VERSION`] labels.
    pub async fn label<S: AsRef<str>>(
        &self,
        name: &ParamName,
        version: Option<u64>,
        labels: &[S],
    ) -> Result<LabelOutcome, ParamError> {
        let mut valid = BTreeSet::new();
        let mut invalid_labels = Vec::new();
        for label in labels {
            match Label::parse(label.as_ref()) {
                Ok(l) => {
                    valid.insert(l);
                }
                Err(_) => invalid_labels.push(label.as_ref().to_owned()),
            }
        }

        let mut tx = self.db.begin_write().await?;
        let version = existing_version(&mut tx, name, version).await?;
        let attached: Vec<String> =
            sqlx::query_scalar("SELECT label FROM param_labels WHERE name = $1 AND version = $2")
                .bind(name.as_str())
                .bind(version)
                .fetch_all(&mut *tx)
                .await?;
        let mut after: BTreeSet<&str> = attached.iter().map(String::as_str).collect();
        after.extend(valid.iter().map(Label::as_str));
        if after.len() > MAX_LABELS_PER_VERSION {
            return Err(ParamError::TooManyLabels {
                name: name.to_string(),
                version: from_db_version(version)?,
                max: MAX_LABELS_PER_VERSION,
            });
        }
        for label in &valid {
            sqlx::query(
                "INSERT INTO param_labels (name, label, version) VALUES ($1, $2, $3) \
                 ON CONFLICT (name, label) DO UPDATE SET version = excluded.version",
            )
            .bind(name.as_str())
            .bind(label.as_str())
            .bind(version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(LabelOutcome {
            version: from_db_version(version)?,
            invalid_labels,
        })
    }

    /// Detaches labels from a version. Labels that are malformed or not on that version
    /// are returned in [`UnlabelOutcome::invalid_labels`].
    pub async fn unlabel<S: AsRef<str>>(
        &self,
        name: &ParamName,
        version: u64,
        labels: &[S],
    ) -> Result<UnlabelOutcome, ParamError> {
        let mut tx = self.db.begin_write().await?;
        let db_version = existing_version(&mut tx, name, Some(version)).await?;
        let mut outcome = UnlabelOutcome {
            removed: Vec::new(),
            invalid_labels: Vec::new(),
        };
        for label in labels {
            let removed = match Label::parse(label.as_ref()) {
                Ok(l) => {
                    let done = sqlx::query(
                        "DELETE FROM param_labels WHERE name = $1 AND label = $2 AND version = $3",
                    )
                    .bind(name.as_str())
                    .bind(l.as_str())
                    .bind(db_version)
                    .execute(&mut *tx)
                    .await?;
                    (done.rows_affected() > 0).then_some(l)
                }
                Err(_) => None,
            };
            match removed {
                Some(l) => outcome.removed.push(l),
                None => outcome.invalid_labels.push(label.as_ref().to_owned()),
            }
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Deletes a parameter with all its versions and labels. Putting the name again
    /// starts over at version 1, as in SSM.
    pub async fn delete(&self, name: &ParamName) -> Result<(), ParamError> {
        let mut tx = self.db.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM param_parameters WHERE name = $1")
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(ParamError::NotFound {
                name: name.to_string(),
            });
        }
        for statement in [
            "DELETE FROM param_labels WHERE name = $1",
            "DELETE FROM param_versions WHERE name = $1",
        ] {
            sqlx::query(statement)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Re-encrypts every SecureString version under `new_key` in one transaction, then
    /// makes `new_key` the store's key. Returns how many versions were re-encrypted.
    ///
    /// All or nothing: if any version can't be decrypted with the current key the
    /// rotation fails (`WrongMasterKey` or `DecryptionFailed`) and no row changes.
    /// Versions already under `new_key` are left as they are, so a rotation that is
    /// repeated after its commit does no harm.
    pub async fn rotate_key(&self, new_key: MasterKey) -> Result<usize, ParamError> {
        let mut key = self.key.write().await;
        let mut tx = self.db.begin_write().await?;
        let rows = sqlx::query(select_versions!("WHERE v.type = 'SecureString'"))
            .fetch_all(&mut *tx)
            .await?;
        let mut resealed = Vec::with_capacity(rows.len());
        for row in &rows {
            let row = VersionRow::from_row(row)?;
            if row
                .sealed
                .as_ref()
                .is_some_and(|s| s.key_id == new_key.id())
            {
                continue;
            }
            let ParamValue::Secret(plain) = row.value(true, &key)? else {
                continue;
            };
            let sealed = new_key.seal(&row.name, row.version, plain.expose())?;
            resealed.push((row.name, row.version, sealed));
        }
        for (name, version, sealed) in &resealed {
            sqlx::query(
                "UPDATE param_versions SET key_id = $1, nonce = $2, ciphertext = $3 \
                 WHERE name = $4 AND version = $5",
            )
            .bind(sealed.key_id.as_bytes().as_slice())
            .bind(sealed.nonce.as_slice())
            .bind(sealed.ciphertext.as_slice())
            .bind(name.as_str())
            .bind(to_db_version(*version))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        *key = new_key;
        Ok(resealed.len())
    }

    /// Checks that every stored SecureString was encrypted with the store's key, so a
    /// server can report a wrong `GANTRY_MASTER_KEY` at start rather than at the first
    /// deploy that needs a secret.
    pub async fn check_master_key(&self) -> Result<(), ParamError> {
        let key = self.key.read().await;
        let mut conn = self.db.pool().acquire().await?;
        let row = sqlx::query(
            "SELECT name, version, key_id FROM param_versions \
             WHERE type = 'SecureString' AND key_id != $1 LIMIT 1",
        )
        .bind(key.id().as_bytes().as_slice())
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(());
        };
        let name: String = row.try_get("name")?;
        let version = from_db_version(row.try_get("version")?)?;
        let found: Vec<u8> = row.try_get("key_id")?;
        Err(match KeyId::from_slice(&found) {
            Some(found) => ParamError::WrongMasterKey {
                name,
                version,
                found,
                expected: key.id(),
            },
            None => ParamError::Corrupt {
                reason: format!("version {version} of {name} has a malformed key id"),
            },
        })
    }
}

/// Drops the oldest version if the parameter already has [`MAX_HISTORY`], refusing
/// when that version carries a label (SSM's ParameterMaxVersionLimitExceeded).
async fn make_room_for_a_version(
    conn: &mut AnyConnection,
    name: &ParamName,
) -> Result<(), ParamError> {
    let (count, oldest): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(*), min(version) FROM param_versions WHERE name = $1")
            .bind(name.as_str())
            .fetch_one(&mut *conn)
            .await?;
    let Some(oldest) = oldest else {
        return Ok(());
    };
    if usize::try_from(count).unwrap_or(0) < MAX_HISTORY {
        return Ok(());
    }
    let labelled = sqlx::query_scalar::<_, i64>(
        "SELECT version FROM param_labels WHERE name = $1 AND version = $2 LIMIT 1",
    )
    .bind(name.as_str())
    .bind(oldest)
    .fetch_optional(&mut *conn)
    .await?
    .is_some();
    if labelled {
        return Err(ParamError::HistoryFullWithLabel {
            name: name.to_string(),
            oldest: from_db_version(oldest)?,
            max: MAX_HISTORY,
        });
    }
    sqlx::query("DELETE FROM param_versions WHERE name = $1 AND version = $2")
        .bind(name.as_str())
        .bind(oldest)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The database version number of `version` of `name` (the latest if `None`), or the
/// matching not-found error.
async fn existing_version(
    conn: &mut AnyConnection,
    name: &ParamName,
    version: Option<u64>,
) -> Result<i64, ParamError> {
    let Some(latest) = parameter_exists(conn, name).await? else {
        return Err(ParamError::NotFound {
            name: name.to_string(),
        });
    };
    let Some(version) = version else {
        return Ok(latest);
    };
    let not_found = || ParamError::VersionNotFound {
        name: name.to_string(),
        version,
    };
    let db_version = to_db_version(version).ok_or_else(not_found)?;
    let kept = sqlx::query_scalar::<_, i64>(
        "SELECT version FROM param_versions WHERE name = $1 AND version = $2",
    )
    .bind(name.as_str())
    .bind(db_version)
    .fetch_optional(&mut *conn)
    .await?
    .is_some();
    if kept {
        Ok(db_version)
    } else {
        Err(not_found())
    }
}
