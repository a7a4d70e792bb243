//! What Portage's resolution for a root depends on in the repository: the read set.
//!
//! After a sysroot or destroot run, the packages in the root's database (the resolved
//! graph) give the repository paths that run read; the next build fingerprints only those
//! instead of the whole repository (a Gentoo tree has ~180,000 files, and a daily sync
//! changes thousands the variant never reads). A change to one of them reruns the stage,
//! and Portage decides what that means. The rule (docs/pipeline.md):
//!
//! - every package the graph touches: the set atoms, each installed package, and every
//!   package named in an installed package's dependencies (any-of alternatives and
//!   USE-conditional ones included): its directory's listing (a new or removed version),
//!   every ebuild in it, its `Manifest`, its `metadata/md5-cache` entries; for the
//!   installed versions' packages, `files/` too;
//! - the eclasses those ebuilds inherit, transitively (the `inherit` lines of the ebuilds
//!   and eclasses, and the database's `INHERITED`);
//! - the profile chain (each profile directory's files, following `parent`), every file
//!   directly under `profiles/` (`package.mask`, `use.desc`, `categories`, ...),
//!   `profiles/updates/`, and `metadata/layout.conf`.
//!
//! Its one known limit: an `inherit` spelled through a variable (`inherit ${X}`) in an
//! ebuild whose package is not installed is not followed (an installed one's `INHERITED`
//! has it).

use crate::Error;
use pkgsets::{Atom, ParseOptions};
use stage::{Fingerprint, StatCache};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The dependency variables of a package's database entry.
const DEPEND_FILES: &[&str] = &["DEPEND", "RDEPEND", "BDEPEND", "PDEPEND", "IDEPEND"];

/// Files read from the repository or a root: at most this many bytes each.
const MAX_READ: u64 = 16 << 20;

/// Repository paths (relative) a resolution depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// By content (absent is a state too).
    pub files: BTreeSet<String>,
    /// By listing: the names and kinds of the entries.
    pub dirs: BTreeSet<String>,
}

impl Reads {
    /// The record written beside the stage's stamp: `f path` and `d path` lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.dirs {
            out.push_str(&format!("d {d}\n"));
        }
        for f in &self.files {
            out.push_str(&format!("f {f}\n"));
        }
        out
    }

    /// A record; `None` when it is not one (missing, or made by another Keel).
    pub fn parse(text: &str) -> Option<Reads> {
        let mut r = Reads::default();
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("d", p)) => r.dirs.insert(p.to_owned()),
                Some(("f", p)) => r.files.insert(p.to_owned()),
                _ => return None,
            };
        }
        (!r.files.is_empty()).then_some(r)
    }

    /// Add the read set's current state in `repo` to `fp`: each file by content (through
    /// `cache`), each directory by its listing.
    pub fn fingerprint(
        &self,
        repo: &Path,
        fp: &mut Fingerprint,
        cache: &mut StatCache,
    ) -> Result<(), stage::fingerprint::Error> {
        fp.str("repo-reads", &self.render());
        for d in &self.dirs {
            fp.str(&format!("repo:{d}/"), &listing(&repo.join(d)));
        }
        for f in &self.files {
            fp.file_cached(&format!("repo:{f}"), &repo.join(f), cache)?;
        }
        Ok(())
    }
}

/// A directory's entries, sorted, with a kind letter each (`(absent)` when it is not a
/// directory).
fn listing(dir: &Path) -> String {
    let Ok(rd) = fs::read_dir(dir) else {
        return "(absent)".into();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| {
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => 'd',
                Ok(t) if t.is_symlink() => 'l',
                _ => 'f',
            };
            format!("{kind} {}", e.file_name().to_string_lossy())
        })
        .collect();
    names.sort();
    names.join("\n")
}

/// A regular file's text beneath `tree` (never through a link out of it, never a FIFO),
/// at most [`MAX_READ`] bytes; `None` when there is none.
fn read_text(tree: &rootdir::Root, rel: &Path) -> Option<String> {
    tree.read(rel, MAX_READ, "a file Portage reads")
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The packages (`cat/pkg`) named in a dependency string: every atom, whatever the
/// operators, blockers, USE conditions and any-of groups around it.
pub fn packages_in_depend(text: &str) -> BTreeSet<String> {
    let opts = ParseOptions {
        allow_blockers: true,
        allow_repo: true,
    };
    text.split_whitespace()
        .filter(|t| t.contains('/'))
        .filter_map(|t| Atom::parse(t, opts).ok())
        .map(|a| a.key().to_owned())
        .collect()
}

/// The eclasses named by `inherit` lines of an ebuild or eclass.
pub fn inherits_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let l = line.trim_start();
        let Some(rest) = l.strip_prefix("inherit ") else {
            continue;
        };
        for w in rest.split_whitespace() {
            if w.starts_with('#') {
                break;
            }
            if w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            {
                out.insert(w.to_owned());
            }
        }
    }
    out
}

/// The read set of a resolution into the roots `roots` (their package databases), with
/// the set atoms `atoms` and the profile `profile` (relative to `profiles/`).
pub fn of(
    repo: &Path,
    profile: &str,
    roots: &[&Path],
    atoms: impl IntoIterator<Item = String>,
) -> Result<Reads, Error> {
    let tree = rootdir::Root::open(repo)?;
    let mut r = Reads::default();
    r.files.insert("metadata/layout.conf".into());
    r.files.insert("profiles/repo_name".into());
    r.dirs.insert("profiles".into());
    files_in(repo, "profiles", &mut r)?;
    r.dirs.insert("profiles/updates".into());
    files_in(repo, "profiles/updates", &mut r)?;
    profile_chain(&tree, &format!("profiles/{profile}"), &mut r, 0)?;

    let mut packages: BTreeSet<String> = atoms.into_iter().collect();
    let mut installed: BTreeSet<String> = BTreeSet::new();
    let mut eclasses: BTreeSet<String> = BTreeSet::new();
    for root in roots {
        let db = rootdir::Root::open(root)?;
        let vdb = root.join("var/db/pkg");
        for cat in names(&vdb) {
            for pf in names(&vdb.join(&cat)) {
                let entry = vdb.join(&cat).join(&pf);
                let rel = Path::new("var/db/pkg").join(&cat).join(&pf);
                // The package's `cat/pkg`: from its ebuild's name in the entry.
                let Some(pkg) = names(&entry)
                    .into_iter()
                    .find_map(|n| n.strip_suffix(".ebuild").map(str::to_owned))
                    .and_then(|p| package_of(&cat, &p))
                else {
                    continue;
                };
                installed.insert(format!("{cat}/{pkg}"));
                for f in DEPEND_FILES {
                    if let Some(text) = read_text(&db, &rel.join(f)) {
                        packages.extend(packages_in_depend(&text));
                    }
                }
                if let Some(text) = read_text(&db, &rel.join("INHERITED")) {
                    eclasses.extend(text.split_whitespace().map(str::to_owned));
                }
            }
        }
    }
    packages.extend(installed.iter().cloned());
    let has_cache = repo.join("metadata/md5-cache").is_dir();
    for cp in &packages {
        let dir = cp.clone();
        r.dirs.insert(dir.clone());
        r.files.insert(format!("{dir}/Manifest"));
        let cat = cp.split('/').next().unwrap_or("");
        for name in names(&repo.join(&dir)) {
            if let Some(pf) = name.strip_suffix(".ebuild") {
                r.files.insert(format!("{dir}/{name}"));
                if let Some(text) = read_text(&tree, &Path::new(&dir).join(&name)) {
                    eclasses.extend(inherits_in(&text));
                }
                if has_cache {
                    r.files.insert(format!("metadata/md5-cache/{cat}/{pf}"));
                }
            }
        }
        if installed.contains(cp) {
            files_under(repo, &format!("{dir}/files"), &mut r)?;
        }
    }
    // Eclasses, transitively.
    let mut todo: Vec<String> = eclasses.into_iter().collect();
    let mut seen = BTreeSet::new();
    while let Some(e) = todo.pop() {
        if !seen.insert(e.clone()) {
            continue;
        }
        let rel = format!("eclass/{e}.eclass");
        if let Some(text) = read_text(&tree, Path::new(&rel)) {
            todo.extend(inherits_in(&text));
        }
        r.files.insert(rel);
    }
    Ok(r)
}

/// `pkg` from `pkg-ver` (a package's `PF`).
fn package_of(cat: &str, pf: &str) -> Option<String> {
    let atom = Atom::parse(&format!("={cat}/{pf}"), ParseOptions::default()).ok()?;
    Some(atom.package().to_owned())
}

/// Sorted names in a directory (none when it is not one).
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The regular files directly in `rel` (a directory of the repository).
fn files_in(repo: &Path, rel: &str, r: &mut Reads) -> Result<(), Error> {
    for name in names(&repo.join(rel)) {
        let p = format!("{rel}/{name}");
        if fs::symlink_metadata(repo.join(&p)).is_ok_and(|m| !m.is_dir()) {
            r.files.insert(p);
        }
    }
    Ok(())
}

/// Every file and directory under `rel`.
fn files_under(repo: &Path, rel: &str, r: &mut Reads) -> Result<(), Error> {
    r.dirs.insert(rel.to_owned());
    for name in names(&repo.join(rel)) {
        let p = format!("{rel}/{name}");
        match fs::symlink_metadata(repo.join(&p)) {
            Ok(m) if m.is_dir() => files_under(repo, &p, r)?,
            Ok(_) => {
                r.files.insert(p);
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// A profile directory's files, then its parents' (the `parent` file, relative paths).
fn profile_chain(
    tree: &rootdir::Root,
    rel: &str,
    r: &mut Reads,
    depth: usize,
) -> Result<(), Error> {
    if depth > 64 || !r.dirs.insert(rel.to_owned()) {
        return Ok(());
    }
    files_in(tree.path(), rel, r)?;
    let Some(text) = read_text(tree, &Path::new(rel).join("parent")) else {
        return Ok(());
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `repo:path` names a profile of another repository: its own repository's rule.
        let parent = match line.split_once(':') {
            Some((_, p)) => format!("profiles/{p}"),
            None => normalize(&format!("{rel}/{line}")),
        };
        profile_chain(tree, &parent, r, depth + 1)?;
    }
    Ok(())
}

/// `a/b/../c` -> `a/c` (a relative path inside the repository).
fn normalize(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depend_strings_name_every_package() {
        let d = "|| ( >=dev-lang/python-3.11:3.11[ssl] dev-lang/python:3.12 ) ssl? ( dev-libs/openssl:0= ) !!sys-apps/other !<app-misc/x-2";
        let p: Vec<String> = packages_in_depend(d).into_iter().collect();
        assert_eq!(
            p,
            [
                "app-misc/x",
                "dev-lang/python",
                "dev-libs/openssl",
                "sys-apps/other"
            ]
        );
    }

    #[test]
    fn inherit_lines() {
        let e = "EAPI=8\ninherit toolchain-funcs flag-o-matic # comment\n  inherit systemd\nDESCRIPTION=\"inherit nothing\"\n";
        let i: Vec<String> = inherits_in(e).into_iter().collect();
        assert_eq!(i, ["flag-o-matic", "systemd", "toolchain-funcs"]);
    }

    #[test]
    fn records_round_trip() {
        let mut r = Reads::default();
        r.files.insert("a/b".into());
        r.dirs.insert("a".into());
        assert_eq!(Reads::parse(&r.render()), Some(r));
        assert_eq!(Reads::parse("x y"), None);
        assert_eq!(Reads::parse(""), None);
    }

    #[test]
    fn profile_parents_are_followed() {
        assert_eq!(
            normalize("profiles/default/linux/../../base"),
            "profiles/base"
        );
    }
}
