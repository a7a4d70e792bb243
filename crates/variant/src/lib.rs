//! Variants: discovery, inheritance and the resolved plan of one variant.
//!
//! A variant is a directory `variants/<name>/` holding a `variant.toml`. Variants are found
//! at run time; no variant is named in code. [`Project::load`] reads every `variant.toml`
//! and the package set files (the only I/O of this crate); [`Project::resolve`] turns one
//! variant into a [`Resolved`]: its chain, its effective settings, its four merged package
//! sets and its layers.

pub mod schema;

use pkgsets::sets::{self, Line, Merged, SetError, SetKind};
use schema::{Distribution, ImageFormat, SchemaError, SelinuxMode, VarFormat, VariantToml};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The kinds of layer directories, each stacked shared-first.
pub const LAYER_KINDS: [&str; 5] = ["portage", "overlay", "tmpfiles.d", "policy", "kernel"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    /// A project file that is a link out of the project, not a regular file, or too big.
    #[error(transparent)]
    Tree(#[from] rootdir::Error),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error(transparent)]
    Set(#[from] SetError),
    #[error("no variant `{name}`; variants are the directories of {} holding a variant.toml: {}", dir.display(), known.join(", "))]
    Unknown {
        name: String,
        dir: PathBuf,
        known: Vec<String>,
    },
    #[error("{file}:{line}: `inherits = \"{parent}\"`: no variant `{parent}` (no {parent_file})")]
    MissingParent {
        file: String,
        line: usize,
        parent: String,
        parent_file: String,
    },
    #[error("{file}:{line}: inheritance cycle: {}", cycle.join(" -> "))]
    Cycle {
        file: String,
        line: usize,
        cycle: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("no Keel project at or above {}: no directory holding `variants/`", start.display())]
    NoProject { start: PathBuf },
}

/// One variant as written on disk.
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    /// `variants/<name>`, relative to the project root.
    pub rel_dir: String,
    pub toml: VariantToml,
    /// Line of `inherits =` in variant.toml (for messages).
    pub inherits_line: usize,
    /// Parsed set files; an absent file is an empty set.
    pub sets: BTreeMap<SetKind, Vec<Line>>,
}

impl Variant {
    pub fn toml_file(&self) -> String {
        format!("{}/variant.toml", self.rel_dir)
    }
    pub fn parent(&self) -> Option<&str> {
        self.toml.inherits.as_ref().map(|s| s.get_ref().as_str())
    }
}

/// All variants of a project.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub variants: BTreeMap<String, Variant>,
}

/// The effective settings of a variant after inheritance.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub description: String,
    pub distribution: Distribution,
    pub suite: Option<String>,
    pub profile: Option<String>,
    pub chost: Option<String>,
    pub python: bool,
    pub etc_writable: Vec<String>,
    pub image_format: ImageFormat,
    /// Absolute path of the pseudo-file definitions, from the variant that set it.
    pub pseudo_files: Option<PathBuf>,
    pub selinux: bool,
    pub selinux_type: String,
    pub selinux_mode: SelinuxMode,
    pub customize_hook: Option<PathBuf>,
    pub post_build_hook: Option<PathBuf>,
    /// `[disk]` anywhere along the chain: a bootable disk image (docs/disk.md).
    pub disk: Option<Disk>,
}

/// The effective `[disk]` settings (each key the nearest variant's, else its default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub esp: Size,
    pub root: Size,
    pub var: Size,
    pub var_format: VarFormat,
    /// Where installed disks update from (`update-url`): the image carries
    /// systemd-sysupdate's transfers for it.
    pub update_url: Option<String>,
    /// `variants/V/variant.toml:LINE` of the nearest `[disk]` table.
    pub at: String,
}

/// A size from `[disk]`, with where it was set (`file:line`; a default's is the table's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    pub bytes: u64,
    pub at: String,
}

impl Disk {
    pub const DEFAULT_ESP: u64 = 256 << 20;
    pub const DEFAULT_ROOT: u64 = 1 << 30;
    pub const DEFAULT_VAR: u64 = 1 << 30;
}

/// One layer directory that exists, in stacking order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub kind: &'static str,
    /// Relative to the project root (`overlay`, `variants/base/overlay`).
    pub rel: String,
    pub path: PathBuf,
}

/// A variant resolved against its ancestors.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    /// Root ancestor first, the variant itself last.
    pub chain: Vec<String>,
    pub settings: Settings,
    pub sets: BTreeMap<SetKind, Merged>,
    pub layers: Vec<Layer>,
}

impl Resolved {
    pub fn layers_of<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Layer> + 'a {
        self.layers.iter().filter(move |l| l.kind == kind)
    }
    pub fn set(&self, kind: SetKind) -> &Merged {
        static EMPTY: std::sync::OnceLock<Merged> = std::sync::OnceLock::new();
        self.sets
            .get(&kind)
            .unwrap_or_else(|| EMPTY.get_or_init(Merged::default))
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let at = rootdir::PathError::at(path);
    move |e| Error::Io(at(e))
}

/// The most a `variant.toml` or a package set file may hold (1 MiB; the project's own are
/// under 4 KiB).
pub const MAX_PROJECT_FILE: u64 = 1 << 20;

/// The text of the project file `rel`, or `None` when it is not there. It is read only when
/// it is a regular file inside the project (a link is followed only while it stays
/// inside), of at most [`MAX_PROJECT_FILE`] bytes: a link out, a FIFO or a device is an
/// error that names it and shows nothing of what it points to.
fn read_optional(tree: &rootdir::Root, rel: &str, what: &str) -> Result<Option<String>, Error> {
    let f = match tree.open_file(Path::new(rel)) {
        Ok(f) => f,
        Err(e) if e.is_absent() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let path = tree.path().join(rel);
    let bytes = rootdir::read_capped(f, &path, MAX_PROJECT_FILE, what)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| Error::Invalid(format!("{}: not UTF-8 text", path.display())))
}

impl Project {
    /// The project root: `start` or the nearest ancestor that holds a `variants/` directory.
    pub fn find_root(start: &Path) -> Result<PathBuf, Error> {
        start
            .ancestors()
            .find(|d| d.join("variants").is_dir())
            .map(Path::to_owned)
            .ok_or_else(|| Error::NoProject {
                start: start.to_owned(),
            })
    }

    /// Read every variant of the project at `root`.
    pub fn load(root: &Path) -> Result<Project, Error> {
        let vdir = root.join("variants");
        let tree = rootdir::Root::open(root)?;
        let dir = tree.open_dir(Path::new("variants"))?;
        let names =
            rootdir::read_names(std::os::fd::AsFd::as_fd(&dir)).map_err(|e| io(&vdir)(e.into()))?;
        let mut variants = BTreeMap::new();
        for name in names {
            let Ok(name) = String::from_utf8(name) else {
                continue;
            };
            let Some(text) = read_optional(
                &tree,
                &format!("variants/{name}/variant.toml"),
                "a variant.toml",
            )?
            else {
                continue;
            };
            let rel_dir = format!("variants/{name}");
            let file = format!("{rel_dir}/variant.toml");
            if !schema::valid_name(&name) {
                return Err(Error::Invalid(format!(
                    "{file}: `{name}` is not a valid variant name (lowercase letters, digits, `-`, `_`)"
                )));
            }
            let toml = schema::parse(&file, &text)?;
            let inherits_line = toml
                .inherits
                .as_ref()
                .map(|s| schema::line_of(&text, s.span().start))
                .unwrap_or(0);
            let mut sets = BTreeMap::new();
            for kind in SetKind::ALL {
                let rel = format!("{rel_dir}/{}", kind.file_name());
                if let Some(text) = read_optional(&tree, &rel, "a package set file")? {
                    sets.insert(
                        kind,
                        sets::parse_set_file(&format!("{rel_dir}/{}", kind.file_name()), &text)?,
                    );
                }
            }
            variants.insert(
                name.clone(),
                Variant {
                    name,
                    rel_dir,
                    toml,
                    inherits_line,
                    sets,
                },
            );
        }
        let project = Project {
            root: root.to_owned(),
            variants,
        };
        // Check every variant's chain up front, so a broken variant is reported even when
        // another one is asked for.
        for name in project.variants.keys() {
            project.chain(name)?;
        }
        Ok(project)
    }

    /// Root ancestor first, `name` last.
    pub fn chain(&self, name: &str) -> Result<Vec<&Variant>, Error> {
        let mut chain: Vec<&Variant> = Vec::new();
        let mut cur = self.get(name)?;
        loop {
            if let Some(pos) = chain.iter().position(|v| v.name == cur.name) {
                let last = chain[chain.len() - 1];
                let mut cycle: Vec<String> = chain[pos..].iter().map(|v| v.name.clone()).collect();
                cycle.push(cur.name.clone());
                return Err(Error::Cycle {
                    file: last.toml_file(),
                    line: last.inherits_line,
                    cycle,
                });
            }
            chain.push(cur);
            let Some(parent) = cur.parent() else { break };
            cur = self
                .variants
                .get(parent)
                .ok_or_else(|| Error::MissingParent {
                    file: cur.toml_file(),
                    line: cur.inherits_line,
                    parent: parent.to_owned(),
                    parent_file: format!("variants/{parent}/variant.toml"),
                })?;
        }
        chain.reverse();
        Ok(chain)
    }

    pub fn get(&self, name: &str) -> Result<&Variant, Error> {
        self.variants.get(name).ok_or_else(|| Error::Unknown {
            name: name.to_owned(),
            dir: self.root.join("variants"),
            known: self.variants.keys().cloned().collect(),
        })
    }

    /// Resolve one variant: chain, settings, merged sets, layers.
    pub fn resolve(&self, name: &str) -> Result<Resolved, Error> {
        let chain = self.chain(name)?;
        let settings = self.settings(&chain)?;
        let mut sets = BTreeMap::new();
        for kind in SetKind::ALL {
            let layers: Vec<Vec<Line>> = chain
                .iter()
                .map(|v| v.sets.get(&kind).cloned().unwrap_or_default())
                .collect();
            sets.insert(kind, sets::merge(&layers)?);
        }
        // A layer is a directory inside the project; a link out of it is refused.
        let tree = rootdir::Root::open(&self.root)?;
        let mut layers = Vec::new();
        for kind in LAYER_KINDS {
            let shared = std::iter::once(kind.to_owned());
            for rel in shared.chain(chain.iter().map(|v| format!("{}/{kind}", v.rel_dir))) {
                match tree.open_dir(Path::new(&rel)) {
                    Ok(_) => {
                        let path = self.root.join(&rel);
                        layers.push(Layer { kind, rel, path });
                    }
                    Err(e) if e.is_absent() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(Resolved {
            name: name.to_owned(),
            chain: chain.iter().map(|v| v.name.clone()).collect(),
            settings,
            sets,
            layers,
        })
    }

    fn settings(&self, chain: &[&Variant]) -> Result<Settings, Error> {
        // Nearest variant wins for scalars: walk from the variant up to the root.
        fn nearest<'a, T: Clone>(
            chain: &[&'a Variant],
            f: impl Fn(&'a Variant) -> Option<T>,
        ) -> Option<(T, &'a Variant)> {
            chain.iter().rev().find_map(|v| f(v).map(|x| (x, *v)))
        }
        let path_in = |(p, v): (String, &Variant)| self.root.join(&v.rel_dir).join(p);
        let mut etc_writable: Vec<String> = Vec::new();
        for v in chain {
            for p in v.toml.etc_writable.iter().flatten() {
                if !etc_writable.contains(p) {
                    etc_writable.push(p.clone());
                }
            }
        }
        let s = Settings {
            description: nearest(chain, |v| v.toml.description.clone())
                .map(|x| x.0)
                .unwrap_or_default(),
            distribution: nearest(chain, |v| v.toml.distribution)
                .map(|x| x.0)
                .unwrap_or(Distribution::Gentoo),
            suite: nearest(chain, |v| v.toml.suite.clone()).map(|x| x.0),
            profile: nearest(chain, |v| v.toml.profile.clone()).map(|x| x.0),
            chost: nearest(chain, |v| v.toml.chost.clone()).map(|x| x.0),
            python: nearest(chain, |v| v.toml.python)
                .map(|x| x.0)
                .unwrap_or(true),
            etc_writable,
            image_format: nearest(chain, |v| v.toml.image.as_ref()?.format)
                .map(|x| x.0)
                .unwrap_or(ImageFormat::Squashfs),
            pseudo_files: nearest(chain, |v| v.toml.image.as_ref()?.pseudo_files.clone())
                .map(path_in),
            selinux: nearest(chain, |v| v.toml.selinux.as_ref()?.enabled)
                .map(|x| x.0)
                .unwrap_or(false),
            selinux_type: nearest(chain, |v| v.toml.selinux.as_ref()?.policy_type.clone())
                .map(|x| x.0)
                .unwrap_or_else(|| "mcs".into()),
            selinux_mode: nearest(chain, |v| v.toml.selinux.as_ref()?.mode)
                .map(|x| x.0)
                .unwrap_or(SelinuxMode::Enforcing),
            customize_hook: nearest(chain, |v| v.toml.hooks.as_ref()?.customize.clone())
                .map(path_in),
            post_build_hook: nearest(chain, |v| v.toml.hooks.as_ref()?.post_build.clone())
                .map(path_in),
            disk: None,
        };
        let me = chain[chain.len() - 1];
        let s = Settings {
            disk: disk_of(chain),
            ..s
        };
        if s.distribution == Distribution::Debian && s.suite.is_none() {
            return Err(Error::Invalid(format!(
                "{}: `distribution = \"debian\"` needs a `suite` (e.g. \"bookworm\")",
                me.toml_file()
            )));
        }
        Ok(s)
    }
}

/// The `[disk]` settings of `chain` (root ancestor first): `None` when no variant has the
/// table; otherwise each key from the nearest variant that sets it.
fn disk_of(chain: &[&Variant]) -> Option<Disk> {
    let table = chain.iter().rev().find(|v| v.toml.disk.is_some())?;
    let at = format!("{}:{}", table.toml_file(), table.toml.disk.as_ref()?.line);
    let size = |i: usize, default: u64| {
        let key = |d: &schema::DiskToml| match i {
            0 => d.esp_size.clone(),
            1 => d.root_size.clone(),
            _ => d.var_size.clone(),
        };
        chain
            .iter()
            .rev()
            .find_map(|v| {
                let d = v.toml.disk.as_ref()?;
                let value = key(d)?;
                let line = d.size_lines[i];
                Some(Size {
                    // Checked by schema::parse.
                    bytes: schema::size_bytes(value.get_ref()).unwrap_or(default),
                    at: format!("{}:{line}", v.toml_file()),
                })
            })
            .unwrap_or(Size {
                bytes: default,
                at: at.clone(),
            })
    };
    Some(Disk {
        esp: size(0, Disk::DEFAULT_ESP),
        root: size(1, Disk::DEFAULT_ROOT),
        var: size(2, Disk::DEFAULT_VAR),
        var_format: chain
            .iter()
            .rev()
            .find_map(|v| v.toml.disk.as_ref()?.var_format)
            .unwrap_or(VarFormat::Btrfs),
        update_url: chain
            .iter()
            .rev()
            .find_map(|v| v.toml.disk.as_ref()?.update_url.as_ref())
            .map(|u| u.get_ref().clone()),
        at,
    })
}

#[cfg(test)]
mod tests;
