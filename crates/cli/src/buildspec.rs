//! `gantry buildspec run`: runs one buildspec locally, without a server,
//! like CodeBuild's local agent; the build's log goes to standard error and,
//! with `--json`, its outcome to standard output.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::args::{BuildspecCommand, parse_pairs};

struct StdoutLog;

impl gantry_build::LogSink for StdoutLog {
    fn line(&self, line: &str) {
        use std::io::Write;
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "{line}");
    }
}

pub(crate) async fn run(command: BuildspecCommand) -> Result<ExitCode> {
    let BuildspecCommand::Run {
        file,
        source,
        out,
        env,
        secret_env,
        timeout,
        image,
        json,
    } = command;
    let (file, source, out) = (file.as_path(), source.as_path(), out.as_path());
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (buildspec, warnings) =
        match gantry_spec::buildspec::parse_buildspec(&file.display().to_string(), &text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                for error in &errors {
                    eprintln!("{error}");
                }
                bail!(
                    "{} is invalid ({} errors); nothing was run",
                    file.display(),
                    errors.len()
                );
            }
        };
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let source = std::fs::canonicalize(source)
        .with_context(|| format!("cannot resolve {}", source.display()))?;
    let out =
        std::fs::canonicalize(out).with_context(|| format!("cannot resolve {}", out.display()))?;
    let request = gantry_build::BuildRequest {
        buildspec,
        source_dir: source,
        secondary_sources: Vec::new(),
        env: parse_pairs(&env, "--env")?,
        secrets: parse_pairs(&secret_env, "--secret-env")?,
        build_id: format!("local:{}", std::process::id()),
        build_number: 1,
        initiator: "gantry/local".to_string(),
        resolved_source_version: None,
        timeout,
        out_dir: out.clone(),
        scratch_dir: None,
        cancel: tokio_util::sync::CancellationToken::new(),
        // Run by the user on their own files, like CodeBuild's local
        // agent: absolute artifact paths outside the source directory are
        // read too (on the host, without run-as; see the build crate).
        read_outside_source: true,
        container: image.map(gantry_build::ContainerSpec::new),
    };
    let outcome = gantry_build::run(request, &StdoutLog).await?;
    if json {
        println!("{}", gantry_build::outcome_json(&outcome, &out));
    } else {
        eprintln!("build {:?}", outcome.status);
    }
    Ok(if outcome.status == gantry_build::BuildStatus::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
