//! `keel size --variant V`: where the image's bytes go, by package.

use anyhow::{bail, Result};
use std::process::ExitCode;
use variant::Project;

pub fn run(project: &Project, variant: &str, json: bool) -> Result<ExitCode> {
    project.resolve(variant)?;
    let out = pipeline::Layout::new(&project.root, variant, None).output;
    let record = out.join(pipeline::history::RECORD);
    if !record.is_file() {
        bail!(
            "{}: no build record: build `{variant}` first (`keel build --variant {variant}`)",
            record.display()
        );
    }
    let loaded = pipeline::history::load(&record)?;
    let Some(rec) = &loaded.record else {
        bail!("{}: not a build record", record.display());
    };
    let table = record::size::table(rec, Some(&loaded.manifest));
    if json {
        super::print_json(&table)?;
    } else {
        super::write_stdout(record::size::render(&table).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}
