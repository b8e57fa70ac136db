//! The database a store test runs on: an in-memory SQLite by default, or,
//! when `GANTRY_TEST_POSTGRES` holds the URL of a PostgreSQL server's
//! maintenance database (`scripts/postgres` starts one and prints it), a
//! fresh PostgreSQL database of the test's own. `scripts/test` runs the
//! store suites once each way.

use gantry_db::Db;

/// The variable naming the PostgreSQL server the store tests run on.
pub const POSTGRES_VAR: &str = "GANTRY_TEST_POSTGRES";

/// The URL of the test PostgreSQL server's maintenance database, if set.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_VAR).ok().filter(|u| !u.is_empty())
}

/// A new, empty database on the backend the run chose (see the module).
pub async fn database() -> Db {
    match postgres_url() {
        Some(url) => Db::connect(&fresh_postgres_database(&url).await)
            .await
            .expect("connecting to the test database"),
        None => Db::sqlite_in_memory().await.expect("an in-memory SQLite"),
    }
}

/// A database file in `dir` on SQLite, or a fresh PostgreSQL database
/// (for tests that reopen a store: call it once and reopen the URL it gives
/// with [`Db::connect`]).
pub async fn database_url(dir: &std::path::Path) -> String {
    match postgres_url() {
        Some(url) => fresh_postgres_database(&url).await,
        None => format!("sqlite://{}", dir.join("gantry.db").display()),
    }
}

/// Creates a uniquely named database on the server at `url` and returns
/// its URL.
pub async fn fresh_postgres_database(url: &str) -> String {
    let admin = Db::connect(url)
        .await
        .expect("connecting to GANTRY_TEST_POSTGRES");
    let name = format!("gantry_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.pool())
        .await
        .expect("creating a test database");
    admin.pool().close().await;
    let (base, _) = url.rsplit_once('/').expect("a URL ending in /DATABASE");
    format!("{base}/{name}")
}

/// The database a test's control plane on `data_dir` opens: `None` (the
/// data dir's own SQLite file) unless GANTRY_TEST_POSTGRES is set; then a
/// fresh PostgreSQL database, the same one each time the data dir is
/// opened again (its URL is kept in the data dir's `test-database-url`).
pub async fn database_for(data_dir: &std::path::Path) -> Option<String> {
    let server = postgres_url()?;
    let kept = data_dir.join("test-database-url");
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return Some(url);
    }
    let url = fresh_postgres_database(&server).await;
    std::fs::create_dir_all(data_dir).expect("making the data dir");
    std::fs::write(&kept, &url).expect("keeping the test database's URL");
    Some(url)
}
