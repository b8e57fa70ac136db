//! `gantry env logs ENV SERVICE [--replica R] [--follow] [--since DURATION]`:
//! what a service's replicas wrote to stdout and stderr, on either runtime
//! (`GET /api/v1/environments/{env}/services/{service}/logs`; operator of
//! the environment). With several replicas each line is prefixed with its
//! replica's id. `gantry env logs ENV --access [--tail N] [--follow]`: the
//! environment's load balancer access log instead
//! (`GET /api/v1/environments/{env}/access-log`).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, anyhow};
use clap::Args;
use gantry_api::{AccessLogLines, ReplicaLogView};

use crate::buildspec::query;
use crate::client::Connection;

#[derive(Args)]
pub(crate) struct LogsArgs {
    /// The environment (as applied).
    environment: String,
    /// The service in that environment (not with --access).
    service: Option<String>,
    /// The load balancer's access log (one line per request) instead of a
    /// service's output; needs `load_balancer.access_log: true`.
    #[arg(long, conflicts_with_all = ["replica", "since"])]
    access: bool,
    /// With --access: the last N lines (default 100, at most 10000).
    #[arg(long, value_name = "N", requires = "access")]
    tail: Option<usize>,
    /// Only this replica (an id `gantry env status` shows).
    #[arg(long)]
    replica: Option<String>,
    /// Keeps printing what the replicas write until Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// Only output written since: a duration back from now (10m, 2h). The
    /// process runtime's lines carry no time: there it skips a log not
    /// written since.
    #[arg(long, value_name = "DURATION")]
    since: Option<String>,
}

/// How often `--follow` asks for more.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);

pub(crate) async fn logs(conn: &Connection, args: LogsArgs) -> Result<()> {
    let service = match (&args.service, args.access) {
        (None, true) => return access_log(conn, &args).await,
        (Some(_), true) => {
            return Err(anyhow!(
                "--access reads the environment's access log, not a service's: leave out the service"
            ));
        }
        (None, false) => {
            return Err(anyhow!(
                "name a service (`gantry env logs {} SERVICE`), or --access for the load balancer's access log",
                args.environment
            ));
        }
        (Some(service), false) => service.clone(),
    };
    let since_ms = match &args.since {
        Some(text) => {
            let back =
                gantry_spec::duration::parse_duration(text).map_err(|e| anyhow!("--since: {e}"))?;
            Some(gantry_clock::now_ms() - i64::try_from(back.as_millis()).unwrap_or(i64::MAX))
        }
        None => None,
    };
    let base = format!(
        "/api/v1/environments/{}/services/{}/logs",
        query(&args.environment),
        query(&service)
    );
    let fetch = async |replica: Option<&str>, after: Option<&str>, max: Option<u64>| {
        let mut path = base.clone();
        let mut sep = '?';
        let mut add = |key: &str, value: String| {
            path.push_str(&format!("{sep}{key}={value}"));
            sep = '&';
        };
        if let Some(r) = replica {
            add("replica", query(r));
        }
        if let Some(a) = after {
            add("after", query(a));
        } else if let Some(ms) = since_ms {
            add("since_ms", ms.to_string());
        }
        if let Some(max) = max {
            add("max_bytes", max.to_string());
        }
        conn.client.get::<Vec<ReplicaLogView>>(&path).await
    };
    let first = fetch(args.replica.as_deref(), None, None).await?;
    let prefixed = first.len() > 1 || args.follow && args.replica.is_none();
    let mut cursors = BTreeMap::new();
    for output in first {
        print(&output, prefixed);
        cursors.insert(output.replica.clone(), output.cursor);
    }
    if !args.follow {
        return Ok(());
    }
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        // Which replicas run now (a deployment replaces them); each is read
        // from its cursor, a new one from its start.
        let running = fetch(args.replica.as_deref(), None, Some(0)).await?;
        for replica in running {
            let id = replica.replica;
            let after = cursors.get(&id).cloned();
            for output in fetch(Some(&id), after.as_deref(), None).await? {
                print(&output, prefixed);
                cursors.insert(id.clone(), output.cursor);
            }
        }
    }
}

/// The environment's access log: its last lines, then (with --follow)
/// what is written after them.
async fn access_log(conn: &Connection, args: &LogsArgs) -> Result<()> {
    let base = format!(
        "/api/v1/environments/{}/access-log",
        query(&args.environment)
    );
    let first = conn
        .client
        .get::<AccessLogLines>(&format!("{base}?tail={}", args.tail.unwrap_or(100)))
        .await?;
    if !first.enabled && first.lines.is_empty() {
        eprintln!(
            "environment {}'s access log is off: set `access_log: true` in its load_balancer and apply",
            args.environment
        );
    }
    for line in &first.lines {
        println!("{line}");
    }
    if !args.follow {
        return Ok(());
    }
    let mut cursor = first.cursor;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
        let next = conn
            .client
            .get::<AccessLogLines>(&format!("{base}?after={cursor}"))
            .await?;
        for line in &next.lines {
            println!("{line}");
        }
        cursor = next.cursor;
    }
}

/// Prints an output's lines, each after `REPLICA | ` when `prefixed`.
fn print(output: &ReplicaLogView, prefixed: bool) {
    for line in output.text.lines() {
        if prefixed {
            println!("{} | {line}", output.replica);
        } else {
            println!("{line}");
        }
    }
}
