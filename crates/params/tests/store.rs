//! The parameter store against a real database: a file-backed SQLite database in WAL
//! mode, or a fresh PostgreSQL database when `GANTRY_TEST_POSTGRES` is set (see
//! `gantry_testkit::database`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry_db::{Backend, Db};
use gantry_params::*;
use gantry_testkit::database::{database, database_url};
use jiff::{SignedDuration, Timestamp};
use sqlx::AnyPool;

const START: i64 = 1_700_000_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    /// The database's URL, to reopen it as another server would.
    url: String,
    db: Db,
    store: ParamStore,
    clock: Arc<ManualClock>,
}

async fn fixture_with_key(key: MasterKey) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(dir.path()).await;
    let db = Db::connect(&url).await.unwrap();
    let clock = Arc::new(ManualClock::new(
        Timestamp::from_millisecond(START).unwrap(),
    ));
    let store = ParamStore::open_with_clock(db.clone(), key, clock.clone())
        .await
        .unwrap();
    Fixture {
        dir,
        url,
        db,
        store,
        clock,
    }
}

async fn fixture() -> Fixture {
    fixture_with_key(MasterKey::generate().unwrap()).await
}

fn name(s: &str) -> ParamName {
    ParamName::parse(s).unwrap()
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

impl Fixture {
    async fn put(&self, n: &str, value: &str, t: ParamType) -> Result<u64, ParamError> {
        self.store
            .put(PutParameter::new(&name(n), value, t, "tester").overwrite(true))
            .await
    }

    async fn value(&self, selector: &str) -> String {
        let p = self.store.get(&sel(selector), true).await.unwrap();
        p.value.expose().unwrap().to_owned()
    }

    fn pool(&self) -> &AnyPool {
        self.db.pool()
    }

    /// The SQLite database file (`None` on PostgreSQL).
    fn sqlite_file(&self) -> Option<PathBuf> {
        (self.db.backend() == Backend::Sqlite).then(|| self.dir.path().join("gantry.db"))
    }

    /// A second store on the same database, as another server process would open it.
    async fn reopen(&self, key: MasterKey) -> ParamStore {
        ParamStore::open(Db::connect(&self.url).await.unwrap(), key)
            .await
            .unwrap()
    }
}

// ---- versions ----

#[tokio::test]
async fn put_creates_version_1_and_each_overwrite_adds_one() {
    let f = fixture().await;
    let n = name("/shop/staging/SERVICE_DNS");
    let v1 = f
        .store
        .put(PutParameter::new(
            &n,
            "a.internal",
            ParamType::String,
            "alice",
        ))
        .await
        .unwrap();
    assert_eq!(v1, 1);
    f.clock.advance(SignedDuration::from_secs(60));
    let v2 = f
        .store
        .put(PutParameter::new(&n, "b.internal", ParamType::String, "bob").overwrite(true))
        .await
        .unwrap();
    assert_eq!(v2, 2);
    // An unchanged value still makes a version, as in SSM.
    let v3 = f
        .put(n.as_str(), "b.internal", ParamType::String)
        .await
        .unwrap();
    assert_eq!(v3, 3);

    let latest = f
        .store
        .get(&Selector::latest(n.clone()), false)
        .await
        .unwrap();
    assert_eq!(latest.version, 3);
    assert_eq!(latest.value, ParamValue::Plain("b.internal".into()));

    let history = f.store.history(&n, false).await.unwrap();
    let versions: Vec<u64> = history.iter().map(|p| p.version).collect();
    assert_eq!(versions, [1, 2, 3], "history is oldest first, newest last");
    assert_eq!(history[0].modified_by, "alice");
    assert_eq!(history[1].modified_by, "bob");
    assert_eq!(history[0].last_modified.as_millisecond(), START);
    assert_eq!(history[1].last_modified.as_millisecond(), START + 60_000);
}

#[tokio::test]
async fn put_of_existing_name_without_overwrite_is_already_exists() {
    let f = fixture().await;
    let n = name("/db/url");
    f.store
        .put(PutParameter::new(&n, "x", ParamType::String, "t"))
        .await
        .unwrap();
    let err = f
        .store
        .put(PutParameter::new(&n, "y", ParamType::String, "t"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "param.already_exists");
    assert!(err.to_string().contains("/db/url"));
    assert_eq!(f.value("/db/url").await, "x", "nothing changed");
}

#[tokio::test]
async fn bare_and_slashed_names_are_one_parameter() {
    let f = fixture().await;
    f.put("a", "1", ParamType::String).await.unwrap();
    assert_eq!(f.put("/a", "2", ParamType::String).await.unwrap(), 2);
    assert_eq!(f.value("a:1").await, "1");
    let p = f.store.get(&sel("/a"), false).await.unwrap();
    assert_eq!(p.name.as_str(), "/a");
    // `/Test/P1` and `/P1` differ.
    f.put("/Test/P1", "t", ParamType::String).await.unwrap();
    let err = f.store.get(&sel("/P1"), false).await.unwrap_err();
    assert_eq!(err.code(), "param.not_found");
}

#[tokio::test]
async fn value_limit_is_8192_bytes_and_empty_is_refused() {
    let f = fixture().await;
    let n = name("/big");
    let max = "x".repeat(MAX_VALUE_BYTES);
    f.store
        .put(PutParameter::new(&n, &max, ParamType::SecureString, "t"))
        .await
        .unwrap();
    assert_eq!(f.value("/big").await.len(), 8192);

    let over = "x".repeat(MAX_VALUE_BYTES + 1);
    let err = f.put("/big", &over, ParamType::String).await.unwrap_err();
    assert_eq!(err.code(), "param.value_too_large");
    assert!(err.to_string().contains("/big"));
    // The limit is in bytes: 4097 two-byte characters are 8194 bytes.
    let wide = "é".repeat(4097);
    let err = f.put("/big", &wide, ParamType::String).await.unwrap_err();
    assert_eq!(err.code(), "param.value_too_large");

    let err = f.put("/empty", "", ParamType::String).await.unwrap_err();
    assert_eq!(err.code(), "param.value_empty");
    assert_eq!(f.store.history(&n, false).await.unwrap().len(), 1);
}

#[tokio::test]
async fn description_is_kept_when_an_overwrite_gives_none_and_is_limited() {
    let f = fixture().await;
    let n = name("/d");
    f.store
        .put(PutParameter::new(&n, "1", ParamType::String, "t").description("the d"))
        .await
        .unwrap();
    f.put("/d", "2", ParamType::String).await.unwrap();
    let p = f.store.get(&sel("/d"), false).await.unwrap();
    assert_eq!(p.description.as_deref(), Some("the d"));

    let long = "d".repeat(MAX_DESCRIPTION_LEN + 1);
    let err = f
        .store
        .put(
            PutParameter::new(&n, "3", ParamType::String, "t")
                .overwrite(true)
                .description(&long),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "param.description_too_long");
}

#[tokio::test]
async fn type_may_change_on_overwrite_and_history_keeps_each_type() {
    let f = fixture().await;
    f.put("/t", "plain", ParamType::String).await.unwrap();
    f.put("/t", "secret", ParamType::SecureString)
        .await
        .unwrap();
    f.put("/t", "a,b,c", ParamType::StringList).await.unwrap();
    let types: Vec<ParamType> = f
        .store
        .history(&name("/t"), false)
        .await
        .unwrap()
        .iter()
        .map(|p| p.param_type)
        .collect();
    assert_eq!(
        types,
        [
            ParamType::String,
            ParamType::SecureString,
            ParamType::StringList
        ]
    );
    let list = f.store.get(&sel("/t"), false).await.unwrap();
    assert_eq!(list.list_items(), Some(vec!["a", "b", "c"]));
    assert_eq!(f.value("/t:2").await, "secret");
}

// ---- reads ----

#[tokio::test]
async fn missing_parameter_is_not_found_naming_it() {
    let f = fixture().await;
    let err = f.store.get(&sel("/nope/here"), true).await.unwrap_err();
    assert_eq!(err.code(), "param.not_found");
    assert!(err.to_string().contains("/nope/here"));
    let err = f
        .store
        .history(&name("/nope/here"), false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "param.not_found");
}

#[tokio::test]
async fn selectors_pick_by_version_and_by_label() {
    let f = fixture().await;
    for v in ["one", "two", "three"] {
        f.put("/sel", v, ParamType::String).await.unwrap();
    }
    f.store
        .label(&name("/sel"), Some(2), &["prod"])
        .await
        .unwrap();
    assert_eq!(f.value("/sel:1").await, "one");
    assert_eq!(f.value("/sel:prod").await, "two");
    assert_eq!(f.value("/sel").await, "three");
    let p = f.store.get(&sel("/sel:prod"), false).await.unwrap();
    assert_eq!(p.version, 2);
    assert_eq!(p.labels, vec![Label::parse("prod").unwrap()]);
}

#[tokio::test]
async fn missing_version_or_label_is_an_error_never_a_fallback() {
    let f = fixture().await;
    f.put("/sel", "one", ParamType::String).await.unwrap();
    let err = f.store.get(&sel("/sel:2"), false).await.unwrap_err();
    assert_eq!(err.code(), "param.version_not_found");
    assert!(err.to_string().contains("/sel"));
    let err = f.store.get(&sel("/sel:prod"), false).await.unwrap_err();
    assert_eq!(err.code(), "param.label_not_found");
    let err = f.store.get(&sel("/other:1"), false).await.unwrap_err();
    assert_eq!(err.code(), "param.not_found");
}

#[tokio::test]
async fn secure_string_value_is_withheld_unless_decrypt() {
    let f = fixture().await;
    f.put("/db/password", "hunter2", ParamType::SecureString)
        .await
        .unwrap();
    let hidden = f.store.get(&sel("/db/password"), false).await.unwrap();
    assert_eq!(hidden.value, ParamValue::Encrypted);
    assert_eq!(hidden.value.expose(), None);
    assert_eq!(hidden.key_id, Some(f.store.key_id().await));

    let shown = f.store.get(&sel("/db/password"), true).await.unwrap();
    assert_eq!(shown.value.expose(), Some("hunter2"));
    // A decrypted parameter printed by accident shows no plaintext.
    let debug = format!("{shown:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("***"));

    let req = PutParameter::new(&shown.name, "hunter3", ParamType::SecureString, "t");
    assert!(!format!("{req:?}").contains("hunter3"));
}

#[tokio::test]
async fn get_many_returns_found_and_invalid_selectors() {
    let f = fixture().await;
    f.put("/a", "1", ParamType::String).await.unwrap();
    f.put("/b", "s", ParamType::SecureString).await.unwrap();
    let got = f
        .store
        .get_many(&[sel("/a"), sel("/missing"), sel("/b"), sel("/a:9")], true)
        .await
        .unwrap();
    let names: Vec<&str> = got.parameters.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["/a", "/b"]);
    assert_eq!(got.parameters[1].value.expose(), Some("s"));
    assert_eq!(got.invalid, vec![sel("/missing"), sel("/a:9")]);
}

#[tokio::test]
async fn list_by_path_one_level_or_recursive() {
    let f = fixture().await;
    for n in [
        "/app",
        "/app/a",
        "/app/b",
        "/app/b/deep",
        "/app/b/deep/deeper",
        "/app-x/c", // shares the text prefix but is not under /app
        "/app.y",
        "/apple/d",
        "/other/e",
        "top",
    ] {
        f.put(n, "v", ParamType::String).await.unwrap();
    }
    let names = |ps: Vec<Parameter>| {
        ps.into_iter()
            .map(|p| p.name.to_string())
            .collect::<Vec<_>>()
    };

    let path = ParamPath::parse("/app").unwrap();
    let one = f.store.list(&path, false, false).await.unwrap();
    assert_eq!(names(one), ["/app/a", "/app/b"]);
    let all = f.store.list(&path, true, false).await.unwrap();
    assert_eq!(
        names(all),
        ["/app/a", "/app/b", "/app/b/deep", "/app/b/deep/deeper"]
    );
    let below_b = f
        .store
        .list(&ParamPath::parse("/app/b/").unwrap(), false, false)
        .await
        .unwrap();
    assert_eq!(names(below_b), ["/app/b/deep"]);

    let root = f
        .store
        .list(&ParamPath::root(), false, false)
        .await
        .unwrap();
    assert_eq!(names(root), ["/app", "/app.y", "/top"]);
    let everything = f.store.list(&ParamPath::root(), true, false).await.unwrap();
    assert_eq!(everything.len(), 10);

    let none = f
        .store
        .list(&ParamPath::parse("/nothing").unwrap(), true, false)
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn list_returns_latest_versions_and_withholds_secrets() {
    let f = fixture().await;
    f.put("/svc/url", "v1", ParamType::String).await.unwrap();
    f.put("/svc/url", "v2", ParamType::String).await.unwrap();
    f.put("/svc/key", "k", ParamType::SecureString)
        .await
        .unwrap();
    let path = ParamPath::parse("/svc").unwrap();
    let listed = f.store.list(&path, false, false).await.unwrap();
    assert_eq!(listed[0].name.as_str(), "/svc/key");
    assert_eq!(listed[0].value, ParamValue::Encrypted);
    assert_eq!(listed[1].version, 2);
    assert_eq!(listed[1].value.expose(), Some("v2"));
    let decrypted = f.store.list(&path, false, true).await.unwrap();
    assert_eq!(decrypted[0].value.expose(), Some("k"));
}

#[tokio::test]
async fn delete_removes_everything_and_a_new_put_starts_at_1() {
    let f = fixture().await;
    f.put("/gone", "1", ParamType::String).await.unwrap();
    f.put("/gone", "2", ParamType::SecureString).await.unwrap();
    f.store
        .label(&name("/gone"), None, &["prod"])
        .await
        .unwrap();
    f.store.delete(&name("/gone")).await.unwrap();
    assert_eq!(
        f.store.get(&sel("/gone"), false).await.unwrap_err().code(),
        "param.not_found"
    );
    assert_eq!(f.put("/gone", "new", ParamType::String).await.unwrap(), 1);
    assert_eq!(
        f.store
            .get(&sel("/gone:prod"), false)
            .await
            .unwrap_err()
            .code(),
        "param.label_not_found"
    );
    let err = f.store.delete(&name("/never")).await.unwrap_err();
    assert_eq!(err.code(), "param.not_found");
}

// ---- labels ----

#[tokio::test]
async fn a_label_moves_to_the_version_it_is_attached_to() {
    let f = fixture().await;
    let n = name("/l");
    for v in ["1", "2", "3"] {
        f.put("/l", v, ParamType::String).await.unwrap();
    }
    f.store
        .label(&n, Some(1), &["prod", "stable"])
        .await
        .unwrap();
    let moved = f.store.label(&n, Some(3), &["prod"]).await.unwrap();
    assert_eq!(moved.version, 3);
    assert!(moved.invalid_labels.is_empty());

    let labels: BTreeMap<u64, Vec<String>> = f
        .store
        .history(&n, false)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.version, p.labels.iter().map(|l| l.to_string()).collect()))
        .collect();
    assert_eq!(labels[&1], ["stable"]);
    assert!(labels[&2].is_empty());
    assert_eq!(labels[&3], ["prod"]);
    assert_eq!(f.value("/l:prod").await, "3");

    // Without a version, labels go on the latest.
    f.put("/l", "4", ParamType::String).await.unwrap();
    assert_eq!(f.store.label(&n, None, &["next"]).await.unwrap().version, 4);
}

#[tokio::test]
async fn invalid_labels_are_returned_and_valid_ones_attached() {
    let f = fixture().await;
    let n = name("/l");
    f.put("/l", "1", ParamType::String).await.unwrap();
    let long = "a".repeat(101);
    let out = f
        .store
        .label(
            &n,
            Some(1),
            &["ok", "1bad", "awsx", "SSMy", "sp ace", long.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(
        out.invalid_labels,
        ["1bad", "awsx", "SSMy", "sp ace", long.as_str()]
    );
    assert_eq!(f.value("/l:ok").await, "1");
}

#[tokio::test]
async fn a_version_carries_at_most_10_labels() {
    let f = fixture().await;
    let n = name("/l");
    f.put("/l", "1", ParamType::String).await.unwrap();
    let ten: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
    f.store.label(&n, Some(1), &ten).await.unwrap();
    // Re-attaching a label the version already has is not an eleventh.
    f.store.label(&n, Some(1), &["l3"]).await.unwrap();
    let err = f.store.label(&n, Some(1), &["l10"]).await.unwrap_err();
    assert_eq!(err.code(), "param.label_limit_exceeded");
    assert_eq!(
        f.store.get(&sel("/l:l10"), false).await.unwrap_err().code(),
        "param.label_not_found"
    );
}

#[tokio::test]
async fn labelling_a_missing_parameter_or_version_fails() {
    let f = fixture().await;
    let err = f
        .store
        .label(&name("/none"), None, &["x"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "param.not_found");
    f.put("/l", "1", ParamType::String).await.unwrap();
    let err = f
        .store
        .label(&name("/l"), Some(5), &["x"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "param.version_not_found");
}

#[tokio::test]
async fn unlabel_reports_removed_and_invalid() {
    let f = fixture().await;
    let n = name("/l");
    f.put("/l", "1", ParamType::String).await.unwrap();
    f.put("/l", "2", ParamType::String).await.unwrap();
    f.store.label(&n, Some(1), &["a", "b"]).await.unwrap();
    let out = f.store.unlabel(&n, 1, &["a", "zzz", "1x"]).await.unwrap();
    assert_eq!(out.removed, vec![Label::parse("a").unwrap()]);
    assert_eq!(out.invalid_labels, ["zzz", "1x"]);
    // A label on another version is not removed through this one.
    let out = f.store.unlabel(&n, 2, &["b"]).await.unwrap();
    assert!(out.removed.is_empty());
    assert_eq!(f.value("/l:b").await, "1");
}

// ---- history limit ----

#[tokio::test]
async fn history_keeps_the_last_100_versions() {
    let f = fixture().await;
    for i in 1..=105 {
        let v = f
            .put("/h", &format!("v{i}"), ParamType::String)
            .await
            .unwrap();
        assert_eq!(v, i);
    }
    let history = f.store.history(&name("/h"), false).await.unwrap();
    assert_eq!(history.len(), MAX_HISTORY);
    assert_eq!(history.first().unwrap().version, 6);
    assert_eq!(history.last().unwrap().version, 105);
    assert_eq!(
        f.store.get(&sel("/h:5"), false).await.unwrap_err().code(),
        "param.version_not_found"
    );
}

#[tokio::test]
async fn a_labelled_oldest_version_blocks_the_101st_put() {
    let f = fixture().await;
    let n = name("/h");
    for i in 1..=100 {
        f.put("/h", &format!("v{i}"), ParamType::String)
            .await
            .unwrap();
    }
    f.store.label(&n, Some(1), &["pinned"]).await.unwrap();
    let err = f.put("/h", "v101", ParamType::String).await.unwrap_err();
    assert_eq!(err.code(), "param.history_full_with_label");
    assert!(err.to_string().contains("/h"));
    let history = f.store.history(&n, false).await.unwrap();
    assert_eq!(
        (history.len(), history[0].version),
        (100, 1),
        "nothing changed"
    );

    f.store.unlabel(&n, 1, &["pinned"]).await.unwrap();
    assert_eq!(f.put("/h", "v101", ParamType::String).await.unwrap(), 101);
    assert_eq!(f.store.history(&n, false).await.unwrap()[0].version, 2);
}

// ---- concurrency ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_get_gap_free_versions_each_recorded_once() {
    let f = Arc::new(fixture().await);
    // A second pool on the same database, as a second process would have: ordering must
    // come from the database's write lock, not from anything inside one store.
    let other = Arc::new(f.reopen(MasterKey::generate().unwrap()).await);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let f = f.clone();
        let other = other.clone();
        tasks.push(tokio::spawn(async move {
            let value = format!("writer-{i}");
            let n = name("/race");
            let req = PutParameter::new(&n, &value, ParamType::String, "t").overwrite(true);
            let store = if i % 2 == 0 { &f.store } else { &*other };
            (store.put(req).await.unwrap(), value)
        }));
    }
    let mut by_version = BTreeMap::new();
    for task in tasks {
        let (version, value) = task.await.unwrap();
        assert!(
            by_version.insert(version, value).is_none(),
            "version {version} given twice"
        );
    }
    assert_eq!(
        by_version.keys().copied().collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );

    let history = f.store.history(&name("/race"), false).await.unwrap();
    assert_eq!(history.len(), 20);
    for p in &history {
        assert_eq!(p.value.expose(), Some(by_version[&p.version].as_str()));
    }
}

// ---- encryption at rest ----

fn file_contains(path: &Path, needle: &[u8]) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => bytes.windows(needle.len()).any(|w| w == needle),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn db_files(db: &Path) -> [PathBuf; 2] {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    [db.to_path_buf(), wal]
}

/// Every text and blob the store keeps, as bytes.
async fn stored_cells(pool: &AnyPool) -> Vec<Vec<u8>> {
    let mut cells = Vec::new();
    for query in [
        "SELECT name FROM param_versions",
        "SELECT value FROM param_versions",
        "SELECT description FROM param_versions",
        "SELECT modified_by FROM param_versions",
        "SELECT name FROM param_parameters",
        "SELECT name || label FROM param_labels",
        "SELECT key || value FROM param_meta",
    ] {
        let texts: Vec<Option<String>> = sqlx::query_scalar(query).fetch_all(pool).await.unwrap();
        cells.extend(texts.into_iter().flatten().map(String::into_bytes));
    }
    for query in [
        "SELECT key_id FROM param_versions",
        "SELECT nonce FROM param_versions",
        "SELECT ciphertext FROM param_versions",
    ] {
        let blobs: Vec<Option<Vec<u8>>> = sqlx::query_scalar(query).fetch_all(pool).await.unwrap();
        cells.extend(blobs.into_iter().flatten());
    }
    cells
}

#[tokio::test]
async fn database_files_never_hold_secure_string_plaintext() {
    let f = fixture().await;
    let secret = "PLAINTEXT-SECRET-7f3a9c-do-not-store";
    let canary = "PLAINTEXT-CANARY-visible-string";
    f.put("/shop/prod/DB_PASSWORD", secret, ParamType::SecureString)
        .await
        .unwrap();
    f.put("/shop/prod/DB_PASSWORD", secret, ParamType::SecureString)
        .await
        .unwrap();
    f.put("/shop/prod/DB_HOST", canary, ParamType::String)
        .await
        .unwrap();
    f.store
        .rotate_key(MasterKey::generate().unwrap())
        .await
        .unwrap();
    assert_eq!(f.value("/shop/prod/DB_PASSWORD").await, secret);

    // On both engines: no column of any row holds the plaintext; the canary proves the
    // search sees values that are stored in clear.
    let cells = stored_cells(f.pool()).await;
    let holds = |needle: &str| {
        cells
            .iter()
            .any(|c| c.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    assert!(holds(canary));
    assert!(!holds(secret), "a row holds the secret");

    // On SQLite, not even the files do (free pages, the WAL).
    let Some(file) = f.sqlite_file() else {
        return;
    };
    let [db, wal] = db_files(&file);
    assert!(file_contains(&db, canary.as_bytes()) || file_contains(&wal, canary.as_bytes()));
    for file in [&db, &wal] {
        assert!(
            !file_contains(file, secret.as_bytes()),
            "{} holds the secret",
            file.display()
        );
    }

    // After a checkpoint everything is in the main file; still no plaintext.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(f.pool())
        .await
        .unwrap();
    f.pool().close().await;
    assert!(file_contains(&db, canary.as_bytes()));
    assert!(!file_contains(&db, secret.as_bytes()));
    assert!(!file_contains(&wal, secret.as_bytes()));
}

#[tokio::test]
async fn wrong_master_key_is_a_clear_error_and_changes_nothing() {
    let f = fixture().await;
    f.put("/s", "right", ParamType::SecureString).await.unwrap();
    f.put("/plain", "p", ParamType::String).await.unwrap();
    let wrong_key = MasterKey::generate().unwrap();
    let wrong = f.reopen(wrong_key.clone()).await;

    let err = wrong.get(&sel("/s"), true).await.unwrap_err();
    assert_eq!(err.code(), "param.wrong_master_key");
    assert!(err.to_string().contains("/s"));
    assert!(!err.to_string().contains("right"));
    assert_eq!(
        wrong.check_master_key().await.unwrap_err().code(),
        "param.wrong_master_key"
    );
    // Reads that need no key still work.
    assert_eq!(
        wrong.get(&sel("/s"), false).await.unwrap().value,
        ParamValue::Encrypted
    );
    assert_eq!(
        wrong
            .get(&sel("/plain"), true)
            .await
            .unwrap()
            .value
            .expose(),
        Some("p")
    );
    // A rotation from the wrong key refuses and leaves the right key's data readable.
    let err = wrong
        .rotate_key(MasterKey::generate().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "param.wrong_master_key");
    assert_eq!(wrong.key_id().await, wrong_key.id());
    assert_eq!(f.value("/s").await, "right");
    f.store.check_master_key().await.unwrap();
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_parameter_or_version_fails_to_decrypt() {
    let f = fixture().await;
    f.put("/a", "secret-of-a", ParamType::SecureString)
        .await
        .unwrap();
    f.put("/b", "secret-of-b", ParamType::SecureString)
        .await
        .unwrap();
    f.put("/b", "secret-of-b-2", ParamType::SecureString)
        .await
        .unwrap();
    // Copy /a v1's sealed value over /b v1, as someone with write access to the
    // database file might.
    sqlx::query(
        "UPDATE param_versions SET (key_id, nonce, ciphertext) = \
         (SELECT key_id, nonce, ciphertext FROM param_versions WHERE name = '/a' AND version = 1) \
         WHERE name = '/b' AND version = 1",
    )
    .execute(f.pool())
    .await
    .unwrap();
    let err = f.store.get(&sel("/b:1"), true).await.unwrap_err();
    assert_eq!(err.code(), "param.decrypt_failed");
    assert!(!err.to_string().contains("secret-of-a"));

    // Same parameter, other version.
    sqlx::query(
        "UPDATE param_versions SET (key_id, nonce, ciphertext) = \
         (SELECT key_id, nonce, ciphertext FROM param_versions WHERE name = '/b' AND version = 2) \
         WHERE name = '/b' AND version = 1",
    )
    .execute(f.pool())
    .await
    .unwrap();
    let err = f.store.get(&sel("/b:1"), true).await.unwrap_err();
    assert_eq!(err.code(), "param.decrypt_failed");
    assert_eq!(f.value("/b:2").await, "secret-of-b-2");
}

async fn sealed_rows(pool: &AnyPool) -> Vec<(String, i64, Vec<u8>, Vec<u8>)> {
    sqlx::query_as(
        "SELECT name, version, key_id, ciphertext FROM param_versions \
         WHERE type = 'SecureString' ORDER BY name, version",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn rotate_key_re_encrypts_every_version() {
    let f = fixture().await;
    let old_id = f.store.key_id().await;
    f.put("/r/a", "a1", ParamType::SecureString).await.unwrap();
    f.put("/r/a", "a2", ParamType::SecureString).await.unwrap();
    f.put("/r/b", "b1", ParamType::SecureString).await.unwrap();
    f.put("/r/c", "plain", ParamType::String).await.unwrap();
    let before = sealed_rows(f.pool()).await;

    let new_key = MasterKey::generate().unwrap();
    assert_eq!(f.store.rotate_key(new_key.clone()).await.unwrap(), 3);
    assert_eq!(f.store.key_id().await, new_key.id());
    let after = sealed_rows(f.pool()).await;
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b.2, a.2, "key id changed");
        assert_ne!(b.3, a.3, "ciphertext changed");
        assert_eq!(a.2, new_key.id().as_bytes());
    }
    assert_eq!(f.value("/r/a:1").await, "a1");
    assert_eq!(f.value("/r/a").await, "a2");
    assert_eq!(f.value("/r/b").await, "b1");
    // Repeating the rotation is harmless.
    assert_eq!(f.store.rotate_key(new_key.clone()).await.unwrap(), 0);

    // Another store still on the old key is told so.
    let stale = f.reopen(MasterKey::generate().unwrap()).await;
    let err = stale.get(&sel("/r/b"), true).await.unwrap_err();
    assert!(matches!(err, ParamError::WrongMasterKey { found, .. } if found == new_key.id()));
    assert_ne!(old_id, new_key.id());
    // A fresh store with the new key reads everything.
    let fresh = f.reopen(new_key).await;
    assert_eq!(
        fresh
            .get(&sel("/r/a:1"), true)
            .await
            .unwrap()
            .value
            .expose(),
        Some("a1")
    );
}

#[tokio::test]
async fn a_failed_rotation_changes_no_row() {
    let f = fixture().await;
    f.put("/r/a", "a1", ParamType::SecureString).await.unwrap();
    f.put("/r/z", "z1", ParamType::SecureString).await.unwrap();
    // Corrupt the last row so the rotation fails after it has resealed the first.
    sqlx::query("UPDATE param_versions SET ciphertext = $1 WHERE name = '/r/z'")
        .bind(vec![0_u8; 20])
        .execute(f.pool())
        .await
        .unwrap();
    let before = sealed_rows(f.pool()).await;
    let old_id = f.store.key_id().await;
    let err = f
        .store
        .rotate_key(MasterKey::generate().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "param.decrypt_failed");
    assert_eq!(sealed_rows(f.pool()).await, before);
    assert_eq!(f.store.key_id().await, old_id);
    assert_eq!(f.value("/r/a").await, "a1");
}

// ---- resolution ----

#[tokio::test]
async fn resolve_records_versions_and_marks_secrets() {
    let f = fixture().await;
    f.put(
        "/shop/staging/SERVICE_DNS",
        "api.staging",
        ParamType::String,
    )
    .await
    .unwrap();
    f.put(
        "/shop/staging/SERVICE_DNS",
        "api2.staging",
        ParamType::String,
    )
    .await
    .unwrap();
    f.put("/shop/staging/DB_PASSWORD", "pw", ParamType::SecureString)
        .await
        .unwrap();
    f.store
        .label(&name("/shop/staging/SERVICE_DNS"), Some(1), &["approved"])
        .await
        .unwrap();

    let template = "/shop/${environment}/SERVICE_DNS";
    let refs = [
        ("SERVICE_DNS", sel(&expand_environment(template, "staging"))),
        ("APPROVED_DNS", sel("/shop/staging/SERVICE_DNS:approved")),
        ("DB_PASSWORD", sel("/shop/staging/DB_PASSWORD")),
    ];
    let resolved = f.store.resolve(&refs).await.unwrap();
    let summary: Vec<(&str, &str, u64, bool, &str)> = resolved
        .iter()
        .map(|r| {
            (
                r.var.as_str(),
                r.name.as_str(),
                r.version,
                r.secret,
                r.value.expose(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "SERVICE_DNS",
                "/shop/staging/SERVICE_DNS",
                2,
                false,
                "api2.staging"
            ),
            (
                "APPROVED_DNS",
                "/shop/staging/SERVICE_DNS",
                1,
                false,
                "api.staging"
            ),
            ("DB_PASSWORD", "/shop/staging/DB_PASSWORD", 1, true, "pw"),
        ]
    );
    assert!(!format!("{resolved:?}").contains("pw\""));
}

#[tokio::test]
async fn resolve_fails_naming_the_missing_parameter() {
    let f = fixture().await;
    f.put("/shop/staging/A", "a", ParamType::String)
        .await
        .unwrap();
    let refs = [
        ("A", sel("/shop/staging/A")),
        ("B", sel("/shop/production/B")),
    ];
    let err = f.store.resolve(&refs).await.unwrap_err();
    assert_eq!(err.code(), "param.unresolved");
    let message = err.to_string();
    assert!(
        message.contains("B") && message.contains("/shop/production/B"),
        "{message}"
    );
    let ParamError::Unresolved { source, .. } = &err else {
        unreachable!()
    };
    assert_eq!(source.code(), "param.not_found");

    let err = f
        .store
        .resolve(&[("A", sel("/shop/staging/A:7"))])
        .await
        .unwrap_err();
    let ParamError::Unresolved { source, .. } = &err else {
        unreachable!()
    };
    assert_eq!(source.code(), "param.version_not_found");
}

// ---- schema ----

#[tokio::test]
async fn open_is_idempotent_and_only_adds_param_tables() {
    let db = database().await;
    sqlx::query("CREATE TABLE executions (id TEXT PRIMARY KEY)")
        .execute(db.pool())
        .await
        .unwrap();
    let key = MasterKey::generate().unwrap();
    let store = ParamStore::open(db.clone(), key.clone()).await.unwrap();
    store
        .put(PutParameter::new(&name("/x"), "1", ParamType::String, "t"))
        .await
        .unwrap();
    let again = ParamStore::open(db.clone(), key).await.unwrap();
    assert_eq!(again.get(&sel("/x"), false).await.unwrap().version, 1);
    let mut tables: Vec<String> = sqlx::query_scalar(match db.backend() {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table'",
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = 'public'"
        }
    })
    .fetch_all(db.pool())
    .await
    .unwrap();
    tables.sort();
    assert_eq!(
        tables,
        [
            "executions",
            "param_labels",
            "param_meta",
            "param_parameters",
            "param_versions"
        ]
    );
}
