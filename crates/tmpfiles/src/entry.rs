//! One tmpfiles.d line: the [`Entry`] model, [`parse_line`] and its inverse (`Display`).
//!
//! The entry keeps what the line says, before specifier expansion and user lookup (those
//! need the target root and happen in [`crate::plan`]). Field syntax is checked here, so a
//! line that parses can only fail later for reasons that depend on the root.

use crate::escape::{extract_word, quote_word, EscapeError};
use std::fmt;

/// Line types of current systemd, plus the legacy `F` (= `f+`) and `m` (= `z`).
pub const TYPES: &str = "fFwdDevqQpLcbCxXrRzZtThHaAm";

/// Modifiers after the type letter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Modifiers {
    /// `+`: truncate (f), append (w), replace (p L c b), merge (C), add (a A).
    pub plus: bool,
    /// `!`: only with `--boot`.
    pub boot: bool,
    /// `-`: failure to create is not an error.
    pub allow_failure: bool,
    /// `=`: remove objects of the wrong type in the way (and in implicit parents).
    pub replace: bool,
    /// `~`: the argument is base64.
    pub base64: bool,
    /// `^`: the argument names a service credential.
    pub credential: bool,
    /// `$`: subject to `--purge` (systemd >= 256).
    pub purge: bool,
    /// `?`: on `L`, no link when its target is missing (systemd >= 257); `C` skips a
    /// missing source anyway.
    pub optional: bool,
}

impl Modifiers {
    const CHARS: [char; 8] = ['+', '!', '-', '=', '~', '^', '$', '?'];

    fn flag(&mut self, c: char) -> Option<&mut bool> {
        Some(match c {
            '+' => &mut self.plus,
            '!' => &mut self.boot,
            '-' => &mut self.allow_failure,
            '=' => &mut self.replace,
            '~' => &mut self.base64,
            '^' => &mut self.credential,
            '$' => &mut self.purge,
            '?' => &mut self.optional,
            _ => return None,
        })
    }
}

impl fmt::Display for Modifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = *self;
        for c in Self::CHARS {
            if *m.flag(c).expect("known modifier") {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The mode field: octal bits with the `~` (mask by existing bits) and `:` (only when
/// creating) prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode {
    pub bits: u32,
    pub mask: bool,
    pub only_create: bool,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mask {
            f.write_str("~")?;
        }
        if self.only_create {
            f.write_str(":")?;
        }
        write!(f, "{:04o}", self.bits)
    }
}

/// The user or group field: a name or a number, `:` prefix for "only when creating".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub name: String,
    pub only_create: bool,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = if self.only_create {
            format!(":{}", self.name)
        } else {
            self.name.clone()
        };
        f.write_str(&quote_word(&s))
    }
}

/// The age field: `[~][age-by:]timespan`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Age {
    /// `~`: keep the first level.
    pub keep_first_level: bool,
    /// The age-by letters (`abcmABCM`), when given.
    pub by: Option<String>,
    /// The time span as written.
    pub span: String,
    /// The time span in microseconds (`u64::MAX` for `infinity`).
    pub usec: u64,
}

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        if self.keep_first_level {
            s.push('~');
        }
        if let Some(by) = &self.by {
            s.push_str(by);
            s.push(':');
        }
        s.push_str(&self.span);
        f.write_str(&quote_word(&s))
    }
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The type letter, one of [`TYPES`].
    pub kind: char,
    pub modifiers: Modifiers,
    /// The path as written (unquoted, unescaped), specifiers not yet expanded.
    pub path: String,
    pub mode: Option<Mode>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
    pub age: Option<Age>,
    /// The argument field exactly as written (everything after the age field), or None for
    /// an absent or `-` argument. Decoding depends on the type: see [`Entry::argument_bytes`].
    pub argument: Option<String>,
}

/// Why a line is not valid tmpfiles.d syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError(pub String);

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError(msg.into()))
}

impl From<EscapeError> for SyntaxError {
    fn from(e: EscapeError) -> Self {
        SyntaxError(format!("failed to parse line: {e}"))
    }
}

fn empty_or_dash(s: &Option<String>) -> bool {
    s.as_deref().is_none_or(|s| s.is_empty() || s == "-")
}

/// Parse one line. Returns `Ok(None)` for blank lines and comments.
///
/// A NUL byte is refused: systemd ends a line there ([`crate::config::lines`]) and refuses
/// `\x00`, so an entry holding one could never be written back as a line.
pub fn parse_line(line: &str) -> Result<Option<Entry>, SyntaxError> {
    if line.contains('\0') {
        return err("NUL byte in the line (systemd ends a line there)");
    }
    let line = line.trim_matches(|c: char| c.is_ascii() && crate::escape::is_ws(c as u8));
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields: Vec<Option<String>> = Vec::with_capacity(6);
    let mut rest = line;
    for _ in 0..6 {
        match extract_word(rest)? {
            Some((w, r)) => {
                fields.push(Some(w));
                rest = r;
            }
            None => {
                fields.push(None);
                rest = "";
            }
        }
    }
    let [action, path, mode, user, group, age]: [Option<String>; 6] =
        fields.try_into().expect("six fields");
    let (Some(action), Some(path)) = (action, path) else {
        return err("syntax error");
    };
    let argument = (!rest.is_empty() && rest != "-").then(|| rest.to_owned());

    let mut chars = action.chars();
    let Some(kind) = chars.next() else {
        return err(format!("command too short '{action}'"));
    };
    let mut modifiers = Modifiers::default();
    for c in chars {
        match modifiers.flag(c) {
            Some(f) if !*f => *f = true,
            _ => return err(format!("unknown modifiers in command '{action}'")),
        }
    }
    if !TYPES.contains(kind) {
        return err(format!("unknown command type '{kind}'"));
    }
    if path.is_empty() {
        return err("empty path");
    }
    let mode = if empty_or_dash(&mode) {
        None
    } else {
        Some(parse_mode(mode.as_deref().unwrap_or(""))?)
    };
    let owner = |o: Option<String>| {
        (!empty_or_dash(&o)).then(|| {
            let s = o.unwrap_or_default();
            match s.strip_prefix(':') {
                Some(n) => Owner {
                    name: n.to_owned(),
                    only_create: true,
                },
                None => Owner {
                    name: s,
                    only_create: false,
                },
            }
        })
    };
    let user = owner(user);
    let group = owner(group);
    for o in [&user, &group].into_iter().flatten() {
        if o.name.is_empty() {
            return err("empty user or group name");
        }
    }
    let age = if empty_or_dash(&age) {
        None
    } else {
        Some(parse_age(age.as_deref().unwrap_or(""))?)
    };
    let e = Entry {
        kind,
        modifiers,
        path,
        mode,
        user,
        group,
        age,
        argument,
    };
    e.check_argument()?;
    Ok(Some(e))
}

/// `parse_mode()`: octal, at most 07777, with `~` and `:` prefixes in any order.
pub fn parse_mode(s: &str) -> Result<Mode, SyntaxError> {
    let mut m = Mode {
        bits: 0,
        mask: false,
        only_create: false,
    };
    let mut digits = s;
    loop {
        if let Some(r) = digits.strip_prefix('~') {
            m.mask = true;
            digits = r;
        } else if let Some(r) = digits.strip_prefix(':') {
            m.only_create = true;
            digits = r;
        } else {
            break;
        }
    }
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return err(format!("invalid mode '{s}'"));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(bits) if bits <= 0o7777 => {
            m.bits = bits;
            Ok(m)
        }
        _ => err(format!("invalid mode '{s}'")),
    }
}

/// `parse_sec()`: a sum of numbers with units; a number alone is seconds.
pub fn parse_timespan(s: &str) -> Option<u64> {
    let t = s.trim();
    if t == "infinity" {
        return Some(u64::MAX);
    }
    const UNITS: &[(&str, u64)] = &[
        ("seconds", 1_000_000),
        ("second", 1_000_000),
        ("sec", 1_000_000),
        ("s", 1_000_000),
        ("minutes", 60_000_000),
        ("minute", 60_000_000),
        ("min", 60_000_000),
        ("months", 2_629_800_000_000),
        ("month", 2_629_800_000_000),
        ("msec", 1_000),
        ("ms", 1_000),
        ("m", 60_000_000),
        ("hours", 3_600_000_000),
        ("hour", 3_600_000_000),
        ("hr", 3_600_000_000),
        ("h", 3_600_000_000),
        ("days", 86_400_000_000),
        ("day", 86_400_000_000),
        ("d", 86_400_000_000),
        ("weeks", 604_800_000_000),
        ("week", 604_800_000_000),
        ("w", 604_800_000_000),
        ("years", 31_557_600_000_000),
        ("year", 31_557_600_000_000),
        ("y", 31_557_600_000_000),
        ("M", 2_629_800_000_000),
        ("usec", 1),
        ("us", 1),
        ("µs", 1),
    ];
    if t.is_empty() {
        return None;
    }
    let mut rest = t;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let n = rest.bytes().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let int: u64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let mut frac = (0u64, 1u64);
        if let Some(r) = rest.strip_prefix('.') {
            let k = r.bytes().take_while(|b| b.is_ascii_digit()).count();
            let digits = &r[..k.min(9)];
            if !digits.is_empty() {
                frac = (digits.parse().ok()?, 10u64.pow(digits.len() as u32));
            }
            rest = &r[k..];
        }
        rest = rest.trim_start();
        let unit = UNITS.iter().find(|(u, _)| {
            rest.starts_with(u) && !rest[u.len()..].starts_with(|c: char| c.is_alphabetic())
        });
        let mult = match unit {
            Some((u, m)) => {
                rest = &rest[u.len()..];
                *m
            }
            None if rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_digit()) => 1_000_000,
            None => return None,
        };
        total = total
            .checked_add(int.checked_mul(mult)?)?
            .checked_add(frac.0.checked_mul(mult)? / frac.1)?;
    }
    Some(total)
}

/// The age field: `[~][abcmABCM...:]timespan`.
pub fn parse_age(s: &str) -> Result<Age, SyntaxError> {
    let bad = || SyntaxError(format!("invalid age '{s}'"));
    let (keep, rest) = match s.strip_prefix('~') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (by, span) = match rest.split_once(':') {
        Some((by, span)) => {
            let letters: String = by.chars().filter(|c| !c.is_whitespace()).collect();
            if letters.is_empty() || !letters.chars().all(|c| "abcmABCM".contains(c)) {
                return err(format!("invalid age-by '{by}'"));
            }
            (Some(by.to_owned()), span)
        }
        None => (None, rest),
    };
    let usec = parse_timespan(span).ok_or_else(bad)?;
    Ok(Age {
        keep_first_level: keep,
        by,
        span: span.to_owned(),
        usec,
    })
}

/// `major:minor` of a device node.
pub fn parse_devnum(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    let ok = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
    if !ok(a) || !ok(b) {
        return None;
    }
    let (ma, mi): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    // DEVNUM_MAJOR_VALID / DEVNUM_MINOR_VALID: 12 and 20 bits, as systemd checks.
    (ma < (1 << 12) && mi < (1 << 20)).then_some((ma, mi))
}

/// The file attribute letters `h` accepts, as chattr(1) spells them.
pub const ATTR_LETTERS: &str = "aAcCdDeijPsStTux";

impl Entry {
    /// The canonical type: `F` is `f+`, `m` is `z`.
    pub fn canonical_kind(&self) -> (char, bool) {
        match self.kind {
            'F' => ('f', true),
            'm' => ('z', self.modifiers.plus),
            k => (k, self.modifiers.plus),
        }
    }

    /// Whether the path may be a glob (systemd's `needs_glob()`).
    pub fn takes_glob(&self) -> bool {
        "weTtTaAhHxXrRzZm".contains(self.kind)
    }

    /// Whether this type creates or owns the path (systemd's `takes_ownership()`).
    pub fn takes_ownership(&self) -> bool {
        "fFdDvqQpLcbCwexXrR".contains(self.kind)
    }

    /// Whether the argument is `cunescape()`d and specifier-expanded (f, w, L, C).
    pub fn argument_is_text(&self) -> bool {
        "fFwLC".contains(self.kind)
    }

    fn check_argument(&self) -> Result<(), SyntaxError> {
        let k = self.kind;
        let m = &self.modifiers;
        if (m.base64 || m.credential) && !"fFw".contains(k) {
            if m.base64 {
                return err(format!("base64 decoding not supported for '{k}' lines"));
            }
            return err(format!("credentials not supported for '{k}' lines"));
        }
        let arg = self.argument.as_deref();
        match k {
            'w' if arg.is_none() => err("write file requires argument"),
            'c' | 'b' => match arg {
                None => err("device file requires argument"),
                Some(a) if parse_devnum(a).is_none() => {
                    err(format!("can't parse device file major/minor '{a}'"))
                }
                _ => Ok(()),
            },
            't' | 'T' => match arg {
                None => err("set extended attribute requires argument"),
                Some(a) => parse_xattrs(a).map(|_| ()),
            },
            'a' | 'A' => match arg {
                None => err("set ACLs requires argument"),
                // systemd 252 only warns about an ACL it cannot parse and applies nothing;
                // the ACL is read (with the root's users) in `plan`.
                Some(_) => Ok(()),
            },
            'h' | 'H' => match arg {
                None => err("set file attribute requires argument"),
                Some(a) => parse_attributes(a).map(|_| ()),
            },
            'C' if !m.credential => match arg {
                Some(a) if !a.starts_with('/') && !a.starts_with('%') => {
                    err(format!("source path '{a}' is not absolute"))
                }
                _ => Ok(()),
            },
            _ if self.argument_is_text() && !m.base64 && !m.credential => match arg {
                Some(a) => crate::escape::unescape(a).map(|_| ()).map_err(|e| {
                    SyntaxError(format!("failed to unescape parameter to write: {e}"))
                }),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// `t` arguments: words of `name=value`; malformed pairs are ignored (as systemd warns and
/// ignores them).
pub fn parse_xattrs(s: &str) -> Result<Vec<(String, String)>, SyntaxError> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((w, r)) = extract_word(rest)? {
        rest = r;
        if let Some((n, v)) = w.split_once('=') {
            if !n.is_empty() && !v.is_empty() {
                out.push((n.to_owned(), v.to_owned()));
            }
        }
    }
    Ok(out)
}

/// `h` arguments: `[+-=]letters`. Returns (operation, letters).
pub fn parse_attributes(s: &str) -> Result<(char, String), SyntaxError> {
    let (op, letters) = match s.chars().next() {
        Some(c @ ('+' | '-' | '=')) => (c, &s[1..]),
        _ => ('+', s),
    };
    if letters.is_empty() && op != '=' {
        return err(format!(
            "setting file attribute on '{s}' requires at least one attribute"
        ));
    }
    if let Some(c) = letters.chars().find(|c| !ATTR_LETTERS.contains(*c)) {
        return err(format!("unknown file attribute '{c}' in '{s}'"));
    }
    Ok((op, letters.to_owned()))
}

impl fmt::Display for Entry {
    /// The line, fields separated by one space; parsing it gives this entry back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
        write!(
            f,
            "{}{} {} {} {} {} {}",
            self.kind,
            self.modifiers,
            quote_word(&self.path),
            dash(self.mode.map(|m| m.to_string())),
            dash(self.user.as_ref().map(|o| o.to_string())),
            dash(self.group.as_ref().map(|o| o.to_string())),
            dash(self.age.as_ref().map(|a| a.to_string())),
        )?;
        if let Some(a) = &self.argument {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Entry {
        parse_line(s).unwrap().unwrap()
    }

    /// Found by the fuzzer (crates/fuzz, target tmpfiles_edit): `add d /a<NUL>b` in an
    /// edit file (read with `str::lines`, which keeps NUL) was accepted and written back as
    /// `d "/a\x00b"`, a line that does not parse.
    #[test]
    fn a_nul_byte_is_refused() {
        assert_eq!(
            parse_line("d /var/lib/a\0b - - - -"),
            Err(SyntaxError(
                "NUL byte in the line (systemd ends a line there)".into()
            ))
        );
        assert!(parse_line("d /a - - - - x\0").is_err());
        assert!(parse_line("d /var/lib/a\\x00b").is_err());
        let e = crate::edit::parse_edits("f.conf.edit", "delete /x\nadd d /a\0b\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.conf.edit:2: `add`: NUL byte in the line (systemd ends a line there)"
        );
    }

    #[test]
    fn fields_and_defaults() {
        let e = p("d /run/user 0755 root root 10d -");
        assert_eq!(e.kind, 'd');
        assert_eq!(e.mode.unwrap().bits, 0o755);
        assert_eq!(e.user.as_ref().unwrap().name, "root");
        assert_eq!(e.age.as_ref().unwrap().usec, 10 * 86_400_000_000);
        assert_eq!(e.argument, None);
        let e = p("L+! /tmp/foo - - - - /dev/null");
        assert!(e.modifiers.plus && e.modifiers.boot);
        assert_eq!(e.argument.as_deref(), Some("/dev/null"));
        let e = p("f /x ~:0644 :alice :grp ~bmA:1h2min some  text");
        let m = e.mode.unwrap();
        assert!(m.mask && m.only_create);
        assert!(e.user.as_ref().unwrap().only_create);
        let a = e.age.as_ref().unwrap();
        assert!(a.keep_first_level);
        assert_eq!(a.by.as_deref(), Some("bmA"));
        assert_eq!(a.usec, 3_600_000_000 + 120_000_000);
        assert_eq!(e.argument.as_deref(), Some("some  text"));
        let e = p("d \"/with space\" - - - -");
        assert_eq!(e.path, "/with space");
        assert_eq!(p("d /x").mode, None);
    }

    #[test]
    fn rejects() {
        for bad in [
            "d",
            "y /x",
            "d% /x",
            "dd /x",
            "d!! /x",
            "d /x 0999",
            "d /x 17777",
            "d /x - - - 1fortnight",
            "c /dev/x - - - - 1",
            "c /dev/x",
            "w /x",
            "h /x - - - - +Z",
            "L~ /x - - - - Zm9v",
            "a /x",
            "f /x - - - - \\q",
            "d \"/x",
            "C /x - - - - relative",
        ] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_line("   # comment").unwrap(), None);
        assert_eq!(parse_line("").unwrap(), None);
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("10"), Some(10_000_000));
        assert_eq!(parse_timespan("1h 30min"), Some(5_400_000_000));
        assert_eq!(parse_timespan("1.5s"), Some(1_500_000));
        assert_eq!(parse_timespan("5 weeks"), Some(5 * 604_800_000_000));
        assert_eq!(parse_timespan("2ms3us"), Some(2003));
        assert_eq!(parse_timespan("x"), None);
    }
}
