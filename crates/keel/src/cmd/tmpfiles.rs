//! `keel tmpfiles cat|apply`: tmpfiles.d plumbing on a root directory (docs/tmpfiles.md).

use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use tmpfiles::apply::{self, Report};
use tmpfiles::plan::Options;

#[derive(Debug, Subcommand)]
pub enum TmpfilesCommand {
    /// Print the effective configuration of a root, as `systemd-tmpfiles --cat-config`
    Cat {
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
    },
    /// Create what the configuration describes inside a root (`--create` semantics)
    Apply {
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Only apply entries whose path starts with P
        #[arg(long = "prefix", value_name = "P")]
        prefixes: Vec<String>,
        /// Skip entries whose path starts with P
        #[arg(long = "exclude-prefix", value_name = "P")]
        exclude_prefixes: Vec<String>,
        /// Also apply lines marked `!` (boot-only)
        #[arg(long)]
        boot: bool,
        /// Configuration files on the host to use instead of the root's tmpfiles.d
        files: Vec<PathBuf>,
    },
}

impl TmpfilesCommand {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            TmpfilesCommand::Cat { root } => {
                let r = apply::open_root(&root)?;
                super::write_stdout(apply::cat(&r)?.as_bytes())?;
                Ok(ExitCode::SUCCESS)
            }
            TmpfilesCommand::Apply {
                root,
                prefixes,
                exclude_prefixes,
                boot,
                files,
            } => {
                let r = apply::open_root(&root)?;
                let configs: Vec<(String, Vec<u8>)> = if files.is_empty() {
                    apply::load_config(&r)?
                        .into_iter()
                        .map(|f| (f.path, f.content))
                        .collect()
                } else {
                    apply::read_host_files(&files).context("reading configuration files")?
                };
                let opts = Options {
                    boot,
                    prefixes,
                    exclude_prefixes,
                };
                let report = apply::apply_files(&r, &configs, &opts, &apply::host_facts());
                Ok(print_report(&report))
            }
        }
    }
}

fn print_report(report: &Report) -> ExitCode {
    for d in &report.diagnostics {
        eprintln!("{}{d}", if d.error { "error: " } else { "notice: " });
    }
    for n in &report.notes {
        eprintln!("notice: {n}");
    }
    for f in &report.failures {
        eprintln!("error: {f}");
    }
    ExitCode::from(report.exit_code() as u8)
}
