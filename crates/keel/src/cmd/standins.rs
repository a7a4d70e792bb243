//! `keel standins`: regenerate gentoo-mini's stand-ins made of Debian packages' files from
//! the tree's mapping (crate `standins`, docs/gentoo-mini.md).

use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use variant::Project;

/// The stand-in tree this project ships.
pub const DEFAULT_REPO: &str = "tests/fixtures/gentoo-mini";

pub fn run(project: &Project, repo: Option<&Path>) -> Result<ExitCode> {
    let repo: PathBuf = repo.map_or_else(|| project.root.join(DEFAULT_REPO), Path::to_owned);
    let build = pipeline::Layout::build_dir(&project.root);
    let cache = build.join("cache").join("standins");
    let log = build.join("logs").join("standins.log");
    if let Some(d) = log.parent() {
        std::fs::create_dir_all(d)?;
    }
    let t = Instant::now();
    eprintln!(
        "standins: resolving {} with apt (log: {})",
        repo.join(standins::map::PATH).display(),
        log.display()
    );
    let report = standins::regen::regen(&repo, &cache, &log)?;
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
