//! One build of one variant: the plan (a list of stage values) and the runner.
//!
//! [`plan`] is the only list of stages: the build, `keel plan`, the tests and the docs
//! check read it. Every stage adds the fingerprint of its inputs (file contents, tool
//! identities, the variant settings it reads) to a running fingerprint, and the runner
//! compares it with the stamp the stage's last successful run wrote, and the stage's
//! outputs with the identity they had then. Equal: the stage is skipped. Different or
//! missing: the stage runs, and so does every later stage; before it runs, its own stamp
//! and every later stage's are removed, so a build killed at any moment reruns from the
//! interrupted stage. A stage that works in place on the tree ([`Stage::in_place`]) reruns
//! from the stage that made the tree, and while it runs the stamps of that chain are
//! away too.

pub mod history;
pub mod tree;
mod watch;

pub use watch::Show;

use stage::fingerprint::write_atomic;
pub use stage::{fingerprint, Binhost, Build, Layout, Plan, Site, Stage, StageId};
use stage::{Backend, Fingerprint};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use variant::schema::Distribution;
use variant::{Project, Resolved};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Variant(#[from] variant::Error),
    #[error(transparent)]
    Portage(#[from] portage::Error),
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    #[error("stage {stage} failed: {cause}")]
    Stage {
        stage: StageId,
        cause: stage::BoxError,
    },
    #[error(transparent)]
    Image(#[from] image::Error),
    #[error(transparent)]
    Policy(#[from] policy::Error),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error("{0}")]
    Tree(String),
    #[error("another build of `{variant}` is running (lock: {})", lock.display())]
    Locked { variant: String, lock: PathBuf },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let at = rootdir::PathError::at(path);
    move |e| Error::Io(at(e))
}

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
    /// `keel build --image-version`.
    pub image_version: Option<String>,
    /// What tells whether the build host has SELinux enabled (the real host by default).
    pub selinux_probe: Box<dyn policy::Probe>,
    /// Say which stages would run and why, and run none (`keel build --dry-run`).
    pub dry_run: bool,
    /// What a running stage shows on stderr ([`Show`]).
    pub show: Show,
    /// The machine's settings: a binhost (docs/scale-out.md).
    pub site: stage::Site,
}

/// The stages of a build of `b.resolved`, in order: the package backend's (they make the
/// destination root), then Keel's tree stages and the image. Making the plan does no work.
pub fn plan<'a>(b: &'a Build<'a>) -> Plan<'a> {
    let mut plan = match b.resolved.settings.distribution {
        Distribution::Gentoo => portage::stages::Gentoo::new(b).stages(),
        Distribution::Debian => debian::stages::Apt::new(b).stages(),
    };
    plan.extend(tree::stages(b));
    plan
}

/// The plan's stage ids, in order.
pub fn stage_ids(plan: &Plan) -> Vec<StageId> {
    plan.iter().map(|s| s.id()).collect()
}

/// What a build did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Stages that ran (the others were up to date).
    pub ran: Vec<StageId>,
    pub destroot: PathBuf,
    /// The finished tree (what the image holds).
    pub tree: PathBuf,
    pub image: PathBuf,
    pub manifest: PathBuf,
    /// Per stage: id, seconds, ran?
    pub timings: Vec<(StageId, f64, bool)>,
    /// `build.log` beside the image, and the stages' logs.
    pub build_log: PathBuf,
    pub logs: PathBuf,
    /// `record.json` beside the image, and what it holds.
    pub record: PathBuf,
    pub record_data: Option<record::Record>,
    /// What changed since the previous build kept in the history, in one paragraph
    /// (`None`: no earlier build is kept).
    pub since_previous: Option<String>,
}

/// Runs a plan's stages against their stamps.
struct Runner<'a> {
    layout: &'a Layout,
    /// Say what would run, and run nothing.
    dry_run: bool,
    out: &'a mut dyn Write,
    /// `build.log` in the output directory: the same lines.
    log: Option<fs::File>,
    show: Show,
}

/// The SGR colour of a stage line's tag.
#[derive(Clone, Copy)]
enum Tone {
    Dim,
    Busy,
    Good,
    Bad,
}

/// A stage's stamp files: the fingerprint, the inputs that made it (for "why did it
/// rerun"), and its outputs' identities.
fn stamp_files(stamps: &Path, id: StageId) -> [PathBuf; 3] {
    [
        stamps.join(id.name()),
        stamps.join(format!("{id}.inputs")),
        stamps.join(format!("{id}.outputs")),
    ]
}

fn remove_if_there(f: &Path) -> Result<(), Error> {
    match fs::remove_file(f) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(f)(e)),
        _ => Ok(()),
    }
}

impl Runner<'_> {
    /// A stage line, `[tag] rest`: on `out` (coloured on a terminal that wants colour,
    /// nothing when quiet) and in `build.log`.
    fn say(&mut self, tag: &str, tone: Tone, rest: &str) {
        let line = format!("[{tag:>13}] {rest}");
        match self.show {
            Show::Quiet => {}
            Show::Terminal { color: true, .. } => {
                let sgr = match tone {
                    Tone::Dim => "2",
                    Tone::Busy => "36",
                    Tone::Good => "32",
                    Tone::Bad => "31",
                };
                let _ = writeln!(self.out, "\x1b[{sgr}m[{tag:>13}]\x1b[0m {rest}");
            }
            _ => {
                let _ = writeln!(self.out, "{line}");
            }
        }
        if let Some(f) = &mut self.log {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Why stage `s` must run (`None`: it is up to date): its fingerprint is not the one
    /// its stamp records, or one of its outputs is not there with the identity recorded
    /// when it last finished.
    fn stale(&self, s: &dyn Stage, fp: &Fingerprint) -> Option<String> {
        let [stamp, inputs, recorded] = stamp_files(&self.layout.stamps(), s.id());
        if !fs::read_to_string(&stamp).is_ok_and(|t| t.trim() == fp.hex()) {
            if !stamp.exists() {
                return Some(String::new());
            }
            let was = fs::read_to_string(&inputs).unwrap_or_default();
            return Some(changed_inputs(&was, &fp.inputs));
        }
        let was = fs::read_to_string(&recorded).unwrap_or_default();
        let outputs = s.outputs();
        let refs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
        outputs_changed(&refs, &was)
            .map(|p| format!(" (its output {} is missing or was replaced)", p.display()))
    }

    /// Run every stage of `plan` that is not up to date, and every stage after the first
    /// that ran.
    fn run(&mut self, plan: &Plan) -> Result<Outcome, Error> {
        let mut outcome = Outcome::default();
        let mut fp = Fingerprint::new();
        // Per stage, once computed: the running fingerprint before its inputs, and after.
        let mut prints: Vec<(Fingerprint, Fingerprint)> = Vec::new();
        let mut forced = false;
        let mut i = 0;
        while i < plan.len() {
            let s = plan[i].as_ref();
            let id = s.id();
            if i == prints.len() {
                let before = fp.clone();
                s.inputs(&mut fp).map_err(|source| Error::Stage {
                    stage: id,
                    cause: source,
                })?;
                prints.push((before, fp.clone()));
            }
            let mut why = String::new();
            if !forced {
                match self.stale(s, &prints[i].1) {
                    None => {
                        self.say("up to date", Tone::Dim, id.name());
                        outcome.timings.push((id, 0.0, false));
                        i += 1;
                        continue;
                    }
                    Some(w) => why = w,
                }
                let start = chain_start(plan, i);
                if start < i {
                    why = format!(
                        "{why} (it works in place on the tree {} made: from there)",
                        plan[start].id()
                    );
                }
                if self.dry_run {
                    // What a build would run: from the start of the chain on.
                    self.say("would run", Tone::Busy, &format!("{id}{why}"));
                    for (k, other) in plan.iter().enumerate().skip(start) {
                        if k != i {
                            self.say("would run", Tone::Busy, other.id().name());
                        }
                    }
                    outcome.ran = plan[start..].iter().map(|s| s.id()).collect();
                    return Ok(outcome);
                }
                if start < i {
                    self.say("changed", Tone::Busy, &format!("{id}{why}"));
                    outcome.timings.truncate(start);
                    i = start;
                    forced = true;
                    continue;
                }
            }
            forced = true;
            let after = self.run_one(plan, i, &prints[i], &why, &mut outcome)?;
            // What later stages add to: this stage's inputs as its stamp records them.
            fp = after.clone();
            prints[i].1 = after;
            i += 1;
        }
        Ok(outcome)
    }

    /// Run stage `i`: its stamps and every later stage's are removed first (and, for a
    /// stage that works in place, those of the stages whose tree it changes, put back when
    /// it finishes).
    fn run_one(
        &mut self,
        plan: &Plan,
        i: usize,
        (before, after): &(Fingerprint, Fingerprint),
        why: &str,
        outcome: &mut Outcome,
    ) -> Result<Fingerprint, Error> {
        let s = plan[i].as_ref();
        let id = s.id();
        let stamps = self.layout.stamps();
        fs::create_dir_all(&stamps).map_err(io(&stamps))?;
        let mut put_back = Vec::new();
        for earlier in &plan[chain_start(plan, i)..i] {
            for f in stamp_files(&stamps, earlier.id()) {
                if let Ok(text) = fs::read(&f) {
                    put_back.push((f.clone(), text));
                }
                remove_if_there(&f)?;
            }
        }
        for later in &plan[i..] {
            for f in stamp_files(&stamps, later.id()) {
                remove_if_there(&f)?;
            }
        }
        self.say("running", Tone::Busy, &format!("{id}: {}{why}", s.what()));
        // A stage's log holds its last run only.
        let log = self.layout.stage_log(id);
        remove_if_there(&log)?;
        if let Some(parent) = log.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let times = watch::times_file(&self.layout.cache, &self.layout.variant, id);
        let watch = watch::start(&log, id, self.show, &times);
        let t = Instant::now();
        let ran = s.run(&log);
        let tracker = watch.and_then(watch::Watch::finish);
        if let Err(source) = ran {
            // The caller prints the error; the build log gets it too.
            self.say(
                "failed",
                Tone::Bad,
                &format!("{id} (log: {})", log.display()),
            );
            if let Some(f) = &mut self.log {
                let _ = writeln!(f, "[{:>13}] {id}: {source}", "failed");
            }
            return Err(Error::Stage {
                stage: id,
                cause: source,
            });
        }
        let secs = t.elapsed().as_secs_f64();
        if let Some(history) = tracker.map(|t| t.history()) {
            if !history.packages.is_empty() {
                if let Some(dir) = times.parent() {
                    fs::create_dir_all(dir).map_err(io(dir))?;
                }
                write_atomic(&times, history.render().as_bytes())?;
            }
        }
        let outputs = s.outputs();
        let refs: Vec<&Path> = outputs.iter().map(PathBuf::as_path).collect();
        let made = identities(&refs).map_err(|missing| Error::Stage {
            stage: id,
            cause: format!(
                "it finished without making its output {}",
                missing.display()
            )
            .into(),
        })?;
        // A stage whose inputs are what its run read: its stamp records what this run read.
        let after = if s.inputs_from_run() {
            let mut again = before.clone();
            s.inputs(&mut again).map_err(|source| Error::Stage {
                stage: id,
                cause: source,
            })?;
            again
        } else {
            after.clone()
        };
        let [stamp, inputs_file, recorded] = stamp_files(&stamps, id);
        write_atomic(&inputs_file, after.inputs.join("\n").as_bytes())?;
        write_atomic(&recorded, made.as_bytes())?;
        for (f, text) in &put_back {
            write_atomic(f, text)?;
        }
        write_atomic(&stamp, after.hex().as_bytes())?;
        let log = if log.exists() {
            format!(" (log: {})", log.display())
        } else {
            String::new()
        };
        self.say(
            &format!("{secs:.1}s"),
            Tone::Good,
            &format!("{id}: done{log}"),
        );
        outcome.ran.push(id);
        outcome.timings.push((id, secs, true));
        Ok(after)
    }
}

/// What changed between the inputs a stamp was made from (`was`, `label digest` lines) and
/// `now`: ` (changed: a, b, c and 4 more)`, or nothing when the lists are equal.
fn changed_inputs(was: &str, now: &[String]) -> String {
    use std::collections::BTreeMap;
    let split = |l: &str| -> (String, String) {
        let (label, digest) = l.rsplit_once(' ').unwrap_or((l, ""));
        (label.to_owned(), digest.to_owned())
    };
    let was: BTreeMap<String, String> = was.lines().map(split).collect();
    let now: BTreeMap<String, String> = now.iter().map(|l| split(l)).collect();
    let mut changed: Vec<&str> = now
        .iter()
        .filter(|(k, v)| was.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    changed.extend(
        was.keys()
            .filter(|k| !now.contains_key(*k))
            .map(|k| k.as_str()),
    );
    match changed.len() {
        0 => String::new(),
        n if n <= 3 => format!(" (changed: {})", changed.join(", ")),
        n => format!(" (changed: {} and {} more)", changed[..3].join(", "), n - 3),
    }
}

/// The first stage of the chain stage `i` belongs to: the stage that made the tree that
/// `i` and the in-place stages before it change (`i` itself when it is not in place).
fn chain_start(plan: &Plan, i: usize) -> usize {
    let mut start = i;
    while start > 0 && plan[start].in_place() {
        start -= 1;
    }
    start
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
    let b = Build {
        resolved: &resolved,
        project: &project.root,
        layout: Layout::new(&project.root, variant, opts.output.as_deref()),
        repo: opts.repo.clone(),
        source_date_epoch: opts.source_date_epoch,
        image_version: opts.image_version.clone(),
        site: opts.site.clone(),
    };
    let layout = &b.layout;
    fs::create_dir_all(&layout.work).map_err(io(&layout.work))?;
    let _lock = lock(&layout.work.join("lock"), variant)?;
    if !opts.dry_run
        && resolved.settings.selinux
        && resolved.settings.distribution == Distribution::Gentoo
        && Path::new(policy::POLICY_SRC).exists()
    {
        // The refpolicy sources the sec-policy packages build from (fetch-restricted).
        policy::seed_distfiles(&layout.distdir())?;
    }
    if !opts.dry_run
        && resolved.settings.distribution == Distribution::Gentoo
        && portage::distfiles::KERNEL.present()
    {
        // The Linux sources gentoo-mini's kernel builds from (docs/kernel.md).
        portage::distfiles::KERNEL.seed(&layout.distdir())?;
    }

    fs::create_dir_all(&layout.output).map_err(io(&layout.output))?;
    let build_log = layout.output.join("build.log");
    let mut runner = Runner {
        layout,
        dry_run: opts.dry_run,
        show: opts.show,
        out,
        log: if opts.dry_run {
            None
        } else {
            Some(fs::File::create(&build_log).map_err(io(&build_log))?)
        },
    };
    let plan = plan(&b);
    let mut outcome = runner.run(&plan)?;
    outcome.destroot = layout.destroot();
    outcome.tree = layout.tree();
    outcome.image = tree::image_path(&b);
    outcome.manifest = layout.output.join("manifest.txt");
    outcome.build_log = build_log;
    outcome.logs = layout.logs();
    if !opts.dry_run {
        history::record(&b, &mut outcome)?;
    }
    Ok(outcome)
}

/// The plan of `variant` for `keel plan` and the docs check: [`plan`] with the default
/// directories.
pub fn stages_of(project: &Project, resolved: &Resolved) -> Vec<(StageId, String)> {
    let b = Build {
        resolved,
        project: &project.root,
        layout: Layout::new(&project.root, &resolved.name, None),
        repo: PathBuf::from(portage::DEFAULT_REPO),
        source_date_epoch: None,
        image_version: None,
        site: stage::Site::default(),
    };
    let stages = plan(&b);
    let list = stages.iter().map(|s| (s.id(), s.what())).collect();
    list
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What identifies Keel's own code: the hash of the running executable. A new Keel reruns
/// the stages Keel implements; Portage's stages do not depend on it.
/// The executable's hash is kept in a stat cache (`stamps/keel.statcache`): a no-op build
/// does not read the whole executable again.
fn keel_identity(layout: &Layout) -> Result<String, Error> {
    let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    let cache_file = layout.stamps().join("keel.statcache");
    let mut cache = stage::StatCache::load(&cache_file);
    let mut fp = Fingerprint::new();
    fp.file_cached("exe", &exe, &mut cache)?;
    fs::create_dir_all(layout.stamps()).map_err(io(&layout.stamps()))?;
    cache.save(&cache_file)?;
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

/// An exclusive lock on the variant's work directory, released when dropped.
/// Hold a variant's work directory, as a build does (`keel publish` reads what a build
/// writes): held until the file is dropped.
pub fn lock_work(layout: &Layout) -> Result<fs::File, Error> {
    fs::create_dir_all(&layout.work).map_err(io(&layout.work))?;
    lock(&layout.work.join("lock"), &layout.variant)
}

fn lock(path: &Path, variant: &str) -> Result<fs::File, Error> {
    rootdir::try_lock(path)
        .map_err(io(path))?
        .ok_or_else(|| Error::Locked {
            variant: variant.to_owned(),
            lock: path.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A stage: overlay makes `<dir>/tree`, tmpfiles and fixups write into it in place,
    /// image writes `<dir>/image`; each fails when told to.
    struct Fake {
        id: StageId,
        input: Rc<RefCell<String>>,
        dir: PathBuf,
        in_place: bool,
        fail: Rc<RefCell<bool>>,
        runs: Rc<RefCell<Vec<StageId>>>,
    }

    impl Stage for Fake {
        fn id(&self) -> StageId {
            self.id
        }
        fn what(&self) -> String {
            "fake".into()
        }
        fn inputs(&self, fp: &mut Fingerprint) -> Result<(), stage::BoxError> {
            fp.str(self.id.name(), &self.input.borrow());
            Ok(())
        }
        fn outputs(&self) -> Vec<PathBuf> {
            match self.id {
                StageId::Image => vec![self.dir.join("image")],
                _ => vec![self.dir.join("tree")],
            }
        }
        fn in_place(&self) -> bool {
            self.in_place
        }
        fn run(&self, _: &Path) -> Result<(), stage::BoxError> {
            self.runs.borrow_mut().push(self.id);
            let tree = self.dir.join("tree");
            if self.id == StageId::Overlay {
                let _ = fs::remove_dir_all(&tree);
                fs::create_dir_all(&tree)?;
            }
            if self.id == StageId::Image {
                fs::write(self.dir.join("image"), self.input.borrow().as_bytes())?;
                return Ok(());
            }
            if *self.fail.borrow() {
                return Err("told to fail".into());
            }
            fs::write(tree.join(self.id.name()), self.input.borrow().as_bytes())?;
            Ok(())
        }
    }

    struct World {
        _d: tempfile::TempDir,
        layout: Layout,
        inputs: Vec<Rc<RefCell<String>>>,
        fail: Vec<Rc<RefCell<bool>>>,
        runs: Rc<RefCell<Vec<StageId>>>,
    }

    const IDS: [StageId; 4] = [
        StageId::Overlay,
        StageId::Tmpfiles,
        StageId::Fixups,
        StageId::Image,
    ];

    impl World {
        fn new() -> World {
            let d = tempfile::tempdir().unwrap();
            let work = d.path().join("work");
            let layout = Layout {
                build: d.path().to_owned(),
                cache: d.path().join("cache"),
                outputs: d.path().to_owned(),
                variant: "v".into(),
                output: d.path().join("out"),
                work,
            };
            World {
                _d: d,
                layout,
                inputs: IDS.iter().map(|_| Rc::default()).collect(),
                fail: IDS.iter().map(|_| Rc::default()).collect(),
                runs: Rc::default(),
            }
        }

        /// overlay makes the tree; tmpfiles and fixups change it in place; image writes its
        /// own file. The stages that ran.
        fn build(&self) -> Result<Vec<StageId>, Error> {
            self.run(false).map(|_| self.runs.borrow().clone())
        }

        /// A dry run: the stages it says would run, and what it printed.
        fn dry_run(&self) -> (Vec<StageId>, String) {
            let (outcome, said) = self.run(true).unwrap();
            (outcome.ran, said)
        }

        fn run(&self, dry_run: bool) -> Result<(Outcome, String), Error> {
            let plan: Plan = IDS
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    Box::new(Fake {
                        id: *id,
                        input: self.inputs[i].clone(),
                        dir: self.layout.work.clone(),
                        in_place: matches!(id, StageId::Tmpfiles | StageId::Fixups),
                        fail: self.fail[i].clone(),
                        runs: self.runs.clone(),
                    }) as Box<dyn Stage>
                })
                .collect();
            self.runs.borrow_mut().clear();
            let mut out = Vec::new();
            let mut r = Runner {
                layout: &self.layout,
                dry_run,
                out: &mut out,
                log: None,
                show: Show::Lines,
            };
            let outcome = r.run(&plan)?;
            Ok((outcome, String::from_utf8_lossy(&out).into_owned()))
        }
    }

    #[test]
    fn up_to_date_stages_are_skipped_and_a_changed_one_reruns_with_the_later_ones() {
        let w = World::new();
        assert_eq!(w.build().unwrap(), IDS);
        assert_eq!(w.build().unwrap(), []);
        *w.inputs[3].borrow_mut() = "new".into();
        assert_eq!(w.build().unwrap(), [StageId::Image]);
        *w.inputs[0].borrow_mut() = "new".into();
        assert_eq!(w.build().unwrap(), IDS);
    }

    #[test]
    fn an_in_place_stage_reruns_from_the_stage_that_made_its_tree() {
        let w = World::new();
        w.build().unwrap();
        *w.inputs[2].borrow_mut() = "new".into();
        assert_eq!(w.build().unwrap(), IDS);
        assert_eq!(w.build().unwrap(), []);
    }

    #[test]
    fn a_dry_run_of_an_in_place_change_names_the_chain_and_runs_nothing() {
        let w = World::new();
        w.build().unwrap();
        *w.inputs[1].borrow_mut() = "new".into();
        let (ran, said) = w.dry_run();
        assert_eq!(ran, IDS, "{said}");
        assert!(
            said.contains("[    would run] tmpfiles (changed: tmpfiles) (it works in place on the tree overlay made: from there)"),
            "{said}"
        );
        assert!(said.contains("[    would run] overlay"), "{said}");
        assert_eq!(*w.runs.borrow(), Vec::<StageId>::new());
    }

    #[test]
    fn a_missing_output_reruns_its_stage() {
        let w = World::new();
        w.build().unwrap();
        fs::remove_dir_all(w.layout.work.join("tree")).unwrap();
        assert_eq!(w.build().unwrap(), IDS);
    }

    #[test]
    fn a_failed_in_place_stage_leaves_the_chain_to_rerun() {
        let w = World::new();
        w.build().unwrap();
        *w.inputs[1].borrow_mut() = "new".into();
        *w.fail[1].borrow_mut() = true;
        let e = w.build().unwrap_err();
        assert!(
            e.to_string()
                .contains("stage tmpfiles failed: told to fail"),
            "{e}"
        );
        // The tree is no stage's finished output: not overlay's, whose tree it changed.
        assert!(!w.layout.stamps().join("overlay").exists());
        *w.fail[1].borrow_mut() = false;
        assert_eq!(w.build().unwrap(), IDS);
        assert_eq!(w.build().unwrap(), []);
    }
}
