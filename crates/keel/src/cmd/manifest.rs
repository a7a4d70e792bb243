//! `keel manifest PATH [--json]`: the manifest of a directory tree or of an image (docs:
//! image crate).

use anyhow::{bail, Result};
use image::manifest::{Content, Line};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path, json: bool) -> Result<ExitCode> {
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
    if json {
        let lines = image::manifest::parse_all(&text)?;
        super::print_json(&Manifest {
            entries: lines.iter().map(Entry::from).collect(),
        })?;
    } else {
        super::write_stdout(text.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `keel manifest --json`: one object, `entries` in the text's order.
#[derive(Serialize)]
struct Manifest<'a> {
    entries: Vec<Entry<'a>>,
}

/// One path: the columns of its text line, each by name. Every key is always there;
/// those that do not apply to the type are `null`.
#[derive(Serialize)]
struct Entry<'a> {
    /// Escaped as in the text (`\t`, `\n`, `\\`, `\xHH`).
    path: &'a str,
    /// `f d l c b p s`.
    #[serde(rename = "type")]
    kind: String,
    /// Octal, as in the text (`"0755"`).
    mode: String,
    uid: u32,
    gid: u32,
    /// Regular files.
    size: Option<u64>,
    sha256: Option<&'a str>,
    /// Symlinks, escaped.
    target: Option<&'a str>,
    /// Devices: `[major, minor]`.
    device: Option<[u32; 2]>,
    /// The SELinux label, escaped.
    label: Option<&'a str>,
}

impl<'a> From<&'a Line> for Entry<'a> {
    fn from(l: &'a Line) -> Entry<'a> {
        let mut e = Entry {
            path: &l.path,
            kind: l.kind.to_string(),
            mode: format!("{:04o}", l.mode),
            uid: l.uid,
            gid: l.gid,
            size: None,
            sha256: None,
            target: None,
            device: None,
            label: l.label.as_deref(),
        };
        match &l.content {
            Content::File { size, sha256 } => {
                e.size = Some(*size);
                e.sha256 = Some(sha256);
            }
            Content::Link { target } => e.target = Some(target),
            Content::Device { major, minor } => e.device = Some([*major, *minor]),
            Content::None => {}
        }
        e
    }
}
