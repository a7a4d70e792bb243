//! One module per subcommand.

pub mod atom;
pub mod boot;
pub mod build;
pub mod clean;
pub mod manifest;
pub mod overlay;
pub mod plan;
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
