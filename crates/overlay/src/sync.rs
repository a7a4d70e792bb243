//! The walk: worker threads share a stack of directory jobs, each a pair of handles (a
//! source directory, its DEST directory); every entry is reached from its parent's handle.

use crate::{only_mtime, Error, Nesting, Stats};
use rootdir::mtime_of;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as fs, AtFlags, FileType, Gid, Mode, OFlags, Stat, Uid};
use rustix::io::Errno;
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// Permission bits rsync `-p` copies: rwx for all, setuid, setgid, sticky.
const PERM_BITS: u32 = 0o7777;
/// Largest chunk handed to one `copy_file_range` call.
const CHUNK: usize = 1 << 30;
/// Files up to this size are copied with read/write through the worker's buffer.
const SMALL: u64 = 64 * 1024;

/// Sync the contents of each source directory into `dest`, in order (a later source wins),
/// with the semantics of `rsync -rlptgoD -O --chown=0:0 SRC/ DEST/`.
///
/// All sources and DEST are checked before anything is written: a missing source, a source
/// or DEST that is not a directory, a DEST that is a source, is inside one or holds one
/// ([`Error::Nested`]), stops the sync with nothing changed. After that, an entry that fails
/// is reported and skipped (with its subtree) and the others are synced, as rsync does; the
/// result is then [`Error::Incomplete`] listing every failure.
///
/// The walk uses one worker thread per available CPU (at most 8; `KEEL_OVERLAY_THREADS`
/// overrides it); see [`sync_with_threads`].
pub fn sync<P: AsRef<Path>>(sources: &[P], dest: &Path) -> Result<Stats, Error> {
    sync_with_threads(sources, dest, threads())
}

/// [`sync`] with `threads` workers (1: everything on the calling thread). The result,
/// the error list and its order do not depend on the number of threads.
pub fn sync_with_threads<P: AsRef<Path>>(
    sources: &[P],
    dest: &Path,
    threads: usize,
) -> Result<Stats, Error> {
    let threads = threads.max(1);
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut opened = Vec::with_capacity(sources.len());
    for src in sources {
        let path = src.as_ref();
        let fd = fs::open(path, dir_flags, Mode::empty()).map_err(|e| match e {
            Errno::NOTDIR => Error::SourceNotDir {
                path: path.to_owned(),
            },
            e => Error::Source {
                path: path.to_owned(),
                cause: e.into(),
            },
        })?;
        let st = fs::fstat(&fd).map_err(|e| Error::Source {
            path: path.to_owned(),
            cause: e.into(),
        })?;
        opened.push((path, fd, st));
    }
    let dfd = match fs::open(dest, dir_flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            if e == Errno::NOENT {
                refuse_nesting(&opened, dest, None)?;
            }
            return Err(match e {
                Errno::NOTDIR => Error::DestNotDir {
                    path: dest.to_owned(),
                },
                e => Error::Dest {
                    path: dest.to_owned(),
                    cause: e.into(),
                },
            });
        }
    };
    refuse_nesting(&opened, dest, Some(dfd.as_fd()))?;
    let shared = Shared {
        dest_root: dest,
        pid: std::process::id(),
        tmp_counter: AtomicU64::new(0),
        already_root: fs_ids_are_root(),
        tmpfile_works: AtomicBool::new(true),
    };
    let mut stats = Stats::default();
    let mut errors = Vec::new();
    for (path, sfd, st) in &opened {
        // rsync applies the source directory's own attributes to DEST ("." in its file
        // list): owner 0:0 and the permission bits; with -O never the mtime.
        let dst_st = fs::fstat(&dfd).map_err(|e| Error::Dest {
            path: dest.to_owned(),
            cause: e.into(),
        })?;
        let root = Worker::new(&shared, path);
        if let Err(e) = root.fix_dir_attrs(&dfd, &dst_st, st, Path::new("")) {
            errors.push(e);
            continue;
        }
        let dup = |fd: &OwnedFd, path: &Path| {
            fd.try_clone().map_err(|e| Error::Dest {
                path: path.to_owned(),
                cause: e,
            })
        };
        let job = Job {
            src: dup(sfd, path)?,
            dst: dup(&dfd, dest)?,
            rel: PathBuf::new(),
            fresh: false,
        };
        // One source at a time: a later source's entries are written only after every
        // entry of the earlier ones, so "a later source wins" holds whatever the threads do.
        let (s, mut e) = walk(&shared, path, job, threads);
        add(&mut stats, &s);
        errors.append(&mut e);
    }
    if errors.is_empty() {
        Ok(stats)
    } else {
        Err(Error::Incomplete { errors, stats })
    }
}

/// A directory's identity: (device, inode).
type DirId = (u64, u64);

fn dir_id(st: &Stat) -> DirId {
    (st.st_dev, st.st_ino)
}

/// `dir` and its ancestors up to `/`, nearest first, by identity. They are reached through
/// `..` from the handle, so neither a symlink nor `..` in the path `dir` was opened by can
/// hide one. The walk stops where `..` cannot be opened (no search permission).
fn ancestry(dir: BorrowedFd<'_>) -> Vec<DirId> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut ids = Vec::new();
    let Ok(mut cur) = fs::openat(dir, c".", flags, Mode::empty()) else {
        return ids;
    };
    while let Ok(st) = fs::fstat(&cur) {
        let id = dir_id(&st);
        if ids.contains(&id) {
            // `/..` is `/` (and a chroot's root is its own parent).
            break;
        }
        ids.push(id);
        match fs::openat(&cur, c"..", flags, Mode::empty()) {
            Ok(up) => cur = up,
            Err(_) => break,
        }
    }
    ids
}

/// Refuse a DEST that is a source, is inside one, or holds one: the walk would copy its own
/// output without end (`sync b b/in` made 26,744 levels in a minute, where rsync copies one
/// level) or write into a source as it reads it. `dest_fd` is DEST opened; `None` when DEST
/// does not exist, which is then judged by its nearest existing ancestor (it would be made
/// there).
fn refuse_nesting(
    sources: &[(&Path, OwnedFd, Stat)],
    dest: &Path,
    dest_fd: Option<BorrowedFd<'_>>,
) -> Result<(), Error> {
    let ancestor;
    let dest_dir = match dest_fd {
        Some(fd) => fd,
        None => {
            ancestor = dest.ancestors().skip(1).find_map(|p| {
                let p = if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                };
                fs::open(
                    p,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()
            });
            match &ancestor {
                Some(fd) => fd.as_fd(),
                None => return Ok(()),
            }
        }
    };
    let up = ancestry(dest_dir);
    for (path, fd, st) in sources {
        let id = dir_id(st);
        let nesting = match (dest_fd, up.first()) {
            (Some(_), Some(&d)) if d == id => Nesting::Same,
            _ if up.contains(&id) => Nesting::Inside,
            (Some(_), Some(d)) if ancestry(fd.as_fd()).contains(d) => Nesting::Contains,
            _ => continue,
        };
        return Err(Error::Nested {
            dest: dest.to_owned(),
            src: path.to_path_buf(),
            nesting,
        });
    }
    Ok(())
}

/// Worker threads for one walk: the machine's parallelism, at most [`MAX_THREADS`]; at
/// least one. `KEEL_OVERLAY_THREADS` overrides it.
fn threads() -> usize {
    if let Some(n) = std::env::var("KEEL_OVERLAY_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        return n.clamp(1, 64);
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_THREADS)
}

fn add(total: &mut Stats, s: &Stats) {
    total.dirs_created += s.dirs_created;
    total.files_written += s.files_written;
    total.files_unchanged += s.files_unchanged;
    total.symlinks_written += s.symlinks_written;
    total.specials_written += s.specials_written;
    total.bytes_copied += s.bytes_copied;
}

/// Sync one source tree (the `root` job) with `threads` workers sharing a stack of
/// directory jobs. Returns the summed stats and the errors in walk order (sorted by path,
/// component by component: the order a single-threaded depth-first walk reports them).
fn walk(shared: &Shared<'_>, src_root: &Path, root: Job, threads: usize) -> (Stats, Vec<Error>) {
    let queue = Queue {
        state: Mutex::new(QueueState {
            jobs: vec![root],
            busy: 0,
        }),
        ready: Condvar::new(),
        threads,
    };
    let mut done: Vec<Worker<'_>> = if threads <= 1 {
        let mut w = Worker::new(shared, src_root);
        w.run(&queue);
        vec![w]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let queue = &queue;
                    scope.spawn(move || {
                        let mut w = Worker::new(shared, src_root);
                        w.run(queue);
                        w
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let mut stats = Stats::default();
    let mut errors = Vec::new();
    for w in &mut done {
        add(&mut stats, &w.stats);
        errors.append(&mut w.errors);
    }
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    (stats, errors.into_iter().map(|(_, e)| e).collect())
}

/// A directory whose entries are still to be synced: both handles and its path relative
/// to the roots (for error messages only).
struct Job {
    src: OwnedFd,
    dst: OwnedFd,
    rel: PathBuf,
    /// The DEST directory was created by this walk, so it holds nothing yet and nothing
    /// else writes into it: its entries need no lookup in DEST.
    fresh: bool,
}

struct QueueState {
    jobs: Vec<Job>,
    /// Workers processing a job (and so maybe about to push more).
    busy: usize,
}

struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    threads: usize,
}

/// At most this many directory jobs wait in the queue; beyond it a worker descends into a
/// subdirectory itself. Bounds the open directory handles (two per queued job).
const MAX_QUEUED: usize = 64;
/// Default upper bound on worker threads.
const MAX_THREADS: usize = 8;

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A worker that panicked while holding the lock left consistent state (a Vec and a
        // counter); its panic is re-raised by the join.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job, or None when the queue is empty and no worker can add to it.
    fn pop(&self) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if let Some(job) = q.jobs.pop() {
                q.busy += 1;
                return Some(job);
            }
            if q.busy == 0 {
                return None;
            }
            q = self.ready.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finished(&self) {
        let mut q = self.lock();
        q.busy -= 1;
        if q.busy == 0 && q.jobs.is_empty() {
            self.ready.notify_all();
        }
    }

    /// Hand a subdirectory to another worker if the queue has room; else give it back.
    fn offer(&self, job: Job) -> Option<Job> {
        if self.threads <= 1 {
            return Some(job);
        }
        let mut q = self.lock();
        if q.jobs.len() >= MAX_QUEUED {
            return Some(job);
        }
        q.jobs.push(job);
        self.ready.notify_one();
        None
    }
}

/// Whether files we create are owned by 0:0 without a chown: our filesystem uid and gid are
/// 0, and every DEST directory we create entries in has been made 0:0 first (so a setgid
/// directory cannot hand down another group).
fn fs_ids_are_root() -> bool {
    rustix::process::geteuid().is_root() && rustix::process::getegid().is_root()
}

/// What every worker of a sync shares.
struct Shared<'a> {
    dest_root: &'a Path,
    pid: u32,
    /// Numbers temporary names (`.keel.PID.N`) across all workers.
    tmp_counter: AtomicU64,
    already_root: bool,
    /// Cleared when DEST's filesystem refuses `O_TMPFILE`; temporary names are used then.
    tmpfile_works: AtomicBool,
}

/// One thread's walk state: its own stats, errors (keyed by relative path for ordering)
/// and copy buffer.
struct Worker<'a> {
    sh: &'a Shared<'a>,
    src_root: &'a Path,
    stats: Stats,
    errors: Vec<(PathBuf, Error)>,
    buf: Vec<u8>,
}

fn perm(st: &Stat) -> u32 {
    st.st_mode & PERM_BITS
}

fn ftype(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn is_root_owned(st: &Stat) -> bool {
    st.st_uid == 0 && st.st_gid == 0
}

const ROOT_UID: Option<Uid> = Some(Uid::ROOT);
const ROOT_GID: Option<Gid> = Some(Gid::ROOT);

impl<'a> Worker<'a> {
    fn new(sh: &'a Shared<'a>, src_root: &'a Path) -> Self {
        Worker {
            sh,
            src_root,
            stats: Stats::default(),
            errors: Vec::new(),
            buf: Vec::new(),
        }
    }

    fn run(&mut self, queue: &Queue) {
        while let Some(mut job) = queue.pop() {
            self.sync_dir(
                queue,
                job.src.as_fd(),
                job.dst.as_fd(),
                &mut job.rel,
                job.fresh,
            );
            drop(job);
            queue.finished();
        }
    }

    fn src_path(&self, rel: &Path) -> PathBuf {
        self.src_root.join(rel)
    }

    fn dest_path(&self, rel: &Path) -> PathBuf {
        self.sh.dest_root.join(rel)
    }

    fn read_err(&self, op: &'static str, rel: &Path, e: Errno) -> Error {
        Error::Read {
            op,
            path: self.src_path(rel),
            cause: e.into(),
        }
    }

    fn write_err(&self, op: &'static str, rel: &Path, e: Errno) -> Error {
        Error::Write {
            op,
            path: self.dest_path(rel),
            cause: e.into(),
        }
    }

    /// Sync the entries of one source directory into one DEST directory. Failures are
    /// recorded in `self.errors`; the walk goes on.
    fn sync_dir(
        &mut self,
        queue: &Queue,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        rel: &mut PathBuf,
        fresh: bool,
    ) {
        let names = match read_names(src) {
            Ok(n) => n,
            Err(e) => {
                let e = self.read_err("read directory", rel, e);
                self.errors.push((rel.clone(), e));
                return;
            }
        };
        for name in names {
            rel.push(OsStr::from_bytes(name.to_bytes()));
            if let Err(e) = self.entry(queue, src, dst, &name, rel, fresh) {
                self.errors.push((rel.clone(), e));
            }
            rel.pop();
        }
    }

    fn entry(
        &mut self,
        queue: &Queue,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        rel: &mut PathBuf,
        fresh: bool,
    ) -> Result<(), Error> {
        let st = fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.read_err("stat", rel, e))?;
        let existing = if fresh {
            None
        } else {
            rootdir::lstat_at(dst, name).map_err(|e| self.write_err("stat", rel, e))?
        };
        match ftype(&st) {
            FileType::Directory => self.dir(queue, src, dst, name, &st, existing.as_ref(), rel),
            FileType::RegularFile => self.file(src, dst, name, &st, existing.as_ref(), rel),
            FileType::Symlink => self.symlink(src, dst, name, &st, existing.as_ref(), rel),
            FileType::Fifo
            | FileType::Socket
            | FileType::CharacterDevice
            | FileType::BlockDevice => self.special(dst, name, &st, existing.as_ref(), rel),
            FileType::Unknown => Err(Error::UnsupportedType {
                path: self.src_path(rel),
            }),
        }
    }

    /// Owner 0:0 and the source's permission bits on a DEST directory we hold open.
    /// Never its mtime (rsync -O). chown before chmod: a chown may clear setgid.
    fn fix_dir_attrs(
        &self,
        dfd: &OwnedFd,
        have: &Stat,
        want: &Stat,
        rel: &Path,
    ) -> Result<(), Error> {
        if !is_root_owned(have) {
            fs::fchown(dfd, ROOT_UID, ROOT_GID).map_err(|e| self.write_err("chown", rel, e))?;
        }
        if perm(have) != perm(want) {
            fs::fchmod(dfd, Mode::from_raw_mode(perm(want)))
                .map_err(|e| self.write_err("chmod", rel, e))?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn dir(
        &mut self,
        queue: &Queue,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        existing: Option<&Stat>,
        rel: &mut PathBuf,
    ) -> Result<(), Error> {
        let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let (dfd, fresh) = match existing {
            Some(e) if ftype(e) == FileType::Directory => {
                let dfd = fs::openat(dst, name, dir_flags, Mode::empty())
                    .map_err(|e| self.write_err("open directory", rel, e))?;
                self.fix_dir_attrs(&dfd, e, st, rel)?;
                (dfd, false)
            }
            other => {
                if other.is_some() {
                    // A file, symlink or special file where the source has a directory:
                    // removed (the symlink itself, never its target), as rsync does.
                    fs::unlinkat(dst, name, AtFlags::empty())
                        .map_err(|e| self.write_err("remove", rel, e))?;
                }
                fs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| self.write_err("create directory", rel, e))?;
                self.stats.dirs_created += 1;
                let dfd = fs::openat(dst, name, dir_flags, Mode::empty())
                    .map_err(|e| self.write_err("open directory", rel, e))?;
                let new = fs::fstat(&dfd).map_err(|e| self.write_err("stat", rel, e))?;
                self.fix_dir_attrs(&dfd, &new, st, rel)?;
                (dfd, true)
            }
        };
        let sfd = fs::openat(src, name, dir_flags, Mode::empty())
            .map_err(|e| self.read_err("open directory", rel, e))?;
        let job = Job {
            src: sfd,
            dst: dfd,
            rel: rel.clone(),
            fresh,
        };
        // Another worker takes the subtree if the queue has room; else descend here.
        if let Some(job) = queue.offer(job) {
            self.sync_dir(queue, job.src.as_fd(), job.dst.as_fd(), rel, job.fresh);
        }
        Ok(())
    }

    /// A directory in DEST where the source has a non-directory: an empty one is removed;
    /// a non-empty one is kept and the entry fails, as rsync without `--force` does.
    fn remove_dir_in_way(
        &self,
        dst: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        ft: FileType,
    ) -> Result<(), Error> {
        match fs::unlinkat(dst, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(()),
            Err(Errno::NOTEMPTY | Errno::EXIST) => Err(Error::NonEmptyDir {
                path: self.dest_path(rel),
                kind: rootdir::kind_name(ft),
            }),
            Err(e) => Err(self.write_err("remove directory", rel, e)),
        }
    }

    /// A fresh temporary name in `dst`, passed to `create` until it does not exist yet.
    fn with_temp<T>(
        &mut self,
        rel: &Path,
        mut create: impl FnMut(&CStr) -> Result<T, Errno>,
    ) -> Result<(CString, T), Error> {
        loop {
            let n = self.sh.tmp_counter.fetch_add(1, Ordering::Relaxed) + 1;
            let tmp = CString::new(format!(".keel.{}.{}", self.sh.pid, n))
                .expect("no NUL in a formatted number");
            match create(&tmp) {
                Ok(t) => return Ok((tmp, t)),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(self.write_err("create a temporary file for", rel, e)),
            }
        }
    }

    /// Put the finished temporary entry in place; on failure remove it.
    fn commit(
        &self,
        dst: BorrowedFd<'_>,
        tmp: &CStr,
        name: &CStr,
        rel: &Path,
        finish: Result<(), Error>,
    ) -> Result<(), Error> {
        let r = finish.and_then(|()| {
            fs::renameat(dst, tmp, dst, name).map_err(|e| self.write_err("rename into", rel, e))
        });
        if r.is_err() {
            let _ = fs::unlinkat(dst, tmp, AtFlags::empty());
        }
        r
    }

    fn file(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        existing: Option<&Stat>,
        rel: &Path,
    ) -> Result<(), Error> {
        if let Some(e) = existing {
            match ftype(e) {
                // rsync's quick check: same size and same mtime seconds.
                FileType::RegularFile if e.st_size == st.st_size && e.st_mtime == st.st_mtime => {
                    self.fix_attrs_in_place(dst, name, e, st, rel)?;
                    self.stats.files_unchanged += 1;
                    return Ok(());
                }
                FileType::Directory => {
                    self.remove_dir_in_way(dst, name, rel, FileType::RegularFile)?
                }
                _ => {}
            }
        }
        let sfd = fs::openat(
            src,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.read_err("open", rel, e))?;
        let size = st.st_size as u64;
        // Nothing at the name yet: write an unnamed file (`O_TMPFILE`) and link it in when
        // complete, so no temporary name ever appears in DEST.
        if existing.is_none() {
            if let Some(tfd) = self.unnamed_file(dst, rel)? {
                self.fill(&sfd, &tfd, st, rel)?;
                self.link_in(&tfd, dst, name, rel)?;
                self.stats.files_written += 1;
                self.stats.bytes_copied += size;
                return Ok(());
            }
        }
        let (tmp, tfd) = self.with_temp(rel, |tmp| {
            fs::openat(
                dst,
                tmp,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })?;
        let finish = self.fill(&sfd, &tfd, st, rel);
        drop(tfd);
        self.commit(dst, &tmp, name, rel, finish)?;
        self.stats.files_written += 1;
        self.stats.bytes_copied += size;
        Ok(())
    }

    /// An unnamed regular file in `dst` (`O_TMPFILE`, mode 0600), or None where the
    /// filesystem does not support it (remembered for the rest of the sync).
    fn unnamed_file(&self, dst: BorrowedFd<'_>, rel: &Path) -> Result<Option<OwnedFd>, Error> {
        if !self.sh.tmpfile_works.load(Ordering::Relaxed) {
            return Ok(None);
        }
        match fs::openat(
            dst,
            c".",
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
                self.sh.tmpfile_works.store(false, Ordering::Relaxed);
                Ok(None)
            }
            Err(e) => Err(self.write_err("create a temporary file for", rel, e)),
        }
    }

    /// Content, owner, permission bits and mtime of a new file not yet at its final name.
    fn fill(&mut self, sfd: &OwnedFd, tfd: &OwnedFd, st: &Stat, rel: &Path) -> Result<(), Error> {
        copy(sfd, tfd, st.st_size as u64, &mut self.buf).map_err(|e| Error::Copy {
            from: self.src_path(rel),
            to: self.dest_path(rel),
            cause: e.into(),
        })?;
        if !self.sh.already_root {
            fs::fchown(tfd, ROOT_UID, ROOT_GID).map_err(|e| self.write_err("chown", rel, e))?;
        }
        fs::fchmod(tfd, Mode::from_raw_mode(perm(st)))
            .map_err(|e| self.write_err("chmod", rel, e))?;
        fs::futimens(tfd, &only_mtime(mtime_of(st)))
            .map_err(|e| self.write_err("set the mtime of", rel, e))
    }

    /// Give the finished unnamed file `tfd` its final name. `linkat(AT_EMPTY_PATH)` needs
    /// CAP_DAC_READ_SEARCH before Linux 6.10 (since then, not for a file the caller opened
    /// itself); where it is refused, the file is linked through `/proc/self/fd`. If the
    /// name appeared meanwhile, the file is linked at a temporary name and renamed over it.
    fn link_in(
        &mut self,
        tfd: &OwnedFd,
        dst: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
    ) -> Result<(), Error> {
        let link = |to: &CStr| match fs::linkat(tfd, c"", dst, to, AtFlags::EMPTY_PATH) {
            Err(Errno::NOENT | Errno::PERM) => {
                let proc_fd = rustix::procfs::proc_self_fd()?;
                let num = tfd.as_raw_fd().to_string();
                fs::linkat(proc_fd, num.as_str(), dst, to, AtFlags::SYMLINK_FOLLOW)
            }
            r => r,
        };
        match link(name) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let (tmp, ()) = self.with_temp(rel, link)?;
                self.commit(dst, &tmp, name, rel, Ok(()))
            }
            Err(e) => Err(self.write_err("create", rel, e)),
        }
    }

    /// Owner 0:0 and permission bits on an existing non-directory, without following it.
    fn fix_attrs_in_place(
        &self,
        dst: BorrowedFd<'_>,
        name: &CStr,
        have: &Stat,
        want: &Stat,
        rel: &Path,
    ) -> Result<(), Error> {
        if !is_root_owned(have) {
            rootdir::lchown_at(dst, name.to_bytes(), Some(0), Some(0))
                .map_err(|e| self.write_err("chown", rel, e))?;
        }
        if perm(have) != perm(want) || (!is_root_owned(have) && perm(want) & 0o6000 != 0) {
            rootdir::chmod_nofollow(dst, name.to_bytes(), perm(want))
                .map_err(|e| self.write_err("chmod", rel, e))?;
        }
        Ok(())
    }

    fn symlink(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        existing: Option<&Stat>,
        rel: &Path,
    ) -> Result<(), Error> {
        let target = fs::readlinkat(src, name, Vec::new())
            .map_err(|e| self.read_err("read link", rel, e))?;
        if let Some(e) = existing {
            match ftype(e) {
                FileType::Symlink => {
                    let cur = fs::readlinkat(dst, name, Vec::new())
                        .map_err(|e| self.write_err("read link", rel, e))?;
                    if cur == target {
                        if !is_root_owned(e) {
                            rootdir::lchown_at(dst, name.to_bytes(), Some(0), Some(0))
                                .map_err(|e| self.write_err("chown", rel, e))?;
                        }
                        if mtime_of(e) != mtime_of(st) {
                            self.copy_mtime_at(dst, name, st, rel)?;
                        }
                        return Ok(());
                    }
                }
                FileType::Directory => self.remove_dir_in_way(dst, name, rel, FileType::Symlink)?,
                _ => {}
            }
        }
        let (tmp, ()) = self.with_temp(rel, |tmp| fs::symlinkat(&target, dst, tmp))?;
        let finish = self.finish_at(dst, &tmp, st, None, rel);
        self.commit(dst, &tmp, name, rel, finish)?;
        self.stats.symlinks_written += 1;
        Ok(())
    }

    fn special(
        &mut self,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        existing: Option<&Stat>,
        rel: &Path,
    ) -> Result<(), Error> {
        let ft = ftype(st);
        let has_rdev = matches!(ft, FileType::CharacterDevice | FileType::BlockDevice);
        if let Some(e) = existing {
            if ftype(e) == ft && (!has_rdev || e.st_rdev == st.st_rdev) {
                self.fix_attrs_in_place(dst, name, e, st, rel)?;
                if mtime_of(e) != mtime_of(st) {
                    self.copy_mtime_at(dst, name, st, rel)?;
                }
                return Ok(());
            }
            if ftype(e) == FileType::Directory {
                self.remove_dir_in_way(dst, name, rel, ft)?;
            }
        }
        let rdev = if has_rdev { st.st_rdev as _ } else { 0 };
        let (tmp, ()) = self.with_temp(rel, |tmp| {
            fs::mknodat(dst, tmp, ft, Mode::from_raw_mode(0o600), rdev)
        })?;
        let finish = self.finish_at(dst, &tmp, st, Some(perm(st)), rel);
        self.commit(dst, &tmp, name, rel, finish)?;
        self.stats.specials_written += 1;
        Ok(())
    }

    /// The source's mtime on `name` in `dst` itself (a symlink's own).
    fn copy_mtime_at(
        &self,
        dst: BorrowedFd<'_>,
        name: &CStr,
        st: &Stat,
        rel: &Path,
    ) -> Result<(), Error> {
        fs::utimensat(
            dst,
            name,
            &only_mtime(mtime_of(st)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.write_err("set the mtime of", rel, e))
    }

    /// Owner, permission bits (not for symlinks) and mtime of a new temporary entry.
    fn finish_at(
        &self,
        dst: BorrowedFd<'_>,
        tmp: &CStr,
        st: &Stat,
        mode: Option<u32>,
        rel: &Path,
    ) -> Result<(), Error> {
        if !self.sh.already_root {
            rootdir::lchown_at(dst, tmp.to_bytes(), Some(0), Some(0))
                .map_err(|e| self.write_err("chown", rel, e))?;
        }
        if let Some(mode) = mode {
            rootdir::chmod_nofollow(dst, tmp.to_bytes(), mode)
                .map_err(|e| self.write_err("chmod", rel, e))?;
        }
        self.copy_mtime_at(dst, tmp, st, rel)
    }
}

/// The names in a directory, `.` and `..` left out, sorted bytewise (a deterministic order
/// for error lists).
fn read_names(dir: BorrowedFd<'_>) -> Result<Vec<CString>, Errno> {
    let mut names = rootdir::read_names(dir)?
        .into_iter()
        // A name read from a directory has no NUL.
        .map(|n| CString::new(n).map_err(|_| Errno::INVAL))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort_unstable();
    Ok(names)
}

/// Copy `size` bytes (fewer if the source ends first) from `src` to `dst`: for files over
/// [`SMALL`] the kernel's copy offload (`copy_file_range`: reflink or in-kernel copy) where
/// the filesystems allow it, else (and for small files) read/write.
fn copy(src: &OwnedFd, dst: &OwnedFd, size: u64, buf: &mut Vec<u8>) -> Result<(), Errno> {
    let mut done = 0u64;
    // A small file costs less as one read and one write than through the kernel's copy
    // (on filesystems without reflinks that is a splice through a pipe).
    let mut offload = size > SMALL;
    while done < size {
        let want = (size - done).min(CHUNK as u64) as usize;
        if offload {
            match fs::copy_file_range(src, None, dst, None, want) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    done += n as u64;
                    continue;
                }
                Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) if done == 0 => {
                    offload = false
                }
                Err(e) => return Err(e),
            }
        }
        if buf.is_empty() {
            buf.resize(256 * 1024, 0);
        }
        let n = want.min(buf.len());
        let got = rustix::io::read(src, &mut buf[..n])?;
        if got == 0 {
            return Ok(());
        }
        let mut out = &buf[..got];
        while !out.is_empty() {
            let w = rustix::io::write(dst, out)?;
            out = &out[w..];
        }
        done += got as u64;
    }
    Ok(())
}
