//! The mapping (`metadata/keel-standins.toml` in the stand-in tree): which Debian packages
//! each Gentoo atom stands for. Pure: text in, [`Mapping`] or an error naming the file, the
//! line and the key out.

use serde::Deserialize;
use std::collections::BTreeMap;

/// Where the mapping lives, relative to the repository it describes.
pub const PATH: &str = "metadata/keel-standins.toml";

/// The tree's own masks, relative to the repository: a hand-written ebuild beside a
/// generated one must be masked here by its exact version.
pub const MASKS: &str = "profiles/package.mask";

/// The versions a `package.mask` text masks exactly (`=category/package-version` lines,
/// without a `*` or a repository), as `category/package-version`.
pub fn exact_masks(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.strip_prefix('='))
        .filter(|a| !a.contains(['*', ':', ' ']))
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{line}: {message}")]
pub struct Error {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// One atom of the mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    /// `category/package`.
    pub key: String,
    /// The Debian packages whose files it installs (or, with `source`, which it replaces).
    pub debian: Vec<String>,
    /// Its ebuild is written by hand (built from source, or a stand-in of its own); the
    /// Debian packages are named so that what depends on them resolves to this atom.
    pub source: bool,
    pub description: String,
    pub license: String,
    /// The version; by default the upstream part of the first Debian package's version.
    pub version: Option<String>,
    /// The ebuild's SLOT: Gentoo's for the atom (`2.2` for sys-libs/glibc), so the
    /// generated package replaces another ebuild of the atom instead of being installed
    /// beside it. By default `0`.
    pub slot: String,
    /// The line of its table, for errors.
    pub line: usize,
}

/// The whole mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub file: String,
    /// The Debian suite the packages come from (the build host's: `apt` resolves them).
    pub suite: String,
    pub atoms: Vec<Atom>,
    /// Debian packages no atom installs, each with the reason: a dependency on one is dropped.
    pub ignore: BTreeMap<String, String>,
}

impl Mapping {
    /// The atom that installs (or replaces) Debian package `name`.
    pub fn owner(&self, name: &str) -> Option<&Atom> {
        self.atoms
            .iter()
            .find(|a| a.debian.iter().any(|d| d == name))
    }

    /// The atoms whose ebuilds are generated.
    pub fn generated(&self) -> impl Iterator<Item = &Atom> {
        self.atoms.iter().filter(|a| !a.source)
    }

    /// The same mapping with every atom generated, `source = true` ones too (`keel
    /// standins --all`): each needs its `description` and `license`.
    pub fn all_generated(mut self) -> Result<Mapping, Error> {
        for a in &mut self.atoms {
            if a.source && (a.description.is_empty() || a.license.is_empty()) {
                return Err(Error {
                    file: self.file.clone(),
                    line: a.line,
                    message: format!(
                        "[atom.\"{}\"]: generating it (--all) needs `description` and `license`",
                        a.key
                    ),
                });
            }
            a.source = false;
        }
        Ok(self)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    suite: String,
    #[serde(default)]
    ignore: BTreeMap<String, toml::Spanned<String>>,
    #[serde(default)]
    atom: BTreeMap<String, toml::Spanned<RawAtom>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAtom {
    debian: Vec<String>,
    #[serde(default)]
    source: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    slot: Option<String>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A Debian package name (Debian Policy 5.6.1): lower case letters, digits, `+ - .`, at
/// least two characters, starting with a letter or digit.
pub fn valid_debian_name(s: &str) -> bool {
    s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Parse the mapping `text` of `file`.
pub fn parse(file: &str, text: &str) -> Result<Mapping, Error> {
    let err = |line: usize, message: String| Error {
        file: file.to_owned(),
        line,
        message,
    };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        err(line, e.message().to_owned())
    })?;
    let mut atoms = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (key, spanned) in raw.atom {
        let line = line_of(text, spanned.span().start);
        let r = spanned.into_inner();
        let parsed = pkgsets::atom::Atom::parse(&key, Default::default())
            .map_err(|e| err(line, format!("[atom.\"{key}\"]: {e}")))?;
        if parsed.key() != key {
            return Err(err(
                line,
                format!("[atom.\"{key}\"]: name a package as `category/package`, without version or operator"),
            ));
        }
        if r.debian.is_empty() {
            return Err(err(
                line,
                format!("[atom.\"{key}\"]: `debian` names no package"),
            ));
        }
        for d in &r.debian {
            if !valid_debian_name(d) {
                return Err(err(
                    line,
                    format!("[atom.\"{key}\"]: `{d}` is not a Debian package name"),
                ));
            }
            if let Some(other) = seen.insert(d.clone(), key.clone()) {
                return Err(err(
                    line,
                    format!("[atom.\"{key}\"]: Debian package `{d}` is already `{other}`'s"),
                ));
            }
            if raw.ignore.contains_key(d) {
                return Err(err(
                    line,
                    format!("[atom.\"{key}\"]: `{d}` is also under [ignore]"),
                ));
            }
        }
        if let Some(v) = &r.version {
            pkgsets::atom::Version::parse(v)
                .map_err(|e| err(line, format!("[atom.\"{key}\"]: version `{v}`: {e}")))?;
        }
        let slot = r.slot.unwrap_or_else(|| "0".to_owned());
        // PMS 3.1.3: a slot name is [A-Za-z0-9_][A-Za-z0-9+_.-]*
        if !slot.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            || !slot
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
        {
            return Err(err(
                line,
                format!("[atom.\"{key}\"]: slot `{slot}` is not a slot name"),
            ));
        }
        if !r.source && (r.description.is_none() || r.license.is_none()) {
            return Err(err(
                line,
                format!("[atom.\"{key}\"]: a generated stand-in needs `description` and `license`"),
            ));
        }
        atoms.push(Atom {
            key,
            debian: r.debian,
            source: r.source,
            description: r.description.unwrap_or_default(),
            license: r.license.unwrap_or_default(),
            version: r.version,
            slot,
            line,
        });
    }
    for (d, why) in &raw.ignore {
        if !valid_debian_name(d) || why.get_ref().trim().is_empty() {
            return Err(err(
                line_of(text, why.span().start),
                format!(
                    "[ignore]: `{d}` must be a Debian package name with the reason it is ignored"
                ),
            ));
        }
    }
    Ok(Mapping {
        file: file.to_owned(),
        suite: raw.suite,
        atoms,
        ignore: raw
            .ignore
            .into_iter()
            .map(|(d, why)| (d, why.into_inner()))
            .collect(),
    })
}
