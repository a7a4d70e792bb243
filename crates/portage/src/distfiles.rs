//! Distfiles the build host provides: sources that gentoo-mini's stand-in packages build
//! from, shipped by Debian packages the host installs (`cargo xtask` installs them), put
//! into the build's DISTDIR under the name the ebuild's `SRC_URI` gives. Each is pinned by
//! size and hashes in its package's `Manifest`, which Portage checks as for any distfile.

use crate::Error;
use std::fs;
use std::path::{Path, PathBuf};

/// A distfile that a Debian package puts on the build host.
#[derive(Debug, Clone, Copy)]
pub struct HostDistfile {
    /// Where the Debian package installs it.
    pub src: &'static str,
    /// Its name in DISTDIR.
    pub name: &'static str,
    /// The Debian package, for the error when it is missing.
    pub package: &'static str,
}

/// The Linux sources of Debian 12's `linux-source-6.1`: what gentoo-mini's
/// `sys-kernel/gentoo-kernel` builds (docs/kernel.md).
pub const KERNEL: HostDistfile = HostDistfile {
    src: "/usr/src/linux-source-6.1.tar.xz",
    name: "linux-source-6.1.tar.xz",
    package: "linux-source-6.1",
};

impl HostDistfile {
    /// Whether the host has it.
    pub fn present(&self) -> bool {
        Path::new(self.src).is_file()
    }

    /// Put it into `distdir` (see [`seed`]).
    pub fn seed(&self, distdir: &Path) -> Result<PathBuf, Error> {
        seed(Path::new(self.src), self.name, self.package, distdir)
    }
}

/// Put `src` into `distdir` as `name`: a hard link, else a copy, renamed into place (never
/// a partial file under the name); nothing when an identical file is there. `package` is
/// the Debian package that provides `src`, named when it is missing.
pub fn seed(src: &Path, name: &str, package: &str, distdir: &Path) -> Result<PathBuf, Error> {
    let meta = fs::metadata(src).map_err(|e| {
        Error::Config(format!(
            "{}: {e}: it comes from Debian's {package} (`apt-get install {package}`; `cargo xtask` installs it)",
            src.display()
        ))
    })?;
    fs::create_dir_all(distdir).map_err(Error::io(distdir))?;
    let dest = distdir.join(name);
    if let Ok(d) = fs::metadata(&dest) {
        use std::os::unix::fs::MetadataExt;
        let same_inode = d.dev() == meta.dev() && d.ino() == meta.ino();
        if same_inode || (d.len() == meta.len() && fs::read(&dest).ok() == fs::read(src).ok()) {
            return Ok(dest);
        }
    }
    let tmp = distdir.join(format!(".{name}.keel-tmp"));
    let _ = fs::remove_file(&tmp);
    if fs::hard_link(src, &tmp).is_err() {
        fs::copy(src, &tmp).map_err(Error::io(&tmp))?;
    }
    fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_once_and_names_the_package_when_missing() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src.tar");
        fs::write(&src, b"sources").unwrap();
        let dist = d.path().join("distfiles");
        let p = seed(&src, "x-1.tar", "x-src", &dist).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"sources");
        assert_eq!(seed(&src, "x-1.tar", "x-src", &dist).unwrap(), p);
        let e = seed(&d.path().join("gone"), "y.tar", "y-src", &dist).unwrap_err();
        assert!(e.to_string().contains("apt-get install y-src"), "{e}");
    }
}
