//! From parsed files to the ordered list of operations systemd-tmpfiles would run:
//! `--boot` and prefix filtering, specifier expansion, `/var/run` → `/run`, user and group
//! lookup in the TARGET root's databases, first-line-wins with the combinations systemd
//! allows, and the processing order (parents first, plain paths before globs). Pure.

use crate::entry::{parse_line, Entry, Mode};
use crate::spec::{SpecError, Specifiers};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Where a line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A problem with one line; the line is skipped, the rest still applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub source: Source,
    pub message: String,
    /// True for invalid configuration (systemd exits 65); false for a notice (duplicate
    /// line, unresolvable specifier).
    pub error: bool,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// Users and groups of the target root (`/etc/passwd`, `/etc/group` contents).
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

fn db(text: &str, id_field: usize) -> HashMap<String, u32> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() <= id_field || f[0].is_empty() || f[0].starts_with(['+', '-']) {
            continue;
        }
        if let Ok(id) = f[id_field].parse::<u32>() {
            m.entry(f[0].to_owned()).or_insert(id);
        }
    }
    m
}

/// A numeric uid/gid as systemd's `parse_uid()` accepts it.
fn numeric_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse::<u32>()
        .ok()
        .filter(|&v| v != u32::MAX && v != 65535)
}

impl Users {
    pub fn new(passwd: &str, group: &str) -> Users {
        Users {
            users: db(passwd, 2),
            groups: db(group, 2),
        }
    }
    pub fn uid(&self, name: &str) -> Option<u32> {
        numeric_id(name).or_else(|| {
            if name == "root" {
                Some(0)
            } else {
                self.users.get(name).copied()
            }
        })
    }
    pub fn gid(&self, name: &str) -> Option<u32> {
        numeric_id(name).or_else(|| {
            if name == "root" {
                Some(0)
            } else {
                self.groups.get(name).copied()
            }
        })
    }
}

/// Which lines to consider, as `--boot`, `--prefix`, `--exclude-prefix`.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub boot: bool,
    pub prefixes: Vec<String>,
    pub exclude_prefixes: Vec<String>,
}

/// The argument, decoded for its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    None,
    /// f, w: bytes to write.
    Data(Vec<u8>),
    /// L: the link target.
    Target(String),
    /// C: the source path inside the root.
    CopyFrom(String),
    /// c, b: major and minor.
    Dev(u32, u32),
    /// t, T: name and value pairs.
    Xattrs(Vec<(String, String)>),
    /// h, H: operation (`+ - =`) and letters.
    Attrs(char, String),
    /// a, A: the access and default ACLs, qualifiers resolved in the root; without `+`
    /// the mask is already computed.
    Acl(crate::acl::Spec),
}

/// One operation, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub source: Source,
    /// The line as parsed.
    pub entry: Entry,
    /// Canonical type letter (`F` → `f`, `m` → `z`).
    pub kind: char,
    /// The `+` modifier (or the legacy `F`).
    pub plus: bool,
    /// Absolute, simplified path inside the root.
    pub path: String,
    pub mode: Option<Mode>,
    /// The mode used when creating without a mode field.
    pub default_mode: u32,
    pub uid: Option<(u32, bool)>,
    pub gid: Option<(u32, bool)>,
    pub arg: Arg,
}

impl Item {
    pub fn is_glob_type(&self) -> bool {
        self.entry.takes_glob()
    }
    fn compatible(&self, o: &Item) -> bool {
        if !(self.entry.takes_ownership() && o.entry.takes_ownership()) {
            return true;
        }
        self.arg == o.arg
            && self.uid == o.uid
            && self.gid == o.gid
            && self.mode == o.mode
            && self.default_mode == o.default_mode
            && self.entry.age == o.entry.age
    }
    fn is_append(&self) -> bool {
        self.kind == 'w' && self.plus
    }
}

/// The result: operations in the order systemd would run them, and the skipped lines.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub items: Vec<Item>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Plan {
    /// Whether a line was invalid (systemd would exit 65).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.error)
    }
}

/// `path_simplify()`: drop empty and `.` components and trailing slashes; keep `..`.
pub fn simplify(path: &str) -> String {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let mut s = String::with_capacity(path.len());
    if path.starts_with('/') {
        s.push('/');
    }
    s.push_str(&comps.join("/"));
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// `path_startswith()` on simplified absolute paths: component-wise prefix.
pub fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let p = simplify(prefix);
    if p == "/" {
        return path.starts_with('/');
    }
    path == p || path.strip_prefix(&p).is_some_and(|r| r.starts_with('/'))
}

struct Array {
    path: String,
    glob: bool,
    items: Vec<Item>,
}

/// Build the plan from files given as (name for messages, lines), in processing order.
pub fn plan(
    files: &[(String, Vec<String>)],
    spec: &Specifiers,
    users: &Users,
    opts: &Options,
) -> Plan {
    let mut diagnostics = Vec::new();
    let mut arrays: Vec<Array> = Vec::new();
    let mut index: HashMap<(bool, String), usize> = HashMap::new();
    for (file, lines) in files {
        for (n, line) in lines.iter().enumerate() {
            let source = Source {
                file: file.clone(),
                line: n + 1,
            };
            let item = match resolve_line(line, spec, users, opts) {
                Ok(Some(i)) => i,
                Ok(None) => continue,
                Err((message, error)) => {
                    diagnostics.push(Diagnostic {
                        source,
                        message,
                        error,
                    });
                    continue;
                }
            };
            let mut item = item;
            item.source = source.clone();
            let key = (item.is_glob_type(), item.path.clone());
            match index.get(&key) {
                Some(&a) => {
                    let dup = arrays[a]
                        .items
                        .iter()
                        .any(|e| !(e.compatible(&item) || e.is_append() && item.is_append()));
                    if dup {
                        diagnostics.push(Diagnostic {
                            source,
                            message: format!("duplicate line for path \"{}\", ignoring", item.path),
                            error: false,
                        });
                        continue;
                    }
                    arrays[a].items.push(item);
                }
                None => {
                    index.insert(key.clone(), arrays.len());
                    arrays.push(Array {
                        path: key.1,
                        glob: key.0,
                        items: vec![item],
                    });
                }
            }
        }
    }
    for a in &mut arrays {
        a.items
            .sort_by_key(|i| (!i.entry.takes_ownership(), i.entry.kind as u32));
    }
    // Parent: the array of the longest proper prefix path, plain paths before globs. Only
    // prefixes as long as some array's path are looked up: a path of thousands of
    // components costs one pass, not a copy and a hash of every prefix (quadratic).
    let lengths: HashSet<usize> = arrays.iter().map(|a| a.path.len()).collect();
    let parent: Vec<Option<usize>> = arrays
        .iter()
        .map(|a| {
            let mut p = a.path.as_str();
            while let Some(pos) = p.rfind('/') {
                p = if pos == 0 { "/" } else { &p[..pos] };
                if p == a.path {
                    break;
                }
                if !lengths.contains(&p.len()) {
                    if p == "/" {
                        break;
                    }
                    continue;
                }
                if let Some(&i) = index
                    .get(&(false, p.to_owned()))
                    .or_else(|| index.get(&(true, p.to_owned())))
                {
                    return Some(i);
                }
                if p == "/" {
                    break;
                }
            }
            None
        })
        .collect();
    let mut done = vec![false; arrays.len()];
    let mut order = Vec::with_capacity(arrays.len());
    fn visit(
        i: usize,
        parent: &[Option<usize>],
        done: &mut [bool],
        order: &mut Vec<usize>,
        depth: usize,
    ) {
        if done[i] || depth > 256 {
            return;
        }
        if let Some(p) = parent[i] {
            visit(p, parent, done, order, depth + 1);
        }
        if !done[i] {
            done[i] = true;
            order.push(i);
        }
    }
    for glob in [false, true] {
        for (i, a) in arrays.iter().enumerate() {
            if a.glob == glob {
                visit(i, &parent, &mut done, &mut order, 0);
            }
        }
    }
    let mut slots: Vec<Option<Array>> = arrays.into_iter().map(Some).collect();
    let items = order
        .into_iter()
        .flat_map(|i| slots[i].take().map(|a| a.items).unwrap_or_default())
        .collect();
    Plan { items, diagnostics }
}

fn spec_err(e: SpecError, what: &str) -> (String, bool) {
    match e {
        SpecError::Unknown(_) => (format!("failed to replace specifiers in {what}: {e}"), true),
        SpecError::Unresolvable(_) => (format!("{e}, skipping"), false),
    }
}

/// Base64 as systemd's `unbase64mem()`: whitespace ignored, padding optional.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut pad = false;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad = true;
                continue;
            }
            c if crate::escape::is_ws(c) => continue,
            _ => return None,
        };
        if pad {
            return None;
        }
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (bits < 6 && acc == 0).then_some(out)
}

/// One line to an item: Ok(None) for comments, lines filtered out, and lines systemd
/// skips quietly; Err((message, is_error)) for lines reported and skipped.
pub fn resolve_line(
    line: &str,
    spec: &Specifiers,
    users: &Users,
    opts: &Options,
) -> Result<Option<Item>, (String, bool)> {
    let entry = match parse_line(line) {
        Ok(Some(e)) => e,
        Ok(None) => return Ok(None),
        Err(e) => return Err((e.0, true)),
    };
    if entry.modifiers.boot && !opts.boot {
        return Ok(None);
    }
    if entry.modifiers.purge || entry.modifiers.credential {
        // `$` lines only matter to --purge; `^` credentials do not exist at build time
        // (systemd skips a line whose credential is not set).
        if entry.modifiers.credential {
            return Ok(None);
        }
    }
    let expanded = spec
        .expand(&entry.path)
        .map_err(|e| spec_err(e, &format!("'{}'", entry.path)))?;
    let mut path = simplify(&expanded);
    if let Some(rest) = path.strip_prefix("/var/run/") {
        path = format!("/run/{rest}");
    }
    if !path.starts_with('/') {
        return Err((format!("path '{expanded}' not absolute"), true));
    }
    let included = !opts
        .exclude_prefixes
        .iter()
        .any(|p| path_has_prefix(&path, p))
        && (opts.prefixes.is_empty() || opts.prefixes.iter().any(|p| path_has_prefix(&path, p)));
    if !included {
        return Ok(None);
    }
    let (kind, plus) = entry.canonical_kind();
    let raw = entry.argument.clone();
    let text = |s: &str| -> Result<Vec<u8>, (String, bool)> {
        let b = crate::escape::unescape(s)
            .map_err(|e| (format!("failed to unescape parameter: {e}"), true))?;
        match String::from_utf8(b) {
            Ok(t) => spec
                .expand(&t)
                .map(String::into_bytes)
                .map_err(|e| spec_err(e, "argument")),
            Err(e) => Ok(e.into_bytes()),
        }
    };
    let text_string = |s: &str| text(s).map(|b| String::from_utf8_lossy(&b).into_owned());
    let arg = match (kind, raw.as_deref()) {
        ('f' | 'w', Some(a)) if entry.modifiers.base64 => {
            // Invalid configuration (65); systemd 252 stops the whole run there (exit 1).
            Arg::Data(base64_decode(a).ok_or_else(|| {
                (
                    format!("failed to base64 decode specified argument '{a}'"),
                    true,
                )
            })?)
        }
        ('f' | 'w', Some(a)) => Arg::Data(text(a)?),
        ('f' | 'w', None) => Arg::None,
        ('L', Some(a)) => Arg::Target(text_string(a)?),
        ('L', None) => Arg::Target(format!("/usr/share/factory{path}")),
        ('C', Some(a)) => Arg::CopyFrom(simplify(&text_string(a)?)),
        ('C', None) => Arg::CopyFrom(format!("/usr/share/factory{path}")),
        ('c' | 'b', Some(a)) => {
            let (ma, mi) = crate::entry::parse_devnum(a)
                .ok_or_else(|| (format!("can't parse device numbers '{a}'"), true))?;
            Arg::Dev(ma, mi)
        }
        ('t' | 'T', Some(a)) => {
            let pairs = crate::entry::parse_xattrs(a).map_err(|e| (e.0, true))?;
            let mut out = Vec::new();
            for (n, v) in pairs {
                let nv = spec
                    .expand(&format!("{n}={v}"))
                    .map_err(|e| spec_err(e, "argument"))?;
                let (n, v) = nv.split_once('=').unwrap_or((&nv, ""));
                out.push((n.to_owned(), v.to_owned()));
            }
            Arg::Xattrs(out)
        }
        ('h' | 'H', Some(a)) => {
            let (op, l) = crate::entry::parse_attributes(a).map_err(|e| (e.0, true))?;
            Arg::Attrs(op, l)
        }
        ('a' | 'A', Some(a)) => {
            let resolve = |k: crate::acl::IdKind, name: &str| match k {
                crate::acl::IdKind::User => users.uid(name),
                crate::acl::IdKind::Group => users.gid(name),
            };
            // systemd 252 warns and applies nothing (the exit status stays 0).
            let spec = crate::acl::parse(a, &resolve, !plus)
                .map_err(|e| (format!("failed to parse ACL \"{a}\": {e}, ignoring"), false))?;
            Arg::Acl(spec)
        }
        _ => Arg::None,
    };
    let owner = |o: &Option<crate::entry::Owner>,
                 user: bool|
     -> Result<Option<(u32, bool)>, (String, bool)> {
        let Some(o) = o else { return Ok(None) };
        let id = if user {
            users.uid(&o.name)
        } else {
            users.gid(&o.name)
        };
        match id {
            Some(id) => Ok(Some((id, o.only_create))),
            None => Err((
                format!(
                    "failed to resolve {} '{}': no such {0} in the root",
                    if user { "user" } else { "group" },
                    o.name
                ),
                true,
            )),
        }
    };
    let uid = owner(&entry.user, true)?;
    let gid = owner(&entry.group, false)?;
    let default_mode = if "dDvqQ".contains(kind) { 0o755 } else { 0o644 };
    Ok(Some(Item {
        source: Source {
            file: String::new(),
            line: 0,
        },
        mode: entry.mode,
        entry,
        kind,
        plus,
        path,
        default_mode,
        uid,
        gid,
        arg,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(files: &[(&str, &str)], opts: &Options) -> Plan {
        let files: Vec<(String, Vec<String>)> = files
            .iter()
            .map(|(n, t)| (n.to_string(), t.lines().map(String::from).collect()))
            .collect();
        let spec = Specifiers::system(Some("ID=keel\n"), None, &Default::default());
        let users = Users::new(
            "root:x:0:0::/root:/bin/sh\nalice:x:4242:4242::/:/bin/sh\n",
            "root:x:0:\nstaff:x:4343:\n",
        );
        plan(&files, &spec, &users, opts)
    }

    fn paths(p: &Plan) -> Vec<String> {
        p.items
            .iter()
            .map(|i| format!("{} {}", i.entry.kind, i.path))
            .collect()
    }

    #[test]
    fn first_line_wins_and_allowed_combinations() {
        let p = run(
            &[
                ("a.conf", "d /x 0700\nd /x 0755\nz /x 0700\nw+ /f - - - - a\nw+ /f - - - - b\nw /g - - - - a\nw /g - - - - b\nd /y 0700\nd /y 0700"),
            ],
            &Options::default(),
        );
        assert_eq!(
            paths(&p),
            ["d /x", "d /y", "d /y", "z /x", "w /f", "w /f", "w /g"]
        );
        let dups: Vec<usize> = p.diagnostics.iter().map(|d| d.source.line).collect();
        assert_eq!(dups, [2, 7]);
        assert!(!p.has_errors());
    }

    #[test]
    fn ordering_parents_first_and_type_order() {
        let p = run(
            &[(
                "a.conf",
                "d /a/b/c\nz /a/b 0700\nd /a/b 0711\nf /a/b 0600\nd /a",
            )],
            &Options::default(),
        );
        // /a/b is a parent of /a/b/c: its array runs first; ownership-taking types first;
        // z is a glob type and runs with the globs after all plain paths.
        assert_eq!(paths(&p), ["d /a", "d /a/b", "d /a/b/c", "z /a/b"]);
        assert_eq!(p.diagnostics.len(), 1, "{:?}", p.diagnostics);
    }

    /// Found by the fuzzer (crates/fuzz, target tmpfiles): the parent search copied and
    /// hashed every prefix of a path, so a 40 KB path of 8,000 components took 1.5 s to
    /// plan in a debug build (quadratic in the path's length).
    #[test]
    fn a_path_of_many_components_plans_in_one_pass() {
        let deep = "/x".repeat(30_000);
        let t = std::time::Instant::now();
        let p = run(
            &[("a.conf", &format!("d {deep}/y\nd {deep}\nd /x"))],
            &Options::default(),
        );
        let took = t.elapsed();
        assert_eq!(
            paths(&p),
            [
                "d /x".to_owned(),
                format!("d {deep}"),
                format!("d {deep}/y")
            ]
        );
        assert!(took.as_secs_f64() < 1.0, "{took:?}");
    }

    #[test]
    fn filters_users_specifiers() {
        let opts = Options {
            boot: false,
            prefixes: vec![],
            exclude_prefixes: vec!["/var".into()],
        };
        let p = run(
            &[("a.conf", "d /var/x\nd! /boot-only\nd /run/%o 0700 alice staff\nd /m/%m\nd /u - nobody\nd relative\nL /var/run/foo\nd /%Q")],
            &opts,
        );
        assert_eq!(paths(&p), ["d /run/keel", "L /run/foo"]);
        assert_eq!(p.items[0].uid, Some((4242, false)));
        assert_eq!(p.items[0].gid, Some((4343, false)));
        let lines: Vec<(usize, bool)> = p
            .diagnostics
            .iter()
            .map(|d| (d.source.line, d.error))
            .collect();
        assert_eq!(lines, [(4, false), (5, true), (6, true), (8, true)]);
    }

    #[test]
    fn acl_lines() {
        let p = run(
            &[(
                "a.conf",
                "a /x - - - - u:alice:rw,d:g:staff:r\na+ /y - - - - u:4242:rwx\na /z - - - - u:bob:rw\na /w - - - - u::rwX\na /v",
            )],
            &Options::default(),
        );
        assert_eq!(paths(&p), ["a /x", "a /y"]);
        let Arg::Acl(s) = &p.items[0].arg else {
            panic!("{:?}", p.items[0].arg)
        };
        // Names from the root's databases; the mask computed without `+` only.
        assert_eq!(s.access.as_ref().unwrap().to_string(), "u:4242:rw-,m::rw-");
        assert_eq!(s.default.as_ref().unwrap().to_string(), "g:4343:r--,m::r--");
        let Arg::Acl(s) = &p.items[1].arg else {
            panic!("{:?}", p.items[1].arg)
        };
        assert_eq!(s.access.as_ref().unwrap().to_string(), "u:4242:rwx");
        // A bad ACL is reported with file:line and skipped; as systemd 252 it is a warning
        // (exit status 0), a missing argument an error.
        let d: Vec<String> = p.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            d,
            [
                "a.conf:3: failed to parse ACL \"u:bob:rw\": invalid ACL entry \"u:bob:rw\": no user \"bob\" in the root, ignoring",
                "a.conf:4: failed to parse ACL \"u::rwX\": invalid ACL entry \"u::rwX\": unknown tag (expected u[ser], g[roup], m[ask] or o[ther]), ignoring",
                "a.conf:5: set ACLs requires argument",
            ]
        );
        let errors: Vec<bool> = p.diagnostics.iter().map(|d| d.error).collect();
        assert_eq!(errors, [false, false, true]);
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert!(base64_decode("a*").is_none());
    }
}
