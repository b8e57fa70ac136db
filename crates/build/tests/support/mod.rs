//! Helpers shared by the integration tests: a log sink that keeps lines,
//! buildspec builders, and a one-call build runner.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Mutex;

use gantry_build::{BuildOutcome, BuildRequest, LogSink, run, shell_buildspec};
use gantry_spec::buildspec::{Buildspec, OnFailure, Phase, PhaseName};

/// Keeps every log line.
#[derive(Default)]
pub struct Lines(pub Mutex<Vec<String>>);

impl LogSink for Lines {
    fn line(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
}

impl Lines {
    pub fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Output lines only (not the runner's `[Container]` lines).
    pub fn output(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|l| !l.starts_with("[Container]"))
            .collect()
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }
}

pub fn phase(name: PhaseName, commands: &[&str]) -> Phase {
    Phase {
        name,
        commands: commands.iter().map(|c| (*c).to_owned()).collect(),
        finally: Vec::new(),
        on_failure: OnFailure::Unspecified,
        run_as: None,
    }
}

pub fn spec(phases: Vec<Phase>) -> Buildspec {
    let mut bs = shell_buildspec(Vec::new(), None, Vec::new());
    bs.phases = phases;
    bs
}

/// A request building in `dir/src` with artifacts in `dir/out`.
pub fn request(dir: &Path, bs: Buildspec) -> BuildRequest {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).unwrap();
    BuildRequest::new(bs, src, dir.join("out"))
}

pub async fn build(req: BuildRequest) -> (BuildOutcome, Lines) {
    let lines = Lines::default();
    let outcome = run(req, &lines).await.expect("the build starts");
    (outcome, lines)
}

/// Whether a process is gone (or a zombie nobody reaps).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            let after = &stat[stat.rfind(')').unwrap() + 1..];
            matches!(after.split_whitespace().next(), Some("Z" | "X"))
        }
    }
}

/// Whether the tests against the real Docker Engine run: they need
/// `GANTRY_TEST_DOCKER=1` and a running engine.
pub fn docker_tests_enabled() -> bool {
    std::env::var("GANTRY_TEST_DOCKER").is_ok_and(|v| v == "1")
}

/// The image container tests run in, built once per test process from
/// Debian's static busybox (nothing can be pulled): `sh` and the usual
/// tools, no `/etc/passwd`, no bash.
pub const TEST_IMAGE: &str = "gantry-test/busybox:1";

/// [`TEST_IMAGE`] plus the host's docker CLI (a static binary), for
/// builds that drive the engine through the mounted socket.
pub const TEST_DOCKER_IMAGE: &str = "gantry-test/busybox-docker:1";

/// Builds the test images (once per process) and returns [`TEST_IMAGE`].
pub fn test_image() -> &'static str {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        docker_build(
            TEST_IMAGE,
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
            &[("busybox", busybox)],
        )?;
        let cli = which("docker").ok_or("no docker CLI on PATH")?;
        docker_build(
            TEST_DOCKER_IMAGE,
            &format!("FROM {TEST_IMAGE}\nCOPY docker /bin/docker\n"),
            &[("docker", &cli)],
        )
    });
    if let Err(e) = built {
        panic!("cannot build the test images (is dockerd running?): {e}");
    }
    TEST_IMAGE
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

fn docker_build(tag: &str, dockerfile: &str, files: &[(&str, &Path)]) -> Result<(), String> {
    let context = tempfile::tempdir().map_err(|e| e.to_string())?;
    std::fs::write(context.path().join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
    for (name, from) in files {
        std::fs::copy(from, context.path().join(name))
            .map_err(|e| format!("{}: {e}", from.display()))?;
    }
    let out = std::process::Command::new("docker")
        .args(["build", "--quiet", "--tag", tag])
        .arg(context.path())
        // The classic builder needs no buildx plugin.
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Names of the containers, running or not, labelled with `build_id`.
pub fn containers_of(build_id: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter"])
        .arg(format!("label=gantry.build={build_id}"))
        .output()
        .expect("docker ps runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
