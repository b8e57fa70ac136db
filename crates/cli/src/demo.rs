//! `gantry demo`: the seed's whole system on this machine, in one command.
//!
//! It copies the sample shop (`examples/shop`) into a fresh git repository
//! inside a throwaway data dir, sets the per-environment parameters, starts
//! a server in this process, and runs the shop's eight-step pipeline: build
//! the backends' images once, deploy them and the BFF to staging, run the
//! browser E2E tests, wait for approval, promote the tested digests, deploy
//! to production in parallel. It uses the Docker runtime when a Docker
//! Engine answers, else the process runtime, and says which.
//!
//! Before the first run it registers the pipeline (`gantry apply`), which
//! arms the shop's `git` trigger: a poll of the demo's repository every
//! 2 s. The first run is started by the demo, as `gantry run` would; with
//! `--second-run` the demo then only commits a change to one backend, and
//! the next run is the one the trigger starts on that commit, pinned to
//! it. While the demo serves, every commit on main runs the pipeline again.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use gantry_api::{EnvironmentStatus, ExecutionView, TriggerView};

use crate::client::{Client, Connection};
use crate::paste;
use crate::render::LiveView;

pub(crate) struct DemoOptions {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) auto_approve: bool,
    pub(crate) exit: bool,
    pub(crate) json: bool,
    /// After the first run, commit a change to one backend and follow the
    /// execution the pipeline's git trigger starts on that commit.
    pub(crate) second_run: bool,
}

/// The shop's sources in this checkout of gantry.
fn shop_source() -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/shop");
    path.canonicalize().with_context(|| {
        format!(
            "the sample shop is not at {}: run gantry demo from a gantry checkout",
            path.display()
        )
    })
}

fn free_port(preferred: u16) -> u16 {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return preferred;
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(preferred)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let name = entry.file_name();
        // Build outputs are not sources.
        if matches!(name.to_str(), Some("target" | "dist" | "reports")) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).with_context(|| format!("cannot copy {}", src.display()))?;
        }
    }
    Ok(())
}

pub(crate) fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("git")
        .current_dir(repo)
        .args([
            "-c",
            "user.name=gantry demo",
            "-c",
            "user.email=demo@gantry.invalid",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn docker_answers() -> bool {
    std::process::Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn browser_available() -> bool {
    Path::new("/usr/bin/chromedriver").exists() && Path::new("/usr/bin/chromium").exists()
}

/// Prints a one-time sign-in link to the web console, so the pipeline
/// can be watched and approved in a browser. A server that cannot make one
/// only loses the line.
async fn console_link(client: &Client, json: bool) {
    #[derive(serde::Deserialize)]
    struct Link {
        path: String,
    }
    if let Ok(link) = client
        .post::<Link>("/api/v1/console/links", &serde_json::json!({}))
        .await
    {
        say(
            json,
            &format!(
                "Console: {}{} (a one-time sign-in link, for 5 minutes)",
                client.base(),
                link.path
            ),
        );
    }
}

fn say(json: bool, text: &str) {
    // With --json, stdout carries only the final execution JSON.
    if json {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
}

pub(crate) async fn run(options: DemoOptions) -> Result<std::process::ExitCode> {
    let shop = shop_source()?;
    let data_dir = match &options.data_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gantry-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize()?;
    let repo = data_dir.join("shop-repo");
    let json = options.json;

    let staging_port = free_port(18080);
    let production_port = free_port(if staging_port == 18081 { 18082 } else { 18081 });
    let docker = docker_answers();
    let browser = browser_available();
    say(
        json,
        &format!("gantry demo: data dir {}", data_dir.display()),
    );
    say(
        json,
        &format!(
            "runtime: {} ({})",
            if docker { "docker" } else { "process" },
            if docker {
                "a Docker Engine answers"
            } else {
                "no Docker Engine answers; services run as host processes"
            }
        ),
    );
    say(
        json,
        if browser {
            "E2E: headless Chromium through chromedriver"
        } else {
            "E2E: no chromium/chromedriver here, so the same scenario runs over plain HTTP (install them with: apt-get install chromium chromium-driver)"
        },
    );

    // The shop in a repository of its own, with the pipeline adjusted to this
    // machine (ports, runtime).
    if !repo.join(".git").exists() {
        copy_tree(&shop, &repo.join("examples/shop"))?;
        let file = repo.join("examples/shop/gantry.yaml");
        let mut text = std::fs::read_to_string(&file)?;
        text = text.replace("127.0.0.1:18080", &format!("127.0.0.1:{staging_port}"));
        text = text.replace("127.0.0.1:18081", &format!("127.0.0.1:{production_port}"));
        if !browser {
            // Executions a trigger starts take the file's variables: they
            // must not ask for a browser this machine does not have.
            text = text.replace("  E2E_MODE: browser ", "  E2E_MODE: http    ");
        }
        if docker {
            // Host networking: the BFF reaches the load balancer on 127.0.0.1.
            text = text.replace(
                "    runtime: process\n",
                "    runtime: docker\n    network: host\n",
            );
        }
        std::fs::write(&file, text)?;
        git(&repo, &["init", "-q", "-b", "main"])?;
        git(&repo, &["add", "-A"])?;
        git(
            &repo,
            &["commit", "-q", "-m", "The shop: catalog, orders, bff"],
        )?;
    }
    let pipeline = repo.join("examples/shop/gantry.yaml");

    let listen = "127.0.0.1:0".parse().context("loopback")?;
    let server = gantry_server::RunningServer::start(&data_dir, listen, listen).await?;
    let client = Client::new(&server.api, crate::client::admin_token(&data_dir));
    let conn = Connection {
        client: client.clone(),
        data_dir: data_dir.clone(),
        embedded: Some(server),
    };
    console_link(&client, options.json).await;
    let result = drive(
        &conn,
        &options,
        &pipeline,
        &repo,
        staging_port,
        production_port,
        browser,
    )
    .await;
    let code = match result {
        Ok(code) => code,
        Err(error) => {
            stop(&conn).await;
            return Err(error);
        }
    };
    if !options.exit {
        say(
            json,
            &format!(
                "Serving until Ctrl-C (or `{gantry} shutdown`). Commit to main in {} \
                 and the pipeline runs again by itself, pinned to your commit \
                 (`{gantry} executions` shows it; its approval waits for you).",
                repo.display(),
                gantry = paste::gantry_with(&format!(" --data-dir {}", data_dir.display()))
            ),
        );
        let plane = conn.embedded.as_ref().map(|s| s.plane.clone());
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = async { if let Some(p) = &plane { p.shutdown_requested().await } else { std::future::pending().await } } => {}
        }
    }
    stop(&conn).await;
    Ok(code)
}

/// Stops the demo's services and its server.
async fn stop(conn: &Connection) {
    if let Some(server) = &conn.embedded {
        for env in server.plane.deployer().environments().await {
            let _ = server.plane.deployer().down(&env).await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    conn: &Connection,
    options: &DemoOptions,
    pipeline: &Path,
    repo: &Path,
    staging_port: u16,
    production_port: u16,
    browser: bool,
) -> Result<std::process::ExitCode> {
    let json = options.json;
    let client = &conn.client;
    for (env, port) in [("staging", staging_port), ("production", production_port)] {
        let put = gantry_api::PutParameterRequest {
            name: format!("/shop/{env}/SERVICE_DNS"),
            value: format!("http://127.0.0.1:{port}"),
            param_type: Some("String".to_string()),
            overwrite: true,
            description: Some(format!("the {env} load balancer, as the BFF reaches it")),
            by: Some("gantry demo".to_string()),
        };
        let _: gantry_api::ParameterPut = client.post("/api/v1/params/put", &put).await?;
    }
    let variables = BTreeMap::from([(
        "E2E_MODE".to_string(),
        if browser { "browser" } else { "http" }.to_string(),
    )]);
    let trigger = arm_trigger(conn, pipeline, repo, json).await?;
    let execution = run_once(conn, options, pipeline, &variables).await?;
    let mut ok = execution.status == "Succeeded";
    if ok {
        report(conn, json).await?;
    }
    if ok && options.second_run {
        let Some(trigger) = trigger else {
            bail!(
                "{} has no triggers (a data dir made by an older gantry demo?), so no commit \
                 would start the second run: use a fresh --data-dir",
                pipeline.display()
            );
        };
        say(
            json,
            &format!(
                "\nSecond run: one backend changes (catalog's first product), nothing else does. \
                 The demo commits it to main and starts nothing itself: the trigger ({}) \
                 sees the commit and starts an execution pinned to it.",
                trigger.watches
            ),
        );
        let lib = repo.join("examples/shop/catalog/src/lib.rs");
        let text = std::fs::read_to_string(&lib)?;
        let changed = text.replacen("price_cents: 1299", "price_cents: 1199", 1);
        if changed == text {
            bail!("could not change the catalog for the second run");
        }
        std::fs::write(&lib, changed)?;
        let before = digests(client).await?;
        let committed_ms = gantry_clock::now_ms();
        git(repo, &["commit", "-qam", "catalog: espresso beans on sale"])?;
        let commit = git(repo, &["rev-parse", "HEAD"])?;
        say(
            json,
            &format!(
                "  git commit: {} \"catalog: espresso beans on sale\" on main",
                &commit[..12]
            ),
        );
        let started = started_by_trigger(conn, &trigger, &commit).await?;
        let how = started.trigger.as_ref().map_or_else(String::new, |t| {
            format!("{} ({})", t.trigger_type, t.detail)
        });
        // The server stamps the start; both clocks are this machine's.
        let after_ms = started
            .started_at
            .parse::<jiff::Timestamp>()
            .map_or(0, |t| t.as_millisecond())
            .saturating_sub(committed_ms)
            .max(0);
        say(
            json,
            &format!(
                "  {:.1}s later the trigger started execution {}, pinned to {}: started by {how}",
                after_ms as f64 / 1000.0,
                started.id,
                &commit[..12]
            ),
        );
        let second = follow(conn, options, &started.id).await?;
        ok = second.status == "Succeeded";
        let after = digests(client).await?;
        for (service, digest) in &after {
            let was = before.get(service).cloned().unwrap_or_default();
            say(
                json,
                &if *digest == was {
                    format!(
                        "  {service}: same digest {digest}: built identically, promoted as is, deploy skipped (already running)"
                    )
                } else {
                    format!(
                        "  {service}: new digest {digest} (was {was}): its code changed, so it was built, tested and deployed"
                    )
                },
            );
        }
        if ok {
            report(conn, json).await?;
        }
        if json {
            println!("{}", serde_json::to_string(&second)?);
        }
    } else if json {
        println!("{}", serde_json::to_string(&execution)?);
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

/// Production digests by service.
async fn digests(client: &Client) -> Result<BTreeMap<String, String>> {
    let status: EnvironmentStatus = client.get("/api/v1/environments/production").await?;
    Ok(status
        .services
        .into_iter()
        .filter_map(|s| Some((s.name, s.digest?)))
        .collect())
}

/// Registers the pipeline as `gantry apply` does, which arms its triggers,
/// and says what its `git` trigger watches. `None` when the file has no
/// `git` trigger.
async fn arm_trigger(
    conn: &Connection,
    pipeline: &Path,
    repo: &Path,
    json: bool,
) -> Result<Option<TriggerView>> {
    let request = gantry_api::ApplyRequest {
        file: pipeline.to_path_buf(),
        text: Some(std::fs::read_to_string(pipeline)?),
        includes: BTreeMap::new(),
    };
    let _: gantry_api::Applied = conn.client.post("/api/v1/apply", &request).await?;
    let triggers: Vec<TriggerView> = conn.client.get("/api/v1/triggers").await?;
    let trigger = triggers
        .into_iter()
        .find(|t| t.pipeline == DEMO_PIPELINE && t.trigger_type == "git");
    if let Some(t) = &trigger {
        say(
            json,
            &format!(
                "trigger: {} in {} (registered by `gantry apply`; `gantry triggers` shows what it saw)",
                t.watches,
                repo.display()
            ),
        );
    }
    Ok(trigger)
}

/// The pipeline's name in `examples/shop/gantry.yaml`.
const DEMO_PIPELINE: &str = "shop";

/// How long a commit may take to start an execution: several polls, and a
/// fetch.
const TRIGGER_WAIT: Duration = Duration::from_secs(120);

/// Waits for the execution a trigger starts on `commit`, pinned to it.
async fn started_by_trigger(
    conn: &Connection,
    trigger: &TriggerView,
    commit: &str,
) -> Result<ExecutionView> {
    let client = &conn.client;
    let source = trigger.source.as_deref().unwrap_or("checkout");
    let deadline = tokio::time::Instant::now() + TRIGGER_WAIT;
    let mut version = 0;
    loop {
        let executions: Vec<ExecutionView> = client
            .get(&format!("/api/v1/executions?pipeline={DEMO_PIPELINE}"))
            .await?;
        let started = executions.into_iter().find(|e| {
            e.source_revisions.get(source).map(String::as_str) == Some(commit)
                && e.trigger
                    .as_ref()
                    .is_some_and(|t| t.trigger_type != "manual")
        });
        if let Some(execution) = started {
            return Ok(execution);
        }
        if tokio::time::Instant::now() >= deadline {
            let triggers: Vec<TriggerView> = client.get("/api/v1/triggers").await?;
            let error = triggers
                .iter()
                .find(|t| t.pipeline == trigger.pipeline && t.index == trigger.index)
                .and_then(|t| t.last_error.clone())
                .unwrap_or_else(|| "none".to_string());
            bail!(
                "no execution started on commit {commit} within {}s (the trigger's last error: {error})",
                TRIGGER_WAIT.as_secs()
            );
        }
        // A started execution is a change; the wait ends early with it.
        version = client.changes(version, Duration::from_millis(500)).await?;
    }
}

/// Starts the pipeline as `gantry run` does and follows it to the end.
async fn run_once(
    conn: &Connection,
    options: &DemoOptions,
    pipeline: &Path,
    variables: &BTreeMap<String, String>,
) -> Result<ExecutionView> {
    let text = std::fs::read_to_string(pipeline)?;
    let request = gantry_api::StartRequest {
        file: pipeline.to_path_buf(),
        text: Some(text),
        includes: BTreeMap::new(),
        variables: variables.clone(),
    };
    let started: gantry_api::Started = conn.client.post("/api/v1/executions", &request).await?;
    follow(conn, options, &started.id).await
}

/// Follows an execution to the end, approving when asked to.
async fn follow(conn: &Connection, options: &DemoOptions, id: &str) -> Result<ExecutionView> {
    let client = &conn.client;
    let id = id.to_string();
    let tty = std::io::stdout().is_terminal() && !options.json;
    let hint = paste::gantry_with(&format!(" --data-dir {}", conn.data_dir.display()));
    let mut view = LiveView::new(tty, hint.clone());
    let mut version = 0;
    let mut told = false;
    let started_at = tokio::time::Instant::now();
    let mut waited = Duration::ZERO;
    loop {
        let execution = client.execution(&id).await?;
        if !options.json {
            view.draw(&execution);
        }
        let status = execution.status.as_str();
        if execution.is_finished() {
            let total = started_at.elapsed().saturating_sub(waited);
            say(
                options.json,
                &format!(
                    "pipeline {status} in {:.1}s (not counting the approval wait)",
                    total.as_secs_f64()
                ),
            );
            return Ok(execution);
        }
        if let Some((stage, action)) = waiting_now(&execution) {
            let target = format!("{stage}/{action}");
            if options.auto_approve {
                say(options.json, &format!("auto-approving {target}"));
                let decision = gantry_api::DecideRequest {
                    stage,
                    action,
                    decision: "Approved".to_string(),
                    comment: Some("approved by gantry demo --auto-approve".to_string()),
                    by: None,
                    fingerprint: None,
                };
                let _: gantry_api::DecisionAnswer = client
                    .post(&format!("/api/v1/executions/{id}/approvals"), &decision)
                    .await?;
            } else if !told {
                told = true;
                say(
                    options.json,
                    &format!(
                        "Waiting for your approval. In another terminal:\n  {hint} approve {id} {target}"
                    ),
                );
            }
        }
        let wait_start = tokio::time::Instant::now();
        version = client
            .changes(version, Duration::from_millis(if tty { 250 } else { 2000 }))
            .await?;
        if waiting_now(&execution).is_some() {
            waited += wait_start.elapsed();
        }
    }
}

/// The stage and action of the approval the execution waits at, if any.
fn waiting_now(execution: &ExecutionView) -> Option<(String, String)> {
    execution.stages.iter().find_map(|s| {
        s.actions
            .iter()
            .find(|a| a.status.as_deref() == Some("Waiting"))
            .map(|a| (s.name.clone(), a.name.clone()))
    })
}

/// Where staging and production are, and what they run.
async fn report(conn: &Connection, json: bool) -> Result<()> {
    let client = &conn.client;
    for env in ["staging", "production"] {
        let status: EnvironmentStatus = client.get(&format!("/api/v1/environments/{env}")).await?;
        say(json, &format!("{env}: {}", status.url));
        for s in &status.services {
            say(
                json,
                &format!(
                    "  {:<8} revision {}  {} replica(s)  {}",
                    s.name,
                    s.revision.map_or("null".to_string(), |r| r.to_string()),
                    s.replicas.len(),
                    s.digest.as_deref().unwrap_or_default()
                ),
            );
        }
    }
    Ok(())
}
