//! Fixups of a finished root, before it becomes an image.
//!
//! - `/etc/ld.so.cache` is generated at build time: `/etc` is read-only at run time, where
//!   `ldconfig.service` would fail. The target's own `ldconfig` runs when the tree has one
//!   (through qemu-user when its machine differs from the host's); otherwise the host's
//!   `ldconfig -r` (same machine type only: it ignores libraries of other machines).
//!   `ldconfig -r ROOT` chroots into ROOT, so symlinks resolve inside it.
//! - `/etc/.updated` and `/var/.updated` are removed: they would tell `ConditionNeedsUpdate=`
//!   the image is already up to date.

use crate::walk::{open_beneath, open_root};
use crate::Error;
use exec::Cmd;
use rustix::fs::{statat, unlinkat, AtFlags, FileType};
use std::path::{Path, PathBuf};

/// Remove `/etc/.updated` and `/var/.updated` when present; returns what was removed.
pub fn remove_updated_stamps(root: &Path) -> Result<Vec<String>, Error> {
    let fd = open_root(root)?;
    let mut removed = Vec::new();
    for dir in ["etc", "var"] {
        let shown = root.join(dir);
        let d = match open_beneath(&fd, Path::new(dir), &shown) {
            Ok(d) => d,
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
            // A symlink where etc or var should be: nothing of ours to remove there.
            Err(Error::Io(e))
                if matches!(
                    e.errno(),
                    Some(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        match unlinkat(&d, ".updated", AtFlags::empty()) {
            Ok(()) => removed.push(format!("/{dir}/.updated")),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(Error::errno(&shown.join(".updated"))(e)),
        }
    }
    Ok(removed)
}

/// ELF machine (`e_machine`) of a file, when it is an ELF file.
fn elf_machine(path: &Path) -> Option<u16> {
    use std::io::Read;
    let mut h = [0u8; 20];
    std::fs::File::open(path).ok()?.read_exact(&mut h).ok()?;
    (&h[..4] == b"\x7fELF").then(|| {
        if h[5] == 2 {
            u16::from_be_bytes([h[18], h[19]])
        } else {
            u16::from_le_bytes([h[18], h[19]])
        }
    })
}

fn host_machine() -> Option<u16> {
    elf_machine(Path::new("/proc/self/exe"))
}

fn qemu_for(machine: u16) -> Option<&'static str> {
    Some(match machine {
        0x3e => "qemu-x86_64-static",
        0xb7 => "qemu-aarch64-static",
        0x28 => "qemu-arm-static",
        0xf3 => "qemu-riscv64-static",
        0x15 => "qemu-ppc64le-static",
        0x03 => "qemu-i386-static",
        _ => return None,
    })
}

/// Generate `/etc/ld.so.cache`; returns the command that did it (for the log).
pub fn ld_so_cache(root: &Path, log: &Path) -> Result<String, Error> {
    let fd = open_root(root)?;
    // The target's ldconfig, looked up without following symlinks out of the root.
    let mut target: Option<PathBuf> = None;
    for cand in ["usr/sbin/ldconfig", "usr/bin/ldconfig", "sbin/ldconfig"] {
        let (dir, name) = cand.rsplit_once('/').unwrap_or(("", cand));
        let Ok(d) = open_beneath(&fd, Path::new(dir), &root.join(dir)) else {
            continue;
        };
        if let Ok(st) = statat(&d, name, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile {
                target = Some(root.join(cand));
                break;
            }
        }
    }
    let cmd = match target
        .as_deref()
        .and_then(|t| elf_machine(t).map(|m| (t, m)))
    {
        Some((t, m)) if Some(m) == host_machine() => Cmd::new(t).arg("-r").arg(root),
        Some((t, m)) => {
            let qemu = qemu_for(m).ok_or_else(|| {
                Error::Invalid(format!(
                    "{}: no qemu-user emulator known for ELF machine {m:#x}",
                    t.display()
                ))
            })?;
            Cmd::new(qemu).arg(t).arg("-r").arg(root)
        }
        None => Cmd::new("/sbin/ldconfig").arg("-r").arg(root),
    };
    let line = cmd.cmdline();
    cmd.log(log).run()?;
    // ldconfig's auxiliary cache records inode numbers and ctimes of this build: it would
    // make the image differ between identical builds, and the image's /var is not used.
    if let Ok(d) = open_beneath(
        &fd,
        Path::new("var/cache/ldconfig"),
        &root.join("var/cache/ldconfig"),
    ) {
        match unlinkat(&d, "aux-cache", AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(Error::errno(&root.join("var/cache/ldconfig/aux-cache"))(e)),
        }
    }
    Ok(line)
}

/// Run a variant hook with the tree (and the image, for post-build) in its environment.
pub fn run_hook(script: &Path, env: &[(&str, &Path)], cwd: &Path, log: &Path) -> Result<(), Error> {
    if !script.is_file() {
        return Err(Error::Invalid(format!(
            "hook {} does not exist",
            script.display()
        )));
    }
    let mut c = Cmd::new(script).cwd(cwd);
    for (k, v) in env {
        c = c.env(k, v);
    }
    c.log(log).run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn updated_stamps_go_and_symlinks_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join(".updated"), "x").unwrap();
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("etc/.updated"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), r.join("var")).unwrap();
        assert_eq!(remove_updated_stamps(r).unwrap(), ["/etc/.updated"]);
        assert!(!r.join("etc/.updated").exists());
        assert!(
            outside.path().join(".updated").exists(),
            "followed a symlink out of the root"
        );
    }

    #[test]
    fn host_ldconfig_builds_the_cache() {
        if !testutil::require("/sbin/ldconfig") || !testutil::require("gcc") {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("etc")).unwrap();
        fs::create_dir_all(r.join("usr/lib64")).unwrap();
        fs::write(r.join("etc/ld.so.conf"), "/usr/lib64\n").unwrap();
        let src = r.join("x.c");
        fs::write(&src, "int keel_x(void) { return 1; }\n").unwrap();
        Cmd::new("gcc")
            .args(["-shared", "-fPIC", "-Wl,-soname,libkeelx.so.1", "-o"])
            .arg(r.join("usr/lib64/libkeelx.so.1"))
            .arg(&src)
            .run()
            .unwrap();
        ld_so_cache(r, &r.join("log")).unwrap();
        let cache = fs::read(r.join("etc/ld.so.cache")).unwrap();
        assert!(cache
            .windows(b"libkeelx.so.1".len())
            .any(|w| w == b"libkeelx.so.1"));
    }
}
