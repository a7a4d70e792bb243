//! Booting a Keel image under QEMU, and the boot check (docs/boot.md).
//!
//! - [`disk`]: the disk layout of an image: the image itself as the read-only root disk, a
//!   writable btrfs `/var` disk made from the image's `/var` (labelled `keel-var`, which
//!   the image's fstab mounts), the kernel and initramfs from the image's `/boot`.
//! - [`machine`] and [`kernel_cmdline`]: the machine that boots those disks, described
//!   for crate `qemu`, which runs it.
//! - [`report`]: the assertions on what the boot check in the image reported.
//! - [`check`]: one bounded boot with `systemd.unit=keel-check.target`, then the verdicts.
//!
//! **Invariant:** a boot is bounded in time (`qemu::run`); a boot that never reports, a
//! kernel panic or the time limit is an error naming QEMU's command line and the console
//! log, with its tail. Nothing here judges by the console: assertions read only the report.

pub mod disk;
pub mod report;

use disk::Disks;
use exec::Cmd;
use qemu::{Accel, Boot, Console, Drive, DriveMode, Machine};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error(transparent)]
    Tree(#[from] rootdir::Error),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{}: no such image (build it first)", .0.display())]
    Missing(PathBuf),
    #[error(transparent)]
    Qemu(#[from] qemu::Error),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let at = rootdir::PathError::at(path);
    move |e| Error::Io(at(e))
}

/// The kernel command line for Keel's disk layout.
pub fn kernel_cmdline(disks: &Disks, selinux: Option<bool>, check: bool) -> String {
    let mut v = vec![
        "root=/dev/vda".to_owned(),
        format!("rootfstype={}", disks.root_fstype),
        "ro".into(),
    ];
    v.extend(image_cmdline(selinux));
    if check {
        v.push("systemd.unit=keel-check.target".into());
    }
    v.join(" ")
}

/// What every boot of an image puts on the kernel command line after the root's: the
/// serial console, a read-only root's settings, and SELinux's (`Some(enforcing)`). The disk
/// image's unified kernel image carries the same (crate `disk`).
pub fn image_cmdline(selinux: Option<bool>) -> Vec<String> {
    let mut v = vec![
        "console=ttyS0".to_owned(),
        "loglevel=4".into(),
        // a read-only root: nothing to ask on the console
        "systemd.firstboot=off".into(),
        // a panic ends the VM (with -no-reboot) instead of hanging it, and reboots a machine
        "panic=-1".into(),
    ];
    if let Some(enforcing) = selinux {
        // Debian's kernel starts AppArmor first; `security=` selects SELinux.
        v.push("security=selinux".into());
        v.push(format!("enforcing={}", u8::from(enforcing)));
    }
    v
}

/// The machine that boots `disks`: their kernel and initramfs with `cmdline`, the image
/// as `/dev/vda` (read-only), the `/var` disk as `/dev/vdb`; 2 GiB, 2 CPUs, no report
/// port (the caller changes what it needs).
pub fn machine(disks: &Disks, accel: Accel, cmdline: String, console: Console) -> Machine {
    Machine {
        name: None,
        accel,
        memory_mb: 2048,
        cpus: 2,
        boot: Boot::Kernel {
            kernel: disks.kernel.clone(),
            initrd: Some(disks.initrd.clone()),
            cmdline,
        },
        drives: vec![
            Drive {
                path: disks.root.clone(),
                mode: DriveMode::ReadOnly,
            },
            Drive {
                path: disks.var.clone(),
                mode: DriveMode::Writable,
            },
        ],
        shares: Vec::new(),
        console,
        report: None,
        run_as: None,
        reboot: false,
    }
}

/// How to boot for a check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Where the disks, the console log and the report go (replaced on each run).
    pub dir: PathBuf,
    /// `Some((enforcing, policy name))` for an SELinux variant.
    pub selinux: Option<(bool, String)>,
    /// Seconds before QEMU is stopped.
    pub limit: u64,
    pub memory_mb: u32,
    pub cpus: u32,
}

/// What one checked boot gave.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub accel: Accel,
    pub cmdline: String,
    pub report: qemu::Report,
    pub verdicts: Vec<report::Verdict>,
    pub console: PathBuf,
    pub report_file: PathBuf,
    /// Seconds: making the disks, and QEMU from start to power-off.
    pub disk_secs: f64,
    pub boot_secs: f64,
}

impl CheckOutcome {
    pub fn ok(&self) -> bool {
        self.verdicts.iter().all(|v| v.ok)
    }
}

/// Boot `image` once with the boot check and judge what it reported.
pub fn check(image: &Path, opts: &CheckOptions) -> Result<CheckOutcome, Error> {
    fs::create_dir_all(&opts.dir).map_err(io(&opts.dir))?;
    let console = opts.dir.join("console.log");
    let report_file = opts.dir.join("report.txt");
    let t = Instant::now();
    let disks = disk::prepare(image, &opts.dir, &opts.dir.join("disks.log"))?;
    let disk_secs = t.elapsed().as_secs_f64();
    let expect = report::Expect {
        selinux: opts.selinux.clone(),
        root_fstype: disks.root_fstype.to_owned(),
        var_log_absent_at_build: disks.var_log_absent,
        disk: None,
    };
    let cmdline = kernel_cmdline(&disks, opts.selinux.as_ref().map(|s| s.0), true);
    let accel = Accel::detect(&disks.kernel, &opts.dir);
    let m = machine(&disks, accel, cmdline, console_log(&console));
    let missing = "a report from the boot check (is keel-check.target in the image?)";
    run_checked(m, opts, &expect, missing, console, report_file, disk_secs)
}

/// The serial console into `path`, not echoed.
fn console_log(path: &Path) -> Console {
    Console::Log {
        path: path.to_owned(),
        echo: false,
    }
}

/// Run the check machine `m` with `opts`' memory, CPUs and time limit, its report into
/// `report_file`, and judge the report against `expect`; no report is an error saying what
/// is `missing`.
fn run_checked(
    m: Machine,
    opts: &CheckOptions,
    expect: &report::Expect,
    missing: &str,
    console: PathBuf,
    report_file: PathBuf,
    disk_secs: f64,
) -> Result<CheckOutcome, Error> {
    let m = Machine {
        memory_mb: opts.memory_mb,
        cpus: opts.cpus,
        report: Some(report_file.clone()),
        ..m
    };
    let run = qemu::run::run(&m, Some(Duration::from_secs(opts.limit)))?;
    if run.report.sections.is_empty() {
        return Err(run.unreported("the machine", missing).into());
    }
    let verdicts = report::verdicts(&run.report, expect);
    // What the kernel was given: the machine's own, or (firmware boots) what it reported.
    let cmdline = match &m.boot {
        Boot::Kernel { cmdline, .. } => cmdline.clone(),
        Boot::Firmware { .. } => run.report.get("cmdline").to_owned(),
    };
    Ok(CheckOutcome {
        accel: m.accel,
        cmdline,
        report: run.report,
        verdicts,
        console,
        report_file,
        disk_secs,
        boot_secs: run.secs,
    })
}

/// The machine that boots a disk image as a machine would: UEFI firmware (OVMF, with its
/// own variable store `vars`), the disk as `/dev/vda`, writable; 2 GiB, 2 CPUs. `target`:
/// the image's `keel-<name>.target` to boot into (the boot check's `keel-check`), said in
/// the SMBIOS chassis asset tag.
pub fn disk_machine(
    raw: &Path,
    vars: &Path,
    accel: Accel,
    console: Console,
    target: Option<&str>,
) -> Machine {
    Machine {
        name: None,
        accel,
        memory_mb: 2048,
        cpus: 2,
        boot: Boot::Firmware {
            code: qemu::OVMF_CODE.into(),
            vars: vars.to_owned(),
            // The unified kernel image's command line is fixed: the image's
            // keel-check-generator reads this instead of `systemd.unit=`.
            smbios: target
                .map(|t| format!("type=3,asset={t}"))
                .into_iter()
                .collect(),
        },
        drives: vec![Drive {
            path: raw.to_owned(),
            mode: DriveMode::Writable,
        }],
        shares: Vec::new(),
        console,
        report: None,
        run_as: None,
        reboot: false,
    }
}

/// The target (and SMBIOS chassis asset tag) of the boot check on a disk image.
pub const CHECK_TARGET: &str = "keel-check";

/// A fresh copy of the disk image `raw` and of OVMF's variable store in `dir` (each boot is
/// a machine's first): their paths.
pub fn fresh_disk(raw: &Path, dir: &Path, log: &Path) -> Result<(PathBuf, PathBuf), Error> {
    if !raw.is_file() {
        return Err(Error::Missing(raw.to_owned()));
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    let (disk, vars) = (dir.join("disk.raw"), dir.join("vars.fd"));
    for (from, to) in [(raw, &disk), (Path::new(qemu::OVMF_VARS), &vars)] {
        let _ = fs::remove_file(to);
        Cmd::new("cp")
            .arg("--sparse=always")
            .arg(from)
            .arg(to)
            .log(log)
            .run()?;
    }
    Ok((disk, vars))
}

/// Boot the disk image `raw` once with the boot check (firmware, systemd-boot, the unified
/// kernel image, the verity root) and judge what it reported. `probe_kernel` is the
/// image's kernel, for [`Accel::detect`].
pub fn check_disk(
    raw: &Path,
    root_fstype: &str,
    expect_disk: report::DiskExpect,
    probe_kernel: &Path,
    opts: &CheckOptions,
) -> Result<CheckOutcome, Error> {
    fs::create_dir_all(&opts.dir).map_err(io(&opts.dir))?;
    let console = opts.dir.join("console.log");
    let report_file = opts.dir.join("report.txt");
    let t = Instant::now();
    let (disk, vars) = fresh_disk(raw, &opts.dir, &opts.dir.join("disks.log"))?;
    let disk_secs = t.elapsed().as_secs_f64();
    let expect = report::Expect {
        selinux: opts.selinux.clone(),
        root_fstype: root_fstype.to_owned(),
        // The disk has no /var: the image makes it on first boot.
        var_log_absent_at_build: true,
        disk: Some(expect_disk),
    };
    let accel = Accel::detect(probe_kernel, &opts.dir);
    let m = disk_machine(
        &disk,
        &vars,
        accel,
        console_log(&console),
        Some(CHECK_TARGET),
    );
    let missing = "a report from the boot check (is keel-check-generator in the image?)";
    run_checked(m, opts, &expect, missing, console, report_file, disk_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_machine_and_its_kernel_command_line() {
        let disks = Disks {
            root: "/o/v.squashfs".into(),
            root_fstype: "squashfs",
            var: "/w/var.img".into(),
            kernel: "/w/vmlinuz".into(),
            initrd: "/w/initrd.img".into(),
            var_log_absent: true,
        };
        let plain = "root=/dev/vda rootfstype=squashfs ro console=ttyS0 loglevel=4 systemd.firstboot=off panic=-1";
        assert_eq!(kernel_cmdline(&disks, None, false), plain);
        assert_eq!(
            kernel_cmdline(&disks, Some(true), true),
            format!("{plain} security=selinux enforcing=1 systemd.unit=keel-check.target")
        );
        assert_eq!(
            kernel_cmdline(&disks, Some(false), false),
            format!("{plain} security=selinux enforcing=0")
        );
        let m = machine(&disks, Accel::Tcg, "c".into(), Console::Terminal);
        assert_eq!(
            m.boot,
            Boot::Kernel {
                kernel: disks.kernel.clone(),
                initrd: Some(disks.initrd.clone()),
                cmdline: "c".into(),
            }
        );
        // the image is /dev/vda and read-only, the /var disk /dev/vdb and writable
        let drives: Vec<_> = m.drives.iter().map(|d| (d.path.clone(), d.mode)).collect();
        assert_eq!(
            drives,
            [
                (disks.root.clone(), DriveMode::ReadOnly),
                (disks.var.clone(), DriveMode::Writable)
            ]
        );
        assert!(m.shares.is_empty() && m.report.is_none() && m.run_as.is_none());
    }
}
