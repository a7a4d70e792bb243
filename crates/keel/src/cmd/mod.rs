//! One module per subcommand.

pub mod atom;
pub mod boot;
pub mod build;
pub mod clean;
pub mod completions;
pub mod diff;
pub mod kernel;
pub mod man;
pub mod manifest;
pub mod overlay;
pub mod plan;
pub mod publish;
pub mod site;
pub mod size;
pub mod standins;
pub mod tmpfiles;
pub mod tools;
pub mod variants;
pub mod vm;

use anyhow::Result;
use std::path::Path;
use variant::Project;

/// Load the project at `dir`, or the one around the current directory.
pub fn project(dir: Option<&Path>) -> Result<Project> {
    let root = match dir {
        Some(d) => d.to_owned(),
        None => Project::find_root(&std::env::current_dir()?)?,
    };
    let project = Project::load(&root)?;
    Ok(project)
}

/// Write `bytes` to stdout. A reader that closed the pipe (`keel manifest IMAGE | head`) has
/// what it wanted: the rest is dropped quietly (`print!` panics there, exit 101); any other
/// write error is an error.
pub fn write_stdout(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `value` as pretty-printed JSON and a newline on stdout (the `--json` of `plan`,
/// `variants` and `manifest`).
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(value)?;
    text.push(b'\n');
    write_stdout(&text)
}

/// The widest a padded column of a table gets; longer cells overflow it.
pub const MAX_COLUMN: usize = 60;

/// The width to pad a column to: its longest cell, at most [`MAX_COLUMN`]. A width that
/// follows the input would panic the formatter past 65,535 (`{:width$}`).
pub fn column_width(lens: impl Iterator<Item = usize>) -> usize {
    lens.max().unwrap_or(0).min(MAX_COLUMN)
}

#[cfg(test)]
mod tests {
    #[test]
    fn column_width_is_capped() {
        assert_eq!(super::column_width([3, 7].into_iter()), 7);
        assert_eq!(super::column_width(std::iter::empty()), 0);
        assert_eq!(
            super::column_width([70_000, 2].into_iter()),
            super::MAX_COLUMN
        );
    }
}
