//! `gantry version` (the version and the git commit the binary was built
//! from, recorded by `build.rs`) and `gantry completions SHELL` (a shell
//! completion script generated from the clap definition in `args`).

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::Cli;

/// The package version.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (`git rev-parse --short HEAD`), or
/// `unknown` when it was not built in a git checkout.
pub(crate) const COMMIT: &str = env!("GANTRY_COMMIT");
/// What `gantry --version` prints after `gantry `.
pub(crate) const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GANTRY_COMMIT"),
    ")"
);

/// Prints `gantry VERSION (commit COMMIT)`, or `{"version", "commit"}`.
pub(crate) fn version(json: bool) -> Result<()> {
    if json {
        let answer = serde_json::json!({"version": VERSION, "commit": COMMIT});
        println!("{answer}");
    } else {
        println!("gantry {LONG_VERSION}");
    }
    Ok(())
}

/// Writes the completion script of `shell` to standard output.
pub(crate) fn completions(shell: Shell) -> Result<()> {
    // Generated into memory first: clap_complete panics on a failed write,
    // and a reader that stops early (`| head`) must end the command quietly.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "gantry", &mut script);
    let mut out = std::io::stdout().lock();
    if let Err(error) = out.write_all(&script).and_then(|()| out.flush()) {
        crate::pipe::end_if_broken(&error);
        return Err(error.into());
    }
    Ok(())
}
