//! Kernel configuration fragments and `.config` files, in Kconfig's own format, and the
//! check that a final configuration has what its fragments asked for.
//!
//! A fragment (`/etc/kernel/config.d/*.config`, merged onto a distribution kernel's
//! configuration by Gentoo's `kernel-build.eclass` through the kernel's
//! `scripts/kconfig/merge_config.sh`) holds lines as `make` writes them in `.config`:
//! `CONFIG_X=y`, `CONFIG_X=m`, `CONFIG_X="text"`, `CONFIG_X=123`, `# CONFIG_X is not set`,
//! comments and blank lines. After merging, `make olddefconfig` resolves dependencies: an
//! option the kernel does not know is dropped, one whose dependencies are not met is
//! turned off, and neither is an error there. `merge_config.sh` only warns ("Value requested
//! for CONFIG_X not in final .config"). [`check`] makes that a list of [`Mismatch`]es, each
//! naming the fragment's file and line, the option, what it asked for and what it got.
//!
//! As in `merge_config.sh`, a later fragment's line for an option replaces an earlier one
//! (fragments are merged in the order given), and `CONFIG_X=n` means `# CONFIG_X is not
//! set`. Unlike it, an option set to "not set" that the final configuration does not list
//! at all counts as met: an option that does not exist, or cannot be chosen, is off.

use std::collections::BTreeMap;
use std::fmt;

/// An option's value, as a configuration line gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `# CONFIG_X is not set` (or `CONFIG_X=n`).
    NotSet,
    /// What follows `CONFIG_X=`: `y`, `m`, a quoted string or a number, as written.
    Set(String),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::NotSet => f.write_str("not set"),
            Value::Set(v) => f.write_str(v),
        }
    }
}

/// One line of a fragment that sets an option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The fragment's file, as the caller named it.
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// `CONFIG_...`.
    pub option: String,
    pub value: Value,
}

impl Setting {
    /// The line as Kconfig writes it.
    pub fn line_text(&self) -> String {
        match &self.value {
            Value::NotSet => format!("# {} is not set", self.option),
            Value::Set(v) => format!("{}={v}", self.option),
        }
    }
}

/// A line of a fragment that is neither a setting, a comment nor blank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: `{text}` is not a kernel configuration line (`CONFIG_NAME=value` or `# CONFIG_NAME is not set`)")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub text: String,
}

/// An option name: `CONFIG_` and then letters, digits and `_`.
fn is_option(name: &str) -> bool {
    name.strip_prefix("CONFIG_").is_some_and(|rest| {
        !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// A line's option and value, `None` for a comment or a blank line; `Err(())` for a line
/// that is neither.
fn parse_line(line: &str) -> Result<Option<(String, Value)>, ()> {
    let t = line.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if let Some(comment) = t.strip_prefix('#') {
        let c = comment.trim();
        if let Some(name) = c.strip_suffix(" is not set") {
            if is_option(name) {
                return Ok(Some((name.to_owned(), Value::NotSet)));
            }
        }
        return Ok(None);
    }
    let (name, value) = t.split_once('=').ok_or(())?;
    if !is_option(name) || value.is_empty() {
        return Err(());
    }
    if value.starts_with('"') && (value.len() < 2 || !value.ends_with('"')) {
        return Err(());
    }
    Ok(Some((
        name.to_owned(),
        if value == "n" {
            Value::NotSet
        } else {
            Value::Set(value.to_owned())
        },
    )))
}

/// The settings of one fragment, `file` naming it in errors.
pub fn parse_fragment(file: &str, text: &str) -> Result<Vec<Setting>, ParseError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        match parse_line(l) {
            Ok(Some((option, value))) => out.push(Setting {
                file: file.to_owned(),
                line: i + 1,
                option,
                value,
            }),
            Ok(None) => {}
            Err(()) => {
                return Err(ParseError {
                    file: file.to_owned(),
                    line: i + 1,
                    text: l.to_owned(),
                })
            }
        }
    }
    Ok(out)
}

/// A final configuration (`.config`): each option it lists and its value. Lines that are
/// not settings are skipped (Kconfig writes only settings and comments).
pub fn parse_config(text: &str) -> BTreeMap<String, Value> {
    text.lines()
        .filter_map(|l| parse_line(l).ok().flatten())
        .collect()
}

/// An option a fragment set that the final configuration does not have with that value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub wanted: Setting,
    /// What the final configuration has (`None`: it does not list the option).
    pub got: Option<Value>,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.wanted;
        write!(f, "{}:{}: {}: ", w.file, w.line, w.line_text())?;
        match &self.got {
            None => write!(
                f,
                "{} is not in the kernel's final configuration (the kernel has no such option, or its dependencies are not met)",
                w.option
            ),
            Some(v) => write!(
                f,
                "the kernel's final configuration has {} (a dependency or another option decided it)",
                Setting {
                    value: v.clone(),
                    ..w.clone()
                }
                .line_text()
            ),
        }
    }
}

/// The fragments' settings (in merge order: a later one for an option replaces an earlier
/// one) that `config` does not have, in the order of the fragments.
pub fn check(fragments: &[Setting], config: &BTreeMap<String, Value>) -> Vec<Mismatch> {
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in fragments.iter().enumerate() {
        last.insert(&s.option, i);
    }
    fragments
        .iter()
        .enumerate()
        .filter(|(i, s)| last.get(s.option.as_str()) == Some(i))
        .filter_map(|(_, s)| {
            let got = config.get(&s.option);
            let met = match (&s.value, got) {
                (Value::NotSet, None | Some(Value::NotSet)) => true,
                (want, Some(have)) => want == have,
                (Value::Set(_), None) => false,
            };
            (!met).then(|| Mismatch {
                wanted: s.clone(),
                got: got.cloned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
