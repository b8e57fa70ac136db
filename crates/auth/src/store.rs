//! Users, tokens and ephemeral tokens in the shared database (SQLite or
//! PostgreSQL, through [`gantry_db`]), cached in memory so that
//! authenticating a request reads no database.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use gantry_db::{Backend, Db};
use serde::Serialize;
use sqlx::{AnyPool, Row as _};

use crate::audit::{AUDIT_SCHEMA, AUDIT_SCHEMA_POSTGRES, AUDIT_SCHEMA_SQLITE};
use crate::token::{Secret, TokenHash, token_id};
use crate::{AuthError, Grant, Identity, Role};

/// The tables, prefixed `auth_` because the server shares one database
/// among crates.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS auth_users (
        name          TEXT PRIMARY KEY NOT NULL,
        email         TEXT,
        grants        TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    ) STRICT",
    "CREATE TABLE IF NOT EXISTS auth_tokens (
        id            TEXT PRIMARY KEY NOT NULL,
        \"user\"        TEXT NOT NULL,
        hash          TEXT NOT NULL UNIQUE,
        description   TEXT,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER,
        revoked_at_ms INTEGER
    ) STRICT",
];

/// The name of the user the server creates on first start.
pub const ADMIN_USER: &str = "admin";

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub grants: Vec<Grant>,
    pub created_at_ms: i64,
}

impl User {
    fn identity(&self) -> Identity {
        Identity {
            name: self.name.clone(),
            email: self.email.clone(),
            grants: self.grants.clone(),
        }
    }
}

/// A token as listed: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// A token just created: the only time its value exists outside the caller.
#[derive(Debug)]
pub struct NewToken {
    pub info: TokenInfo,
    pub secret: Secret,
}

struct Ephemeral {
    identity: Identity,
    expires_at_ms: i64,
    /// Honoured by the registry only, never by the API (a build's token
    /// pushes images; it must not start pipelines).
    registry_only: bool,
}

/// Who a token is meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The HTTP API (and the registry).
    Api,
    /// The embedded registry only.
    Registry,
}

#[derive(Default)]
struct Cache {
    users: HashMap<String, User>,
    tokens: HashMap<TokenHash, TokenInfo>,
    ephemeral: HashMap<TokenHash, Ephemeral>,
}

/// The identity store. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    cache: RwLock<Cache>,
    /// Orders mutations so the cache follows the database's order.
    writes: tokio::sync::Mutex<()>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
}

fn grants_text(grants: &[Grant]) -> String {
    serde_json::to_string(grants).unwrap_or_else(|_| "[]".to_string())
}

impl Auth {
    /// Opens the store in a shared database, creating its tables if needed,
    /// and loads users and tokens into memory.
    pub async fn open(db: Db) -> Result<Auth, AuthError> {
        let mut tx = db.begin_write().await?;
        let engine_specific = match db.backend() {
            Backend::Sqlite => AUDIT_SCHEMA_SQLITE,
            Backend::Postgres => AUDIT_SCHEMA_POSTGRES,
        };
        for statement in SCHEMA.iter().chain(AUDIT_SCHEMA) {
            let statement = match db.backend() {
                Backend::Sqlite => statement.to_string(),
                Backend::Postgres => gantry_db::postgres_schema(statement),
            };
            sqlx::query(sqlx::AssertSqlSafe(statement))
                .execute(&mut *tx)
                .await?;
        }
        for statement in engine_specific {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let pool = db.pool();
        let mut cache = Cache::default();
        for row in sqlx::query("SELECT name, email, grants, created_at_ms FROM auth_users")
            .fetch_all(pool)
            .await?
        {
            let name: String = row.get(0);
            let grants: Vec<Grant> = serde_json::from_str(row.get::<&str, _>(2))
                .map_err(|e| AuthError::Corrupt(format!("grants of user {name}: {e}")))?;
            cache.users.insert(
                name.clone(),
                User {
                    name,
                    email: row.get(1),
                    grants,
                    created_at_ms: row.get(3),
                },
            );
        }
        for row in sqlx::query(
            "SELECT id, \"user\", hash, description, created_at_ms, expires_at_ms, revoked_at_ms
             FROM auth_tokens",
        )
        .fetch_all(pool)
        .await?
        {
            let id: String = row.get(0);
            let hash = TokenHash::from_hex(row.get::<&str, _>(2))
                .ok_or_else(|| AuthError::Corrupt(format!("hash of token {id}")))?;
            cache.tokens.insert(
                hash,
                TokenInfo {
                    id,
                    user: row.get(1),
                    description: row.get(3),
                    created_at_ms: row.get(4),
                    expires_at_ms: row.get(5),
                    revoked_at_ms: row.get(6),
                },
            );
        }
        Ok(Auth {
            inner: Arc::new(Inner {
                db,
                cache: RwLock::new(cache),
                writes: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        self.inner.db.pool()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.inner.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Cache> {
        self.inner.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Who `secret` is to the API, or why it is not accepted.
    pub fn authenticate(&self, secret: &str, now_ms: i64) -> Result<Identity, AuthError> {
        self.authenticate_for(secret, now_ms, Audience::Api)
    }

    /// Who `secret` is to `audience`, or why it is not accepted.
    pub fn authenticate_for(
        &self,
        secret: &str,
        now_ms: i64,
        audience: Audience,
    ) -> Result<Identity, AuthError> {
        let hash = Secret::new(secret).hash();
        let cache = self.read();
        if let Some(ephemeral) = cache.ephemeral.get(&hash) {
            return if ephemeral.expires_at_ms <= now_ms {
                Err(AuthError::ExpiredToken)
            } else if ephemeral.registry_only && audience == Audience::Api {
                Err(AuthError::InvalidToken)
            } else {
                Ok(ephemeral.identity.clone())
            };
        }
        let token = cache.tokens.get(&hash).ok_or(AuthError::InvalidToken)?;
        if token.revoked_at_ms.is_some() {
            return Err(AuthError::RevokedToken);
        }
        if token.expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(AuthError::ExpiredToken);
        }
        let user = cache
            .users
            .get(&token.user)
            .ok_or(AuthError::RevokedToken)?;
        Ok(user.identity())
    }

    /// A token that lives in memory only, for `ttl_ms`, for `audience`: a
    /// build's registry token, the server's own. Revoke it with
    /// [`Auth::forget_ephemeral`].
    pub fn issue_ephemeral(
        &self,
        identity: Identity,
        audience: Audience,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Secret, AuthError> {
        let secret = Secret::generate()?;
        self.register_ephemeral(&secret, identity, audience, ttl_ms, now_ms);
        Ok(secret)
    }

    /// Like [`Auth::issue_ephemeral`] with a secret made earlier (the
    /// server writes its own into a docker config before the store opens).
    pub fn register_ephemeral(
        &self,
        secret: &Secret,
        identity: Identity,
        audience: Audience,
        ttl_ms: i64,
        now_ms: i64,
    ) {
        let mut cache = self.write();
        cache.ephemeral.retain(|_, e| e.expires_at_ms > now_ms);
        cache.ephemeral.insert(
            secret.hash(),
            Ephemeral {
                identity,
                expires_at_ms: now_ms.saturating_add(ttl_ms),
                registry_only: audience == Audience::Registry,
            },
        );
    }

    pub fn forget_ephemeral(&self, secret: &Secret) {
        self.write().ephemeral.remove(&secret.hash());
    }

    pub fn users(&self) -> Vec<User> {
        let mut users: Vec<User> = self.read().users.values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    pub fn user(&self, name: &str) -> Option<User> {
        self.read().users.get(name).cloned()
    }

    pub async fn add_user(
        &self,
        name: &str,
        email: Option<&str>,
        grants: Vec<Grant>,
        now_ms: i64,
    ) -> Result<User, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::InvalidName(name.to_string()));
        }
        if let Some(email) = email
            && (email.len() > 254 || !email.contains('@') || email.chars().any(char::is_whitespace))
        {
            return Err(AuthError::BadRequest(format!(
                "`{email}` is not an e-mail address"
            )));
        }
        let _guard = self.inner.writes.lock().await;
        if self.read().users.contains_key(name) {
            return Err(AuthError::UserExists(name.to_string()));
        }
        sqlx::query(
            "INSERT INTO auth_users (name, email, grants, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(email)
        .bind(grants_text(&grants))
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        let user = User {
            name: name.to_string(),
            email: email.map(str::to_string),
            grants,
            created_at_ms: now_ms,
        };
        self.write().users.insert(name.to_string(), user.clone());
        Ok(user)
    }

    /// Replaces a user's grants.
    pub async fn set_grants(&self, name: &str, grants: Vec<Grant>) -> Result<User, AuthError> {
        let _guard = self.inner.writes.lock().await;
        if !self.read().users.contains_key(name) {
            return Err(AuthError::UserNotFound(name.to_string()));
        }
        sqlx::query("UPDATE auth_users SET grants = $1 WHERE name = $2")
            .bind(grants_text(&grants))
            .bind(name)
            .execute(self.pool())
            .await?;
        let mut cache = self.write();
        let user = cache
            .users
            .get_mut(name)
            .ok_or_else(|| AuthError::UserNotFound(name.to_string()))?;
        user.grants = grants;
        Ok(user.clone())
    }

    /// Removes a user and revokes every token of theirs, in one transaction.
    pub async fn remove_user(&self, name: &str, now_ms: i64) -> Result<usize, AuthError> {
        let _guard = self.inner.writes.lock().await;
        if !self.read().users.contains_key(name) {
            return Err(AuthError::UserNotFound(name.to_string()));
        }
        let mut tx = self.pool().begin().await?;
        let revoked = sqlx::query(
            "UPDATE auth_tokens SET revoked_at_ms = $1 WHERE \"user\" = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM auth_users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut cache = self.write();
        cache.users.remove(name);
        for token in cache.tokens.values_mut() {
            if token.user == name && token.revoked_at_ms.is_none() {
                token.revoked_at_ms = Some(now_ms);
            }
        }
        Ok(usize::try_from(revoked).unwrap_or(usize::MAX))
    }

    /// A new token for `user`. Its value is returned once and never stored.
    pub async fn create_token(
        &self,
        user: &str,
        description: Option<&str>,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<NewToken, AuthError> {
        if description.is_some_and(|d| d.len() > 200) {
            return Err(AuthError::BadRequest(
                "a token description holds at most 200 bytes".to_string(),
            ));
        }
        if expires_at_ms.is_some_and(|at| at <= now_ms) {
            return Err(AuthError::BadRequest(
                "a token cannot expire in the past".to_string(),
            ));
        }
        let _guard = self.inner.writes.lock().await;
        if !self.read().users.contains_key(user) {
            return Err(AuthError::UserNotFound(user.to_string()));
        }
        let secret = Secret::generate()?;
        let info = TokenInfo {
            id: token_id()?,
            user: user.to_string(),
            description: description.map(str::to_string),
            created_at_ms: now_ms,
            expires_at_ms,
            revoked_at_ms: None,
        };
        sqlx::query(
            "INSERT INTO auth_tokens (id, \"user\", hash, description, created_at_ms, expires_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&info.id)
        .bind(user)
        .bind(secret.hash().to_hex())
        .bind(description)
        .bind(now_ms)
        .bind(expires_at_ms)
        .execute(self.pool())
        .await?;
        self.write().tokens.insert(secret.hash(), info.clone());
        Ok(NewToken { info, secret })
    }

    /// Tokens, newest first; of one user when `user` is given.
    pub fn tokens(&self, user: Option<&str>) -> Vec<TokenInfo> {
        let mut tokens: Vec<TokenInfo> = self
            .read()
            .tokens
            .values()
            .filter(|t| user.is_none_or(|u| t.user == u))
            .cloned()
            .collect();
        tokens.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(a.id.cmp(&b.id)));
        tokens
    }

    pub fn token(&self, id: &str) -> Option<TokenInfo> {
        self.read().tokens.values().find(|t| t.id == id).cloned()
    }

    /// Revokes a token by id; revoking twice is not an error.
    pub async fn revoke_token(&self, id: &str, now_ms: i64) -> Result<TokenInfo, AuthError> {
        let _guard = self.inner.writes.lock().await;
        let Some(current) = self.token(id) else {
            return Err(AuthError::TokenNotFound(id.to_string()));
        };
        if current.revoked_at_ms.is_some() {
            return Ok(current);
        }
        sqlx::query("UPDATE auth_tokens SET revoked_at_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(id)
            .execute(self.pool())
            .await?;
        let mut cache = self.write();
        let token = cache
            .tokens
            .values_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| AuthError::TokenNotFound(id.to_string()))?;
        token.revoked_at_ms = Some(now_ms);
        Ok(token.clone())
    }

    /// Makes sure an admin can reach the server: when `existing` (the
    /// content of `DATA_DIR/admin.token`) is not a valid admin token, creates
    /// the `admin` user if needed and a new token, and returns it for the
    /// caller to write.
    pub async fn ensure_admin_token(
        &self,
        existing: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<Secret>, AuthError> {
        if let Some(existing) = existing
            && let Ok(identity) = self.authenticate(existing.trim(), now_ms)
            && identity.grants.iter().any(|g| g.role == Role::Admin)
        {
            return Ok(None);
        }
        if self.user(ADMIN_USER).is_none() {
            self.add_user(ADMIN_USER, None, vec![Grant::new(Role::Admin)], now_ms)
                .await?;
        }
        let token = self
            .create_token(
                ADMIN_USER,
                Some("DATA_DIR/admin.token (created by the server)"),
                None,
                now_ms,
            )
            .await?;
        Ok(Some(token.secret))
    }
}
