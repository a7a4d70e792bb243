//! The Debian backend: a variant with `distribution = "debian"` gets its destination root
//! from Debian's archive by `mmdebstrap`, and its host tools as apt packages.
//!
//! - Package sets name Debian packages in Keel's atom grammar as `debian/<package>` (the
//!   category names the distribution; set files are parsed and merged, with removals and
//!   duplicate warnings, exactly as for Gentoo). Only bare `debian/<name>` is accepted:
//!   a version, slot, repository or USE dependency is an error naming the file and line.
//! - `install.packages` and `installonly.packages`: installed into the destination root
//!   from the archive (Debian ships binary packages, so "install" and "install only" are
//!   the same thing; both are accepted so a variant can keep the split it documents).
//! - `build.packages`: rejected (there is no sysroot: nothing is built from source).
//! - `host-tools.packages`: apt packages on the build host, installed when missing.
//!
//! The destination root is built in `<dest>.new` and renamed when complete. Downloaded
//! `.deb`s are kept in a cache shared by every Debian build of the same suite
//! (`build/cache/debian/<suite>/archives`), taken under a lock during a build.
//!
//! Files that package scripts must see while they run (the initramfs configuration: which
//! modules the initramfs of `linux-image-*` carries) come from the overlay layers'
//! `etc/initramfs-tools/`, copied in before the packages are installed; the overlay stage
//! later copies the same files again.

pub mod dpkg;
pub mod stages;

use exec::Cmd;
use pkgsets::sets::{Loc, SetKind};
use std::fs;
use std::path::{Path, PathBuf};
use variant::Resolved;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error("{loc}: `{atom}`: {message}")]
    Package {
        loc: Loc,
        atom: String,
        message: String,
    },
    #[error("{loc}: `{CATEGORY}/{name}`: Debian has no package `{name}` in {suite} (log: {})", log.display())]
    NoSuchPackage {
        loc: Loc,
        name: String,
        suite: String,
        log: PathBuf,
    },
    #[error("cannot reach the Debian archive ({mirrors}): {detail}\n(log: {})", log.display())]
    Unreachable {
        mirrors: String,
        detail: String,
        log: PathBuf,
    },
    #[error("the Debian backend needs a Debian build host with apt and dpkg: {0}")]
    Host(String),
    #[error("variant `{variant}` says `python = false`, but Python reached the destination root:\n  {}", found.join("\n  "))]
    Python { variant: String, found: Vec<String> },
    #[error(transparent)]
    Portage(#[from] portage::Error),
    #[error(transparent)]
    Tree(#[from] rootdir::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let at = rootdir::PathError::at(path);
    move |e| Error::Io(at(e))
}

/// The category that marks a Debian package name in a set file.
pub const CATEGORY: &str = "debian";

/// The Debian archive, unless `KEEL_DEBIAN_MIRROR` names another.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The security archive, unless `KEEL_DEBIAN_SECURITY_MIRROR` names another.
pub const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// Bumped when what the backend does to a destination root changes.
pub const REVISION: u32 = 2;

/// The package whose include tree holds the policy headers.
pub const HEADERS_PACKAGE: &str = "selinux-policy-dev";
/// Refpolicy's sources on the build host (Debian's `selinux-policy-src`).
pub const POLICY_SRC: &str = "/usr/src/selinux-policy-src.tar.zst";

/// dpkg `path-exclude` globs for `python = false` (dpkg's globs match across `/`).
pub const NO_PYTHON_EXCLUDES: &[&str] = &[
    "/usr/lib/python*",
    "/usr/bin/python*",
    "/usr/share/gcc/python*",
    "/usr/share/gdb/auto-load*",
    "*.py",
    "*.pyc",
];

/// A Debian package named by a set file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub loc: Loc,
}

/// The packages of a merged set: every entry must be a bare `debian/<name>`.
pub fn packages(resolved: &Resolved, kind: SetKind) -> Result<Vec<Package>, Error> {
    let mut out = Vec::new();
    for e in &resolved.set(kind).entries {
        let a = &e.atom;
        let written = a.to_string();
        let bad = |message: String| Error::Package {
            loc: e.loc.clone(),
            atom: written.clone(),
            message,
        };
        if a.category() != CATEGORY {
            return Err(bad(format!(
                "a Debian variant names Debian packages as `{CATEGORY}/<package>` (e.g. `{CATEGORY}/{}`)",
                a.package()
            )));
        }
        if !a.is_bare() {
            return Err(bad(
                "only a bare package name is supported for Debian (no version, slot, repository or USE dependency): the suite decides the version".into(),
            ));
        }
        out.push(Package {
            name: a.package().to_owned(),
            loc: e.loc.clone(),
        });
    }
    Ok(out)
}

/// The sets a Debian variant may not use.
pub fn check_sets(resolved: &Resolved) -> Result<(), Error> {
    if let Some(e) = resolved.set(SetKind::Build).entries.first() {
        return Err(Error::Package {
            loc: e.loc.clone(),
            atom: e.atom.to_string(),
            message: "a Debian variant has no build.packages: nothing is built from source (no sysroot); name the package in install.packages".into(),
        });
    }
    for kind in [SetKind::Install, SetKind::InstallOnly, SetKind::HostTools] {
        packages(resolved, kind)?;
    }
    Ok(())
}

/// One Debian build setup: the suite, the archives, the package cache.
#[derive(Debug, Clone)]
pub struct Debian {
    pub suite: String,
    pub mirror: String,
    pub security_mirror: String,
    /// `build/cache/debian/<suite>`: `archives/` (the .debs) and `lock`.
    pub cache: PathBuf,
}

impl Debian {
    /// The setup for a variant, its `.deb`s kept under `cache_dir/debian/<suite>`; the
    /// archives come from `KEEL_DEBIAN_MIRROR` and `KEEL_DEBIAN_SECURITY_MIRROR` when set.
    pub fn new(cache_dir: &Path, resolved: &Resolved) -> Result<Debian, Error> {
        let suite = resolved.settings.suite.as_deref().ok_or_else(|| {
            Error::Host(format!(
                "variant `{}` has no `suite` (the variant crate requires one)",
                resolved.name
            ))
        })?;
        Ok(Debian::for_suite(cache_dir, suite))
    }

    /// The setup for `suite` (the variant's, or `keel vm`'s build environment's): `.deb`s
    /// kept under `cache_dir/debian/<suite>`, the archives from `KEEL_DEBIAN_MIRROR` and
    /// `KEEL_DEBIAN_SECURITY_MIRROR` when set.
    pub fn for_suite(cache_dir: &Path, suite: &str) -> Debian {
        let env = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| d.to_owned())
        };
        Debian {
            cache: cache_dir.join("debian").join(suite),
            mirror: env("KEEL_DEBIAN_MIRROR", DEFAULT_MIRROR),
            security_mirror: env("KEEL_DEBIAN_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR),
            suite: suite.to_owned(),
        }
    }

    /// The downloaded `.deb`s (`<cache>/archives`).
    pub fn archives(&self) -> PathBuf {
        self.cache.join("archives")
    }

    /// The package cache, locked for as long as the file is open: builds of one suite
    /// share it, so each waits for the one that holds it.
    pub fn lock_cache(&self) -> Result<fs::File, Error> {
        fs::create_dir_all(&self.cache).map_err(io(&self.cache))?;
        lock(&self.cache.join("lock"))
    }

    /// The `sources.list` lines of the build: the suite, its updates and security
    /// archives (a development suite has neither).
    pub fn sources(&self) -> Vec<String> {
        let s = &self.suite;
        let mut v = vec![format!("deb {} {s} main", self.mirror)];
        if !matches!(s.as_str(), "sid" | "unstable" | "experimental") {
            v.push(format!("deb {} {s}-updates main", self.mirror));
            v.push(format!("deb {} {s}-security main", self.security_mirror));
        }
        v
    }

    /// What identifies the tool and the archives (a fingerprint input). The archive's
    /// contents are not part of it: a new point release is picked up by a clean build.
    pub fn identity(&self) -> String {
        let v = Cmd::new("mmdebstrap")
            .arg("--version")
            .output()
            .map(|o| o.stdout.trim().to_owned())
            .unwrap_or_else(|e| format!("unavailable: {e}"));
        format!("{v}\n{}\n", self.sources().join("\n"))
    }

    /// What else decides the destination root (a fingerprint input): the backend's own
    /// revision (bumped when what it does to a root changes), the settings it reads, and
    /// for SELinux variants the refpolicy sources the container module is built from.
    pub fn destroot_inputs(&self, resolved: &Resolved) -> String {
        let s = &resolved.settings;
        let mut t = format!(
            "revision {REVISION}\npython {}\nselinux {} {}\n",
            s.python, s.selinux, s.selinux_type
        );
        if s.selinux {
            let meta = fs::metadata(POLICY_SRC)
                .map(|m| format!("{} bytes", m.len()))
                .unwrap_or_else(|e| e.to_string());
            t.push_str(&format!("{POLICY_SRC}: {meta}\n"));
        }
        t
    }

    /// host-tools: `mmdebstrap` and the variant's `host-tools.packages` installed on the
    /// build host (`apt-get install` of the missing ones).
    pub fn host_tools(&self, resolved: &Resolved, log: &Path) -> Result<(), Error> {
        let mut wanted = vec!["mmdebstrap".to_owned()];
        wanted.extend(
            packages(resolved, SetKind::HostTools)?
                .into_iter()
                .map(|p| p.name),
        );
        if !Path::new("/usr/bin/dpkg-query").exists() || !Path::new("/usr/bin/apt-get").exists() {
            return Err(Error::Host(
                "no /usr/bin/dpkg-query or /usr/bin/apt-get on this host".into(),
            ));
        }
        let o = Cmd::new("dpkg-query")
            .arg("-W")
            .arg("-f=${Package} ${db:Status-Status}\n")
            .args(&wanted)
            // 1: some package is unknown to dpkg (not installed): listed below.
            .ok_codes(&[0, 1])
            .log(log)
            .output()?;
        let installed: Vec<&str> = o
            .stdout
            .lines()
            .filter_map(|l| l.strip_suffix(" installed"))
            .collect();
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !installed.contains(&w.as_str()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Cmd::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .log(log)
            .run()
            .map_err(|e| self.explain(e, resolved, SetKind::HostTools, log))
    }

    /// destroot: `mmdebstrap` of the install sets into `dest` (built in `<dest>.new`),
    /// with `initramfs` (directories holding initramfs-tools configuration, in layer
    /// order) copied in before the packages are installed.
    pub fn destroot(
        &self,
        resolved: &Resolved,
        initramfs: &[PathBuf],
        dest: &Path,
        log: &Path,
        source_date_epoch: Option<i64>,
    ) -> Result<(), Error> {
        check_sets(resolved)?;
        let mut names: Vec<String> = Vec::new();
        for kind in [SetKind::Install, SetKind::InstallOnly] {
            for p in packages(resolved, kind)? {
                if !names.contains(&p.name) {
                    names.push(p.name);
                }
            }
        }
        let partial = dest.with_extension("new");
        for d in [dest, partial.as_path()] {
            if d.symlink_metadata().is_ok() {
                fs::remove_dir_all(d).map_err(io(d))?;
            }
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let archives = self.archives();
        fs::create_dir_all(&archives).map_err(io(&archives))?;
        let _lock = self.lock_cache()?;

        let q = |p: &Path| exec::shell_quote(&p.to_string_lossy());
        let mut cmd = Cmd::new("mmdebstrap")
            .args([
                "--mode=root",
                "--variant=minbase",
                "--format=directory",
                "--aptopt=APT::Install-Recommends \"false\"",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/info/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-include=/usr/share/locale/locale.alias",
                // Keep the .debs (the cleanup would delete them before the sync-out hook).
                "--skip=essential/unlink",
                "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives",
            ])
            .arg(format!(
                "--setup-hook=sync-in {} /var/cache/apt/archives/",
                q(&archives)
            ))
            .arg("--essential-hook=mkdir -p \"$1\"/etc/initramfs-tools");
        if !resolved.settings.python {
            // Like Portage's INSTALL_MASK for `python = false`: Python files of packages that
            // are not Python (libstdc++'s gdb pretty-printers) are not unpacked.
            for pat in NO_PYTHON_EXCLUDES {
                cmd = cmd.arg(format!("--dpkgopt=path-exclude={pat}"));
            }
        }
        for dir in initramfs {
            cmd = cmd.arg(format!(
                "--essential-hook=cp -R --no-preserve=ownership {}/. \"$1\"/etc/initramfs-tools/",
                q(dir)
            ));
        }
        if resolved.settings.selinux {
            // The policy headers of the image's policy version, unpacked later (not
            // installed: the package needs Python).
            cmd = cmd.arg(format!(
                "--customize-hook=chroot \"$1\" sh -c 'cd /var/cache/apt/archives && apt-get download -q {HEADERS_PACKAGE}'"
            ));
        }
        cmd = cmd
            .arg(format!(
                "--customize-hook=sync-out /var/cache/apt/archives {}",
                q(&archives)
            ))
            .arg(format!("--include={}", names.join(",")))
            .arg(&self.suite)
            .arg(&partial)
            .args(self.sources())
            .log(log);
        if let Some(t) = source_date_epoch {
            cmd = cmd.env("SOURCE_DATE_EPOCH", t.to_string());
        }
        if let Err(e) = cmd.run() {
            // A failed bootstrap leaves nothing behind, not even under the partial name.
            let _ = fs::remove_dir_all(&partial);
            return Err(self.explain(e, resolved, SetKind::Install, log));
        }
        if resolved.settings.selinux {
            let r = self.selinux_extras(resolved, &partial, &archives, log);
            if let Err(e) = r {
                let _ = fs::remove_dir_all(&partial);
                return Err(e);
            }
        }
        let removed = tidy(&partial)?;
        append(
            log,
            &format!("removed from the bootstrapped root: {removed:?}\n"),
        )?;
        if !resolved.settings.python {
            let found = portage::find_python(&partial)?;
            if !found.is_empty() {
                return Err(Error::Python {
                    variant: resolved.name.clone(),
                    found,
                });
            }
        }
        fs::rename(&partial, dest).map_err(io(dest))
    }

    /// What an SELinux variant needs that Debian's packages do not put in the root: the
    /// policy headers (`selinux-policy-dev`'s include tree, without its Python helpers,
    /// which only document) under `/usr/share/selinux/<type>/include`, where the policy
    /// stage compiles local modules; and refpolicy's `container` module (Debian does not
    /// ship it: without it there is no `container_t`), built from the build host's
    /// `selinux-policy-src` against those headers and installed at the distribution's
    /// priority.
    fn selinux_extras(
        &self,
        resolved: &Resolved,
        root: &Path,
        archives: &Path,
        log: &Path,
    ) -> Result<(), Error> {
        let ty = &resolved.settings.selinux_type;
        let admindir = root.join("var/lib/dpkg");
        let version = Cmd::new("dpkg-query")
            .arg(format!("--admindir={}", admindir.display()))
            .args(["-W", "-f=${Version}", "selinux-policy-default"])
            .log(log)
            .output()?
            .stdout;
        let deb = archives.join(format!(
            "{HEADERS_PACKAGE}_{}_all.deb",
            version.trim().replace(':', "%3a")
        ));
        if !deb.is_file() {
            return Err(Error::Host(format!(
                "{}: the policy headers of selinux-policy-default {version} were not downloaded (log: {})",
                deb.display(),
                log.display()
            )));
        }
        let tmp = root.join("tmp/keel-selinux");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        Cmd::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(tmp.join("dev"))
            .log(log)
            .run()?;
        let include = root.join(format!("usr/share/selinux/{ty}/include"));
        if let Some(parent) = include.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::rename(tmp.join("dev/usr/share/selinux/devel/include"), &include)
            .map_err(io(&include))?;
        if !resolved.settings.python {
            let support = include.join("support");
            for e in fs::read_dir(&support).map_err(io(&support))?.flatten() {
                if e.file_name().to_string_lossy().ends_with(".py") {
                    fs::remove_file(e.path()).map_err(io(&e.path()))?;
                }
            }
        }
        let src = Path::new(POLICY_SRC);
        if !src.is_file() {
            return Err(Error::Host(format!(
                "{}: missing (host-tools.packages: debian/selinux-policy-src)",
                src.display()
            )));
        }
        let build = tmp.join("container");
        fs::create_dir_all(&build).map_err(io(&build))?;
        Cmd::new("tar")
            .arg("-C")
            .arg(&build)
            .args(["--strip-components=4", "--wildcards", "-xaf"])
            .arg(src)
            .arg("*/policy/modules/services/container.te")
            .arg("*/policy/modules/services/container.fc")
            .log(log)
            .run()?;
        Cmd::new("make")
            .arg("-f")
            .arg(include.join("Makefile"))
            .arg(format!("NAME={ty}"))
            .arg(format!("HEADERDIR={}", include.display()))
            .arg("container.pp")
            .cwd(&build)
            .log(log)
            .run()?;
        Cmd::new("semodule")
            .arg("-p")
            .arg(root)
            .args(["-s", ty, "-n", "-X", "100", "-i"])
            .arg(build.join("container.pp"))
            .log(log)
            .run()?;
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        append(
            log,
            &format!(
                "policy headers of selinux-policy-default {version} in /usr/share/selinux/{ty}/include; container module from {} installed\n",
                src.display()
            ),
        )
    }

    /// Turn an apt failure into the set file line of the missing package, or into "the
    /// archive is unreachable"; otherwise the command's own error.
    fn explain(&self, e: exec::Error, resolved: &Resolved, kind: SetKind, log: &Path) -> Error {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(name) = text.lines().find_map(unknown_package) {
            let kinds: &[SetKind] = match kind {
                SetKind::HostTools => &[SetKind::HostTools],
                _ => &[SetKind::Install, SetKind::InstallOnly],
            };
            for k in kinds {
                if let Ok(pkgs) = packages(resolved, *k) {
                    if let Some(p) = pkgs.iter().find(|p| p.name == name) {
                        return Error::NoSuchPackage {
                            loc: p.loc.clone(),
                            name: name.to_owned(),
                            suite: self.suite.clone(),
                            log: log.to_owned(),
                        };
                    }
                }
            }
        }
        let unreachable = [
            "Temporary failure resolving",
            "Could not resolve",
            "Could not connect",
            "Connection failed",
            "Unable to connect",
            "Failed to fetch",
            "is not signed",
            "does not have a Release file",
        ];
        if let Some(line) = text
            .lines()
            .find(|l| unreachable.iter().any(|u| l.contains(u)))
        {
            return Error::Unreachable {
                mirrors: self.sources().join("; "),
                detail: line.trim().to_owned(),
                log: log.to_owned(),
            };
        }
        Error::Exec(e)
    }
}

/// The package apt could not find, from one line of its output.
pub fn unknown_package(line: &str) -> Option<&str> {
    let rest = line
        .split_once("Unable to locate package ")
        .map(|(_, r)| r)
        .or_else(|| {
            line.split_once("Package '")
                .filter(|(_, r)| r.contains("' has no installation candidate"))
                .map(|(_, r)| r)
        })?;
    let name = rest.split(['\'', ' ']).next()?.trim();
    (!name.is_empty()).then_some(name)
}

/// What the bootstrap leaves that does not belong in an image: the build host's hostname
/// and resolv.conf, its logs (`/var/log` is a
/// subvolume made at first boot and must not be shipped), the package cache.
pub fn tidy(root: &Path) -> Result<Vec<String>, Error> {
    let mut removed = Vec::new();
    // The build host's name and resolver, copied in by mmdebstrap for the bootstrap.
    for f in ["etc/hostname", "etc/resolv.conf"] {
        let p = root.join(f);
        match fs::remove_file(&p) {
            Ok(()) => removed.push(format!("/{f}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    for dir in ["var/log", "var/cache/apt/archives"] {
        let d = root.join(dir);
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let entry = entry.map_err(io(&d))?;
            let p = entry.path();
            if entry.file_name() == "partial" || entry.file_name() == "lock" {
                continue;
            }
            let ft = entry.file_type().map_err(io(&p))?;
            if ft.is_dir() {
                fs::remove_dir_all(&p).map_err(io(&p))?;
            } else {
                fs::remove_file(&p).map_err(io(&p))?;
            }
            removed.push(format!("/{dir}/{}", entry.file_name().to_string_lossy()));
        }
    }
    Ok(removed)
}

fn append(log: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(io(log))
}

/// An exclusive lock, waited for: Debian builds of one suite share the package cache.
fn lock(path: &Path) -> Result<fs::File, Error> {
    rootdir::lock(path, || {}).map_err(io(path))
}

#[cfg(test)]
mod tests;
