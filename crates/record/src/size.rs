//! Where the bytes go: each package's installed size, largest first, with its share of
//! the image's content.

use crate::{human, Manifest, Record};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub name: String,
    pub version: String,
    pub size: u64,
    /// Per cent of the image's content (the sum of its regular files' sizes).
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub variant: String,
    /// Largest first.
    pub packages: Vec<Row>,
    /// The regular files no package installed (the overlay, the policy store, what the
    /// build made), when the manifest is at hand.
    pub not_from_packages: Option<u64>,
    pub content_bytes: u64,
    pub image_bytes: u64,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

pub fn table(r: &Record, manifest: Option<&Manifest>) -> Table {
    let whole = r.image.content_bytes;
    let mut packages: Vec<Row> = r
        .packages
        .iter()
        .map(|p| Row {
            name: p.name.clone(),
            version: p.version.clone(),
            size: p.size,
            share: share(p.size, whole),
        })
        .collect();
    packages.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let not_from_packages = manifest.map(|m| {
        let owned: BTreeSet<&str> = r
            .packages
            .iter()
            .flat_map(|p| p.files.iter().map(String::as_str))
            .collect();
        m.iter()
            .filter(|(path, _)| !owned.contains(path.as_str()))
            .map(|(_, e)| e.size())
            .sum()
    });
    Table {
        variant: r.variant.clone(),
        packages,
        not_from_packages,
        content_bytes: whole,
        image_bytes: r.image.bytes,
    }
}

pub fn render(t: &Table) -> String {
    let mut out = String::new();
    for p in &t.packages {
        let _ = writeln!(
            out,
            "{:>10}  {:>5.1}%  {} {}",
            human(p.size),
            p.share,
            p.name,
            p.version
        );
    }
    if let Some(rest) = t.not_from_packages {
        let _ = writeln!(
            out,
            "{:>10}  {:>5.1}%  (files no package installed)",
            human(rest),
            share(rest, t.content_bytes)
        );
    }
    let _ = writeln!(
        out,
        "{}: {} packages; {} of files in a {} image",
        t.variant,
        t.packages.len(),
        human(t.content_bytes),
        human(t.image_bytes)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_manifest, Package};

    #[test]
    fn largest_first_with_shares_and_what_no_package_installed() {
        let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let m = parse_manifest(
            &format!(
                "/a\tf\t0644\t0:0\t600\t{sha}\t-\n/b\tf\t0644\t0:0\t300\t{sha}\t-\n/etc/motd\tf\t0644\t0:0\t100\t{sha}\t-\n"
            ),
            "m",
        )
        .unwrap();
        let pkg = |name: &str, size, file: &str| Package {
            name: name.into(),
            version: "1".into(),
            size,
            files: vec![file.into()],
        };
        let r = crate::test_record(
            vec![pkg("a/small", 300, "/b"), pkg("a/big", 600, "/a")],
            700,
            1000,
        );
        insta::assert_snapshot!(render(&table(&r, Some(&m))));
    }
}
