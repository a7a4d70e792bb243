//! What the build pipeline calls: write a variant's tmpfiles.d layers into a root, then
//! create at build time every entry in the immutable part of the root, and report the
//! entries that cannot work on a read-only root at run time.

use crate::apply::{self, Error, Report};
use crate::config::DIRS;
use crate::edit::{self, Edit, EditError, Outcome};
use crate::plan::{self, Item, Options, Plan, Source};
use crate::root::{Root, WalkError};
use crate::spec::Host;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The most a file of a tmpfiles.d layer may hold (4 MiB).
pub const MAX_LAYER_FILE: u64 = 4 << 20;

/// Errors of [`write_layers`].
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("cannot read `{}`: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("{at}: edits `{name}`, which no package in the root ships")]
    NoBase { at: Source, name: String },
    #[error(transparent)]
    Root(#[from] Error),
    #[error(transparent)]
    Layer(#[from] rootdir::Error),
}

/// What [`write_layers`] wrote, for logs and manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// `/etc/tmpfiles.d/NAME` copied from a layer.
    Added { name: String, from: PathBuf },
    /// `/etc/tmpfiles.d/NAME` as the edited copy of `base` (a path inside the root).
    Edited { name: String, base: String },
    /// `/etc/tmpfiles.d/NAME` → `/dev/null`.
    Masked { name: String },
}

fn rerr(root: &Root, path: &str, e: WalkError) -> Error {
    Error::Write {
        root: root.host_path().to_owned(),
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Write the layers (shared first, then each ancestor's, then the variant's own) into
/// the root's `/etc/tmpfiles.d/`. In a layer, `NAME.conf` is added (a later layer's file
/// of the same name replaces an earlier one) and `NAME.conf.edit` edits the packaged
/// `NAME.conf` (edits of all layers apply in layer order). Every file is written
/// atomically; nothing is written when any edit fails.
///
/// The layers are directories inside `project` and are read beneath it (crate `rootdir`):
/// a file linked out of the project is an error naming the link, never read; a FIFO is
/// refused unopened; a file is at most [`MAX_LAYER_FILE`] bytes.
pub fn write_layers(
    root: &Root,
    project: &Path,
    layers: &[PathBuf],
) -> Result<Vec<Written>, LayerError> {
    let tree = rootdir::Root::open(project)?;
    let mut added: BTreeMap<String, (PathBuf, Vec<u8>)> = BTreeMap::new();
    let mut edits: BTreeMap<String, Vec<Edit>> = BTreeMap::new();
    for layer in layers {
        let rel = layer.strip_prefix(project).map_err(|_| LayerError::Read {
            path: layer.clone(),
            cause: std::io::Error::other(format!(
                "a tmpfiles.d layer outside the project {}",
                project.display()
            )),
        })?;
        if !tree.is_dir(rel) {
            continue;
        }
        for name in tree.names(rel)? {
            let p = layer.join(&name);
            let file = rel.join(&name);
            let read = || tree.read(&file, MAX_LAYER_FILE, "a tmpfiles.d layer's file");
            if let Some(target) = name.strip_suffix(".edit") {
                if crate::config::is_config_name(target) {
                    let text = String::from_utf8_lossy(&read()?).into_owned();
                    edits
                        .entry(target.to_owned())
                        .or_default()
                        .extend(edit::parse_edits(&p.display().to_string(), &text)?);
                }
            } else if crate::config::is_config_name(&name) {
                added.insert(name, (p.clone(), read()?));
            }
        }
    }
    // Compute everything before writing anything.
    let mut plan: Vec<(String, Outcome, Written)> = Vec::new();
    for (name, (from, content)) in &added {
        if !edits.contains_key(name) {
            let text = String::from_utf8_lossy(content).into_owned();
            plan.push((
                name.clone(),
                Outcome::Content(text),
                Written::Added {
                    name: name.clone(),
                    from: from.clone(),
                },
            ));
        }
    }
    for (name, list) in &edits {
        let (base_path, base) = match added.get(name) {
            Some((from, c)) => (
                from.display().to_string(),
                String::from_utf8_lossy(c).into_owned(),
            ),
            None => {
                let found = DIRS
                    .iter()
                    .map(|d| format!("/{d}/{name}"))
                    .find_map(|p| root.read(&p).ok().map(|c| (p, c)));
                match found {
                    Some((p, c)) => (p, String::from_utf8_lossy(&c).into_owned()),
                    None => {
                        let source = list.first().map(|e| e.source.clone()).unwrap_or(Source {
                            file: name.clone(),
                            line: 0,
                        });
                        return Err(LayerError::NoBase {
                            at: source,
                            name: name.clone(),
                        });
                    }
                }
            }
        };
        let out = edit::apply_edits(name, &base, list)?;
        let w = match out {
            Outcome::Masked => Written::Masked { name: name.clone() },
            Outcome::Content(_) => Written::Edited {
                name: name.clone(),
                base: base_path,
            },
        };
        plan.push((name.clone(), out, w));
    }
    let mut written = Vec::new();
    for (name, out, w) in plan {
        let path = format!("/etc/tmpfiles.d/{name}");
        match out {
            Outcome::Masked => root.symlink_atomic(&path, "/dev/null"),
            Outcome::Content(c) => root.write_atomic(&path, c.as_bytes()),
        }
        .map_err(|e| rerr(root, &path, e))?;
        written.push(w);
    }
    Ok(written)
}

/// An entry that cannot work on the read-only root at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeProblem {
    pub source: Source,
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for RuntimeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.source, self.path, self.reason)
    }
}

fn is_mutable(path: &str, mutable: &[String]) -> bool {
    mutable.iter().any(|m| plan::path_has_prefix(path, m))
}

fn problem(item: &Item) -> Option<&'static str> {
    let age = item.entry.age.is_some();
    Some(match item.kind {
        'w' => "writes into the read-only root at every boot",
        'f' if item.plus => "truncates a file in the read-only root at every boot",
        'r' | 'R' => "removes from the read-only root at boot (--remove)",
        'D' => "its contents are removed at boot (--remove) on the read-only root",
        // The ACL is in the image (applied at build time like every other entry), but
        // systemd-tmpfiles 252 writes it again at every boot without comparing, and
        // setxattr() on the read-only root fails (EROFS).
        'a' | 'A' => "sets its ACL again at every boot, which fails on the read-only root",
        'd' | 'e' | 'v' | 'q' | 'Q' | 'C' | 'x' | 'X' if age && "devqQC".contains(item.kind) => {
            "ages out contents, which cannot be deleted on the read-only root"
        }
        _ => return None,
    })
}

/// Entries of a full plan (all lines, `--boot`) whose path is in the immutable root and
/// whose operation cannot succeed there at run time.
pub fn runtime_problems(plan: &Plan, mutable: &[String]) -> Vec<RuntimeProblem> {
    let mut v: Vec<RuntimeProblem> = plan
        .items
        .iter()
        .filter(|i| !is_mutable(&i.path, mutable))
        .filter_map(|i| {
            problem(i).map(|r| RuntimeProblem {
                source: i.source.clone(),
                path: i.path.clone(),
                reason: r.into(),
            })
        })
        .collect();
    // In configuration order, as a person reads the files.
    v.sort_by(|a, b| (&a.source.file, a.source.line).cmp(&(&b.source.file, b.source.line)));
    v
}

/// The result of [`create_at_build_time`].
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub apply: Report,
    pub runtime: Vec<RuntimeProblem>,
}

/// Apply the root's own configuration with `--create --boot` to every entry outside the
/// mutable prefixes (e.g. `/var`, `/run`, `/tmp`, `/home`, `/srv`, `/root`, writable paths
/// under `/etc`), and list what cannot work on the read-only root at run time.
pub fn create_at_build_time(
    root: &Root,
    mutable: &[String],
    host: &Host,
) -> Result<BuildReport, Error> {
    let files: Vec<(String, Vec<String>)> = apply::load_config(root)?
        .into_iter()
        .map(|f| (f.path, crate::config::lines(&f.content)))
        .collect();
    let (spec, users) = apply::root_context(root, host);
    let all = plan::plan(
        &files,
        &spec,
        &users,
        &Options {
            boot: true,
            ..Options::default()
        },
    );
    let runtime = runtime_problems(&all, mutable);
    let opts = Options {
        boot: true,
        prefixes: vec![],
        exclude_prefixes: mutable.to_vec(),
    };
    let build = plan::plan(&files, &spec, &users, &opts);
    Ok(BuildReport {
        apply: apply::apply_plan(root, &build),
        runtime,
    })
}
