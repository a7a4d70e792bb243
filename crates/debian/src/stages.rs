//! The Debian backend's stages (docs/debian.md): host-tools (apt), destroot (mmdebstrap).
//! There is no sysroot: nothing is built from source.

use crate::{check_sets, Debian, Error};
use pkgsets::sets::SetKind;
use stage::{Backend, BoxError, Build, Fingerprint, Plan, Stage, StageId};
use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The Debian backend of one build.
pub struct Apt<'a> {
    build: &'a Build<'a>,
    deb: OnceCell<Debian>,
}

impl<'a> Apt<'a> {
    pub fn new(build: &'a Build<'a>) -> Rc<Apt<'a>> {
        Rc::new(Apt {
            build,
            deb: OnceCell::new(),
        })
    }

    fn deb(&self) -> Result<&Debian, Error> {
        stage::once(&self.deb, || {
            check_sets(self.build.resolved)?;
            Debian::new(&self.build.layout.cache, self.build.resolved)
        })
    }

    /// The initramfs configuration of the overlay layers: read while packages install.
    fn initramfs(&self) -> Vec<(String, PathBuf)> {
        self.build.overlay_dirs("etc/initramfs-tools")
    }
}

impl<'a> Backend<'a> for Apt<'a> {
    fn stages(self: Rc<Self>) -> Plan<'a> {
        vec![Box::new(HostTools(self.clone())), Box::new(Destroot(self))]
    }
}

struct HostTools<'a>(Rc<Apt<'a>>);

impl Stage for HostTools<'_> {
    fn id(&self) -> StageId {
        StageId::HostTools
    }
    fn what(&self) -> String {
        "host tools (apt)".into()
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        fp.str("debian", &self.0.deb()?.identity()).str(
            "host-tools.packages",
            &self.0.build.set_text(SetKind::HostTools),
        );
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        Ok(self.0.deb()?.host_tools(self.0.build.resolved, log)?)
    }
}

struct Destroot<'a>(Rc<Apt<'a>>);

impl Stage for Destroot<'_> {
    fn id(&self) -> StageId {
        StageId::Destroot
    }
    fn what(&self) -> String {
        let suite = self
            .0
            .build
            .resolved
            .settings
            .suite
            .clone()
            .unwrap_or_default();
        format!(
            "mmdebstrap {suite} into {}",
            self.0.build.layout.destroot().display()
        )
    }
    fn inputs(&self, fp: &mut Fingerprint) -> Result<(), BoxError> {
        for (label, dir) in self.0.initramfs() {
            fp.tree(&label, &dir, None)?;
        }
        let b = self.0.build;
        fp.str(
            "debian-destroot",
            &self.0.deb()?.destroot_inputs(b.resolved),
        );
        b.destroot_inputs(fp);
        Ok(())
    }
    fn outputs(&self) -> Vec<PathBuf> {
        vec![self.0.build.layout.destroot()]
    }
    fn run(&self, log: &Path) -> Result<(), BoxError> {
        let b = self.0.build;
        let initramfs: Vec<PathBuf> = self.0.initramfs().into_iter().map(|(_, d)| d).collect();
        Ok(self.0.deb()?.destroot(
            b.resolved,
            &initramfs,
            &b.layout.destroot(),
            log,
            b.source_date_epoch,
        )?)
    }
}
