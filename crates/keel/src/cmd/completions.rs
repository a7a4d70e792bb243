//! `keel completions SHELL`: the shell's completion script, generated from the clap
//! definitions.

use anyhow::Result;
use clap_complete::Shell;
use std::process::ExitCode;

/// Print the completion script of `cli` (the whole `keel` command) for `shell`.
pub fn run(shell: Shell, mut cli: clap::Command) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli, "keel", &mut script);
    super::write_stdout(&script)?;
    Ok(ExitCode::SUCCESS)
}
