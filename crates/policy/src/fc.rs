//! file_contexts(5) as libselinux 3.4 reads and matches them, in Rust.
//!
//! Loading: `FC`, then `FC.homedirs` and `FC.local` when present, one list of specs in that
//! order; path aliases from `FC.subs_dist` and `FC.subs`. Matching (label_file.c of
//! libselinux 3.4): specs whose regex has no meta character ("exact" specs) move behind the
//! others, both groups keeping their order (a stable partition), and the LAST spec that
//! matches wins. A regex is anchored as `^` + regex + `$` (no group around it, as
//! libselinux does), compiled with `.` matching newlines (PCRE2_DOTALL). A spec with a
//! file type matches only files of that type. `<<none>>` means "leave unlabelled". Two
//! specs with the same regex and compatible types are an error, as in libselinux
//! ("Multiple same specifications").
//!
//! For speed, each spec is indexed in a byte trie by its literal prefix (the text before
//! its first meta character, which every matching path starts with): a lookup walks the
//! path through the trie, collects the candidates, and tries them from the highest
//! priority down, so a path meets dozens of regexes instead of thousands.

use regex::bytes::{Regex, RegexBuilder};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Problems in a file_contexts file, with file and line.
#[derive(Debug, thiserror::Error)]
pub enum FcError {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}:{line}: multiple {kind} specifications for `{regex}` (first at {}:{first_line})", path.display(), first_path.display())]
    Duplicate {
        path: PathBuf,
        line: usize,
        kind: &'static str,
        regex: String,
        first_path: PathBuf,
        first_line: usize,
    },
}

/// The file type a spec is limited to (`--`, `-d`, ...): the `S_IFMT` bits, or 0 for any.
fn parse_mode(s: &str) -> Option<u32> {
    Some(match s {
        "--" => 0o100000,
        "-d" => 0o040000,
        "-l" => 0o120000,
        "-c" => 0o020000,
        "-b" => 0o060000,
        "-s" => 0o140000,
        "-p" => 0o010000,
        _ => return None,
    })
}

const META: &[u8] = b".^$?*+|[({";

/// One line of file_contexts.
#[derive(Debug, Clone)]
pub struct Spec {
    pub regex: String,
    /// `S_IFMT` bits, 0 = any type.
    pub mode: u32,
    /// The context, or None for `<<none>>`.
    pub context: Option<String>,
    pub file: PathBuf,
    pub line: usize,
    has_meta: bool,
}

/// The literal text every path matching `regex` (anchored) starts with.
fn literal_prefix(regex: &str) -> Vec<u8> {
    let b = regex.as_bytes();
    // a top-level `|` splits the anchors: `^a|b$` matches paths not starting with `a`
    let mut depth = 0i32;
    let mut i = 0;
    let mut in_class = false;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'(' if !in_class => depth += 1,
            b')' if !in_class => depth -= 1,
            b'|' if !in_class && depth == 0 => return Vec::new(),
            _ => {}
        }
        i += 1;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            match b.get(i + 1) {
                Some(&n) if !n.is_ascii_alphanumeric() => {
                    // an escaped literal, unless a quantifier follows it
                    if matches!(b.get(i + 2), Some(b'?' | b'*' | b'{')) {
                        return out;
                    }
                    out.push(n);
                    i += 2;
                    continue;
                }
                _ => return out,
            }
        }
        if META.contains(&c) {
            if matches!(c, b'?' | b'*' | b'{') {
                out.pop();
            }
            return out;
        }
        out.push(c);
        i += 1;
    }
    out
}

fn has_meta(regex: &str) -> bool {
    let b = regex.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if META.contains(&b[i]) {
            return true;
        }
        i += 1;
    }
    false
}

/// Parse one file_contexts text (no I/O; `file` names it in errors).
pub fn parse(text: &str, file: &Path) -> Result<Vec<Spec>, FcError> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let items: Vec<&str> = line.split_whitespace().collect();
        let syntax = |message: String| FcError::Syntax {
            path: file.to_owned(),
            line: n + 1,
            message,
        };
        let (regex, mode, ctx) = match items.as_slice() {
            [r, c] => (*r, 0, *c),
            [r, m, c] => (
                *r,
                parse_mode(m).ok_or_else(|| syntax(format!("invalid file type `{m}`")))?,
                *c,
            ),
            _ => {
                return Err(syntax(format!(
                    "expected `REGEX [TYPE] CONTEXT`, found `{line}`"
                )))
            }
        };
        out.push(Spec {
            regex: regex.to_owned(),
            mode,
            context: (ctx != "<<none>>").then(|| ctx.to_owned()),
            file: file.to_owned(),
            line: n + 1,
            has_meta: has_meta(regex),
        });
    }
    Ok(out)
}

/// Path aliases (`FC.subs_dist`, `FC.subs`): `alias original` per line.
fn parse_subs(text: &str) -> Vec<(String, String)> {
    let mut subs: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect();
    // libselinux prepends each line to its list: the last line is tried first
    subs.reverse();
    subs
}

fn apply_subs(subs: &[(String, String)], path: &[u8]) -> Option<Vec<u8>> {
    for (src, dst) in subs {
        let s = src.as_bytes();
        if path.starts_with(s) && (path.len() == s.len() || path[s.len()] == b'/') {
            let rest = &path[s.len()..];
            if dst == "/" {
                return Some(rest.to_vec());
            }
            let mut v = dst.as_bytes().to_vec();
            v.extend_from_slice(rest);
            return Some(v);
        }
    }
    None
}

#[derive(Default)]
struct Node {
    children: Vec<(u8, u32)>,
    specs: Vec<u32>,
}

/// A loaded, indexed file_contexts.
pub struct FileContexts {
    /// In priority order: the last matching one wins.
    specs: Vec<Spec>,
    regexes: Vec<Option<Regex>>,
    trie: Vec<Node>,
    dist_subs: Vec<(String, String)>,
    local_subs: Vec<(String, String)>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

fn read_optional(path: &Path) -> Result<Option<String>, FcError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FcError::Io {
            path: path.to_owned(),
            cause: source,
        }),
    }
}

fn sibling(fc: &Path, suffix: &str) -> PathBuf {
    let mut s = fc.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

impl FileContexts {
    /// Load `fc` and its `.homedirs`, `.local`, `.subs_dist`, `.subs` companions.
    pub fn load(fc: &Path) -> Result<FileContexts, FcError> {
        let base = fs::read(fc).map_err(|source| FcError::Io {
            path: fc.to_owned(),
            cause: source,
        })?;
        let mut specs = parse(&String::from_utf8_lossy(&base), fc)?;
        // libselinux checks duplicates within the base file only (when validating, as Keel
        // always does): `.homedirs` and `.local` may repeat a regex, and then win
        check_duplicates(&specs)?;
        let mut files = vec![fc.to_owned()];
        for suffix in [".homedirs", ".local"] {
            let p = sibling(fc, suffix);
            if let Some(text) = read_optional(&p)? {
                specs.extend(parse(&text, &p)?);
                files.push(p);
            }
        }
        let dist_subs = read_optional(&sibling(fc, ".subs_dist"))?
            .map(|t| parse_subs(&t))
            .unwrap_or_default();
        let local_subs = read_optional(&sibling(fc, ".subs"))?
            .map(|t| parse_subs(&t))
            .unwrap_or_default();
        Self::index(specs, dist_subs, local_subs, files)
    }

    /// Index specs (in file order) the way libselinux orders them.
    pub fn from_specs(
        specs: Vec<Spec>,
        dist_subs: Vec<(String, String)>,
        local_subs: Vec<(String, String)>,
        files: Vec<PathBuf>,
    ) -> Result<FileContexts, FcError> {
        check_duplicates(&specs)?;
        FileContexts::index(specs, dist_subs, local_subs, files)
    }

    fn index(
        specs: Vec<Spec>,
        dist_subs: Vec<(String, String)>,
        local_subs: Vec<(String, String)>,
        files: Vec<PathBuf>,
    ) -> Result<FileContexts, FcError> {
        // stable partition: regex specs first, exact paths last
        let (mut ordered, exact): (Vec<Spec>, Vec<Spec>) =
            specs.into_iter().partition(|s| s.has_meta);
        ordered.extend(exact);
        FileContexts::build(ordered, dist_subs, local_subs, files)
    }
}

/// Two specs with the same regex and types equal or one of them "any" (libselinux's
/// nodups_specs).
pub fn check_duplicates(specs: &[Spec]) -> Result<(), FcError> {
    let mut seen: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in specs.iter().enumerate() {
        let prev = seen.entry(s.regex.as_str()).or_default();
        if let Some(&j) = prev
            .iter()
            .find(|&&j| specs[j].mode == 0 || s.mode == 0 || specs[j].mode == s.mode)
        {
            let f = &specs[j];
            return Err(FcError::Duplicate {
                path: s.file.clone(),
                line: s.line,
                kind: if f.context == s.context {
                    "same"
                } else {
                    "different"
                },
                regex: s.regex.clone(),
                first_path: f.file.clone(),
                first_line: f.line,
            });
        }
        prev.push(i);
    }
    Ok(())
}

impl FileContexts {
    fn build(
        ordered: Vec<Spec>,
        dist_subs: Vec<(String, String)>,
        local_subs: Vec<(String, String)>,
        files: Vec<PathBuf>,
    ) -> Result<FileContexts, FcError> {
        let mut regexes = Vec::with_capacity(ordered.len());
        let mut trie = vec![Node::default()];
        for (i, s) in ordered.iter().enumerate() {
            let anchored = format!("^{}$", s.regex);
            let re = if s.has_meta {
                Some(
                    RegexBuilder::new(&anchored)
                        .unicode(false)
                        .dot_matches_new_line(true)
                        .build()
                        .map_err(|e| FcError::Syntax {
                            path: s.file.clone(),
                            line: s.line,
                            message: format!("invalid regular expression `{}`: {e}", s.regex),
                        })?,
                )
            } else {
                None
            };
            regexes.push(re);
            let prefix = if s.has_meta {
                literal_prefix(&s.regex)
            } else {
                unescape(&s.regex)
            };
            let mut node = 0usize;
            for &b in &prefix {
                node = match trie[node].children.iter().find(|(c, _)| *c == b) {
                    Some(&(_, n)) => n as usize,
                    None => {
                        trie.push(Node::default());
                        let n = trie.len() - 1;
                        trie[node].children.push((b, n as u32));
                        n
                    }
                };
            }
            trie[node].specs.push(i as u32);
        }
        Ok(FileContexts {
            specs: ordered,
            regexes,
            trie,
            dist_subs,
            local_subs,
            files,
        })
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The spec that labels `path` (absolute, as seen in the image) of file type `mode`
    /// (`st_mode`), after path aliases. None: no spec matches.
    pub fn lookup(&self, path: &[u8], mode: u32) -> Option<&Spec> {
        let subbed;
        let mut key = path;
        if let Some(p) = apply_subs(&self.dist_subs, key) {
            subbed = apply_subs(&self.local_subs, &p).unwrap_or(p);
            key = &subbed;
        } else if let Some(p) = apply_subs(&self.local_subs, key) {
            subbed = p;
            key = &subbed;
        }
        let ftype = mode & 0o170000;
        let mut cands: Vec<u32> = Vec::with_capacity(64);
        let mut node = 0usize;
        cands.extend_from_slice(&self.trie[0].specs);
        for &b in key {
            match self.trie[node].children.iter().find(|(c, _)| *c == b) {
                Some(&(_, n)) => {
                    node = n as usize;
                    cands.extend_from_slice(&self.trie[node].specs);
                }
                None => break,
            }
        }
        cands.sort_unstable_by(|a, b| b.cmp(a));
        for i in cands {
            let s = &self.specs[i as usize];
            if s.mode != 0 && ftype != 0 && s.mode != ftype {
                continue;
            }
            let hit = match &self.regexes[i as usize] {
                Some(re) => re.is_match(key),
                None => unescape(&s.regex) == key,
            };
            if hit {
                return Some(s);
            }
        }
        None
    }

    /// The first file and line that use `context`.
    pub fn where_context(&self, context: &str) -> Option<(&Path, usize)> {
        self.specs
            .iter()
            .filter(|s| s.context.as_deref() == Some(context))
            .min_by_key(|s| (self.files.iter().position(|f| *f == s.file), s.line))
            .map(|s| (s.file.as_path(), s.line))
    }

    /// Every distinct context of the specs (for validation against a policy).
    pub fn contexts(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .specs
            .iter()
            .filter_map(|s| s.context.as_deref())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

fn unescape(regex: &str) -> Vec<u8> {
    let b = regex.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            i += 1;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(text: &str) -> FileContexts {
        let specs = parse(text, Path::new("t.fc")).unwrap();
        FileContexts::from_specs(specs, vec![], vec![], vec![]).unwrap()
    }
    fn ctx(f: &FileContexts, p: &str, mode: u32) -> Option<String> {
        f.lookup(p.as_bytes(), mode).and_then(|s| s.context.clone())
    }

    #[test]
    fn last_match_wins_and_exact_paths_last() {
        let f = fc("/usr/bin/x\tu:r:exact_t:s0\n/usr(/.*)?\tu:r:usr_t:s0\n/usr/bin(/.*)?\tu:r:bin_t:s0\n/usr/bin/y\t--\t<<none>>\n");
        assert_eq!(
            ctx(&f, "/usr/lib/a", 0o100644).as_deref(),
            Some("u:r:usr_t:s0")
        );
        assert_eq!(
            ctx(&f, "/usr/bin/a", 0o100644).as_deref(),
            Some("u:r:bin_t:s0")
        );
        assert_eq!(
            ctx(&f, "/usr/bin/x", 0o100644).as_deref(),
            Some("u:r:exact_t:s0")
        );
        assert!(f.lookup(b"/usr/bin/y", 0o100644).unwrap().context.is_none());
        // a typed spec does not match another type
        assert_eq!(
            ctx(&f, "/usr/bin/y", 0o040755).as_deref(),
            Some("u:r:bin_t:s0")
        );
        assert!(f.lookup(b"/etc", 0o040755).is_none());
    }

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("/usr/lib(/.*)?"), b"/usr/lib");
        assert_eq!(literal_prefix("/usr/libx?"), b"/usr/lib");
        assert_eq!(literal_prefix("/etc/foo\\.conf.*"), b"/etc/foo.conf");
        assert_eq!(literal_prefix("/a|/b"), b"");
        assert_eq!(literal_prefix("/(a|b)/c"), b"/");
        assert_eq!(literal_prefix("/x\\d+"), b"/x");
    }

    #[test]
    fn duplicates_are_errors() {
        let specs = parse(
            "/a(/.*)?\tu:r:a_t:s0\n/a(/.*)?\t-d\tu:r:a_t:s0\n",
            Path::new("t.fc"),
        )
        .unwrap();
        let e = FileContexts::from_specs(specs, vec![], vec![], vec![])
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "t.fc:2: multiple same specifications for `/a(/.*)?` (first at t.fc:1)"
        );
        let specs = parse(
            "/a\t--\tu:r:a_t:s0\n/a\t-d\tu:r:b_t:s0\n",
            Path::new("t.fc"),
        )
        .unwrap();
        assert!(FileContexts::from_specs(specs, vec![], vec![], vec![]).is_ok());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = parse("/a u:r:a_t:s0\n/b -x u:r:b_t:s0\n", Path::new("t.fc")).unwrap_err();
        assert_eq!(e.to_string(), "t.fc:2: invalid file type `-x`");
        let specs = parse("/a(\tu:r:a_t:s0\n", Path::new("t.fc")).unwrap();
        let e = FileContexts::from_specs(specs, vec![], vec![], vec![])
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("t.fc:1: invalid regular expression `/a(`"),
            "{e}"
        );
    }

    #[test]
    fn aliases() {
        let specs = parse("/usr/lib(/.*)?\tu:r:lib_t:s0\n", Path::new("t.fc")).unwrap();
        let subs = parse_subs("/lib /usr/lib\n/lib64 /usr/lib\n");
        let f = FileContexts::from_specs(specs, subs, vec![], vec![]).unwrap();
        assert_eq!(
            ctx(&f, "/lib64/x", 0o100644).as_deref(),
            Some("u:r:lib_t:s0")
        );
        assert_eq!(ctx(&f, "/lib", 0o040755).as_deref(), Some("u:r:lib_t:s0"));
        assert!(f.lookup(b"/libx", 0o040755).is_none());
    }
}
