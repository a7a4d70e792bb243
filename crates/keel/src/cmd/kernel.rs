//! `keel kernel check-config`: the kernel configuration fragments' check, which the kernel
//! package's configure phase runs (docs/kernel.md).

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Check that a kernel's final .config has every value the fragments in DIR set; print each one it does not have (fragment file and line, option, value got) and exit 1
    CheckConfig {
        /// The fragments: DIR/*.config, merged in name order
        #[arg(long, value_name = "DIR")]
        fragments: PathBuf,
        /// The final configuration (`.config`)
        config: PathBuf,
    },
}

impl KernelCommand {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            KernelCommand::CheckConfig { fragments, config } => {
                let missing = portage::kernel::check_config(&fragments, &config)?;
                for m in &missing {
                    eprintln!("{}{m}", portage::kernel::MARKER);
                }
                Ok(if missing.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            }
        }
    }
}
