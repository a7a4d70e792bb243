//! Package dependency specifications ("atoms") as the Package Manager Specification defines
//! them for EAPI 8. (Interim minimal parser; replaced by the full grammar.)

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept `!` and `!!` blockers.
    pub allow_blockers: bool,
    /// Accept `::repo`.
    pub allow_repo: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            allow_blockers: false,
            allow_repo: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    text: String,
    key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid atom `{atom}`: {reason}")]
pub struct AtomError {
    pub atom: String,
    pub reason: String,
}

impl Atom {
    pub fn parse(s: &str, _opts: ParseOptions) -> Result<Atom, AtomError> {
        let err = |r: &str| AtomError {
            atom: s.to_owned(),
            reason: r.to_owned(),
        };
        let body = s.trim_start_matches(['<', '>', '=', '~']);
        let (cat, rest) = body
            .split_once('/')
            .ok_or_else(|| err("missing category"))?;
        let pkg = rest.split([':', '[']).next().unwrap_or("");
        if cat.is_empty() || pkg.is_empty() {
            return Err(err("empty category or package"));
        }
        Ok(Atom {
            text: s.to_owned(),
            key: format!("{cat}/{pkg}"),
        })
    }

    /// `category/package`, without version, slot, repository or USE dependencies.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// True when the atom is a bare `category/package`.
    pub fn is_bare(&self) -> bool {
        self.text == self.key
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
