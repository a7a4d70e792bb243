//! One build of one variant: a straight list of stages, each a function of declared inputs.
//!
//! Every stage computes the fingerprint of its inputs (file contents, tool identities, the
//! variant settings it reads) and compares it with the stamp the last successful run
//! wrote. Equal: the stage is skipped. Different or missing: the stage runs, and so does
//! every later stage; before it runs, its own stamp and every later stage's are removed,
//! so a build killed at any moment reruns from the interrupted stage.

pub mod fingerprint;

use fingerprint::{write_atomic, Fingerprint, StatCache};
use pkgsets::sets::SetKind;
use portage::{Install, Layout, Portage};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use variant::{Project, Resolved};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Variant(#[from] variant::Error),
    #[error("{0}")]
    Portage(#[from] portage::Error),
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
    #[error("another build of `{variant}` is running (lock: {})", lock.display())]
    Locked { variant: String, lock: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

/// The stages, in order.
pub const STAGES: &[&str] = &["host-tools", "sysroot", "destroot"];

#[derive(Debug, Clone)]
pub struct Options {
    /// The Gentoo repository.
    pub repo: PathBuf,
    /// Where the artifacts go (default `build/<variant>`).
    pub output: Option<PathBuf>,
}

/// Where a variant's build lives.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `build/` of the project: tools, caches, work directories.
    pub build_dir: PathBuf,
    /// `build/work/<variant>`: sysroot, binary packages, config roots, stamps, logs.
    pub work: PathBuf,
    /// `build/<variant>` or `--output`.
    pub output: PathBuf,
}

impl Paths {
    pub fn new(project: &Project, variant: &str, output: Option<&Path>) -> Paths {
        let build_dir = project.root.join("build");
        Paths {
            work: build_dir.join("work").join(variant),
            output: output
                .map(Path::to_owned)
                .unwrap_or_else(|| build_dir.join(variant)),
            build_dir,
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
}

/// What a build did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Stages that ran (the others were up to date).
    pub ran: Vec<&'static str>,
    pub destroot: PathBuf,
    /// Per stage: name, seconds, ran?
    pub timings: Vec<(&'static str, f64, bool)>,
}

/// Runs stages against their stamps.
struct Runner<'a> {
    paths: &'a Paths,
    forced: bool,
    outcome: Outcome,
    out: &'a mut dyn Write,
}

impl Runner<'_> {
    fn stage(
        &mut self,
        name: &'static str,
        fp: &Fingerprint,
        what: &str,
        run: impl FnOnce() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let stamps = self.paths.stamps();
        let stamp = stamps.join(name);
        let hex = fp.hex();
        if !self.forced && fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == hex) {
            let _ = writeln!(self.out, "[   up to date] {name}");
            self.outcome.timings.push((name, 0.0, false));
            return Ok(());
        }
        self.forced = true;
        let pos = STAGES.iter().position(|s| *s == name).unwrap_or(0);
        for later in &STAGES[pos..] {
            for f in [stamps.join(later), stamps.join(format!("{later}.inputs"))] {
                match fs::remove_file(&f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&f)(e)),
                    _ => {}
                }
            }
        }
        let _ = writeln!(self.out, "[      running] {name}: {what}");
        let t = Instant::now();
        run().map_err(|e| Error::Stage {
            stage: name,
            source: Box::new(e),
        })?;
        let secs = t.elapsed().as_secs_f64();
        write_atomic(
            &stamps.join(format!("{name}.inputs")),
            fp.inputs.join("\n").as_bytes(),
        )?;
        write_atomic(&stamp, hex.as_bytes())?;
        let _ = writeln!(
            self.out,
            "[{secs:>11.1}s] {name}: done (log: {})",
            self.paths.stage_log(name).display()
        );
        self.outcome.ran.push(name);
        self.outcome.timings.push((name, secs, true));
        Ok(())
    }
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
    let paths = Paths::new(project, variant, opts.output.as_deref());
    fs::create_dir_all(&paths.work).map_err(io(&paths.work))?;
    let _lock = lock(&paths.work.join("lock"), variant)?;

    let install = Install::detect(&paths.build_dir)?;
    let layout = Layout {
        work: paths.work.clone(),
        distdir: paths.build_dir.join("cache/distfiles"),
    };
    let portage = Portage::new(install, opts.repo.clone(), layout)?;
    let composed = portage.compose(&project.root, &resolved)?;

    let mut runner = Runner {
        paths: &paths,
        forced: false,
        outcome: Outcome::default(),
        out,
    };

    // host-tools: the host set, the host configuration, which Portage.
    let mut fp = Fingerprint::new();
    fp.str("portage", &portage.install.identity())
        .str("host-config", &composed.host.render())
        .str(
            "host-tools.packages",
            &set_text(&resolved, SetKind::HostTools),
        );
    runner.stage("host-tools", &fp, "host tools", || {
        Ok(portage.host_tools(&resolved, &paths.stage_log("host-tools"))?)
    })?;

    // sysroot: the repository, the composed target configuration, the build set.
    let mut cache = StatCache::load(&paths.stamps().join("repo.statcache"));
    fp.str("sysroot-config", &composed.sysroot.render())
        .str("build.packages", &set_text(&resolved, SetKind::Build))
        .tree("repo", &opts.repo, Some(&mut cache))?;
    cache.save(&paths.stamps().join("repo.statcache"))?;
    let n = resolved.set(SetKind::Build).entries.len();
    runner.stage(
        "sysroot",
        &fp,
        &format!(
            "emerge @keel-build ({n} atoms) into {}",
            portage.layout.sysroot().display()
        ),
        || Ok(portage.sysroot(&resolved, &paths.stage_log("sysroot"))?),
    )?;

    // destroot: the install sets and the destroot configuration (python setting included).
    let dcfg = portage.destroot_config(&resolved)?;
    fp.str("destroot-config", &dcfg.render())
        .str("install.packages", &set_text(&resolved, SetKind::Install))
        .str(
            "installonly.packages",
            &set_text(&resolved, SetKind::InstallOnly),
        );
    let dest = paths.destroot();
    runner.stage(
        "destroot",
        &fp,
        &format!(
            "emerge @keel-install @keel-installonly into {}",
            dest.display()
        ),
        || {
            fresh_root(
                &resolved,
                &portage,
                &dcfg,
                &dest,
                &paths.stage_log("destroot"),
            )
        },
    )?;
    let mut outcome = runner.outcome;
    outcome.destroot = dest;
    Ok(outcome)
}

/// Build the destination root in `<dest>.new` and move it into place only when complete,
/// so no root that looks complete is ever left by a failed or killed build.
fn fresh_root(
    resolved: &Resolved,
    portage: &Portage,
    cfg: &portage::config::Tree,
    dest: &Path,
    log: &Path,
) -> Result<(), Error> {
    let partial = dest.with_extension("new");
    for d in [dest, partial.as_path()] {
        if d.symlink_metadata().is_ok() {
            fs::remove_dir_all(d).map_err(io(d))?;
        }
    }
    portage.destroot(resolved, cfg, &partial, log)?;
    fs::rename(&partial, dest).map_err(io(dest))
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
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(_) => Err(Error::Locked {
            variant: variant.to_owned(),
            lock: path.to_owned(),
        }),
    }
}
