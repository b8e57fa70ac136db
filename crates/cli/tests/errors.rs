//! Errors that say how to fix them (issue 18 item 6): "did you mean" for
//! keys in files and for names given to commands, hints for YAML
//! indentation, the exact `gantry param put` for a missing parameter, and a
//! port clash or a second server on a data dir said as such, never as an
//! internal error. The real binary in temporary directories.

mod project;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use gantry_api::ExecutionView;
use project::{Project, gantry, stderr, stdout};

impl Project {
    fn spawn_server(&self, data_dir: &Path, extra: &[&str]) -> Child {
        gantry()
            .current_dir(&self.dir)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["server", "--registry-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn newest(&self) -> ExecutionView {
        let out = self.run(&["executions", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<Vec<ExecutionView>>(&out.stdout)
            .unwrap()
            .into_iter()
            .next()
            .expect("an execution")
    }
}

#[test]
fn keys_one_letter_off_and_bad_indentation_say_what_was_meant() {
    let p = Project::new();
    p.write(
        "gantry.yaml",
        "version: 1\nname: typo\nstages:\n  - name: Build\n    actoins:\n      - {name: hello, type: shel, commands: [true]}\n",
    );
    let out = p.run(&["validate", "-f", "gantry.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "gantry.yaml:5:5: unknown key `actoins` in a stage (did you mean `actions`?)"
        ),
        "{text}"
    );

    p.write(
        "tab.yaml",
        "version: 1\nname: tab\nstages:\n  - name: Build\n    actions:\n      - name: hello\n\ttype: shell\n",
    );
    let out = p.run(&["validate", "-f", "tab.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("tab.yaml:7:1: a tab in the indentation: YAML indents with spaces only"),
        "{text}"
    );

    p.write(
        "indent.yaml",
        "version: 1\nname: indent\nstages:\n  - name: Build\n    actions:\n      - name: hello\n       type: shell\n",
    );
    let out = p.run(&["validate", "-f", "indent.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains(
            "indent.yaml:7:8: bad indentation: this line starts at column 8, but the key `name` on line 6 starts at column 9"
        ),
        "{text}"
    );
}

const QUICK: &str = r##"
version: 1
name: quick
stages:
  - name: Build
    actions:
      - {name: hello, type: shell, commands: ["echo hello"]}
"##;

#[test]
fn unknown_stages_actions_and_environments_get_did_you_mean() {
    let p = Project::new();
    p.write("gantry.yaml", QUICK);
    let out = p.run(&["run", "-f", "gantry.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = p.newest().id;

    let out = p.run(&["logs", &id, "Build/helo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!(
            "execution {id} has no action Build/helo (did you mean `Build/hello`?); its actions: Build/hello"
        )),
        "{}",
        stderr(&out)
    );

    let out = p.run(&["approve", &id, "Build/helo"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("(did you mean `Build/hello`?); its actions: Build/hello"),
        "{text}"
    );
    assert!(text.contains("[action.not_found]"), "{text}");

    let out = p.run(&["executions", "--pipeline", "quik"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no pipeline named quik (did you mean `quick`?); pipelines: quick"),
        "{}",
        stderr(&out)
    );

    let out = p.run(&["retry", &id, "Biuld"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("(did you mean `Build`?); its stages: Build"),
        "{text}"
    );
    assert!(text.contains("[stage.not_found]"), "{text}");

    p.write(
        "environments.yaml",
        "version: 1\nenvironments:\n  staging: {runtime: process}\nservices:\n  web: {image: 127.0.0.1:7701/shop/web:latest, port: 8080}\n",
    );
    let out = p.run(&["apply", "-f", "environments.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = p.run(&["env", "status", "stagin"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("(did you mean `staging`?); environments applied: staging"),
        "{text}"
    );
    assert!(text.contains("[deploy.unknown_environment]"), "{text}");
    let out = p.run(&["deploy", "staging", "wbe", "--image", "shop/web:1"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains("(did you mean `web`?); its services: web"),
        "{text}"
    );
    assert!(!text.contains("internal"), "{text}");
}

#[test]
fn a_missing_parameter_names_the_command_that_stores_it() {
    let p = Project::new();
    p.write(
        "gantry.yaml",
        r##"
version: 1
name: needs-secret
stages:
  - name: Build
    actions:
      - name: hello
        type: shell
        env: {DB_URL: "{{param:/tutorial/db-url}}"}
        commands: ["echo connected"]
"##,
    );
    let out = p.run(&["run", "-f", "gantry.yaml", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let execution = p.newest();
    let error = execution
        .action("Build", "hello")
        .and_then(|a| a.error.clone())
        .unwrap_or_default();
    assert!(
        error.contains("store it with `gantry param put /tutorial/db-url --type SecureString`"),
        "{error}"
    );
}

fn wait_for_server(data_dir: &Path) {
    let ready =
        gantry_clock::blocking_poll(Duration::from_secs(60), Duration::from_millis(100), || {
            data_dir.join("server.json").exists().then_some(())
        });
    assert!(ready.is_some(), "the first server never started");
}

#[test]
fn a_second_server_and_a_taken_port_say_so() {
    let p = Project::new();
    let data_dir = p.dir.join(".gantry");
    let mut first = p.spawn_server(&data_dir, &["--listen", "127.0.0.1:0"]);
    wait_for_server(&data_dir);

    let second = p
        .spawn_server(&data_dir, &["--listen", "127.0.0.1:0"])
        .wait_with_output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let text = stderr(&second);
    assert!(
        text.contains(&format!("another gantry server (pid {}", first.id())),
        "{text}"
    );
    assert!(text.contains("gantry shutdown"), "{text}");
    assert!(!text.contains("internal"), "{text}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let other = p.dir.join("other-data");
    let out = p
        .spawn_server(&other, &["--listen", &listen])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(&format!("cannot listen on {listen}: port {port} is in use")),
        "{text}"
    );
    assert!(
        text.contains("choose another with `gantry server --listen 127.0.0.1:PORT`"),
        "{text}"
    );
    assert!(!text.contains("internal"), "{text}");

    let _ = p.run(&["shutdown"]);
    let _ = first.wait();
}

#[test]
fn a_load_balancer_port_in_use_says_which_and_how_to_choose_another() {
    let p = Project::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    p.write(
        "environments.yaml",
        &format!(
            "version: 1\nenvironments:\n  staging:\n    runtime: process\n    load_balancer:\n      listen: 127.0.0.1:{port}\n      rules:\n        - {{priority: 1, path: \"/*\", service: web}}\nservices:\n  web: {{image: shop/web:1, port: 8080}}\n"
        ),
    );
    let out = p.run(&["apply", "-f", "environments.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    assert!(
        text.contains(&format!(
            "the load balancer of staging: cannot listen on 127.0.0.1:{port}: port {port} is in use"
        )),
        "{text}"
    );
    assert!(
        text.contains("choose another `listen:` in environment staging's `load_balancer`"),
        "{text}"
    );
    assert!(!text.contains("internal"), "{text}");
}
