//! `gantry migrate-store`: a data dir's SQLite store copied into a new
//! PostgreSQL database, then served from it with `gantry server --database`
//! on the same data dir (its blobs and master key), lists the same
//! executions and logs, parameters (SecureStrings decrypt with the same
//! key), images, users and tokens; a second copy into the same database is
//! refused, and a bad URL is a clear error naming no password.
//!
//! Runs when GANTRY_TEST_POSTGRES names a PostgreSQL server
//! (`scripts/postgres`); skipped otherwise.

mod common;

use common::{Server, ok, push, run};
use gantry_api::{ExecutionView, ImageView};

const PIPELINE: &str = r#"
version: 1
name: moved
stages:
  - name: Work
    actions:
      - {name: echo, type: shell, commands: ["echo carried over"]}
"#;

fn executions(data: &std::path::Path) -> Vec<ExecutionView> {
    serde_json::from_str(&ok(run(data, &["executions", "--json"]))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrated_store_serves_the_same_executions_parameters_images_and_tokens() {
    let Some(server_url) = gantry_testkit::database::postgres_url() else {
        println!("skipped: set GANTRY_TEST_POSTGRES (scripts/postgres) to run it");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".gantry");
    std::fs::create_dir_all(&data).unwrap();
    let file = dir.path().join("gantry.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let (before, digest) = {
        let server = Server::start(&data);
        let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
        ok(run(&data, &["run", "-f", file.to_str().unwrap(), "--json"]));
        ok(run(&data, &["param", "put", "/app/plain", "hello"]));
        ok(run(
            &data,
            &[
                "param",
                "put",
                "/app/secret",
                "s3cr3t",
                "--type",
                "SecureString",
            ],
        ));
        ok(run(&data, &["user", "add", "alice", "--grant", "viewer"]));
        let digest = push(&server.registry, token.trim(), "shop/web", "1.0").await;
        (executions(&data), digest)
    };
    assert_eq!(before.len(), 1);

    let url = gantry_testkit::database::fresh_postgres_database(&server_url).await;
    let out = ok(run(
        &data,
        &[
            "migrate-store",
            "--from",
            data.to_str().unwrap(),
            "--to",
            &url,
        ],
    ));
    assert!(out.contains("events:"), "{out}");
    assert!(out.contains("param_versions: 2 rows"), "{out}");
    // Into a database that holds a store already: refused, nothing changes.
    let again = run(
        &data,
        &[
            "migrate-store",
            "--from",
            data.to_str().unwrap(),
            "--to",
            &url,
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds a gantry store"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // The SQLite file is left as it was; the server reads PostgreSQL.
    std::fs::rename(data.join("gantry.db"), dir.path().join("old.db")).unwrap();

    let _server = Server::start_with(&data, &["--database", &url]);
    assert!(!data.join("gantry.db").exists(), "the server opened SQLite");
    let after = executions(&data);
    assert_eq!(
        after.iter().map(|e| (&e.id, &e.status)).collect::<Vec<_>>(),
        before
            .iter()
            .map(|e| (&e.id, &e.status))
            .collect::<Vec<_>>()
    );
    let logs = ok(run(&data, &["logs", &before[0].id]));
    assert!(logs.contains("carried over"), "{logs}");
    assert_eq!(
        ok(run(&data, &["param", "get", "/app/secret", "--decrypt"])).trim(),
        "s3cr3t"
    );
    let images: Vec<ImageView> =
        serde_json::from_str(&ok(run(&data, &["image", "ls", "--json"]))).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].digest, digest);
    let users = ok(run(&data, &["user", "list"]));
    assert!(users.contains("alice"), "{users}");
    // New executions continue the copied sequences.
    ok(run(&data, &["run", "-f", file.to_str().unwrap(), "--json"]));
    assert_eq!(executions(&data).len(), 2);
}

#[test]
fn a_bad_database_url_is_a_clear_error_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".gantry");
    std::fs::create_dir_all(&data).unwrap();
    // Nothing listens on port 1.
    let out = run(
        &data,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--registry-listen",
            "127.0.0.1:0",
            "--database",
            "postgres://gantry:hunter2@127.0.0.1:1/gantry",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to the database at postgres://gantry:***@127.0.0.1:1/gantry"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let out = run(
        &data,
        &[
            "server",
            "--database",
            "mysql://x@y/z",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("starts with postgres://"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
