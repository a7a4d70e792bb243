//! Applying layers to a tree held by directory handles.

use crate::layout::{finish, Hashing};
use crate::names::{self, Kind};
use crate::spec::{self, Compression};
use crate::{Error, Image};
use rootdir::{
    chmod_nofollow, lchown_at, lstat_at, mtime_of, read_names, remove_all, set_xattr_at,
};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as fs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

/// What an unpack did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub layers: u64,
    /// Tar entries read (all kinds, whiteouts included).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Character and block devices and fifos.
    pub specials: u64,
    /// `.wh.NAME` entries.
    pub whiteouts: u64,
    /// `.wh..wh..opq` entries.
    pub opaque: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Bytes of layer blobs read (compressed).
    pub blob_bytes: u64,
}

use rootdir::DIR_FLAGS;
const PERM_BITS: u32 = 0o7777;
const EPOCH: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 0,
};

/// Apply the layers of `img`, lowest first, into `dest`, which must be an empty directory or
/// not exist. The tree is built in `DEST.tmp-PID-N` next to DEST and renamed to DEST when
/// every layer is applied and verified; on error it is removed and DEST is left as it was.
pub fn unpack(img: &Image, dest: &Path) -> Result<crate::UnpackStats, Error> {
    let dest_err = |source: io::Error| Error::Dest {
        path: dest.to_owned(),
        cause: source,
    };
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            if std::fs::read_dir(dest).map_err(dest_err)?.next().is_some() {
                return Err(Error::DestNotEmpty {
                    path: dest.to_owned(),
                });
            }
        }
        Ok(_) => {
            return Err(Error::DestNotEmpty {
                path: dest.to_owned(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(dest_err(e)),
    }
    let name = dest.file_name().ok_or_else(|| {
        dest_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "has no final file name",
        ))
    })?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let pfd = fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| dest_err(e.into()))?;
    let mut n = 0u32;
    let tmp = loop {
        n += 1;
        let mut t = name.as_bytes().to_vec();
        t.extend_from_slice(format!(".tmp-{}-{n}", std::process::id()).as_bytes());
        match fs::mkdirat(&pfd, &t, Mode::from_raw_mode(0o700)) {
            Ok(()) => break t,
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(dest_err(e.into())),
        }
    };
    let built = (|| {
        let root =
            fs::openat(&pfd, &tmp, DIR_FLAGS, Mode::empty()).map_err(|e| dest_err(e.into()))?;
        // Like umoci's rootfs: 0:0, 0755 and the epoch, until a layer has an entry for `./`.
        std::os::unix::fs::fchown(&root, Some(0), Some(0)).map_err(dest_err)?;
        fs::fchmod(&root, Mode::from_raw_mode(0o755)).map_err(|e| dest_err(e.into()))?;
        fs::futimens(&root, &stamps(EPOCH)).map_err(|e| dest_err(e.into()))?;
        let mut u = Unpacker {
            root: Rc::new(root),
            stack: Vec::new(),
            digest: String::new(),
            entry: String::new(),
            added: HashSet::new(),
            dirs: HashMap::new(),
            touched: HashMap::new(),
            stats: UnpackStats::default(),
            buf: vec![0; 1 << 18],
        };
        for (i, layer) in img.layers().iter().enumerate() {
            u.layer(img, i, layer)?;
        }
        fs::renameat(&pfd, &tmp, &pfd, name.as_bytes()).map_err(|e| dest_err(e.into()))?;
        Ok(u.stats)
    })();
    if built.is_err() {
        let _ = remove_all(pfd.as_fd(), &tmp);
    }
    built
}

/// Metadata of one tar entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Unpacker {
    root: Rc<OwnedFd>,
    /// Open directories along the path of the last parent: (name, handle), from the root.
    stack: Vec<(Vec<u8>, Rc<OwnedFd>)>,
    /// The layer being applied, and the entry, for errors.
    digest: String,
    entry: String,
    /// Paths this layer created, with their ancestors: what an opaque directory keeps.
    added: HashSet<Vec<u8>>,
    /// Directory entries of this layer: mode and mtime, applied at the layer's end.
    dirs: HashMap<Vec<u8>, (u32, Timespec)>,
    /// Directories whose content this layer changed: their mtime before, restored at the
    /// layer's end unless the layer has an entry for the directory itself.
    touched: HashMap<Vec<u8>, Timespec>,
    stats: UnpackStats,
    buf: Vec<u8>,
}

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

fn child(key: &[u8], name: &[u8]) -> Vec<u8> {
    if key.is_empty() {
        name.to_vec()
    } else {
        [key, b"/", name].concat()
    }
}

fn stamps(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

impl Unpacker {
    fn layer_err(&self, img: &Image) -> impl Fn(io::Error) -> Error + '_ {
        let path = img.path().to_owned();
        move |source| Error::Layer {
            path: path.clone(),
            digest: self.digest.clone(),
            cause: source,
        }
    }

    fn layer(&mut self, img: &Image, i: usize, desc: &spec::Descriptor) -> Result<(), Error> {
        self.digest = desc.digest.clone();
        let compression =
            spec::layer_compression(&desc.media_type).ok_or_else(|| Error::MediaType {
                path: img.path().to_owned(),
                what: "layer",
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
            })?;
        let (raw, raw_state) = Hashing::new(img.source.blob(desc)?);
        let dec: Box<dyn Read + '_> = match compression {
            Compression::None => Box::new(raw),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
            Compression::Zstd => {
                Box::new(zstd::Decoder::new(raw).map_err(|e| self.layer_err(img)(e))?)
            }
        };
        let (dec, diff_state) = Hashing::new(dec);
        let mut ar = tar::Archive::new(dec);
        let entries = ar.entries().map_err(|e| self.layer_err(img)(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.layer_err(img)(e))?;
            self.stats.entries += 1;
            self.entry(&mut entry)?;
        }
        let mut rest = ar.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| self.layer_err(img)(e))?;
        drop(rest);
        img.source.verify(desc, &raw_state)?;
        let (diff_id, _) = finish(&diff_state);
        let diff_ids = &img.config.rootfs.diff_ids;
        let expected = diff_ids.get(i).ok_or_else(|| Error::LayerCount {
            path: img.path().to_owned(),
            layers: img.layers().len(),
            diff_ids: diff_ids.len(),
        })?;
        if &diff_id != expected {
            return Err(Error::DiffIdMismatch {
                path: img.path().to_owned(),
                digest: desc.digest.clone(),
                expected: expected.clone(),
                actual: diff_id,
            });
        }
        self.stats.blob_bytes += desc.size;
        self.end_layer()?;
        self.stats.layers += 1;
        Ok(())
    }

    fn unsafe_err(&self, reason: impl std::fmt::Display) -> Error {
        Error::Unsafe {
            digest: self.digest.clone(),
            entry: self.entry.clone(),
            reason: reason.to_string(),
        }
    }

    fn err(&self, op: impl Into<String>) -> impl FnOnce(Errno) -> Error + '_ {
        let op = op.into();
        move |e| Error::Entry {
            digest: self.digest.clone(),
            entry: self.entry.clone(),
            op,
            cause: e.into(),
        }
    }

    fn io_err(&self, op: &str) -> impl FnOnce(io::Error) -> Error + '_ {
        let op = op.to_owned();
        move |source| Error::Entry {
            digest: self.digest.clone(),
            entry: self.entry.clone(),
            op,
            cause: source,
        }
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), Error> {
        let path = e.path_bytes().into_owned();
        self.entry = String::from_utf8_lossy(&path).into_owned();
        let kind = e.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            return Ok(());
        }
        let comps = names::clean(&path).map_err(|u| self.unsafe_err(u))?;
        let Some((name, parent)) = comps.split_last() else {
            if !kind.is_dir() {
                return Err(self.unsafe_err("the root of the tree must be a directory"));
            }
            let meta = self.meta(e)?;
            let root = self.root.clone();
            self.set_owner_xattrs(root.as_fd(), &meta)?;
            self.dirs.insert(Vec::new(), (meta.mode, meta.mtime));
            self.stats.dirs += 1;
            return Ok(());
        };
        if parent.iter().any(|c| c.starts_with(b".wh..wh.")) {
            // Below aufs metadata (`.wh..wh.plnk/...`): not part of the tree.
            return Ok(());
        }
        match names::classify(name).map_err(|u| self.unsafe_err(u))? {
            Kind::Opaque => self.opaque(parent),
            Kind::Whiteout(target) => self.whiteout(parent, target),
            Kind::AufsMeta => Ok(()),
            Kind::Plain => self.plain(e, parent, name, kind),
        }
    }

    fn meta<R: Read>(&self, e: &mut tar::Entry<'_, R>) -> Result<Meta, Error> {
        let h = e.header();
        let bad = |what: &str, err: io::Error| Error::Unsupported {
            digest: self.digest.clone(),
            entry: self.entry.clone(),
            what: format!("{what} in the tar header ({err})"),
        };
        let mode = h.mode().map_err(|x| bad("mode", x))? & PERM_BITS;
        let mut uid = h.uid().map_err(|x| bad("uid", x))?;
        let mut gid = h.gid().map_err(|x| bad("gid", x))?;
        let mut mtime = Timespec {
            tv_sec: h.mtime().map_err(|x| bad("mtime", x))? as _,
            tv_nsec: 0,
        };
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().map_err(|x| bad("PAX header", x))? {
            for ext in exts {
                let ext = ext.map_err(|x| bad("PAX record", x))?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                let num = |v: &[u8]| {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                };
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), value.to_vec()));
                } else if key == b"uid" {
                    uid = num(value).unwrap_or(uid);
                } else if key == b"gid" {
                    gid = num(value).unwrap_or(gid);
                } else if key == b"mtime" {
                    if let Some(t) = pax_time(value) {
                        mtime = t;
                    }
                }
            }
        }
        let id = |v: u64, what: &str| {
            u32::try_from(v).map_err(|_| Error::Unsupported {
                digest: self.digest.clone(),
                entry: self.entry.clone(),
                what: format!("{what} {v}"),
            })
        };
        Ok(Meta {
            mode,
            uid: id(uid, "uid")?,
            gid: id(gid, "gid")?,
            mtime,
            xattrs,
        })
    }

    /// The directory `comps` (from the root), opened one component at a time without
    /// following symlinks. Missing directories are created (mode 0755) when `create`;
    /// otherwise a missing or non-directory component gives `None`.
    fn dir(&mut self, comps: &[&[u8]], create: bool) -> Result<Option<Rc<OwnedFd>>, Error> {
        let keep = self
            .stack
            .iter()
            .zip(comps)
            .take_while(|((a, _), b)| a.as_slice() == **b)
            .count();
        self.stack.truncate(keep);
        for i in keep..comps.len() {
            let cur = match i {
                0 => self.root.clone(),
                _ => self.stack[i - 1].1.clone(),
            };
            let name = comps[i];
            let fd = match fs::openat(&*cur, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    self.touch(&join(&comps[..i]), cur.as_fd())?;
                    fs::mkdirat(&*cur, name, Mode::from_raw_mode(0o700))
                        .map_err(self.err(format!("create directory `{}`", show(&comps[..=i]))))?;
                    let fd = fs::openat(&*cur, name, DIR_FLAGS, Mode::empty())
                        .map_err(self.err("open the directory just made"))?;
                    // A parent the layer has no entry for: 0755, 0:0 (not a setgid
                    // parent's group) and the epoch (deterministic, where umoci leaves
                    // the time of the unpack) unless an entry for it comes later.
                    std::os::unix::fs::fchown(&fd, Some(0), Some(0))
                        .map_err(self.io_err("chown the directory just made"))?;
                    fs::fchmod(&fd, Mode::from_raw_mode(0o755))
                        .map_err(self.err("chmod the directory just made"))?;
                    self.touched.insert(join(&comps[..=i]), EPOCH);
                    self.mark_added(&comps[..=i]);
                    fd
                }
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) if !create => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let what = match fs::statat(&*cur, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                            "is a symlink (never followed)"
                        }
                        _ => "is not a directory",
                    };
                    return Err(self.unsafe_err(format!("`{}` {what}", show(&comps[..=i]))));
                }
                Err(e) => return Err(self.err(format!("open `{}`", show(&comps[..=i])))(e)),
            };
            self.stack.push((name.to_vec(), Rc::new(fd)));
        }
        Ok(Some(match comps.len() {
            0 => self.root.clone(),
            n => self.stack[n - 1].1.clone(),
        }))
    }

    /// Remember a directory's mtime before this layer first changes its content.
    fn touch(&mut self, key: &[u8], dir: BorrowedFd<'_>) -> Result<(), Error> {
        if !self.touched.contains_key(key) {
            let st = fs::fstat(dir).map_err(self.err("stat its directory"))?;
            self.touched.insert(key.to_vec(), mtime_of(&st));
        }
        Ok(())
    }

    fn mark_added(&mut self, comps: &[&[u8]]) {
        for i in (1..=comps.len()).rev() {
            if !self.added.insert(join(&comps[..i])) {
                break;
            }
        }
    }

    fn set_owner_xattrs(&self, fd: BorrowedFd<'_>, m: &Meta) -> Result<(), Error> {
        std::os::unix::fs::fchown(fd, Some(m.uid), Some(m.gid)).map_err(self.io_err("chown"))?;
        self.set_xattrs(fd, m)
    }

    fn set_xattrs(&self, fd: BorrowedFd<'_>, m: &Meta) -> Result<(), Error> {
        for (k, v) in &m.xattrs {
            fs::fsetxattr(fd, k.as_slice(), v, fs::XattrFlags::empty())
                .map_err(self.err(format!("set xattr `{}`", String::from_utf8_lossy(k))))?;
        }
        Ok(())
    }

    /// Owner, xattrs, mode (unless a symlink) and mtime of a non-regular, non-directory
    /// entry, by its name in `dir`, never following it.
    fn finish_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        m: &Meta,
        symlink: bool,
    ) -> Result<(), Error> {
        lchown_at(dir, name, Some(m.uid), Some(m.gid)).map_err(self.err("chown"))?;
        if !symlink {
            chmod_nofollow(dir, name, m.mode).map_err(self.err("chmod"))?;
        }
        for (k, v) in &m.xattrs {
            set_xattr_at(dir, name, k.as_slice(), v)
                .map_err(self.err(format!("set xattr `{}`", String::from_utf8_lossy(k))))?;
        }
        fs::utimensat(dir, name, &stamps(m.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(self.err("set the mtime"))
    }

    fn plain<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        parent: &[&[u8]],
        name: &[u8],
        kind: tar::EntryType,
    ) -> Result<(), Error> {
        use tar::EntryType as T;
        let meta = self.meta(e)?;
        let dir = self
            .dir(parent, true)?
            .ok_or_else(|| self.unsafe_err("its parent cannot be made"))?;
        let dir = dir.as_fd();
        let pkey = join(parent);
        self.touch(&pkey, dir)?;
        let existing = lstat_at(dir, name)
            .map_err(self.err("stat"))?
            .map(|st| FileType::from_raw_mode(st.st_mode));
        let is_dir = kind == T::Directory;
        match existing {
            Some(FileType::Directory) if is_dir => {}
            Some(FileType::Directory) => {
                remove_all(dir, name).map_err(self.err("remove the directory it replaces"))?
            }
            Some(_) => fs::unlinkat(dir, name, AtFlags::empty())
                .map_err(self.err("remove the entry it replaces"))?,
            None => {}
        }
        let key = child(&pkey, name);
        match kind {
            T::Directory => {
                if existing != Some(FileType::Directory) {
                    fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                        .map_err(self.err("create the directory"))?;
                }
                let fd = fs::openat(dir, name, DIR_FLAGS, Mode::empty())
                    .map_err(self.err("open the directory"))?;
                self.set_owner_xattrs(fd.as_fd(), &meta)?;
                self.dirs.insert(key, (meta.mode, meta.mtime));
                self.stats.dirs += 1;
            }
            T::Regular | T::Continuous => {
                let fd = fs::openat(
                    dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(self.err("create the file"))?;
                let mut f = std::fs::File::from(fd);
                let mut n = 0u64;
                loop {
                    let got = e
                        .read(&mut self.buf)
                        .map_err(self.io_err("read the content"))?;
                    if got == 0 {
                        break;
                    }
                    f.write_all(&self.buf[..got])
                        .map_err(self.io_err("write the content"))?;
                    n += got as u64;
                }
                // chown before chmod (a chown clears setuid); xattrs after both (a chown
                // clears security.capability); the mtime last.
                std::os::unix::fs::fchown(&f, Some(meta.uid), Some(meta.gid))
                    .map_err(self.io_err("chown"))?;
                fs::fchmod(&f, Mode::from_raw_mode(meta.mode)).map_err(self.err("chmod"))?;
                self.set_xattrs(f.as_fd(), &meta)?;
                fs::futimens(&f, &stamps(meta.mtime)).map_err(self.err("set the mtime"))?;
                self.stats.files += 1;
                self.stats.bytes += n;
            }
            T::Symlink => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_err("a symlink without a target"))?
                    .into_owned();
                fs::symlinkat(target.as_slice(), dir, name)
                    .map_err(self.err("create the symlink"))?;
                self.finish_at(dir, name, &meta, true)?;
                self.stats.symlinks += 1;
            }
            T::Link => {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| self.unsafe_err("a hard link without a target"))?
                    .into_owned();
                let tcomps = names::clean(&target)
                    .map_err(|u| self.unsafe_err(format!("hard link target: {u}")))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(self.unsafe_err("a hard link to the root directory"));
                };
                let tdir = self.lookup(tparent)?.ok_or_else(|| {
                    self.unsafe_err(format!(
                        "hard link target `{}` is not inside the tree",
                        String::from_utf8_lossy(&target)
                    ))
                })?;
                fs::linkat(&tdir, *tname, dir, name, AtFlags::empty()).map_err(self.err(
                    format!("hard link to `{}`", String::from_utf8_lossy(&target)),
                ))?;
                self.stats.hardlinks += 1;
            }
            T::Char | T::Block | T::Fifo => {
                let (ft, dev) = match kind {
                    T::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let h = e.header();
                        let maj = h.device_major().ok().flatten().unwrap_or(0);
                        let min = h.device_minor().ok().flatten().unwrap_or(0);
                        let ft = if kind == T::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, fs::makedev(maj, min))
                    }
                };
                fs::mknodat(dir, name, ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(self.err("create the special file"))?;
                self.finish_at(dir, name, &meta, false)?;
                self.stats.specials += 1;
            }
            other => {
                return Err(Error::Unsupported {
                    digest: self.digest.clone(),
                    entry: self.entry.clone(),
                    what: format!("entry type {other:?}"),
                })
            }
        }
        let mut all = parent.to_vec();
        all.push(name);
        self.mark_added(&all);
        Ok(())
    }

    /// A directory reached from the root without creating anything and without touching
    /// the cached walk: `None` when a component is missing; an error when one is a symlink
    /// or not a directory.
    fn lookup(&self, comps: &[&[u8]]) -> Result<Option<OwnedFd>, Error> {
        match rootdir::open_dir_nofollow(self.root.as_fd(), comps.iter().copied()) {
            Ok(fd) => Ok(Some(fd)),
            Err((i, e)) if i >= comps.len() => Err(self.err("open the root")(e)),
            Err((_, Errno::NOENT)) => Ok(None),
            Err((i, Errno::LOOP | Errno::NOTDIR)) => Err(self.unsafe_err(format!(
                "hard link target path `{}` is not a directory (symlinks are never followed)",
                show(&comps[..=i])
            ))),
            Err((i, e)) => Err(self.err(format!("open `{}`", show(&comps[..=i])))(e)),
        }
    }

    fn whiteout(&mut self, parent: &[&[u8]], target: &[u8]) -> Result<(), Error> {
        self.stats.whiteouts += 1;
        // Nothing is below a missing directory or a non-directory (umoci writes `d/.wh.f`
        // after replacing directory `d` by a file in the same layer).
        let Some(dir) = self.dir(parent, false)? else {
            return Ok(());
        };
        let dir = dir.as_fd();
        let pkey = join(parent);
        let key = child(&pkey, target);
        let Some(st) = lstat_at(dir, target).map_err(self.err("stat the whited-out entry"))? else {
            return Ok(());
        };
        let st = FileType::from_raw_mode(st.st_mode);
        if self.added.contains(&key) {
            // The same layer made it: a whiteout hides only what lower layers made.
            if st == FileType::Directory {
                let fd = fs::openat(dir, target, DIR_FLAGS, Mode::empty())
                    .map_err(self.err("open the whited-out directory"))?;
                self.prune(fd.as_fd(), &key)?;
            }
            return Ok(());
        }
        self.touch(&pkey, dir)?;
        if st == FileType::Directory {
            remove_all(dir, target).map_err(self.err("remove the whited-out directory"))
        } else {
            fs::unlinkat(dir, target, AtFlags::empty())
                .map_err(self.err("remove the whited-out entry"))
        }
    }

    fn opaque(&mut self, parent: &[&[u8]]) -> Result<(), Error> {
        self.stats.opaque += 1;
        let Some(dir) = self.dir(parent, false)? else {
            return Ok(());
        };
        self.prune(dir.as_fd(), &join(parent))
    }

    /// Remove from the directory `key` (held by `dir`) everything this layer did not make.
    fn prune(&mut self, dir: BorrowedFd<'_>, key: &[u8]) -> Result<(), Error> {
        let names = read_names(dir).map_err(self.err("read the opaque directory"))?;
        for name in names {
            let ckey = child(key, &name);
            let Some(st) =
                lstat_at(dir, name.as_slice()).map_err(self.err("stat in the opaque directory"))?
            else {
                continue;
            };
            let st = FileType::from_raw_mode(st.st_mode);
            if self.added.contains(&ckey) {
                if st == FileType::Directory {
                    let fd = fs::openat(dir, name.as_slice(), DIR_FLAGS, Mode::empty())
                        .map_err(self.err("open in the opaque directory"))?;
                    self.prune(fd.as_fd(), &ckey)?;
                }
                continue;
            }
            self.touch(key, dir)?;
            if st == FileType::Directory {
                remove_all(dir, &name).map_err(self.err("empty the opaque directory"))?;
            } else {
                fs::unlinkat(dir, name.as_slice(), AtFlags::empty())
                    .map_err(self.err("empty the opaque directory"))?;
            }
        }
        Ok(())
    }

    /// Directory modes and mtimes, after all their children: the layer's own directory
    /// entries get theirs; directories whose content changed get their mtime back.
    fn end_layer(&mut self) -> Result<(), Error> {
        self.entry = "(directory metadata at the end of the layer)".into();
        let touched = std::mem::take(&mut self.touched);
        let dirs = std::mem::take(&mut self.dirs);
        // (directory, mode to set, mtime to set), sorted so that the cached walk of
        // `dir` reuses the open parents from one to the next.
        let mut todo: Vec<(Vec<u8>, Option<u32>, Timespec)> = touched
            .into_iter()
            .filter(|(k, _)| !dirs.contains_key(k))
            .map(|(k, t)| (k, None, t))
            .collect();
        todo.extend(dirs.into_iter().map(|(k, (m, t))| (k, Some(m), t)));
        todo.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, mode, mtime) in &todo {
            let comps: Vec<&[u8]> = if key.is_empty() {
                Vec::new()
            } else {
                key.split(|&b| b == b'/').collect()
            };
            // None: replaced by a non-directory later in the layer, nothing to set.
            let Some(fd) = self.dir(&comps, false)? else {
                continue;
            };
            let name = String::from_utf8_lossy(key);
            if let Some(mode) = mode {
                fs::fchmod(&*fd, Mode::from_raw_mode(*mode))
                    .map_err(self.err(format!("chmod directory `{name}`")))?;
            }
            fs::futimens(&*fd, &stamps(*mtime))
                .map_err(self.err(format!("set the mtime of directory `{name}`")))?;
        }
        self.added.clear();
        Ok(())
    }
}

fn show(comps: &[&[u8]]) -> String {
    String::from_utf8_lossy(&join(comps)).into_owned()
}

/// A PAX time: `SECONDS[.FRACTION]`.
fn pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    if sec < 0 {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    Some(Timespec {
        tv_sec: sec as _,
        tv_nsec: digits.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        let t = pax_time(b"1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1700000000, 500_000_000));
        let t = pax_time(b"12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        assert!(pax_time(b"-1.5").is_none());
        assert!(pax_time(b"x").is_none());
    }

    #[test]
    fn keys() {
        assert_eq!(child(b"", b"etc"), b"etc");
        assert_eq!(child(b"etc", b"passwd"), b"etc/passwd");
        assert_eq!(join(&[b"a", b"b"]), b"a/b");
        assert_eq!(join(&[]), b"");
    }
}
