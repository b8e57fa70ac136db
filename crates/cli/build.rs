//! Records the git commit the binary is built from, for `gantry version` and
//! `gantry --version`: `GANTRY_COMMIT` is `git rev-parse --short HEAD` (git
//! run directly, no shell), or `unknown` outside a git checkout (a source
//! tarball, `cargo install` from a registry) or without git.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=GANTRY_COMMIT={commit}");
    // Build again when HEAD moves (a commit, a checkout): HEAD's reflog is
    // written on every move, HEAD itself on a checkout, packed-refs on a gc.
    // A path that does not exist would make cargo run this on every build,
    // so only existing ones are named.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        for file in ["HEAD", "logs/HEAD", "packed-refs"] {
            let path = git_dir.join(file);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// The trimmed standard output of a successful `git ARGS`, or None.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
