//! Entry names in a layer: cleaning (no `..`; a leading `/` is the tree's root) and whiteout
//! classification.
//! Pure: no I/O.

/// Why an entry name (or hard link target) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsafe {
    /// Has a `..` component.
    DotDot,
    /// A whiteout of `.`, `..` or of nothing (`.wh.`, `.wh..`, `.wh...`).
    BadWhiteout,
    /// A NUL byte in a name.
    Nul,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsafe::DotDot => "`..` component",
            Unsafe::BadWhiteout => "whiteout of `.`, `..` or an empty name",
            Unsafe::Nul => "NUL byte in the name",
        })
    }
}

/// The components of an entry name relative to the root: empty and `.` components dropped
/// (`./etc//passwd` is `etc/passwd`; `./` is the root itself, no components). A leading `/`
/// means the tree's root, as GNU tar, containerd and umoci read it (`umoci insert` writes
/// such names): `/etc/passwd` is `etc/passwd`, `/` the root itself.
pub fn clean(name: &[u8]) -> Result<Vec<&[u8]>, Unsafe> {
    if name.contains(&0) {
        return Err(Unsafe::Nul);
    }
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(Unsafe::DotDot),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// What the last component of an entry name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// An ordinary entry.
    Plain,
    /// `.wh..wh..opq`: the parent directory is opaque.
    Opaque,
    /// `.wh.NAME`: NAME is deleted from the lower layers.
    Whiteout(&'a [u8]),
    /// `.wh..wh.*` other than `.wh..wh..opq` (aufs metadata such as `.wh..wh.plnk`): skipped.
    AufsMeta,
}

pub const WH_PREFIX: &[u8] = b".wh.";
pub const WH_OPAQUE: &[u8] = b".wh..wh..opq";

/// Classify one name (the last component of an entry).
pub fn classify(name: &[u8]) -> Result<Kind<'_>, Unsafe> {
    if name == WH_OPAQUE {
        return Ok(Kind::Opaque);
    }
    if name.starts_with(b".wh..wh.") {
        return Ok(Kind::AufsMeta);
    }
    match name.strip_prefix(WH_PREFIX) {
        None => Ok(Kind::Plain),
        Some(b"" | b"." | b"..") => Err(Unsafe::BadWhiteout),
        Some(target) => Ok(Kind::Whiteout(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(s: &str) -> Result<Vec<String>, Unsafe> {
        clean(s.as_bytes()).map(|v| {
            v.into_iter()
                .map(|c| String::from_utf8(c.to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn clean_drops_dot_and_empty_components() {
        assert_eq!(comps("./etc//passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(comps("usr/bin/").unwrap(), ["usr", "bin"]);
        assert!(comps("./").unwrap().is_empty());
        assert!(comps(".").unwrap().is_empty());
        assert_eq!(comps("a/./b").unwrap(), ["a", "b"]);
    }

    #[test]
    fn clean_refuses_escapes() {
        assert_eq!(comps("../escape"), Err(Unsafe::DotDot));
        assert_eq!(comps("a/../../b"), Err(Unsafe::DotDot));
        assert_eq!(comps("a/.."), Err(Unsafe::DotDot));
        assert_eq!(comps("/etc/passwd").unwrap(), ["etc", "passwd"]);
        assert!(comps("/").unwrap().is_empty());
        assert_eq!(comps("/../etc"), Err(Unsafe::DotDot));
        assert_eq!(clean(b"a\0b"), Err(Unsafe::Nul));
    }

    #[test]
    fn names_that_only_look_like_dots_are_plain() {
        assert_eq!(comps("...").unwrap(), ["..."]);
        assert_eq!(comps("..a/b..").unwrap(), ["..a", "b.."]);
    }

    #[test]
    fn whiteout_classification() {
        assert_eq!(classify(b"passwd"), Ok(Kind::Plain));
        assert_eq!(classify(b".whatever"), Ok(Kind::Plain));
        assert_eq!(classify(b".wh"), Ok(Kind::Plain));
        assert_eq!(classify(b".wh.passwd"), Ok(Kind::Whiteout(b"passwd")));
        assert_eq!(classify(b".wh..hidden"), Ok(Kind::Whiteout(b".hidden")));
        assert_eq!(classify(b".wh..wh..opq"), Ok(Kind::Opaque));
        assert_eq!(classify(b".wh..wh.plnk"), Ok(Kind::AufsMeta));
        assert_eq!(classify(b".wh..wh.aufs"), Ok(Kind::AufsMeta));
    }

    #[test]
    fn whiteouts_of_dot_names_are_refused() {
        assert_eq!(classify(b".wh."), Err(Unsafe::BadWhiteout));
        assert_eq!(classify(b".wh.."), Err(Unsafe::BadWhiteout));
        assert_eq!(classify(b".wh..."), Err(Unsafe::BadWhiteout));
    }
}
