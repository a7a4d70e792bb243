//! `keel standins`: regenerate gentoo-mini's stand-ins made of Debian packages' files from
//! the tree's mapping (crate `standins`, docs/gentoo-mini.md).

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use variant::Project;

/// The stand-in tree this project ships.
pub const DEFAULT_REPO: &str = "tests/fixtures/gentoo-mini";

/// With `all_into`: copy the tree there first and generate every atom in the copy.
pub fn run(project: &Project, repo: Option<&Path>, all_into: Option<&Path>) -> Result<ExitCode> {
    let repo: PathBuf = repo.map_or_else(|| project.root.join(DEFAULT_REPO), Path::to_owned);
    let build = pipeline::Layout::build_dir(&project.root);
    let cache = build.join("cache").join("standins");
    let log = build.join("logs").join("standins.log");
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d)?;
    }
    if let Some(out) = all_into {
        if out.symlink_metadata().is_ok() {
            anyhow::bail!(
                "{}: already exists (--out names a new directory)",
                out.display()
            );
        }
        let partial = out.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        exec::Cmd::new("cp")
            .arg("-a")
            .arg(&repo)
            .arg(&partial)
            .run()?;
        let report = standins::regen::regen(&partial, &cache, &log, true).map_err(|e| {
            anyhow::anyhow!(
                "{e}\n(in the copy {}; {} is its mapping)",
                partial.display(),
                partial.join(standins::map::PATH).display()
            )
        })?;
        std::fs::rename(&partial, out)?;
        eprintln!(
            "standins: {} with all {} atoms of its mapping generated",
            out.display(),
            report.standins.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let t = Instant::now();
    eprintln!(
        "standins: resolving {} with apt (log: {})",
        repo.join(standins::map::PATH).display(),
        log.display()
    );
    let report = standins::regen::regen(&repo, &cache, &log, false)?;
    for s in &report.standins {
        let debs: Vec<&str> = s.debs.iter().map(|d| d.distfile()).collect();
        println!("{}-{}: {}", s.key, s.version, debs.join(" "));
    }
    for f in &report.removed {
        println!("removed {f}");
    }
    for f in &report.written {
        println!("wrote {f}");
    }
    eprintln!(
        "standins: {} stand-ins, {} files written, in {:.1}s (.debs cached in {})",
        report.standins.len(),
        report.written.len(),
        t.elapsed().as_secs_f64(),
        cache.display()
    );
    Ok(ExitCode::SUCCESS)
}
