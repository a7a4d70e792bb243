//! Edits as data: directives that change a packaged tmpfiles.d file into the complete
//! modified copy a variant ships under `/etc/tmpfiles.d/` (see docs/tmpfiles.md). Pure.
//!
//! An edit file (`NAME.conf.edit` in a layer's `tmpfiles.d/`) holds one directive per line:
//!
//! ```text
//! set /var/log type=v            # change fields of the line(s) for /var/log
//! set /var/tmp when-type=q mode=1777 age=10d
//! delete /var/cache              # remove the line(s) for /var/cache
//! add d /var/lib/keel 0700 root root -
//! drop                           # mask the whole packaged file
//! ```
//!
//! A `set` or `delete` that matches no line is an error naming the edit's file and line:
//! the package changed under us.

use crate::entry::{parse_line, Entry, Modifiers};
use crate::escape::extract_word;
use crate::plan::Source;
use std::fmt;

/// A directive that could not be read or applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditError {
    pub source: Source,
    pub message: String,
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

impl std::error::Error for EditError {}

/// One field assignment of `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// Type letter and modifiers, e.g. `v` or `d!`.
    Type(String),
    Mode(String),
    User(String),
    Group(String),
    Age(String),
    Argument(String),
}

/// One directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    Set {
        path: String,
        when_type: Option<char>,
        fields: Vec<Field>,
    },
    Delete {
        path: String,
        when_type: Option<char>,
    },
    Add(Entry),
    Drop,
}

/// A directive with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub source: Source,
    pub directive: Directive,
}

/// Parse an edit file.
pub fn parse_edits(file: &str, text: &str) -> Result<Vec<Edit>, EditError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let source = Source {
            file: file.to_owned(),
            line: n + 1,
        };
        let err = |m: String| EditError {
            source: source.clone(),
            message: m,
        };
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let (verb, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let directive = match verb {
            "drop" if rest.is_empty() => Directive::Drop,
            "drop" => return Err(err("`drop` takes no arguments".into())),
            "add" => match parse_line(rest) {
                Ok(Some(e)) => Directive::Add(e),
                Ok(None) => return Err(err("`add` needs a tmpfiles.d line".into())),
                Err(e) => return Err(err(format!("`add`: {e}"))),
            },
            "set" | "delete" => {
                let words = split_words(rest).map_err(|e| err(e.to_string()))?;
                let Some((path, args)) = words.split_first() else {
                    return Err(err(format!("`{verb}` needs a path")));
                };
                let mut when_type = None;
                let mut fields = Vec::new();
                for a in args {
                    let Some((k, v)) = a.split_once('=') else {
                        return Err(err(format!("expected FIELD=VALUE, got `{a}`")));
                    };
                    let f = match k {
                        "when-type" => {
                            let mut c = v.chars();
                            match (c.next(), c.next()) {
                                (Some(t), None) if crate::entry::TYPES.contains(t) => {
                                    when_type = Some(t)
                                }
                                _ => return Err(err(format!("bad when-type `{v}`"))),
                            }
                            continue;
                        }
                        _ if verb == "delete" => {
                            return Err(err(format!("`delete` takes no field `{k}`")))
                        }
                        "type" => Field::Type(v.to_owned()),
                        "mode" => Field::Mode(v.to_owned()),
                        "user" => Field::User(v.to_owned()),
                        "group" => Field::Group(v.to_owned()),
                        "age" => Field::Age(v.to_owned()),
                        "argument" => Field::Argument(v.to_owned()),
                        _ => {
                            return Err(err(format!(
                                "unknown field `{k}` (type, mode, user, group, age, argument)"
                            )))
                        }
                    };
                    fields.push(f);
                }
                if verb == "set" {
                    if fields.is_empty() {
                        return Err(err("`set` changes nothing".into()));
                    }
                    Directive::Set {
                        path: path.clone(),
                        when_type,
                        fields,
                    }
                } else {
                    Directive::Delete {
                        path: path.clone(),
                        when_type,
                    }
                }
            }
            _ => {
                return Err(err(format!(
                    "unknown directive `{verb}` (set, delete, add, drop)"
                )))
            }
        };
        out.push(Edit { source, directive });
    }
    if out.len() > 1 && out.iter().any(|e| e.directive == Directive::Drop) {
        let d = out
            .iter()
            .find(|e| e.directive == Directive::Drop)
            .expect("drop present");
        return Err(EditError {
            source: d.source.clone(),
            message: "`drop` cannot be combined with other directives".into(),
        });
    }
    Ok(out)
}

fn strip_comment(line: &str) -> &str {
    // `#` starts a comment at the start of a line or after whitespace (not inside `add`
    // arguments that need it: use `\x23` there).
    let b = line.as_bytes();
    for i in 0..b.len() {
        if b[i] == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

fn split_words(s: &str) -> Result<Vec<String>, crate::escape::EscapeError> {
    let mut v = Vec::new();
    let mut rest = s;
    while let Some((w, r)) = extract_word(rest)? {
        v.push(w);
        rest = r;
    }
    Ok(v)
}

/// The result of editing one packaged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Mask the file (`/etc/tmpfiles.d/NAME` → `/dev/null`).
    Masked,
    /// The complete modified copy.
    Content(String),
}

fn matches(e: &Entry, path: &str, when: Option<char>) -> bool {
    e.path == path && when.is_none_or(|t| t == e.kind)
}

fn set_field(e: &mut Entry, f: &Field) -> Result<(), String> {
    // Each value is checked by writing the changed line and parsing it again.
    let mut probe = e.clone();
    let dash = |v: &str| v == "-" || v.is_empty();
    match f {
        Field::Type(t) => {
            let line = format!("{t} /x");
            let p = parse_line(&line)
                .map_err(|e| format!("bad type `{t}`: {e}"))?
                .ok_or("empty type")?;
            probe.kind = p.kind;
            probe.modifiers = Modifiers { ..p.modifiers };
        }
        Field::Mode(v) => {
            probe.mode = if dash(v) {
                None
            } else {
                Some(crate::entry::parse_mode(v).map_err(|e| e.0)?)
            }
        }
        Field::User(v) | Field::Group(v) => {
            let o = (!dash(v)).then(|| match v.strip_prefix(':') {
                Some(n) => crate::entry::Owner {
                    name: n.to_owned(),
                    only_create: true,
                },
                None => crate::entry::Owner {
                    name: v.clone(),
                    only_create: false,
                },
            });
            if matches!(f, Field::User(_)) {
                probe.user = o;
            } else {
                probe.group = o;
            }
        }
        Field::Age(v) => {
            probe.age = if dash(v) {
                None
            } else {
                Some(crate::entry::parse_age(v).map_err(|e| e.0)?)
            }
        }
        Field::Argument(v) => probe.argument = (!dash(v)).then(|| v.clone()),
    }
    let line = probe.to_string();
    match parse_line(&line) {
        Ok(Some(back)) => {
            *e = back;
            Ok(())
        }
        Ok(None) => Err("the edited line is empty".into()),
        Err(err) => Err(format!("the edited line `{line}` is invalid: {err}")),
    }
}

/// Apply edits to the text of a packaged file. Unchanged lines are kept byte for byte;
/// changed lines are written back in canonical form; `add` lines are appended.
pub fn apply_edits(base_name: &str, base: &str, edits: &[Edit]) -> Result<Outcome, EditError> {
    if edits.iter().any(|e| e.directive == Directive::Drop) {
        return Ok(Outcome::Masked);
    }
    let mut lines: Vec<Option<String>> = base.lines().map(|l| Some(l.to_owned())).collect();
    let mut added = Vec::new();
    for edit in edits {
        let err = |m: String| EditError {
            source: edit.source.clone(),
            message: m,
        };
        match &edit.directive {
            Directive::Set {
                path,
                when_type,
                fields,
            } => {
                let mut hit = false;
                for slot in lines.iter_mut() {
                    let Some(l) = slot else { continue };
                    let Ok(Some(mut e)) = parse_line(l) else {
                        continue;
                    };
                    if !matches(&e, path, *when_type) {
                        continue;
                    }
                    for f in fields {
                        set_field(&mut e, f).map_err(|m| err(format!("`set {path}`: {m}")))?;
                    }
                    *slot = Some(e.to_string());
                    hit = true;
                }
                if !hit {
                    return Err(err(format!(
                        "`set {path}` matches no line of {base_name} (did the package change?)"
                    )));
                }
            }
            Directive::Delete { path, when_type } => {
                let mut hit = false;
                for slot in lines.iter_mut() {
                    let keep = match slot {
                        Some(l) => {
                            !matches!(parse_line(l), Ok(Some(e)) if matches(&e, path, *when_type))
                        }
                        None => true,
                    };
                    if !keep {
                        *slot = None;
                        hit = true;
                    }
                }
                if !hit {
                    return Err(err(format!(
                        "`delete {path}` matches no line of {base_name} (did the package change?)"
                    )));
                }
            }
            Directive::Add(e) => added.push(e.to_string()),
            Directive::Drop => unreachable!("handled above"),
        }
    }
    let mut out = String::new();
    for l in lines.into_iter().flatten().chain(added) {
        out.push_str(&l);
        out.push('\n');
    }
    Ok(Outcome::Content(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAR: &str = "# comment\nq /var 0755 - - -\n\nd /var/log 0755 - - -\nf /var/log/wtmp 0664 root utmp -\nd /var/cache 0755 - - -\n";

    fn edits(t: &str) -> Vec<Edit> {
        parse_edits("var.conf.edit", t).unwrap()
    }

    #[test]
    fn set_delete_add() {
        let out = apply_edits(
            "var.conf",
            VAR,
            &edits(
                "set /var/log type=v\ndelete /var/cache\nadd d /var/lib/keel 0700 root root -\n",
            ),
        )
        .unwrap();
        assert_eq!(
            out,
            Outcome::Content(
                "# comment\nq /var 0755 - - -\n\nv /var/log 0755 - - -\nf /var/log/wtmp 0664 root utmp -\nd /var/lib/keel 0700 root root -\n".into()
            )
        );
        assert_eq!(
            apply_edits("x", VAR, &edits("drop")).unwrap(),
            Outcome::Masked
        );
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = apply_edits(
            "var.conf",
            VAR,
            &edits("# c\nset /var/log mode=0700\nset /var/nothing type=v\n"),
        )
        .unwrap_err();
        assert_eq!(e.source.line, 3);
        assert!(
            e.to_string()
                .starts_with("var.conf.edit:3: `set /var/nothing` matches no line"),
            "{e}"
        );
        for bad in [
            "frobnicate /x",
            "set /x",
            "set /x colour=red",
            "drop now",
            "add y /x",
            "drop\nset /x type=d",
            "set /x when-type=yy type=d",
        ] {
            assert!(parse_edits("e", bad).is_err(), "{bad}");
        }
        let e = apply_edits("var.conf", VAR, &edits("set /var/log mode=0999")).unwrap_err();
        assert!(e.message.contains("invalid mode"), "{e}");
        let e = apply_edits("var.conf", VAR, &edits("delete /var/log when-type=L")).unwrap_err();
        assert_eq!(e.source.line, 1);
    }
}
