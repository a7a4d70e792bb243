//! What a build step is, and where a build lives.
//!
//! A build is a list of [`Stage`] values (`pipeline::plan` makes it, and it is the only
//! list: the build, `keel plan`, the tests and the docs check read it). A stage declares
//! its inputs (added to a fingerprint that also holds every earlier stage's) and its
//! outputs; the runner skips it when the fingerprint is the one its stamp records and its
//! outputs are there as it left them. Package backends (Portage, Debian) implement
//! [`Backend`] to contribute the stages that make the destination root.

pub mod fingerprint;

pub use fingerprint::{Fingerprint, StatCache};
use pkgsets::sets::SetKind;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use variant::Resolved;

/// The error a stage returns: its own crate's error, boxed (shown as it is).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A stage's name. Typed: a stage that does not exist cannot be named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StageId {
    /// The tools the build runs on the host (Portage's BDEPENDs, apt packages).
    HostTools,
    /// Gentoo: the build root every package is compiled in, and the binary packages.
    Sysroot,
    /// The destination root: the packages the image ships, nothing else.
    Destroot,
    /// SELinux: the policy store (modules, booleans) built from the root's policy
    /// packages and the variant's policy layers, apart from the tree it will label.
    PolicyStore,
    /// The tree: a copy of the destination root with the overlay layers on it.
    Overlay,
    /// tmpfiles.d layers and build-time creation, in place on the tree.
    Tmpfiles,
    /// ld.so.cache, `.updated` stamps, the customize hook, in place on the tree.
    Fixups,
    /// SELinux: the policy store and config put in the tree, the tree labelled.
    Label,
    /// The image and its manifest.
    Image,
    /// `[disk]`: the bootable disk (GPT, ESP with systemd-boot and the unified kernel
    /// image, A/B root slots with dm-verity).
    Disk,
}

impl StageId {
    pub fn name(self) -> &'static str {
        match self {
            StageId::HostTools => "host-tools",
            StageId::Sysroot => "sysroot",
            StageId::Destroot => "destroot",
            StageId::PolicyStore => "policy-store",
            StageId::Overlay => "overlay",
            StageId::Tmpfiles => "tmpfiles",
            StageId::Fixups => "fixups",
            StageId::Label => "label",
            StageId::Image => "image",
            StageId::Disk => "disk",
        }
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One step of a build, as a value.
pub trait Stage {
    fn id(&self) -> StageId;
    /// One line saying what it does (shown when it runs, and by `keel plan`).
    fn what(&self) -> String;
    /// Add what it reads to `fp`, which already holds every earlier stage's inputs.
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError>;
    /// What it makes. It is up to date only when each is there with the identity recorded
    /// when it last finished.
    fn outputs(&self) -> Vec<PathBuf>;
    /// It changes, in place, the tree the stage before it made (its output is that same
    /// tree). Such a stage cannot run again on its own: the tree no longer is its input,
    /// so rerunning it reruns the chain from the stage that made the tree.
    fn in_place(&self) -> bool {
        false
    }
    /// Its inputs are what its run read (recorded by the run: the repository files a
    /// Portage resolution read). After it runs, the runner takes its inputs again, so its
    /// stamp holds what this run read, not what the last one did.
    fn inputs_from_run(&self) -> bool {
        false
    }
    /// Do the work; `log` is the stage's log file (its last run only).
    fn run(&self, log: &Path) -> Result<(), BoxError>;
}

/// `cell`'s value, made by `make` the first time it is asked for: what a backend or a
/// stage needs is made when the first stage needs it, so making a plan does no work.
pub fn once<T, E>(
    cell: &std::cell::OnceCell<T>,
    make: impl FnOnce() -> Result<T, E>,
) -> Result<&T, E> {
    if let Some(v) = cell.get() {
        return Ok(v);
    }
    let v = make()?;
    Ok(cell.get_or_init(|| v))
}

/// A build's stages, in order.
pub type Plan<'a> = Vec<Box<dyn Stage + 'a>>;

/// A package backend: the stages that make the destination root
/// ([`Layout::destroot`]), in order. Making them does no work: what a backend needs
/// (its tools, its composed configuration) is made when its first stage needs it.
pub trait Backend<'a> {
    fn stages(self: Rc<Self>) -> Plan<'a>;
}

/// What every stage of one build may read.
#[derive(Debug)]
pub struct Build<'a> {
    pub resolved: &'a Resolved,
    /// The project's root directory (its layers are inside it).
    pub project: &'a Path,
    pub layout: Layout,
    /// The Gentoo repository.
    pub repo: PathBuf,
    /// `SOURCE_DATE_EPOCH`: the build time, and the bound every mtime is clamped to.
    pub source_date_epoch: Option<i64>,
    /// The image's version (`keel build --image-version`): IMAGE_VERSION in its os-release.
    /// None: the build time, for a variant with `[disk]`; nothing otherwise.
    pub image_version: Option<String>,
    /// Where this machine takes packages from and compiles: site settings, not the
    /// variant's.
    pub site: Site,
}

/// Settings of the machine that builds, not of the OS it builds (`keel build --binhost`,
/// the machine's config file; docs/scale-out.md). They change where packages come from,
/// never what they are, so no stage fingerprints them.
#[derive(Debug, Clone, Default)]
pub struct Site {
    pub binhost: Option<Binhost>,
    /// Compile through distcc on these hosts (`DISTCC_HOSTS` syntax: `host[:port][/jobs]`,
    /// space-separated).
    pub distcc: Option<String>,
}

/// A Portage binhost the sysroot stage takes binary packages from.
#[derive(Debug, Clone)]
pub struct Binhost {
    /// Where `Packages` is (`http://host/dir`, `file:///dir`).
    pub url: String,
    /// The public key (any file `gpg --import` reads) its packages must be signed with.
    pub key: PathBuf,
    /// Compile nothing: a package the binhost does not have is an error naming it.
    pub only: bool,
}

impl Build<'_> {
    /// The directory `sub` (say `etc/initramfs-tools`) of each overlay layer that has it, in
    /// layer order, with the name to show for it: configuration that package scripts or the
    /// initramfs generator read while the destination root is made, before the overlay
    /// stage copies the same files again.
    pub fn overlay_dirs(&self, sub: &str) -> Vec<(String, PathBuf)> {
        self.resolved
            .layers_of("overlay")
            .map(|l| (format!("{}/{sub}", l.rel), l.path.join(sub)))
            .filter(|(_, d)| d.is_dir())
            .collect()
    }

    /// A set's atoms, one per line (what a stage's fingerprint records of it).
    pub fn set_text(&self, kind: SetKind) -> String {
        self.resolved
            .set(kind)
            .atoms()
            .map(|a| format!("{a}\n"))
            .collect()
    }

    /// The destroot inputs every backend shares, after its own: the install sets and
    /// SOURCE_DATE_EPOCH (the root's recorded times are normalized with it).
    pub fn destroot_inputs(&self, fp: &mut Fingerprint) {
        fp.str("install.packages", &self.set_text(SetKind::Install))
            .str("installonly.packages", &self.set_text(SetKind::InstallOnly))
            .str(
                "source-date-epoch",
                &format!("{:?}", self.source_date_epoch),
            );
    }
}

/// Where a project's builds live. Each directory defaults to a place under the project's
/// `build/` and can be moved by an environment variable (how `keel vm` puts the work on
/// the VM's local disk and the artifacts on the host; docs/vm.md):
///
/// | field | default | variable |
/// |---|---|---|
/// | `build` | `build/` | `KEEL_BUILD_DIR` |
/// | `cache` | `<build>/cache` | `KEEL_CACHE_DIR` |
/// | `outputs` | `<build>` | `KEEL_OUTPUT_DIR` |
///
/// and for one variant `V`: `work` = `<build>/work/V` (roots, stamps, logs) and `output` =
/// `<outputs>/V` or `--output` (image, manifest, build log).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Tools, work directories, logs.
    pub build: PathBuf,
    /// What outlives a `keel clean --variant`: distfiles, binary packages, `.deb`s.
    pub cache: PathBuf,
    /// Where `<variant>/` goes when `--output` is not given.
    pub outputs: PathBuf,
    pub variant: String,
    /// `build/work/<variant>`.
    pub work: PathBuf,
    /// `build/<variant>` or `--output`.
    pub output: PathBuf,
}

fn env_dir(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl Layout {
    /// The project's `build/` (or `KEEL_BUILD_DIR`).
    pub fn build_dir(project_root: &Path) -> PathBuf {
        env_dir("KEEL_BUILD_DIR").unwrap_or_else(|| project_root.join("build"))
    }

    /// The cache (`KEEL_CACHE_DIR`, else `<build>/cache`).
    pub fn cache_dir(project_root: &Path) -> PathBuf {
        env_dir("KEEL_CACHE_DIR").unwrap_or_else(|| Layout::build_dir(project_root).join("cache"))
    }

    /// Where `<variant>/` goes (`KEEL_OUTPUT_DIR`, else `<build>`).
    pub fn outputs_dir(project_root: &Path) -> PathBuf {
        env_dir("KEEL_OUTPUT_DIR").unwrap_or_else(|| Layout::build_dir(project_root))
    }

    pub fn new(project_root: &Path, variant: &str, output: Option<&Path>) -> Layout {
        let build = Layout::build_dir(project_root);
        let outputs = Layout::outputs_dir(project_root);
        Layout {
            cache: Layout::cache_dir(project_root),
            work: build.join("work").join(variant),
            output: output
                .map(Path::to_owned)
                .unwrap_or_else(|| outputs.join(variant)),
            variant: variant.to_owned(),
            outputs,
            build,
        }
    }

    pub fn stamps(&self) -> PathBuf {
        self.work.join("stamps")
    }
    pub fn logs(&self) -> PathBuf {
        self.work.join("logs")
    }
    pub fn stage_log(&self, stage: StageId) -> PathBuf {
        self.logs().join(format!("{stage}.log"))
    }
    /// The destination root the package stages make.
    pub fn destroot(&self) -> PathBuf {
        self.work.join("destroot")
    }
    /// The tree the tree stages make from the destination root, in place: what the image
    /// holds.
    pub fn tree(&self) -> PathBuf {
        self.work.join("tree")
    }
    /// The policy store the policy-store stage makes (a small root: `etc/selinux`,
    /// `var/lib/selinux`).
    pub fn policy_store(&self) -> PathBuf {
        self.work.join("policy-store")
    }

    // Portage's directories.

    /// `PORTAGE_OVERRIDE_EPREFIX`: global config and BROOT (where BDEPENDs go) on
    /// non-Gentoo hosts.
    pub fn host_prefix(&self) -> PathBuf {
        self.work.join("host")
    }
    /// `PORTAGE_CONFIGROOT` for a root kind (`sysroot`, `destroot`).
    pub fn config_root(&self, kind: &str) -> PathBuf {
        self.work.join("config").join(kind)
    }
    pub fn sysroot(&self) -> PathBuf {
        self.work.join("sysroot")
    }
    /// Shared between variants and builds: distfiles.
    pub fn distdir(&self) -> PathBuf {
        self.cache.join("distfiles")
    }
    /// This variant's binary packages (`pkgdir/`, `host-pkgdir/`): they outlive the work
    /// directory, so a clean rebuild reuses them (Portage's `--usepkg` rules decide).
    pub fn binpkgs(&self) -> PathBuf {
        self.cache.join("binpkgs").join(&self.variant)
    }
    pub fn pkgdir(&self) -> PathBuf {
        self.binpkgs().join("pkgdir")
    }
    /// The user patches the newest binary packages in [`Layout::pkgdir`] were built with:
    /// kept with the packages, so any build sharing the cache (another work directory,
    /// `keel vm`) knows which of them it can take.
    pub fn pkgdir_patches(&self) -> PathBuf {
        self.binpkgs().join("pkgdir.patches")
    }
    /// What a binhost needs beside the packages: the keyring made from the binhost's key
    /// (`gnupg/`, Portage verifies every signed package in [`Layout::pkgdir`] with it) and
    /// the binhost's record of user patches. Kept with the packages it vouches for.
    pub fn binhost_dir(&self) -> PathBuf {
        self.binpkgs().join("binhost")
    }
    pub fn host_pkgdir(&self) -> PathBuf {
        self.binpkgs().join("host-pkgdir")
    }
    pub fn tmpdir(&self) -> PathBuf {
        self.work.join("tmp")
    }
    pub fn bindir(&self) -> PathBuf {
        self.work.join("bin")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_lives_under_build_work_and_build() {
        // The variables are not set in the test environment (cargo does not set them).
        if ["KEEL_BUILD_DIR", "KEEL_CACHE_DIR", "KEEL_OUTPUT_DIR"]
            .iter()
            .any(|k| std::env::var_os(k).is_some())
        {
            return;
        }
        let l = Layout::new(Path::new("/p"), "v", None);
        assert_eq!(l.work, Path::new("/p/build/work/v"));
        assert_eq!(l.output, Path::new("/p/build/v"));
        assert_eq!(l.pkgdir(), Path::new("/p/build/cache/binpkgs/v/pkgdir"));
        assert_eq!(
            l.stage_log(StageId::PolicyStore),
            Path::new("/p/build/work/v/logs/policy-store.log")
        );
        let l = Layout::new(Path::new("/p"), "v", Some(Path::new("/o")));
        assert_eq!(l.output, Path::new("/o"));
    }
}
