//! The Portage backend: real `emerge`, driven with configuration composed from the source
//! tree (see [`config`]), never touching the host's Portage state.
//!
//! Three stages, one `emerge` invocation each (Portage start-up costs ~0.25 s):
//! - host-tools: on a Gentoo host, `emerge --noreplace @keel-host-tools` into `/`; elsewhere
//!   a check that the programs the pipeline runs are present (xtask installs them).
//! - sysroot: `@keel-build` built into the persistent sysroot with `--buildpkg --usepkg
//!   --update --deep --newuse`: binary packages persist, so only what changed is rebuilt.
//! - destroot: a fresh root: `@keel-install` with `--usepkgonly`, then
//!   `@keel-installonly` built against that root as binary packages (or taken from them)
//!   and merged from them.

pub mod binhost;
pub mod config;
pub mod distcc;
pub mod distfiles;
pub mod kernel;
pub mod reads;
pub mod stages;
pub mod vdb;
pub mod venv;

use config::{make_conf_value, set_file, LayerDir, Tree};
use exec::Cmd;
use pkgsets::sets::{Merged, SetKind};
use stage::Layout;
use std::fs;
use std::path::{Path, PathBuf};
use variant::Resolved;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error(transparent)]
    Venv(#[from] venv::Error),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Tree(#[from] rootdir::Error),
    #[error(transparent)]
    Overlay(#[from] overlay::Error),
    #[error("{message}\n{cause}")]
    Emerge { message: String, cause: exec::Error },
    #[error("{0}")]
    Python(String),
    /// A binhost or signing step that failed: what it was, then the command's failure.
    #[error("{message}\n{cause}")]
    Binhost { message: String, cause: exec::Error },
}

impl Error {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        let at = rootdir::PathError::at(path);
        move |e| Error::Io(at(e))
    }
}

/// Where Portage comes from.
#[derive(Debug, Clone)]
pub enum Install {
    /// The host's own Portage (a Gentoo host).
    Host,
    /// The pinned PyPI Portage in this venv.
    Venv(PathBuf),
}

impl Install {
    /// The host's Portage on Gentoo; else the venv `KEEL_PORTAGE_VENV` names (one that
    /// `keel tools portage-venv` made: how `keel vm` shares the host's venv into a VM);
    /// else the pinned PyPI release under `build_dir` (installed when missing).
    pub fn detect(build_dir: &Path) -> Result<Install, Error> {
        if Path::new("/etc/gentoo-release").exists() && Path::new("/usr/bin/emerge").exists() {
            return Ok(Install::Host);
        }
        match std::env::var_os("KEEL_PORTAGE_VENV").filter(|v| !v.is_empty()) {
            Some(v) => Ok(Install::Venv(venv::check(Path::new(&v))?)),
            None => Ok(Install::Venv(venv::ensure(build_dir)?)),
        }
    }
    /// A Portage program: the host's on Gentoo, the venv's otherwise.
    fn program(&self, name: &str) -> PathBuf {
        match self {
            Install::Host => Path::new("/usr/bin").join(name),
            Install::Venv(v) => v.join("bin").join(name),
        }
    }
    /// What identifies this Portage (for fingerprints).
    pub fn identity(&self) -> String {
        match self {
            Install::Host => "host".to_owned(),
            Install::Venv(_) => format!("pypi-portage-{}", venv::VENV_ID),
        }
    }
}

/// The caller's variables emerge still sees: the build time (ebuilds and compilers honour
/// it), and proxies for fetching.
pub const PASSED_TO_EMERGE: &[&str] = &[
    "SOURCE_DATE_EPOCH",
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
];

/// Portage for one variant build.
#[derive(Debug, Clone)]
pub struct Portage {
    pub install: Install,
    pub repo: PathBuf,
    pub layout: Layout,
}

/// Default location of the Gentoo repository.
pub const DEFAULT_REPO: &str = "/var/db/repos/gentoo";

impl Portage {
    pub fn new(install: Install, repo: PathBuf, layout: Layout) -> Result<Portage, Error> {
        if !repo.join("profiles").is_dir() {
            let what = if repo == Path::new(DEFAULT_REPO) {
                "the default Gentoo repository"
            } else {
                "the Gentoo repository"
            };
            return Err(Error::Config(format!(
                "{what} {} does not exist or has no profiles/; pass --gentoo-repo DIR (for tests and demos: --gentoo-repo tests/fixtures/gentoo-mini)",
                repo.display()
            )));
        }
        Ok(Portage {
            install,
            repo,
            layout,
        })
    }

    fn profile_dir(&self, resolved: &Resolved) -> Result<PathBuf, Error> {
        let profile = resolved.settings.profile.as_deref().ok_or_else(|| {
            Error::Config(format!(
                "variant `{}` sets no `profile` in its variant.toml (or an ancestor's)",
                resolved.name
            ))
        })?;
        let dir = self.repo.join("profiles").join(profile);
        if !dir.is_dir() {
            return Err(Error::Config(format!(
                "profile `{profile}` (variant `{}`) does not exist in {}",
                resolved.name,
                self.repo.join("profiles").display()
            )));
        }
        Ok(dir)
    }

    fn layers(project_root: &Path, resolved: &Resolved) -> Vec<LayerDir> {
        let _ = project_root;
        resolved
            .layers_of("portage")
            .map(|l| LayerDir {
                rel: l.rel.clone(),
                path: l.path.clone(),
            })
            .collect()
    }

    fn keel_make_conf(&self, resolved: &Resolved, pkgdir: &Path) -> String {
        let l = &self.layout;
        let mut s = String::from("# generated by keel: paths and settings every build needs\n");
        let mut kv = |k: &str, v: &str| s.push_str(&format!("{k}={}\n", make_conf_value(v)));
        kv("PKGDIR", &pkgdir.display().to_string());
        kv("DISTDIR", &l.distdir().display().to_string());
        kv("PORTAGE_TMPDIR", &l.tmpdir().display().to_string());
        kv(
            "PORTAGE_LOGDIR",
            &l.logs().join("packages").display().to_string(),
        );
        // Debian's /usr/bin/sandbox is an SELinux tool, not Gentoo's sandbox. No syncfs
        // after every merge (`merge-sync`): these roots are build trees, and a crashed build
        // is redone from its stage's start anyway.
        kv(
            "FEATURES",
            "-sandbox -usersandbox -news -merge-sync binpkg-multi-instance",
        );
        // Independent packages build side by side, as most Gentoo users set it; a project's
        // make.conf may say otherwise (later parts win). The destroot stays serial:
        // `destroot_config`.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        kv(
            "EMERGE_DEFAULT_OPTS",
            &format!("--jobs={n} --load-average={n}"),
        );
        kv("CONFIG_PROTECT", "-*");
        // Portage passes its settings to the ebuilds, which save them in each package's
        // environment (environment.bz2, in the binary package and the image's database).
        // Those a binhost changes (`binhost::verify_env`: the keyring, in the project's
        // directory) would make a package compiled on a machine that used a binhost differ
        // from one compiled on a machine that did not. Unset for the ebuilds (EAPI 7 and
        // later), they are in no package.
        kv("ENV_UNSET", &binhost::VERIFY_SETTINGS.join(" "));
        kv("CLEAN_DELAY", "0");
        kv("EMERGE_WARNING_DELAY", "0");
        if let Some(chost) = &resolved.settings.chost {
            kv("CHOST", chost);
        }
        s
    }

    /// Compose the configuration roots of a variant (host and sysroot) from the source
    /// tree, replacing whatever a previous build wrote. Returns the composed trees.
    pub fn compose(&self, project_root: &Path, resolved: &Resolved) -> Result<Composed, Error> {
        let profile = self.profile_dir(resolved)?;
        let layers = Self::layers(project_root, resolved);

        // The build host's configuration (the "running root" Portage always builds).
        let mut host = config::compose_layers(&layers, "host")?;
        host.link("make.profile", &profile);
        let l = &self.layout;
        let mut hm = format!(
            "# generated by keel\nPKGDIR={}\nDISTDIR={}\nPORTAGE_TMPDIR={}\nFEATURES=\"-sandbox -usersandbox -news\"\nCONFIG_PROTECT=\"-*\"\n",
            make_conf_value(&l.host_pkgdir().display().to_string()),
            make_conf_value(&l.distdir().display().to_string()),
            make_conf_value(&l.tmpdir().display().to_string())
        );
        hm.push_str("CLEAN_DELAY=\"0\"\nEMERGE_WARNING_DELAY=\"0\"\n");
        host.file("make.conf/00-keel", hm);
        host.file("repos.conf/keel.conf", self.repos_conf());
        host.file(
            "sets/keel-host-tools",
            set_file(
                SetKind::HostTools.file_name(),
                &atoms(resolved, SetKind::HostTools),
            ),
        );

        let mut sysroot = config::compose_layers(&layers, "")?;
        sysroot.link("make.profile", &profile);
        sysroot.file(
            "make.conf/00-keel",
            self.keel_make_conf(resolved, &l.pkgdir()),
        );
        sysroot.file(
            "sets/keel-build",
            set_file(SetKind::Build.file_name(), &atoms(resolved, SetKind::Build)),
        );
        if let Install::Venv(venv) = &self.install {
            // Global config of a pip install: make.globals from the venv, our own repos.conf.
            let global = self.layout.host_prefix().join("share/portage/config");
            let mut g = Tree::default();
            for f in ["make.globals", "sets", "binrepos.conf", "repo.postsync.d"] {
                g.link(f, venv.join("share/portage/config").join(f));
            }
            g.file("repos.conf", self.repos_conf());
            g.write(&global)?;
        }
        // Kernel configuration fragments: Gentoo's distribution kernels (kernel-build.eclass)
        // merge ${BROOT}/etc/kernel/config.d/*.config; a later layer's file of the same name wins.
        let mut kernel = Tree::default();
        let mut origins = std::collections::BTreeMap::new();
        for l in resolved.layers_of("kernel") {
            let files = config::LayerFiles::open(&config::LayerDir {
                rel: l.rel.clone(),
                path: l.path.clone(),
            })?;
            let dir = Path::new(&l.rel).join("config.d");
            if !files.is_dir(&dir) {
                continue;
            }
            for name in files.names(&dir)? {
                if name.ends_with(".config") {
                    let content = files.read(&dir.join(&name))?;
                    // A line that is not a setting fails here, before anything is built.
                    let origin = dir.join(&name).display().to_string();
                    kconfig::parse_fragment(&origin, &String::from_utf8_lossy(&content))
                        .map_err(|e| Error::Config(e.to_string()))?;
                    origins.insert(name.clone(), origin);
                    kernel.file(name, content);
                }
            }
        }
        if !kernel.files.is_empty() {
            // The kernel package's configure phase is checked against the fragments.
            let prev = match sysroot.files.get("bashrc") {
                Some(config::Node::File(c)) => String::from_utf8_lossy(c).into_owned(),
                _ => String::new(),
            };
            if prev.contains("post_src_configure") {
                // Keel's definition would replace it without a word.
                return Err(Error::Config(format!(
                    "the portage/bashrc of variant `{}` defines post_src_configure, which Keel's check of the kernel fragments needs (docs/kernel.md): use another phase hook, or /etc/portage/env",
                    resolved.name
                )));
            }
            sysroot.file("bashrc", format!("{prev}{}", kernel::HOOK));
        }
        if let Install::Venv(_) = self.install {
            let etc = self.layout.host_prefix().join("etc/kernel");
            kernel.write(&etc.join("config.d"))?;
            let record: String = origins.iter().map(|(n, o)| format!("{n} {o}\n")).collect();
            let path = etc.join(kernel::ORIGINS);
            fs::write(&path, record).map_err(Error::io(&path))?;
        }
        host.write(&self.host_config_dir())?;
        sysroot.write(&self.layout.config_root("sysroot").join("etc/portage"))?;
        // Portage's bash library calls `gtar`; Debian has none.
        let bin = self.layout.bindir();
        fs::create_dir_all(&bin).map_err(Error::io(&bin))?;
        let gtar = bin.join("gtar");
        if gtar.symlink_metadata().is_err() {
            std::os::unix::fs::symlink("/usr/bin/tar", &gtar).map_err(Error::io(&gtar))?;
        }
        // `keel` for the kernel hook: this program.
        let keel = bin.join("keel");
        let exe = std::env::current_exe().map_err(Error::io(&keel))?;
        if fs::read_link(&keel).ok().as_deref() != Some(exe.as_path()) {
            let _ = fs::remove_file(&keel);
            std::os::unix::fs::symlink(&exe, &keel).map_err(Error::io(&keel))?;
        }
        Ok(Composed {
            host,
            sysroot,
            kernel,
        })
    }

    fn host_config_dir(&self) -> PathBuf {
        match self.install {
            // On Gentoo the host's /etc/portage is the user's; Keel never writes there and
            // uses its own config root for host-tools instead.
            Install::Host => self.layout.config_root("host").join("etc/portage"),
            Install::Venv(_) => self.layout.host_prefix().join("etc/portage"),
        }
    }

    fn repos_conf(&self) -> String {
        let name = fs::read_to_string(self.repo.join("profiles/repo_name"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "gentoo".into());
        format!(
            "[DEFAULT]\nmain-repo = {name}\n\n[{name}]\nlocation = {}\n",
            self.repo.display()
        )
    }

    /// An `emerge` command with Keel's environment for the given config root kind.
    ///
    /// The caller's environment is not passed on: Portage saves the ebuild environment
    /// (`environment.bz2`) into the root's package database, so whatever the shell that
    /// ran Keel exported would end up in the image and make it depend on who built it and
    /// where (a VM's PID 1, a CI runner). Only `PATH`, [`PASSED_TO_EMERGE`] and Keel's own
    /// settings reach emerge.
    pub fn emerge(&self, config_kind: &str, root: &Path) -> Cmd {
        self.tool("emerge", config_kind, root)
            .args(["--color=n", "--nospinner", "--quiet-build=y"])
    }

    /// A Portage program (`emerge`, `emaint`, `gpkg-sign`) with the environment
    /// [`Portage::emerge`] describes. Once a binhost's packages are in this variant's
    /// binary packages, Portage verifies their signatures wherever it reads them, with the
    /// keyring made from the binhost's key ([`binhost`]).
    pub fn tool(&self, program: &str, config_kind: &str, root: &Path) -> Cmd {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        let host_bin = self.layout.host_prefix().join("usr/bin");
        let mut c = Cmd::new(self.install.program(program)).env_clear();
        for k in PASSED_TO_EMERGE {
            if let Some(v) = std::env::var_os(k) {
                c = c.env(k, v);
            }
        }
        let mut c = c
            .env("PORTAGE_CONFIGROOT", self.layout.config_root(config_kind))
            .env("EPREFIX", "")
            .env("ROOT", root)
            .env(
                "PATH",
                format!(
                    "{}:{}:{path}",
                    self.layout.bindir().display(),
                    host_bin.display()
                ),
            )
            .env("NOCOLOR", "true")
            .env_remove("PORTAGE_USERNAME");
        if let Install::Venv(_) = self.install {
            c = c.env("PORTAGE_OVERRIDE_EPREFIX", self.layout.host_prefix());
        }
        if !has_portage_user() {
            c = c
                .env("PORTAGE_USERNAME", "root")
                .env("PORTAGE_GRPNAME", "root");
        }
        binhost::verify_env(&self.layout, c)
    }

    /// host-tools: on a Gentoo host, emerge the variant's host tools into `/`.
    pub fn host_tools(&self, resolved: &Resolved, log: &Path) -> Result<(), Error> {
        match &self.install {
            Install::Host => {
                if resolved.set(SetKind::HostTools).entries.is_empty() {
                    return Ok(());
                }
                // The one emerge whose ROOT is `/`: on a Gentoo host the host tools are
                // the host's packages (the host's package database records them).
                let cmd = self
                    .emerge("host", Path::new("/"))
                    .args(["--noreplace", "@keel-host-tools"])
                    .log(log);
                cmd.run()
                    .map_err(|e| explain(e, resolved, SetKind::HostTools))
            }
            Install::Venv(_) => {
                let missing: Vec<&str> = NEEDED_ON_DEBIAN
                    .iter()
                    .copied()
                    .filter(|p| !Path::new(p).exists())
                    .collect();
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(Error::Config(format!(
                        "missing on this host: {} (`cargo xtask build ...` installs them)",
                        missing.join(" ")
                    )))
                }
            }
        }
    }

    /// sysroot: build `@keel-build` into the persistent sysroot as binary packages.
    ///
    /// Portage does not track user patches, so Keel says what they changed:
    /// `patched.reinstall`, packages whose installed copy in the sysroot was built with
    /// other patches (`--reinstall-atoms`); `patched.from_source`, packages whose newest
    /// binary package was (`--usepkg-exclude`: they are compiled again).
    pub fn sysroot(
        &self,
        resolved: &Resolved,
        patched: &PatchChanges,
        binhost: Option<&stage::Binhost>,
        log: &Path,
    ) -> Result<(), Error> {
        let s = self.layout.sysroot();
        fs::create_dir_all(&s).map_err(Error::io(&s))?;
        if resolved.set(SetKind::Build).entries.is_empty() {
            return Ok(());
        }
        let mut cmd = self
            .emerge("sysroot", &s)
            .arg(format!("--root={}", s.display()))
            .arg(format!("--sysroot={}", s.display()))
            .args([
                "--buildpkg",
                "--usepkg",
                "--update",
                "--deep",
                "--newuse",
                "--with-bdeps=y",
            ]);
        if !patched.reinstall.is_empty() {
            cmd = cmd.arg(format!("--reinstall-atoms={}", patched.reinstall.join(" ")));
        }
        if !patched.from_source.is_empty() {
            cmd = cmd.arg(format!(
                "--usepkg-exclude={}",
                patched.from_source.join(" ")
            ));
        }
        if let Some(bh) = binhost {
            // What Portage takes from the binhost must match this build's USE, as with
            // local packages.
            cmd = cmd.args(["--getbinpkg", "--binpkg-respect-use=y"]);
            if bh.only {
                self.check_binhost_only(cmd.clone().arg("@keel-build"), bh, log)?;
            }
        }
        cmd.arg("@keel-build")
            .log(log)
            .run()
            .map_err(|e| self.failed(e, binhost, log, resolved, SetKind::Build))
    }

    /// An emerge of `kind` failed: with a binhost, when Portage refused one of its
    /// packages, say which and why, and remove the refused file from the binary packages
    /// (Portage would otherwise find it there again); otherwise what [`explain`] says.
    fn failed(
        &self,
        e: exec::Error,
        binhost: Option<&stage::Binhost>,
        log: &Path,
        resolved: &Resolved,
        kind: SetKind,
    ) -> Error {
        let Some(bh) = binhost else {
            return explain(e, resolved, kind);
        };
        let text = fs::read_to_string(log).unwrap_or_default();
        let Some(r) = binhost::refused(&text) else {
            return explain(e, resolved, kind);
        };
        let pkgdir = self.layout.pkgdir();
        if let Some(f) = r.file.as_deref().filter(|f| f.starts_with(&pkgdir)) {
            let _ = fs::remove_file(f);
        }
        Error::Emerge {
            message: format!(
                "Portage refused the binary package {} from the binhost {}: {}{}",
                r.package.as_deref().unwrap_or("(see the log)"),
                bh.url,
                r.why,
                r.file
                    .map(|f| format!(" (downloaded as {})", f.display()))
                    .unwrap_or_default()
            ),
            cause: e,
        }
    }

    /// The destroot's configuration: the sysroot's, with the install sets instead of the
    /// build set, and the no-Python settings. Reads the sysroot's installed Python packages.
    pub fn destroot_config(&self, resolved: &Resolved, sysroot: &Tree) -> Result<Tree, Error> {
        let mut cfg = sysroot.clone();
        cfg.files.remove("sets/keel-build");
        for kind in [SetKind::Install, SetKind::InstallOnly] {
            cfg.file(
                format!("sets/keel-{}", kind.name()),
                set_file(kind.file_name(), &atoms(resolved, kind)),
            );
        }
        // One package at a time: merge order decides each package's COUNTER in the image's
        // package database, so a parallel merge would make the image depend on timing.
        cfg.file(
            "make.conf/99-keel-destroot",
            "# generated by keel: merges in a fixed order\nEMERGE_DEFAULT_OPTS=\"${EMERGE_DEFAULT_OPTS} --jobs=1\"\n",
        );
        if !resolved.settings.python {
            // No Python in the image: the sysroot's Python packages count as provided, so
            // nothing pulls them in, and Python files of other packages are masked.
            let provided = python_packages(&self.layout.sysroot())?;
            let mut text = String::from("# generated by keel: python = false\n");
            for p in &provided {
                text.push_str(p);
                text.push('\n');
            }
            let prev = match cfg.files.get("profile/package.provided") {
                Some(config::Node::File(c)) => String::from_utf8_lossy(c).into_owned(),
                _ => String::new(),
            };
            cfg.file("profile/package.provided", format!("{prev}{text}"));
            cfg.file(
                "make.conf/99-keel-no-python",
                format!(
                    "INSTALL_MASK=\"${{INSTALL_MASK}} {}\"\n",
                    PYTHON_MASK.join(" ")
                ),
            );
        }
        Ok(cfg)
    }

    /// destroot: install `@keel-install` from the binary packages, then
    /// `@keel-installonly`, into `dest` (a fresh, empty directory), with `cfg` from
    /// [`Portage::destroot_config`].
    ///
    /// `@keel-installonly` is built against `dest` as binary packages first (`--buildpkgonly
    /// --usepkg`: a package already in the binary packages, or on the binhost, is not
    /// compiled again; `from_source`, those whose newest binary package was built with
    /// other user patches, are), then merged from them as `@keel-install` is: a package
    /// merged from source leaves another database entry (its `FEATURES`, its saved
    /// environment) than one merged from its binary package, so merging from source would
    /// make the image depend on what the cache held.
    pub fn destroot(
        &self,
        resolved: &Resolved,
        cfg: &Tree,
        dest: &Path,
        binhost: Option<&stage::Binhost>,
        from_source: &[String],
        log: &Path,
    ) -> Result<(), Error> {
        cfg.write(&self.layout.config_root("destroot").join("etc/portage"))?;
        if let Some(bh) = binhost {
            binhost::write_binrepos_conf(&self.layout, "destroot", &bh.url)?;
        }
        fs::create_dir_all(dest).map_err(Error::io(dest))?;
        // The set `kind` merged into `dest` from the binary packages.
        let merge = |kind: SetKind| {
            self.emerge("destroot", dest)
                .arg(format!("--root={}", dest.display()))
                // With --usepkgonly Portage otherwise takes the newest binary package whatever
                // its USE flags; several builds of one version coexist (binpkg-multi-instance).
                .args(["--usepkgonly", "--binpkg-respect-use=y", "--with-bdeps=n"])
                .arg(format!("@keel-{}", kind.name()))
                .log(log)
                .run()
                .map_err(|e| explain(e, resolved, kind))
        };
        if !resolved.set(SetKind::Install).entries.is_empty() {
            merge(SetKind::Install)?;
        }
        if !resolved.set(SetKind::InstallOnly).entries.is_empty() {
            let mut build = self
                .emerge("destroot", dest)
                .arg(format!("--root={}", dest.display()))
                .arg(format!("--sysroot={}", dest.display()))
                .args([
                    "--with-bdeps=n",
                    "--buildpkgonly",
                    "--usepkg",
                    "--binpkg-respect-use=y",
                ]);
            if !from_source.is_empty() {
                build = build.arg(format!("--usepkg-exclude={}", from_source.join(" ")));
            }
            if let Some(bh) = binhost {
                build = build.arg("--getbinpkg");
                if bh.only {
                    self.check_binhost_only(build.clone().arg("@keel-installonly"), bh, log)?;
                }
            }
            build
                .arg("@keel-installonly")
                .log(log)
                .run()
                .map_err(|e| self.failed(e, binhost, log, resolved, SetKind::InstallOnly))?;
            merge(SetKind::InstallOnly)?;
        }
        if !resolved.settings.python {
            let found = find_python(dest)?;
            if !found.is_empty() {
                return Err(Error::Python(format!(
                    "variant `{}` says `python = false`, but Python reached the destination root:\n  {}",
                    resolved.name,
                    found.join("\n  ")
                )));
            }
        }
        Ok(())
    }
}

/// Programs the pipeline runs on a non-Gentoo host.
const NEEDED_ON_DEBIAN: &[&str] = &["/usr/bin/scanelf", "/usr/bin/zstd", "/usr/bin/tar"];

/// INSTALL_MASK patterns for `python = false`.
pub const PYTHON_MASK: &[&str] = &[
    "/usr/lib/python*",
    "/usr/lib64/python*",
    "/usr/bin/python*",
    "/usr/lib/python-exec",
    "/usr/share/doc/python*",
];

/// The user patches of a composed configuration, per package: `cat/pkg` (or `cat/pkg:slot`)
/// -> a digest of the patch files (names and contents). A directory named for a version
/// (`cat/pkg-1.2`) counts for the package.
pub fn user_patches(tree: &Tree) -> std::collections::BTreeMap<String, String> {
    let mut out: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    for (rel, node) in &tree.files {
        let mut parts = rel.splitn(4, '/');
        let (Some("patches"), Some(cat), Some(dir), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let key = package_of_patch_dir(cat, dir);
        let content = match node {
            config::Node::File(c) => String::from_utf8_lossy(c).into_owned(),
            config::Node::Link(t) => t.display().to_string(),
        };
        let e = out.entry(key).or_default();
        e.push_str(&format!("{name}\n{}\n{content}", content.len()));
    }
    // A short, stable digest per package (FNV-1a over the text).
    out.into_iter()
        .map(|(k, v)| {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in v.bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
            }
            (k, format!("{h:016x}"))
        })
        .collect()
}

/// The entries of `root`'s installed-package database: `cat/pkg` and the entry's
/// directory (`var/db/pkg/cat/pf`). Portage's own unfinished entries (`-MERGING-pf`),
/// which it cleans up itself, are left out.
fn vdb_entries(root: &Path) -> Result<Vec<(String, PathBuf)>, Error> {
    let vdb = root.join("var/db/pkg");
    let mut out = Vec::new();
    let Ok(cats) = fs::read_dir(&vdb) else {
        return Ok(out);
    };
    for cat in cats {
        let cat = cat.map_err(Error::io(&vdb))?;
        let dir = cat.path();
        if !cat.file_type().map_err(Error::io(&dir))?.is_dir() {
            continue;
        }
        let c = cat.file_name().to_string_lossy().into_owned();
        for e in fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let e = e.map_err(Error::io(&dir))?;
            let pf = e.file_name().to_string_lossy().into_owned();
            if !pf.starts_with('-') && e.file_type().map_err(Error::io(&e.path()))?.is_dir() {
                out.push((package_of_patch_dir(&c, &pf), e.path()));
            }
        }
    }
    Ok(out)
}

/// The packages installed in `root`, as [`user_patches`] keys: `cat/pkg` and
/// `cat/pkg:slot` for each.
pub fn installed(root: &Path) -> Result<std::collections::BTreeSet<String>, Error> {
    let mut out = std::collections::BTreeSet::new();
    for (key, dir) in vdb_entries(root)? {
        if let Ok(slot) = fs::read_to_string(dir.join("SLOT")) {
            let slot = slot.trim().split('/').next().unwrap_or_default();
            out.insert(format!("{key}:{slot}"));
        }
        out.insert(key);
    }
    Ok(out)
}

/// The packages (`cat/pkg`) in `root`'s installed-package database whose entry was
/// written at or after `since`: what a Portage run that began then merged.
pub fn merged_since(root: &Path, since: std::time::SystemTime) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for (key, dir) in vdb_entries(root)? {
        let m = fs::metadata(&dir).map_err(Error::io(&dir))?;
        if m.modified().map_err(Error::io(&dir))? >= since {
            out.push(key);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn package_of_patch_dir(cat: &str, dir: &str) -> String {
    if let Some((pkg, slot)) = dir.split_once(':') {
        return format!("{cat}/{pkg}:{slot}");
    }
    match pkgsets::Atom::parse(&format!("={cat}/{dir}"), pkgsets::ParseOptions::default()) {
        Ok(a) => a.key().to_owned(),
        Err(_) => format!("{cat}/{dir}"),
    }
}

/// What changed user patches mean for a sysroot build ([`Portage::sysroot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchChanges {
    /// Installed in the sysroot with other patches: install again.
    pub reinstall: Vec<String>,
    /// The newest binary package was built with other patches: compile again.
    pub from_source: Vec<String>,
}

impl PatchChanges {
    /// `installed`: the patches of the sysroot's packages; `packaged`: those of the newest
    /// binary packages; `now`: the configuration's. A package missing from a record
    /// counts as changed, so nothing of unknown provenance is taken.
    pub fn new(
        installed: &std::collections::BTreeMap<String, String>,
        packaged: &std::collections::BTreeMap<String, String>,
        now: &std::collections::BTreeMap<String, String>,
    ) -> PatchChanges {
        let from_source = changed_patches(packaged, now);
        let mut c = PatchChanges {
            reinstall: changed_patches(installed, now),
            from_source: from_source.clone(),
        };
        c.reinstall_too(from_source);
        c
    }

    /// Install `packages` again too (each once, in order).
    pub fn reinstall_too(&mut self, packages: Vec<String>) {
        self.reinstall.extend(packages);
        self.reinstall.sort();
        self.reinstall.dedup();
    }
}

/// The packages whose user patches differ between two [`user_patches`] maps.
pub fn changed_patches(
    before: &std::collections::BTreeMap<String, String>,
    now: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys: Vec<String> = before
        .keys()
        .chain(now.keys())
        .filter(|k| before.get(*k) != now.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// The composed configuration of a build.
#[derive(Debug, Clone)]
pub struct Composed {
    pub host: Tree,
    pub sysroot: Tree,
    /// Kernel configuration fragments, in `${BROOT}/etc/kernel/config.d` off Gentoo. On a
    /// Gentoo host BROOT is `/`, which Keel never writes: install them there yourself.
    pub kernel: Tree,
}

fn atoms(resolved: &Resolved, kind: SetKind) -> Vec<String> {
    resolved.set(kind).atoms().map(|a| a.to_string()).collect()
}

fn has_portage_user() -> bool {
    let has = |file: &str| {
        fs::read_to_string(file).is_ok_and(|s| s.lines().any(|l| l.starts_with("portage:")))
    };
    has("/etc/passwd") && has("/etc/group")
}

/// `=cat/pkg-ver` of every Python package installed in a root (its vdb).
fn python_packages(root: &Path) -> Result<Vec<String>, Error> {
    let vdb = root.join("var/db/pkg");
    let mut out = Vec::new();
    for cat in ["dev-lang", "dev-python"] {
        let dir = vdb.join(cat);
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd {
            let e = e.map_err(Error::io(&dir))?;
            let pf = e.file_name().to_string_lossy().into_owned();
            if cat == "dev-python" || pf.starts_with("python-") {
                out.push(format!("{cat}/{pf}"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Python interpreters, modules and programs under `root` (paths relative to it).
pub fn find_python(root: &Path) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    let mut stack = vec![(root.to_owned(), String::new())];
    while let Some((d, rel)) = stack.pop() {
        let rd = fs::read_dir(&d).map_err(Error::io(&d))?;
        for e in rd {
            let e = e.map_err(Error::io(&d))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = format!("{rel}/{name}");
            let ft = e.file_type().map_err(Error::io(&e.path()))?;
            let pythonish =
                name.starts_with("python") || name.ends_with(".py") || name.ends_with(".pyc");
            if ft.is_dir() {
                if pythonish || name == "site-packages" || name == "__pycache__" {
                    found.push(format!("{r}/"));
                } else {
                    stack.push((e.path(), r));
                }
            } else if pythonish && (ft.is_file() || ft.is_symlink()) {
                found.push(r);
            } else if ft.is_file() && python_shebang(&e.path()) {
                found.push(format!("{r} (a Python program)"));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn python_shebang(path: &Path) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 128];
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut buf).unwrap_or(0);
    let head = &buf[..n];
    head.starts_with(b"#!") && {
        let line = head.split(|&b| b == b'\n').next().unwrap_or(head);
        String::from_utf8_lossy(line).contains("python")
    }
}

/// Turn an emerge failure into an error that names what the user can fix: the set file and
/// line of an atom Portage cannot satisfy, or the failing package and its build log.
fn explain(e: exec::Error, resolved: &Resolved, kind: SetKind) -> Error {
    let exec::Error::Failed(failed) = &e else {
        return Error::Exec(e);
    };
    let Some(log) = &failed.log else {
        return Error::Exec(e);
    };
    let text = fs::read_to_string(log).unwrap_or_default();
    let message = explain_log(&text, resolved.set(kind), kind).unwrap_or_else(|| {
        format!(
            "emerge failed in the {} stage of variant `{}`",
            kind.name(),
            resolved.name
        )
    });
    Error::Emerge { message, cause: e }
}

/// The explanation of an emerge log, when it holds one Keel recognizes.
pub fn explain_log(text: &str, set: &Merged, kind: SetKind) -> Option<String> {
    if let Some(m) = kernel::explain_log(text) {
        return Some(m);
    }
    for line in text.lines() {
        for marker in [
            "there are no ebuilds to satisfy \"",
            "there are no binary packages to satisfy \"",
            "there are no ebuilds built with USE flags to satisfy \"",
        ] {
            if let Some(rest) = line.split(marker).nth(1) {
                let atom = rest.split('"').next().unwrap_or(rest);
                let place = set
                    .entries
                    .iter()
                    .find(|e| e.atom.to_string() == atom || e.atom.key() == atom)
                    .map(|e| format!("{}: ", e.loc))
                    .unwrap_or_default();
                let hint = if marker.contains("binary") {
                    format!(
                        " (is it in build.packages? {} installs only what the sysroot built)",
                        kind.file_name()
                    )
                } else {
                    String::new()
                };
                return Some(format!(
                    "{place}Portage cannot satisfy `{atom}`: {}{hint}",
                    marker.trim_end_matches(" \"")
                ));
            }
        }
    }
    let mut failed = None;
    let mut build_log = None;
    let mut patch = None;
    for line in text.lines() {
        // eapply_user: "patch -p1 ... failed with '/path/to/NNNN-name.patch'"
        if line.contains("failed with '") && line.contains("patch") {
            if let Some(p) = line
                .split("failed with '")
                .nth(1)
                .and_then(|r| r.split('\'').next())
            {
                patch = Some(p.to_owned());
            }
        }
        if let Some(rest) = line.split("ERROR: ").nth(1) {
            if rest.contains(" failed") {
                failed = Some(rest.trim().trim_end_matches(':').to_owned());
            }
        }
        if let Some(rest) = line.split("The complete build log is located at '").nth(1) {
            build_log = rest.split('\'').next().map(str::to_owned);
        }
    }
    if let (Some(f), Some(p)) = (&failed, &patch) {
        return Some(format!(
            "user patch {p} does not apply: {f}{}",
            build_log
                .as_deref()
                .map(|l| format!("; build log: {l}"))
                .unwrap_or_default()
        ));
    }
    if let Some(f) = failed {
        return Some(format!(
            "package build failed: {f}{}",
            build_log
                .map(|l| format!("; build log: {l}"))
                .unwrap_or_default()
        ));
    }
    let lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| {
        l.contains("The following REQUIRED_USE flag constraints are unsatisfied")
            || l.contains("USE changes are necessary")
    })?;
    // The packages Portage names below the header (`>=cat/pkg-1.0 flag`, `=cat/pkg-1.0`),
    // and the set line that asked for each (the last one: the most derived variant's).
    let mut what = Vec::new();
    for l in lines[at + 1..].iter().take(20) {
        let Some(tok) = l.split_whitespace().next() else {
            continue;
        };
        if let Ok(atom) = pkgsets::Atom::parse(tok, pkgsets::ParseOptions::default()) {
            let place = set
                .entries
                .iter()
                .rev()
                .find(|e| e.atom.key() == atom.key())
                .map(|e| format!("{}: ", e.loc))
                .unwrap_or_default();
            what.push(format!("{place}{}", l.trim()));
        }
    }
    Some(format!(
        "USE conflict: {}{}",
        lines[at].trim(),
        what.iter().map(|w| format!("\n  {w}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_patch_changes_name_their_packages() {
        let mut t = Tree::default();
        t.file("patches/sec-policy/selinux-base/0001-a.patch", "A");
        t.file("patches/sys-apps/systemd-252.38/0001-b.patch", "B");
        t.file("patches/dev-libs/foo:2/x.patch", "C");
        t.file("make.conf/00-keel", "X=1");
        let before = user_patches(&t);
        assert_eq!(
            before.keys().collect::<Vec<_>>(),
            [
                "dev-libs/foo:2",
                "sec-policy/selinux-base",
                "sys-apps/systemd"
            ]
        );
        let mut t2 = t.clone();
        t2.file("patches/sec-policy/selinux-base/0002-new.patch", "N");
        t2.files.remove("patches/dev-libs/foo:2/x.patch");
        t2.file("make.conf/00-keel", "X=2");
        assert_eq!(
            changed_patches(&before, &user_patches(&t2)),
            ["dev-libs/foo:2", "sec-policy/selinux-base"]
        );
        assert!(changed_patches(&before, &user_patches(&t)).is_empty());
    }

    #[test]
    fn patch_changes_split_installed_from_packaged() {
        let m = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let now = m(&[("a/x", "1"), ("b/y", "2")]);
        // A fresh sysroot over a cache whose packages match: install them, compile nothing.
        let c = PatchChanges::new(&m(&[]), &now, &now);
        assert_eq!(c.reinstall, ["a/x", "b/y"]);
        assert!(c.from_source.is_empty());
        // A cache without a record (older Keel, or emptied): compile what is patched.
        let c = PatchChanges::new(&now, &m(&[]), &now);
        assert_eq!(c.reinstall, ["a/x", "b/y"]);
        assert_eq!(c.from_source, ["a/x", "b/y"]);
        // Another work directory packaged b/y's new patch; this sysroot has the old one.
        let c = PatchChanges::new(&m(&[("a/x", "1"), ("b/y", "0")]), &now, &now);
        assert_eq!(
            (c.reinstall, c.from_source),
            (vec!["b/y".to_string()], vec![])
        );
        // Nothing changed.
        assert_eq!(PatchChanges::new(&now, &now, &now), PatchChanges::default());
    }

    #[test]
    fn explains_a_patch_that_no_longer_applies() {
        let log = "patch -p1 ... failed with '/p/variants/selinux/portage/patches/sec-policy/selinux-base/0003-stale.patch'\n \
                   * ERROR: sec-policy/selinux-base-2.20221101::gentoo failed (prepare phase):\n";
        let m = explain_log(log, &Merged::default(), SetKind::Build).unwrap();
        assert!(m.starts_with("user patch /p/variants/selinux/portage/patches/sec-policy/selinux-base/0003-stale.patch does not apply"), "{m}");
    }
}
