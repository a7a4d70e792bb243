//! One build of one variant: a straight list of stages, each a function of declared inputs.
//!
//! Every stage computes the fingerprint of its inputs (file contents, tool identities, the
//! variant settings it reads) and compares it with the stamp the last successful run
//! wrote. Equal: the stage is skipped. Different or missing: the stage runs, and so does
//! every later stage; before it runs, its own stamp and every later stage's are removed,
//! so a build killed at any moment reruns from the interrupted stage.

pub mod fingerprint;
pub mod tree;

use fingerprint::{write_atomic, Fingerprint, StatCache};
use pkgsets::sets::SetKind;
use portage::{Install, Layout, Portage};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use variant::schema::Distribution;
use variant::{Project, Resolved};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Variant(#[from] variant::Error),
    #[error("{0}")]
    Portage(#[from] portage::Error),
    #[error("{0}")]
    Debian(#[from] debian::Error),
    #[error("{0}")]
    Fingerprint(#[from] fingerprint::Error),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stage {stage} failed: {source}")]
    Stage {
        stage: &'static str,
        source: Box<Error>,
    },
    #[error("{0}")]
    Image(#[from] image::Error),
    #[error("{0}")]
    Policy(#[from] policy::Error),
    #[error("{0}")]
    Exec(#[from] exec::Error),
    #[error("{0}")]
    Tree(String),
    #[error("another build of `{variant}` is running (lock: {})", lock.display())]
    Locked { variant: String, lock: PathBuf },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The stages, in order. `policy` runs for SELinux variants only.
pub const STAGES: &[&str] = &[
    "host-tools",
    "sysroot",
    "destroot",
    "overlay",
    "tmpfiles",
    "fixups",
    "policy",
    "image",
];

/// Paths that stay writable at run time (plus the variant's `etc-writable`): tmpfiles
/// entries under them are left to boot; everything else is created at build time.
pub const MUTABLE_PREFIXES: &[&str] = &[
    "/var", "/run", "/tmp", "/home", "/srv", "/root", "/mnt", "/media", "/dev", "/proc", "/sys",
];

pub struct Options {
    /// The Gentoo repository.
    pub repo: PathBuf,
    /// Where the artifacts go (default `build/<variant>`).
    pub output: Option<PathBuf>,
    /// `SOURCE_DATE_EPOCH`: the build time, and the bound every mtime is clamped to.
    pub source_date_epoch: Option<i64>,
    /// What tells whether the build host has SELinux enabled (the real host by default).
    pub selinux_probe: Box<dyn policy::Probe>,
}

/// The project's build directories. Each defaults to a place under the project's `build/`
/// and can be moved by an environment variable (how `keel vm` puts the work on the VM's
/// local disk and the artifacts on the host; docs/vm.md):
///
/// | field | default | variable |
/// |---|---|---|
/// | `build` | `build/` | `KEEL_BUILD_DIR` |
/// | `cache` | `<build>/cache` | `KEEL_CACHE_DIR` |
/// | `outputs` | `<build>` | `KEEL_OUTPUT_DIR` |
#[derive(Debug, Clone)]
pub struct Dirs {
    /// Tools, work directories, logs.
    pub build: PathBuf,
    /// What outlives a `keel clean --variant`: distfiles, binary packages, `.deb`s.
    pub cache: PathBuf,
    /// Where `<variant>/` (image, manifest, log) goes when `--output` is not given.
    pub outputs: PathBuf,
}

impl Dirs {
    pub fn of(project: &Project) -> Dirs {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let build = var("KEEL_BUILD_DIR").unwrap_or_else(|| project.root.join("build"));
        Dirs {
            cache: var("KEEL_CACHE_DIR").unwrap_or_else(|| build.join("cache")),
            outputs: var("KEEL_OUTPUT_DIR").unwrap_or_else(|| build.clone()),
            build,
        }
    }
}

/// Where a variant's build lives.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `build/` of the project: tools, work directories.
    pub build_dir: PathBuf,
    /// `build/cache`: distfiles, binary packages (`binpkgs/<variant>`), `.deb`s.
    pub cache: PathBuf,
    /// `build/work/<variant>`: sysroot, config roots, stamps, logs.
    pub work: PathBuf,
    /// `build/<variant>` or `--output`.
    pub output: PathBuf,
}

impl Paths {
    pub fn new(project: &Project, variant: &str, output: Option<&Path>) -> Paths {
        let dirs = Dirs::of(project);
        Paths {
            work: dirs.build.join("work").join(variant),
            output: output
                .map(Path::to_owned)
                .unwrap_or_else(|| dirs.outputs.join(variant)),
            build_dir: dirs.build,
            cache: dirs.cache,
        }
    }
    pub fn stamps(&self) -> PathBuf {
        self.work.join("stamps")
    }
    pub fn logs(&self) -> PathBuf {
        self.work.join("logs")
    }
    pub fn destroot(&self) -> PathBuf {
        self.work.join("destroot")
    }
    pub fn stage_log(&self, stage: &str) -> PathBuf {
        self.logs().join(format!("{stage}.log"))
    }
    /// The tree a tree stage leaves behind (`build/work/<v>/stage/<stage>`).
    pub fn stage_tree(&self, stage: &str) -> PathBuf {
        self.work.join("stage").join(stage)
    }
}

/// What a build did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Stages that ran (the others were up to date).
    pub ran: Vec<&'static str>,
    pub destroot: PathBuf,
    /// The finished tree (what the image holds).
    pub tree: PathBuf,
    pub image: PathBuf,
    pub manifest: PathBuf,
    /// Per stage: name, seconds, ran?
    pub timings: Vec<(&'static str, f64, bool)>,
}

/// Runs stages against their stamps.
struct Runner<'a> {
    paths: &'a Paths,
    forced: bool,
    outcome: Outcome,
    out: &'a mut dyn Write,
    /// `build.log` in the output directory: the same lines.
    log: Option<fs::File>,
}

impl Runner<'_> {
    fn say(&mut self, line: &str) {
        let _ = writeln!(self.out, "{line}");
        if let Some(f) = &mut self.log {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Run stage `name` unless it is up to date: its inputs' fingerprint is the one its
    /// stamp records, and each of its `outputs` is there with the identity recorded when
    /// it last finished (a missing, moved or replaced output reruns it, and every later
    /// stage).
    fn stage(
        &mut self,
        name: &'static str,
        fp: &Fingerprint,
        what: &str,
        outputs: &[&Path],
        run: impl FnOnce() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let stamps = self.paths.stamps();
        let stamp = stamps.join(name);
        let recorded = stamps.join(format!("{name}.outputs"));
        let hex = fp.hex();
        let mut why = String::new();
        if !self.forced && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == hex) {
            let was = fs::read_to_string(&recorded).unwrap_or_default();
            match outputs_changed(outputs, &was) {
                None => {
                    self.say(&format!("[   up to date] {name}"));
                    self.outcome.timings.push((name, 0.0, false));
                    return Ok(());
                }
                Some(p) => {
                    why = format!(" (its output {} is missing or was replaced)", p.display())
                }
            }
        }
        self.forced = true;
        let Some(pos) = STAGES.iter().position(|s| *s == name) else {
            return Err(Error::Tree(format!(
                "internal: stage `{name}` is not in STAGES"
            )));
        };
        for later in &STAGES[pos..] {
            for f in [
                stamps.join(later),
                stamps.join(format!("{later}.inputs")),
                stamps.join(format!("{later}.outputs")),
            ] {
                match fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&f)(e)),
                    _ => {}
                }
            }
        }
        self.say(&format!("[      running] {name}: {what}{why}"));
        // A stage's log holds its last run only.
        let log = self.paths.stage_log(name);
        match fs::remove_file(&log) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&log)(e)),
            _ => {}
        }
        let t = Instant::now();
        if let Err(e) = run() {
            // The caller prints the error; the build log gets it too.
            if let Some(f) = &mut self.log {
                let _ = writeln!(f, "[       failed] {name}: {e}");
            }
            return Err(Error::Stage {
                stage: name,
                source: Box::new(e),
            });
        }
        let secs = t.elapsed().as_secs_f64();
        let made = identities(outputs).map_err(|missing| Error::Stage {
            stage: name,
            source: Box::new(Error::Tree(format!(
                "it finished without making its output {}",
                missing.display()
            ))),
        })?;
        write_atomic(
            &stamps.join(format!("{name}.inputs")),
            fp.inputs.join("\n").as_bytes(),
        )?;
        write_atomic(&recorded, made.as_bytes())?;
        write_atomic(&stamp, hex.as_bytes())?;
        let log = self.paths.stage_log(name);
        let log = if log.exists() {
            format!(" (log: {})", log.display())
        } else {
            String::new()
        };
        self.say(&format!("[{secs:>11.1}s] {name}: done{log}"));
        self.outcome.ran.push(name);
        self.outcome.timings.push((name, secs, true));
        Ok(())
    }
}

/// What identifies the file at `p`: device and inode, and for a file also size and mtime
/// (`None`: nothing there).
fn identity(p: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(p).ok()?;
    let mut id = format!("{} {}:{}", p.display(), m.dev(), m.ino());
    if !m.is_dir() {
        id += &format!(" {} {}.{}", m.len(), m.mtime(), m.mtime_nsec());
    }
    Some(id)
}

/// One line per output, [`identity`]; `Err` names the first output that is not there.
fn identities(outputs: &[&Path]) -> Result<String, PathBuf> {
    let mut text = String::new();
    for p in outputs {
        text += &identity(p).ok_or_else(|| p.to_path_buf())?;
        text.push('\n');
    }
    Ok(text)
}

/// The first output whose identity is not the one recorded (`was`), if any.
fn outputs_changed<'a>(outputs: &[&'a Path], was: &str) -> Option<&'a Path> {
    let was: Vec<&str> = was.lines().collect();
    outputs
        .iter()
        .enumerate()
        .find(|(i, p)| identity(p).as_deref() != was.get(*i).copied())
        .map(|(_, p)| *p)
}

/// Build a variant: every stage whose inputs changed, and all later ones.
pub fn build(
    project: &Project,
    variant: &str,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<Outcome, Error> {
    let resolved = project.resolve(variant)?;
    for set in resolved.sets.values() {
        for w in &set.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
    }
    if resolved.settings.selinux {
        // Before any work: a host with SELinux enabled would check the target's labels
        // against its own loaded policy.
        policy::host_check(opts.selinux_probe.as_ref(), variant)?;
    }
    let paths = Paths::new(project, variant, opts.output.as_deref());
    fs::create_dir_all(&paths.work).map_err(io(&paths.work))?;
    let _lock = lock(&paths.work.join("lock"), variant)?;

    fs::create_dir_all(&paths.output).map_err(io(&paths.output))?;
    let build_log = paths.output.join("build.log");
    let mut runner = Runner {
        paths: &paths,
        forced: false,
        outcome: Outcome::default(),
        out,
        log: Some(fs::File::create(&build_log).map_err(io(&build_log))?),
    };

    // The package stages: they leave the destination root in `paths.destroot()`.
    let mut fp = Fingerprint::new();
    match resolved.settings.distribution {
        Distribution::Gentoo => {
            portage_stages(project, &resolved, opts, &paths, &mut runner, &mut fp)?
        }
        Distribution::Debian => debian_stages(&resolved, opts, &paths, &mut runner, &mut fp)?,
    }
    let dest = paths.destroot();

    // The tree stages: Keel's own code and the variant's layers and hooks.
    let build_time = opts.source_date_epoch.unwrap_or_else(now);
    fp.str("keel", &keel_identity()?);

    // overlay: every overlay layer, file mtimes included (they are copied).
    for l in resolved.layers_of("overlay") {
        fp.tree_with_mtimes(&l.rel, &l.path)?;
    }
    let overlay_tree = paths.stage_tree("overlay");
    let log = paths.stage_log("overlay");
    runner.stage(
        "overlay",
        &fp,
        &format!("{} overlay layers", resolved.layers_of("overlay").count()),
        &[&overlay_tree],
        || {
            tree::fresh_copy(&dest, &overlay_tree, &log, |t| {
                tree::overlay(&resolved, t, build_time, &log)
            })
        },
    )?;

    // tmpfiles: every tmpfiles.d layer, the mutable prefixes.
    for l in resolved.layers_of("tmpfiles.d") {
        fp.tree(&l.rel, &l.path, None)?;
    }
    let prefixes = tree::mutable_prefixes(&resolved);
    fp.str("mutable-prefixes", &prefixes.join("\n"));
    let tmpfiles_tree = paths.stage_tree("tmpfiles");
    let log = paths.stage_log("tmpfiles");
    runner.stage(
        "tmpfiles",
        &fp,
        "tmpfiles.d edits, build-time creation",
        &[&tmpfiles_tree],
        || {
            tree::fresh_copy(&overlay_tree, &tmpfiles_tree, &log, |t| {
                tree::tmpfiles(&project.root, &resolved, t, &prefixes, &log)
            })
        },
    )?;

    // fixups: the customize hook, the ldconfig that runs.
    if let Some(h) = &resolved.settings.customize_hook {
        fp.file("customize-hook", h)?;
    }
    let selinux = resolved.settings.selinux;
    let fixups_tree = paths.stage_tree("fixups");
    let log = paths.stage_log("fixups");
    let clamp = opts.source_date_epoch;
    runner.stage(
        "fixups",
        &fp,
        "ld.so.cache, .updated stamps, customize hook",
        &[&fixups_tree],
        || {
            tree::fresh_copy(&tmpfiles_tree, &fixups_tree, &log, |t| {
                tree::fixups(&resolved, &paths, t, &log)?;
                if !selinux {
                    tree::finalize(t, build_time, clamp, &log)?;
                }
                Ok(())
            })
        },
    )?;
    let mut final_tree = fixups_tree.clone();

    // policy (SELinux variants): the local modules and booleans of every policy layer, the
    // SELinux settings; labels last, on the finished tree.
    if selinux {
        for l in resolved.layers_of("policy") {
            fp.tree(&l.rel, &l.path, None)?;
        }
        let s = &resolved.settings;
        fp.str("selinux", &format!("{} {}", s.selinux_type, s.selinux_mode));
        let policy_tree = paths.stage_tree("policy");
        let log = paths.stage_log("policy");
        let layers: Vec<PathBuf> = resolved
            .layers_of("policy")
            .map(|l| l.path.clone())
            .collect();
        let mode = policy::Mode::parse(&s.selinux_mode.to_string())
            .ok_or_else(|| Error::Tree(format!("unknown SELinux mode `{}`", s.selinux_mode)))?;
        runner.stage(
            "policy",
            &fp,
            &format!("{} policy: modules, config, labels", s.selinux_type),
            &[&policy_tree],
            || {
                tree::fresh_copy(&fixups_tree, &policy_tree, &log, |t| {
                    let installed =
                        policy::install_modules(t, &s.selinux_type, &project.root, &layers, &log)?;
                    tree::append_log(&log, &format!("{installed:?}\n"))?;
                    policy::write_config(t, &s.selinux_type, mode)?;
                    // Labels change no mtime: finalize first, so the labels are the last change.
                    tree::finalize(t, build_time, clamp, &log)?;
                    let report = policy::label(t, &s.selinux_type, &log)?;
                    tree::append_log(
                        &log,
                        &format!(
                            "labelled {} paths ({} unchanged); no spec for {:?}\n",
                            report.set, report.unchanged, report.unlabelled
                        ),
                    )?;
                    Ok(())
                })
            },
        )?;
        final_tree = policy_tree;
    }

    // image: format, pseudo files, the tools' versions, the post-build hook.
    let format = match resolved.settings.image_format {
        variant::schema::ImageFormat::Squashfs => image::make::Format::Squashfs,
        variant::schema::ImageFormat::Erofs => image::make::Format::Erofs,
    };
    fp.str("format", format.extension())
        .str("mkfs", &mkfs_version(format));
    if let Some(pf) = &resolved.settings.pseudo_files {
        fp.file("pseudo-files", pf)?;
    }
    if let Some(h) = &resolved.settings.post_build_hook {
        fp.file("post-build-hook", h)?;
    }
    let img = paths
        .output
        .join(format!("{variant}.{}", format.extension()));
    let manifest = paths.output.join("manifest.txt");
    let log = paths.stage_log("image");
    runner.stage(
        "image",
        &fp,
        &format!("{} of {}", format.extension(), final_tree.display()),
        &[&img, &manifest],
        || {
            let _ = fs::remove_file(&manifest);
            let spec = image::make::Spec {
                tree: final_tree.clone(),
                out: img.clone(),
                format,
                epoch: build_time,
                pseudo_files: resolved.settings.pseudo_files.clone(),
                log: log.clone(),
            };
            image::make::make(&spec)?;
            if !resolved.settings.python {
                // Checked on the image itself, read back with the real tools.
                policy::find_python_in_image(&img, &log)?;
            }
            write_atomic(&manifest, image::manifest::of_tree(&final_tree)?.as_bytes())?;
            if let Some(hook) = &resolved.settings.post_build_hook {
                image::fixups::run_hook(
                    hook,
                    &[
                        ("KEEL_IMAGE", &img),
                        ("KEEL_ROOT", &final_tree),
                        ("KEEL_OUTPUT", &paths.output),
                    ],
                    hook.parent().unwrap_or(&paths.output),
                    &log,
                )?;
            }
            Ok(())
        },
    )?;

    let mut outcome = runner.outcome;
    outcome.destroot = dest;
    outcome.tree = final_tree;
    outcome.image = img;
    outcome.manifest = manifest;
    Ok(outcome)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What identifies Keel's own code: the hash of the running executable. A new Keel reruns
/// the stages Keel implements; Portage's stages do not depend on it.
fn keel_identity() -> Result<String, Error> {
    let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    let mut fp = Fingerprint::new();
    fp.file("exe", &exe)?;
    Ok(fp.hex())
}

fn mkfs_version(format: image::make::Format) -> String {
    let cmd = match format {
        image::make::Format::Squashfs => exec::Cmd::new("mksquashfs").arg("-version"),
        image::make::Format::Erofs => exec::Cmd::new("mkfs.erofs").arg("--help"),
    };
    cmd.ok_codes(&[0, 1])
        .output()
        .map(|o| o.stdout.lines().next().unwrap_or("").to_owned())
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

/// The Portage backend's stages: host-tools, sysroot, destroot.
fn portage_stages(
    project: &Project,
    resolved: &Resolved,
    opts: &Options,
    paths: &Paths,
    runner: &mut Runner,
    fp: &mut Fingerprint,
) -> Result<(), Error> {
    let install = Install::detect(&paths.build_dir)?;
    let layout = Layout {
        work: paths.work.clone(),
        distdir: paths.cache.join("distfiles"),
        binpkgs: paths.cache.join("binpkgs").join(&resolved.name),
    };
    let portage = Portage::new(install, opts.repo.clone(), layout)?;
    let composed = portage.compose(&project.root, &resolved)?;
    if resolved.settings.selinux && Path::new(policy::POLICY_SRC).exists() {
        // The refpolicy sources the sec-policy packages build from (fetch-restricted).
        policy::seed_distfiles(&portage.layout.distdir)?;
    }

    // host-tools: the host set, the host configuration, which Portage.
    fp.str("portage", &portage.install.identity())
        .str("host-config", &composed.host.render())
        .str(
            "host-tools.packages",
            &set_text(resolved, SetKind::HostTools),
        );
    runner.stage("host-tools", &fp, "host tools", &[], || {
        Ok(portage.host_tools(resolved, &paths.stage_log("host-tools"))?)
    })?;

    // sysroot: the repository, the composed target configuration, the build set.
    let mut cache = StatCache::load(&paths.stamps().join("repo.statcache"));
    fp.str("sysroot-config", &composed.sysroot.render())
        .str("kernel-config", &composed.kernel.render())
        .str("build.packages", &set_text(resolved, SetKind::Build))
        .tree("repo", &opts.repo, Some(&mut cache))?;
    cache.save(&paths.stamps().join("repo.statcache"))?;
    let n = resolved.set(SetKind::Build).entries.len();
    let sysroot = portage.layout.sysroot();
    runner.stage(
        "sysroot",
        &fp,
        &format!("emerge @keel-build ({n} atoms) into {}", sysroot.display()),
        &[&sysroot],
        || {
            // User patches: what the sysroot's packages were installed with (this work
            // directory's record) and what the newest binary packages were built with (the
            // cache's record, shared by every build that shares the cache).
            let installed = paths.stamps().join("sysroot.patches");
            let packaged = portage.layout.pkgdir_patches();
            let now = portage::user_patches(&composed.sysroot);
            let mut changes = portage::PatchChanges::new(
                &read_patch_record(&installed),
                &read_patch_record(&packaged),
                &now,
            );
            // A run that did not finish (killed) may have left a package that Portage
            // counts as installed but whose pkg_postinst was cut short: the packages merged
            // since the first unfinished run began are installed again.
            let sysroot = portage.layout.sysroot();
            let running = paths.stamps().join("sysroot.running");
            match fs::metadata(&running).and_then(|m| m.modified()) {
                Ok(since) => changes.reinstall_too(portage::merged_since(&sysroot, since)?),
                Err(_) => write_atomic(&running, b"")?,
            }
            portage.sysroot(resolved, &changes, &paths.stage_log("sysroot"))?;
            // Only packages now in the sysroot: a patched package outside the build set
            // has no package built with these patches.
            let have = portage::installed(&sysroot)?;
            let text: String = now
                .iter()
                .filter(|(k, _)| have.contains(*k))
                .map(|(k, v)| format!("{k} {v}\n"))
                .collect();
            write_atomic(&packaged, text.as_bytes())?;
            write_atomic(&installed, text.as_bytes())?;
            fs::remove_file(&running).map_err(|source| Error::Io {
                path: running.clone(),
                source,
            })?;
            Ok(())
        },
    )?;

    // destroot: the install sets and the destroot configuration (python setting included).
    let dcfg = portage.destroot_config(resolved, &composed.sysroot)?;
    fp.str("destroot-config", &dcfg.render());
    destroot_inputs(fp, resolved, opts);
    let dest = paths.destroot();
    runner.stage(
        "destroot",
        &fp,
        &format!(
            "emerge @keel-install @keel-installonly into {}",
            dest.display()
        ),
        &[&dest],
        || {
            fresh_root(
                resolved,
                &portage,
                &dcfg,
                &dest,
                &paths.stage_log("destroot"),
                opts.source_date_epoch,
            )
        },
    )?;

    Ok(())
}

/// The Debian backend's stages (docs/debian.md): host-tools (apt), destroot (mmdebstrap).
/// There is no sysroot: nothing is built from source.
fn debian_stages(
    resolved: &Resolved,
    opts: &Options,
    paths: &Paths,
    runner: &mut Runner,
    fp: &mut Fingerprint,
) -> Result<(), Error> {
    debian::check_sets(resolved)?;
    let deb = debian::Debian::new(&paths.cache, resolved)?;
    fp.str("debian", &deb.identity()).str(
        "host-tools.packages",
        &set_text(resolved, SetKind::HostTools),
    );
    runner.stage("host-tools", fp, "host tools (apt)", &[], || {
        Ok(deb.host_tools(resolved, &paths.stage_log("host-tools"))?)
    })?;
    // The initramfs configuration of the overlay layers is read while packages install.
    let mut initramfs = Vec::new();
    for l in resolved.layers_of("overlay") {
        let d = l.path.join("etc/initramfs-tools");
        if d.is_dir() {
            fp.tree(&format!("{}/etc/initramfs-tools", l.rel), &d, None)?;
            initramfs.push(d);
        }
    }
    fp.str("debian-destroot", &deb.destroot_inputs(resolved));
    destroot_inputs(fp, resolved, opts);
    let dest = paths.destroot();
    runner.stage(
        "destroot",
        fp,
        &format!("mmdebstrap {} into {}", deb.suite, dest.display()),
        &[&dest],
        || {
            let log = paths.stage_log("destroot");
            Ok(deb.destroot(resolved, &initramfs, &dest, &log, opts.source_date_epoch)?)
        },
    )
}

/// Build the destination root in `<dest>.new` and move it into place only when complete,
/// so no root that looks complete is ever left by a failed or killed build.
fn fresh_root(
    resolved: &Resolved,
    portage: &Portage,
    cfg: &portage::config::Tree,
    dest: &Path,
    log: &Path,
    source_date_epoch: Option<i64>,
) -> Result<(), Error> {
    let partial = dest.with_extension("new");
    for d in [dest, partial.as_path()] {
        if d.symlink_metadata().is_ok() {
            fs::remove_dir_all(d).map_err(io(d))?;
        }
    }
    portage.destroot(resolved, cfg, &partial, log)?;
    portage::vdb::normalize(&partial, source_date_epoch)?;
    fs::rename(&partial, dest).map_err(io(dest))
}

/// The destroot inputs every backend shares, after its own: the install sets and
/// SOURCE_DATE_EPOCH (the root's recorded times are normalized with it).
fn destroot_inputs(fp: &mut Fingerprint, resolved: &Resolved, opts: &Options) {
    fp.str("install.packages", &set_text(resolved, SetKind::Install))
        .str(
            "installonly.packages",
            &set_text(resolved, SetKind::InstallOnly),
        )
        .str(
            "source-date-epoch",
            &format!("{:?}", opts.source_date_epoch),
        );
}

/// A record of user patches (`cat/pkg digest` lines); missing means empty.
fn read_patch_record(path: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

fn set_text(resolved: &Resolved, kind: SetKind) -> String {
    resolved
        .set(kind)
        .atoms()
        .map(|a| format!("{a}\n"))
        .collect()
}

/// An exclusive lock on the variant's work directory, released when dropped.
fn lock(path: &Path, variant: &str) -> Result<fs::File, Error> {
    rootdir::try_lock(path)
        .map_err(io(path))?
        .ok_or_else(|| Error::Locked {
            variant: variant.to_owned(),
            lock: path.to_owned(),
        })
}
