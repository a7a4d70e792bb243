//! Booting a Keel image under QEMU, and the boot check (docs/boot.md).
//!
//! - [`disk`]: the disk layout of an image: the image itself as the read-only root disk, a
//!   writable btrfs `/var` disk made from the image's `/var` (labelled `keel-var`, which
//!   the image's fstab mounts), the kernel and initramfs from the image's `/boot`.
//! - [`qemu`]: the invocation: direct kernel boot, KVM when it works and TCG otherwise,
//!   the serial console on the terminal or in a file, a second serial port for the report.
//! - [`report`]: what the boot check in the image reported, and the assertions on it.
//! - [`check`]: one bounded boot with `systemd.unit=keel-check.target`, then the verdicts.
//!
//! **Invariant:** a boot is bounded in time (`timeout` around QEMU); a boot that never
//! reports, a kernel panic or the time limit is an error carrying the console log's path
//! and tail. Nothing here judges by the console: assertions read only the report.

pub mod disk;
pub mod qemu;
pub mod report;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
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
    #[error("the boot did not finish within {limit} s (QEMU stopped); console log {}:\n{}", console.display(), indent(tail))]
    Timeout {
        limit: u64,
        console: PathBuf,
        tail: String,
    },
    #[error("kernel panic; console log {}:\n{}", console.display(), indent(tail))]
    Panic { console: PathBuf, tail: String },
    #[error("the machine stopped without a report from the boot check (is keel-check.target in the image?); console log {}:\n{}", console.display(), indent(tail))]
    NoReport { console: PathBuf, tail: String },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
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
    pub accel: qemu::Accel,
    pub cmdline: String,
    pub report: report::Report,
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
    let qemu_log = opts.dir.join("qemu.log");
    for f in [&console, &report_file, &qemu_log] {
        match fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(f)(e)),
            _ => {}
        }
    }
    let t = Instant::now();
    let disks = disk::prepare(image, &opts.dir, &opts.dir.join("disks.log"))?;
    let disk_secs = t.elapsed().as_secs_f64();
    let expect = report::Expect {
        selinux: opts.selinux.clone(),
        root_fstype: disks.root_fstype.to_owned(),
        var_log_absent_at_build: disks.var_log_absent,
    };
    let cmdline = qemu::kernel_cmdline(&disks, opts.selinux.as_ref().map(|s| s.0), true);
    let q = qemu::Qemu {
        accel: qemu::Accel::detect(&disks.kernel, &opts.dir),
        memory_mb: opts.memory_mb,
        cpus: opts.cpus,
        disks,
        append: cmdline.clone(),
        console: qemu::Console::File(console.clone()),
        report: Some(report_file.clone()),
    };
    let t = Instant::now();
    // 124/137: `timeout` stopped QEMU (TERM, then KILL): reported below with the console.
    let out = q
        .command(opts.limit)
        .ok_codes(&[0, 124, 137])
        .log(&qemu_log)
        .output()?;
    let boot_secs = t.elapsed().as_secs_f64();
    let console_text = fs::read(&console)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let tail = exec::tail_lines(&console_text, 25);
    if console_text.contains("Kernel panic") {
        return Err(Error::Panic { console, tail });
    }
    let report_text = fs::read(&report_file)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let report = report::Report::parse(&report_text);
    if matches!(out.status.code(), Some(124 | 137)) {
        return Err(Error::Timeout {
            limit: opts.limit,
            console,
            tail,
        });
    }
    if report.sections.is_empty() {
        return Err(Error::NoReport { console, tail });
    }
    let verdicts = report::verdicts(&report, &expect);
    Ok(CheckOutcome {
        accel: q.accel,
        cmdline,
        report,
        verdicts,
        console,
        report_file,
        disk_secs,
        boot_secs,
    })
}
