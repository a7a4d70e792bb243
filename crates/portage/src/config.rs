//! Portage configuration roots composed from the source tree.
//!
//! Every build regenerates them from scratch (the directory is removed and rewritten), so a
//! file deleted from the source stops affecting the next build. Nothing is ever written to
//! the host's `/etc/portage` or to a root's `etc/portage`.
//!
//! Layers are the `portage/` directories of the project and of each variant in the chain,
//! shared first. Inside a layer, the top level is the *target* configuration (what
//! `/etc/portage` would hold) and `host/` is the build host's. Composition rule:
//! - `make.conf` and every `package.*` entry **accumulate**: each layer's file (or each file
//!   of a layer's directory) becomes one file `NN-<layer>[-<name>]` of the composed
//!   directory, so Portage reads them all, in layer order (later assignments win in
//!   make.conf; later lines win in package.use).
//! - every other path (`env/`, `patches/`, `profile/`, `sets/`, `bashrc`, ...) is a
//!   **tree merge**: the file of the latest layer that has the path wins. User patches from
//!   different layers for one package therefore all apply, in name order.
//! - Keel adds `make.profile`, its own `make.conf` parts (paths, FEATURES) and the set files
//!   `sets/keel-<set>`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;

/// A composed configuration tree: relative path -> content (or a symlink).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub files: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File(Vec<u8>),
    Link(PathBuf),
}

impl Tree {
    pub fn file(&mut self, rel: impl Into<String>, content: impl Into<Vec<u8>>) {
        self.files.insert(rel.into(), Node::File(content.into()));
    }
    pub fn link(&mut self, rel: impl Into<String>, target: impl Into<PathBuf>) {
        self.files.insert(rel.into(), Node::Link(target.into()));
    }

    /// Replace `dir` with exactly this tree.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        if dir.symlink_metadata().is_ok() {
            fs::remove_dir_all(dir).map_err(Error::io(dir))?;
        }
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        for (rel, node) in &self.files {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(Error::io(parent))?;
            }
            match node {
                Node::File(c) => fs::write(&path, c).map_err(Error::io(&path))?,
                Node::Link(t) => std::os::unix::fs::symlink(t, &path).map_err(Error::io(&path))?,
            }
        }
        Ok(())
    }

    /// A stable text rendering (for fingerprints and snapshots).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (rel, node) in &self.files {
            match node {
                Node::File(c) => {
                    out.push_str(&format!("=== {rel}\n"));
                    out.push_str(&String::from_utf8_lossy(c));
                    if !c.ends_with(b"\n") && !c.is_empty() {
                        out.push('\n');
                    }
                }
                Node::Link(t) => out.push_str(&format!("=== {rel} -> {}\n", t.display())),
            }
        }
        out
    }
}

/// A layer directory and the name it gets in composed file names.
#[derive(Debug, Clone)]
pub struct LayerDir {
    /// Project-relative path, e.g. `variants/base/portage`.
    pub rel: String,
    pub path: PathBuf,
}

impl LayerDir {
    fn slug(&self) -> String {
        self.rel
            .trim_end_matches("/portage")
            .trim_end_matches("portage")
            .replace('/', "-")
            .trim_matches('-')
            .to_owned()
    }
}

fn accumulates(name: &str) -> bool {
    name == "make.conf" || name.starts_with("package.")
}

/// Compose the layers' files. `sub` selects the part of each layer: `""` for the target
/// configuration, `"host"` for the build host's.
pub fn compose_layers(layers: &[LayerDir], sub: &str) -> Result<Tree, Error> {
    let mut tree = Tree::default();
    for (i, layer) in layers.iter().enumerate() {
        let files = LayerFiles::open(layer)?;
        let base = if sub.is_empty() {
            PathBuf::from(&layer.rel)
        } else {
            Path::new(&layer.rel).join(sub)
        };
        if !files.is_dir(&base) {
            continue;
        }
        let slug = match layer.slug() {
            s if s.is_empty() => "shared".to_owned(),
            s => s,
        };
        let prefix = format!("{:02}-{slug}", 10 + i);
        for name in files.names(&base)? {
            if sub.is_empty() && name == "host" {
                continue;
            }
            let path = base.join(&name);
            if accumulates(&name) {
                if files.is_dir(&path) {
                    for (rel, content) in files.walk(&path)? {
                        tree.file(
                            format!("{name}/{prefix}-{}", rel.replace('/', "-")),
                            content,
                        );
                    }
                } else {
                    tree.file(format!("{name}/{prefix}"), files.read(&path)?);
                }
            } else if files.is_dir(&path) {
                for (rel, content) in files.walk(&path)? {
                    tree.file(format!("{name}/{rel}"), content);
                }
            } else {
                tree.file(name, files.read(&path)?);
            }
        }
    }
    Ok(tree)
}

/// The most a file of a configuration layer may hold (16 MiB).
pub const MAX_LAYER_FILE: u64 = 16 << 20;

/// The files of a layer, read beneath the project's root (crate `rootdir`): links are
/// followed only while they stay inside the project; one out of it, a FIFO or a device is
/// an error naming it, never read.
pub struct LayerFiles {
    tree: rootdir::Root,
}

impl LayerFiles {
    /// The project a layer belongs to: its path with its project-relative part taken off.
    pub fn open(layer: &LayerDir) -> Result<LayerFiles, Error> {
        let depth = Path::new(&layer.rel).components().count();
        let root = layer.path.ancestors().nth(depth).unwrap_or(Path::new("/"));
        Ok(LayerFiles {
            tree: rootdir::Root::open(root)?,
        })
    }

    pub fn is_dir(&self, rel: &Path) -> bool {
        self.tree.is_dir(rel)
    }

    /// The names in the directory `rel`, sorted.
    pub fn names(&self, rel: &Path) -> Result<Vec<String>, Error> {
        Ok(self.tree.names(rel)?)
    }

    pub fn read(&self, rel: &Path) -> Result<Vec<u8>, Error> {
        Ok(self
            .tree
            .read(rel, MAX_LAYER_FILE, "a configuration layer's file")?)
    }

    /// Regular files under `dir`, relative paths, sorted.
    pub fn walk(&self, dir: &Path) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        let mut stack = vec![(dir.to_owned(), String::new())];
        while let Some((d, rel)) = stack.pop() {
            for name in self.names(&d)? {
                let r = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let p = d.join(&name);
                if self.is_dir(&p) {
                    stack.push((p, r));
                } else {
                    out.push((r, self.read(&p)?));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Render a Portage set file.
pub fn set_file(comment: &str, atoms: &[String]) -> String {
    let mut s = format!(
        "# {comment}\n# generated by keel from the variant's package set files; do not edit\n"
    );
    for a in atoms {
        s.push_str(a);
        s.push('\n');
    }
    s
}

/// Quote a value for make.conf (bash syntax, double quotes).
pub fn make_conf_value(v: &str) -> String {
    format!(
        "\"{}\"",
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulate_and_tree_merge() {
        let d = tempfile::tempdir().unwrap();
        let mk = |rel: &str, text: &str| {
            let p = d.path().join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, text).unwrap();
        };
        mk("portage/make.conf", "A=1\n");
        mk("portage/package.use/base", "x/y a\n");
        mk(
            "portage/patches/sec-policy/selinux-base/0001-a.patch",
            "A\n",
        );
        mk("portage/env/x.conf", "shared\n");
        mk("portage/host/make.conf", "H=1\n");
        mk("variants/v/portage/make.conf", "A=2\n");
        mk("variants/v/portage/package.use", "x/y -a\n");
        mk(
            "variants/v/portage/patches/sec-policy/selinux-base/0002-b.patch",
            "B\n",
        );
        mk("variants/v/portage/env/x.conf", "variant\n");
        let layers = vec![
            LayerDir {
                rel: "portage".into(),
                path: d.path().join("portage"),
            },
            LayerDir {
                rel: "variants/v/portage".into(),
                path: d.path().join("variants/v/portage"),
            },
        ];
        let t = compose_layers(&layers, "").unwrap();
        assert_eq!(
            t.render(),
            "=== env/x.conf\nvariant\n=== make.conf/10-shared\nA=1\n=== make.conf/11-variants-v\nA=2\n\
             === package.use/10-shared-base\nx/y a\n=== package.use/11-variants-v\nx/y -a\n\
             === patches/sec-policy/selinux-base/0001-a.patch\nA\n=== patches/sec-policy/selinux-base/0002-b.patch\nB\n"
        );
        let h = compose_layers(&layers, "host").unwrap();
        assert_eq!(h.render(), "=== make.conf/10-shared\nH=1\n");
    }

    /// Issue 17: a layer file linked out of the project is refused naming the link (its
    /// content is never read); a FIFO does not block; a link inside the project is read.
    #[test]
    fn layer_files_are_read_only_inside_the_project() {
        let d = tempfile::tempdir().unwrap();
        let project = d.path().join("p");
        let outside = d.path().join("shadow");
        fs::write(&outside, "root:$6$SECRETHASH:1::\n").unwrap();
        fs::create_dir_all(project.join("portage/package.use")).unwrap();
        fs::write(project.join("portage/package.use/in"), "x/y a\n").unwrap();
        std::os::unix::fs::symlink("in", project.join("portage/package.use/alias")).unwrap();
        let layers = vec![LayerDir {
            rel: "portage".into(),
            path: project.join("portage"),
        }];
        let t = compose_layers(&layers, "").unwrap();
        assert!(
            t.render().contains("package.use/10-shared-alias\nx/y a\n"),
            "{}",
            t.render()
        );
        std::os::unix::fs::symlink(&outside, project.join("portage/make.conf")).unwrap();
        let e = compose_layers(&layers, "").unwrap_err().to_string();
        assert!(e.contains("/portage/make.conf is a symlink to"), "{e}");
        assert!(!e.contains("SECRETHASH"), "{e}");
        fs::remove_file(project.join("portage/make.conf")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            project.join("portage/make.conf"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = compose_layers(&layers, "").unwrap_err().to_string();
        assert!(e.contains("make.conf: a FIFO, not a regular file"), "{e}");
    }

    #[test]
    fn write_replaces_everything() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("etc/portage");
        let mut t = Tree::default();
        t.file("package.use/a", "x/y a\n");
        t.link("make.profile", "/nonexistent/profile");
        t.write(&dir).unwrap();
        let mut t2 = Tree::default();
        t2.file("make.conf/00", "A=1\n");
        t2.write(&dir).unwrap();
        assert!(!dir.join("package.use").exists() && dir.join("make.conf/00").exists());
    }

    #[test]
    fn make_conf_quoting() {
        assert_eq!(make_conf_value("a \"b\" $c"), "\"a \\\"b\\\" \\$c\"");
    }
}
