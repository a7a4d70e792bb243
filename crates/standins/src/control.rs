//! Debian's control data as `apt-cache show` prints it (deb-control(5)): stanzas of
//! `Field: value` lines, continuation lines indented. Pure.

use std::collections::BTreeMap;

/// One binary package's stanza: the fields the generator uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stanza {
    pub package: String,
    pub version: String,
    pub architecture: String,
    /// `Pre-Depends` and `Depends`, each a group of alternatives (package names only:
    /// version constraints and architecture qualifiers dropped).
    pub depends: Vec<Vec<String>>,
    /// The virtual packages it provides (names only).
    pub provides: Vec<String>,
    /// Path of the `.deb` below the archive's root (`pool/...`).
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

/// The stanzas of `text`, in order. A stanza without `Package` is skipped.
pub fn parse(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in block.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(k) = &last {
                    let v = fields.entry(k.clone()).or_default();
                    v.push('\n');
                    v.push_str(line.trim());
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':') {
                fields.insert(k.trim().to_owned(), v.trim().to_owned());
                last = Some(k.trim().to_owned());
            }
        }
        let Some(package) = fields.get("Package").cloned() else {
            continue;
        };
        let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
        let mut depends = relations(&get("Pre-Depends"));
        depends.extend(relations(&get("Depends")));
        out.push(Stanza {
            package,
            version: get("Version"),
            architecture: get("Architecture"),
            depends,
            provides: relations(&get("Provides")).into_iter().flatten().collect(),
            filename: get("Filename"),
            size: get("Size").parse().unwrap_or(0),
            sha256: get("SHA256"),
        });
    }
    out
}

/// A relationship field (`a (>= 1), b:any | c [amd64]`): groups of alternative names.
pub fn relations(field: &str) -> Vec<Vec<String>> {
    field
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.trim().split([' ', '(', '[', '<', '\n']).next()?;
                    let name = name.split(':').next()?.trim();
                    (!name.is_empty()).then(|| name.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// The upstream part of a Debian version (`[epoch:]upstream[-revision]`) as a Gentoo
/// version: its leading numeric components (`1:1.35.0-4+b3` is `1.35.0`,
/// `252.38-1~deb12u1` is `252.38`, `20230311+deb12u1` is `20230311`). `None` when it does
/// not start with a digit.
pub fn gentoo_version(debian: &str) -> Option<String> {
    let v = debian.split_once(':').map_or(debian, |(_, v)| v);
    let upstream = v.rsplit_once('-').map_or(v, |(u, _)| u);
    let mut out = String::new();
    for part in upstream.split('.') {
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            break;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&digits);
        if digits.len() != part.len() {
            break;
        }
    }
    (!out.is_empty()).then_some(out)
}
