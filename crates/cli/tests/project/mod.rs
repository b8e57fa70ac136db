//! What the newcomer tests (issue 18) share: the `gantry` binary with no
//! data dir, token or server from the environment and no colour, and a
//! temporary project directory whose data dir is `.gantry/` in it, its
//! server shut down when the project is dropped.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The binary, with nothing from the caller's environment that would
/// choose a data dir, a token or a server, and no colour.
pub(crate) fn gantry() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gantry"));
    cmd.env_remove("GANTRY_DATA_DIR")
        .env_remove("GANTRY_TOKEN")
        .env_remove("GANTRY_SERVER")
        .env("NO_COLOR", "1")
        .env("GANTRY_LOG", "warn");
    cmd
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temporary project directory (canonical path) with its data dir at
/// `.gantry/`.
pub(crate) struct Project {
    _tmp: tempfile::TempDir,
    pub(crate) dir: PathBuf,
}

impl Project {
    pub(crate) fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        Project { _tmp: tmp, dir }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.join(".gantry")
    }

    pub(crate) fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join(file), text).unwrap();
    }

    /// Runs gantry in the project on its data dir.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        gantry()
            .current_dir(&self.dir)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(args)
            .output()
            .unwrap()
    }

    /// [`Project::run`], which must exit 0; its standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        stdout(&out)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.run(&["shutdown"]);
    }
}
