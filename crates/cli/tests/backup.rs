//! `gantry backup` and `gantry restore`: a backup taken while the server
//! runs restores into a data dir whose server lists the same executions,
//! parameters (SecureStrings too, with the master key) and images; backup
//! and restored files are owner-only; a tar with a `..` entry or a
//! symlink is refused and writes nothing outside the target.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Server, ok, push, run};
use gantry_api::{ExecutionView, ImageView};

const PIPELINE: &str = r#"
version: 1
name: kept
stages:
  - name: Work
    actions:
      - {name: echo, type: shell, commands: ["echo kept"]}
"#;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn ids(data: &Path) -> Vec<String> {
    let list: Vec<ExecutionView> =
        serde_json::from_str(&ok(run(data, &["executions", "--json"]))).unwrap();
    list.into_iter().map(|e| e.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_data_dir_serves_the_same_executions_parameters_and_images() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("a/.gantry");
    std::fs::create_dir_all(&data).unwrap();
    let file = dir.path().join("gantry.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let backup = dir.path().join("gantry.tar");
    let (executions, digest) = {
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
        let digest = push(&server.registry, token.trim(), "shop/web", "1.0").await;
        let executions = ids(&data);
        assert_eq!(executions.len(), 1);
        // Online: the server runs while the backup is taken.
        ok(run(
            &data,
            &[
                "backup",
                "--out",
                backup.to_str().unwrap(),
                "--with-master-key",
            ],
        ));
        assert_eq!(mode(&backup), 0o600);
        // A backup never overwrites a file.
        let again = run(&data, &["backup", "--out", backup.to_str().unwrap()]);
        assert_eq!(again.status.code(), Some(1));
        (executions, digest)
    };

    let restored = dir.path().join("b/.gantry");
    ok(run(&restored, &["restore", backup.to_str().unwrap()]));
    assert_eq!(mode(&restored), 0o700);
    assert_eq!(mode(&restored.join("gantry.db")), 0o600);
    assert_eq!(mode(&restored.join("params-master.key")), 0o600);
    assert!(
        !restored.join("admin.token").exists(),
        "the token is never in a backup"
    );
    // A restore goes only into an empty data dir.
    let twice = run(&restored, &["restore", backup.to_str().unwrap()]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("not empty"));

    let _server = Server::start(&restored);
    assert_eq!(ids(&restored), executions);
    assert_eq!(
        ok(run(&restored, &["param", "get", "/app/plain"])).trim(),
        "hello"
    );
    assert_eq!(
        ok(run(
            &restored,
            &["param", "get", "/app/secret", "--decrypt"]
        ))
        .trim(),
        "s3cr3t"
    );
    let images: Vec<ImageView> =
        serde_json::from_str(&ok(run(&restored, &["image", "ls", "--json"]))).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].digest, digest);
    // Its blobs came along: the config reads.
    let text = ok(run(&restored, &["image", "inspect", "shop/web:1.0"]));
    assert!(text.contains("entrypoint: /bin/web"), "{text}");
}

/// A tar holding one entry named `name` (written raw: tar writers refuse
/// such names) of `kind`, with `link` as its link target.
fn hostile_tar(path: &Path, name: &str, kind: tar::EntryType, link: Option<&str>) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    let info = br#"{"format":1,"version":"0","commit":"x","created_at":"","with_master_key":false,"blobs":0}"#;
    let mut header = tar::Header::new_ustar();
    header.set_size(info.len() as u64);
    header.set_mode(0o600);
    header.set_cksum();
    builder
        .append_data(&mut header, "gantry-backup.json", &info[..])
        .unwrap();
    let mut header = tar::Header::new_gnu();
    let raw = header.as_gnu_mut().unwrap();
    raw.name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o600);
    let body: &[u8] = if kind == tar::EntryType::Regular {
        b"evil"
    } else {
        b""
    };
    header.set_size(body.len() as u64);
    if let Some(link) = link {
        header.set_link_name(link).unwrap();
    }
    header.set_cksum();
    builder.append(&header, body).unwrap();
    builder.finish().unwrap();
}

#[test]
fn a_backup_with_a_climbing_path_or_a_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("evil");
    for (name, kind, link) in [
        ("../evil", tar::EntryType::Regular, None),
        ("artifacts/../../evil", tar::EntryType::Regular, None),
        ("/tmp/evil-gantry", tar::EntryType::Regular, None),
        (
            "artifacts",
            tar::EntryType::Symlink,
            Some(dir.path().to_str().unwrap()),
        ),
        ("gantry.db", tar::EntryType::Link, Some("/etc/passwd")),
    ] {
        let tar = dir.path().join("hostile.tar");
        hostile_tar(&tar, name, kind, link);
        let target = dir.path().join("restored");
        let out = run(&target, &["restore", tar.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name.trim_start_matches('/')) || stderr.contains("link"),
            "{name}: {stderr}"
        );
        assert!(!outside.exists() && !Path::new("/tmp/evil-gantry").exists());
        assert!(
            !target.exists(),
            "{name}: nothing is written when a backup is refused"
        );
    }
}

/// A backup whose blob does not hash to the digest its name spells (altered
/// after it was made) is refused, and nothing is written.
#[test]
fn a_backup_with_an_altered_blob_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("altered.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&tar).unwrap());
    let info = br#"{"format":1,"version":"0","commit":"x","created_at":"","with_master_key":false,"blobs":1}"#;
    let mut append = |name: &str, body: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(body.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        builder.append_data(&mut header, name, body).unwrap();
    };
    append("gantry-backup.json", info);
    append("gantry.db", b"");
    // The digest of "hello", holding something else.
    let digest = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    append(
        &format!("artifacts/blobs/sha256/{}/{}", &digest[..2], &digest[2..]),
        b"not hello",
    );
    builder.finish().unwrap();
    drop(builder);
    let target = dir.path().join("restored");
    let out = run(&target, &["restore", tar.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("does not hold what its digest says"),
        "{stderr}"
    );
    assert!(!target.exists(), "nothing is written");
}
