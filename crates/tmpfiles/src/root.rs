//! A root directory as a handle, and path resolution confined to it.
//!
//! Every lookup walks the path one component at a time with `O_NOFOLLOW`. A symlink met on
//! the way is read and resolved as under chroot: an absolute target restarts at the root
//! handle, `..` never climbs above the root. The root path itself is opened once, in
//! [`Root::open`]; nothing else is ever resolved by joining strings onto it.

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// How many symlinks one resolution may follow (as the kernel's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// An error of a confined lookup: the errno and, for unsafe transitions, a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalkError {
    Errno(Errno),
    /// A directory owned by a non-root user leads to an entry owned by someone else
    /// (systemd's CHASE_SAFE refusal).
    Unsafe {
        from: String,
        to: String,
    },
}

impl From<Errno> for WalkError {
    fn from(e: Errno) -> Self {
        WalkError::Errno(e)
    }
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Errno(e) => write!(f, "{}", std::io::Error::from(*e)),
            WalkError::Unsafe { from, to } => {
                write!(
                    f,
                    "detected unsafe path transition {from} → {to} during canonicalization"
                )
            }
        }
    }
}

/// A root directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// What to do about missing or wrong-typed intermediate directories.
#[derive(Debug, Clone, Copy, Default)]
pub struct Walk {
    /// Create missing directories (0755, owned by the caller).
    pub create: bool,
    /// Replace a non-directory in the way (the `=` modifier).
    pub replace: bool,
    /// Refuse unsafe ownership transitions (systemd's CHASE_SAFE).
    pub safe: bool,
}

/// A directory handle with its owner (for the unsafe-transition check) and its path
/// inside the root (for messages).
#[derive(Debug)]
pub struct DirRef {
    pub fd: OwnedFd,
    pub uid: u32,
    pub path: String,
}

fn open_dir_at(dir: impl AsFd, name: &str) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn join(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

impl Root {
    /// Open the root directory.
    pub fn open(path: &Path) -> std::io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_owned(),
        })
    }

    /// The root's path on the host, for messages only.
    pub fn host_path(&self) -> &Path {
        &self.path
    }

    fn top(&self) -> Result<DirRef, Errno> {
        let fd = rfs::openat(
            &self.fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rfs::fstat(&fd)?;
        Ok(DirRef {
            fd,
            uid: st.st_uid,
            path: "/".into(),
        })
    }

    /// Resolve the directory that holds `path` (absolute, inside the root) and return it
    /// with the last component's name. Symlinks in the directory part are followed inside
    /// the root; the last component is not looked at. `/` itself has no parent: EINVAL.
    pub fn parent(&self, path: &str, walk: Walk) -> Result<(DirRef, String), WalkError> {
        let mut comps: Vec<&str> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let Some(last) = comps.pop() else {
            return Err(Errno::INVAL.into());
        };
        if last == ".." {
            return Err(Errno::INVAL.into());
        }
        let dir = self.walk(comps.into_iter().map(String::from).collect(), walk, true)?;
        Ok((dir, last.to_owned()))
    }

    /// Resolve `path` to its directory and name, following a symlink in the last
    /// component too (inside the root). For a path naming the root, returns the root and
    /// ".".
    pub fn resolve_follow(&self, path: &str) -> Result<(DirRef, String), WalkError> {
        let mut links = 0;
        let mut queue: VecDeque<String> = path
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(String::from)
            .collect();
        loop {
            let Some(last) = queue.pop_back() else {
                return Ok((self.top()?, ".".into()));
            };
            let dir = self.walk(queue.iter().cloned().collect(), Walk::default(), true)?;
            if last == ".." {
                // Resolve the directory part then step up (never above the root).
                let d = self.walk(
                    queue.iter().cloned().chain(["..".to_string()]).collect(),
                    Walk::default(),
                    true,
                )?;
                return Ok((d, ".".into()));
            }
            match rfs::statat(&dir.fd, last.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = rfs::readlinkat(&dir.fd, last.as_str(), Vec::new())?;
                    let target = target.to_string_lossy().into_owned();
                    let base = if target.starts_with('/') {
                        String::new()
                    } else {
                        dir.path.clone()
                    };
                    queue = format!("{base}/{target}")
                        .split('/')
                        .filter(|c| !c.is_empty() && *c != ".")
                        .map(String::from)
                        .collect();
                }
                _ => return Ok((dir, last)),
            }
        }
    }

    /// Walk directory components from the root; returns the final directory.
    fn walk(&self, comps: VecDeque<String>, walk: Walk, _dirs: bool) -> Result<DirRef, WalkError> {
        let mut queue = comps;
        let mut stack: Vec<DirRef> = vec![self.top()?];
        let mut links = 0;
        while let Some(comp) = queue.pop_front() {
            if comp.is_empty() || comp == "." {
                continue;
            }
            if comp == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let top = stack.last().expect("root stays on the stack");
            let st = match rfs::statat(&top.fd, comp.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st),
                Err(Errno::NOENT) if walk.create => None,
                Err(e) => return Err(e.into()),
            };
            let ftype = st.as_ref().map(|s| FileType::from_raw_mode(s.st_mode));
            match ftype {
                Some(FileType::Symlink) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = rfs::readlinkat(&top.fd, comp.as_str(), Vec::new())?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        stack.truncate(1);
                    }
                    for c in target.split('/').rev() {
                        queue.push_front(c.to_owned());
                    }
                    continue;
                }
                Some(FileType::Directory) => {}
                None => match rfs::mkdirat(&top.fd, comp.as_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                },
                Some(_) if walk.replace && walk.create => {
                    rfs::unlinkat(&top.fd, comp.as_str(), AtFlags::empty())?;
                    rfs::mkdirat(&top.fd, comp.as_str(), Mode::from_raw_mode(0o755))?;
                }
                Some(_) => return Err(Errno::NOTDIR.into()),
            }
            let fd = open_dir_at(&top.fd, &comp)?;
            let uid = rfs::fstat(&fd)?.st_uid;
            let path = join(&top.path, &comp);
            if walk.safe && top.uid != 0 && top.uid != uid {
                return Err(WalkError::Unsafe {
                    from: top.path.clone(),
                    to: path,
                });
            }
            stack.push(DirRef { fd, uid, path });
        }
        Ok(stack.pop().expect("root stays on the stack"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("real/sub")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../../real", r.join("climb")).unwrap();
        symlink(outside.path(), r.join("escape")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let root = Root::open(r).unwrap();
        let w = Walk::default();
        assert_eq!(root.parent("/abs/sub/x", w).unwrap().0.path, "/real/sub");
        assert_eq!(root.parent("/climb/sub/x", w).unwrap().0.path, "/real/sub");
        assert_eq!(root.parent("/../../real/x", w).unwrap().0.path, "/real");
        // The escape link's absolute target is looked up inside the root, where it does
        // not exist; with create it is made inside the root, never outside.
        assert_eq!(
            root.parent("/escape/x", w).unwrap_err(),
            WalkError::Errno(Errno::NOENT)
        );
        let c = Walk { create: true, ..w };
        let (d, _) = root.parent("/escape/x", c).unwrap();
        assert!(d
            .path
            .ends_with(&outside.path().to_string_lossy().to_string()));
        assert!(r.join(outside.path().strip_prefix("/").unwrap()).is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        assert_eq!(
            root.parent("/loop/x", w).unwrap_err(),
            WalkError::Errno(Errno::LOOP)
        );
        let (d, n) = root.resolve_follow("/abs").unwrap();
        assert_eq!((d.path.as_str(), n.as_str()), ("/", "real"));
    }
}
