//! The manifest format (`image::manifest` writes it, `keel manifest` prints it): one
//! sorted line per path,
//!
//! ```text
//! <path>\t<type>\t<mode>\t<uid>:<gid>\t<size | -> target | major,minor>\t<sha256 | ->\t<label | ->
//! ```
//!
//! [`Line`] is one line parsed and, through `Display`, written back byte for byte: the
//! one reader of the format (`keel manifest --json`, `keel diff`, the build record).

/// One manifest line, parsed: what `keel manifest --json` prints, and what a comparison of
/// two manifests reads. The path, link target and label stay escaped as in the text (a
/// name need not be UTF-8); `Display` writes the line back byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The path from the root (`/`, `/etc/a`), escaped.
    pub path: String,
    /// `f d l c b p s` (`?` for a type the walk does not know).
    pub kind: char,
    /// Permission bits with setuid, setgid and sticky (`0o4755`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Content,
    /// The `security.selinux` label, escaped; `None` when the path has none.
    pub label: Option<String>,
}

/// The type-dependent columns of a manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    File {
        size: u64,
        sha256: String,
    },
    /// The link's target, escaped.
    Link {
        target: String,
    },
    Device {
        major: u32,
        minor: u32,
    },
    /// Directories, FIFOs, sockets: `-`.
    None,
}

impl Line {
    /// Parse one line (without its newline); the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Line, String> {
        let fields: Vec<&str> = text.split('\t').collect();
        let [path, kind, mode, owner, what, hash, label] = fields[..] else {
            return Err(format!("{} tab-separated fields; want 7", fields.len()));
        };
        if !path.starts_with('/') {
            return Err(format!("path `{path}`: want one from the root (`/...`)"));
        }
        let mut chars = kind.chars();
        let kind = match (chars.next(), chars.next()) {
            (Some(c), None) if "fdlcbps?".contains(c) => c,
            _ => return Err(format!("type `{kind}`: want one of `f d l c b p s`")),
        };
        let mode = match u32::from_str_radix(mode, 8) {
            Ok(m) if mode.len() == 4 && m <= 0o7777 => m,
            _ => return Err(format!("mode `{mode}`: want 4 octal digits")),
        };
        let (uid, gid) = match owner.split_once(':').map(|(u, g)| (u.parse(), g.parse())) {
            Some((Ok(u), Ok(g))) => (u, g),
            _ => return Err(format!("owner `{owner}`: want UID:GID")),
        };
        let content = match (kind, what, hash) {
            ('f', size, sha256) => match size.parse() {
                Ok(size)
                    if sha256.len() == 64
                        && sha256
                            .bytes()
                            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
                {
                    Content::File {
                        size,
                        sha256: sha256.to_owned(),
                    }
                }
                _ => {
                    return Err(format!(
                        "file `{size}` `{sha256}`: want a size and a SHA-256"
                    ))
                }
            },
            ('l', what, "-") if what.starts_with("-> ") => Content::Link {
                target: what["-> ".len()..].to_owned(),
            },
            ('c' | 'b', dev, "-") => match dev.split_once(',').map(|(a, b)| (a.parse(), b.parse()))
            {
                Some((Ok(major), Ok(minor))) => Content::Device { major, minor },
                _ => return Err(format!("device `{dev}`: want MAJOR,MINOR")),
            },
            ('d' | 'p' | 's' | '?', "-", "-") => Content::None,
            (kind, what, hash) => {
                return Err(format!("`{what}` `{hash}` does not go with type `{kind}`"))
            }
        };
        Ok(Line {
            path: path.to_owned(),
            kind,
            mode,
            uid,
            gid,
            content,
            label: (label != "-").then(|| label.to_owned()),
        })
    }
}

impl Line {
    /// The two columns that depend on the type, as the text has them: the size, `-> target`
    /// or `major,minor` (else `-`), and the SHA-256 (else `-`).
    pub fn content_columns(&self) -> (String, &str) {
        match &self.content {
            Content::File { size, sha256 } => (size.to_string(), sha256.as_str()),
            Content::Link { target } => (format!("-> {target}"), "-"),
            Content::Device { major, minor } => (format!("{major},{minor}"), "-"),
            Content::None => ("-".to_owned(), "-"),
        }
    }
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, hash) = self.content_columns();
        write!(
            f,
            "{}\t{}\t{:04o}\t{}:{}\t{what}\t{hash}\t{}",
            self.path,
            self.kind,
            self.mode,
            self.uid,
            self.gid,
            self.label.as_deref().unwrap_or("-")
        )
    }
}

impl Line {
    /// The size of a regular file (0 for anything else).
    pub fn size(&self) -> u64 {
        match self.content {
            Content::File { size, .. } => size,
            _ => 0,
        }
    }
}

/// Every line of a manifest; the error names the line's number and what is wrong.
pub fn parse_all(text: &str) -> Result<Vec<Line>, String> {
    text.lines()
        .enumerate()
        .map(|(i, l)| Line::parse(l).map_err(|reason| format!("manifest line {}: {reason}", i + 1)))
        .collect()
}
