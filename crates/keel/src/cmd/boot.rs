//! `keel boot --variant V [--disk] [--check]`: build what is missing, then start the image
//! under QEMU (docs/boot.md), or its disk with UEFI firmware (docs/disk.md).

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use variant::Project;

pub struct Args {
    pub variant: String,
    /// The Gentoo repository for the build (`--gentoo-repo`).
    pub repo: Option<PathBuf>,
    pub check: bool,
    /// Boot the disk image with firmware instead of the image with -kernel.
    pub disk: bool,
    /// Interactive boot: the serial console into this file instead of the terminal.
    pub console_log: Option<PathBuf>,
    /// Seconds before a checked boot is stopped.
    pub timeout: u64,
    pub memory_mb: u32,
    pub cpus: u32,
}

pub fn run(project: &Project, a: &Args) -> Result<ExitCode> {
    let resolved = project.resolve(&a.variant)?;
    // Build what is missing (a build with nothing changed does no work).
    let code = super::build::run(
        project,
        &super::build::Args {
            variant: a.variant.clone(),
            repo: a.repo.clone(),
            site: super::site::build_site(&Default::default())?,
            ..Default::default()
        },
    )?;
    if code != ExitCode::SUCCESS {
        bail!("the build of `{}` failed", a.variant);
    }
    let paths = pipeline::Layout::new(&project.root, &a.variant, None);
    let s = &resolved.settings;
    let image = paths
        .output
        .join(format!("{}.{}", a.variant, s.image_format));
    let selinux = s.selinux.then(|| {
        (
            s.selinux_mode == variant::schema::SelinuxMode::Enforcing,
            s.selinux_type.clone(),
        )
    });
    if a.disk {
        return run_disk(&paths, a, s, selinux);
    }
    if a.check {
        let opts = boot::CheckOptions {
            dir: paths.work.join("boot"),
            selinux,
            limit: a.timeout,
            memory_mb: a.memory_mb,
            cpus: a.cpus,
        };
        eprintln!(
            "booting {} with the boot check (QEMU, at most {} s)...",
            image.display(),
            a.timeout
        );
        let out =
            boot::check(&image, &opts).with_context(|| format!("boot check of `{}`", a.variant))?;
        print_outcome(&out);
        verdict(a, &out)
    } else {
        let dir = paths.work.join("boot-interactive");
        let disks = boot::disk::prepare(&image, &dir, &dir.join("disks.log"))
            .context("making the boot disks")?;
        let append = boot::kernel_cmdline(&disks, selinux.as_ref().map(|s| s.0), false);
        let accel = qemu::Accel::detect(&disks.kernel, &dir);
        let m = qemu::Machine {
            memory_mb: a.memory_mb,
            cpus: a.cpus,
            ..boot::machine(&disks, accel, append, console(a))
        };
        start(a, &m)
    }
}

/// Exit 0 when every assertion held; otherwise an error naming the failed ones, the report
/// and the console log.
fn verdict(a: &Args, out: &boot::CheckOutcome) -> Result<ExitCode> {
    if out.ok() {
        return Ok(ExitCode::SUCCESS);
    }
    let failed: Vec<&str> = out
        .verdicts
        .iter()
        .filter(|v| !v.ok)
        .map(|v| v.name)
        .collect();
    bail!(
        "boot check of `{}` failed: {} (report: {}, console: {})",
        a.variant,
        failed.join(", "),
        out.report_file.display(),
        out.console.display()
    )
}

/// An interactive boot's console: the terminal, or `--console-log`.
fn console(a: &Args) -> qemu::Console {
    match &a.console_log {
        Some(p) => qemu::Console::Log {
            path: p.clone(),
            echo: false,
        },
        None => qemu::Console::Terminal,
    }
}

/// Run an interactive machine until it stops.
fn start(a: &Args, m: &qemu::Machine) -> Result<ExitCode> {
    eprintln!(
        "starting QEMU ({:?}); {}",
        m.accel,
        if a.console_log.is_some() {
            "the console goes to the log file; `poweroff` in the guest, Ctrl-C or a signal to keel ends it"
        } else {
            "Ctrl-a x quits"
        }
    );
    if a.console_log.is_some() {
        let run = qemu::run::run(m, None)?;
        eprintln!("the machine stopped after {:.1} s", run.secs);
        return Ok(ExitCode::SUCCESS);
    }
    let status = qemu::run::run_interactive(m)?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--disk`: the disk image, booted by OVMF through systemd-boot.
fn run_disk(
    paths: &pipeline::Layout,
    a: &Args,
    s: &variant::Settings,
    selinux: Option<(bool, String)>,
) -> Result<ExitCode> {
    if s.disk.is_none() {
        bail!(
            "variant `{}` makes no disk: add a `[disk]` table to its variant.toml (docs/disk.md)",
            a.variant
        );
    }
    let made = disk::read_made(&paths.output, &a.variant)
        .with_context(|| format!("the disk of `{}`", a.variant))?;
    let probe_kernel = paths.work.join("disk").join("vmlinuz");
    if a.check {
        let opts = boot::CheckOptions {
            dir: paths.work.join("boot-disk"),
            selinux,
            limit: a.timeout,
            memory_mb: a.memory_mb,
            cpus: a.cpus,
        };
        eprintln!(
            "booting {} with UEFI firmware and the boot check (QEMU, at most {} s)...",
            made.raw.display(),
            a.timeout
        );
        let expect = boot::report::DiskExpect {
            roothash: made.roothash.clone(),
            entry: made.entry.clone(),
            root_device: disk::ROOT_DEVICE.into(),
        };
        let fstype = boot::disk::fstype_of(
            &paths
                .output
                .join(format!("{}.{}", a.variant, s.image_format)),
        )?;
        let out = boot::check_disk(&made.raw, fstype, expect, &probe_kernel, &opts)
            .with_context(|| format!("boot check of the disk of `{}`", a.variant))?;
        print_outcome(&out);
        return verdict(a, &out);
    }
    let dir = paths.work.join("boot-disk-interactive");
    let (raw, vars) =
        boot::fresh_disk(&made.raw, &dir, &dir.join("disks.log")).context("copying the disk")?;
    let accel = qemu::Accel::detect(&probe_kernel, &dir);
    let m = qemu::Machine {
        memory_mb: a.memory_mb,
        cpus: a.cpus,
        ..boot::disk_machine(&raw, &vars, accel, console(a), None)
    };
    start(a, &m)
}

fn print_outcome(out: &boot::CheckOutcome) {
    println!("accelerator: {:?}", out.accel);
    println!("kernel command line: {}", out.cmdline);
    println!(
        "disks made in {:.1} s; QEMU ran {:.1} s",
        out.disk_secs, out.boot_secs
    );
    println!(
        "--- what the running system reported ({})",
        out.report_file.display()
    );
    for (name, text) in &out.report.sections {
        println!("== {name}");
        for l in text.lines() {
            println!("   {l}");
        }
    }
    println!("--- assertions");
    for v in &out.verdicts {
        let mut lines = v.detail.lines();
        println!(
            "{} {}: {}",
            if v.ok { "PASS" } else { "FAIL" },
            v.name,
            lines.next().unwrap_or("")
        );
        for l in lines {
            println!("       {l}");
        }
    }
}
