//! SELinux for Keel's SELinux variants, on a finished root tree.
//!
//! - [`seed_distfiles`]: the pinned refpolicy sources (Debian 12's `selinux-policy-src`) into
//!   Portage's DISTDIR under their distfile name, for `sec-policy/*`.
//! - [`install_modules`]: the project's local policy modules (`policy/` layers) compiled
//!   against the image's own policy headers and installed into the image's policy store
//!   with `semodule -p ROOT`, booleans from the layers' `booleans` files. The build host's
//!   policy is never read or written.
//! - [`write_config`] writes `/etc/selinux/config`.
//! - [`label`]: every path of the tree labelled with the TARGET policy's file_contexts
//!   (libselinux 3.4 semantics, in Rust, see [`fc`]); every context is first validated
//!   against the target's binary policy (`setfiles -c`), so an invalid one fails the build.
//!   Labels are `security.selinux` xattrs; the walk never follows a symlink.
//! - [`host_check`]: refuse to build on a host with SELinux enabled.
//! - [`find_python_in_image`]: the "no Python" check on the image itself.
//!
//! **Architecture invariant:** everything here takes the root as a path to a tree Keel
//! built, and touches only that tree (through directory handles when walking it) and
//! temporary directories; the build host's `/etc/selinux` and `/var/lib/selinux` are never
//! used.

pub mod fc;
mod label;
mod modules;

pub use label::{binary_policy, label, label_with, validate, Report};
pub use modules::{install_modules, read_booleans, Installed};

use exec::Cmd;
use rootdir::PathError;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error(transparent)]
    Fc(#[from] fc::FcError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Tree(#[from] rootdir::Error),
    #[error("{}: the file contexts hold contexts the target policy {} does not define:\n{detail}", fc.display(), policy.display())]
    InvalidContexts {
        fc: PathBuf,
        policy: PathBuf,
        detail: String,
    },
    #[error("{}:{line}: {message}", path.display())]
    Booleans {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: cannot compile policy module `{module}`:\n{cause}", path.display())]
    Module {
        module: String,
        path: PathBuf,
        cause: exec::Error,
    },
    #[error("this build host has SELinux enabled ({evidence}): label changes in the tree would be checked against the HOST's loaded policy, which denies or rewrites the target's labels (setfiles fails on such hosts); build in a VM whose kernel has no policy loaded: `keel vm -- build --variant {variant}` (Keel makes its Debian build environment the first time; `--image REF` picks another; docs/vm.md)")]
    HostSelinux { evidence: String, variant: String },
    #[error("Python reached the image {}:\n  {}", image.display(), found.join("\n  "))]
    Python { image: PathBuf, found: Vec<String> },
    #[error(transparent)]
    Portage(#[from] portage::Error),
}

/// Debian 12's refpolicy sources (package `selinux-policy-src` 2:2.20221101-9, pinned: the
/// Manifests of gentoo-mini's `sec-policy/*` hold its size and hashes).
pub const POLICY_SRC: &str = "/usr/src/selinux-policy-src.tar.zst";
/// Its name in DISTDIR, as the `SRC_URI` of `sec-policy/*-2.20221101` names it.
pub const POLICY_DISTFILE: &str = "selinux-policy-src-2.20221101.tar.zst";

/// Put the refpolicy tarball into `distdir` under its distfile name (hard link, else copy;
/// atomically; nothing when an identical file is there). Returns the distfile's path.
pub fn seed_distfiles(distdir: &Path) -> Result<PathBuf, Error> {
    seed_distfile_from(Path::new(POLICY_SRC), distdir)
}

/// [`seed_distfiles`] from another source file (tests).
pub fn seed_distfile_from(src: &Path, distdir: &Path) -> Result<PathBuf, Error> {
    Ok(portage::distfiles::seed(
        src,
        POLICY_DISTFILE,
        "selinux-policy-src",
        distdir,
    )?)
}

/// `SELINUX=` of /etc/selinux/config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforcing,
    Permissive,
    Disabled,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforcing => "enforcing",
            Mode::Permissive => "permissive",
            Mode::Disabled => "disabled",
        }
    }
    /// From variant.toml's `selinux.mode`.
    pub fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "enforcing" => Mode::Enforcing,
            "permissive" => Mode::Permissive,
            "disabled" => Mode::Disabled,
            _ => return None,
        })
    }
}

fn check_policy_type(policy_type: &str) -> Result<(), Error> {
    if policy_type.is_empty()
        || !policy_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::Invalid {
            path: PathBuf::from("/etc/selinux"),
            message: format!("invalid policy type `{policy_type}`"),
        });
    }
    Ok(())
}

/// The policy type's directory under the root, refusing symlinks on the way.
pub(crate) fn beneath(root: &Path, rel: &str) -> Result<PathBuf, Error> {
    let mut p = root.to_owned();
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
        if let Ok(m) = fs::symlink_metadata(&p) {
            if m.file_type().is_symlink() {
                return Err(Error::Invalid {
                    path: p,
                    message: "is a symlink; Keel does not follow symlinks inside the image here"
                        .into(),
                });
            }
        }
    }
    Ok(p)
}

/// Write `/etc/selinux/config` (atomically) with `SELINUX=<mode>` and `SELINUXTYPE=<type>`.
pub fn write_config(root: &Path, policy_type: &str, mode: Mode) -> Result<(), Error> {
    check_policy_type(policy_type)?;
    let dir = beneath(root, "etc/selinux")?;
    fs::create_dir_all(&dir).map_err(PathError::at(&dir))?;
    let text = format!(
        "# Written by Keel (policy stage) from the variant's [selinux] settings.\n\
         # SELINUX: enforcing, permissive or disabled.\n\
         SELINUX={}\n\
         # SELINUXTYPE: the policy under /etc/selinux/<type>.\n\
         SELINUXTYPE={policy_type}\n",
        mode.as_str()
    );
    let path = dir.join("config");
    write_atomic(&path, text.as_bytes(), 0o644)
}

pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    Ok(rootdir::write_atomic(path, data, mode).map_err(PathError::at(path))?)
}

/// What the build host says about SELinux (injectable for tests).
pub trait Probe {
    /// Whether `path` exists on the host.
    fn exists(&self, path: &Path) -> bool;
    /// The host's `/proc/self/mounts`.
    fn mounts(&self) -> String;
}

/// The real host.
pub struct HostProbe;

impl Probe for HostProbe {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn mounts(&self) -> String {
        fs::read_to_string("/proc/self/mounts").unwrap_or_default()
    }
}

/// Refuse an SELinux variant's build on a host with SELinux enabled: selinuxfs mounted,
/// `/sys/fs/selinux/enforce` present, or a loaded policy (`/sys/fs/selinux/policy`).
pub fn host_check(probe: &dyn Probe, variant: &str) -> Result<(), Error> {
    let mut evidence = Vec::new();
    if probe
        .mounts()
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("selinuxfs"))
    {
        evidence.push("selinuxfs is mounted".to_owned());
    }
    for p in ["/sys/fs/selinux/enforce", "/sys/fs/selinux/policy"] {
        if probe.exists(Path::new(p)) {
            evidence.push(format!("{p} exists"));
        }
    }
    if evidence.is_empty() {
        Ok(())
    } else {
        Err(Error::HostSelinux {
            evidence: evidence.join(", "),
            variant: variant.to_owned(),
        })
    }
}

/// Python in a squashfs or erofs image: extracted into a temporary directory (`unsquashfs`,
/// `fsck.erofs --extract`), then searched like the destination root
/// ([`portage::find_python`]). Err when anything is found.
pub fn find_python_in_image(image: &Path, log: &Path) -> Result<(), Error> {
    let tmp = tempfile::tempdir().map_err(PathError::at(image))?;
    let out = tmp.path().join("root");
    let is_erofs = image.extension().is_some_and(|e| e == "erofs");
    let cmd = if is_erofs {
        Cmd::new("fsck.erofs")
            .arg(format!("--extract={}", out.display()))
            .arg(image)
    } else {
        Cmd::new("unsquashfs")
            .args(["-no-xattrs", "-quiet", "-no-progress", "-d"])
            .arg(&out)
            .arg(image)
    };
    cmd.log(log).run()?;
    let found = portage::find_python(&out)?;
    if found.is_empty() {
        Ok(())
    } else {
        Err(Error::Python {
            image: image.to_owned(),
            found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        files: Vec<&'static str>,
        mounts: &'static str,
    }
    impl Probe for Fake {
        fn exists(&self, path: &Path) -> bool {
            self.files.iter().any(|f| Path::new(f) == path)
        }
        fn mounts(&self) -> String {
            self.mounts.to_owned()
        }
    }

    #[test]
    fn host_without_selinux_passes() {
        let p = Fake {
            files: vec![],
            mounts: "proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n",
        };
        host_check(&p, "selinux").unwrap();
    }

    #[test]
    fn config_text() {
        let d = tempfile::tempdir().unwrap();
        write_config(d.path(), "mcs", Mode::Enforcing).unwrap();
        let t = fs::read_to_string(d.path().join("etc/selinux/config")).unwrap();
        assert!(
            t.contains("\nSELINUX=enforcing\n") && t.contains("\nSELINUXTYPE=mcs\n"),
            "{t}"
        );
        assert!(write_config(d.path(), "../x", Mode::Enforcing).is_err());
        // a symlinked /etc/selinux is refused, nothing written through it
        let d2 = tempfile::tempdir().unwrap();
        fs::create_dir_all(d2.path().join("etc")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), d2.path().join("etc/selinux")).unwrap();
        let e = write_config(d2.path(), "mcs", Mode::Enforcing).unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert!(!outside.path().join("config").exists());
    }
}
