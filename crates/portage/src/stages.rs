//! The Portage backend's stages: host-tools, sysroot, destroot; and Portage's own
//! bookkeeping between runs (the user patches each root and the binary packages were built
//! with, and the merges a killed run may have cut short).

use crate::reads::Reads;
use crate::{Composed, Error, Install, PatchChanges, Portage};
use pkgsets::sets::SetKind;
use stage::fingerprint::write_atomic;
use stage::{Backend, BoxError, Build, Fingerprint, Plan, Stage, StageId, StatCache};
use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The Portage backend of one build.
pub struct Gentoo<'a> {
    build: &'a Build<'a>,
    /// Portage and the composed configuration: made when the first stage needs them.
    cx: OnceCell<Cx>,
}

struct Cx {
    portage: Portage,
    composed: Composed,
}

impl<'a> Gentoo<'a> {
    pub fn new(build: &'a Build<'a>) -> Rc<Gentoo<'a>> {
        Rc::new(Gentoo {
            build,
            cx: OnceCell::new(),
        })
    }

    fn cx(&self) -> Result<&Cx, Error> {
        stage::once(&self.cx, || {
            let b = self.build;
            let install = Install::detect(&b.layout.build)?;
            let portage = Portage::new(install, b.repo.clone(), b.layout.clone())?;
            let composed = portage.compose(b.project, b.resolved)?;
            Ok(Cx { portage, composed })
        })
    }
}

impl<'a> Backend<'a> for Gentoo<'a> {
    fn stages(self: Rc<Self>) -> Plan<'a> {
        vec![
            Box::new(HostTools(self.clone())),
            Box::new(Sysroot(self.clone())),
            Box::new(Destroot {
                g: self,
                cfg: OnceCell::new(),
            }),
        ]
    }
}

/// host-tools: the host set, the host configuration, which Portage.
struct HostTools<'a>(Rc<Gentoo<'a>>);

impl Stage for HostTools<'_> {
    fn id(&self) -> StageId {
        StageId::HostTools
    }
    fn what(&self) -> String {
        "host tools".into()
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        let cx = self.0.cx()?;
        fp.str("portage", &cx.portage.install.identity())
            .str("host-config", &cx.composed.host.render())
            .str(
                "host-tools.packages",
                &self.0.build.set_text(SetKind::HostTools),
            );
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        Ok(self
            .0
            .cx()?
            .portage
            .host_tools(self.0.build.resolved, log)?)
    }
}

/// sysroot: the repository, the composed target configuration, the build set.
struct Sysroot<'a>(Rc<Gentoo<'a>>);

impl Stage for Sysroot<'_> {
    fn id(&self) -> StageId {
        StageId::Sysroot
    }
    fn what(&self) -> String {
        let b = self.0.build;
        format!(
            "emerge @keel-build ({} atoms) into {}",
            b.resolved.set(SetKind::Build).entries.len(),
            b.layout.sysroot().display()
        )
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        let b = self.0.build;
        let cx = self.0.cx()?;
        fp.str("sysroot-config", &cx.composed.sysroot.render())
            .str("kernel-config", &cx.composed.kernel.render())
            .str("build.packages", &b.set_text(SetKind::Build));
        repo_inputs(b, StageId::Sysroot, fp)
    }
    fn inputs_from_run(&self) -> bool {
        true
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.0.build.layout.sysroot()]
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let b = self.0.build;
        let cx = self.0.cx()?;
        let layout = &b.layout;
        // User patches: what the sysroot's packages were installed with (this work
        // directory's record) and what the newest binary packages were built with (the
        // cache's record, shared by every build that shares the cache).
        let installed = layout.stamps().join("sysroot.patches");
        let packaged = layout.pkgdir_patches();
        let now = crate::user_patches(&cx.composed.sysroot);
        // A binhost (a site setting, so not in the fingerprint): its keyring and
        // binrepos.conf; its record of user patches counts for the packages this cache has
        // no record of (a fresh cache takes the patched packages from it too).
        let mut packaged_record = read_patch_record(&packaged);
        match &b.site.binhost {
            Some(bh) => {
                let record = crate::binhost::prepare(&cx.portage, bh, log)?;
                for (k, v) in parse_patch_record(&record) {
                    packaged_record.entry(k).or_insert(v);
                }
            }
            None => crate::binhost::unconfigure(layout)?,
        }
        crate::distcc::configure(layout, b.site.distcc.as_deref())?;
        let mut changes = PatchChanges::new(&read_patch_record(&installed), &packaged_record, &now);
        // A run that did not finish (killed) may have left a package that Portage counts
        // as installed but whose pkg_postinst was cut short: the packages merged since the
        // first unfinished run began are installed again.
        let sysroot = layout.sysroot();
        let running = layout.stamps().join("sysroot.running");
        match fs::metadata(&running).and_then(|m| m.modified()) {
            Ok(since) => changes.reinstall_too(crate::merged_since(&sysroot, since)?),
            Err(_) => write_atomic(&running, b"")?,
        }
        cx.portage
            .sysroot(b.resolved, &changes, b.site.binhost.as_ref(), log)?;
        // Only packages now in the sysroot: a patched package outside the build set has
        // no package built with these patches. The binary packages of the others (the
        // destroot's installonly ones) keep their record.
        let have = crate::installed(&sysroot)?;
        let text: String = now
            .iter()
            .filter(|(k, _)| have.contains(*k))
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect();
        let record = rerecord(&read_patch_record(&packaged), &now, &have);
        write_atomic(&packaged, render_patch_record(&record).as_bytes())?;
        write_atomic(&installed, text.as_bytes())?;
        record_reads(b, StageId::Sysroot, &sysroot, &[SetKind::Build])?;
        fs::remove_file(&running).map_err(Error::io(&running))?;
        Ok(())
    }
}

/// destroot: the install sets and the destroot configuration (the python setting
/// included, which reads the sysroot: so it is made when this stage's inputs are).
struct Destroot<'a> {
    g: Rc<Gentoo<'a>>,
    cfg: OnceCell<crate::config::Tree>,
}

impl Destroot<'_> {
    /// The destroot configuration, made once (it reads the sysroot's Python packages, so
    /// not before the sysroot stage).
    fn cfg(&self) -> Result<&crate::config::Tree, Error> {
        let cx = self.g.cx()?;
        stage::once(&self.cfg, || {
            cx.portage
                .destroot_config(self.g.build.resolved, &cx.composed.sysroot)
        })
    }
}

impl Stage for Destroot<'_> {
    fn id(&self) -> StageId {
        StageId::Destroot
    }
    fn what(&self) -> String {
        format!(
            "emerge @keel-install @keel-installonly into {}",
            self.g.build.layout.destroot().display()
        )
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        let b = self.g.build;
        fp.str("destroot-config", &self.cfg()?.render());
        for (label, dir) in b.overlay_dirs(crate::kernel::DRACUT_CONF) {
            fp.tree(&label, &dir, None)?;
        }
        b.destroot_inputs(fp);
        repo_inputs(b, StageId::Destroot, fp)
    }
    fn inputs_from_run(&self) -> bool {
        true
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.g.build.layout.destroot()]
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let cx = self.g.cx()?;
        let b = self.g.build;
        let cfg = self.cfg()?;
        // Built in `<dest>.new` and moved into place only when complete, so no root that
        // looks complete is ever left by a failed or killed build.
        let dest = b.layout.destroot();
        let partial = dest.with_extension("new");
        for d in [dest.as_path(), partial.as_path()] {
            if d.symlink_metadata().is_ok() {
                fs::remove_dir_all(d).map_err(Error::io(d))?;
            }
        }
        // The installonly packages whose newest binary package was built with other user
        // patches than the configuration's are compiled again; with a binhost, its record
        // counts for the packages this cache has no record of (as in the sysroot stage).
        let packaged = b.layout.pkgdir_patches();
        let local = read_patch_record(&packaged);
        let mut record = local.clone();
        if b.site.binhost.is_some() {
            let fetched = b.layout.binhost_dir().join("patches");
            for (k, v) in read_patch_record(&fetched) {
                record.entry(k).or_insert(v);
            }
        }
        let now = crate::user_patches(cfg);
        let from_source = crate::changed_patches(&record, &now);
        cx.portage.destroot(
            b.resolved,
            cfg,
            &partial,
            b.site.binhost.as_ref(),
            &from_source,
            log,
        )?;
        // What the installonly packages' binary packages were built with: the packages in
        // the destination root that the sysroot does not have.
        let sysroot = crate::installed(&b.layout.sysroot())?;
        let built: std::collections::BTreeSet<String> = crate::installed(&partial)?
            .into_iter()
            .filter(|k| !sysroot.contains(k))
            .collect();
        let record = rerecord(&local, &now, &built);
        write_atomic(&packaged, render_patch_record(&record).as_bytes())?;
        // A kernel gets its initramfs from the root's own dracut (docs/kernel.md).
        let dracut_conf: Vec<PathBuf> = b
            .overlay_dirs(crate::kernel::DRACUT_CONF)
            .into_iter()
            .map(|(_, dir)| dir)
            .collect();
        crate::kernel::initramfs(&partial, &dracut_conf, b.source_date_epoch, log)?;
        crate::vdb::normalize(&partial, b.source_date_epoch)?;
        fs::rename(&partial, &dest).map_err(Error::io(&dest))?;
        record_reads(
            b,
            StageId::Destroot,
            &dest,
            &[SetKind::Install, SetKind::InstallOnly],
        )?;
        Ok(())
    }
}

/// Where a stage keeps what its last run read in the repository.
fn reads_file(b: &Build, stage: StageId) -> PathBuf {
    b.layout.stamps().join(format!("{stage}.reads"))
}

/// The repository as a stage's input: what its last run read ([`crate::reads`]), or, with
/// no record of that (a first build), the whole tree. Files are hashed through the stage's
/// own stat cache, which keeps what the stage read, no more.
fn repo_inputs(b: &Build, stage: StageId, fp: &mut Fingerprint) -> Result<(), BoxError> {
    let cache_file = b.layout.stamps().join(format!("{stage}.statcache"));
    let mut cache = StatCache::load(&cache_file);
    let record = fs::read_to_string(reads_file(b, stage)).unwrap_or_default();
    match Reads::parse(&record) {
        Some(reads) => reads.fingerprint(&b.repo, fp, &mut cache)?,
        None => {
            fp.tree("repo", &b.repo, Some(&mut cache))?;
        }
    }
    cache.save(&cache_file)?;
    Ok(())
}

/// Record what a run that made `root` from the sets `kinds` read in the repository.
fn record_reads(b: &Build, stage: StageId, root: &Path, kinds: &[SetKind]) -> Result<(), BoxError> {
    let atoms: Vec<String> = kinds
        .iter()
        .flat_map(|k| b.resolved.set(*k).atoms().map(|a| a.key().to_owned()))
        .collect();
    let profile = b.resolved.settings.profile.as_deref().unwrap_or("");
    let reads = crate::reads::of(&b.repo, profile, &[root], atoms)?;
    write_atomic(&reads_file(b, stage), reads.render().as_bytes())?;
    Ok(())
}

/// A record of user patches (`cat/pkg digest` lines); missing means empty.
fn read_patch_record(path: &Path) -> BTreeMap<String, String> {
    parse_patch_record(&fs::read_to_string(path).unwrap_or_default())
}

fn parse_patch_record(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(' ').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

fn render_patch_record(record: &BTreeMap<String, String>) -> String {
    record.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
}

/// The record of user patches after the packages `built` were built with the patches
/// `now`: theirs replaced (or dropped, for a package built without patches), every other
/// package's kept from `old`.
fn rerecord(
    old: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
    built: &std::collections::BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = old
        .iter()
        .filter(|(k, _)| !built.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in now {
        if built.contains(k) {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_rerecords_only_what_it_built() {
        let old = parse_patch_record("a/built-then 1\nb/untouched 2\nc/unpatched-now 3\n");
        let now = parse_patch_record("a/built-then 9\nd/new 4\ne/not-built 5\n");
        let built = ["a/built-then", "c/unpatched-now", "d/new"]
            .map(String::from)
            .into_iter()
            .collect();
        assert_eq!(
            render_patch_record(&rerecord(&old, &now, &built)),
            "a/built-then 9\nb/untouched 2\nd/new 4\n"
        );
    }
}
