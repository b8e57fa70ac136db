//! `gantry validate` checks what `run` checks before anything runs (issue
//! 18 item 4): deploy actions against the file's environments and services
//! (also without includes), the container an `image` action names against
//! the service it deploys, and, when the data dir's server runs, the
//! environments applied before and the parameters the file reads. With no
//! server, those are skipped with a note, and the file is still valid.

mod project;

use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use project::{gantry, stderr, stdout};

struct Project {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    server: Option<Child>,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().canonicalize().unwrap();
        Project {
            _tmp: tmp,
            dir,
            server: None,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join(".gantry")
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join(file), text).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        gantry().current_dir(&self.dir).args(args).output().unwrap()
    }

    /// Starts a server for the project's data dir and waits for it.
    fn serve(&mut self) {
        std::fs::create_dir_all(self.data_dir()).unwrap();
        let child = gantry()
            .current_dir(&self.dir)
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--registry-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.server = Some(child);
        let info = self.data_dir().join("server.json");
        let up = gantry_clock::blocking_poll(
            Duration::from_secs(60),
            Duration::from_millis(100),
            || info.exists().then_some(()),
        );
        assert!(up.is_some(), "the server never started");
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = self.run(&["shutdown"]);
            let _ = child.wait();
        }
    }
}

fn assert_invalid(out: &Output, expected: &str) {
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(out), stderr(out));
    assert!(
        stdout(out).contains(expected) || stderr(out).contains(expected),
        "expected {expected:?} in:\n{}{}",
        stdout(out),
        stderr(out)
    );
}

const ENVIRONMENTS: &str = "
environments:
  staging: {runtime: process}
services:
  web: {image: shop/web:1, port: 8080}
";

#[test]
fn a_deploy_to_an_environment_the_file_does_not_define_is_invalid_as_run_says() {
    let p = Project::new();
    let text = format!(
        "version: 1\nname: shop\nstages:\n  - name: Source\n    actions:\n      - {{name: checkout, type: source, repository: ., outputs: [Src]}}\n  - name: Deploy\n    actions:\n      - {{name: prod, type: deploy, environment: production, service: web, inputs: [Src]}}\n{ENVIRONMENTS}"
    );
    p.write("gantry.yaml", &text);
    let expected = "gantry.yaml:9:9: `deploy` action `Deploy/prod` deploys to environment `production`, which no file defines (defined: staging)";
    assert_invalid(&p.run(&["validate", "-f", "gantry.yaml"]), expected);
    // `run` refuses it the same way, and nothing ran.
    let out = p.run(&["run", "-f", "gantry.yaml"]);
    assert_invalid(&out, expected);
}

#[test]
fn an_image_action_must_name_the_container_its_deploy_runs() {
    let p = Project::new();
    let text = format!(
        "version: 1
name: shop
stages:
  - name: Source
    actions:
      - {{name: checkout, type: source, repository: ., outputs: [Src]}}
  - name: Image
    actions:
      - {{name: image, type: image, inputs: [Src], repository: shop/web, outputs: [Img]}}
  - name: Deploy
    actions:
      - {{name: staging, type: deploy, environment: staging, service: web, inputs: [Img]}}
{ENVIRONMENTS}"
    );
    p.write("gantry.yaml", &text);
    assert_invalid(
        &p.run(&["validate", "-f", "gantry.yaml"]),
        "gantry.yaml:12:9: `deploy` action `Deploy/staging`: service `web` runs container `web`, but its input `Img` comes from `image` action `Image/image`, whose imagedefinitions.json names container `image`: set `container: web` on the image action (or on the service)",
    );
    p.write(
        "gantry.yaml",
        &text.replace("outputs: [Img]", "container: web, outputs: [Img]"),
    );
    let out = p.run(&["validate", "-f", "gantry.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

const LONE: &str = "version: 1
name: shop
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, repository: ., outputs: [Src]}
  - name: Check
    actions:
      - {name: db, type: shell, commands: ['true'], env: {DB_URL: '{{param:/shop/db-url}}'}}
      - {name: build, type: build, inputs: [Src]}
  - name: Deploy
    actions:
      - name: staging
        type: deploy
        environment: stagin
        service: web
        inputs: [Src]
";

#[test]
fn a_lone_pipeline_is_checked_against_the_running_server() {
    let mut p = Project::new();
    p.write("gantry.yaml", LONE);
    // The build's buildspec is in the repository `.` names.
    std::fs::create_dir_all(p.dir.join(".git")).unwrap();
    p.write(
        "buildspec.yml",
        "version: 0.2\nenv:\n  parameter-store:\n    API_KEY: /shop/api-key\nphases:\n  build:\n    commands: [echo hi]\n",
    );
    // No server: valid, with a note of what was not checked.
    let out = p.run(&["validate", "-f", "gantry.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("note: no gantry server runs here, so the environments its deploy actions use and the parameters it reads were not checked"),
        "{}",
        stderr(&out)
    );
    assert!(!p.data_dir().exists(), "validate made a data dir");

    p.serve();
    p.write("environments.yaml", &format!("version: 1\n{ENVIRONMENTS}"));
    let out = p.run(&["apply", "-f", "environments.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = p.run(&["validate", "-f", "gantry.yaml"]);
    assert_invalid(
        &out,
        "gantry.yaml:13:9: `deploy` action `Deploy/staging` deploys to environment `stagin`, which is neither in this file nor applied to the server of",
    );
    assert_invalid(
        &out,
        "(did you mean `staging`?); environments applied: staging",
    );
    assert_invalid(
        &out,
        "gantry.yaml:9:9: action `Check/db` (env DB_URL) reads parameter `/shop/db-url`, which the parameter store of the server of",
    );
    assert_invalid(
        &out,
        "store it with `gantry param put /shop/db-url --type SecureString`",
    );
    assert_invalid(
        &out,
        "buildspec.yml env.parameter-store API_KEY) reads parameter `/shop/api-key`, which the parameter store of the server of",
    );

    p.write("gantry.yaml", &LONE.replace("stagin", "staging"));
    for (name, value) in [("/shop/db-url", "postgres://db"), ("/shop/api-key", "k")] {
        let out = p.run(&["param", "put", name, value]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    let out = p.run(&["validate", "-f", "gantry.yaml"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("gantry.yaml: valid"),
        "{}",
        stdout(&out)
    );
}
