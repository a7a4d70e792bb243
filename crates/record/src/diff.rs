//! What changed between two builds.
//!
//! With both builds' records, packages are compared first (added, removed, another
//! version), and the files of those packages are counted under the package instead of
//! listed one by one; the package databases (`/var/db/pkg`, `/var/lib/dpkg`) are what the
//! package lines already say, so their files are not listed either. Every other path is
//! compared field by field: type, mode, owner, content (size and SHA-256, a link's target,
//! a device's numbers) and SELinux label. Sizes are compared last, largest change first.

use crate::manifest::{Content, Line};
use crate::{human, signed, Manifest, Package, Record};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Where the package databases keep their files.
pub const PACKAGE_DATABASES: &[&str] = &["/var/db/pkg/", "/var/lib/dpkg/"];

/// One side of a comparison.
pub struct Side<'a> {
    pub manifest: &'a Manifest,
    pub record: Option<&'a Record>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum PackageChange {
    Added {
        name: String,
        version: String,
        size: u64,
        files: usize,
    },
    Removed {
        name: String,
        version: String,
        size: u64,
        files: usize,
    },
    Changed {
        name: String,
        from: String,
        to: String,
        size_delta: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// For a changed path: what differs (`type`, `mode`, `owner`, `content`, `target`,
    /// `device`, `label`); for an added or removed one, its type.
    pub what: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SizeChange {
    /// A package (`cat/pkg`) or a path.
    pub what: String,
    pub delta: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Diff {
    pub packages: Vec<PackageChange>,
    pub files: Vec<FileChange>,
    /// The image files' sizes, when both records say.
    pub image_bytes: Option<(u64, u64)>,
    /// Size changes, largest first.
    pub sizes: Vec<SizeChange>,
}

impl Diff {
    /// Nothing differs (the image files may still differ in size only if the builds are
    /// not reproducible: that is a difference too).
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
            && self.files.is_empty()
            && self.image_bytes.is_none_or(|(a, b)| a == b)
    }
}

fn kind_name(kind: char) -> &'static str {
    match kind {
        'f' => "file",
        'd' => "directory",
        'l' => "symlink",
        'c' => "character device",
        'b' => "block device",
        'p' => "fifo",
        's' => "socket",
        _ => "unknown",
    }
}

/// What differs between two lines of one path.
fn aspects(a: &Line, b: &Line) -> Vec<&'static str> {
    let mut what = Vec::new();
    if a.kind != b.kind {
        what.push("type");
    }
    if a.mode != b.mode {
        what.push("mode");
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        what.push("owner");
    }
    if a.kind == b.kind && a.content != b.content {
        what.push(match a.content {
            Content::Link { .. } => "target",
            Content::Device { .. } => "device",
            _ => "content",
        });
    }
    if a.label != b.label {
        what.push("label");
    }
    what
}

/// Packages by name, each with its versions (slotted packages have several).
fn by_name(r: &Record) -> BTreeMap<&str, Vec<&Package>> {
    let mut m: BTreeMap<&str, Vec<&Package>> = BTreeMap::new();
    for p in &r.packages {
        m.entry(p.name.as_str()).or_default().push(p);
    }
    m
}

/// Compare build `a` with build `b`.
pub fn diff(a: &Side, b: &Side) -> Diff {
    let mut d = Diff::default();
    // Paths the package lines account for.
    let mut counted: BTreeSet<&str> = BTreeSet::new();
    let records = a.record.zip(b.record);
    if let Some((ra, rb)) = records {
        let (pa, pb) = (by_name(ra), by_name(rb));
        let names: BTreeSet<&str> = pa.keys().chain(pb.keys()).copied().collect();
        for name in names {
            let va = pa.get(name).cloned().unwrap_or_default();
            let vb = pb.get(name).cloned().unwrap_or_default();
            if let ([x], [y]) = (va.as_slice(), vb.as_slice()) {
                if x.version != y.version || x.files != y.files {
                    counted.extend(x.files.iter().chain(&y.files).map(String::as_str));
                }
                if x.version != y.version {
                    d.packages.push(PackageChange::Changed {
                        name: name.to_owned(),
                        from: x.version.clone(),
                        to: y.version.clone(),
                        size_delta: y.size as i64 - x.size as i64,
                    });
                }
                continue;
            }
            for x in va
                .iter()
                .filter(|x| !vb.iter().any(|y| y.version == x.version))
            {
                counted.extend(x.files.iter().map(String::as_str));
                d.packages.push(PackageChange::Removed {
                    name: name.to_owned(),
                    version: x.version.clone(),
                    size: x.size,
                    files: x.files.len(),
                });
            }
            for y in vb
                .iter()
                .filter(|y| !va.iter().any(|x| x.version == y.version))
            {
                counted.extend(y.files.iter().map(String::as_str));
                d.packages.push(PackageChange::Added {
                    name: name.to_owned(),
                    version: y.version.clone(),
                    size: y.size,
                    files: y.files.len(),
                });
            }
        }
        d.image_bytes = Some((ra.image.bytes, rb.image.bytes));
    }
    let skipped = |p: &str| {
        counted.contains(p)
            || (records.is_some() && PACKAGE_DATABASES.iter().any(|db| p.starts_with(db)))
    };
    let paths: BTreeSet<&String> = a.manifest.keys().chain(b.manifest.keys()).collect();
    let mut sizes: Vec<SizeChange> = Vec::new();
    for path in paths {
        if skipped(path) {
            continue;
        }
        let change = match (a.manifest.get(path), b.manifest.get(path)) {
            (Some(x), Some(y)) => {
                let what = aspects(x, y);
                if what.is_empty() {
                    continue;
                }
                let delta = y.size() as i64 - x.size() as i64;
                if delta != 0 {
                    sizes.push(SizeChange {
                        what: path.clone(),
                        delta,
                    });
                }
                FileChange {
                    path: path.clone(),
                    change: "changed",
                    what,
                }
            }
            (None, Some(y)) => {
                if y.size() > 0 {
                    sizes.push(SizeChange {
                        what: path.clone(),
                        delta: y.size() as i64,
                    });
                }
                FileChange {
                    path: path.clone(),
                    change: "added",
                    what: vec![kind_name(y.kind)],
                }
            }
            (Some(x), None) => {
                if x.size() > 0 {
                    sizes.push(SizeChange {
                        what: path.clone(),
                        delta: -(x.size() as i64),
                    });
                }
                FileChange {
                    path: path.clone(),
                    change: "removed",
                    what: vec![kind_name(x.kind)],
                }
            }
            (None, None) => continue,
        };
        d.files.push(change);
    }
    for p in &d.packages {
        let (name, delta) = match p {
            PackageChange::Added { name, size, .. } => (name, *size as i64),
            PackageChange::Removed { name, size, .. } => (name, -(*size as i64)),
            PackageChange::Changed {
                name, size_delta, ..
            } => (name, *size_delta),
        };
        if delta != 0 {
            sizes.push(SizeChange {
                what: name.clone(),
                delta,
            });
        }
    }
    sizes.sort_by(|x, y| {
        y.delta
            .unsigned_abs()
            .cmp(&x.delta.unsigned_abs())
            .then_with(|| x.what.cmp(&y.what))
    });
    d.sizes = sizes;
    d
}

/// The diff, one line per change (nothing at all when nothing differs).
pub fn render(d: &Diff) -> String {
    let mut out = String::new();
    if d.is_empty() {
        return out;
    }
    if !d.packages.is_empty() {
        let _ = writeln!(out, "packages:");
        for p in &d.packages {
            let _ = match p {
                PackageChange::Added {
                    name,
                    version,
                    size,
                    files,
                } => writeln!(
                    out,
                    "  + {name} {version} ({files} files, {})",
                    human(*size)
                ),
                PackageChange::Removed {
                    name,
                    version,
                    size,
                    files,
                } => writeln!(
                    out,
                    "  - {name} {version} ({files} files, {})",
                    human(*size)
                ),
                PackageChange::Changed {
                    name,
                    from,
                    to,
                    size_delta,
                } => writeln!(out, "  ~ {name} {from} -> {to} ({})", signed(*size_delta)),
            };
        }
    }
    if !d.files.is_empty() {
        let _ = writeln!(out, "files:");
        for f in &d.files {
            let mark = match f.change {
                "added" => '+',
                "removed" => '-',
                _ => '~',
            };
            let _ = writeln!(out, "  {mark} {} ({})", f.path, f.what.join(", "));
        }
    }
    if let Some((a, b)) = d.image_bytes.filter(|(a, b)| a != b) {
        let _ = writeln!(
            out,
            "image: {} -> {} ({})",
            human(a),
            human(b),
            signed(b as i64 - a as i64)
        );
    }
    if !d.sizes.is_empty() {
        let _ = writeln!(out, "size changes, largest first:");
        for s in &d.sizes {
            let _ = writeln!(out, "  {:>12}  {}", signed(s.delta), s.what);
        }
    }
    out
}

/// The diff in one paragraph (what `keel build` ends with).
pub fn paragraph(d: &Diff) -> String {
    if d.is_empty() {
        return "no changes".into();
    }
    let mut parts = Vec::new();
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let listed = |items: Vec<String>| {
        let n = items.len();
        let mut s = items.into_iter().take(3).collect::<Vec<_>>().join(", ");
        if n > 3 {
            s += &format!(" and {} more", n - 3);
        }
        s
    };
    for (kind, label) in [
        ("added", "added"),
        ("removed", "removed"),
        ("changed", "changed"),
    ] {
        let items: Vec<String> = d
            .packages
            .iter()
            .filter_map(|p| match (p, kind) {
                (PackageChange::Added { name, version, .. }, "added")
                | (PackageChange::Removed { name, version, .. }, "removed") => {
                    Some(format!("{name} {version}"))
                }
                (PackageChange::Changed { name, from, to, .. }, "changed") => {
                    Some(format!("{name} {from} -> {to}"))
                }
                _ => None,
            })
            .collect();
        if !items.is_empty() {
            parts.push(format!(
                "{} {label} ({})",
                count(items.len(), "package"),
                listed(items)
            ));
        }
    }
    for kind in ["added", "removed", "changed"] {
        let items: Vec<String> = d
            .files
            .iter()
            .filter(|f| f.change == kind)
            .map(|f| f.path.clone())
            .collect();
        if !items.is_empty() {
            parts.push(format!(
                "{} {kind} ({})",
                count(items.len(), "file"),
                listed(items)
            ));
        }
    }
    if let Some((a, b)) = d.image_bytes.filter(|(a, b)| a != b) {
        parts.push(format!("image {}", signed(b as i64 - a as i64)));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_manifest;

    fn record(packages: Vec<Package>, bytes: u64) -> Record {
        crate::test_record(packages, bytes, 0)
    }

    fn side<'a>(manifest: &'a Manifest, record: Option<&'a Record>) -> Side<'a> {
        Side { manifest, record }
    }

    fn pkg(name: &str, version: &str, size: u64, files: &[&str]) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            size,
            files: files.iter().map(|f| f.to_string()).collect(),
        }
    }

    const A: &str = "\
/etc/motd\tf\t0644\t0:0\t5\taaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\tetc_t
/usr/bin/old\tf\t0755\t0:0\t100\tbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\tbin_t
/usr/lib/libx.so\tl\t0777\t0:0\t-> libx.so.1\t-\tlib_t
/var/db/pkg/a/old-1/COUNTER\tf\t0644\t0:0\t2\tc1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1\tvar_t
";
    const B: &str = "\
/etc/motd\tf\t0644\t0:0\t9\tcccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\tetc_t
/usr/bin/new\tf\t0755\t0:0\t300\tdddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd\tbin_t
/usr/lib/libx.so\tl\t0777\t0:0\t-> libx.so.2\t-\tlib_t
/var/db/pkg/a/new-2/COUNTER\tf\t0644\t0:0\t2\tc2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2\tvar_t
";

    #[test]
    fn packages_account_for_their_files_and_the_database() {
        let (ma, mb) = (
            parse_manifest(A, "a").unwrap(),
            parse_manifest(B, "b").unwrap(),
        );
        let ra = record(vec![pkg("a/old", "1", 100, &["/usr/bin/old"])], 1000);
        let rb = record(vec![pkg("a/new", "2", 300, &["/usr/bin/new"])], 1200);
        let d = diff(&side(&ma, Some(&ra)), &side(&mb, Some(&rb)));
        assert_eq!(
            render(&d),
            "packages:
  + a/new 2 (1 files, 300 B)
  - a/old 1 (1 files, 100 B)
files:
  ~ /etc/motd (content)
  ~ /usr/lib/libx.so (target)
image: 1000 B -> 1.2 KiB (+200 B)
size changes, largest first:
        +300 B  a/new
        -100 B  a/old
          +4 B  /etc/motd
"
        );
        assert_eq!(
            paragraph(&d),
            "1 package added (a/new 2); 1 package removed (a/old 1); 2 files changed (/etc/motd, /usr/lib/libx.so); image +200 B"
        );
    }

    #[test]
    fn manifests_alone_list_every_path_and_equal_builds_show_nothing() {
        let (ma, mb) = (
            parse_manifest(A, "a").unwrap(),
            parse_manifest(B, "b").unwrap(),
        );
        let d = diff(&side(&ma, None), &side(&mb, None));
        assert_eq!(d.files.len(), 6);
        assert!(d.image_bytes.is_none());
        let same = diff(&side(&ma, None), &side(&ma, None));
        assert!(same.is_empty());
        assert_eq!(render(&same), "");
        assert_eq!(paragraph(&same), "no changes");
        let mut relabelled = ma.clone();
        relabelled.get_mut("/etc/motd").unwrap().label = Some("shadow_t".into());
        relabelled.get_mut("/etc/motd").unwrap().mode = 0o600;
        let d = diff(&side(&ma, None), &side(&relabelled, None));
        assert_eq!(d.files[0].what, vec!["mode", "label"]);
        assert!(d.sizes.is_empty());
    }

    #[test]
    fn a_new_version_is_a_change() {
        let m = parse_manifest(A, "a").unwrap();
        let ra = record(vec![pkg("a/old", "1", 100, &["/usr/bin/old"])], 1000);
        let rb = record(vec![pkg("a/old", "1.1", 150, &["/usr/bin/old"])], 1000);
        let d = diff(&side(&m, Some(&ra)), &side(&m, Some(&rb)));
        assert_eq!(
            d.packages,
            vec![PackageChange::Changed {
                name: "a/old".into(),
                from: "1".into(),
                to: "1.1".into(),
                size_delta: 50
            }]
        );
    }
}
