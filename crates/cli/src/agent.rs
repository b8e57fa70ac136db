//! `gantry agent`: a build agent for the server at `--server` (see the
//! gantry-agent crate), until Ctrl-C or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::args::AgentArgs;

pub(crate) async fn run(args: AgentArgs) -> Result<ExitCode> {
    let Some(server) = crate::client::remote() else {
        bail!("gantry agent needs the server's URL: --server URL (or GANTRY_SERVER)");
    };
    let token = args
        .token
        .or_else(|| std::env::var(crate::client::TOKEN_ENV).ok())
        .filter(|t| !t.trim().is_empty());
    let Some(token) = token else {
        bail!(
            "gantry agent needs a token with the agent grant: --token, GANTRY_AGENT_TOKEN or {}",
            crate::client::TOKEN_ENV
        );
    };
    for label in &args.labels {
        if let Err(why) = gantry_spec::pipeline::check_agent_label(label) {
            bail!("--labels: `{label}` {why}");
        }
    }
    let name = args.name.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "agent".to_string())
    });
    let options = gantry_agent::AgentOptions {
        server: server.to_string(),
        token: token.trim().to_string(),
        name: name.clone(),
        labels: args.labels,
        concurrency: usize::from(args.concurrency),
        work_dir: std::path::absolute(&args.work_dir)
            .with_context(|| format!("work dir {}", args.work_dir.display()))?,
        ca_cert: args.ca_cert,
        poll_wait: Duration::from_secs(20),
    };
    eprintln!(
        "gantry agent {name}: {} slot(s), labels [{}], work dir {}, server {server}",
        options.concurrency,
        options.labels.join(", "),
        options.work_dir.display()
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("signal handler")?;
    let signalled = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("gantry agent: stopping (running jobs are stopped and reported)");
        signalled.cancel();
    });
    gantry_agent::run(options, stop).await?;
    Ok(ExitCode::SUCCESS)
}
