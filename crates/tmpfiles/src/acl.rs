//! POSIX ACLs for `a`/`A` lines, as systemd-tmpfiles 252 computes them. Pure.
//!
//! - [`parse`]: systemd's `parse_acl()`: the argument is split on `,`, entries starting with
//!   `d:`/`default:` go to the default ACL, the rest to the access ACL, and each list is
//!   read by libacl's `acl_from_text()` grammar (`u[ser]:[Q]:PERMS`, `g[roup]:[Q]:PERMS`,
//!   `m[ask][:]:PERMS`, `o[ther][:]:PERMS`, perms up to three of `r w x -`). A qualifier
//!   is a number as `strtol(…, 0)` reads it (`0x10`, `010`, `-2` = 65534) or a name,
//!   resolved by the caller (in the TARGET root's databases). Without `+` the mask is
//!   computed here, before the base entries exist (as systemd does).
//! - [`Acl::merged`], [`Acl::calc_mask_if_needed`], [`Acl::add_base_if_needed`]: the rest of
//!   tmpfiles' `path_set_acl()`.
//! - [`Acl::encode`] / [`Acl::decode`]: the kernel's `system.posix_acl_*` xattr format.

use std::fmt;

pub const READ: u16 = 4;
pub const WRITE: u16 = 2;
pub const EXECUTE: u16 = 1;

/// Name of the access ACL xattr.
pub const XATTR_ACCESS: &str = "system.posix_acl_access";
/// Name of the default ACL xattr.
pub const XATTR_DEFAULT: &str = "system.posix_acl_default";

const VERSION: u32 = 2;
const UNDEFINED_ID: u32 = u32::MAX;

/// An entry's tag and qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tag {
    UserObj,
    User(u32),
    GroupObj,
    Group(u32),
    Mask,
    Other,
}

impl Tag {
    /// The kernel's tag value.
    pub fn code(self) -> u16 {
        match self {
            Tag::UserObj => 0x01,
            Tag::User(_) => 0x02,
            Tag::GroupObj => 0x04,
            Tag::Group(_) => 0x08,
            Tag::Mask => 0x10,
            Tag::Other => 0x20,
        }
    }

    /// The qualifier as stored (`0xFFFFFFFF` for entries without one).
    pub fn id(self) -> u32 {
        match self {
            Tag::User(i) | Tag::Group(i) => i,
            _ => UNDEFINED_ID,
        }
    }
}

/// One entry: tag, qualifier and permission bits (`READ | WRITE | EXECUTE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AclEntry {
    pub tag: Tag,
    pub perm: u16,
}

/// An ACL, entries in the order libacl holds them (sorted only when encoded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Acl(pub Vec<AclEntry>);

/// The parsed argument of an `a`/`A` line: the access and default ACLs it names (`None`
/// when it names no entry of that kind).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Spec {
    pub access: Option<Acl>,
    pub default: Option<Acl>,
}

/// Whether a qualifier names a user or a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    User,
    Group,
}

/// Why an ACL argument or xattr is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("invalid ACL entry \"{entry}\": {reason}")]
    Entry { entry: String, reason: String },
    #[error("invalid ACL xattr: {0}")]
    Xattr(String),
}

impl fmt::Display for Acl {
    /// As `acl_to_any_text(…, ',', TEXT_ABBREVIATE)`, with numeric qualifiers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.sorted().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let (t, q) = match e.tag {
                Tag::UserObj => ("u", String::new()),
                Tag::User(id) => ("u", id.to_string()),
                Tag::GroupObj => ("g", String::new()),
                Tag::Group(id) => ("g", id.to_string()),
                Tag::Mask => ("m", String::new()),
                Tag::Other => ("o", String::new()),
            };
            let p = |bit: u16, c: char| if e.perm & bit != 0 { c } else { '-' };
            write!(
                f,
                "{t}:{q}:{}{}{}",
                p(READ, 'r'),
                p(WRITE, 'w'),
                p(EXECUTE, 'x')
            )?;
        }
        Ok(())
    }
}

impl Acl {
    /// `acl_from_mode()`: the three base entries of a file mode.
    pub fn from_mode(mode: u32) -> Acl {
        let bits = |shift: u32| ((mode >> shift) & 7) as u16;
        Acl(vec![
            AclEntry {
                tag: Tag::UserObj,
                perm: bits(6),
            },
            AclEntry {
                tag: Tag::GroupObj,
                perm: bits(3),
            },
            AclEntry {
                tag: Tag::Other,
                perm: bits(0),
            },
        ])
    }

    fn has(&self, pred: impl Fn(Tag) -> bool) -> bool {
        self.0.iter().any(|e| pred(e.tag))
    }

    /// `acl_calc_mask()`: the mask becomes the union of the named entries and the owning
    /// group's permissions (created when missing).
    pub fn calc_mask(&mut self) {
        let perm = self
            .0
            .iter()
            .filter(|e| matches!(e.tag, Tag::User(_) | Tag::GroupObj | Tag::Group(_)))
            .fold(0, |p, e| p | e.perm);
        match self.0.iter_mut().find(|e| e.tag == Tag::Mask) {
            Some(m) => m.perm = perm,
            None => self.0.push(AclEntry {
                tag: Tag::Mask,
                perm,
            }),
        }
    }

    /// systemd's `calc_acl_mask_if_needed()`: compute the mask when there is none and a
    /// named user or group needs one. Returns whether it did.
    pub fn calc_mask_if_needed(&mut self) -> bool {
        if self.has(|t| t == Tag::Mask) {
            return false;
        }
        let need = self.has(|t| matches!(t, Tag::User(_) | Tag::Group(_)));
        if need {
            self.calc_mask();
        }
        need
    }

    /// systemd's `add_base_acls_if_needed()`: add the owner, owning group and other
    /// entries the ACL lacks, taken from the file's current mode.
    pub fn add_base_if_needed(&mut self, mode: u32) {
        let base = Acl::from_mode(mode);
        for b in base.0 {
            if !self.has(|t| t == b.tag) {
                self.0.push(b);
            }
        }
    }

    /// systemd's `acls_for_file()`: `new`'s entries merged into `self` (an entry with the
    /// same tag and qualifier takes the new permissions; others are appended).
    pub fn merged(mut self, new: &Acl) -> Acl {
        for n in &new.0 {
            match self.0.iter_mut().find(|o| o.tag == n.tag) {
                Some(o) => o.perm = n.perm,
                None => self.0.push(*n),
            }
        }
        self
    }

    /// Entries in the order the kernel stores them: by tag, then qualifier (stable).
    pub fn sorted(&self) -> Vec<AclEntry> {
        let mut v = self.0.clone();
        v.sort_by_key(|e| (e.tag.code(), e.tag.id()));
        v
    }

    /// The `system.posix_acl_*` xattr value: u32 version 2, then {u16 tag, u16 perm,
    /// u32 id} per entry, little endian, sorted.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 * self.0.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        for e in self.sorted() {
            out.extend_from_slice(&e.tag.code().to_le_bytes());
            out.extend_from_slice(&e.perm.to_le_bytes());
            out.extend_from_slice(&e.tag.id().to_le_bytes());
        }
        out
    }

    /// Read an xattr value written by the kernel or by [`Acl::encode`].
    pub fn decode(b: &[u8]) -> Result<Acl, AclError> {
        let bad = |m: String| Err(AclError::Xattr(m));
        if b.len() < 4 || !(b.len() - 4).is_multiple_of(8) {
            return bad(format!("length {} is not 4 + 8n", b.len()));
        }
        let v = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        if v != VERSION {
            return bad(format!("version {v}, expected {VERSION}"));
        }
        let mut out = Vec::new();
        for c in b[4..].chunks_exact(8) {
            let tag = u16::from_le_bytes([c[0], c[1]]);
            let perm = u16::from_le_bytes([c[2], c[3]]);
            let id = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            let tag = match tag {
                0x01 => Tag::UserObj,
                0x02 => Tag::User(id),
                0x04 => Tag::GroupObj,
                0x08 => Tag::Group(id),
                0x10 => Tag::Mask,
                0x20 => Tag::Other,
                t => return bad(format!("unknown tag {t:#x}")),
            };
            if perm & !7 != 0 {
                return bad(format!("unknown permission bits {perm:#x}"));
            }
            out.push(AclEntry { tag, perm });
        }
        Ok(Acl(out))
    }
}

/// systemd 252's `parse_acl()`. `resolve` maps a user or group name to its id (numbers
/// are read here); `want_mask` computes the mask now (lines without `+`).
pub fn parse(
    text: &str,
    resolve: &dyn Fn(IdKind, &str) -> Option<u32>,
    want_mask: bool,
) -> Result<Spec, AclError> {
    // strv_split(text, ","): empty words are dropped.
    let mut access: Vec<&str> = Vec::new();
    let mut default: Vec<&str> = Vec::new();
    for e in text.split(',').filter(|e| !e.is_empty()) {
        match e.strip_prefix("default:").or_else(|| e.strip_prefix("d:")) {
            Some(rest) => default.push(rest),
            None => access.push(e),
        }
    }
    let build = |list: &[&str]| -> Result<Option<Acl>, AclError> {
        if list.is_empty() {
            return Ok(None);
        }
        let joined = list.join(",");
        let mut acl = from_text(&joined, resolve).map_err(|(pos, reason)| AclError::Entry {
            entry: entry_at(&joined, pos),
            reason,
        })?;
        if want_mask {
            acl.calc_mask_if_needed();
        }
        Ok(Some(acl))
    };
    Ok(Spec {
        access: build(&access)?,
        default: build(&default)?,
    })
}

/// The comma-separated entry of `s` that holds byte `pos`.
fn entry_at(s: &str, pos: usize) -> String {
    let pos = pos.min(s.len());
    let start = s[..pos].rfind(',').map_or(0, |i| i + 1);
    let end = s[pos..].find(',').map_or(s.len(), |i| pos + i);
    let e = s[start..end].trim();
    if e.is_empty() {
        s.trim().to_owned()
    } else {
        e.to_owned()
    }
}

struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cur<'_> {
    fn at(&self) -> u8 {
        self.b.get(self.i).copied().unwrap_or(0)
    }
    /// libacl's SKIP_WS: blanks, then a `#` comment to the end of the line.
    fn skip_ws(&mut self) {
        while matches!(self.at(), b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
        if self.at() == b'#' {
            while !matches!(self.at(), b'\n' | 0) {
                self.i += 1;
            }
        }
    }
    /// libacl's `skip_tag_name()`: the full tag name or its first letter, then `:` (or the
    /// end of the entry).
    fn skip_tag_name(&mut self, token: &str) -> bool {
        let save = self.i;
        self.skip_ws();
        if self.b[self.i..].starts_with(token.as_bytes()) {
            self.i += token.len();
        } else if self.at() == token.as_bytes()[0] {
            self.i += 1;
        } else {
            self.i = save;
            return false;
        }
        self.skip_ws();
        match self.at() {
            b':' => {
                self.i += 1;
                true
            }
            b',' | 0 => true,
            _ => false,
        }
    }
    /// libacl's `get_token()`: up to `:` or `,` (the `:` is consumed); None when empty.
    fn get_token(&mut self) -> Option<String> {
        let start = self.i;
        let mut ep = self.i;
        let mut c = Cur { b: self.b, i: ep };
        c.skip_ws();
        ep = c.i;
        while !matches!(
            self.b.get(ep).copied().unwrap_or(0),
            0 | b'\r' | b'\n' | b':' | b','
        ) {
            ep += 1;
        }
        let tok = (ep != start).then(|| String::from_utf8_lossy(&self.b[start..ep]).into_owned());
        if self.b.get(ep) == Some(&b':') {
            ep += 1;
        }
        self.i = ep;
        tok
    }
}

/// libacl's `__acl_unquote()`: `\ooo` octal escapes.
fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(((b[i + 1] - b'0') << 6) | ((b[i + 2] - b'0') << 3) | (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// libacl's `get_id()`: `strtol(token, &end, 0)` consuming the whole token; negative
/// values are taken as 16-bit numbers (-2 = 65534).
pub fn numeric_id(token: &str) -> Option<u32> {
    let s = token.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if (s.starts_with("0x") || s.starts_with("0X"))
        && s[2..].starts_with(|c: char| c.is_ascii_hexdigit())
    {
        (16, &s[2..])
    } else if s.starts_with('0') && s.len() > 1 {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        // strtol("") reads 0 with nothing left over.
        return (token.is_empty()).then_some(0);
    }
    // Saturating as strtol does, then stored in an id_t as libacl does (truncated:
    // 4294967296 is uid 0, as systemd 252 sets it).
    let mag = u128::from_str_radix(digits, radix).unwrap_or(u128::MAX);
    let l: i64 = if neg {
        (-(mag.min(1 << 63) as i128)) as i64
    } else {
        mag.min(i64::MAX as u128) as i64
    };
    let l = if l < 0 { l & 0xFFFF } else { l };
    Some(l as u32)
}

/// libacl's `acl_from_text()` on `s`; on error, the byte offset and the reason.
fn from_text(
    s: &str,
    resolve: &dyn Fn(IdKind, &str) -> Option<u32>,
) -> Result<Acl, (usize, String)> {
    let mut c = Cur {
        b: s.as_bytes(),
        i: 0,
    };
    let mut acl = Acl::default();
    while c.at() != 0 {
        let start = c.i;
        c.skip_ws();
        let tag = match c.at() {
            ch @ (b'u' | b'g') => {
                let (name, kind) = if ch == b'u' {
                    ("user", IdKind::User)
                } else {
                    ("group", IdKind::Group)
                };
                if !c.skip_tag_name(name) {
                    return Err((start, format!("unknown tag (expected {name})")));
                }
                match c.get_token() {
                    None if kind == IdKind::User => Tag::UserObj,
                    None => Tag::GroupObj,
                    Some(q) => {
                        let q = unquote(&q);
                        let id = numeric_id(&q)
                            .or_else(|| resolve(kind, &q))
                            .ok_or_else(|| {
                                (
                                    start,
                                    format!(
                                        "no {} \"{q}\" in the root",
                                        if kind == IdKind::User {
                                            "user"
                                        } else {
                                            "group"
                                        }
                                    ),
                                )
                            })?;
                        if kind == IdKind::User {
                            Tag::User(id)
                        } else {
                            Tag::Group(id)
                        }
                    }
                }
            }
            ch @ (b'm' | b'o') => {
                let name = if ch == b'm' { "mask" } else { "other" };
                if !c.skip_tag_name(name) {
                    return Err((start, format!("unknown tag (expected {name})")));
                }
                c.skip_ws();
                if c.at() == b':' {
                    c.i += 1;
                }
                if ch == b'm' {
                    Tag::Mask
                } else {
                    Tag::Other
                }
            }
            _ => {
                return Err((
                    start,
                    "unknown tag (expected u[ser], g[roup], m[ask] or o[ther])".into(),
                ))
            }
        };
        let mut perm = 0;
        for n in 0..3 {
            let bit = match c.at() {
                b'r' => READ,
                b'w' => WRITE,
                b'x' => EXECUTE,
                b'-' => 0,
                _ if n == 0 => {
                    return Err((start, "missing permissions (r, w, x or -)".into()));
                }
                _ => break,
            };
            if perm & bit != 0 {
                return Err((start, "permission repeated".into()));
            }
            perm |= bit;
            c.i += 1;
        }
        acl.0.push(AclEntry { tag, perm });
        c.skip_ws();
        if c.at() == b',' {
            c.i += 1;
            c.skip_ws();
        }
    }
    Ok(acl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(kind: IdKind, name: &str) -> Option<u32> {
        match (kind, name) {
            (IdKind::User, "alice") => Some(4242),
            (IdKind::Group, "staff") => Some(4343),
            _ => None,
        }
    }

    fn p(text: &str, mask: bool) -> Result<Spec, AclError> {
        parse(text, &users, mask)
    }

    #[test]
    fn parses_access_and_default_with_mask() {
        let s = p("u:alice:rw,d:g:staff:r-x,default:u::rwx,g::r", true).unwrap();
        assert_eq!(
            s.access.as_ref().unwrap().to_string(),
            "u:4242:rw-,g::r--,m::rw-"
        );
        assert_eq!(
            s.default.as_ref().unwrap().to_string(),
            "u::rwx,g:4343:r-x,m::r-x"
        );
        // With `+` the mask waits for the merge.
        let s = p("user:alice:rw", false).unwrap();
        assert_eq!(s.access.unwrap().to_string(), "u:4242:rw-");
        assert_eq!(s.default, None);
    }

    #[test]
    fn libacl_syntax() {
        let a = |t: &str| p(t, true).unwrap().access.unwrap().to_string();
        assert_eq!(a("o:r, u::rw,g::r , m::rw-"), "u::rw-,g::r--,m::rw-,o::r--");
        assert_eq!(
            a("user:0x10:r,group:010:w,mask:rx,other::x"),
            "u:16:r--,g:8:-w-,m::r-x,o::--x"
        );
        assert_eq!(a("u:-2:r"), "u:65534:r--,m::r--");
        assert_eq!(a("u:alice:rw,,g::w,"), "u:4242:rw-,g::-w-,m::rw-");
        assert_eq!(a("g:staff:-w-"), "g:4343:-w-,m::-w-");
        assert_eq!(numeric_id("4294967296"), Some(0));
        assert_eq!(numeric_id("99999999999999999999"), Some(u32::MAX));
        assert_eq!(numeric_id("-0x1"), Some(65535));
        assert_eq!(numeric_id("12a"), None);
    }

    #[test]
    fn bad_text_names_the_entry() {
        for (text, entry) in [
            ("u:alice:rw,u:bob:r", "u:bob:r"),
            ("u::rwX", "u::rwX"),
            ("u::rr", "u::rr"),
            ("x::r,u::r", "x::r"),
            ("g:staff:", "g:staff:"),
            ("u:alice:rw,d:group:nogroup:r", "group:nogroup:r"),
            ("users::r", "users::r"),
        ] {
            match p(text, true) {
                Err(AclError::Entry { entry: e, .. }) => assert_eq!(e, entry, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let e = p("u:bob:rw", true).unwrap_err().to_string();
        assert!(
            e.contains("\"u:bob:rw\"") && e.contains("no user \"bob\""),
            "{e}"
        );
    }

    #[test]
    fn merge_mask_base() {
        // a+ onto a file without an extended ACL: the mask includes the owning group.
        let new = p("u:alice:rwx", false).unwrap().access.unwrap();
        let mut m = Acl::from_mode(0o640).merged(&new);
        assert!(m.calc_mask_if_needed());
        m.add_base_if_needed(0o640);
        assert_eq!(m.to_string(), "u::rw-,u:4242:rwx,g::r--,m::rwx,o::---");
        // Same qualifier: new permissions; an existing mask is kept.
        let old = Acl::decode(&m.encode()).unwrap();
        let mut m = old.merged(&p("u:alice:r,u:7:w", false).unwrap().access.unwrap());
        assert!(!m.calc_mask_if_needed());
        assert_eq!(
            m.to_string(),
            "u::rw-,u:7:-w-,u:4242:r--,g::r--,m::rwx,o::---"
        );
        // Without `+`: the mask was computed before the base entries were added.
        let mut a = p("u:alice:r", true).unwrap().access.unwrap();
        a.add_base_if_needed(0o674);
        assert_eq!(a.to_string(), "u::rw-,u:4242:r--,g::rwx,m::r--,o::r--");
    }

    #[test]
    fn xattr_round_trip() {
        let a = p("u:alice:rw,g:staff:r,u:7:x,g::r-x,o::-", true)
            .unwrap()
            .access
            .unwrap();
        let mut a = a;
        a.add_base_if_needed(0o750);
        let b = a.encode();
        assert_eq!(&b[..4], &[2, 0, 0, 0]);
        assert_eq!(b.len(), 4 + 8 * 7);
        // Sorted by tag then id: u::, u:7, u:4242, g::, g:4343, m::, o::
        assert_eq!(&b[4..12], &[1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(&b[12..20], &[2, 0, 1, 0, 7, 0, 0, 0]);
        let d = Acl::decode(&b).unwrap();
        assert_eq!(d.0, a.sorted());
        assert_eq!(d.encode(), b);
        assert!(Acl::decode(&b[..7]).is_err());
        assert!(Acl::decode(&[1, 0, 0, 0]).is_err());
        assert!(Acl::decode(&[2, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
