//! Fingerprints of a stage's declared inputs.
//!
//! A fingerprint is a SHA-256 over labelled inputs: strings, and directory trees by
//! content (every path, type, mode, size, link target and the bytes of every file). Large
//! trees (the Gentoo repository) are hashed through a stat cache: a file whose size, mtime,
//! ctime and inode are unchanged since the last build keeps its recorded content hash, as
//! git's index does.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file or directory that could not be read, and why.
pub type Error = rootdir::PathError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    rootdir::PathError::at(path.to_path_buf())
}

/// Accumulates labelled inputs; [`Fingerprint::hex`] gives the digest.
#[derive(Clone, Default)]
pub struct Fingerprint {
    hasher: Sha256,
    /// Human-readable list of what went in (written beside the stamp, for `why did it rerun`).
    pub inputs: Vec<String>,
}

impl Fingerprint {
    pub fn new() -> Fingerprint {
        Fingerprint::default()
    }

    pub fn str(&mut self, label: &str, value: &str) -> &mut Self {
        self.feed(label, value.as_bytes());
        self
    }

    fn feed(&mut self, label: &str, bytes: &[u8]) {
        let digest = Sha256::digest(bytes);
        self.hasher.update((label.len() as u64).to_le_bytes());
        self.hasher.update(label.as_bytes());
        self.hasher.update(digest);
        self.inputs.push(format!("{label} {}", hex(&digest)));
    }

    /// A directory tree by content (nothing when it does not exist).
    pub fn tree(
        &mut self,
        label: &str,
        dir: &Path,
        cache: Option<&mut StatCache>,
    ) -> Result<&mut Self, Error> {
        let listing = tree_listing(dir, cache, false)?;
        self.feed(label, listing.as_bytes());
        Ok(self)
    }

    /// A directory tree by content and file mtimes (for trees whose mtimes are copied).
    pub fn tree_with_mtimes(&mut self, label: &str, dir: &Path) -> Result<&mut Self, Error> {
        let listing = tree_listing(dir, None, true)?;
        self.feed(label, listing.as_bytes());
        Ok(self)
    }

    /// A file by content (nothing when it does not exist).
    pub fn file(&mut self, label: &str, path: &Path) -> Result<&mut Self, Error> {
        match fs::read(path) {
            Ok(c) => self.feed(label, &c),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.feed(label, b"(absent)"),
            Err(e) => return Err(io(path)(e)),
        }
        Ok(self)
    }

    /// A file by content through a stat cache (nothing when it does not exist).
    pub fn file_cached(
        &mut self,
        label: &str,
        path: &Path,
        cache: &mut StatCache,
    ) -> Result<&mut Self, Error> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => {
                let h = cache.hash(path, &m)?;
                self.feed(label, h.as_bytes());
            }
            Ok(m) if m.file_type().is_symlink() => {
                let t = fs::read_link(path).map_err(io(path))?;
                self.feed(label, format!("-> {}", t.display()).as_bytes());
            }
            Ok(_) => self.feed(label, b"(not a file)"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.feed(label, b"(absent)"),
            Err(e) => return Err(io(path)(e)),
        }
        Ok(self)
    }

    pub fn hex(&self) -> String {
        hex(&self.hasher.clone().finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Content hashes of files, keyed by path and validated by stat data. Saving keeps only
/// the entries looked up since loading: a cache holds what its user reads now, so one
/// that once walked a whole repository shrinks to what the last run read.
#[derive(Debug, Default)]
pub struct StatCache {
    entries: BTreeMap<String, (String, String)>,
    used: std::collections::BTreeSet<String>,
    dirty: bool,
}

impl StatCache {
    pub fn load(path: &Path) -> StatCache {
        let mut entries = BTreeMap::new();
        if let Ok(text) = fs::read_to_string(path) {
            for line in text.lines() {
                let mut it = line.splitn(3, '\t');
                if let (Some(stat), Some(hash), Some(p)) = (it.next(), it.next(), it.next()) {
                    entries.insert(p.to_owned(), (stat.to_owned(), hash.to_owned()));
                }
            }
        }
        StatCache {
            entries,
            used: Default::default(),
            dirty: false,
        }
    }

    /// Write the cache atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        if !self.dirty && self.used.len() == self.entries.len() {
            return Ok(());
        }
        let mut text = String::new();
        for (p, (stat, hash)) in self.entries.iter().filter(|(p, _)| self.used.contains(*p)) {
            text.push_str(&format!("{stat}\t{hash}\t{p}\n"));
        }
        write_atomic(path, text.as_bytes())
    }

    fn hash(&mut self, path: &Path, meta: &fs::Metadata) -> Result<String, Error> {
        let key = path.to_string_lossy().into_owned();
        let stat = format!(
            "{}:{}:{}:{}:{}",
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime_nsec(),
            meta.ino()
        );
        self.used.insert(key.clone());
        if let Some((s, h)) = self.entries.get(&key) {
            if *s == stat {
                return Ok(h.clone());
            }
        }
        let h = hash_file(path)?;
        self.entries.insert(key, (stat, h.clone()));
        self.dirty = true;
        Ok(h)
    }
}

/// The SHA-256 of a file's content, in hex.
pub fn hash_file(path: &Path) -> Result<String, Error> {
    let mut f = fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// One line per entry, sorted: `path type mode size content-hash|link-target`, and the
/// mtime of files and links when asked.
pub fn tree_listing(
    dir: &Path,
    mut cache: Option<&mut StatCache>,
    mtimes: bool,
) -> Result<String, Error> {
    let mut lines = Vec::new();
    if dir.symlink_metadata().is_err() {
        return Ok(String::new());
    }
    let mut stack = vec![(dir.to_owned(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io(&d))? {
            let e = e.map_err(io(&d))?;
            let path = e.path();
            let r = format!("{rel}/{}", e.file_name().to_string_lossy());
            let meta = path.symlink_metadata().map_err(io(&path))?;
            let mode = meta.mode() & 0o7777;
            let ft = meta.file_type();
            let when = if mtimes {
                format!(" @{}.{}", meta.mtime(), meta.mtime_nsec())
            } else {
                String::new()
            };
            if ft.is_symlink() {
                let t = fs::read_link(&path).map_err(io(&path))?;
                lines.push(format!("{r} l {mode:o} -> {}{when}", t.display()));
            } else if ft.is_dir() {
                lines.push(format!("{r} d {mode:o}"));
                stack.push((path, r));
            } else if ft.is_file() {
                let h = match cache.as_deref_mut() {
                    Some(c) => c.hash(&path, &meta)?,
                    None => hash_file(&path)?,
                };
                lines.push(format!("{r} f {mode:o} {} {h}{when}", meta.size()));
            } else {
                lines.push(format!("{r} o {mode:o} {}", meta.rdev()));
            }
        }
    }
    lines.sort();
    Ok(lines.join("\n"))
}

/// Write a file atomically: a temp file in the same directory, then rename.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), Error> {
    rootdir::write_atomic(path, content, 0o644).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_content_mode_and_links_count() {
        let d = tempfile::tempdir().unwrap();
        let fp = |cache: Option<&mut StatCache>| {
            Fingerprint::new().tree("t", d.path(), cache).unwrap().hex()
        };
        fs::write(d.path().join("a"), "1").unwrap();
        let a = fp(None);
        assert_eq!(a, fp(None));
        fs::write(d.path().join("a"), "2").unwrap();
        let b = fp(None);
        assert_ne!(a, b);
        std::os::unix::fs::symlink("x", d.path().join("l")).unwrap();
        let c = fp(None);
        assert_ne!(b, c);
        fs::set_permissions(
            d.path().join("a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        assert_ne!(c, fp(None));
    }

    #[test]
    fn stat_cache_sees_rewrites() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t/f");
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, "aaaa").unwrap();
        let cpath = d.path().join("cache");
        let mut cache = StatCache::load(&cpath);
        let one = tree_listing(&d.path().join("t"), Some(&mut cache), false).unwrap();
        cache.save(&cpath).unwrap();
        // Same size, new content: ctime/mtime change, so the cache is not trusted.
        fs::write(&f, "bbbb").unwrap();
        let mut cache = StatCache::load(&cpath);
        let two = tree_listing(&d.path().join("t"), Some(&mut cache), false).unwrap();
        assert_ne!(one, two);
        assert_eq!(two, tree_listing(&d.path().join("t"), None, false).unwrap());
    }

    #[test]
    fn stat_cache_keeps_what_was_looked_up() {
        let d = tempfile::tempdir().unwrap();
        for f in ["a", "b"] {
            fs::write(d.path().join(f), f).unwrap();
        }
        let cpath = d.path().join("cache");
        let mut cache = StatCache::load(&cpath);
        for f in ["a", "b"] {
            Fingerprint::new()
                .file_cached(f, &d.path().join(f), &mut cache)
                .unwrap();
        }
        cache.save(&cpath).unwrap();
        assert_eq!(fs::read_to_string(&cpath).unwrap().lines().count(), 2);
        let mut cache = StatCache::load(&cpath);
        Fingerprint::new()
            .file_cached("a", &d.path().join("a"), &mut cache)
            .unwrap();
        cache.save(&cpath).unwrap();
        let kept = fs::read_to_string(&cpath).unwrap();
        assert_eq!(kept.lines().count(), 1, "{kept}");
        assert!(kept.ends_with("/a\n"), "{kept}");
    }
}
