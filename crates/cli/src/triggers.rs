//! `gantry triggers`: every trigger of every registered pipeline, with
//! what it last saw and did.

use anyhow::Result;
use gantry_api::TriggerView;

use crate::client::Connection;
use crate::render::print_json;

pub(crate) async fn list(conn: &Connection, json: bool) -> Result<()> {
    let triggers: Vec<TriggerView> = conn.client.get("/api/v1/triggers").await?;
    if json {
        return print_json(&triggers);
    }
    if triggers.is_empty() {
        println!("no triggers armed (gantry apply -f FILE registers a pipeline's triggers)");
    } else {
        // Each trigger is a line under this header, its state indented below it.
        println!("PIPELINE #TRIGGER  WATCHES");
    }
    for t in &triggers {
        println!("{} #{}  {}", t.pipeline, t.index, t.watches);
        if let Some(repository) = &t.repository {
            println!("    repository: {repository}");
        }
        if let Some(next) = &t.next_fire {
            println!("    next fire:  {next}");
        }
        match (&t.last_event, &t.last_event_at) {
            (Some(event), Some(at)) => println!("    last event: {event} ({at})"),
            (Some(event), None) => println!("    last event: {event}"),
            _ => println!("    last event: none yet"),
        }
        if let Some(commit) = &t.last_commit {
            println!("    commit:     {commit}");
        }
        if let Some(result) = &t.last_result {
            match &t.last_execution {
                Some(id) => println!("    result:     {result} ({id})"),
                None => println!("    result:     {result}"),
            }
        }
        if let Some(error) = &t.last_error {
            let at = t.last_error_at.as_deref().unwrap_or("");
            println!(
                "    error:      {error} ({at}; {} in a row, retrying with backoff)",
                t.consecutive_failures
            );
        }
        if t.bad_signatures > 0 {
            println!(
                "    refused:    {} deliveries with a bad or missing signature",
                t.bad_signatures
            );
        }
    }
    Ok(())
}
