//! What a build made, kept beside its image, and how two builds compare.
//!
//! Each successful build writes a [`Record`] (`record.json`): the variant, the fingerprint
//! of its inputs, every installed package with its version, installed size and files, and
//! the image's size. [`diff`] compares two builds (records with their manifests, or
//! manifests alone); [`summary`] is what `keel build` prints at the end; [`size`] is where
//! the bytes go. Pure: the caller reads and writes the files.

pub mod diff;
pub mod manifest;
pub mod size;
pub mod summary;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The record's format; a record of another version is refused, not misread.
pub const VERSION: u32 = 1;

/// One build's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub version: u32,
    pub variant: String,
    /// `gentoo` or `debian`: where the package list comes from (the vdb, dpkg's status).
    pub distribution: String,
    /// The fingerprint of every input of the build (the image stage's stamp).
    pub fingerprint: String,
    pub image: Image,
    /// The manifest's file name, beside the record.
    pub manifest: String,
    pub packages: Vec<Package>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The image's file name, beside the record.
    pub file: String,
    /// The image file's size.
    pub bytes: u64,
    pub sha256: String,
    /// Paths in the image (the manifest's lines).
    pub paths: u64,
    /// The sum of the sizes of its regular files.
    pub content_bytes: u64,
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// `cat/pkg` (Gentoo) or the Debian package name.
    pub name: String,
    pub version: String,
    /// Installed size in bytes, as the package database says (Gentoo's `SIZE`; dpkg's
    /// `Installed-Size`, which is in KiB).
    pub size: u64,
    /// The files (not directories) it installed, as absolute paths.
    pub files: Vec<String>,
}

impl Record {
    /// A record read back from JSON; `what` names the file in the error.
    pub fn parse(text: &str, what: &str) -> Result<Record, String> {
        let r: Record = serde_json::from_str(text)
            .map_err(|e| format!("{what}: not a Keel build record: {e}"))?;
        if r.version != VERSION {
            return Err(format!(
                "{what}: a build record of format {}, this Keel reads format {VERSION}",
                r.version
            ));
        }
        Ok(r)
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// A manifest: path (escaped, as in the text) to its line.
pub type Manifest = BTreeMap<String, manifest::Line>;

/// Parse a manifest; an error names the line (`what:N`) and what is wrong with it.
pub fn parse_manifest(text: &str, what: &str) -> Result<Manifest, String> {
    let mut m = Manifest::new();
    for (i, line) in text.lines().enumerate() {
        let l = manifest::Line::parse(line)
            .map_err(|reason| format!("{what}:{}: not a manifest line: {reason}", i + 1))?;
        m.insert(l.path.clone(), l);
    }
    Ok(m)
}

/// `12.3 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `+12.0 KiB` / `-5 B`.
pub fn signed(delta: i64) -> String {
    let sign = if delta < 0 { '-' } else { '+' };
    format!("{sign}{}", human(delta.unsigned_abs()))
}

/// A record for tests: variant `v`, an image of `bytes` holding `content_bytes`.
#[cfg(test)]
pub(crate) fn test_record(packages: Vec<Package>, bytes: u64, content_bytes: u64) -> Record {
    Record {
        version: VERSION,
        variant: "v".into(),
        distribution: "gentoo".into(),
        fingerprint: "f".into(),
        image: Image {
            file: "v.squashfs".into(),
            bytes,
            sha256: "s".into(),
            paths: 2,
            content_bytes,
        },
        manifest: "manifest.txt".into(),
        packages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_bad_lines_are_named() {
        let m = parse_manifest(
            &format!(
                "/\td\t0755\t0:0\t-\t-\t-\n/a\tf\t0644\t0:0\t12\t{}\tsystem_u:object_r:etc_t:s0\n",
                "ab".repeat(32)
            ),
            "m.txt",
        )
        .unwrap();
        assert_eq!(m["/a"].size(), 12);
        assert_eq!(m["/"].size(), 0);
        let e = parse_manifest("/\td\n", "m.txt").unwrap_err();
        assert!(e.starts_with("m.txt:1: not a manifest line"), "{e}");
    }

    #[test]
    fn records_round_trip_and_other_formats_are_refused() {
        let r = test_record(vec![], 1, 3);
        assert_eq!(Record::parse(&r.to_json(), "r").unwrap(), r);
        let other = r.to_json().replace("\"version\": 1", "\"version\": 9");
        assert!(Record::parse(&other, "r.json")
            .unwrap_err()
            .contains("format 9"));
        assert!(Record::parse("{}", "r.json")
            .unwrap_err()
            .starts_with("r.json: not a Keel build record"));
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(signed(-5), "-5 B");
    }
}
