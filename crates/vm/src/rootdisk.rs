//! The VM's root disk, made once per (image, kernel) and kept: the image's layers unpacked
//! (crate `oci`), the kernel's modules when they come from outside the image, Keel's PID 1
//! (`/keel/init`), written with `mke2fs -d` into an ext4 file. Each run boots it with
//! `snapshot=on`, so a run's writes to `/` are gone when it ends.

use crate::{io, Error};
use exec::Cmd;
use rustix::fd::AsFd;
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const INIT: &str = include_str!("init.sh");

/// Where the kernel comes from (docs/vm.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelChoice {
    /// The host's running kernel if `/boot` has it, else the image's own.
    Auto,
    /// `/boot/vmlinuz-$(uname -r)`, its `initrd.img`, and `/lib/modules/$(uname -r)`.
    Host,
    /// The newest `/boot/vmlinuz-<v>` of the image with its `initrd.img-<v>`.
    Image,
    /// Given files; modules from `modules` (copied into the disk) or none.
    Files {
        kernel: PathBuf,
        initrd: PathBuf,
        modules: Option<PathBuf>,
    },
}

impl KernelChoice {
    /// `host`, `image`, or a kernel file (which then needs `initrd`).
    pub fn parse(
        kernel: Option<&str>,
        initrd: Option<PathBuf>,
        modules: Option<PathBuf>,
    ) -> Result<KernelChoice, Error> {
        match (kernel, initrd) {
            (None | Some("auto"), None) => Ok(KernelChoice::Auto),
            (Some("host"), None) => Ok(KernelChoice::Host),
            (Some("image"), None) => Ok(KernelChoice::Image),
            (k @ (None | Some("auto" | "host" | "image")), Some(_)) => Err(Error::Invalid(
                format!(
                    "--initrd goes with --kernel FILE, not with --kernel {}",
                    k.unwrap_or("auto")
                ),
            )),
            (Some(k), Some(initrd)) => Ok(KernelChoice::Files {
                kernel: PathBuf::from(k),
                initrd,
                modules,
            }),
            (Some(k), None) => Err(Error::Invalid(format!(
                "--kernel {k}: a kernel file needs --initrd FILE (an initramfs that can mount an ext4 root on virtio-blk)"
            ))),
        }
    }
}

/// The kernel a VM boots, and the modules its root disk must carry.
#[derive(Debug, Clone)]
struct Kernel {
    kernel: PathBuf,
    initrd: PathBuf,
    /// `/lib/modules/<version>` to copy into the disk (None: the image has them, or none).
    modules: Option<(PathBuf, String)>,
    /// What identifies it in the disk's cache key.
    identity: String,
}

fn file_identity(p: &Path) -> Result<String, Error> {
    let m = fs::metadata(p).map_err(io(p))?;
    use std::os::unix::fs::MetadataExt;
    Ok(format!("{}:{}:{}", p.display(), m.len(), m.mtime()))
}

fn running_release() -> Result<String, Error> {
    let p = Path::new("/proc/sys/kernel/osrelease");
    Ok(fs::read_to_string(p).map_err(io(p))?.trim().to_owned())
}

fn host_kernel() -> Result<Option<Kernel>, Error> {
    let rel = running_release()?;
    let kernel = PathBuf::from(format!("/boot/vmlinuz-{rel}"));
    let initrd = PathBuf::from(format!("/boot/initrd.img-{rel}"));
    let modules = PathBuf::from(format!("/lib/modules/{rel}"));
    if !kernel.exists() || !initrd.exists() {
        return Ok(None);
    }
    let identity = format!(
        "host:{}:{}",
        file_identity(&kernel)?,
        file_identity(&initrd)?
    );
    Ok(Some(Kernel {
        kernel,
        initrd,
        modules: modules.is_dir().then_some((modules, rel)),
        identity,
    }))
}

/// The choice made before unpacking (so it is part of the cache key); `Image` is
/// resolved against the unpacked tree.
fn choose(choice: &KernelChoice) -> Result<Option<Kernel>, Error> {
    match choice {
        KernelChoice::Auto => host_kernel(),
        KernelChoice::Host => match host_kernel()? {
            Some(k) => Ok(Some(k)),
            None => Err(Error::Invalid(format!(
                "--kernel host: the host has no /boot/vmlinuz-{0} with /boot/initrd.img-{0} (the running kernel); use --kernel image or --kernel FILE --initrd FILE",
                running_release()?
            ))),
        },
        KernelChoice::Image => Ok(None),
        KernelChoice::Files {
            kernel,
            initrd,
            modules,
        } => {
            let modules = match modules {
                Some(m) => {
                    let v = m
                        .file_name()
                        .and_then(|n| n.to_str())
                        .ok_or_else(|| {
                            Error::Invalid(format!(
                                "--modules {}: name the /lib/modules/<version> directory",
                                m.display()
                            ))
                        })?
                        .to_owned();
                    if !m.is_dir() {
                        return Err(Error::Invalid(format!(
                            "--modules {}: not a directory",
                            m.display()
                        )));
                    }
                    Some((m.clone(), v))
                }
                None => None,
            };
            Ok(Some(Kernel {
                identity: format!(
                    "files:{}:{}:{:?}",
                    file_identity(kernel)?,
                    file_identity(initrd)?,
                    modules
                ),
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                modules,
            }))
        }
    }
}

/// A root disk ready to boot.
#[derive(Debug, Clone)]
pub struct RootDisk {
    pub disk: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The image has its own Portage (`/usr/bin/emerge`): no venv is shared in.
    pub has_portage: bool,
    /// The image's manifest digest.
    pub digest: String,
    /// Seconds spent making it (0 when it was kept from an earlier run).
    pub made_secs: f64,
}

/// The root disk for `image` booted with `choice`, made under `images/` when missing.
pub fn ensure(
    images: &Path,
    image: &str,
    choice: &KernelChoice,
    log: &Path,
    progress: &mut dyn std::io::Write,
) -> Result<RootDisk, Error> {
    let t = std::time::Instant::now();
    let img = oci::resolve(&oci::ImageRef::parse(image))?;
    let kernel = choose(choice)?;
    let mut key = Sha256::new();
    key.update(img.manifest_digest.as_bytes());
    key.update(b"\0");
    key.update(
        kernel
            .as_ref()
            .map(|k| k.identity.as_str())
            .unwrap_or("image"),
    );
    key.update(b"\0");
    key.update(INIT.as_bytes());
    let key: String = key
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let short = img
        .manifest_digest
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect::<String>();
    let dir = images.join(format!("{short}-{key}"));
    let done = dir.join("complete");
    let disk = |has_portage: bool, made_secs: f64| RootDisk {
        disk: dir.join("root.ext4"),
        kernel: dir.join("vmlinuz"),
        initrd: dir.join("initrd.img"),
        has_portage,
        digest: img.manifest_digest.clone(),
        made_secs,
    };
    if let Ok(s) = fs::read_to_string(&done) {
        return Ok(disk(s.trim() == "portage", 0.0));
    }
    let _ = writeln!(
        progress,
        "keel vm: making the root disk from {} ({}) in {}",
        image,
        img.manifest_digest,
        dir.display()
    );
    fs::create_dir_all(images).map_err(io(images))?;
    remove_stale(images);
    // Private (0700) while it is made: the unpacked tree holds the image's device nodes
    // and setuid files, under no one else's reach; removed on every failure.
    let tmp = Tmp::new(images.join(format!(".tmp-{short}-{key}-{}", std::process::id())))?;
    let rootfs = tmp.path.join("rootfs");
    let stats = oci::unpack(&img, &rootfs)?;
    let _ = writeln!(
        progress,
        "keel vm: unpacked {} layers ({:.1} s)",
        img.layers().len(),
        t.elapsed().as_secs_f64()
    );
    let _ = stats;
    // From here on the tree is touched only through handles (crate rootdir): the image's
    // links are followed only while they stay inside it.
    let tree = rootdir::Root::open(&rootfs)?;
    match kernel {
        Some(k) => {
            copy_file(&k.kernel, &tmp.path.join("vmlinuz"))?;
            copy_file(&k.initrd, &tmp.path.join("initrd.img"))?;
            if let Some((from, version)) = &k.modules {
                add_modules(&tree, from, version, log)?;
            }
        }
        None => {
            let (kernel, initrd) = boot::disk::kernel_of(&tree).map_err(|e| {
                Error::Invalid(format!(
                    "no kernel for the VM: the host has none for the running kernel in /boot, and the image {image} has none: {e}; give --kernel FILE --initrd FILE"
                ))
            })?;
            boot::disk::copy_out(&tree, &kernel, &tmp.path.join("vmlinuz"))?;
            boot::disk::copy_out(&tree, &initrd, &tmp.path.join("initrd.img"))?;
        }
    }
    if tree.lstat(Path::new("keel"))?.is_some() {
        return Err(Error::Invalid(format!(
            "image {image} has a /keel of its own: the VM needs that path for its mounts"
        )));
    }
    add_init(&tree)?;
    let has_portage = tree.is_file(Path::new("usr/bin/emerge"));
    let du = Cmd::new("du")
        .args(["-s", "--block-size=1", "-x"])
        .arg(&rootfs)
        .output()?;
    let used: u64 = du
        .stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // room for the run's writes to / (they go to the snapshot, but ext4 needs free blocks)
    let size = used + used / 4 + (2 << 30);
    let file = tmp.path.join("root.ext4");
    let f = fs::File::create(&file).map_err(io(&file))?;
    f.set_len(size).map_err(io(&file))?;
    drop(f);
    Cmd::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "keel-vm-root"])
        .args(["-E", "root_owner=0:0"])
        .arg("-d")
        .arg(&rootfs)
        .arg(&file)
        .log(log)
        .run()?;
    drop(tree);
    fs::remove_dir_all(&rootfs).map_err(io(&rootfs))?;
    fs::write(
        tmp.path.join("complete"),
        if has_portage { "portage\n" } else { "venv\n" },
    )
    .map_err(io(&tmp.path))?;
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    fs::set_permissions(&tmp.path, fs::Permissions::from_mode(0o755)).map_err(io(&tmp.path))?;
    fs::rename(&tmp.path, &dir).map_err(io(&dir))?;
    tmp.keep();
    let secs = t.elapsed().as_secs_f64();
    let _ = writeln!(progress, "keel vm: root disk ready ({secs:.1} s)");
    Ok(disk(has_portage, secs))
}

fn copy_file(from: &Path, to: &Path) -> Result<(), Error> {
    fs::copy(from, to).map_err(io(from))?;
    Ok(())
}

/// The host's `/lib/modules/<version>` (the user's or the running kernel's, trusted) copied
/// into the tree's `/lib/modules`, which is resolved inside the tree (`/lib -> usr/lib` is
/// followed; a link out of the tree is refused). What the image had at that version is
/// replaced.
fn add_modules(tree: &rootdir::Root, from: &Path, version: &str, log: &Path) -> Result<(), Error> {
    let rel = Path::new("lib/modules");
    let dir = tree.create_dir_all(rel, 0o755)?;
    let shown = tree.display(&rel.join(version));
    match rfs::statat(&dir, version, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => rootdir::remove_all(dir.as_fd(), version.as_bytes())
            .map_err(|e| io(&shown)(e.into()))?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(io(&shown)(e.into())),
    }
    // A fresh name in the held directory: `cp` resolves nothing of the image on its way.
    Cmd::new("cp")
        .arg("-a")
        .arg(from)
        .arg(rootdir::fd_path(dir.as_fd(), version.as_bytes()))
        .log(log)
        .run()?;
    Ok(())
}

/// Keel's PID 1: `/keel/init` and the mount point `/keel/tools`, made in the tree's top.
fn add_init(tree: &rootdir::Root) -> Result<(), Error> {
    let shown = tree.display(Path::new("keel"));
    let e = |e: Errno| io(&shown)(e.into());
    rfs::mkdirat(tree.fd(), "keel", Mode::from_raw_mode(0o755)).map_err(e)?;
    let keel = rfs::openat(tree.fd(), "keel", rootdir::DIR_FLAGS, Mode::empty()).map_err(e)?;
    rfs::mkdirat(&keel, "tools", Mode::from_raw_mode(0o755)).map_err(e)?;
    let init = rfs::openat(
        &keel,
        "init",
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o755),
    )
    .map_err(e)?;
    rfs::fchmod(&init, Mode::from_raw_mode(0o755)).map_err(e)?;
    std::fs::File::from(init)
        .write_all(INIT.as_bytes())
        .map_err(io(&shown))?;
    Ok(())
}

/// The temporary directory a root disk is made in: mode 0700, removed when dropped unless
/// kept (renamed into place).
struct Tmp {
    path: PathBuf,
    keep: bool,
}

impl Tmp {
    fn new(path: PathBuf) -> Result<Tmp, Error> {
        if path.symlink_metadata().is_ok() {
            fs::remove_dir_all(&path).map_err(io(&path))?;
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(io(&path))?;
        Ok(Tmp { path, keep: false })
    }
    fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Remove what a killed run left (`.tmp-*-<pid>` of a process that is gone).
fn remove_stale(images: &Path) {
    let Ok(entries) = fs::read_dir(images) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.starts_with(".tmp-"))
            .and_then(|n| n.rsplit('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_choice_from_flags() {
        assert_eq!(
            KernelChoice::parse(None, None, None).unwrap(),
            KernelChoice::Auto
        );
        assert_eq!(
            KernelChoice::parse(Some("image"), None, None).unwrap(),
            KernelChoice::Image
        );
        assert_eq!(
            KernelChoice::parse(Some("/k"), Some("/i".into()), None).unwrap(),
            KernelChoice::Files {
                kernel: "/k".into(),
                initrd: "/i".into(),
                modules: None
            }
        );
        let e = KernelChoice::parse(Some("/k"), None, None).unwrap_err();
        assert!(e.to_string().contains("needs --initrd"), "{e}");
        let e = KernelChoice::parse(Some("host"), Some("/i".into()), None).unwrap_err();
        assert!(
            e.to_string().contains("--initrd goes with --kernel FILE"),
            "{e}"
        );
    }

    #[test]
    fn init_is_valid_shell_that_reports_and_powers_off() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("init");
        fs::write(&f, INIT).unwrap();
        exec::Cmd::new("sh").arg("-n").arg(&f).run().unwrap();
        assert!(INIT.contains("echo o >/proc/sysrq-trigger"));
    }

    /// What PID 1 and the run script write to the report port, run by `sh` into a file,
    /// is a complete report in crate qemu's protocol with the start and the exit code.
    #[test]
    fn init_and_run_script_speak_the_report_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let port = dir.path().join("port");
        let run = crate::script::run_script(&crate::script::RunSpec {
            shares: Vec::new(),
            build_device: "/dev/vdb".into(),
            build_mount: "/keel/build".into(),
            env: Vec::new(),
            cwd: "/".into(),
            command: vec!["true".into()],
        });
        let to_port = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.contains(">/dev/ttyS1"))
                // a device is not truncated by `>`; the file must be appended to
                .map(|l| {
                    l.trim()
                        .replace(">/dev/ttyS1", &format!(">>{}", port.display()))
                })
                .collect()
        };
        let (init, run) = (to_port(INIT), to_port(&run));
        assert_eq!((init.len(), run.len()), (2, 1), "{init:?} {run:?}");
        // begin (PID 1), start (run script), exit code 7 (PID 1's stop)
        let sh = format!("up=12.75\n{}\n{}\nset -- 7\n{}\n", init[0], run[0], init[1]);
        exec::Cmd::new("sh").args(["-c", &sh]).run().unwrap();
        let r = qemu::Report::read(&port);
        assert!(r.complete, "{r:?}");
        assert_eq!(r.get(crate::script::START), "12.75");
        assert_eq!(r.get(crate::script::EXIT), "7");
    }
}
