//! Keel's package set files and how they merge along a variant's inheritance chain.
//!
//! Format (one file per set and variant, e.g. `variants/base/install.packages`):
//! - one atom per line; leading and trailing whitespace is ignored;
//! - `#` starts a comment, at the start of a line or after whitespace;
//! - blank lines are ignored;
//! - `-<atom>` removes an atom inherited from an ancestor. A bare `-cat/pkg` removes every
//!   inherited atom of that package; a removal with an operator, slot, repository or USE
//!   dependency removes only the inherited atom that is written the same (normalized);
//! - a line is at most [`MAX_LINE`] bytes, comment included; atoms have their own limits
//!   ([`crate::atom`]), reported first when an atom is what is too long.
//!
//! Merging: the ancestors' lines in order (root first), then the variant's own.
//! - A removal that matches no atom of an ancestor is an **error** (a typo, or the parent
//!   changed under us): the set would silently not be what the file says.
//! - A duplicate atom (same normalized atom added twice, in one file or across layers) is a
//!   **warning**: the first occurrence is kept, both places are named.

use crate::atom::{Atom, AtomError, ParseOptions, MAX_ATOM};
use std::collections::HashMap;
use std::fmt;

/// The longest line of a set file, in bytes: twice the longest atom, which leaves room
/// for a removal's `-`, indentation and a comment.
pub const MAX_LINE: usize = 2 * MAX_ATOM;

/// The four package sets of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetKind {
    /// Built from source into the sysroot as binary packages.
    Build,
    /// Installed into the destination root from the sysroot's binary packages.
    Install,
    /// Installed on the build host.
    HostTools,
    /// Installed into the destination root without being built in the sysroot first.
    InstallOnly,
}

impl SetKind {
    pub const ALL: [SetKind; 4] = [
        SetKind::Build,
        SetKind::Install,
        SetKind::HostTools,
        SetKind::InstallOnly,
    ];

    /// The file that holds the set in a variant directory.
    pub fn file_name(self) -> &'static str {
        match self {
            SetKind::Build => "build.packages",
            SetKind::Install => "install.packages",
            SetKind::HostTools => "host-tools.packages",
            SetKind::InstallOnly => "installonly.packages",
        }
    }

    /// Short name used in plans and Portage set names (`@keel-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            SetKind::Build => "build",
            SetKind::Install => "install",
            SetKind::HostTools => "host-tools",
            SetKind::InstallOnly => "installonly",
        }
    }
}

impl fmt::Display for SetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    Add(Atom),
    Remove(Atom),
}

/// One meaningful line of a set file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub loc: Loc,
    pub kind: LineKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    #[error("{loc}: {cause}")]
    BadAtom { loc: Loc, cause: AtomError },
    #[error("{loc}: line is {len} bytes; at most {MAX_LINE} (one atom and a comment)")]
    LineTooLong { loc: Loc, len: usize },
    #[error("{loc}: `-{atom}` removes nothing: no ancestor's set has {what}")]
    RemoveUnknown {
        loc: Loc,
        atom: String,
        what: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    Duplicate {
        atom: String,
        first: Loc,
        again: Loc,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Duplicate { atom, first, again } => {
                write!(
                    f,
                    "{again}: duplicate atom `{atom}` (already at {first}); the first one is kept"
                )
            }
        }
    }
}

/// An atom of a merged set and the line that put it there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub atom: Atom,
    pub loc: Loc,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    pub entries: Vec<Entry>,
    pub warnings: Vec<Warning>,
}

impl Merged {
    pub fn atoms(&self) -> impl Iterator<Item = &Atom> {
        self.entries.iter().map(|e| &e.atom)
    }
}

/// Parse one set file. `file` is the name used in messages (a path relative to the project).
pub fn parse_set_file(file: &str, text: &str) -> Result<Vec<Line>, SetError> {
    let opts = ParseOptions::default();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let loc = Loc {
            file: file.to_owned(),
            line: i + 1,
        };
        let content = strip_comment(raw).trim();
        // An atom's own limits name the part that is too long: they go first.
        let parsed = if content.is_empty() {
            None
        } else {
            let (remove, atom_text) = match content.strip_prefix('-') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, content),
            };
            let atom = Atom::parse(atom_text, opts).map_err(|source| SetError::BadAtom {
                loc: loc.clone(),
                cause: source,
            })?;
            Some((remove, atom))
        };
        if raw.len() > MAX_LINE {
            return Err(SetError::LineTooLong {
                loc,
                len: raw.len(),
            });
        }
        let Some((remove, atom)) = parsed else {
            continue;
        };
        let kind = if remove {
            LineKind::Remove(atom)
        } else {
            LineKind::Add(atom)
        };
        out.push(Line { loc, kind });
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// Merge the parsed files of one set along an inheritance chain, root ancestor first.
pub fn merge(layers: &[Vec<Line>]) -> Result<Merged, SetError> {
    let mut merged = Merged::default();
    // Normalized atom -> where it was first added, for the atoms currently in the set.
    let mut index: HashMap<String, Loc> = HashMap::new();
    for layer in layers {
        // Removals only see what the ancestors provided, not earlier lines of this layer.
        let mut keep = vec![true; merged.entries.len()];
        let mut added: Vec<Entry> = Vec::new();
        for line in layer {
            match &line.kind {
                LineKind::Add(atom) => {
                    let text = atom.to_string();
                    match index.get(&text) {
                        Some(first) => merged.warnings.push(Warning::Duplicate {
                            atom: text,
                            first: first.clone(),
                            again: line.loc.clone(),
                        }),
                        None => {
                            index.insert(text, line.loc.clone());
                            added.push(Entry {
                                atom: atom.clone(),
                                loc: line.loc.clone(),
                            });
                        }
                    }
                }
                LineKind::Remove(atom) => {
                    let text = atom.to_string();
                    let mut hit = false;
                    for (e, keep) in merged.entries.iter().zip(keep.iter_mut()) {
                        let matches = if atom.is_bare() {
                            e.atom.key() == atom.key()
                        } else {
                            e.atom.to_string() == text
                        };
                        if matches {
                            if *keep {
                                index.remove(&e.atom.to_string());
                                *keep = false;
                            }
                            hit = true;
                        }
                    }
                    if !hit {
                        let what = if atom.is_bare() {
                            format!("an atom of package `{}`", atom.key())
                        } else {
                            format!("the atom `{text}`")
                        };
                        return Err(SetError::RemoveUnknown {
                            loc: line.loc.clone(),
                            atom: text,
                            what,
                        });
                    }
                }
            }
        }
        let mut keep = keep.into_iter();
        merged.entries.retain(|_| keep.next().unwrap_or(true));
        merged.entries.extend(added);
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(file: &str, text: &str) -> Vec<Line> {
        parse_set_file(file, text).unwrap()
    }

    fn render(m: &Merged) -> String {
        m.entries
            .iter()
            .map(|e| format!("{} {}\n", e.atom, e.loc))
            .collect()
    }

    #[test]
    fn comments_blanks_and_order() {
        let l = layer(
            "a",
            "# head\n\nsys-apps/systemd # inline\n  app-shells/bash  \n\t# indented comment\n",
        );
        let m = merge(&[l]).unwrap();
        assert_eq!(render(&m), "sys-apps/systemd a:3\napp-shells/bash a:4\n");
    }

    #[test]
    fn ancestors_first_then_own_lines_with_removal() {
        let base = layer(
            "base",
            "sys-apps/systemd\nsys-fs/btrfs-progs\n>=app-containers/podman-4\n",
        );
        let child = layer("child", "-sys-fs/btrfs-progs\nnet-misc/openssh\n");
        let m = merge(&[base, child]).unwrap();
        assert_eq!(
            render(&m),
            "sys-apps/systemd base:1\n>=app-containers/podman-4 base:3\nnet-misc/openssh child:2\n"
        );
    }

    #[test]
    fn bare_removal_removes_every_atom_of_the_package() {
        let base = layer(
            "base",
            ">=dev-lang/python-3.11:3.11\ndev-lang/python:3.12\nsys-apps/systemd\n",
        );
        let m = merge(&[base, layer("c", "-dev-lang/python\n")]).unwrap();
        assert_eq!(render(&m), "sys-apps/systemd base:3\n");
    }

    #[test]
    fn exact_removal_needs_the_same_atom() {
        let base = layer("base", ">=dev-lang/python-3.11\n");
        let e = merge(&[base.clone(), layer("c", "-dev-lang/python:3.12\n")]).unwrap_err();
        assert_eq!(e.to_string(), "c:1: `-dev-lang/python:3.12` removes nothing: no ancestor's set has the atom `dev-lang/python:3.12`");
        let m = merge(&[base, layer("c", "->=dev-lang/python-3.11\n")]).unwrap();
        assert!(m.entries.is_empty());
    }

    #[test]
    fn removing_what_no_ancestor_has_is_an_error() {
        let e = merge(&[
            layer("base", "sys-apps/systemd\n"),
            layer("v/install.packages", "\n-sys-apps/nope\n"),
        ])
        .unwrap_err();
        assert_eq!(e.to_string(), "v/install.packages:2: `-sys-apps/nope` removes nothing: no ancestor's set has an atom of package `sys-apps/nope`");
        // A removal does not see its own layer's additions.
        let e = merge(&[layer("x", "sys-apps/a\n-sys-apps/a\n")]).unwrap_err();
        assert!(matches!(e, SetError::RemoveUnknown { .. }));
    }

    #[test]
    fn duplicates_are_warnings_and_the_first_is_kept() {
        let m = merge(&[
            layer("base", "sys-apps/a\n"),
            layer("child", "sys-apps/b\nsys-apps/a\nsys-apps/b\n"),
        ])
        .unwrap();
        assert_eq!(render(&m), "sys-apps/a base:1\nsys-apps/b child:1\n");
        let w: Vec<String> = m.warnings.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            w,
            [
                "child:2: duplicate atom `sys-apps/a` (already at base:1); the first one is kept",
                "child:3: duplicate atom `sys-apps/b` (already at child:1); the first one is kept",
            ]
        );
    }

    #[test]
    fn long_atoms_and_lines_name_file_line_and_limit() {
        let text = format!("sys-apps/a\napp-misc/{}\n", "a".repeat(70_000));
        let e = parse_set_file("variants/x/install.packages", &text).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("variants/x/install.packages:2: invalid atom `app-misc/aaa")
                && msg.ends_with(
                    "` (70009 bytes): package name is 70000 bytes; at most 255 (NAME_MAX: a package is a directory of its category)"
                ),
            "{msg}"
        );
        assert!(msg.len() < 300, "{msg}");
        // A removal too.
        let text = format!("-{}/b\n", "c".repeat(300));
        let e = parse_set_file("f", &text).unwrap_err();
        assert!(e.to_string().starts_with("f:1: invalid atom `"), "{e}");
        assert!(e.to_string().ends_with("category is 300 bytes; at most 255 (NAME_MAX: a category is a directory of the repository)"), "{e}");
        // A valid atom with a comment that makes the line too long; a comment line too.
        let comment = "#".repeat(MAX_LINE);
        let e = parse_set_file("f", &format!("sys-apps/a\nsys-apps/b {comment}\n")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "f:2: line is 8203 bytes; at most 8192 (one atom and a comment)"
        );
        let e = parse_set_file("f", &format!("{comment}#\n")).unwrap_err();
        assert!(matches!(e, SetError::LineTooLong { len: 8193, .. }), "{e}");
        assert_eq!(parse_set_file("f", &format!("{comment}\n")).unwrap(), []);
    }

    #[test]
    fn bad_atom_names_file_and_line() {
        let e =
            parse_set_file("variants/x/build.packages", "sys-apps/a\n\nnot-an-atom\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("variants/x/build.packages:3: invalid atom `not-an-atom`"),
            "{e}"
        );
    }
}
