//! `keel overlay`: plumbing for the overlay stage.

use anyhow::{Context, Result};
use clap::Subcommand;
use overlay::Mtime;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum OverlayCommand {
    /// Sync the contents of each SRC into DEST as `rsync -rlptgoD -O --chown=0:0 SRC/ DEST/`
    /// would, in order (a later SRC wins); nothing outside DEST is ever touched
    Sync {
        /// Source directories, applied in order
        #[arg(required = true, num_args = 1.., value_name = "SRC")]
        sources: Vec<PathBuf>,
        /// The destination root
        #[arg(required = true, value_name = "DEST")]
        dest: PathBuf,
    },
    /// Set the mtime of PATH inside ROOT (no symlink followed), e.g. `/usr` := build time
    SetMtime {
        root: PathBuf,
        path: PathBuf,
        /// Seconds since the epoch
        #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
        mtime: i64,
    },
}

impl OverlayCommand {
    pub fn run(self) -> Result<ExitCode> {
        match self {
            OverlayCommand::Sync { sources, dest } => {
                let stats = overlay::sync(&sources, &dest)
                    .with_context(|| format!("overlay sync into `{}`", dest.display()))?;
                println!(
                    "{} directories created, {} files written ({} bytes), {} unchanged, {} symlinks, {} special files",
                    stats.dirs_created,
                    stats.files_written,
                    stats.bytes_copied,
                    stats.files_unchanged,
                    stats.symlinks_written,
                    stats.specials_written
                );
            }
            OverlayCommand::SetMtime { root, path, mtime } => {
                overlay::set_mtime(&root, &path, Mtime::from_secs(mtime))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
