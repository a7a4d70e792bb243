//! What the host's QEMU can do: whether KVM works, and how it spells "become this user".

use crate::machine::{Boot, Console, Machine};
use crate::QEMU;
use exec::Cmd;
use std::path::Path;
use std::time::Duration;

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// How long the KVM probe's kernel gets to print its banner.
const PROBE_LIMIT: Duration = Duration::from_secs(4);

impl Accel {
    /// `KEEL_QEMU_ACCEL=kvm|tcg` when set; else KVM when it works, TCG otherwise. KVM
    /// "works" when the guest's own kernel gets going under it: on some hosts `/dev/kvm`
    /// opens but the first vCPU setup aborts QEMU (`kvm_buf_set_msrs` assertion, QEMU
    /// 7.2), on others (nested, QEMU 10) the firmware runs but Linux hangs as it enters
    /// long mode, silently, at full CPU. So a probe boots `kernel` (no initramfs, the
    /// console into a file in `scratch`) for 4 s and counts KVM working when the kernel
    /// printed its `Linux version` banner.
    pub fn detect(kernel: &Path, scratch: &Path) -> Accel {
        match std::env::var("KEEL_QEMU_ACCEL").as_deref() {
            Ok("kvm") => return Accel::Kvm,
            Ok("tcg") => return Accel::Tcg,
            _ => {}
        }
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return Accel::Tcg;
        }
        let console = scratch.join("kvm-probe.console");
        let probe = Machine {
            name: None,
            accel: Accel::Kvm,
            memory_mb: 256,
            cpus: 1,
            boot: Boot::Kernel {
                kernel: kernel.to_owned(),
                initrd: None,
                cmdline: "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1".into(),
            },
            drives: Vec::new(),
            shares: Vec::new(),
            console: Console::Log {
                path: console.clone(),
                echo: false,
            },
            report: None,
            run_as: None,
            reboot: false,
        };
        // However it ended (a kernel that booted waits for a root it has not got and is
        // stopped at the limit; a QEMU that aborted fails), the banner decides.
        let _ = crate::run::run(&probe, Some(PROBE_LIMIT));
        let banner = std::fs::read(&console)
            .map(|b| b.windows(13).any(|w| w == b"Linux version"))
            .unwrap_or(false);
        let _ = std::fs::remove_file(&console);
        if banner {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    pub(crate) fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }
}

/// QEMU becomes `uid:gid` once it has opened its files (disks, report file, share roots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// `-run-with user=` where QEMU has it (9.1 and later; QEMU 10 rejects `-runas` as an
    /// invalid option), else `-runas` (bookworm's 7.2).
    pub run_with: bool,
}

impl RunAs {
    /// The spelling this host's QEMU takes, asked of `QEMU -help`.
    pub fn probe(uid: u32, gid: u32) -> RunAs {
        let help = Cmd::new(QEMU)
            .arg("-help")
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let run_with = help
            .lines()
            .any(|l| l.starts_with("-run-with") && l.contains("user="));
        RunAs { uid, gid, run_with }
    }

    pub(crate) fn args(self) -> [String; 2] {
        let (uid, gid) = (self.uid, self.gid);
        if self.run_with {
            ["-run-with".into(), format!("user={uid}:{gid}")]
        } else {
            ["-runas".into(), format!("{uid}:{gid}")]
        }
    }
}
