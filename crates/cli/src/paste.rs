//! Commands printed for a person to paste (`approve: gantry approve ID
//! S/A`, `re-attach: gantry watch ID`, `gantry shutdown`) name a program
//! that runs this binary: `gantry` when the `gantry` found on PATH is this
//! binary, else this binary's real path. Someone who started gantry with
//! `cargo run` or `./target/debug/gantry` has no `gantry` on PATH (or an
//! older one), and a hint naming it would fail or reach another version.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::OnceLock;

/// The program to start a pasted command with: `gantry`, or this binary's
/// path (quoted for a POSIX shell when it needs to be).
pub(crate) fn gantry() -> &'static str {
    static PROGRAM: OnceLock<String> = OnceLock::new();
    PROGRAM.get_or_init(|| match std::env::current_exe() {
        Ok(exe) => program(std::env::var_os("PATH").as_deref(), &exe),
        Err(_) => "gantry".to_string(),
    })
}

/// `gantry` followed by `args` (` --data-dir DIR`, or nothing), as pasted.
pub(crate) fn gantry_with(args: &str) -> String {
    format!("{}{args}", gantry())
}

/// `gantry` when the first `gantry` on `path` is `exe` (both resolved
/// through symlinks), else `exe` itself.
fn program(path: Option<&OsStr>, exe: &Path) -> String {
    let exe = exe.canonicalize().unwrap_or_else(|_| exe.to_path_buf());
    let on_path = path
        .into_iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("gantry"))
        .find(|candidate| is_executable(candidate));
    match on_path.and_then(|p| p.canonicalize().ok()) {
        Some(found) if found == exe => "gantry".to_string(),
        _ => shell_word(&exe),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `path` as one word of a POSIX shell: as it is when it holds only
/// characters no shell treats specially, else in single quotes.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn a_gantry_on_path_that_is_this_binary_is_named_gantry() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("target/debug/gantry");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        executable(&exe);
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(&exe, bin.join("gantry")).unwrap();
        let path = std::env::join_paths([dir.path().join("empty"), bin]).unwrap();
        assert_eq!(program(Some(&path), &exe), "gantry");
    }

    #[test]
    fn without_gantry_on_path_or_with_another_one_the_real_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("gantry");
        executable(&exe);
        let real = exe.canonicalize().unwrap().display().to_string();
        assert_eq!(program(None, &exe), real);
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(program(Some(empty.as_os_str()), &exe), real);
        // An older gantry earlier on PATH is not this binary.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        executable(&other.join("gantry"));
        assert_eq!(program(Some(other.as_os_str()), &exe), real);
    }

    #[test]
    fn a_path_with_spaces_or_quotes_is_quoted_for_the_shell() {
        assert_eq!(shell_word(Path::new("/opt/gantry")), "/opt/gantry");
        assert_eq!(
            shell_word(Path::new("/home/a b/it's/gantry")),
            r"'/home/a b/it'\''s/gantry'"
        );
    }
}
