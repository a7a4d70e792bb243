//! `keel manifest PATH`: the manifest of a directory tree or of an image (docs: image crate).

use anyhow::{bail, Result};
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> Result<ExitCode> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => bail!("{}: {e}", path.display()),
    };
    let text = if meta.is_dir() {
        image::manifest::of_tree(path)?
    } else {
        let scratch = tempfile::tempdir()?;
        image::manifest::of_image(path, scratch.path())?
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
