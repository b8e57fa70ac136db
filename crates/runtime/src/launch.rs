//! How the process runtime turns an unpacked image and a replica spec into a
//! program, arguments, environment and working directory (formats.md §4).
//!
//! - **Command**: the spec's `command`, else the image's entrypoint followed by
//!   its cmd.
//! - **Program**: an absolute path is looked up inside the root; a relative
//!   path with a `/` inside the root from the working directory; a bare name in
//!   the image's `PATH` (inside the root), then the host's. Symlinks on the way
//!   resolve inside the root, so `/bin/sh -> /bin/busybox` works; `argv[0]`
//!   stays what the image says, which is what multi-call binaries go by.
//! - **Working directory**: the image's `WorkingDir` inside the root (the root
//!   when unset), created if missing, as Docker does.
//! - **Environment**: a clean one, not gantry's: a few host variables that
//!   describe the user and locale (`HOME`, `USER`, `LOGNAME`, `LANG`, `LC_ALL`,
//!   `TZ`, `TMPDIR`), then the image's `Env`, then the spec's, then
//!   `PORT`, `GANTRY_ROOTFS` and `GANTRY_REPLICA` (the runtime's mark, see
//!   `process.rs`). `PATH` is the winning `PATH` (the spec's, else the
//!   image's) with each entry mapped into the root, then the host's `PATH`.
//!   `GANTRY_OWNER` is never passed on: the server kills the processes that
//!   carry it when it restarts, and replicas are meant to survive that. Nor
//!   are `GANTRY_MASTER_KEY` and `GANTRY_TOKEN`, the server's secrets, even
//!   when a spec or an image names them.
//! - **User**: the spec's [`ReplicaSpec::user`] (a name or `uid[:gid]`, a
//!   name looked up in the host's user database); the replica then runs with
//!   that uid and gid, no supplementary groups, and the user's `HOME`,
//!   `USER` and `LOGNAME` instead of gantry's. Running as another user needs
//!   gantry to run as root, and the user must be able to reach the unpacked
//!   root: `DATA_DIR` must be traversable (`chmod o+x`). Without `user`, the
//!   replica runs as gantry's user.
//!
//! - **Interpreters**: a program that is a script (`#!` on its first line)
//!   is started as the kernel would start it, but with the interpreter looked
//!   up the way an absolute program is: inside the root (then, for images
//!   that relied on it before, the host's file at that path). The line is
//!   read, never handed to a shell: `#!INTERPRETER [ARG]`, the rest of the
//!   line being one argument, as Linux reads it; an interpreter that is a
//!   script itself is followed the same way, up to four deep. The process is
//!   then `INTERPRETER [ARG] SCRIPT ARGS…`, `argv[0]` the interpreter as the
//!   line writes it (so `#!/bin/busybox sh` works).
//! - **Missing files are named**: a program, an interpreter, or the dynamic
//!   loader an ELF program names (`PT_INTERP`, which the kernel reads on the
//!   host) that does not exist is a spawn error naming that file, not a bare
//!   "No such file or directory" about the program.
//!
//! There is no isolation: paths the program opens itself (an absolute
//! symlink, `/etc/…`, its shared libraries) are the host's. The image's
//! `User` is not applied.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::OWNER_ENV;
use crate::error::RuntimeError;
use crate::images::UnpackedImage;
use crate::replica::ReplicaSpec;
use crate::unpack::resolve_in_root;

/// The variable holding the replica's port.
pub(crate) const PORT_ENV: &str = "PORT";
/// The variable holding the image's root on the host.
pub(crate) const ROOTFS_ENV: &str = "GANTRY_ROOTFS";
/// Host variables a replica gets (before the image's and spec's own).
const HOST_PASSED: [&str; 7] = ["HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"];
/// The server's secrets: never in a replica's environment, whoever sets them.
const NEVER_PASSED: [&str; 2] = ["GANTRY_MASTER_KEY", "GANTRY_TOKEN"];

/// What the replica gets from gantry's own environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostEnv {
    /// The host's `PATH`, searched after the image's.
    pub(crate) path: Option<OsString>,
    /// The host variables passed on.
    pub(crate) passed: Vec<(String, OsString)>,
}

impl HostEnv {
    /// gantry's environment, as it is now.
    pub(crate) fn capture() -> HostEnv {
        HostEnv {
            path: std::env::var_os("PATH"),
            passed: HOST_PASSED
                .iter()
                .filter_map(|name| Some((name.to_string(), std::env::var_os(name)?)))
                .collect(),
        }
    }
}

/// A planned process start.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Launch {
    /// The file to execute, on the host.
    pub(crate) program: PathBuf,
    /// `argv[0]`, as the image or command says.
    pub(crate) arg0: String,
    /// The other arguments.
    pub(crate) args: Vec<String>,
    /// The whole environment.
    pub(crate) env: Vec<(String, OsString)>,
    /// The working directory, on the host.
    pub(crate) cwd: PathBuf,
    /// The uid and gid to run as; `None`: gantry's own.
    pub(crate) ids: Option<(u32, u32)>,
}

/// A user to run as: uid, gid, and for a user the host knows, its name and home.
pub(crate) type Account = (u32, u32, Option<(String, PathBuf)>);

/// The account of `user`, a name or `uid[:gid]`; a uid without a gid takes
/// its user's primary group, or the group of the same number for a uid the
/// host does not know.
pub(crate) fn resolve_user(user: &str) -> Result<Account, String> {
    use nix::unistd::{Uid, User};
    let lookup = |found: Result<Option<User>, nix::Error>| {
        found.map_err(|e| format!("reading the user database: {e}"))
    };
    let (uid, gid) = match user.split_once(':') {
        Some((uid, gid)) => (uid.parse::<u32>().ok(), gid.parse::<u32>().ok()),
        None => (user.parse::<u32>().ok(), None),
    };
    match uid {
        Some(uid) => {
            let known = lookup(User::from_uid(Uid::from_raw(uid)))?;
            let gid = gid
                .or_else(|| known.as_ref().map(|u| u.gid.as_raw()))
                .unwrap_or(uid);
            Ok((uid, gid, known.map(|u| (u.name, u.dir))))
        }
        None => {
            let known = lookup(User::from_name(user))?
                .ok_or_else(|| format!("user {user} does not exist on this host"))?;
            Ok((
                known.uid.as_raw(),
                known.gid.as_raw(),
                Some((known.name, known.dir)),
            ))
        }
    }
}

/// Plans how to run `spec` from `image` on `port`; `extra` variables go last.
pub(crate) fn plan(
    image: &UnpackedImage,
    spec: &ReplicaSpec,
    port: u16,
    host: &HostEnv,
    extra: &[(String, OsString)],
) -> Result<Launch, RuntimeError> {
    let root = &image.root;
    let config = &image.config;
    let argv: Vec<String> = match &spec.command {
        Some(command) => command.clone(),
        None => config
            .entrypoint
            .iter()
            .flatten()
            .chain(config.cmd.iter().flatten())
            .cloned()
            .collect(),
    };
    let Some((arg0, args)) = argv.split_first() else {
        return Err(RuntimeError::Spawn {
            id: spec.id.clone(),
            program: String::new(),
            reason: "the image has no entrypoint or cmd, and the service no command".to_owned(),
        });
    };
    let spawn_error = |reason: String| RuntimeError::Spawn {
        id: spec.id.clone(),
        program: arg0.clone(),
        reason,
    };

    let mut ids = None;
    let mut env = Env::default();
    for (name, value) in &host.passed {
        env.set(name, value.clone());
    }
    if let Some(user) = spec.user() {
        let (uid, gid, known) = resolve_user(user).map_err(&spawn_error)?;
        let current = nix::unistd::geteuid().as_raw();
        if uid != current && current != 0 {
            return Err(spawn_error(format!(
                "running as user {user} needs gantry to run as root (it runs as uid {current})"
            )));
        }
        ids = Some((uid, gid));
        // gantry's own HOME and names would be wrong for that user.
        for name in ["HOME", "USER", "LOGNAME"] {
            env.remove(name);
        }
        if let Some((name, home)) = known {
            env.set("HOME", home.into_os_string());
            env.set("USER", name.clone().into());
            env.set("LOGNAME", name.into());
        }
    }
    for entry in config.env.iter().flatten() {
        if let Some((name, value)) = entry.split_once('=') {
            env.set(name, value.into());
        }
    }
    for (name, value) in &spec.env {
        env.set(name, value.into());
    }
    let image_path: Vec<PathBuf> = env
        .get("PATH")
        .map(|path| {
            std::env::split_paths(path)
                .filter(|dir| !dir.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let host_path: Vec<PathBuf> = host
        .path
        .as_deref()
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let mapped: Vec<PathBuf> = image_path
        .iter()
        .map(|dir| in_root(root, dir))
        .chain(host_path.iter().cloned())
        .collect();
    if !mapped.is_empty() {
        let joined = std::env::join_paths(&mapped)
            .map_err(|e| spawn_error(format!("PATH cannot be built: {e}")))?;
        env.set("PATH", joined);
    }
    env.set(PORT_ENV, port.to_string().into());
    env.set(ROOTFS_ENV, root.as_os_str().to_owned());
    for (name, value) in extra {
        env.set(name, value.clone());
    }
    env.remove(OWNER_ENV);
    for name in NEVER_PASSED {
        env.remove(name);
    }

    let workdir = Path::new("/").join(config.working_dir.as_deref().unwrap_or("/"));
    let cwd = resolve_in_root(root, &workdir, true)
        .map_err(|e| spawn_error(format!("working directory {}: {e}", workdir.display())))?;
    std::fs::create_dir_all(&cwd)
        .map_err(|e| spawn_error(format!("working directory {}: {e}", workdir.display())))?;

    let mut program = if arg0.contains('/') {
        let in_image = workdir.join(arg0);
        let program = resolve_in_root(root, &in_image, true)
            .map_err(|e| spawn_error(format!("{}: {e}", in_image.display())))?;
        if !program.exists() {
            return Err(spawn_error(format!(
                "{} does not exist in the image",
                in_image.display()
            )));
        }
        if !is_executable(&program) {
            return Err(spawn_error(format!(
                "{} is not an executable file",
                in_image.display()
            )));
        }
        program
    } else {
        let in_image = image_path.iter().filter_map(|dir| {
            resolve_in_root(root, &Path::new("/").join(dir).join(arg0), true).ok()
        });
        let on_host = host_path.iter().map(|dir| dir.join(arg0));
        in_image
            .chain(on_host)
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| {
                spawn_error(format!(
                    "not found in the image's PATH ({}) or the host's",
                    std::env::join_paths(&image_path)
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ))
            })?
    };
    // A script runs under its interpreter, found as a program is; the kernel
    // would look for it on the host only, and say nothing but ENOENT.
    let mut launch_arg0 = arg0.clone();
    let mut launch_args = args.to_vec();
    // The file as the image names it, for errors.
    let named_program = if arg0.contains('/') {
        workdir.join(arg0)
    } else {
        PathBuf::from(arg0)
    };
    let mut named = named_program.clone();
    let mut depth = 0;
    while let Some(line) = interpreter_line(&program)
        .map_err(|e| spawn_error(format!("reading {}: {e}", named.display())))?
    {
        depth += 1;
        if depth > MAX_INTERPRETERS {
            return Err(spawn_error(format!(
                "{} is a script more than {MAX_INTERPRETERS} interpreters deep (`#!` lines)",
                named_program.display()
            )));
        }
        let interpreter =
            resolve_interpreter(root, &workdir, &line.interpreter).map_err(|reason| {
                spawn_error(format!(
                    "{} is a script whose interpreter {} (its #! line) {reason}",
                    named.display(),
                    line.interpreter
                ))
            })?;
        let mut script_args = Vec::new();
        script_args.extend(line.argument);
        script_args.push(program.to_string_lossy().into_owned());
        script_args.append(&mut launch_args);
        launch_args = script_args;
        launch_arg0 = line.interpreter.clone();
        named = PathBuf::from(&line.interpreter);
        program = interpreter;
    }
    if let Some(loader) = elf_interpreter(&program)
        && !Path::new(&loader).exists()
    {
        return Err(spawn_error(format!(
            "{} needs the dynamic loader {loader} (its ELF interpreter), which this host \
             does not have: the process runtime runs programs on the host, so build the \
             program statically or use the docker runtime",
            named.display()
        )));
    }
    Ok(Launch {
        program,
        arg0: launch_arg0,
        args: launch_args,
        env: env.vars,
        cwd,
        ids,
    })
}

/// How many `#!` lines deep a script may go (Linux's limit too).
const MAX_INTERPRETERS: usize = 4;

/// How much of a script's first line the kernel reads (Linux's
/// `BINPRM_BUF_SIZE`); a longer line is cut there.
const INTERPRETER_LINE_MAX: usize = 256;

/// A script's `#!` line: the interpreter and at most one argument.
#[derive(Debug, PartialEq)]
struct InterpreterLine {
    interpreter: String,
    /// Everything after the interpreter, spaces inside kept: one argument.
    argument: Option<String>,
}

/// The `#!` line of `program`, or `None` when it is not a script.
fn interpreter_line(program: &Path) -> std::io::Result<Option<InterpreterLine>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(INTERPRETER_LINE_MAX);
    std::fs::File::open(program)?
        .take(INTERPRETER_LINE_MAX as u64)
        .read_to_end(&mut head)?;
    let Some(rest) = head.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let line = rest.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let line = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
    let (interpreter, argument) = match line.split_once([' ', '\t']) {
        Some((interpreter, argument)) => {
            let argument = argument.trim_matches(|c| c == ' ' || c == '\t');
            (
                interpreter,
                (!argument.is_empty()).then(|| argument.to_owned()),
            )
        }
        None => (line, None),
    };
    if interpreter.is_empty() {
        return Err(std::io::Error::other("its `#!` line names no interpreter"));
    }
    Ok(Some(InterpreterLine {
        interpreter: interpreter.to_owned(),
        argument,
    }))
}

/// The host path of a script's interpreter: inside the root (a relative one
/// from the working directory), else the host's file at an absolute path;
/// or why it cannot run.
fn resolve_interpreter(root: &Path, workdir: &Path, interpreter: &str) -> Result<PathBuf, String> {
    let in_image = workdir.join(interpreter);
    let resolved = resolve_in_root(root, &in_image, true).map_err(|e| e.to_string())?;
    if resolved.exists() {
        return if is_executable(&resolved) {
            Ok(resolved)
        } else {
            Err(format!(
                "is in the image at {} but is not an executable file",
                in_image.display()
            ))
        };
    }
    let on_host = Path::new(interpreter);
    if on_host.is_absolute() && is_executable(on_host) {
        return Ok(on_host.to_path_buf());
    }
    Err("does not exist in the image, nor on this host".to_owned())
}

/// The dynamic loader an ELF executable names (its `PT_INTERP`), which the
/// kernel opens on the host; `None` for a static program, a script, or
/// anything that cannot be read as ELF.
fn elf_interpreter(program: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const PT_INTERP: u32 = 3;
    let mut file = std::fs::File::open(program).ok()?;
    let mut header = [0u8; 64];
    file.read_exact(&mut header).ok()?;
    if header[..4] != *b"\x7fELF" {
        return None;
    }
    let wide = match header[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match header[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let read = |bytes: &[u8]| -> u64 {
        let mut value = 0u64;
        for (i, b) in bytes.iter().enumerate() {
            let shift = if little { i } else { bytes.len() - 1 - i } * 8;
            value |= u64::from(*b) << shift;
        }
        value
    };
    let (phoff, phentsize, phnum) = if wide {
        (
            read(&header[32..40]),
            read(&header[54..56]),
            read(&header[56..58]),
        )
    } else {
        (
            read(&header[28..32]),
            read(&header[42..44]),
            read(&header[44..46]),
        )
    };
    let mut entry = vec![0u8; usize::try_from(phentsize).ok()?.clamp(32, 64)];
    for i in 0..phnum.min(256) {
        file.seek(SeekFrom::Start(phoff + i * phentsize)).ok()?;
        file.read_exact(&mut entry).ok()?;
        if read(&entry[0..4]) != u64::from(PT_INTERP) {
            continue;
        }
        let (offset, size) = if wide {
            (read(&entry[8..16]), read(&entry[32..40]))
        } else {
            (read(&entry[4..8]), read(&entry[16..20]))
        };
        let mut path = vec![0u8; usize::try_from(size.min(4096)).ok()?];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut path).ok()?;
        let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
        return Some(String::from_utf8_lossy(&path[..end]).into_owned());
    }
    None
}

/// `dir` of the image as a host path under `root` (not resolving symlinks: the
/// program does that when it searches `PATH`).
fn in_root(root: &Path, dir: &Path) -> PathBuf {
    let relative: PathBuf = dir
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    root.join(relative)
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// An environment where setting a name again replaces its value in place.
#[derive(Default)]
struct Env {
    vars: Vec<(String, OsString)>,
}

impl Env {
    fn set(&mut self, name: &str, value: OsString) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, existing)) => *existing = value,
            None => self.vars.push((name.to_owned(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<&OsString> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn remove(&mut self, name: &str) {
        self.vars.retain(|(n, _)| n != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::RunConfig;
    use crate::replica::tests::spec;

    fn image(config: RunConfig) -> (tempfile::TempDir, UnpackedImage) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        for file in ["app/server", "usr/bin/busybox"] {
            std::fs::write(root.join(file), "").unwrap();
            std::fs::set_permissions(root.join(file), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        std::fs::write(root.join("app/data"), "").unwrap();
        std::os::unix::fs::symlink("/usr/bin/busybox", root.join("usr/bin/sh")).unwrap();
        (dir, UnpackedImage { root, config })
    }

    fn host() -> HostEnv {
        HostEnv {
            path: Some("/usr/bin:/bin".into()),
            passed: vec![("HOME".into(), "/home/gantry".into())],
        }
    }

    fn var<'a>(launch: &'a Launch, name: &str) -> Option<&'a str> {
        launch
            .env
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str())
    }

    #[test]
    fn entrypoint_and_cmd_run_from_the_root_with_the_contract_environment() {
        let (_dir, image) = image(RunConfig {
            entrypoint: Some(vec!["/app/server".into()]),
            cmd: Some(vec!["--port".into(), "x".into()]),
            env: Some(vec![
                "PATH=/usr/bin:/app".into(),
                "MODE=image".into(),
                "KEEP=1".into(),
            ]),
            working_dir: Some("/app/www".into()),
            user: None,
        });
        let mut s = spec("r1");
        s.env = vec![
            ("MODE".into(), "spec".into()),
            (OWNER_ENV.into(), "/data".into()),
        ];
        let launch = plan(&image, &s, 4321, &host(), &[]).unwrap();
        let root = image.root.display().to_string();
        assert_eq!(launch.program, image.root.join("app/server"));
        assert_eq!(launch.arg0, "/app/server");
        assert_eq!(launch.args, ["--port", "x"]);
        assert_eq!(launch.cwd, image.root.join("app/www"));
        assert!(launch.cwd.is_dir(), "a missing WorkingDir is created");
        assert_eq!(
            var(&launch, "PATH").unwrap(),
            format!("{root}/usr/bin:{root}/app:/usr/bin:/bin")
        );
        assert_eq!(var(&launch, "PORT"), Some("4321"));
        assert_eq!(var(&launch, "GANTRY_ROOTFS"), Some(root.as_str()));
        assert_eq!(
            var(&launch, "MODE"),
            Some("spec"),
            "the spec wins over the image"
        );
        assert_eq!(var(&launch, "KEEP"), Some("1"));
        assert_eq!(var(&launch, "HOME"), Some("/home/gantry"));
        assert_eq!(
            var(&launch, OWNER_ENV),
            None,
            "GANTRY_OWNER is never passed on"
        );
        assert_eq!(launch.ids, None);
    }

    #[test]
    fn the_servers_secrets_never_reach_a_replica() {
        let (_dir, image) = image(RunConfig {
            entrypoint: Some(vec!["/app/server".into()]),
            env: Some(vec!["GANTRY_TOKEN=from-the-image".into()]),
            ..RunConfig::default()
        });
        let mut s = spec("r1");
        s.env = vec![("GANTRY_MASTER_KEY".into(), "from-the-spec".into())];
        let mut host = host();
        host.passed
            .push(("GANTRY_MASTER_KEY".into(), "from-the-host".into()));
        let launch = plan(&image, &s, 1, &host, &[]).unwrap();
        assert_eq!(var(&launch, "GANTRY_MASTER_KEY"), None);
        assert_eq!(var(&launch, "GANTRY_TOKEN"), None);
    }

    #[test]
    fn a_user_gives_its_ids_and_home() {
        let (_dir, image) = image(RunConfig {
            entrypoint: Some(vec!["/app/server".into()]),
            ..RunConfig::default()
        });
        let root = nix::unistd::geteuid().is_root();
        let s = spec("r1").with_user(Some("nobody".into()));
        match plan(&image, &s, 1, &host(), &[]) {
            Ok(launch) => {
                assert!(root);
                let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
                assert_eq!(launch.ids, Some((nobody.uid.as_raw(), nobody.gid.as_raw())));
                assert_eq!(var(&launch, "USER"), Some("nobody"));
                assert_ne!(var(&launch, "HOME"), Some("/home/gantry"));
            }
            Err(error) => {
                assert!(!root, "{error}");
                assert!(error.to_string().contains("needs gantry to run as root"));
            }
        }
        let s = spec("r1").with_user(Some("no-such-user-gantry".into()));
        let error = plan(&image, &s, 1, &host(), &[]).unwrap_err();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    #[test]
    fn the_command_overrides_and_bare_names_are_found_in_the_image_path_first() {
        let (_dir, image) = image(RunConfig {
            entrypoint: Some(vec!["/app/server".into()]),
            env: Some(vec!["PATH=/usr/bin".into()]),
            ..RunConfig::default()
        });
        let mut s = spec("r1");
        s.command = Some(vec!["sh".into(), "-c".into(), "true".into()]);
        let launch = plan(&image, &s, 1, &host(), &[]).unwrap();
        // `sh` is a symlink to /usr/bin/busybox, resolved inside the root.
        assert_eq!(launch.program, image.root.join("usr/bin/busybox"));
        assert_eq!(launch.arg0, "sh");
        assert_eq!(launch.cwd, image.root);
    }

    /// Writes an executable file into an image's root.
    fn executable(root: &Path, path: &str, content: &[u8]) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn script_image(entrypoint: &str) -> (tempfile::TempDir, UnpackedImage) {
        image(RunConfig {
            entrypoint: Some(vec![entrypoint.into()]),
            cmd: Some(vec!["--port".into()]),
            ..RunConfig::default()
        })
    }

    fn host_path(path: PathBuf) -> String {
        path.to_string_lossy().into_owned()
    }

    #[test]
    fn a_script_runs_under_its_interpreter_from_the_image_with_one_argument() {
        let (_dir, image) = script_image("/app/start");
        // As Linux reads it: the rest of the line is one argument.
        executable(
            &image.root,
            "app/start",
            b"#!/usr/bin/busybox  sh -e \necho hi\n",
        );
        let launch = plan(&image, &spec("r1"), 1, &host(), &[]).unwrap();
        assert_eq!(launch.program, image.root.join("usr/bin/busybox"));
        assert_eq!(launch.arg0, "/usr/bin/busybox");
        assert_eq!(
            launch.args,
            [
                "sh -e".to_owned(),
                host_path(image.root.join("app/start")),
                "--port".to_owned()
            ]
        );
    }

    #[test]
    fn an_interpreter_that_is_a_script_is_followed_inside_the_image() {
        let (_dir, image) = script_image("/app/start");
        executable(&image.root, "app/start", b"#!/app/wrapper x\n");
        // /usr/bin/sh is a symlink to /usr/bin/busybox inside the image.
        executable(&image.root, "app/wrapper", b"#!/usr/bin/sh\n");
        let launch = plan(&image, &spec("r1"), 1, &host(), &[]).unwrap();
        assert_eq!(launch.program, image.root.join("usr/bin/busybox"));
        assert_eq!(
            launch.arg0, "/usr/bin/sh",
            "what a multi-call binary goes by"
        );
        assert_eq!(
            launch.args,
            [
                host_path(image.root.join("app/wrapper")),
                "x".to_owned(),
                host_path(image.root.join("app/start")),
                "--port".to_owned()
            ]
        );
        executable(&image.root, "app/loop", b"#!/app/loop\n");
        let mut s = spec("r1");
        s.command = Some(vec!["/app/loop".into()]);
        let error = plan(&image, &s, 1, &host(), &[]).unwrap_err();
        assert!(error.to_string().contains("interpreters deep"), "{error}");
    }

    #[test]
    fn a_missing_interpreter_is_named_not_the_script() {
        let (_dir, image) = script_image("/app/start");
        executable(
            &image.root,
            "app/start",
            b"#!/nonexistent-gantry/python3 -u\n",
        );
        let error = plan(&image, &spec("r1"), 1, &host(), &[]).unwrap_err();
        assert_eq!(error.code(), "spawn");
        assert_eq!(
            error.to_string(),
            "replica r1: cannot start /app/start: /app/start is a script whose interpreter \
             /nonexistent-gantry/python3 (its #! line) does not exist in the image, nor on \
             this host"
        );
        // In the image but not executable.
        executable(&image.root, "app/start", b"#!/app/data\n");
        let error = plan(&image, &spec("r1"), 1, &host(), &[]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("interpreter /app/data (its #! line) is in the image"),
            "{error}"
        );
        executable(&image.root, "app/start", b"#!  \n");
        let error = plan(&image, &spec("r1"), 1, &host(), &[]).unwrap_err();
        assert!(
            error.to_string().contains("names no interpreter"),
            "{error}"
        );
    }

    #[test]
    fn an_interpreter_the_image_lacks_is_the_hosts_as_before() {
        let (_dir, image) = script_image("/app/start");
        // The image has no /bin: images that relied on the host's shell still run.
        executable(&image.root, "app/start", b"#!/bin/sh\n");
        let launch = plan(&image, &spec("r1"), 1, &host(), &[]).unwrap();
        assert_eq!(launch.program, Path::new("/bin/sh"));
        assert_eq!(launch.arg0, "/bin/sh");
    }

    /// A 64-bit little-endian ELF header with one program header, PT_INTERP
    /// naming `loader`.
    fn elf_with_loader(loader: &str) -> Vec<u8> {
        let mut elf = vec![0u8; 120];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[6] = 1;
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        elf[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        elf[64..68].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        elf[72..80].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        let size = loader.len() as u64 + 1;
        elf[96..104].copy_from_slice(&size.to_le_bytes()); // p_filesz
        elf.extend(loader.as_bytes());
        elf.push(0);
        elf
    }

    #[test]
    fn a_dynamic_loader_the_host_lacks_is_named() {
        let (_dir, image) = script_image("/app/server");
        executable(
            &image.root,
            "app/server",
            &elf_with_loader("/lib/ld-gantry-missing-x86_64.so.1"),
        );
        let error = plan(&image, &spec("r1"), 1, &host(), &[]).unwrap_err();
        assert!(
            error.to_string().contains(
                "/app/server needs the dynamic loader /lib/ld-gantry-missing-x86_64.so.1"
            ),
            "{error}"
        );
        // The reader agrees with a real program of this host: its loader exists.
        if let Some(loader) = elf_interpreter(Path::new("/bin/sh")) {
            assert!(Path::new(&loader).exists(), "{loader}");
        }
    }

    #[test]
    fn a_missing_or_non_executable_program_is_a_spawn_error() {
        let (_dir, image) = image(RunConfig::default());
        for command in ["/app/nope", "/app/data", "nope-anywhere-xyz"] {
            let mut s = spec("r1");
            s.command = Some(vec![command.into()]);
            let error = plan(&image, &s, 1, &host(), &[]).unwrap_err();
            assert_eq!(error.code(), "spawn", "{command}");
            assert!(error.to_string().contains(command), "{error}");
        }
        let error = plan(&image, &spec("r1"), 1, &host(), &[]).unwrap_err();
        assert!(error.to_string().contains("no entrypoint"), "{error}");
    }
}
