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
    /// `cache`), each directory by its listing. Everything is looked at beneath the
    /// repository: a path that leads out of it through a link counts as that, never as
    /// what the link points to.
    pub fn fingerprint(
        &self,
        repo: &Path,
        fp: &mut Fingerprint,
        cache: &mut StatCache,
    ) -> Result<(), Error> {
        let tree = rootdir::Root::open(repo)?;
        fp.str("repo-reads", &self.render());
        for d in &self.dirs {
            fp.str(&format!("repo:{d}/"), &listing(&tree, Path::new(d)));
        }
        for f in &self.files {
            let label = format!("repo:{f}");
            match tree.lstat(Path::new(f)) {
                // Beneath the repository: by content (a link by its target).
                Ok(_) => {
                    fp.file_cached(&label, &repo.join(f), cache)?;
                }
                Err(e) => {
                    fp.str(
                        &label,
                        &format!("(not readable beneath the repository: {e})"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// A directory's entries beneath `tree`, sorted, with a kind letter each (`(absent)` when
/// it is not a directory there).
fn listing(tree: &rootdir::Root, dir: &Path) -> String {
    let Ok(names) = tree.names(dir) else {
        return "(absent)".into();
    };
    names
        .iter()
        .map(|n| {
            let kind = match tree.lstat(&dir.join(n)) {
                Ok(Some(st)) => match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                    rustix::fs::FileType::Directory => 'd',
                    rustix::fs::FileType::Symlink => 'l',
                    _ => 'f',
                },
                _ => '?',
            };
            format!("{kind} {n}")
        })
        .collect::<Vec<_>>()
        .join("\n")
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
    files_in(&tree, "profiles", &mut r);
    r.dirs.insert("profiles/updates".into());
    files_in(&tree, "profiles/updates", &mut r);
    profile_chain(&tree, &format!("profiles/{profile}"), &mut r, 0)?;

    let mut packages: BTreeSet<String> = atoms.into_iter().collect();
    let mut installed: BTreeSet<String> = BTreeSet::new();
    let mut eclasses: BTreeSet<String> = BTreeSet::new();
    for root in roots {
        let db = rootdir::Root::open(root)?;
        let vdb = Path::new("var/db/pkg");
        for cat in names(&db, vdb) {
            for pf in names(&db, &vdb.join(&cat)) {
                let rel = vdb.join(&cat).join(&pf);
                // The package's `cat/pkg`: from its ebuild's name in the entry.
                let Some(pkg) = names(&db, &rel)
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
    for dir in &packages {
        r.dirs.insert(dir.clone());
        r.files.insert(format!("{dir}/Manifest"));
        let cat = dir.split('/').next().unwrap_or("");
        for name in names(&tree, Path::new(dir)) {
            if let Some(pf) = name.strip_suffix(".ebuild") {
                r.files.insert(format!("{dir}/{name}"));
                if let Some(text) = read_text(&tree, &Path::new(dir).join(&name)) {
                    eclasses.extend(inherits_in(&text));
                }
                if has_cache {
                    r.files.insert(format!("metadata/md5-cache/{cat}/{pf}"));
                }
            }
        }
        if installed.contains(dir) {
            files_under(&tree, &format!("{dir}/files"), &mut r);
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

/// Sorted names in the directory `rel` beneath `tree` (none when it is not one there).
fn names(tree: &rootdir::Root, rel: &Path) -> Vec<String> {
    tree.names(rel).unwrap_or_default()
}

fn is_dir(tree: &rootdir::Root, rel: &str) -> bool {
    tree.lstat(Path::new(rel)).ok().flatten().is_some_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
    })
}

/// The entries directly in `rel` that are not directories (a repository directory).
fn files_in(tree: &rootdir::Root, rel: &str, r: &mut Reads) {
    for name in names(tree, Path::new(rel)) {
        let p = format!("{rel}/{name}");
        if !is_dir(tree, &p) {
            r.files.insert(p);
        }
    }
}

/// Every file and directory under `rel`.
fn files_under(tree: &rootdir::Root, rel: &str, r: &mut Reads) {
    r.dirs.insert(rel.to_owned());
    for name in names(tree, Path::new(rel)) {
        let p = format!("{rel}/{name}");
        if is_dir(tree, &p) {
            files_under(tree, &p, r);
        } else {
            r.files.insert(p);
        }
    }
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
    files_in(tree, rel, r);
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
    use std::fs;

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
    fn a_link_out_of_the_repository_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        let outside = d.path().join("outside");
        fs::create_dir_all(repo.join("sys-apps")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("x-1.ebuild"), "SECRET").unwrap();
        std::os::unix::fs::symlink(&outside, repo.join("sys-apps/x")).unwrap();
        let r = of(&repo, "none", &[], ["sys-apps/x".to_owned()]).unwrap();
        assert!(!r.render().contains("x-1.ebuild"), "{}", r.render());
        let mut reads = r.clone();
        reads.files.insert("sys-apps/x/x-1.ebuild".into());
        let fp = |reads: &Reads| {
            let mut cache = StatCache::default();
            let mut fp = Fingerprint::new();
            reads.fingerprint(&repo, &mut fp, &mut cache).unwrap();
            fp.hex()
        };
        let before = fp(&reads);
        fs::write(outside.join("x-1.ebuild"), "CHANGED").unwrap();
        fs::write(outside.join("x-2.ebuild"), "NEW").unwrap();
        assert_eq!(
            fp(&reads),
            before,
            "what lies outside the repository counted"
        );
    }

    #[test]
    fn profile_parents_are_followed() {
        assert_eq!(
            normalize("profiles/default/linux/../../base"),
            "profiles/base"
        );
    }
}
