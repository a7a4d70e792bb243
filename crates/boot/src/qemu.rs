//! The QEMU invocation: the disks of [`crate::disk`], a direct kernel boot, the serial
//! console, and for the check a second serial port carrying the report.

use crate::disk::Disks;
use crate::{io, Error};
use exec::Cmd;
use std::path::{Path, PathBuf};

pub const QEMU: &str = "qemu-system-x86_64";

/// How QEMU runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// `KEEL_QEMU_ACCEL=kvm|tcg` when set; else KVM when it works, TCG otherwise. KVM
    /// "works" when the guest's own kernel gets going under it: on some hosts `/dev/kvm`
    /// opens but the first vCPU setup aborts QEMU (`kvm_buf_set_msrs` assertion, QEMU
    /// 7.2), on others (nested, QEMU 10) the firmware runs but Linux hangs as it enters
    /// long mode, silently, at full CPU. So a probe boots `kernel` (no initramfs, serial
    /// console to a file in `scratch`) for a few seconds and counts KVM working when the
    /// kernel printed its `Linux version` banner.
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
        let serial = scratch.join("kvm-probe.serial");
        let _ = std::fs::remove_file(&serial);
        let probe = Cmd::new("timeout")
            .args(["4", QEMU, "-accel", "kvm", "-cpu", "host", "-m", "256"])
            .args(["-display", "none", "-nodefaults", "-no-reboot", "-serial"])
            .arg(format!("file:{}", serial.display()))
            .arg("-kernel")
            .arg(kernel)
            .args(["-append", "console=ttyS0 earlyprintk=serial,ttyS0 panic=-1"])
            // 124: still running when the time was up (a kernel that booted waits for a
            // root it has not got); anything else is QEMU failing.
            .ok_codes(&[0, 124])
            .output();
        let banner = std::fs::read(&serial)
            .map(|b| b.windows(13).any(|w| w == b"Linux version"))
            .unwrap_or(false);
        let _ = std::fs::remove_file(&serial);
        if probe.is_ok() && banner {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
    }
}

/// QEMU's arguments to become `uid:gid` once it has opened its files: `-run-with
/// user=UID:GID` where QEMU has it (9.1 and later; QEMU 10 rejects `-runas` as an invalid
/// option), else `-runas UID:GID` (bookworm's 7.2). Asked of `QEMU -help`.
pub fn run_as(uid: u32, gid: u32) -> [String; 2] {
    let help = Cmd::new(QEMU)
        .arg("-help")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    if help
        .lines()
        .any(|l| l.starts_with("-run-with") && l.contains("user="))
    {
        ["-run-with".into(), format!("user={uid}:{gid}")]
    } else {
        ["-runas".into(), format!("{uid}:{gid}")]
    }
}

/// Where the serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// The terminal (QEMU's monitor multiplexed: Ctrl-a x quits).
    Terminal,
    /// A file.
    File(PathBuf),
    /// stdout of the QEMU process (captured into a log by the caller).
    Stdout,
}

/// One QEMU run.
#[derive(Debug, Clone)]
pub struct Qemu {
    pub accel: Accel,
    pub memory_mb: u32,
    pub cpus: u32,
    pub disks: Disks,
    /// Kernel command line.
    pub append: String,
    pub console: Console,
    /// The second serial port (the boot check's report).
    pub report: Option<PathBuf>,
}

/// The kernel command line for Keel's disk layout.
pub fn kernel_cmdline(disks: &Disks, selinux: Option<bool>, check: bool) -> String {
    let mut v = vec![
        "root=/dev/vda".to_owned(),
        format!("rootfstype={}", disks.root_fstype),
        "ro".into(),
        "console=ttyS0".into(),
        "loglevel=4".into(),
        // a read-only root: nothing to ask on the console
        "systemd.firstboot=off".into(),
        // a panic ends the VM (with -no-reboot) instead of hanging it
        "panic=-1".into(),
    ];
    if let Some(enforcing) = selinux {
        // Debian's kernel starts AppArmor first; `security=` selects SELinux.
        v.push("security=selinux".into());
        v.push(format!("enforcing={}", u8::from(enforcing)));
    }
    if check {
        v.push("systemd.unit=keel-check.target".into());
    }
    v.join(" ")
}

impl Qemu {
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = self.accel.args().iter().map(|s| s.to_string()).collect();
        let d = &self.disks;
        a.extend([
            "-m".to_owned(),
            self.memory_mb.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
            "-no-reboot".into(),
            "-display".into(),
            "none".into(),
            "-nic".into(),
            "none".into(),
            "-device".into(),
            "virtio-rng-pci".into(),
            "-kernel".into(),
            d.kernel.display().to_string(),
            "-initrd".into(),
            d.initrd.display().to_string(),
            "-append".into(),
            self.append.clone(),
            "-drive".into(),
            format!("file={},if=virtio,format=raw,readonly=on", drive(&d.root)),
            "-drive".into(),
            format!("file={},if=virtio,format=raw", drive(&d.var)),
        ]);
        match &self.console {
            Console::Terminal => a.extend(["-serial".into(), "mon:stdio".into()]),
            Console::File(p) => {
                a.extend(["-monitor".into(), "none".into(), "-serial".into()]);
                a.push(format!("file:{}", p.display()));
            }
            Console::Stdout => a.extend([
                "-monitor".into(),
                "none".into(),
                "-serial".into(),
                "stdio".into(),
            ]),
        }
        if let Some(r) = &self.report {
            a.extend(["-serial".into(), format!("file:{}", r.display())]);
        }
        a
    }

    /// The QEMU command, bounded by `limit` seconds (then SIGTERM, and SIGKILL 10 s later).
    pub fn command(&self, limit: u64) -> Cmd {
        Cmd::new("timeout")
            .args(["--kill-after=10", &limit.to_string(), QEMU])
            .args(self.args())
    }

    /// Run on the terminal: the console is the user's, so stdin must be too (which
    /// `exec::Cmd` closes by design).
    pub fn run_interactive(&self) -> Result<std::process::ExitStatus, Error> {
        std::process::Command::new(QEMU)
            .args(self.args())
            .status()
            .map_err(io(Path::new(QEMU)))
    }
}

/// A path in `-drive file=...` (a comma is doubled).
fn drive(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}
