//! Which configuration files apply, in which order (pure: the caller lists the
//! directories), and the `--cat-config` rendering.

/// The configuration directories under a root, highest precedence first.
pub const DIRS: [&str; 4] = [
    "etc/tmpfiles.d",
    "run/tmpfiles.d",
    "usr/local/lib/tmpfiles.d",
    "usr/lib/tmpfiles.d",
];

/// A file name found in one of the [`DIRS`] (`dir` is its index there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub dir: usize,
    pub name: String,
}

/// Whether a directory entry name is a configuration file (`*.conf`, not hidden).
pub fn is_config_name(name: &str) -> bool {
    name.ends_with(".conf") && !name.starts_with('.')
}

/// The effective files: one per name, from the directory with the highest precedence,
/// sorted by name (byte order) whatever directory they come from.
pub fn effective(found: impl IntoIterator<Item = Found>) -> Vec<Found> {
    let mut best: std::collections::BTreeMap<String, usize> = Default::default();
    for f in found {
        if !is_config_name(&f.name) {
            continue;
        }
        let e = best.entry(f.name).or_insert(f.dir);
        *e = (*e).min(f.dir);
    }
    best.into_iter()
        .map(|(name, dir)| Found { dir, name })
        .collect()
}

/// Split file content into lines as systemd's `read_line()` does: `\n`, `\r\n`, `\r` and
/// NUL end a line; a last line without terminator still counts.
pub fn lines(content: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    while i < content.len() {
        match content[i] {
            b'\n' | 0 => out.push(std::mem::take(&mut cur)),
            b'\r' => {
                out.push(std::mem::take(&mut cur));
                if content.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            c => cur.push(c),
        }
        i += 1;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|l| String::from_utf8_lossy(&l).into_owned())
        .collect()
}

/// `--cat-config`: each file as `# PATH` and its lines, files separated by a blank line.
pub fn render_cat<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut out = String::new();
    for (n, (path, content)) in files.into_iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str("# ");
        out.push_str(path);
        out.push('\n');
        for l in lines(content) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(dir: usize, name: &str) -> Found {
        Found {
            dir,
            name: name.into(),
        }
    }

    #[test]
    fn precedence_and_order() {
        let got = effective([
            f(3, "var.conf"),
            f(0, "var.conf"),
            f(3, "a.conf"),
            f(2, "a.conf"),
            f(1, "Z.conf"),
            f(3, "notes.txt"),
            f(0, ".hidden.conf"),
        ]);
        assert_eq!(got, [f(1, "Z.conf"), f(2, "a.conf"), f(0, "var.conf")]);
    }

    #[test]
    fn cat_lines() {
        assert_eq!(lines(b"a\r\nb\rc\n\nd"), ["a", "b", "c", "", "d"]);
        let out = render_cat([
            ("/x/a.conf", &b"d /a\n"[..]),
            ("/x/b.conf", &b""[..]),
            ("/x/c.conf", &b"d /c"[..]),
        ]);
        assert_eq!(
            out,
            "# /x/a.conf\nd /a\n\n# /x/b.conf\n\n# /x/c.conf\nd /c\n"
        );
    }
}
