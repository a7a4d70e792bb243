//! `keel diff A B`: what changed between two builds (docs/pipeline.md, "Build records").

use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;

/// Prints the differences (nothing when there are none); `--json` prints them as one
/// object. Exit status 0 either way: a difference is an answer, not a failure.
pub fn run(a: &Path, b: &Path, json: bool) -> Result<ExitCode> {
    // The errors name the file (and the line).
    let la = pipeline::history::load(a)?;
    let lb = pipeline::history::load(b)?;
    let d = record::diff::diff(&la.side(), &lb.side());
    if json {
        super::print_json(&d)?;
    } else {
        super::write_stdout(record::diff::render(&d).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
