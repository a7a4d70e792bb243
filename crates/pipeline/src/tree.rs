//! Keel's own stages, after the package backend's: policy-store (SELinux), then the tree
//! stages overlay, tmpfiles, fixups, label (SELinux), then image.
//!
//! One tree is kept, not one per stage: overlay makes it from a fresh copy of the
//! destination root (`cp -a --reflink=auto`, which keeps owners, modes, times, xattrs and
//! hard links) under `tree.new`, renamed into place when done; tmpfiles, fixups and label
//! then change it in place ([`Stage::in_place`]: the runner reruns them from overlay, and
//! takes overlay's stamp away while they run, so a killed stage leaves nothing that looks
//! finished). The policy store has other inputs (the policy packages and policy layers),
//! so it is built apart, in its own small root, and an overlay edit does not rebuild it.

use crate::{io, keel_identity, mkfs_version, Error, MUTABLE_PREFIXES};
use exec::Cmd;
use stage::{BoxError, Build, Fingerprint, Layout, Plan, Stage, StageId};
use std::cell::OnceCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use variant::schema::ImageFormat;
use variant::Resolved;

/// What Keel's stages share in one build.
struct Cx<'a> {
    b: &'a Build<'a>,
    /// The build time: SOURCE_DATE_EPOCH, or now.
    build_time: i64,
    keel: OnceCell<String>,
}

impl Cx<'_> {
    /// Keel's own code: its stages rerun when it changes.
    fn keel(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        let id = stage::once(&self.keel, || keel_identity(&self.b.layout))?;
        fp.str("keel", id);
        Ok(())
    }
    fn layers(&self, kind: &str) -> Vec<PathBuf> {
        self.b
            .resolved
            .layers_of(kind)
            .map(|l| l.path.clone())
            .collect()
    }
    fn selinux_type(&self) -> &str {
        &self.b.resolved.settings.selinux_type
    }
}

/// Keel's stages for `b`, after the package backend's.
pub(crate) fn stages<'a>(b: &'a Build<'a>) -> Plan<'a> {
    let cx = Rc::new(Cx {
        b,
        build_time: b.source_date_epoch.unwrap_or_else(crate::now),
        keel: OnceCell::new(),
    });
    let selinux = b.resolved.settings.selinux;
    let mut plan: Plan<'a> = Vec::new();
    if selinux {
        plan.push(Box::new(PolicyStore(cx.clone())));
    }
    plan.push(Box::new(Overlay(cx.clone())));
    plan.push(Box::new(Tmpfiles(cx.clone())));
    plan.push(Box::new(Fixups(cx.clone())));
    if selinux {
        plan.push(Box::new(Label(cx.clone())));
    }
    let disk = b.resolved.settings.disk.is_some();
    plan.push(Box::new(Image(cx.clone())));
    if disk {
        plan.push(Box::new(Disk(cx)));
    }
    plan
}

/// Where the image goes: `<output>/<variant>.<format>`.
pub(crate) fn image_path(b: &Build) -> PathBuf {
    b.layout.output.join(format!(
        "{}.{}",
        b.layout.variant,
        format_of(b.resolved).extension()
    ))
}

fn format_of(r: &Resolved) -> image::make::Format {
    match r.settings.image_format {
        ImageFormat::Squashfs => image::make::Format::Squashfs,
        ImageFormat::Erofs => image::make::Format::Erofs,
    }
}

/// What the policy store is made of in a root: what `semodule -p` reads and writes, and
/// the headers local modules compile against (`{type}`: the policy type). The headers are
/// dropped once the modules are built: the store keeps what goes into the image.
const POLICY_DIRS: &[&str] = &[
    "etc/selinux",
    "var/lib/selinux",
    "usr/share/selinux/{type}/include",
];

/// policy-store: the local modules and booleans of every policy layer, built into a copy of
/// the destination root's policy (`<work>/policy-store`).
struct PolicyStore<'a>(Rc<Cx<'a>>);

impl Stage for PolicyStore<'_> {
    fn id(&self) -> StageId {
        StageId::PolicyStore
    }
    fn what(&self) -> String {
        format!(
            "{} policy store: local modules, booleans",
            self.0.selinux_type()
        )
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        self.0.keel(fp)?;
        for l in self.0.b.resolved.layers_of("policy") {
            fp.tree(&l.rel, &l.path, None)?;
        }
        fp.str("selinux-type", self.0.selinux_type());
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.0.b.layout.policy_store()]
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let layout = &self.0.b.layout;
        let store = layout.policy_store();
        let partial = store.with_extension("new");
        for d in [store.as_path(), partial.as_path()] {
            if d.symlink_metadata().is_ok() {
                fs::remove_dir_all(d).map_err(io(d))?;
            }
        }
        // Copied through a handle on the destination root: a symlink there is copied as
        // a symlink, never followed out of the root.
        let dest = rootdir::Root::open(&layout.destroot())?;
        for rel in POLICY_DIRS {
            let rel = rel.replace("{type}", self.0.selinux_type());
            let rel = Path::new(&rel);
            let dir = match dest.open_dir(rel) {
                Ok(d) => d,
                Err(e) if e.is_absent() => continue,
                Err(e) => return Err(e.into()),
            };
            let to = partial.join(rel);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(io(parent))?;
            }
            Cmd::new("cp")
                .args(["-a", "--reflink=auto", "--no-target-directory"])
                .arg(rootdir::fd_path(std::os::fd::AsFd::as_fd(&dir), b"."))
                .arg(&to)
                .log(log)
                .run()?;
        }
        let installed = policy::install_modules(
            &partial,
            self.0.selinux_type(),
            self.0.b.project,
            &self.0.layers("policy"),
            log,
        )?;
        append_log(log, &format!("{installed:?}\n"))?;
        let headers = partial.join("usr");
        if headers.symlink_metadata().is_ok() {
            fs::remove_dir_all(&headers).map_err(io(&headers))?;
        }
        fs::rename(&partial, &store).map_err(io(&store))?;
        Ok(())
    }
}

/// overlay: a fresh copy of the destination root, with every overlay layer on it (file
/// mtimes are inputs: they are copied).
struct Overlay<'a>(Rc<Cx<'a>>);

impl Stage for Overlay<'_> {
    fn id(&self) -> StageId {
        StageId::Overlay
    }
    fn what(&self) -> String {
        format!(
            "{} overlay layers on a copy of the destination root",
            self.0.b.resolved.layers_of("overlay").count()
        )
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        self.0.keel(fp)?;
        for l in self.0.b.resolved.layers_of("overlay") {
            fp.tree_with_mtimes(&l.rel, &l.path)?;
        }
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.0.b.layout.tree()]
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let l = &self.0.b.layout;
        fresh_copy(&l.destroot(), &l.tree(), log, |t| {
            overlay(self.0.b.resolved, t, self.0.build_time, log)
        })?;
        Ok(())
    }
}

/// tmpfiles: every tmpfiles.d layer, the mutable prefixes.
struct Tmpfiles<'a>(Rc<Cx<'a>>);

impl Stage for Tmpfiles<'_> {
    fn id(&self) -> StageId {
        StageId::Tmpfiles
    }
    fn what(&self) -> String {
        "tmpfiles.d edits, build-time creation".into()
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        for l in self.0.b.resolved.layers_of("tmpfiles.d") {
            fp.tree(&l.rel, &l.path, None)?;
        }
        fp.str(
            "mutable-prefixes",
            &mutable_prefixes(self.0.b.resolved).join("\n"),
        );
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.0.b.layout.tree()]
    }
    fn in_place(&self) -> bool {
        true
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let b = self.0.b;
        tmpfiles(
            b.project,
            b.resolved,
            &b.layout.tree(),
            &mutable_prefixes(b.resolved),
            log,
        )?;
        Ok(())
    }
}

/// fixups: the customize hook, the ldconfig that runs; for a variant without SELinux, the
/// final times too.
struct Fixups<'a>(Rc<Cx<'a>>);

impl Stage for Fixups<'_> {
    fn id(&self) -> StageId {
        StageId::Fixups
    }
    fn what(&self) -> String {
        "ld.so.cache, .updated stamps, customize hook".into()
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        let s = &self.0.b.resolved.settings;
        if let Some(h) = &s.customize_hook {
            fp.file("customize-hook", h)?;
        }
        if let Some(d) = &s.disk {
            fp.str("disk-update-url", d.update_url.as_deref().unwrap_or(""));
        }
        if let Some(v) = &self.0.b.image_version {
            fp.str("image-version", v);
        }
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.0.b.layout.tree()]
    }
    fn in_place(&self) -> bool {
        true
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let b = self.0.b;
        let t = b.layout.tree();
        fixups(b.resolved, &b.layout, &t, log)?;
        // The version of this tree: the disk's slot and unified kernel image are named
        // after it, and updates compare it.
        let version = b
            .image_version
            .clone()
            .unwrap_or_else(|| disk::version_of(u64::try_from(self.0.build_time).unwrap_or(0)));
        let disk = &b.resolved.settings.disk;
        if disk.is_some() || b.image_version.is_some() {
            let root = rootdir::Root::open(&t).map_err(|e| Error::Tree(e.to_string()))?;
            disk::set_image_version(&root, &b.layout.variant, &version)?;
            append_log(log, &format!("os-release: IMAGE_VERSION={version}\n"))?;
        }
        if let Some(d) = disk {
            let root = rootdir::Root::open(&t).map_err(|e| Error::Tree(e.to_string()))?;
            disk::in_image(&root, &b.layout.variant, d.update_url.as_deref())?;
            append_log(
                log,
                &format!("disk: /efi, sysupdate.d for {:?}\n", d.update_url),
            )?;
        }
        if !b.resolved.settings.selinux {
            finalize(&t, self.0.build_time, b.source_date_epoch, log)?;
        }
        Ok(())
    }
}

/// label (SELinux): the policy store and `/etc/selinux/config` put in the tree, the final
/// times, then every file labelled (labels change no mtime, so they are the last change).
struct Label<'a>(Rc<Cx<'a>>);

impl Stage for Label<'_> {
    fn id(&self) -> StageId {
        StageId::Label
    }
    fn what(&self) -> String {
        format!(
            "{} policy into the tree, config, labels",
            self.0.selinux_type()
        )
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        let s = &self.0.b.resolved.settings;
        fp.str("selinux", &format!("{} {}", s.selinux_type, s.selinux_mode));
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.0.b.layout.tree()]
    }
    fn in_place(&self) -> bool {
        true
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let b = self.0.b;
        let s = &b.resolved.settings;
        let ty = self.0.selinux_type();
        let mode = policy::Mode::parse(&s.selinux_mode.to_string())
            .ok_or_else(|| Error::Tree(format!("unknown SELinux mode `{}`", s.selinux_mode)))?;
        let t = b.layout.tree();
        put_store(b, &t, ty, log)?;
        policy::write_config(&t, ty, mode)?;
        finalize(&t, self.0.build_time, b.source_date_epoch, log)?;
        let report = policy::label(&t, ty, log)?;
        append_log(
            log,
            &format!(
                "labelled {} paths ({} unchanged); no spec for {:?}\n",
                report.set, report.unchanged, report.unlabelled
            ),
        )?;
        Ok(())
    }
}

/// Replace the tree's `etc/selinux/<type>` and `var/lib/selinux/<type>` with the policy
/// store's. An overlay layer may not ship files there: the store replaces them.
fn put_store(b: &Build, tree: &Path, ty: &str, log: &Path) -> Result<(), Error> {
    use std::os::fd::AsFd;
    let owned = [format!("etc/selinux/{ty}"), format!("var/lib/selinux/{ty}")];
    for l in b.resolved.layers_of("overlay") {
        for rel in &owned {
            if l.path.join(rel).symlink_metadata().is_ok() {
                return Err(Error::Tree(format!(
                    "overlay layer {} ships /{rel}, which the policy store replaces: put local modules and booleans in a policy layer (docs/selinux.md)",
                    l.path.display()
                )));
            }
        }
    }
    let store = b.layout.policy_store();
    let root = rootdir::Root::open(tree).map_err(|e| Error::Tree(e.to_string()))?;
    for rel in &owned {
        let rel = Path::new(rel);
        let from = store.join(rel);
        if from.symlink_metadata().is_err() {
            continue;
        }
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            continue;
        };
        let dir = root
            .create_dir_all(parent, 0o755)
            .map_err(|e| Error::Tree(e.to_string()))?;
        let name = name.as_encoded_bytes();
        match rootdir::remove_all(dir.as_fd(), name) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(Error::Tree(format!("{}: {e}", root.display(rel).display()))),
        }
        Cmd::new("cp")
            .args(["-a", "--reflink=auto", "--no-target-directory"])
            .arg(&from)
            .arg(rootdir::fd_path(dir.as_fd(), name))
            .log(log)
            .run()?;
    }
    Ok(())
}

/// image: format, pseudo files, the tools' versions, the post-build hook.
struct Image<'a>(Rc<Cx<'a>>);

impl Stage for Image<'_> {
    fn id(&self) -> StageId {
        StageId::Image
    }
    fn what(&self) -> String {
        format!(
            "{} of {}",
            format_of(self.0.b.resolved).extension(),
            self.0.b.layout.tree().display()
        )
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        let format = format_of(self.0.b.resolved);
        fp.str("format", format.extension())
            .str("mkfs", &mkfs_version(format));
        let s = &self.0.b.resolved.settings;
        if let Some(pf) = &s.pseudo_files {
            fp.file("pseudo-files", pf)?;
        }
        if let Some(h) = &s.post_build_hook {
            fp.file("post-build-hook", h)?;
        }
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![
            image_path(self.0.b),
            self.0.b.layout.output.join("manifest.txt"),
        ]
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let b = self.0.b;
        let s = &b.resolved.settings;
        let img = image_path(b);
        let tree = b.layout.tree();
        let manifest = b.layout.output.join("manifest.txt");
        let _ = fs::remove_file(&manifest);
        let spec = image::make::Spec {
            tree: tree.clone(),
            out: img.clone(),
            format: format_of(b.resolved),
            epoch: self.0.build_time,
            pseudo_files: s.pseudo_files.clone(),
            log: log.to_owned(),
        };
        image::make::make(&spec)?;
        if !s.python {
            // Checked on the image itself, read back with the real tools.
            policy::find_python_in_image(&img, log)?;
        }
        write_atomic_manifest(&manifest, &tree)?;
        if let Some(hook) = &s.post_build_hook {
            image::fixups::run_hook(
                hook,
                &[
                    ("KEEL_IMAGE", &img),
                    ("KEEL_ROOT", &tree),
                    ("KEEL_OUTPUT", &b.layout.output),
                ],
                hook.parent().unwrap_or(&b.layout.output),
                log,
            )?;
        }
        Ok(())
    }
}

/// disk: the bootable disk of the image (crate `disk`, docs/disk.md).
struct Disk<'a>(Rc<Cx<'a>>);

impl Disk<'_> {
    fn spec(&self, log: &Path) -> Option<disk::Spec> {
        let b = self.0.b;
        let s = &b.resolved.settings;
        Some(disk::Spec {
            name: b.layout.variant.clone(),
            image: image_path(b),
            disk: s.disk.clone()?,
            out: b.layout.output.clone(),
            work: b.layout.work.join("disk"),
            epoch: u64::try_from(self.0.build_time).unwrap_or(0),
            // A machine's screen too; the serial port stays the console (the last one).
            cmdline: std::iter::once("console=tty0".to_owned())
                .chain(boot::image_cmdline(s.selinux.then_some(
                    s.selinux_mode == variant::schema::SelinuxMode::Enforcing,
                )))
                .collect(),
            log: log.to_owned(),
        })
    }
}

impl Stage for Disk<'_> {
    fn id(&self) -> StageId {
        StageId::Disk
    }
    fn what(&self) -> String {
        format!(
            "GPT disk {} (ESP with systemd-boot, A/B verity root slots)",
            disk::raw_path(&self.0.b.layout.output, &self.0.b.layout.variant).display()
        )
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        let s = &self.0.b.resolved.settings;
        fp.str("disk", &format!("{:?}", s.disk));
        // The version; without SOURCE_DATE_EPOCH it is the time the disk is made, and a
        // build that changes nothing keeps the disk it made.
        if let Some(e) = self.0.b.source_date_epoch {
            fp.str("epoch", &e.to_string());
        }
        for tool in [
            "systemd-repart --version",
            "veritysetup --version",
            "objcopy --version",
            "bootctl --version",
            "mkfs.fat --help",
            "mcopy --version",
        ] {
            let mut w = tool.split(' ');
            let (prog, arg) = (w.next().unwrap_or_default(), w.next().unwrap_or_default());
            let v = Cmd::new(prog)
                .arg(arg)
                .ok_codes(&[0, 1])
                .output()
                .map(|o| {
                    format!("{}{}", o.stdout, o.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
                .unwrap_or_else(|_| "absent".into());
            fp.str(prog, &v);
        }
        fp.file("stub", Path::new(disk::STUB))?;
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        let l = &self.0.b.layout;
        vec![
            disk::raw_path(&l.output, &l.variant),
            disk::roothash_path(&l.output, &l.variant),
            disk::made_path(&l.output, &l.variant),
        ]
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let Some(spec) = self.spec(log) else {
            return Ok(());
        };
        disk::make(&spec)?;
        Ok(())
    }
}

fn write_atomic_manifest(manifest: &Path, tree: &Path) -> Result<(), Error> {
    let text = image::manifest::of_tree(tree)?;
    Ok(stage::fingerprint::write_atomic(manifest, text.as_bytes())?)
}

/// Copy `from` to `<to>.new`, run `f` on it, then move it to `to`.
pub fn fresh_copy(
    from: &Path,
    to: &Path,
    log: &Path,
    f: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let partial = to.with_extension("new");
    for d in [to, partial.as_path()] {
        if d.symlink_metadata().is_ok() {
            fs::remove_dir_all(d).map_err(io(d))?;
        }
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    Cmd::new("cp")
        .args(["-a", "--reflink=auto", "--no-target-directory"])
        .arg(from)
        .arg(&partial)
        .log(log)
        .run()?;
    f(&partial)?;
    fs::rename(&partial, to).map_err(io(to))
}

/// overlay: the shared overlay, then each ancestor's, then the variant's; then `/usr`'s
/// mtime := the build time.
pub fn overlay(resolved: &Resolved, tree: &Path, build_time: i64, log: &Path) -> Result<(), Error> {
    let sources: Vec<PathBuf> = resolved
        .layers_of("overlay")
        .map(|l| l.path.clone())
        .collect();
    let mut text = String::new();
    if !sources.is_empty() {
        let stats =
            overlay::sync(&sources, tree).map_err(|e| Error::Tree(format!("overlay: {e}")))?;
        text.push_str(&format!(
            "overlay sync {:?} -> {}: {stats:?}\n",
            sources,
            tree.display()
        ));
    }
    if tree.join("usr").symlink_metadata().is_ok() {
        overlay::set_mtime(
            tree,
            Path::new("/usr"),
            overlay::Mtime::from_secs(build_time),
        )
        .map_err(|e| Error::Tree(format!("overlay: {e}")))?;
        text.push_str(&format!("/usr mtime := {build_time}\n"));
    }
    append_log(log, &text)
}

/// The mutable prefixes of a variant: the defaults and its writable paths under /etc.
pub fn mutable_prefixes(resolved: &Resolved) -> Vec<String> {
    let mut p: Vec<String> = MUTABLE_PREFIXES.iter().map(|s| s.to_string()).collect();
    p.extend(resolved.settings.etc_writable.iter().cloned());
    p
}

/// fixups: `/etc/ld.so.cache`, no `.updated` stamps, the customize hook, then the final
/// times (see [`finalize`]).
pub fn fixups(resolved: &Resolved, layout: &Layout, tree: &Path, log: &Path) -> Result<(), Error> {
    let line = image::fixups::ld_so_cache(tree, log)?;
    let removed = image::fixups::remove_updated_stamps(tree)?;
    append_log(
        log,
        &format!("ld.so.cache by `{line}`\nremoved: {removed:?}\n"),
    )?;
    if let Some(hook) = &resolved.settings.customize_hook {
        append_log(log, &format!("customize hook {}\n", hook.display()))?;
        image::fixups::run_hook(
            hook,
            &[("KEEL_ROOT", tree), ("KEEL_OUTPUT", &layout.output)],
            hook.parent().unwrap_or(tree),
            log,
        )?;
    }
    Ok(())
}

/// The last touch of the last tree stage: `/usr`'s mtime := build time (entries added under
/// `/usr` since the overlay stage moved it), and with SOURCE_DATE_EPOCH every later mtime
/// clamped to it.
pub fn finalize(tree: &Path, build_time: i64, clamp: Option<i64>, log: &Path) -> Result<(), Error> {
    if tree.join("usr").symlink_metadata().is_ok() {
        overlay::set_mtime(
            tree,
            Path::new("/usr"),
            overlay::Mtime::from_secs(build_time),
        )
        .map_err(|e| Error::Tree(format!("finalize: {e}")))?;
    }
    if let Some(epoch) = clamp {
        let n = image::make::clamp_mtimes(tree, epoch)?;
        append_log(
            log,
            &format!("clamped {n} mtimes to SOURCE_DATE_EPOCH={epoch}\n"),
        )?;
    }
    Ok(())
}

pub fn append_log(log: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    if let Some(parent) = log.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(log))?;
    f.write_all(text.as_bytes()).map_err(io(log))
}

/// tmpfiles: the variant's tmpfiles.d layers written into `/etc/tmpfiles.d` (added files,
/// edited copies of packaged files, dropped files), build-time creation of every entry
/// outside the mutable prefixes with `systemd-tmpfiles --create --boot` semantics, and the
/// check that nothing is shipped where a `v`/`q`/`Q` entry below a mutable prefix must
/// create a subvolume at boot (systemd-tmpfiles ignores such a path when it exists). An
/// empty directory there is removed; anything else is an error.
pub fn tmpfiles(
    project: &Path,
    resolved: &Resolved,
    tree: &Path,
    prefixes: &[String],
    log: &Path,
) -> Result<(), Error> {
    let terr = |e: &dyn std::fmt::Display| Error::Tree(format!("tmpfiles: {e}"));
    let root = tmpfiles::apply::open_root(tree).map_err(|e| terr(&e))?;
    let layers: Vec<PathBuf> = resolved
        .layers_of("tmpfiles.d")
        .map(|l| l.path.clone())
        .collect();
    let written = tmpfiles::build::write_layers(&root, project, &layers).map_err(|e| terr(&e))?;
    let mut text = String::new();
    for w in &written {
        text.push_str(&format!("{w:?}\n"));
    }
    let host = tmpfiles::apply::host_facts();
    let subvolumes = subvolume_entries(&root, &host).map_err(|e| terr(&e))?;
    let fd = image::walk::open_root(tree)?;
    // Paths strictly below a mutable prefix are made at boot on the writable filesystem; a
    // prefix itself is a mount point the image must have.
    let below_prefix = |p: &str| {
        prefixes.iter().any(|pre| {
            p.strip_prefix(pre.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    };
    for (source, path) in subvolumes.iter().filter(|(_, p)| below_prefix(p)) {
        match remove_if_empty_dir(&fd, tree, path)? {
            Shipped::Nothing => {}
            Shipped::EmptyDir => text.push_str(&format!("removed empty {path}: {source} makes it a subvolume at boot\n")),
            Shipped::Something(what) => {
                return Err(Error::Tree(format!(
                    "tmpfiles: the image ships {what} at {path}, where `{source}` must create a subvolume at boot (systemd-tmpfiles ignores a path that exists); mask it (INSTALL_MASK) or move the entry"
                )))
            }
        }
    }
    let report =
        tmpfiles::build::create_at_build_time(&root, prefixes, &host).map_err(|e| terr(&e))?;
    text.push_str(&format!(
        "applied {} entries outside {prefixes:?}\n",
        report.apply.applied
    ));
    for d in &report.apply.diagnostics {
        text.push_str(&format!(
            "{}{d}\n",
            if d.error { "error: " } else { "notice: " }
        ));
    }
    for n in &report.apply.notes {
        text.push_str(&format!("notice: {n}\n"));
    }
    for r in &report.runtime {
        text.push_str(&format!(
            "warning: cannot work on the read-only root at run time: {r}\n"
        ));
    }
    append_log(log, &text)?;
    if !report.apply.failures.is_empty() {
        let list: Vec<String> = report
            .apply
            .failures
            .iter()
            .map(|f| format!("  {f}"))
            .collect();
        return Err(Error::Tree(format!(
            "tmpfiles: entries in the immutable root could not be created:\n{}",
            list.join("\n")
        )));
    }
    Ok(())
}

/// `v`, `q` and `Q` entries of the root's effective configuration: (where, path).
fn subvolume_entries(
    root: &tmpfiles::root::Root,
    host: &tmpfiles::spec::Host,
) -> Result<Vec<(String, String)>, tmpfiles::apply::Error> {
    let files: Vec<(String, Vec<String>)> = tmpfiles::apply::load_config(root)?
        .into_iter()
        .map(|f| (f.path, tmpfiles::config::lines(&f.content)))
        .collect();
    let (spec, users) = tmpfiles::apply::root_context(root, host);
    let opts = tmpfiles::plan::Options {
        boot: true,
        ..Default::default()
    };
    let plan = tmpfiles::plan::plan(&files, &spec, &users, &opts);
    Ok(plan
        .items
        .iter()
        .filter(|i| matches!(i.kind, 'v' | 'q' | 'Q'))
        .map(|i| (i.source.to_string(), i.path.clone()))
        .collect())
}

enum Shipped {
    Nothing,
    EmptyDir,
    Something(&'static str),
}

/// Look at `path` inside the root without following symlinks; remove it when it is an
/// empty directory.
fn remove_if_empty_dir(
    root: &rustix::fd::OwnedFd,
    tree: &Path,
    path: &str,
) -> Result<Shipped, Error> {
    use rustix::fs::{statat, unlinkat, AtFlags, FileType};
    let rel = Path::new(path.trim_start_matches('/'));
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Ok(Shipped::Nothing);
    };
    let shown = tree.join(rel);
    let dir = match image::walk::open_beneath(root, parent, &shown) {
        Ok(d) => d,
        // The parent does not exist (or is a symlink, which the boot resolves elsewhere).
        Err(_) => return Ok(Shipped::Nothing),
    };
    let st = match statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(Shipped::Nothing),
        Err(e) => return Err(image::Error::errno(&shown)(e).into()),
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => match unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(Shipped::EmptyDir),
            Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => {
                Ok(Shipped::Something("a non-empty directory"))
            }
            Err(e) => Err(image::Error::errno(&shown)(e).into()),
        },
        FileType::Symlink => Ok(Shipped::Something("a symlink")),
        _ => Ok(Shipped::Something("a file")),
    }
}
