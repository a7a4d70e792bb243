//! `keel clean [--variant V] [--all]`: remove what builds left in `build/`.
//!
//! - `--variant V`: V's work directory (sysroot, binary packages, stages) and its output;
//! - no argument: every variant's work and output; the tools (the Portage venv) and the
//!   download caches stay;
//! - `--all`: the whole `build/` directory.

use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;
use variant::Project;

fn remove(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?
        }
        Ok(_) => {
            std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?
        }
        Err(_) => return Ok(()),
    }
    eprintln!("removed {}", path.display());
    Ok(())
}

pub fn run(project: &Project, variant: Option<&str>, all: bool) -> Result<ExitCode> {
    if all {
        remove(&pipeline::Layout::build_dir(&project.root))?;
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<String> = match variant {
        Some(v) => vec![project.get(v)?.name.clone()],
        None => project.variants.keys().cloned().collect(),
    };
    for name in names {
        let layout = pipeline::Layout::new(&project.root, &name, None);
        remove(&layout.work)?;
        remove(&layout.output)?;
    }
    Ok(ExitCode::SUCCESS)
}
