//! A machine as data, and the pure function from it to QEMU's arguments.

use crate::host::{Accel, RunAs};
use std::path::{Path, PathBuf};

/// One QEMU machine: what `boot` and `vm` describe, and all they say about QEMU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub name: Option<Name>,
    pub accel: Accel,
    pub memory_mb: u32,
    pub cpus: u32,
    pub boot: Boot,
    /// Virtio disks, `/dev/vda` first.
    pub drives: Vec<Drive>,
    /// Host directories shared over virtio-9p.
    pub shares: Vec<Share>,
    /// The first serial port (`ttyS0`).
    pub console: Console,
    /// The second serial port (`ttyS1`), into this file: the guest's report
    /// ([`crate::report`]).
    pub report: Option<PathBuf>,
    /// Become this user once QEMU has opened its files.
    pub run_as: Option<RunAs>,
    /// A reboot in the guest restarts the machine (firmware again, the same disks) instead
    /// of ending QEMU (`-no-reboot`): for what spans boots, like an update.
    pub reboot: bool,
}

/// `-name`: the guest's name (also what finds the process in `/proc/PID/cmdline`), and
/// QEMU's process name (what `ps` and `top` show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub guest: String,
    pub process: String,
}

/// How the machine boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Direct kernel boot: QEMU loads the kernel (and initramfs) and passes `cmdline`.
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
    /// UEFI firmware (OVMF) boots from the disks, as a machine does: `code` read-only,
    /// `vars` the machine's own variable store (written: copy the template first).
    /// `smbios` are `-smbios` values the guest reads (`type=3,asset=...`).
    Firmware {
        code: PathBuf,
        vars: PathBuf,
        smbios: Vec<String>,
    },
}

/// Debian's OVMF: the firmware, and the template of its variable store.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// A raw image attached as a virtio disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub path: PathBuf,
    pub mode: DriveMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriveMode {
    /// The guest cannot write.
    ReadOnly,
    /// The guest's writes reach the file.
    Writable,
    /// The guest writes, QEMU keeps the writes in a temporary file: the file is unchanged.
    Snapshot,
}

/// A host directory shared over virtio-9p (`-virtfs`), mounted in the guest by its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub path: PathBuf,
    pub writable: bool,
}

/// Where the first serial port (the console) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// The terminal, QEMU's monitor multiplexed on it (Ctrl-a x quits): run with
    /// [`crate::run::run_interactive`].
    Terminal,
    /// Captured into `path` by [`crate::run::run`] (with what QEMU itself prints), and
    /// echoed to stderr as it comes when `echo`.
    Log { path: PathBuf, echo: bool },
}

impl Machine {
    /// QEMU's arguments (after the program's name).
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |x: &[&str]| a.extend(x.iter().map(|s| s.to_string()));
        if let Some(n) = &self.name {
            push(&["-name", &format!("{},process={}", n.guest, n.process)]);
        }
        if let Some(r) = &self.run_as {
            let [option, value] = r.args();
            push(&[&option, &value]);
        }
        push(&self.accel.args());
        push(&["-m", &self.memory_mb.to_string()]);
        push(&["-smp", &self.cpus.to_string()]);
        if !self.reboot {
            push(&["-no-reboot"]);
        }
        push(&["-display", "none", "-nic", "none"]);
        push(&["-device", "virtio-rng-pci"]);
        match &self.boot {
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                push(&["-kernel", &kernel.display().to_string()]);
                if let Some(i) = initrd {
                    push(&["-initrd", &i.display().to_string()]);
                }
                push(&["-append", cmdline]);
            }
            Boot::Firmware { code, vars, smbios } => {
                let (code, vars) = (option_path(code), option_path(vars));
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,unit=0,file={code},readonly=on"),
                ]);
                push(&[
                    "-drive",
                    &format!("if=pflash,format=raw,unit=1,file={vars}"),
                ]);
                for v in smbios {
                    push(&["-smbios", v]);
                }
            }
        }
        for d in &self.drives {
            let mode = match d.mode {
                DriveMode::ReadOnly => ",readonly=on",
                DriveMode::Writable => "",
                DriveMode::Snapshot => ",snapshot=on",
            };
            let file = option_path(&d.path);
            push(&["-drive", &format!("file={file},if=virtio,format=raw{mode}")]);
        }
        for s in &self.shares {
            // security_model=none: files are created as the user QEMU runs as, modes are
            // kept, a chown to another owner fails with EPERM in the guest (docs/vm.md);
            // multidevs=remap: a share spanning filesystems keeps inode numbers unique.
            let mut v = format!(
                "local,path={},mount_tag={},security_model=none,multidevs=remap",
                option_path(&s.path),
                s.tag
            );
            if !s.writable {
                v.push_str(",readonly=on");
            }
            push(&["-virtfs", &v]);
        }
        match &self.console {
            Console::Terminal => push(&["-serial", "mon:stdio"]),
            Console::Log { .. } => push(&["-monitor", "none", "-serial", "stdio"]),
        }
        if let Some(r) = &self.report {
            push(&["-serial", &format!("file:{}", r.display())]);
        }
        a
    }
}

/// A path as a value in QEMU's `key=value,...` option syntax: a comma is doubled.
fn option_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

#[cfg(test)]
mod tests;
