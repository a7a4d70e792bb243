//! The bootable disk layout of an image: the image itself as the read-only root disk, a
//! writable btrfs `/var` disk made from the image's `/var`, the kernel and initramfs from
//! the image's `/boot`.

use crate::{io, Error};
use exec::Cmd;
use std::fs;
use std::path::{Path, PathBuf};

/// The filesystem label the image's `/etc/fstab` mounts on `/var`.
pub const VAR_LABEL: &str = "keel-var";
/// Size of the (sparse) /var disk.
pub const VAR_SIZE: u64 = 4 << 30;

/// What QEMU boots.
#[derive(Debug, Clone)]
pub struct Disks {
    /// The image: the root disk, attached read-only.
    pub root: PathBuf,
    /// `squashfs` or `erofs`: `rootfstype=`.
    pub root_fstype: &'static str,
    pub var: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The image's /var had no `log`: whatever is there at run time was made at boot.
    pub var_log_absent: bool,
}

/// Make the disks of `image` under `dir` (replacing what a previous run left there).
pub fn prepare(image: &Path, dir: &Path, log: &Path) -> Result<Disks, Error> {
    let root_fstype = match image.extension().and_then(|e| e.to_str()) {
        Some("squashfs") => "squashfs",
        Some(other) => {
            return Err(Error::Unsupported(format!(
                "{}: booting a `.{other}` image is not supported yet (squashfs only)",
                image.display()
            )))
        }
        None => {
            return Err(Error::Unsupported(format!(
                "{}: not an image",
                image.display()
            )))
        }
    };
    if !image.is_file() {
        return Err(Error::Missing(image.to_owned()));
    }
    let extract = dir.join("extract");
    if extract.symlink_metadata().is_ok() {
        fs::remove_dir_all(&extract).map_err(io(&extract))?;
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    // -d: the directory is created; `boot` and `var` only; xattrs (labels) are kept.
    Cmd::new("unsquashfs")
        .args(["-no-progress", "-quiet", "-d"])
        .arg(&extract)
        .arg(image)
        .args(["boot", "var"])
        .log(log)
        .run()?;
    let (kernel, initrd) = kernel_of(&extract.join("boot"))?;
    let kernel = keep(&kernel, &dir.join("vmlinuz"))?;
    let initrd = keep(&initrd, &dir.join("initrd.img"))?;

    let var_tree = extract.join("var");
    if !var_tree.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: the image has no /var to make the /var disk from",
            image.display()
        )));
    }
    let var_log_absent = var_tree.join("log").symlink_metadata().is_err();
    let var = dir.join("var.img");
    let partial = dir.join("var.img.partial");
    let _ = fs::remove_file(&partial);
    let f = fs::File::create(&partial).map_err(io(&partial))?;
    f.set_len(VAR_SIZE).map_err(io(&partial))?;
    drop(f);
    Cmd::new("mkfs.btrfs")
        .args(["-q", "-f", "-L", VAR_LABEL, "--rootdir"])
        .arg(&var_tree)
        .arg(&partial)
        .log(log)
        .run()?;
    fix_top_label(&var_tree, &partial, dir, log)?;
    fs::rename(&partial, &var).map_err(io(&var))?;
    fs::remove_dir_all(&extract).map_err(io(&extract))?;
    Ok(Disks {
        root: image.to_owned(),
        root_fstype,
        var,
        kernel,
        initrd,
        var_log_absent,
    })
}

/// The newest `vmlinuz-<version>` with its `initrd.img-<version>`.
pub fn kernel_of(boot: &Path) -> Result<(PathBuf, PathBuf), Error> {
    let mut versions: Vec<String> = fs::read_dir(boot)
        .map_err(io(boot))?
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let v = n.strip_prefix("vmlinuz-")?.to_owned();
            (e.file_type().ok()?.is_file() && boot.join(format!("initrd.img-{v}")).is_file())
                .then_some(v)
        })
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    let v = versions.pop().ok_or_else(|| {
        Error::Invalid(format!(
            "{}: no vmlinuz-<version> with an initrd.img-<version> (the image needs a kernel package and an initramfs generator)",
            boot.display()
        ))
    })?;
    Ok((
        boot.join(format!("vmlinuz-{v}")),
        boot.join(format!("initrd.img-{v}")),
    ))
}

/// Compare versions by their numeric runs, then as text (`6.10.0` after `6.9.1`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    };
    key(a).cmp(&key(b)).then_with(|| a.cmp(b))
}

fn keep(from: &Path, to: &Path) -> Result<PathBuf, Error> {
    let _ = fs::remove_file(to);
    fs::rename(from, to).map_err(io(to))?;
    Ok(to.to_owned())
}

/// `mkfs.btrfs --rootdir` (6.2) does not copy the extended attributes of the top directory
/// itself: give it the label of the image's `/var`, through a loop mount.
fn fix_top_label(var_tree: &Path, img: &Path, dir: &Path, log: &Path) -> Result<(), Error> {
    let mut buf = vec![0u8; 512];
    let n = match rustix::fs::getxattr(var_tree, "security.selinux", &mut buf) {
        Ok(n) => n,
        // No label: not an SELinux image.
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(io(var_tree)(e.into())),
    };
    let label = &buf[..n];
    let mnt = dir.join("mnt");
    fs::create_dir_all(&mnt).map_err(io(&mnt))?;
    Cmd::new("mount")
        .args(["-o", "loop", "-t", "btrfs"])
        .arg(img)
        .arg(&mnt)
        .log(log)
        .run()?;
    let set = rustix::fs::setxattr(
        &mnt,
        "security.selinux",
        label,
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| io(&mnt)(e.into()));
    let umount = Cmd::new("umount").arg(&mnt).log(log).run();
    set?;
    umount?;
    fs::remove_dir(&mnt).map_err(io(&mnt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_kernel_with_an_initramfs() {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "vmlinuz-6.9.1-amd64",
            "initrd.img-6.9.1-amd64",
            "vmlinuz-6.10.0-amd64",
            "initrd.img-6.10.0-amd64",
            "vmlinuz-7.0.0-amd64",
            "config-7.0.0-amd64",
        ] {
            fs::write(d.path().join(f), "x").unwrap();
        }
        let (k, i) = kernel_of(d.path()).unwrap();
        assert_eq!(k, d.path().join("vmlinuz-6.10.0-amd64"));
        assert_eq!(i, d.path().join("initrd.img-6.10.0-amd64"));
        fs::remove_file(d.path().join("initrd.img-6.10.0-amd64")).unwrap();
        fs::remove_file(d.path().join("initrd.img-6.9.1-amd64")).unwrap();
        let e = kernel_of(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("no vmlinuz-<version> with an initrd.img-<version>"),
            "{e}"
        );
    }
}
