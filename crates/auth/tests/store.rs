//! The identity store against a real SQLite database: tokens authenticate
//! until they expire or are revoked, survive a reopen, and are never stored
//! in the clear; the audit log refuses rewrites.

use gantry_auth::{
    Audience, AuditQuery, AuditRecord, Auth, AuthError, Grant, Permission, Role, Target,
};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

async fn pool(path: &std::path::Path) -> sqlx::SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    // One connection: an in-memory database exists once per connection.
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

fn grants(list: &[&str]) -> Vec<Grant> {
    list.iter().map(|g| g.parse().unwrap()).collect()
}

#[tokio::test]
async fn tokens_authenticate_until_expired_or_revoked_and_survive_a_reopen() {
    let dir = std::env::temp_dir().join(format!("gantry-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("a.db");
    let _ = std::fs::remove_file(&db);
    let auth = Auth::open(pool(&db).await).await.unwrap();
    auth.add_user(
        "alice",
        Some("alice@example.com"),
        grants(&["operator:env=staging"]),
        1,
    )
    .await
    .unwrap();
    assert_eq!(
        auth.add_user("alice", None, vec![], 1)
            .await
            .unwrap_err()
            .code(),
        "auth.user_exists"
    );
    let forever = auth
        .create_token("alice", Some("ci"), None, 10)
        .await
        .unwrap();
    let short = auth
        .create_token("alice", None, Some(1_000), 10)
        .await
        .unwrap();
    let who = auth.authenticate(forever.secret.expose(), 20).unwrap();
    assert_eq!(who.name, "alice");
    assert!(who.allows(Permission::Operate, &Target::environment("staging")));
    assert!(!who.allows(Permission::Operate, &Target::environment("production")));
    assert!(auth.authenticate(short.secret.expose(), 999).is_ok());
    assert!(matches!(
        auth.authenticate(short.secret.expose(), 1_000),
        Err(AuthError::ExpiredToken)
    ));
    assert!(matches!(
        auth.authenticate("gantry_0000", 20),
        Err(AuthError::InvalidToken)
    ));

    // The database holds hashes only.
    let raw = std::fs::read(&db).unwrap();
    let needle = forever.secret.expose().as_bytes();
    assert!(!raw.windows(needle.len()).any(|w| w == needle));

    // A reopened store knows the same tokens.
    drop(auth);
    let auth = Auth::open(pool(&db).await).await.unwrap();
    assert!(auth.authenticate(forever.secret.expose(), 30).is_ok());
    auth.revoke_token(&forever.info.id, 40).await.unwrap();
    assert!(matches!(
        auth.authenticate(forever.secret.expose(), 41),
        Err(AuthError::RevokedToken)
    ));

    // Removing a user revokes every token of theirs.
    let again = auth.create_token("alice", None, None, 50).await.unwrap();
    auth.remove_user("alice", 60).await.unwrap();
    assert!(auth.authenticate(again.secret.expose(), 61).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_admin_token_is_created_once_and_replaced_when_invalid() {
    let auth = Auth::open(pool(std::path::Path::new(":memory:")).await)
        .await
        .unwrap();
    let first = auth.ensure_admin_token(None, 1).await.unwrap().unwrap();
    let who = auth.authenticate(first.expose(), 2).unwrap();
    assert!(who.has_role(Role::Admin));
    assert!(
        auth.ensure_admin_token(Some(first.expose()), 3)
            .await
            .unwrap()
            .is_none()
    );
    let second = auth
        .ensure_admin_token(Some("gantry_garbage"), 4)
        .await
        .unwrap();
    assert!(second.is_some());
}

#[tokio::test]
async fn ephemeral_tokens_live_in_memory_until_their_deadline() {
    let auth = Auth::open(pool(std::path::Path::new(":memory:")).await)
        .await
        .unwrap();
    let identity = gantry_auth::Identity {
        name: "build".into(),
        email: None,
        grants: grants(&["operator"]),
    };
    let secret = auth
        .issue_ephemeral(identity.clone(), Audience::Api, 100, 0)
        .unwrap();
    assert_eq!(
        auth.authenticate(secret.expose(), 99).unwrap().name,
        "build"
    );
    // A registry-only token is refused by the API and accepted by the registry.
    let push = auth
        .issue_ephemeral(identity, Audience::Registry, 100, 0)
        .unwrap();
    assert!(matches!(
        auth.authenticate(push.expose(), 1),
        Err(AuthError::InvalidToken)
    ));
    assert!(
        auth.authenticate_for(push.expose(), 1, Audience::Registry)
            .is_ok()
    );
    assert!(matches!(
        auth.authenticate(secret.expose(), 100),
        Err(AuthError::ExpiredToken)
    ));
    let again = auth
        .issue_ephemeral(
            gantry_auth::Identity {
                name: "b".into(),
                email: None,
                grants: vec![],
            },
            Audience::Api,
            100,
            0,
        )
        .unwrap();
    auth.forget_ephemeral(&again);
    assert!(auth.authenticate(again.expose(), 1).is_err());
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    let db = pool(std::path::Path::new(":memory:")).await;
    let auth = Auth::open(db.clone()).await.unwrap();
    for (i, outcome) in ["ok", "auth.forbidden"].iter().enumerate() {
        auth.audit(&AuditRecord {
            seq: 0,
            at_ms: i64::try_from(i).unwrap() * 10,
            principal: Some("alice".into()),
            remote: Some("127.0.0.1:5000".into()),
            action: "POST /api/v1/executions".into(),
            target: Some("shop".into()),
            outcome: (*outcome).into(),
        })
        .await
        .unwrap();
    }
    let all = auth.audit_log(&AuditQuery::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].outcome, "auth.forbidden");
    let since = auth
        .audit_log(&AuditQuery {
            since_ms: Some(5),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 1);
    // Triggers refuse rewriting history, even through SQL.
    for statement in [
        "UPDATE audit_log SET outcome = 'ok'",
        "DELETE FROM audit_log",
    ] {
        let error = sqlx::query(statement).execute(&db).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }
    assert_eq!(
        auth.audit_log(&AuditQuery::default()).await.unwrap().len(),
        2
    );
}
