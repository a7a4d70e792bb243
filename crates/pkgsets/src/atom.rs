//! Package dependency specifications ("atoms") as the Package Manager Specification (PMS)
//! defines them for EAPI 8, checked against Portage's own `portage.dep.isvalidatom`.
//!
//! ```text
//! atom      = [blocker] ( op cat "/" pkg "-" version
//!                       | "=" cat "/" pkg "-" version "*"
//!                       | cat "/" pkg )
//!             [":" slotdep] ["::" repo] ["[" usedep ("," usedep)* "]"]
//! blocker   = "!" | "!!"                          (only with ParseOptions::allow_blockers)
//! op        = "<" | "<=" | "=" | "~" | ">=" | ">"
//! cat       = [A-Za-z0-9_] [A-Za-z0-9_+.-]*
//! pkg       = [A-Za-z0-9_] [A-Za-z0-9_+-]*      not ending in "-" version
//! version   = digits ("." digits)* [a-z]? ("_" ("alpha"|"beta"|"pre"|"rc"|"p") digits?)*
//!             ["-r" digits]
//! slotdep   = "*" | "=" | slot ["/" slot] ["="]
//! slot      = [A-Za-z0-9_] [A-Za-z0-9_+.-]*
//! repo      = [A-Za-z0-9_] [A-Za-z0-9_-]*       (only with ParseOptions::allow_repo)
//! usedep    = ( flag | "-" flag | flag "=" | "!" flag "=" | flag "?" | "!" flag "?" )
//!             with an optional default "(+)" or "(-)" right after the flag
//! flag      = [A-Za-z0-9] [A-Za-z0-9+_@-]*
//! ```
//!
//! Within one USE dependency list a flag may not carry both defaults, nor appear both with
//! and without a default (Portage rejects `[foo(+),foo(-)]` and `[foo,foo(+)]`).
//!
//! **Normalization.** [`Atom`]'s `Display` prints the canonical spelling: the parts in the
//! order above, every part spelled as written, except that the USE dependencies are sorted
//! (by flag, then by their spelling) and exact duplicates are dropped. USE dependencies are
//! a conjunction, so their order and repetition carry no meaning; everything else does
//! (`1.0`, `1.00` and `1` are kept apart because `=...*` globs compare them as text).
//! Parsing the normalized form gives an equal atom.
//!
//! **Length limits.** Portage sets none; the filesystem does. A category is a directory of
//! the repository (and of `/var/db/pkg`), a package name a directory in it, and a version
//! exists only as the file `${PF}.ebuild` (`PF` = `PN-PV[-rN]`) in that directory. Each is
//! one file name, at most `NAME_MAX` = 255 bytes on Linux file systems, hence:
//! - a category at most [`MAX_CATEGORY`] = 255 bytes;
//! - a package name at most [`MAX_PACKAGE`] = 255 bytes (its directory);
//! - with a version, `PN-PV[-rN]` as written at most [`MAX_PACKAGE_VERSION`] = 248 bytes,
//!   so that `${PF}.ebuild` fits in 255 (a bare name of 247 to 255 bytes is a valid
//!   directory but can hold no ebuild: Portage finds nothing for it);
//! - a whole atom at most [`MAX_ATOM`] = 4096 bytes (`PATH_MAX`), slot, repository and USE
//!   dependencies included.
//!
//! They are checked before anything else, so the work on hostile input stays bounded;
//! within them the verdict is Portage's. Messages quote at most the first [`SHOWN`] bytes
//! of an atom.

use std::fmt;

/// The longest category, in bytes: `NAME_MAX`, since a category is a directory name.
pub const MAX_CATEGORY: usize = 255;
/// The longest package name (`PN`), in bytes: `NAME_MAX`, since a package is a directory
/// name.
pub const MAX_PACKAGE: usize = 255;
/// The longest `PN-PV[-rN]` of a versioned atom, in bytes: `${PF}.ebuild` must fit in
/// `NAME_MAX` (255 - `.ebuild`).
pub const MAX_PACKAGE_VERSION: usize = 255 - ".ebuild".len();
/// The longest atom, in bytes (`PATH_MAX`): room for the longest names, a version, a slot,
/// a repository and a long list of USE dependencies.
pub const MAX_ATOM: usize = 4096;
/// How many bytes of an atom a message repeats at most.
pub const SHOWN: usize = 64;

/// What a parser accepts beyond plain dependency atoms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept `!` and `!!` blockers.
    pub allow_blockers: bool,
    /// Accept `::repo`.
    pub allow_repo: bool,
}

impl Default for ParseOptions {
    /// Blockers off, repositories on: what a package set file accepts.
    fn default() -> Self {
        ParseOptions {
            allow_blockers: false,
            allow_repo: true,
        }
    }
}

/// An invalid atom and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtomError {
    pub atom: String,
    pub reason: String,
}

impl fmt::Display for AtomError {
    /// `invalid atom `ATOM`: REASON`, the atom cut after [`SHOWN`] bytes (`…` and its
    /// length then follow).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match excerpt(&self.atom) {
            (shown, false) => write!(f, "invalid atom `{shown}`: {}", self.reason),
            (shown, true) => write!(
                f,
                "invalid atom `{shown}…` ({} bytes): {}",
                self.atom.len(),
                self.reason
            ),
        }
    }
}

impl std::error::Error for AtomError {}

/// The start of `s` to repeat in a message: all of it when it has at most [`SHOWN`]
/// bytes, else its first [`SHOWN`] bytes or fewer (cut at a character boundary), and
/// whether it was cut.
pub fn excerpt(s: &str) -> (&str, bool) {
    if s.len() <= SHOWN {
        return (s, false);
    }
    let mut end = SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// `!` (weak) or `!!` (strong) blocker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blocker {
    Weak,
    Strong,
}

impl Blocker {
    pub fn as_str(self) -> &'static str {
        match self {
            Blocker::Weak => "!",
            Blocker::Strong => "!!",
        }
    }
}

/// A version operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `=`
    Equal,
    /// `=...*`: versions that start with the given one
    EqualGlob,
    /// `~`: equal ignoring the revision
    Approx,
    /// `>=`
    GreaterOrEqual,
    /// `>`
    Greater,
}

impl Operator {
    /// The operator as written before the atom (`=` for [`Operator::EqualGlob`]).
    pub fn prefix(self) -> &'static str {
        match self {
            Operator::Less => "<",
            Operator::LessOrEqual => "<=",
            Operator::Equal | Operator::EqualGlob => "=",
            Operator::Approx => "~",
            Operator::GreaterOrEqual => ">=",
            Operator::Greater => ">",
        }
    }
}

/// A version suffix kind, in PMS order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SuffixKind {
    Alpha,
    Beta,
    Pre,
    Rc,
    P,
}

impl SuffixKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SuffixKind::Alpha => "alpha",
            SuffixKind::Beta => "beta",
            SuffixKind::Pre => "pre",
            SuffixKind::Rc => "rc",
            SuffixKind::P => "p",
        }
    }
    fn from_str(s: &str) -> Option<SuffixKind> {
        Some(match s {
            "alpha" => SuffixKind::Alpha,
            "beta" => SuffixKind::Beta,
            "pre" => SuffixKind::Pre,
            "rc" => SuffixKind::Rc,
            "p" => SuffixKind::P,
            _ => return None,
        })
    }
}

/// One `_suffix[N]` of a version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Suffix {
    pub kind: SuffixKind,
    /// The digits after the suffix name, as written (leading zeros kept).
    pub number: Option<String>,
}

/// A package version: `1.2.3b_rc1_p2-r3`. Components are kept as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    numbers: Vec<String>,
    letter: Option<char>,
    suffixes: Vec<Suffix>,
    revision: Option<String>,
}

impl Version {
    /// Parse a version with an optional `-rN` revision; at most [`MAX_PACKAGE_VERSION`]
    /// bytes, since it is part of an ebuild's file name.
    pub fn parse(s: &str) -> Result<Version, AtomError> {
        check_len(
            "version",
            s,
            MAX_PACKAGE_VERSION,
            "a version is part of the file name `${PF}.ebuild`, at most NAME_MAX = 255 bytes",
        )
        .and_then(|()| parse_version(s))
        .map_err(|reason| AtomError {
            atom: s.to_owned(),
            reason,
        })
    }
    /// The dot-separated numeric components (`["1", "2", "3"]`).
    pub fn numbers(&self) -> &[String] {
        &self.numbers
    }
    /// The letter after the numbers (`b` in `1.2b`).
    pub fn letter(&self) -> Option<char> {
        self.letter
    }
    /// The `_alpha`/`_beta`/`_pre`/`_rc`/`_p` suffixes in order.
    pub fn suffixes(&self) -> &[Suffix] {
        &self.suffixes
    }
    /// The digits of `-rN`, as written.
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.numbers.join("."))?;
        if let Some(l) = self.letter {
            write!(f, "{l}")?;
        }
        for s in &self.suffixes {
            write!(
                f,
                "_{}{}",
                s.kind.as_str(),
                s.number.as_deref().unwrap_or("")
            )?;
        }
        if let Some(r) = &self.revision {
            write!(f, "-r{r}")?;
        }
        Ok(())
    }
}

/// The slot dependency after `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SlotDep {
    /// `:*`: any slot, no rebuild on slot change
    Any,
    /// `:=`: any slot, rebuild when the slot or sub-slot changes
    Equal,
    /// `:slot`, `:slot/subslot`, `:slot=`, `:slot/subslot=`
    Slot {
        slot: String,
        subslot: Option<String>,
        /// The trailing `=` slot operator.
        equal: bool,
    },
}

impl fmt::Display for SlotDep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotDep::Any => f.write_str("*"),
            SlotDep::Equal => f.write_str("="),
            SlotDep::Slot {
                slot,
                subslot,
                equal,
            } => {
                f.write_str(slot)?;
                if let Some(s) = subslot {
                    write!(f, "/{s}")?;
                }
                if *equal {
                    f.write_str("=")?;
                }
                Ok(())
            }
        }
    }
}

/// What a USE dependency asks of a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UseDepKind {
    /// `foo`: enabled
    Enabled,
    /// `-foo`: disabled
    Disabled,
    /// `foo=`: same as in the depending package
    Equal,
    /// `!foo=`: opposite of the depending package
    NotEqual,
    /// `foo?`: enabled if enabled in the depending package
    IfEnabled,
    /// `!foo?`: disabled if disabled in the depending package
    IfDisabled,
}

/// The default of a USE dependency for a package that lacks the flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UseDefault {
    /// `(+)`
    Enabled,
    /// `(-)`
    Disabled,
}

/// One element of `[...]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UseDep {
    pub kind: UseDepKind,
    pub flag: String,
    pub default: Option<UseDefault>,
}

impl fmt::Display for UseDep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pre, post) = match self.kind {
            UseDepKind::Enabled => ("", ""),
            UseDepKind::Disabled => ("-", ""),
            UseDepKind::Equal => ("", "="),
            UseDepKind::NotEqual => ("!", "="),
            UseDepKind::IfEnabled => ("", "?"),
            UseDepKind::IfDisabled => ("!", "?"),
        };
        let default = match self.default {
            None => "",
            Some(UseDefault::Enabled) => "(+)",
            Some(UseDefault::Disabled) => "(-)",
        };
        write!(f, "{pre}{}{default}{post}", self.flag)
    }
}

/// A parsed, valid atom. Equality is equality of the normalized form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Atom {
    blocker: Option<Blocker>,
    operator: Option<Operator>,
    /// `cat/pkg`
    key: String,
    /// Length of the category within `key`.
    cat_len: usize,
    version: Option<Version>,
    slot: Option<SlotDep>,
    repo: Option<String>,
    /// Sorted by (flag, spelling), without duplicates.
    use_deps: Vec<UseDep>,
}

impl Atom {
    /// Parse an atom. The whole string must be the atom: no surrounding whitespace.
    pub fn parse(s: &str, opts: ParseOptions) -> Result<Atom, AtomError> {
        parse_atom(s, opts).map_err(|reason| AtomError {
            atom: s.to_owned(),
            reason,
        })
    }

    /// `category/package`, without version, slot, repository or USE dependencies.
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn category(&self) -> &str {
        &self.key[..self.cat_len]
    }
    /// The package name (`PN`).
    pub fn package(&self) -> &str {
        &self.key[self.cat_len + 1..]
    }
    pub fn blocker(&self) -> Option<Blocker> {
        self.blocker
    }
    pub fn operator(&self) -> Option<Operator> {
        self.operator
    }
    /// The version; present exactly when there is an operator.
    pub fn version(&self) -> Option<&Version> {
        self.version.as_ref()
    }
    pub fn slot(&self) -> Option<&SlotDep> {
        self.slot.as_ref()
    }
    pub fn repo(&self) -> Option<&str> {
        self.repo.as_deref()
    }
    /// USE dependencies in normalized order (sorted, without duplicates).
    pub fn use_deps(&self) -> &[UseDep] {
        &self.use_deps
    }

    /// True when the atom is a bare `category/package`.
    pub fn is_bare(&self) -> bool {
        self.blocker.is_none()
            && self.operator.is_none()
            && self.slot.is_none()
            && self.repo.is_none()
            && self.use_deps.is_empty()
    }
}

impl fmt::Display for Atom {
    /// The normalized form (see the module documentation).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = self.blocker {
            f.write_str(b.as_str())?;
        }
        if let Some(op) = self.operator {
            f.write_str(op.prefix())?;
        }
        f.write_str(&self.key)?;
        if let Some(v) = &self.version {
            write!(f, "-{v}")?;
        }
        if self.operator == Some(Operator::EqualGlob) {
            f.write_str("*")?;
        }
        if let Some(s) = &self.slot {
            write!(f, ":{s}")?;
        }
        if let Some(r) = &self.repo {
            write!(f, "::{r}")?;
        }
        if !self.use_deps.is_empty() {
            f.write_str("[")?;
            for (i, u) in self.use_deps.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{u}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Atom {
    type Err = AtomError;
    /// Parse with [`ParseOptions::default`].
    fn from_str(s: &str) -> Result<Atom, AtomError> {
        Atom::parse(s, ParseOptions::default())
    }
}

type Res<T> = Result<T, String>;

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `[A-Za-z0-9_][A-Za-z0-9_ + extra]*`: category, package, slot and repository names.
fn check_name(what: &str, s: &str, extra: &[char]) -> Res<()> {
    let mut chars = s.chars();
    match chars.next() {
        None => return Err(format!("empty {what}")),
        Some(c) if !is_word(c) => {
            return Err(format!(
                "{what} `{s}` must start with a letter, digit or `_`, not `{c}`"
            ))
        }
        Some(_) => {}
    }
    if let Some(c) = chars.find(|&c| !is_word(c) && !extra.contains(&c)) {
        return Err(format!("{what} `{s}` contains `{}`", c.escape_debug()));
    }
    Ok(())
}

/// `what is N bytes; at most MAX (why)` when `s` is longer than `max` bytes.
fn check_len(what: &str, s: &str, max: usize, why: &str) -> Res<()> {
    if s.len() > max {
        return Err(format!(
            "{what} is {} bytes; at most {max} ({why})",
            s.len()
        ));
    }
    Ok(())
}

/// The length limits (module documentation), checked on the parts as the parser will
/// split them (`rest` is the atom after its blocker and operator), before any work that
/// grows faster than the atom's length.
fn check_lengths(atom: &str, rest: &str, operator: Option<Operator>) -> Res<()> {
    let name = &rest[..rest.find(['[', ':']).unwrap_or(rest.len())];
    if let Some((cat, pkg)) = name.split_once('/') {
        check_len(
            "category",
            cat,
            MAX_CATEGORY,
            "NAME_MAX: a category is a directory of the repository",
        )?;
        match operator {
            None => check_len(
                "package name",
                pkg,
                MAX_PACKAGE,
                "NAME_MAX: a package is a directory of its category",
            )?,
            Some(_) => check_len(
                "package name and version",
                pkg.strip_suffix('*').unwrap_or(pkg),
                MAX_PACKAGE_VERSION,
                "`${PF}.ebuild` must fit in NAME_MAX = 255 bytes",
            )?,
        }
    }
    check_len(
        "atom",
        atom,
        MAX_ATOM,
        "PATH_MAX; no real atom comes near it",
    )
}

fn parse_atom(s: &str, opts: ParseOptions) -> Res<Atom> {
    if s.is_empty() {
        return Err("empty atom".into());
    }
    let (blocker, rest) = if let Some(r) = s.strip_prefix("!!") {
        (Some(Blocker::Strong), r)
    } else if let Some(r) = s.strip_prefix('!') {
        (Some(Blocker::Weak), r)
    } else {
        (None, s)
    };
    if blocker.is_some() && !opts.allow_blockers {
        return Err("blockers (`!`, `!!`) are not allowed here".into());
    }
    let (operator, rest) = [
        ("<=", Operator::LessOrEqual),
        (">=", Operator::GreaterOrEqual),
        ("<", Operator::Less),
        (">", Operator::Greater),
        ("=", Operator::Equal),
        ("~", Operator::Approx),
    ]
    .iter()
    .find_map(|(p, op)| rest.strip_prefix(p).map(|r| (Some(*op), r)))
    .unwrap_or((None, rest));
    check_lengths(s, rest, operator)?;

    // USE dependencies: from the first `[` to a final `]`.
    let (rest, use_deps) = match rest.find('[') {
        None => (rest, Vec::new()),
        Some(i) => {
            let list = &rest[i + 1..];
            let Some(list) = list.strip_suffix(']') else {
                return Err("USE dependencies `[...]` must end the atom with `]`".into());
            };
            (&rest[..i], parse_use_deps(list)?)
        }
    };
    // Repository: after the first `::`.
    let (rest, repo) = match rest.find("::") {
        None => (rest, None),
        Some(i) => {
            let repo = &rest[i + 2..];
            check_name("repository name", repo, &['-'])?;
            if !opts.allow_repo {
                return Err("a repository (`::repo`) is not allowed here".into());
            }
            (&rest[..i], Some(repo.to_owned()))
        }
    };
    // Slot: after the first `:`.
    let (name, slot) = match rest.find(':') {
        None => (rest, None),
        Some(i) => (&rest[..i], Some(parse_slot(&rest[i + 1..])?)),
    };

    let Some((cat, pkg_ver)) = name.split_once('/') else {
        return Err("missing `/` between category and package".into());
    };
    check_name("category", cat, &['+', '.', '-'])?;
    let (operator, pkg_ver) = match (operator, pkg_ver.strip_suffix('*')) {
        (Some(Operator::Equal), Some(p)) => (Some(Operator::EqualGlob), p),
        (_, Some(_)) => return Err("a trailing `*` needs the `=` operator".into()),
        (op, None) => (op, pkg_ver),
    };
    let (pkg, version) = match operator {
        None => {
            check_package(pkg_ver)?;
            (pkg_ver, None)
        }
        Some(op) => {
            let (pkg, version) = split_version(cat, pkg_ver, op)?;
            (pkg, Some(version))
        }
    };
    Ok(Atom {
        blocker,
        operator,
        key: format!("{cat}/{pkg}"),
        cat_len: cat.len(),
        version,
        slot,
        repo,
        use_deps,
    })
}

/// A package name: name characters, and no `-<version>` at its end.
fn check_package(pkg: &str) -> Res<()> {
    check_name("package name", pkg, &['+', '-'])?;
    for (i, _) in pkg.match_indices('-') {
        let tail = &pkg[i + 1..];
        if parse_version(tail).is_ok() {
            return Err(format!(
                "package name `{pkg}` ends in `-{tail}`, which is a version; a version needs an operator (`=`, `>=`, ...)"
            ));
        }
    }
    Ok(())
}

/// Split `pkg-version` at the one hyphen that leaves a valid package name and version.
fn split_version<'a>(cat: &str, pkg_ver: &'a str, op: Operator) -> Res<(&'a str, Version)> {
    let mut version_error = None;
    for (i, _) in pkg_ver.match_indices('-') {
        let (pkg, ver) = (&pkg_ver[..i], &pkg_ver[i + 1..]);
        match parse_version(ver) {
            Ok(v) => {
                check_package(pkg)?;
                return Ok((pkg, v));
            }
            Err(e) if version_error.is_none() && ver.starts_with(|c: char| c.is_ascii_digit()) => {
                version_error = Some(e)
            }
            Err(_) => {}
        }
    }
    if let Some(e) = version_error {
        return Err(e);
    }
    check_name("package name", pkg_ver, &['+', '-'])?;
    Err(format!(
        "the operator `{p}` needs a version (`{p}{cat}/{pkg_ver}-1.0{glob}`)",
        p = op.prefix(),
        glob = if op == Operator::EqualGlob { "*" } else { "" }
    ))
}

fn digits(s: &str) -> usize {
    s.bytes().take_while(u8::is_ascii_digit).count()
}

fn parse_version(s: &str) -> Res<Version> {
    let (main, revision) = match s.find('-') {
        None => (s, None),
        Some(i) => {
            let r = s[i + 1..]
                .strip_prefix('r')
                .filter(|r| !r.is_empty() && digits(r) == r.len())
                .ok_or_else(|| format!("bad revision `{}` (want `-rN`)", &s[i..]))?;
            (&s[..i], Some(r.to_owned()))
        }
    };
    let mut rest = main;
    let mut numbers = Vec::new();
    loop {
        let n = digits(rest);
        if n == 0 {
            return Err(format!("version `{s}`: expected a number at `{rest}`"));
        }
        numbers.push(rest[..n].to_owned());
        rest = &rest[n..];
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None => break,
        }
    }
    let mut letter = None;
    if let Some(c) = rest.chars().next().filter(char::is_ascii_lowercase) {
        letter = Some(c);
        rest = &rest[1..];
    }
    let mut suffixes = Vec::new();
    while let Some(r) = rest.strip_prefix('_') {
        let name_len = r.bytes().take_while(u8::is_ascii_lowercase).count();
        let kind = SuffixKind::from_str(&r[..name_len]).ok_or_else(|| {
            format!(
                "version `{s}`: unknown suffix `_{}` (want _alpha, _beta, _pre, _rc or _p)",
                &r[..name_len]
            )
        })?;
        let r = &r[name_len..];
        let n = digits(r);
        suffixes.push(Suffix {
            kind,
            number: (n > 0).then(|| r[..n].to_owned()),
        });
        rest = &r[n..];
    }
    if !rest.is_empty() {
        return Err(format!("version `{s}`: unexpected `{rest}`"));
    }
    Ok(Version {
        numbers,
        letter,
        suffixes,
        revision,
    })
}

fn parse_slot(s: &str) -> Res<SlotDep> {
    match s {
        "" => return Err("empty slot after `:`".into()),
        "*" => return Ok(SlotDep::Any),
        "=" => return Ok(SlotDep::Equal),
        _ => {}
    }
    if s.ends_with('*') {
        return Err(format!(
            "slot `:{s}`: `*` stands alone (`:*`), it cannot follow a slot"
        ));
    }
    let (body, equal) = match s.strip_suffix('=') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let (slot, subslot) = match body.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (body, None),
    };
    check_name("slot", slot, &['+', '.', '-'])?;
    if let Some(sub) = subslot {
        check_name("sub-slot", sub, &['+', '.', '-'])?;
    }
    Ok(SlotDep::Slot {
        slot: slot.to_owned(),
        subslot: subslot.map(str::to_owned),
        equal,
    })
}

fn parse_use_deps(list: &str) -> Res<Vec<UseDep>> {
    let mut deps: Vec<UseDep> = Vec::new();
    for token in list.split(',') {
        let dep = parse_use_dep(token)?;
        // Portage: a flag with a default may not also appear with the other default or
        // without one.
        if let Some(other) = deps
            .iter()
            .find(|d| d.flag == dep.flag && d.default != dep.default)
        {
            return Err(format!(
                "USE dependency `{dep}` conflicts with `{other}`: a flag's default must be the same everywhere in `[...]`"
            ));
        }
        deps.push(dep);
    }
    deps.sort_by(|a, b| (&a.flag, a.kind, a.default).cmp(&(&b.flag, b.kind, b.default)));
    deps.dedup();
    Ok(deps)
}

fn parse_use_dep(token: &str) -> Res<UseDep> {
    let bad = |why: &str| Err(format!("bad USE dependency `{token}`: {why}"));
    let (prefix, rest) = match token.chars().next() {
        Some(c @ ('!' | '-')) => (Some(c), &token[1..]),
        _ => (None, token),
    };
    let flag_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || b"+_@-".contains(b))
        .count();
    let flag = &rest[..flag_len];
    match flag.chars().next() {
        None if token.is_empty() => return bad("empty"),
        None => return bad("no flag name"),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return bad("a flag name starts with a letter or digit")
        }
        Some(_) => {}
    }
    let mut rest = &rest[flag_len..];
    let mut default = None;
    if let Some(r) = rest.strip_prefix("(+)") {
        default = Some(UseDefault::Enabled);
        rest = r;
    } else if let Some(r) = rest.strip_prefix("(-)") {
        default = Some(UseDefault::Disabled);
        rest = r;
    }
    let suffix = match rest {
        "" => None,
        "?" => Some('?'),
        "=" => Some('='),
        _ => {
            return bad(&format!(
                "unexpected `{rest}` (a default `(+)`/`(-)` goes right after the flag, then `=` or `?`)"
            ))
        }
    };
    let kind = match (prefix, suffix) {
        (None, None) => UseDepKind::Enabled,
        (Some('-'), None) => UseDepKind::Disabled,
        (None, Some('=')) => UseDepKind::Equal,
        (Some('!'), Some('=')) => UseDepKind::NotEqual,
        (None, Some('?')) => UseDepKind::IfEnabled,
        (Some('!'), Some('?')) => UseDepKind::IfDisabled,
        (Some('!'), None) => return bad("`!` needs a trailing `=` or `?`"),
        _ => return bad("`-` cannot be combined with `=` or `?`"),
    };
    Ok(UseDep {
        kind,
        flag: flag.to_owned(),
        default,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: ParseOptions = ParseOptions {
        allow_blockers: false,
        allow_repo: true,
    };
    const BLOCKERS: ParseOptions = ParseOptions {
        allow_blockers: true,
        allow_repo: true,
    };
    const NO_REPO: ParseOptions = ParseOptions {
        allow_blockers: false,
        allow_repo: false,
    };

    /// `expect` is the normalized form for a valid atom, or `invalid: <reason>`.
    fn check(opts: ParseOptions, input: &str, expect: &str) {
        let got = match Atom::parse(input, opts) {
            Ok(a) => {
                let again = Atom::parse(&a.to_string(), opts).expect("normalized form parses");
                assert_eq!(again, a, "round trip of `{input}`");
                a.to_string()
            }
            Err(e) => format!("invalid: {}", e.reason),
        };
        assert_eq!(got, expect, "input `{input}`");
    }

    #[test]
    fn valid_atoms_and_their_normal_form() {
        for (input, expect) in [
            ("sys-apps/systemd", "sys-apps/systemd"),
            (">=dev-lang/python-3.11:3.11", ">=dev-lang/python-3.11:3.11"),
            (
                "=dev-libs/foo-1.2.3b_rc1_p2-r3",
                "=dev-libs/foo-1.2.3b_rc1_p2-r3",
            ),
            ("=dev-libs/foo-1*", "=dev-libs/foo-1*"),
            ("~dev-libs/foo-1.0", "~dev-libs/foo-1.0"),
            ("<dev-libs/foo-2_alpha", "<dev-libs/foo-2_alpha"),
            ("app-misc/foo-r1", "app-misc/foo-r1"),
            ("=app-misc/foo-1-r1", "=app-misc/foo-1-r1"),
            ("=dev-libs/foo-bar-1a", "=dev-libs/foo-bar-1a"),
            ("dev-libs/foo:=", "dev-libs/foo:="),
            ("dev-libs/foo:*", "dev-libs/foo:*"),
            ("dev-libs/foo:2/2.1=", "dev-libs/foo:2/2.1="),
            ("dev-libs/foo::gentoo", "dev-libs/foo::gentoo"),
            (
                "dev-libs/foo[ssl,-gtk,x=,!y=,z?,!w?,a(+),b(-)]",
                "dev-libs/foo[a(+),b(-),-gtk,ssl,!w?,x=,!y=,z?]",
            ),
            ("dev-libs/foo[b,a,b]", "dev-libs/foo[a,b]"),
            ("dev-libs/foo[a,-a]", "dev-libs/foo[a,-a]"),
        ] {
            check(PLAIN, input, expect);
        }
    }

    #[test]
    fn invalid_atoms_say_why() {
        for (input, expect) in [
            ("", "invalid: empty atom"),
            ("not-an-atom", "invalid: missing `/` between category and package"),
            ("dev-libs/foo-1", "invalid: package name `foo-1` ends in `-1`, which is a version; a version needs an operator (`=`, `>=`, ...)"),
            ("dev-libs/foo-bar-1a", "invalid: package name `foo-bar-1a` ends in `-1a`, which is a version; a version needs an operator (`=`, `>=`, ...)"),
            ("=dev-libs/foo", "invalid: the operator `=` needs a version (`=dev-libs/foo-1.0`)"),
            (">=dev-libs/foo-1*", "invalid: a trailing `*` needs the `=` operator"),
            ("=dev-libs/foo-1_gamma", "invalid: version `1_gamma`: unknown suffix `_gamma` (want _alpha, _beta, _pre, _rc or _p)"),
            ("dev-libs/foo:2*", "invalid: slot `:2*`: `*` stands alone (`:*`), it cannot follow a slot"),
            ("dev-libs/foo:", "invalid: empty slot after `:`"),
            ("dev-libs/foo[]", "invalid: bad USE dependency ``: empty"),
            ("dev-libs/foo[!a]", "invalid: bad USE dependency `!a`: `!` needs a trailing `=` or `?`"),
            ("dev-libs/foo[-a?]", "invalid: bad USE dependency `-a?`: `-` cannot be combined with `=` or `?`"),
            ("dev-libs/foo[a?(+)]", "invalid: bad USE dependency `a?(+)`: unexpected `?(+)` (a default `(+)`/`(-)` goes right after the flag, then `=` or `?`)"),
            ("dev-libs/foo[a(+),a(-)]", "invalid: USE dependency `a(-)` conflicts with `a(+)`: a flag's default must be the same everywhere in `[...]`"),
            ("dev-libs/foo[a", "invalid: USE dependencies `[...]` must end the atom with `]`"),
            ("!dev-libs/foo", "invalid: blockers (`!`, `!!`) are not allowed here"),
            (" dev-libs/foo", "invalid: category ` dev-libs` must start with a letter, digit or `_`, not ` `"),
            ("dev-libs/föo", "invalid: package name `föo` contains `ö`"),
        ] {
            check(PLAIN, input, expect);
        }
    }

    #[test]
    fn options() {
        check(BLOCKERS, "!dev-libs/foo", "!dev-libs/foo");
        check(BLOCKERS, "!!<dev-libs/foo-2", "!!<dev-libs/foo-2");
        check(
            BLOCKERS,
            "!!!dev-libs/foo",
            "invalid: category `!dev-libs` must start with a letter, digit or `_`, not `!`",
        );
        check(
            NO_REPO,
            "dev-libs/foo::gentoo",
            "invalid: a repository (`::repo`) is not allowed here",
        );
    }

    #[test]
    fn length_limits_of_category_and_package() {
        let a = |n: usize| "a".repeat(n);
        // Category and package name: NAME_MAX each.
        let ok = format!("{}/foo", a(255));
        check(PLAIN, &ok, &ok);
        check(
            PLAIN,
            &format!("{}/foo", a(256)),
            "invalid: category is 256 bytes; at most 255 (NAME_MAX: a category is a directory of the repository)",
        );
        let ok = format!("app-misc/{}", a(255));
        check(PLAIN, &ok, &ok);
        check(
            PLAIN,
            &format!("app-misc/{}", a(256)),
            "invalid: package name is 256 bytes; at most 255 (NAME_MAX: a package is a directory of its category)",
        );
        check(
            PLAIN,
            &format!("app-misc/{}:0[x]", a(70_000)),
            "invalid: package name is 70000 bytes; at most 255 (NAME_MAX: a package is a directory of its category)",
        );
        // With a version: `${PF}.ebuild` fits in 255 bytes.
        let too_long = "invalid: package name and version is 249 bytes; at most 248 (`${PF}.ebuild` must fit in NAME_MAX = 255 bytes)";
        for (op, glob) in [("=", ""), ("=", "*"), (">=", ""), ("~", "")] {
            let ok = format!("{op}app-misc/{}-1{glob}", a(246));
            check(PLAIN, &ok, &ok);
            check(PLAIN, &format!("{op}app-misc/{}-1{glob}", a(247)), too_long);
            let ok = format!("{op}app-misc/{}-1-r1{glob}", a(243));
            if glob.is_empty() {
                check(PLAIN, &ok, &ok);
            }
            check(
                PLAIN,
                &format!("{op}app-misc/{}-1-r1{glob}", a(244)),
                too_long,
            );
        }
        assert!(Version::parse(&format!("1.{}", "0".repeat(246))).is_ok());
        assert_eq!(
            Version::parse(&format!("1.{}", "0".repeat(247))).unwrap_err().reason,
            "version is 249 bytes; at most 248 (a version is part of the file name `${PF}.ebuild`, at most NAME_MAX = 255 bytes)"
        );
    }

    #[test]
    fn length_limit_of_a_whole_atom() {
        let flags = |n: usize| {
            (0..n)
                .map(|i| format!("f{i:04}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        // 13 + (679 * 6 - 1) + 1 + k + 1 = 4088 + k bytes.
        let atom = |k: usize| format!("dev-libs/foo[{},{}]", flags(679), "x".repeat(k));
        assert_eq!(atom(8).len(), MAX_ATOM);
        check(PLAIN, &atom(8), &atom(8));
        check(
            PLAIN,
            &atom(9),
            "invalid: atom is 4097 bytes; at most 4096 (PATH_MAX; no real atom comes near it)",
        );
        check(
            PLAIN,
            &format!("dev-libs/foo:{}", "s".repeat(5000)),
            "invalid: atom is 5013 bytes; at most 4096 (PATH_MAX; no real atom comes near it)",
        );
        // No `/`: only the whole length counts.
        check(
            PLAIN,
            &"x".repeat(5000),
            "invalid: atom is 5000 bytes; at most 4096 (PATH_MAX; no real atom comes near it)",
        );
    }

    #[test]
    fn messages_quote_the_start_of_a_long_atom() {
        let long = format!("app-misc/{}", "a".repeat(70_000));
        let e = Atom::parse(&long, PLAIN).unwrap_err();
        assert_eq!(e.atom, long);
        assert_eq!(
            e.to_string(),
            format!(
                "invalid atom `app-misc/{}…` (70009 bytes): package name is 70000 bytes; at most 255 (NAME_MAX: a package is a directory of its category)",
                "a".repeat(SHOWN - 9)
            )
        );
        // Cut at a character boundary.
        let e = Atom::parse(&format!("cat/{}", "é".repeat(100)), PLAIN).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "invalid atom `cat/{}…` (204 bytes): ",
                "é".repeat(30)
            )),
            "{e}"
        );
        let e = Atom::parse("dev-libs/foo-1", PLAIN).unwrap_err();
        assert!(
            e.to_string().starts_with("invalid atom `dev-libs/foo-1`: "),
            "{e}"
        );
    }

    #[test]
    fn parts() {
        let a = Atom::parse(
            "!!>=dev-lang/python-3.11.2_rc1-r2:3.11/3.11t=::gentoo[-x(+)]",
            BLOCKERS,
        )
        .unwrap();
        assert_eq!(a.blocker(), Some(Blocker::Strong));
        assert_eq!(a.operator(), Some(Operator::GreaterOrEqual));
        assert_eq!(
            (a.key(), a.category(), a.package()),
            ("dev-lang/python", "dev-lang", "python")
        );
        let v = a.version().unwrap();
        assert_eq!(v.numbers(), ["3", "11", "2"]);
        assert_eq!(v.letter(), None);
        assert_eq!(
            v.suffixes(),
            [Suffix {
                kind: SuffixKind::Rc,
                number: Some("1".into())
            }]
        );
        assert_eq!(v.revision(), Some("2"));
        assert_eq!(
            a.slot(),
            Some(&SlotDep::Slot {
                slot: "3.11".into(),
                subslot: Some("3.11t".into()),
                equal: true
            })
        );
        assert_eq!(a.repo(), Some("gentoo"));
        assert_eq!(
            a.use_deps(),
            [UseDep {
                kind: UseDepKind::Disabled,
                flag: "x".into(),
                default: Some(UseDefault::Enabled)
            }]
        );
        assert!(!a.is_bare());
        assert!(Atom::parse("dev-lang/python", PLAIN).unwrap().is_bare());
    }
}
