//! Writing the image, reproducibly.
//!
//! Reproducibility follows the reproducible-builds convention: with `SOURCE_DATE_EPOCH`, every
//! mtime later than it is clamped to it ([`clamp_mtimes`]) and the filesystem's own time is
//! it. mksquashfs 4.5 writes the same bytes for the same tree (`-reproducible`), with
//! `-mkfs-time`; mkfs.erofs with `-T` (build time), `--preserve-mtime` and a fixed UUID.

use crate::walk::walk;
use crate::Error;
use exec::Cmd;
use rustix::fs::{utimensat, AtFlags, Timespec, Timestamps};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Squashfs,
    Erofs,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Squashfs => "squashfs",
            Format::Erofs => "erofs",
        }
    }
}

/// A fixed EROFS UUID: the image's identity is its content.
const EROFS_UUID: &str = "6b65656c-0000-4000-8000-000000000000";

#[derive(Debug, Clone)]
pub struct Spec {
    pub tree: PathBuf,
    pub out: PathBuf,
    pub format: Format,
    /// Filesystem time (and the clamp bound, already applied by the caller).
    pub epoch: i64,
    /// squashfs pseudo-file definitions (`-pf`).
    pub pseudo_files: Option<PathBuf>,
    pub log: PathBuf,
}

/// Set every mtime later than `epoch` to `epoch`; returns how many were clamped.
/// Symlinks are changed themselves, never followed.
pub fn clamp_mtimes(root: &Path, epoch: i64) -> Result<usize, Error> {
    let mut n = 0;
    let mut root_late = false;
    walk(root, &mut |e| {
        if e.stat.st_mtime as i64 <= epoch {
            return Ok(());
        }
        let t = Timestamps {
            last_access: Timespec {
                tv_sec: e.stat.st_atime as i64,
                tv_nsec: e.stat.st_atime_nsec as _,
            },
            last_modification: Timespec {
                tv_sec: epoch,
                tv_nsec: 0,
            },
        };
        match e.parent {
            Some((dir, name)) => {
                let shown = e.shown();
                utimensat(dir, name, &t, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(Error::errno(&shown))?;
            }
            None => root_late = true,
        }
        n += 1;
        Ok(())
    })?;
    if root_late {
        // Last: clamping entries inside changes nothing of the root's mtime, but keep order
        // obvious.
        let fd = crate::walk::open_root(root)?;
        let t = Timestamps {
            last_access: Timespec {
                tv_sec: epoch,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: epoch,
                tv_nsec: 0,
            },
        };
        rustix::fs::futimens(&fd, &t).map_err(Error::errno(root))?;
    }
    Ok(n)
}

/// Write the image to `<out>.partial`, then rename it to `out`: a failed or killed build
/// never leaves an image that looks complete.
pub fn make(spec: &Spec) -> Result<(), Error> {
    let partial = spec
        .out
        .with_extension(format!("{}.partial", spec.format.extension()));
    for p in [&partial, &spec.out] {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(p)(e)),
            _ => {}
        }
    }
    if let Some(parent) = spec.out.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    let epoch = spec.epoch.to_string();
    let cmd = match spec.format {
        Format::Squashfs => {
            // mksquashfs refuses SOURCE_DATE_EPOCH together with -mkfs-time; the time is given explicitly.
            let mut c = Cmd::new("mksquashfs")
                .env_remove("SOURCE_DATE_EPOCH")
                .arg(&spec.tree)
                .arg(&partial)
                .args([
                    "-noappend",
                    "-progress",
                    "-quiet",
                    "-reproducible",
                    "-xattrs",
                ])
                // zstd's default level costs 15x the time of level 3 for a few percent.
                .args([
                    "-comp",
                    "zstd",
                    "-Xcompression-level",
                    "3",
                    "-mkfs-time",
                    &epoch,
                ]);
            if let Some(pf) = &spec.pseudo_files {
                c = c.arg("-pf").arg(pf);
            }
            c
        }
        Format::Erofs => {
            if spec.pseudo_files.is_some() {
                return Err(Error::Invalid(
                    "`[image] pseudo-files` is a squashfs feature; EROFS images cannot use it"
                        .into(),
                ));
            }
            Cmd::new("mkfs.erofs")
                .args([
                    "--quiet",
                    "-zlz4hc",
                    &format!("-T{epoch}"),
                    "--preserve-mtime",
                    &format!("-U{EROFS_UUID}"),
                ])
                .arg(&partial)
                .arg(&spec.tree)
        }
    };
    cmd.log(&spec.log).run()?;
    std::fs::rename(&partial, &spec.out).map_err(Error::io(&spec.out))
}
