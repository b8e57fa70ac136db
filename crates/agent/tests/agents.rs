//! Build agents against a real server: agents in this process, each in a
//! work dir of its own (stand-ins for other hosts), talking HTTP to a
//! `RunningServer` on loopback, running real buildspecs with the same
//! runner as the server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_agent::{AgentOptions, Client};
use gantry_engine::ExecutionStatus;
use gantry_server::{RunningServer, ServerOptions};
use tokio_util::sync::CancellationToken;

struct Fixture {
    dir: tempfile::TempDir,
    repo: PathBuf,
    server: RunningServer,
    token: String,
    agents: Vec<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

fn git(dir: &Path, args: &[&str]) {
    gantry_testkit::git_as(dir, ("Carol", "carol@example.com"), args);
}

async fn fixture(files: &[(&str, &str)], agent_timeout: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    for (path, text) in files {
        let at = repo.join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, text).unwrap();
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first commit"]);
    let loopback = "127.0.0.1:0".parse().unwrap();
    let options = ServerOptions {
        agent_timeout,
        ..ServerOptions::local(loopback, loopback)
    };
    let server = RunningServer::start_with(&dir.path().join("data"), options)
        .await
        .unwrap();
    let now = gantry_clock::now_ms();
    let auth = server.plane.auth();
    auth.add_user("builders", None, vec!["agent".parse().unwrap()], now)
        .await
        .unwrap();
    let token = auth
        .create_token("builders", None, None, now)
        .await
        .unwrap()
        .secret
        .expose()
        .to_string();
    Fixture {
        dir,
        repo,
        server,
        token,
        agents: Vec::new(),
    }
}

impl Fixture {
    fn client(&self) -> Client {
        Client::new(&self.server.api, &self.token, None).unwrap()
    }

    /// Starts an agent in a work dir of its own.
    fn agent(&mut self, name: &str, labels: &[&str], concurrency: usize) {
        let options = AgentOptions {
            server: self.server.api.clone(),
            token: self.token.clone(),
            name: name.to_string(),
            labels: labels.iter().map(ToString::to_string).collect(),
            concurrency,
            work_dir: self.dir.path().join("agents").join(name),
            ca_cert: None,
            poll_wait: Duration::from_secs(5),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                gantry_agent::run(options, stop).await.unwrap();
            }
        });
        self.agents.push((stop, task));
    }

    async fn start(&self) -> String {
        let file = self.repo.join("gantry.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        self.server
            .plane
            .start_execution(file, text, Default::default(), Default::default(), None)
            .await
            .unwrap()
    }

    async fn wait(&self, id: &str, what: &str, done: impl Fn(&gantry_engine::Execution) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let (execution, _) = self.server.plane.execution(id).await.unwrap();
            if done(&execution) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waiting for {what}: {execution:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finished(&self, id: &str) -> gantry_engine::Execution {
        self.wait(id, "the end", |e| e.status != ExecutionStatus::InProgress)
            .await;
        self.server.plane.execution(id).await.unwrap().0
    }

    /// The execution once ended, which must be a success.
    async fn succeeded(&self, id: &str) -> gantry_engine::Execution {
        let execution = self.finished(id).await;
        assert_eq!(
            execution.status,
            ExecutionStatus::Succeeded,
            "{execution:#?}"
        );
        execution
    }

    async fn log(&self, id: &str, stage: &str, action: &str) -> String {
        self.server
            .plane
            .logs(id, Some((stage, action)), 0, 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.line)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const BUILDSPEC: &str = r#"version: 0.2
env:
  exported-variables: [GREETING]
phases:
  build:
    commands:
      - echo "building $(cat message.txt) on the agent"
      - test -n "$GANTRY_AGENT_WORK_DIR"
      - mkdir -p dist && cat message.txt > dist/out.txt && ln -s out.txt dist/link
      - export GREETING="hello from $(basename $GANTRY_AGENT_WORK_DIR)"
artifacts:
  base-directory: dist
  files: ["**/*"]
  enable-symlinks: yes
"#;

const PIPELINE: &str = r##"
version: 1
name: agents
stages:
  - name: Source
    actions:
      - name: src
        type: source
        outputs: [code]
  - name: Build
    actions:
      - name: compile
        type: build
        inputs: [code]
        outputs: [bin]
        namespace: B
        agent: {labels: [linux]}
      - name: gpu
        type: shell
        agent: {labels: [gpu, linux]}
        commands:
          - echo "gpu work in $(basename $GANTRY_AGENT_WORK_DIR)"
  - name: Check
    actions:
      - name: here
        type: shell
        inputs: [bin]
        commands:
          - test "$(cat out.txt)" = "the shop"
          - test "$(cat link)" = "the shop"
          - 'echo "checked #{B.GREETING} on the server"'
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_run_builds_by_label_with_inputs_outputs_variables_and_logs() {
    let mut fx = fixture(
        &[
            ("gantry.yaml", PIPELINE),
            ("buildspec.yml", BUILDSPEC),
            ("message.txt", "the shop"),
        ],
        Duration::from_secs(30),
    )
    .await;
    fx.agent("small", &["linux"], 1);
    fx.agent("big", &["linux", "gpu"], 2);
    let id = fx.start().await;
    fx.succeeded(&id).await;
    let compile = fx.log(&id, "Build", "compile").await;
    assert!(
        compile.contains("Waiting for an agent with labels linux."),
        "{compile}"
    );
    assert!(
        compile.contains("building the shop on the agent"),
        "{compile}"
    );
    assert!(compile.contains("(from the agent)"), "{compile}");
    let gpu = fx.log(&id, "Build", "gpu").await;
    // Only `big` has both labels.
    assert!(gpu.contains("Running on agent big."), "{gpu}");
    assert!(gpu.contains("gpu work in big"), "{gpu}");
    // Either agent may take `compile`: the variable names the one that did.
    let builder = ["small", "big"]
        .into_iter()
        .find(|a| compile.contains(&format!("Running on agent {a}.")))
        .expect("an agent ran compile");
    let check = fx.log(&id, "Check", "here").await;
    assert!(
        check.contains(&format!("checked hello from {builder} on the server")),
        "{check}"
    );
    // The agents are listed, alive, with their labels.
    let agents = fx.server.plane.agents().list();
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["big", "small"]);
    assert!(agents.iter().all(|a| a.alive && a.running.is_empty()));
}

const SLOW: &str = r##"
version: 1
name: slow
stages:
  - name: Build
    actions:
      - name: work
        type: shell
        agent: {}
        commands: ["echo started", "sleep 1", "echo done"]
"##;

/// The test plays a misbehaving agent by hand: it takes the job and falls
/// silent, then reports late.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silent_agent_fails_its_action_as_interrupted_and_cannot_report_into_the_retry() {
    let mut fx = fixture(&[("gantry.yaml", SLOW)], Duration::from_secs(2)).await;
    let client = fx.client();
    let id = fx.start().await;
    let taken = client
        .poll("ghost", &[], gantry_agent::VERSION, Duration::from_secs(10))
        .await
        .unwrap()
        .job
        .expect("a job for the ghost");
    assert_eq!(taken.action, "work");
    client
        .log(&taken.id, vec!["the ghost began".into()])
        .await
        .unwrap();
    let execution = fx.finished(&id).await;
    assert_eq!(execution.status, ExecutionStatus::Failed);
    let error = execution.stages[0].actions[0].error.clone().unwrap();
    assert!(
        error.starts_with("interrupted: agent ghost sent no heartbeat"),
        "{error}"
    );
    // A real agent comes, and the stage is retried.
    fx.agent("real", &[], 1);
    fx.server.plane.retry(&id, "Build", false).await.unwrap();
    fx.wait(&id, "the retry to run", |e| {
        e.stages[0].actions[0].attempt == 2
    })
    .await;
    // The ghost's late words about attempt 1 are refused.
    let late = client
        .log(&taken.id, vec!["late".into()])
        .await
        .unwrap_err();
    assert!(late.is_gone(), "{late}");
    let finish = gantry_api::AgentFinishRequest {
        status: "SUCCEEDED".into(),
        error: None,
        failed_phases: Vec::new(),
        exported_variables: Default::default(),
        reports: Vec::new(),
        outputs: Vec::new(),
    };
    let late = client.finish(&taken.id, &finish).await.unwrap_err();
    assert!(late.is_gone(), "{late}");
    let beat = client
        .heartbeat("ghost", vec![taken.id.clone()])
        .await
        .unwrap();
    assert_eq!(beat.stop, vec![taken.id.clone()]);
    fx.succeeded(&id).await;
    let log = fx.log(&id, "Build", "work").await;
    assert!(log.contains("Running on agent real."), "{log}");
    assert!(!log.contains("late"), "{log}");
}

const OUTPUT: &str = r##"
version: 1
name: output
stages:
  - name: Build
    actions:
      - name: make
        type: shell
        agent: {}
        outputs: [out]
        commands: ["echo hi > f"]
        artifacts: {files: [f]}
"##;

/// An upload cut halfway and a manifest naming a blob never uploaded
/// leave nothing in the store; the job can still end properly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cut_upload_leaves_nothing_half_imported() {
    let fx = fixture(&[("gantry.yaml", OUTPUT)], Duration::from_secs(30)).await;
    let client = fx.client();
    let id = fx.start().await;
    let job = client
        .poll("hand", &[], gantry_agent::VERSION, Duration::from_secs(10))
        .await
        .unwrap()
        .job
        .unwrap();
    let blobs = fx.dir.path().join("data/artifacts");
    let count = |dir: &Path| walk(dir).into_iter().filter(|p| p.is_file()).count();
    let before = count(&blobs);
    // The body ends with an error after some bytes: the client aborts.
    let bytes = b"hello, half a file".to_vec();
    let digest = format!("sha256:{}", sha256_hex(&bytes));
    let url = format!(
        "{}/api/v1/agent/jobs/{}/blobs/{digest}",
        fx.server.api, job.id
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(bytes[..6].to_vec()),
        Err(std::io::Error::other("the network went away")),
    ];
    let cut = reqwest::Client::new()
        .put(&url)
        .bearer_auth(&fx.token)
        .header("content-length", bytes.len())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await;
    assert!(cut.is_err() || !cut.unwrap().status().is_success());
    // Bytes that are not what the digest says.
    let wrong = reqwest::Client::new()
        .put(&url)
        .bearer_auth(&fx.token)
        .body("other bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 400);
    let body: gantry_api::ErrorBody = wrong.json().await.unwrap();
    assert_eq!(body.code, "agent.digest_mismatch");
    // A manifest naming the blob that never arrived.
    let finish = gantry_api::AgentFinishRequest {
        status: "SUCCEEDED".into(),
        error: None,
        failed_phases: Vec::new(),
        exported_variables: Default::default(),
        reports: Vec::new(),
        outputs: vec![gantry_api::AgentOutput {
            identifier: None,
            entries: vec![serde_json::json!({
                "kind": "file", "path": "f", "digest": digest,
                "size": bytes.len(), "executable": false
            })],
        }],
    };
    let refused = client.finish(&job.id, &finish).await.unwrap_err();
    assert!(
        refused.to_string().contains("agent.output_invalid"),
        "{refused}"
    );
    // A link out of the artifact is refused the same way.
    let mut escaping = finish.clone();
    escaping.outputs[0].entries = vec![serde_json::json!({
        "kind": "symlink", "path": "f", "target": "../../../etc/passwd"
    })];
    let refused = client.finish(&job.id, &escaping).await.unwrap_err();
    assert!(
        refused.to_string().contains("agent.output_invalid"),
        "{refused}"
    );
    assert_eq!(count(&blobs), before, "nothing was stored");
    // No blob but the job's inputs may be fetched (this job has none).
    let elsewhere = tempfile::tempdir().unwrap();
    let local = gantry_store::ArtifactStore::open(elsewhere.path()).unwrap();
    let (someone_elses, _) = fx
        .server
        .plane
        .artifacts()
        .put_blob(&b"a blob of another execution"[..])
        .unwrap();
    let before = count(&blobs);
    let refused = client
        .fetch_blob(&job.id, &someone_elses, &local, elsewhere.path())
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("agent.not_an_input"),
        "{refused}"
    );
    assert_eq!(count(&blobs), before, "nothing was stored");
    let uploads = fx.dir.path().join("data/work/agent-uploads");
    assert_eq!(count(&uploads), 0, "no temp file is left");
    // A manifest of many files is more than other bodies may be (2 MiB);
    // this one is refused only for the blob it lacks, not for its size.
    let mut large = finish.clone();
    large.outputs[0].entries.extend(
        (0..80_000).map(|i| serde_json::json!({"kind": "dir", "path": format!("d{i:05}")})),
    );
    let refused = client.finish(&job.id, &large).await.unwrap_err();
    assert!(
        refused.to_string().contains("agent.output_invalid"),
        "{refused}"
    );
    // The whole blob, then the end: the job is done, its output stored.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &bytes).unwrap();
    client
        .put_blob(&job.id, &digest, std::fs::File::open(file.path()).unwrap())
        .await
        .unwrap();
    client.finish(&job.id, &finish).await.unwrap();
    let execution = fx.succeeded(&id).await;
    let artifact = &execution.stages[0].actions[0].output_artifacts["out"];
    let stored = fx
        .server
        .plane
        .artifacts()
        .read_file(artifact, "f")
        .unwrap()
        .unwrap();
    assert_eq!(stored, bytes);
}

/// 4 agents with 2 slots each run 50 parallel actions: each runs exactly
/// once, and the work is spread.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_agents_with_two_slots_run_fifty_actions_exactly_once() {
    let ran = tempfile::tempdir().unwrap();
    let mut pipeline =
        String::from("version: 1\nname: wide\nstages:\n  - name: Build\n    actions:\n");
    for i in 0..50 {
        pipeline.push_str(&format!(
            "      - name: a{i}\n        type: shell\n        agent: {{}}\n        commands: [\"echo a{i} >> {}/a{i}-$(basename $GANTRY_AGENT_WORK_DIR)\"]\n",
            ran.path().display()
        ));
    }
    let mut fx = fixture(&[("gantry.yaml", &pipeline)], Duration::from_secs(30)).await;
    for n in 0..4 {
        fx.agent(&format!("agent{n}"), &[], 2);
    }
    let id = fx.start().await;
    let execution = fx.succeeded(&id).await;
    let mut files: Vec<String> = std::fs::read_dir(ran.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 50, "{files:?}");
    let mut by_agent = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..50 {
        let mine: Vec<&String> = files
            .iter()
            .filter(|f| f.starts_with(&format!("a{i}-")))
            .collect();
        assert_eq!(mine.len(), 1, "a{i}: {mine:?}");
        let text = std::fs::read_to_string(ran.path().join(mine[0])).unwrap();
        assert_eq!(text, format!("a{i}\n"), "a{i} ran once");
        let agent = mine[0].split_once('-').unwrap().1.to_string();
        *by_agent.entry(agent).or_default() += 1;
    }
    assert!(by_agent.len() >= 2, "the work was spread: {by_agent:?}");
    assert!(execution.stages[0].actions.iter().all(|a| a.attempt == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_of_another_version_or_without_the_agent_grant_is_refused() {
    let fx = fixture(&[("gantry.yaml", SLOW)], Duration::from_secs(30)).await;
    let client = fx.client();
    let other = client
        .poll("old", &[], "0.0.1", Duration::from_millis(10))
        .await
        .unwrap_err();
    assert!(other.is_fatal(), "{other}");
    assert!(
        other.to_string().contains("agent.version_mismatch"),
        "{other}"
    );
    // The admin's token takes no work.
    let admin = std::fs::read_to_string(fx.dir.path().join("data/admin.token")).unwrap();
    let as_admin = Client::new(&fx.server.api, admin.trim(), None).unwrap();
    let refused = as_admin
        .poll(
            "admin",
            &[],
            gantry_agent::VERSION,
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
    // The agent's token reads nothing else: not the API, not the registry.
    let read = reqwest::Client::new()
        .get(format!("{}/api/v1/executions", fx.server.api))
        .bearer_auth(&fx.token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 403);
    let pull = reqwest::Client::new()
        .get(format!("http://{}/v2/", fx.server.registry))
        .basic_auth("gantry", Some(&fx.token))
        .send()
        .await
        .unwrap();
    assert!(
        pull.status() == 401 || pull.status() == 403,
        "{}",
        pull.status()
    );
    let admin_pull = reqwest::Client::new()
        .get(format!("http://{}/v2/", fx.server.registry))
        .basic_auth("gantry", Some(admin.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        admin_pull.status(),
        200,
        "the same request with a reader's token"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The shop's three service builds, unmodified, on two agents in separate
/// work dirs (stand-ins for two build hosts); the server then runs what
/// they made. Heavy (it compiles the shop): GANTRY_TEST_DEMO=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_run_the_shops_builds() {
    if !gantry_testkit::gate("GANTRY_TEST_DEMO", "agents_run_the_shops_builds") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let listed = std::process::Command::new("git")
        .args(["ls-files", "examples/shop"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(listed.status.success());
    let pipeline = r##"
version: 1
name: shop-on-agents
stages:
  - name: Source
    actions:
      - {name: checkout, type: source, outputs: [Src]}
  - name: Build
    actions:
      - {name: build-catalog, type: build, buildspec: examples/shop/catalog/buildspec.yml, inputs: [Src], outputs: [CatalogBin], namespace: CatalogBuild, agent: {labels: [linux]}}
      - {name: build-orders, type: build, buildspec: examples/shop/orders/buildspec.yml, inputs: [Src], outputs: [OrdersBin], namespace: OrdersBuild, agent: {labels: [linux]}}
      - {name: build-bff, type: build, buildspec: examples/shop/bff/buildspec.yml, inputs: [Src], outputs: [BffBin], namespace: BffBuild, agent: {labels: [linux]}}
  - name: Check
    actions:
      - name: run-them
        type: shell
        inputs: [CatalogBin, OrdersBin, BffBin]
        commands:
          - ./catalog --version
          - $GANTRY_INPUT_OrdersBin/orders --version
          - $GANTRY_INPUT_BffBin/bff --version
          - 'test "$(sha256sum catalog | cut -d" " -f1)" = "#{CatalogBuild.SERVICE_SHA256}"'
"##;
    let mut files: Vec<(String, String)> = vec![("gantry.yaml".into(), pipeline.into())];
    for path in String::from_utf8_lossy(&listed.stdout).lines() {
        if let Ok(text) = std::fs::read_to_string(root.join(path)) {
            files.push((path.to_string(), text));
        }
    }
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let mut fx = fixture(&borrowed, Duration::from_secs(60)).await;
    fx.agent("host-a", &["linux"], 1);
    fx.agent("host-b", &["linux"], 1);
    let id = fx.start().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(900);
    let execution = loop {
        let (execution, _) = fx.server.plane.execution(&id).await.unwrap();
        if execution.status != ExecutionStatus::InProgress {
            break execution;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shop's builds took over 15 min"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut hosts = std::collections::BTreeSet::new();
    for action in ["build-catalog", "build-orders", "build-bff"] {
        let log = fx.log(&id, "Build", action).await;
        let host = ["host-a", "host-b"]
            .into_iter()
            .find(|h| log.contains(&format!("Running on agent {h}.")));
        assert!(host.is_some(), "{action}: {log}");
        hosts.extend(host);
    }
    assert_eq!(
        execution.status,
        ExecutionStatus::Succeeded,
        "{execution:#?}"
    );
    assert_eq!(hosts.len(), 2, "both agents built");
    let check = fx.log(&id, "Check", "run-them").await;
    assert!(check.contains("catalog 0.1.0"), "{check}");
}

/// An agent runs an `image:` build in a container on its own Docker, as the
/// server's runner does: the source mounted, the outputs collected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_runs_a_build_in_a_container() {
    if !gantry_testkit::docker_tests_enabled("an_agent_runs_a_build_in_a_container") {
        return;
    }
    // A busybox image made from scratch (nothing is pulled).
    let context = tempfile::tempdir().unwrap();
    std::fs::copy("/bin/busybox", context.path().join("busybox")).unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
    )
    .unwrap();
    let built = std::process::Command::new("docker")
        .args([
            "build",
            "--quiet",
            "--tag",
            "gantry-test/agent-busybox:1",
            ".",
        ])
        .current_dir(context.path())
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let pipeline = r##"
version: 1
name: boxed
stages:
  - name: Build
    actions:
      - name: inside
        type: shell
        image: gantry-test/agent-busybox:1
        agent: {labels: [docker]}
        outputs: [made]
        commands:
          - test ! -e /etc/debian_version
          - echo "made in a container" > made.txt
        artifacts: {files: [made.txt]}
"##;
    let mut fx = fixture(&[("gantry.yaml", pipeline)], Duration::from_secs(30)).await;
    fx.agent("docker-host", &["docker"], 1);
    let id = fx.start().await;
    let execution = fx.finished(&id).await;
    let log = fx.log(&id, "Build", "inside").await;
    assert_eq!(execution.status, ExecutionStatus::Succeeded, "{log}");
    assert!(log.contains("Running on agent docker-host."), "{log}");
    let artifact = &execution.stages[0].actions[0].output_artifacts["made"];
    let made = fx
        .server
        .plane
        .artifacts()
        .read_file(artifact, "made.txt")
        .unwrap()
        .unwrap();
    assert_eq!(made, b"made in a container\n");
}
