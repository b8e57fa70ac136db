//! `gantry version`, `gantry --version` and `gantry completions`: the
//! binary names the commit it was built from, and the completion scripts
//! are ones the shells accept.

use std::process::{Command, Output};

fn gantry(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gantry {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn git(args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn the_version_names_the_commit_the_binary_was_built_from() {
    let answer: serde_json::Value =
        serde_json::from_str(&stdout(&gantry(&["version", "--json"]))).unwrap();
    assert_eq!(answer["version"], env!("CARGO_PKG_VERSION"));
    let commit = answer["commit"].as_str().unwrap().to_string();
    let text = stdout(&gantry(&["version"]));
    assert_eq!(
        text.trim(),
        format!("gantry {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(stdout(&gantry(&["--version"])), text);

    // Built in this checkout: the commit is this repository's HEAD, or one
    // before it when someone committed after the build.
    assert!(
        git(&["rev-parse", "--git-dir"]).status.success(),
        "the test runs in a git checkout"
    );
    assert_ne!(commit, "unknown");
    let resolved = git(&["rev-parse", "--verify", &format!("{commit}^{{commit}}")]);
    assert!(resolved.status.success(), "{commit} is not a commit here");
    let ancestor = git(&["merge-base", "--is-ancestor", &commit, "HEAD"]);
    assert!(
        ancestor.status.success(),
        "{commit} is not HEAD or before it"
    );
}

#[test]
fn the_completion_scripts_name_the_subcommands_and_bash_accepts_its_own() {
    let bash = stdout(&gantry(&["completions", "bash"]));
    for sub in ["run", "approve", "completions", "version", "registry"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gantry.bash");
    std::fs::write(&file, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let zsh = stdout(&gantry(&["completions", "zsh"]));
    assert!(
        zsh.starts_with("#compdef gantry"),
        "{}",
        &zsh[..80.min(zsh.len())]
    );
    let fish = stdout(&gantry(&["completions", "fish"]));
    assert!(fish.contains("complete -c gantry"));
    assert!(fish.contains("approve"));
}
