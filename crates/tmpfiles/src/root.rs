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
    /// A component owned by a non-root user leads to one owned by someone else
    /// (systemd's CHASE_SAFE refusal).
    Unsafe {
        from: String,
        from_uid: u32,
        to: String,
        to_uid: u32,
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
            WalkError::Unsafe {
                from,
                from_uid,
                to,
                to_uid,
            } => write!(
                f,
                "detected unsafe path transition {from} (owned by {from_uid}) → {to} (owned by {to_uid}) during canonicalization"
            ),
        }
    }
}

/// A root directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// What to do about missing or wrong-typed intermediate directories, and whether to check
/// ownership transitions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Walk {
    /// Create missing directories (0755, owned by the caller).
    pub create: bool,
    /// Replace a non-directory in the way (the `=` modifier).
    pub replace: bool,
    /// Refuse unsafe ownership transitions (systemd's CHASE_SAFE): a step from a component
    /// owned by a non-root user to one owned by another user, whether the step enters a
    /// directory, reads a symlink, goes back to the root for an absolute symlink target,
    /// climbs with `..`, or looks at the last component.
    pub safe: bool,
}

/// How the last component of a lookup is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Not looked at (systemd's `path_open_parent_safe()`).
    Parent,
    /// Looked at, not followed (`CHASE_NOFOLLOW`, `path_open_safe()`).
    NoFollow,
    /// Followed when it is a symlink, inside the root.
    Follow,
}

/// A directory handle with its owner (for the unsafe-transition check) and its path
/// inside the root (for messages).
#[derive(Debug)]
pub struct DirRef {
    pub fd: OwnedFd,
    pub uid: u32,
    pub path: String,
}

/// The result of a lookup that looks at the last component: the directory that holds it,
/// its name (`.` when the path names a directory reached without a name, such as `/`),
/// and its `lstat` (None when it does not exist).
#[derive(Debug)]
pub struct Found {
    pub dir: DirRef,
    pub name: String,
    pub stat: Option<rfs::Stat>,
}

impl Found {
    /// The path of the entry inside the root.
    pub fn path(&self) -> String {
        if self.name == "." {
            self.dir.path.clone()
        } else {
            join(&self.dir.path, &self.name)
        }
    }
}

/// Hold the directory `name` in `dir` (`O_PATH`), never following a symlink there.
pub(crate) fn open_dir_at(dir: impl AsFd, name: &str) -> Result<OwnedFd, Errno> {
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

/// A path's components, without empty ones and `.`.
fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
}

/// The owner of the component last stepped on, for the unsafe-transition check.
struct Previous {
    uid: u32,
    path: String,
}

impl Previous {
    /// systemd's `unsafe_transition()`: from a root-owned component anything is safe;
    /// otherwise the next one must have the same owner.
    fn step(&mut self, walk: Walk, uid: u32, path: &str) -> Result<(), WalkError> {
        if walk.safe && self.uid != 0 && self.uid != uid {
            return Err(WalkError::Unsafe {
                from: self.path.clone(),
                from_uid: self.uid,
                to: path.to_owned(),
                to_uid: uid,
            });
        }
        self.uid = uid;
        self.path = path.to_owned();
        Ok(())
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
        let found = self.chase(path, walk, Last::Parent)?;
        Ok((found.dir, found.name))
    }

    /// Look `path` up without following a symlink in its last component; with
    /// `walk.safe`, the step to the last component is checked too (systemd's
    /// `path_open_safe()`).
    pub fn lookup(&self, path: &str, walk: Walk) -> Result<Found, WalkError> {
        self.chase(path, walk, Last::NoFollow)
    }

    /// Look `path` up following symlinks in every component, the last one included,
    /// inside the root; with `walk.safe`, every step is checked. A dangling last symlink
    /// gives the missing entry it points to.
    pub fn lookup_follow(&self, path: &str, walk: Walk) -> Result<Found, WalkError> {
        self.chase(path, walk, Last::Follow)
    }

    /// Resolve `path` to its directory and name, following a symlink in the last
    /// component too (inside the root). For a path naming a directory reached without a
    /// name (the root), returns it and ".".
    pub fn resolve_follow(&self, path: &str) -> Result<(DirRef, String), WalkError> {
        let found = self.lookup_follow(path, Walk::default())?;
        Ok((found.dir, found.name))
    }

    /// systemd's `chase()` confined to the root: one component at a time, `O_NOFOLLOW`,
    /// symlinks read and resolved inside the root (an absolute target restarts at the
    /// root, `..` stops there), and with `walk.safe` every step checked with
    /// systemd's unsafe-transition rule, symlinks and the root included.
    fn chase(&self, path: &str, walk: Walk, last: Last) -> Result<Found, WalkError> {
        let mut queue: VecDeque<String> = components(path).collect();
        let top = self.top()?;
        let root_uid = top.uid;
        let mut prev = Previous {
            uid: top.uid,
            path: "/".into(),
        };
        let mut stack: Vec<DirRef> = vec![top];
        let mut links = 0;
        if queue.is_empty() && last == Last::Parent {
            return Err(Errno::INVAL.into());
        }
        while let Some(comp) = queue.pop_front() {
            let is_last = queue.is_empty();
            if comp == ".." {
                if is_last && last == Last::Parent {
                    return Err(Errno::INVAL.into());
                }
                if stack.len() > 1 {
                    stack.pop();
                    let up = stack.last().expect("root stays on the stack");
                    prev.step(walk, up.uid, &up.path)?;
                }
                continue;
            }
            let here = stack.last().expect("root stays on the stack");
            if is_last && last == Last::Parent {
                let dir = stack.pop().expect("root stays on the stack");
                return Ok(Found {
                    dir,
                    name: comp,
                    stat: None,
                });
            }
            let path_here = join(&here.path, &comp);
            let st = match rfs::statat(&here.fd, comp.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) if is_last => {
                    let dir = stack.pop().expect("root stays on the stack");
                    return Ok(Found {
                        dir,
                        name: comp,
                        stat: None,
                    });
                }
                Err(Errno::NOENT) if walk.create => {
                    match rfs::mkdirat(&here.fd, comp.as_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    let dir = enter(here, &comp)?;
                    prev.step(walk, dir.uid, &dir.path)?;
                    stack.push(dir);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let parent_owner = Previous {
                uid: prev.uid,
                path: prev.path.clone(),
            };
            prev.step(walk, st.st_uid, &path_here)?;
            let ftype = FileType::from_raw_mode(st.st_mode);
            if ftype == FileType::Symlink && !(is_last && last == Last::NoFollow) {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::LOOP.into());
                }
                let target = rfs::readlinkat(&here.fd, comp.as_str(), Vec::new())?;
                let target = target.to_string_lossy().into_owned();
                if target.is_empty() {
                    return Err(Errno::INVAL.into());
                }
                if target.starts_with('/') {
                    stack.truncate(1);
                    prev.step(walk, root_uid, "/")?;
                }
                for c in components(&target).rev() {
                    queue.push_front(c);
                }
                continue;
            }
            if is_last {
                let dir = stack.pop().expect("root stays on the stack");
                return Ok(Found {
                    dir,
                    name: comp,
                    stat: Some(st),
                });
            }
            let dir = match ftype {
                FileType::Directory => enter(here, &comp)?,
                _ if walk.replace && walk.create => {
                    rfs::unlinkat(&here.fd, comp.as_str(), AtFlags::empty())?;
                    rfs::mkdirat(&here.fd, comp.as_str(), Mode::from_raw_mode(0o755))?;
                    prev = parent_owner;
                    enter(here, &comp)?
                }
                _ => return Err(Errno::NOTDIR.into()),
            };
            // The directory opened is the one stat'ed unless it was swapped meanwhile.
            prev.step(walk, dir.uid, &dir.path)?;
            stack.push(dir);
        }
        // The path names a directory reached without a last name: the root, or the end
        // of a symlink or `..`.
        let dir = stack.pop().expect("root stays on the stack");
        let stat = rfs::fstat(&dir.fd)?;
        Ok(Found {
            dir,
            name: ".".into(),
            stat: Some(stat),
        })
    }
}

/// Open the directory `name` in `here` (never following a symlink) with its owner.
fn enter(here: &DirRef, name: &str) -> Result<DirRef, Errno> {
    let fd = open_dir_at(&here.fd, name)?;
    let uid = rfs::fstat(&fd)?.st_uid;
    Ok(DirRef {
        fd,
        uid,
        path: join(&here.path, name),
    })
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

    fn own(p: &Path, uid: u32) {
        std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
    }

    fn unsafe_step(e: WalkError) -> (String, u32, String, u32) {
        match e {
            WalkError::Unsafe {
                from,
                from_uid,
                to,
                to_uid,
            } => (from, from_uid, to, to_uid),
            e => panic!("not an unsafe transition: {e}"),
        }
    }

    /// systemd's CHASE_SAFE rule on every step: a symlink's owner, the return to the root
    /// for an absolute target, `..`, and (for `lookup`) the last component.
    #[test]
    fn unsafe_transitions_cover_symlinks_the_root_and_the_last_component() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::create_dir_all(r.join("home/u/own")).unwrap();
        std::fs::write(r.join("etc/shadow"), "s").unwrap();
        std::fs::write(r.join("home/u/rootfile"), "r").unwrap();
        symlink("/etc", r.join("home/u/abs")).unwrap();
        symlink("../../etc", r.join("home/u/rel")).unwrap();
        symlink("own", r.join("home/u/mine")).unwrap();
        symlink("/home/u/own", r.join("rootlink")).unwrap();
        for p in [
            "home/u",
            "home/u/own",
            "home/u/abs",
            "home/u/rel",
            "home/u/mine",
        ] {
            own(&r.join(p), 1000);
        }
        let root = Root::open(r).unwrap();
        let safe = Walk {
            safe: true,
            ..Walk::default()
        };
        // A user's symlink to an absolute path: the step back to the root.
        assert_eq!(
            unsafe_step(root.parent("/home/u/abs/shadow", safe).unwrap_err()),
            ("/home/u/abs".into(), 1000, "/".into(), 0)
        );
        // A relative one: its `..` climbs to a root-owned directory.
        assert_eq!(
            unsafe_step(root.parent("/home/u/rel/shadow", safe).unwrap_err()),
            ("/home/u/rel".into(), 1000, "/home".into(), 0)
        );
        // Without `safe` both resolve inside the root.
        assert_eq!(
            root.parent("/home/u/abs/shadow", Walk::default())
                .unwrap()
                .0
                .path,
            "/etc"
        );
        // The last component: looked at by `lookup`, not by `parent`.
        assert_eq!(
            unsafe_step(root.lookup("/home/u/rootfile", safe).unwrap_err()),
            ("/home/u".into(), 1000, "/home/u/rootfile".into(), 0)
        );
        assert_eq!(root.parent("/home/u/rootfile", safe).unwrap().1, "rootfile");
        // Safe: the user's link to the user's directory; root's link to a user's one.
        assert_eq!(
            root.parent("/home/u/mine/x", safe).unwrap().0.path,
            "/home/u/own"
        );
        let found = root.lookup_follow("/rootlink", safe).unwrap();
        assert_eq!(
            (found.dir.path.as_str(), found.name.as_str()),
            ("/home/u", "own")
        );
        // A missing directory made in the user's directory is root's: the step into it is
        // unsafe (as systemd's mkdir_parents() followed by its chase).
        let create = Walk {
            create: true,
            ..safe
        };
        assert_eq!(
            unsafe_step(root.parent("/home/u/new/x", create).unwrap_err()),
            ("/home/u".into(), 1000, "/home/u/new".into(), 0)
        );
        // `/` is looked up as itself.
        let found = root.lookup("/", safe).unwrap();
        assert_eq!((found.dir.path.as_str(), found.name.as_str()), ("/", "."));
    }
}
