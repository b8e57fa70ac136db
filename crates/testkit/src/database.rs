//! The database a store test runs on: an in-memory SQLite by default, or,
//! when `GANTRY_TEST_POSTGRES` holds the URL of a PostgreSQL server's
//! maintenance database (`scripts/postgres` starts one and prints it), a
//! fresh PostgreSQL database of the test's own. `scripts/test` runs the
//! store suites once each way.

use gantry_db::Db;

/// How long a test waits for a PostgreSQL connection: long, because tests
/// on a paused clock (the deployer's) make an hour pass in seconds.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The variable naming the PostgreSQL server the store tests run on.
pub const POSTGRES_VAR: &str = "GANTRY_TEST_POSTGRES";

/// The URL of the test PostgreSQL server's maintenance database, if set.
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_VAR).ok().filter(|u| !u.is_empty())
}

/// A new, empty database on the backend the run chose (see the module).
pub async fn database() -> Db {
    match postgres_url() {
        Some(url) => Db::connect_with(&fresh_postgres_database(&url).await, PATIENCE)
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
    let admin = Db::connect_with(url, PATIENCE)
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

/// A PostgreSQL cluster of one test's own (initdb and pg_ctl from Debian's
/// postgresql, as the postgres user when run as root), on a free loopback
/// port, so the test may stop and start it; stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    port: u16,
}

impl Cluster {
    /// Makes and starts the cluster.
    pub fn start() -> Cluster {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("Debian's postgresql is installed")
            .filter_map(Result::ok)
            .map(|e| e.path().join("bin"))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect("a PostgreSQL version with initdb");
        let dir = tempfile::tempdir().expect("a temp dir");
        let cluster = Cluster {
            dir,
            bin,
            port: crate::free_port(),
        };
        if is_root() {
            let status = std::process::Command::new("chown")
                .arg("postgres")
                .arg(cluster.dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown postgres {}",
                cluster.dir.path().display()
            );
        }
        let data = cluster.dir.path().join("data");
        cluster.as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        cluster.resume();
        cluster
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: connections
    /// are cut, as when its host goes away).
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts the server (again), on the same port, and waits for it.
    pub fn resume(&self) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    fn as_postgres(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = if is_root() {
            let mut line = shell_quote(program.to_str().unwrap());
            for arg in args {
                line.push(' ');
                line.push_str(&shell_quote(arg));
            }
            std::process::Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        } else {
            std::process::Command::new(&program).args(args).output()
        }
        .expect("running a PostgreSQL tool");
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        if data.join("postmaster.pid").exists() {
            let program = self.bin.join("pg_ctl");
            let line = format!(
                "{} -D {} -m immediate stop",
                shell_quote(program.to_str().unwrap_or("")),
                shell_quote(data.to_str().unwrap_or(""))
            );
            let _ = if is_root() {
                std::process::Command::new("su")
                    .args(["postgres", "-s", "/bin/sh", "-c", &line])
                    .output()
            } else {
                std::process::Command::new("sh")
                    .args(["-c", &line])
                    .output()
            };
        }
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `text` in single quotes for `sh -c` (test paths and flags only).
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
