//! The official OCI distribution-spec conformance suite (v1.1.1, all four
//! workflows) against the embedded registry of a fresh `gantry server`,
//! logged in as the data dir's admin. Any failed case fails this test.
//!
//! The suite is built outside the repository (the `conformance` directory of
//! github.com/opencontainers/distribution-spec, see docs/formats.md); point
//! `GANTRY_OCI_CONFORMANCE` at a script that runs it against `ADDR`.
//! Without it the test says so and passes; `scripts/test` says so too.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The suite's `run` script, or where it was looked for in vain.
fn suite() -> Result<PathBuf, PathBuf> {
    let path = PathBuf::from(std::env::var_os("GANTRY_OCI_CONFORMANCE").unwrap_or_default());
    if path.is_file() { Ok(path) } else { Err(path) }
}

/// Kills the server when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(passed, failed, skipped)` from the suite's last line.
fn totals(output: &str) -> Option<(u32, u32, u32)> {
    let line = output.lines().rev().find(|l| l.ends_with(" skipped"))?;
    let mut numbers = line
        .split(',')
        .map(|part| part.split_whitespace().next()?.parse::<u32>().ok());
    Some((numbers.next()??, numbers.next()??, numbers.next()??))
}

#[test]
fn the_embedded_registry_passes_the_oci_distribution_conformance_suite() {
    if !gantry_testkit::registry_tests_enabled("the OCI conformance suite") {
        return;
    }
    let suite = match suite() {
        Ok(suite) => suite,
        Err(missing) => {
            println!(
                "skipped the OCI conformance suite: no {}; set GANTRY_OCI_CONFORMANCE to its run script",
                missing.display()
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .env_remove("GANTRY_DATA_DIR")
            .env_remove("GANTRY_TOKEN")
            .env_remove("GANTRY_SERVER")
            .env("GANTRY_LOG", "warn")
            .args(["server", "--data-dir"])
            .arg(&data)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--registry-listen",
                "127.0.0.1:0",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let registry =
        gantry_clock::blocking_poll(Duration::from_secs(60), Duration::from_millis(100), || {
            let info: Value =
                serde_json::from_str(&std::fs::read_to_string(data.join("server.json")).ok()?)
                    .ok()?;
            info["registry"].as_str().map(str::to_string)
        })
        .unwrap_or_else(|| {
            panic!(
                "the server did not start: {}",
                std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            )
        });
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();

    let out = Command::new(&suite)
        .arg(&registry)
        .env("OCI_USERNAME", "gantry")
        .env("OCI_PASSWORD", token.trim())
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    let (passed, failed, _skipped) = totals(&stdout).unwrap_or_else(|| {
        panic!(
            "no totals from the suite: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(failed, 0, "the conformance suite failed:\n{stdout}");
    assert!(out.status.success(), "the suite exited {}", out.status);
    // 75 passed when this test was written; fewer means cases stopped
    // running, not that they pass.
    assert!(passed >= 75, "only {passed} cases passed:\n{stdout}");
}

#[test]
fn totals_are_read_from_the_last_line() {
    assert_eq!(
        totals("  Pull  21 passed,  2 failed,  1 skipped\n67 passed, 8 failed, 4 skipped\n"),
        Some((67, 8, 4))
    );
    assert_eq!(totals("nothing"), None);
}
