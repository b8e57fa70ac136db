//! The identity store against a real database (SQLite, or PostgreSQL with
//! GANTRY_TEST_POSTGRES): tokens authenticate
//! until they expire or are revoked, survive a reopen, and are never stored
//! in the clear; the audit log refuses rewrites.

use gantry_auth::{
    Audience, AuditQuery, AuditRecord, Auth, AuthError, Grant, Permission, Role, Target,
};
use gantry_db::Db;

/// A fresh database on the backend the run chose (SQLite, or PostgreSQL
/// with GANTRY_TEST_POSTGRES).
async fn database() -> Db {
    gantry_testkit::database::database().await
}

fn grants(list: &[&str]) -> Vec<Grant> {
    list.iter().map(|g| g.parse().unwrap()).collect()
}

#[tokio::test]
async fn tokens_authenticate_until_expired_or_revoked_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = gantry_testkit::database::database_url(dir.path()).await;
    let auth = Auth::open(Db::connect(&url).await.unwrap()).await.unwrap();
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

    // The database holds hashes only: neither SQLite's file nor any
    // column of PostgreSQL's rows has the secret.
    let needle = forever.secret.expose().as_bytes();
    let raw = match url.strip_prefix("sqlite://") {
        Some(path) => std::fs::read(path).unwrap(),
        None => {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT id || \"user\" || hash || COALESCE(description, '') FROM auth_tokens",
            )
            .fetch_all(Db::connect(&url).await.unwrap().pool())
            .await
            .unwrap();
            assert_eq!(rows.len(), 2);
            rows.concat().into_bytes()
        }
    };
    assert!(!raw.windows(needle.len()).any(|w| w == needle));

    // A reopened store knows the same tokens.
    drop(auth);
    let auth = Auth::open(Db::connect(&url).await.unwrap()).await.unwrap();
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
}

#[tokio::test]
async fn the_admin_token_is_created_once_and_replaced_when_invalid() {
    let auth = Auth::open(database().await).await.unwrap();
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
    let auth = Auth::open(database().await).await.unwrap();
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
    let db = database().await;
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
    let truncate = match db.backend() {
        gantry_db::Backend::Postgres => "TRUNCATE audit_log",
        gantry_db::Backend::Sqlite => "DELETE FROM audit_log WHERE seq > 0",
    };
    for statement in [
        "UPDATE audit_log SET outcome = 'ok'",
        "DELETE FROM audit_log",
        truncate,
    ] {
        let error = sqlx::query(statement).execute(db.pool()).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }
    assert_eq!(
        auth.audit_log(&AuditQuery::default()).await.unwrap().len(),
        2
    );
}
