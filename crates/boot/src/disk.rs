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

/// `squashfs` or `erofs`: the filesystem of `image`, from its name.
pub fn fstype_of(image: &Path) -> Result<&'static str, Error> {
    match image.extension().and_then(|e| e.to_str()) {
        Some("squashfs") => Ok("squashfs"),
        Some("erofs") => Ok("erofs"),
        Some(other) => Err(Error::Unsupported(format!(
            "{}: a `.{other}` image is not one Keel makes (squashfs or erofs)",
            image.display()
        ))),
        None => Err(Error::Unsupported(format!(
            "{}: not an image",
            image.display()
        ))),
    }
}

/// Extract `paths` of `image` (each a top-level path, with what is beneath it; a missing one
/// is skipped) into `dir`, which is made and must not exist. Extended attributes (labels)
/// are kept. squashfs: `unsquashfs`; erofs: `fsck.erofs --extract`, which takes the whole
/// image.
pub fn extract(image: &Path, dir: &Path, paths: &[&str], log: &Path) -> Result<(), Error> {
    if !image.is_file() {
        return Err(Error::Missing(image.to_owned()));
    }
    match fstype_of(image)? {
        // -d: the directory is created.
        "squashfs" => Cmd::new("unsquashfs")
            .args(["-no-progress", "-quiet", "-d"])
            .arg(dir)
            .arg(image)
            .args(paths)
            .log(log)
            .run()?,
        _ => Cmd::new("fsck.erofs")
            .arg(format!("--extract={}", dir.display()))
            .arg(image)
            .log(log)
            .run()?,
    }
    Ok(())
}

/// Make the disks of `image` under `dir` (replacing what a previous run left there).
pub fn prepare(image: &Path, dir: &Path, log: &Path) -> Result<Disks, Error> {
    let root_fstype = match fstype_of(image)? {
        "squashfs" => "squashfs",
        other => {
            return Err(Error::Unsupported(format!(
                "{}: booting a `.{other}` image is not supported yet (squashfs only)",
                image.display()
            )))
        }
    };
    if !image.is_file() {
        return Err(Error::Missing(image.to_owned()));
    }
    let extract_dir = dir.join("extract");
    if extract_dir.symlink_metadata().is_ok() {
        fs::remove_dir_all(&extract_dir).map_err(io(&extract_dir))?;
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    // `boot` and `var` only.
    extract(image, &extract_dir, &["boot", "var"], log)?;
    let extract = extract_dir;
    let tree = rootdir::Root::open(&extract)?;
    let (kernel_rel, initrd_rel) = kernel_of(&tree)?;
    let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initrd.img"));
    copy_out(&tree, &kernel_rel, &kernel)?;
    copy_out(&tree, &initrd_rel, &initrd)?;

    let var_tree = extract.join("var");
    // The image's own /var, not a link (mkfs.btrfs would copy what it points to).
    if !fs::symlink_metadata(&var_tree).is_ok_and(|m| m.is_dir()) {
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

/// The initramfs names of a kernel `boot/vmlinuz-<version>`, in the order they are looked
/// for: Debian's initramfs-tools (`initrd.img-<version>`), then dracut's and Gentoo's
/// installkernel's (`initramfs-<version>.img`).
pub fn initramfs_names(version: &str) -> [String; 2] {
    [
        format!("initrd.img-{version}"),
        format!("initramfs-{version}.img"),
    ]
}

/// The newest `boot/vmlinuz-<version>` of the tree `root` that has an initramfs (one of
/// [`initramfs_names`]), as paths in the tree. Nothing is followed out of the tree: `boot`
/// is opened beneath the root, and the files are meant to be read with [`copy_out`], which
/// refuses a link out.
pub fn kernel_of(root: &rootdir::Root) -> Result<(PathBuf, PathBuf), Error> {
    let boot = Path::new("boot");
    let dir = root.open_dir(boot)?;
    let names = rootdir::read_names(rustix::fd::AsFd::as_fd(&dir))
        .map_err(|e| io(&root.display(boot))(e.into()))?;
    let exists =
        |name: &str| rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok();
    let mut found: Vec<(String, String)> = names
        .iter()
        .filter_map(|n| {
            let v = std::str::from_utf8(n).ok()?.strip_prefix("vmlinuz-")?;
            let initrd = initramfs_names(v).into_iter().find(|i| exists(i))?;
            Some((v.to_owned(), initrd))
        })
        .collect();
    found.sort_by(|a, b| version_cmp(&a.0, &b.0));
    let (v, initrd) = found.pop().ok_or_else(|| {
        Error::Invalid(format!(
            "{}: no vmlinuz-<version> with an initrd.img-<version> or initramfs-<version>.img (the image needs a kernel package and an initramfs generator)",
            root.display(boot).display()
        ))
    })?;
    Ok((boot.join(format!("vmlinuz-{v}")), boot.join(initrd)))
}

/// Copy the regular file `rel` of the tree `root` to the host path `to` (replaced
/// atomically). A link is followed only inside the tree; a link out, a FIFO or a device is
/// refused, naming it.
pub fn copy_out(root: &rootdir::Root, rel: &Path, to: &Path) -> Result<(), Error> {
    let mut from = root.open_file(rel)?;
    let partial = to.with_extension("partial");
    let mut f = fs::File::create(&partial).map_err(io(&partial))?;
    std::io::copy(&mut from, &mut f).map_err(io(&root.display(rel)))?;
    drop(f);
    fs::rename(&partial, to).map_err(io(to))
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
        let t = tempfile::tempdir().unwrap();
        let boot = t.path().join("boot");
        fs::create_dir(&boot).unwrap();
        for f in [
            "vmlinuz-6.9.1-amd64",
            "initrd.img-6.9.1-amd64",
            "vmlinuz-6.10.0-amd64",
            "initrd.img-6.10.0-amd64",
            "vmlinuz-7.0.0-amd64",
            "config-7.0.0-amd64",
        ] {
            fs::write(boot.join(f), "x").unwrap();
        }
        let root = rootdir::Root::open(t.path()).unwrap();
        let (k, i) = kernel_of(&root).unwrap();
        assert_eq!(k, Path::new("boot/vmlinuz-6.10.0-amd64"));
        assert_eq!(i, Path::new("boot/initrd.img-6.10.0-amd64"));
        // dracut's name (Gentoo's installkernel) for a newer kernel
        fs::write(boot.join("vmlinuz-6.11.0-gentoo-dist"), "k").unwrap();
        fs::write(boot.join("initramfs-6.11.0-gentoo-dist.img"), "i").unwrap();
        let (k, i) = kernel_of(&rootdir::Root::open(t.path()).unwrap()).unwrap();
        assert_eq!(k, Path::new("boot/vmlinuz-6.11.0-gentoo-dist"));
        assert_eq!(i, Path::new("boot/initramfs-6.11.0-gentoo-dist.img"));
        fs::remove_file(boot.join("vmlinuz-6.11.0-gentoo-dist")).unwrap();
        fs::remove_file(boot.join("initrd.img-6.10.0-amd64")).unwrap();
        fs::remove_file(boot.join("initrd.img-6.9.1-amd64")).unwrap();
        let e = kernel_of(&root).unwrap_err().to_string();
        assert!(
            e.contains("no vmlinuz-<version> with an initrd.img-<version>"),
            "{e}"
        );
    }

    /// Issue 17, item 2: `boot/initrd.img-9.9 -> /VICTIM/secret` (absolute, or `../`
    /// repeated) must not copy the host's file; `boot -> /` must not list the host's /boot.
    #[test]
    fn a_kernel_or_initramfs_linked_out_of_the_tree_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("secret"), "host secret\n").unwrap();
        let tree = t.path().join("tree");
        let boot = tree.join("boot");
        fs::create_dir_all(&boot).unwrap();
        fs::write(boot.join("vmlinuz-9.9"), "kernel").unwrap();
        let out = t.path().join("initrd.img");
        for target in [
            victim.join("secret").display().to_string(),
            "../../../../../../../../victim/secret".into(),
        ] {
            let _ = fs::remove_file(boot.join("initrd.img-9.9"));
            std::os::unix::fs::symlink(&target, boot.join("initrd.img-9.9")).unwrap();
            let root = rootdir::Root::open(&tree).unwrap();
            let (_, initrd) = kernel_of(&root).unwrap();
            let e = copy_out(&root, &initrd, &out).unwrap_err().to_string();
            assert!(
                e.contains("/boot/initrd.img-9.9 is a symlink to") && e.contains(&target),
                "{e}"
            );
            assert!(!e.contains("host secret"), "{e}");
            assert!(!out.exists() && !out.with_extension("partial").exists());
        }
        // An in-tree link is fine.
        fs::remove_file(boot.join("initrd.img-9.9")).unwrap();
        fs::write(boot.join("initrd.img-9.9-real"), "initramfs").unwrap();
        std::os::unix::fs::symlink("initrd.img-9.9-real", boot.join("initrd.img-9.9")).unwrap();
        let root = rootdir::Root::open(&tree).unwrap();
        let (_, initrd) = kernel_of(&root).unwrap();
        copy_out(&root, &initrd, &out).unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), "initramfs");
        // `boot` itself a link out.
        fs::remove_dir_all(&boot).unwrap();
        std::os::unix::fs::symlink(&victim, &boot).unwrap();
        let e = kernel_of(&root).unwrap_err().to_string();
        assert!(e.contains("/boot is a symlink to"), "{e}");
    }
}
