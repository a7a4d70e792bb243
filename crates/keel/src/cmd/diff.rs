//! `keel diff A B`: what changed between two builds (docs/pipeline.md, "Build records").

use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;

/// Prints the differences (nothing when there are none); `--json` prints them as one
/// object. Exit status 0 either way: a difference is an answer, not a failure.
pub fn run(a: &Path, b: &Path, json: bool) -> Result<ExitCode> {
    let la = pipeline::history::load(a).with_context(|| format!("reading {}", a.display()))?;
    let lb = pipeline::history::load(b).with_context(|| format!("reading {}", b.display()))?;
    let d = record::diff::diff(&la.side(), &lb.side());
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print!("{}", record::diff::render(&d));
    }
    Ok(ExitCode::SUCCESS)
}
