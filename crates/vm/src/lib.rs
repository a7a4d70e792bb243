//! `keel vm`: run a Keel command inside a QEMU VM whose root filesystem is a container
//! image, with a kernel that has no SELinux policy loaded (docs/vm.md).
//!
//! - [`build_env`]: the default image (no `--image`): Debian made by `build-env.sh` with
//!   mmdebstrap and umoci, once per key, under `build/tools/`.
//! - [`rootdisk`]: the image unpacked (crate `oci`) into an ext4 root disk, once per image
//!   and kernel; Keel's PID 1 (`init.sh`) in it.
//! - [`script`]: the run script PID 1 runs: the 9p shares, the build disk, the
//!   environment that moves Keel's directories, the command.
//! - [`run`]: one run: a named VM's state, the lock, QEMU, the console on the terminal
//!   and in a log, the exit code, ownership of what the VM wrote.
//!
//! **Invariants:** a VM never outlives `keel vm` (a signal stops QEMU, and QEMU runs
//! with a parent-death signal for the case where `keel vm` itself is killed); one VM per
//! name at a time (a lock); the inner command's exit code is `keel vm`'s; what the VM
//! writes into the host's output and cache belongs to the invoking user.

pub mod build_env;
pub mod rootdisk;
pub mod script;

pub use rootdisk::KernelChoice;

use exec::Cmd;
use script::{Share, SETUP_FAILED};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error(transparent)]
    Oci(#[from] oci::Error),
    #[error(transparent)]
    Tree(#[from] rootdir::Error),
    #[error(transparent)]
    Boot(#[from] boot::Error),
    #[error(transparent)]
    Portage(#[from] portage::venv::Error),
    #[error(transparent)]
    Debian(Box<debian::Error>),
    #[error("keel vm: making the default build environment failed (log {}; the next run makes it again, or give --image): {cause}", log.display())]
    BuildEnv {
        log: PathBuf,
        cause: Box<exec::Error>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("VM `{name}` is running already (lock {}): wait for it, or pick another --name", lock.display())]
    Busy { name: String, lock: PathBuf },
    #[error("keel vm: interrupted by signal {signal}; the VM `{name}` was stopped (console log {})", console.display())]
    Interrupted {
        signal: i32,
        name: String,
        console: PathBuf,
    },
    #[error(transparent)]
    Qemu(#[from] qemu::Error),
    #[error("keel vm: setting up the VM `{name}` failed (exit {code}); console log {}:\n{}", console.display(), exec::indent(tail))]
    Setup {
        name: String,
        code: i32,
        console: PathBuf,
        tail: String,
    },
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let at = rootdir::PathError::at(path);
    move |e| Error::Io(at(e))
}

/// One `keel vm` run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The project (shared read-only at [`SRC`]).
    pub project: PathBuf,
    /// The host's build directory: VM state under `vm/`, the Portage venv under `tools/`.
    pub build_dir: PathBuf,
    /// Shared read-write at [`CACHE`]: distfiles, binary packages, `.deb`s.
    pub cache_dir: PathBuf,
    /// Shared read-write at [`OUT`]: where the inner build's `<variant>/` goes.
    pub output_dir: PathBuf,
    /// The container image: an OCI layout directory or archive, `PATH[:TAG]`.
    pub image: String,
    pub name: String,
    pub kernel: KernelChoice,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Seconds before the VM is stopped (None: no limit).
    pub timeout: Option<u64>,
    /// Size of the build disk when it is made (sparse).
    pub build_disk_gib: u64,
    /// Arguments of the inner `keel`.
    pub args: Vec<String>,
    /// The host's working directory (the inner one is the same place under [`SRC`]).
    pub cwd: PathBuf,
    /// Variables passed through (`SOURCE_DATE_EPOCH`, ...).
    pub env: Vec<(String, String)>,
    /// The invoking user and group: owners of what the VM writes to the shares.
    pub owner: (u32, u32),
}

/// Fixed paths in the VM.
pub const SRC: &str = "/keel/src";
pub const OUT: &str = "/keel/out";
pub const CACHE: &str = "/keel/cache";
pub const BUILD: &str = "/keel/build";
pub const TOOLS: &str = "/keel/tools";

/// What a run gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The inner command's exit code.
    pub code: i32,
    pub console: PathBuf,
    /// Seconds making the root disk (0 when kept from an earlier run).
    pub disk_secs: f64,
    /// Seconds from starting QEMU to the inner command starting (host clock).
    pub start_secs: Option<f64>,
    /// Seconds from starting QEMU to its end.
    pub vm_secs: f64,
}

/// The default VM name of a project: its directory's name and a hash of its path, so two
/// checkouts of one project get different VMs.
pub fn default_name(project: &Path) -> String {
    use sha2::{Digest, Sha256};
    let base: String = project
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    let h = Sha256::digest(project.as_os_str().as_encoded_bytes());
    format!("{}-{:02x}{:02x}{:02x}", base, h[0], h[1], h[2])
}

pub fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "--name `{name}`: use 1-48 letters, digits, `-`, `_`, `.` (not first)"
        )))
    }
}

/// The state of a named VM: `build/vm/<name>/`.
pub fn state_dir(build_dir: &Path, name: &str) -> PathBuf {
    build_dir.join("vm").join(name)
}

/// Run the command in the VM. Progress goes to `progress`; the console to the terminal
/// (stderr) and to `build/vm/<name>/console.log`.
pub fn run(opts: &Options, progress: &mut dyn Write) -> Result<Outcome, Error> {
    check_name(&opts.name)?;
    let state = state_dir(&opts.build_dir, &opts.name);
    fs::create_dir_all(&state).map_err(io(&state))?;
    let lock_path = state.join("lock");
    let Some(_lock) = rootdir::try_lock(&lock_path).map_err(io(&lock_path))? else {
        return Err(Error::Busy {
            name: opts.name.clone(),
            lock: lock_path,
        });
    };
    let log = state.join("vm.log");
    match fs::remove_file(&log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&log)(e)),
        _ => {}
    }
    let console = state.join("console.log");

    let root = rootdisk::ensure(
        &opts.build_dir.join("vm/images"),
        &opts.image,
        &opts.kernel,
        &log,
        progress,
    )?;

    // The build disk: the inner build directory, kept between runs of this VM (so
    // rebuilds in the VM are incremental), on a local disk (not 9p).
    let build_disk = state.join("build.ext4");
    if !build_disk.exists() {
        let tmp = state.join("build.ext4.tmp");
        let f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.set_len(opts.build_disk_gib << 30).map_err(io(&tmp))?;
        drop(f);
        Cmd::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "keel-build"])
            .arg(&tmp)
            .log(&log)
            .run()?;
        fs::rename(&tmp, &build_disk).map_err(io(&build_disk))?;
    }

    // The tools share: this keel and the run script.
    let tools = state.join("tools");
    if tools.exists() {
        fs::remove_dir_all(&tools).map_err(io(&tools))?;
    }
    fs::create_dir_all(&tools).map_err(io(&tools))?;
    let exe = std::env::current_exe().map_err(io(Path::new("/proc/self/exe")))?;
    fs::copy(&exe, tools.join("keel")).map_err(io(&exe))?;

    for d in [&opts.output_dir, &opts.cache_dir] {
        fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut shares = vec![
        share("src", &opts.project, SRC, false),
        share("out", &opts.output_dir, OUT, true),
        share("cache", &opts.cache_dir, CACHE, true),
    ];
    let mut env: Vec<(String, String)> = vec![
        ("KEEL_PROJECT".into(), SRC.into()),
        ("KEEL_BUILD_DIR".into(), BUILD.into()),
        ("KEEL_CACHE_DIR".into(), CACHE.into()),
        ("KEEL_OUTPUT_DIR".into(), OUT.into()),
        ("HOME".into(), "/root".into()),
        ("TERM".into(), "dumb".into()),
    ];
    if !root.has_portage {
        // The host's venv, mounted where it lives on the host (a venv's scripts name
        // their interpreter by absolute path); the image's python3 runs it.
        let venv = portage::venv::ensure(&opts.build_dir)?;
        let venv = fs::canonicalize(&venv).map_err(io(&venv))?;
        let guest = venv.to_string_lossy().into_owned();
        shares.push(share("venv", &venv, &guest, false));
        env.push(("KEEL_PORTAGE_VENV".into(), guest));
    }
    env.extend(opts.env.iter().cloned());
    let cwd = match opts.cwd.strip_prefix(&opts.project) {
        Ok(rel) if !rel.as_os_str().is_empty() => format!("{SRC}/{}", rel.display()),
        _ => SRC.to_owned(),
    };
    let mut command = vec![format!("{TOOLS}/keel")];
    command.extend(opts.args.iter().cloned());
    let spec = script::RunSpec {
        shares: shares.clone(),
        build_device: "/dev/vdb".into(),
        build_mount: BUILD.into(),
        env,
        cwd,
        command,
    };
    let run_file = tools.join("run");
    fs::write(&run_file, script::run_script(&spec)).map_err(io(&run_file))?;

    let accel = qemu::Accel::detect(&root.kernel, &state);
    let (uid, gid) = opts.owner;
    // The tools share is mounted by init.sh itself, the others by the run script.
    let tools_share = share("tools", &tools, TOOLS, false).share;
    let qemu_shares = std::iter::once(tools_share)
        .chain(shares.iter().map(|s| s.share.clone()))
        .collect();
    let m = qemu::Machine {
        name: Some(qemu::Name {
            guest: format!("keel-vm-{}", opts.name),
            process: "keel-vm".into(),
        }),
        accel,
        memory_mb: opts.memory_mb,
        cpus: opts.cpus,
        boot: qemu::Boot::Kernel {
            kernel: root.kernel.clone(),
            initrd: Some(root.initrd.clone()),
            cmdline: "root=/dev/vda rootfstype=ext4 rw console=ttyS0 quiet loglevel=3 panic=-1 init=/keel/init".into(),
        },
        drives: vec![
            qemu::Drive {
                path: root.disk.clone(),
                mode: qemu::DriveMode::Snapshot,
            },
            qemu::Drive {
                path: build_disk,
                mode: qemu::DriveMode::Writable,
            },
        ],
        shares: qemu_shares,
        console: qemu::Console::Log {
            path: console.clone(),
            echo: true,
        },
        report: Some(state.join("report")),
        // QEMU opens the disks, the report file and the share roots first, then becomes
        // the invoking user: what the VM writes through the shares is theirs.
        run_as: (uid != rustix::process::geteuid().as_raw()).then(|| qemu::RunAs::probe(uid, gid)),
        reboot: false,
    };
    let _ = writeln!(
        progress,
        "keel vm: starting VM `{}` ({:?}, {} MiB, {} CPUs); console log {}",
        opts.name,
        accel,
        opts.memory_mb,
        opts.cpus,
        console.display()
    );
    let run = match qemu::run::run(&m, opts.timeout.map(Duration::from_secs)) {
        Ok(run) => run,
        Err(qemu::Error::Interrupted { signal, at }) => {
            return Err(Error::Interrupted {
                signal,
                name: opts.name.clone(),
                console: at.console,
            })
        }
        Err(e) => return Err(e.into()),
    };
    // The exit code is the inner command's, from the report (not QEMU's).
    let started = !run.report.get(script::START).is_empty();
    let code = match run.report.get(script::EXIT).parse::<i32>() {
        Ok(SETUP_FAILED) if !started => {
            return Err(Error::Setup {
                name: opts.name.clone(),
                code: SETUP_FAILED,
                tail: run.console_tail(),
                console,
            })
        }
        Ok(c) => c,
        Err(_) => {
            let what = format!("keel vm: the VM `{}`", opts.name);
            return Err(run.unreported(&what, "reporting an exit code").into());
        }
    };
    Ok(Outcome {
        code,
        console,
        disk_secs: root.made_secs,
        start_secs: run.arrived(script::START),
        vm_secs: run.secs,
    })
}

fn share(tag: &str, host: &Path, guest: &str, writable: bool) -> Share {
    Share {
        share: qemu::Share {
            tag: tag.into(),
            path: host.to_owned(),
            writable,
        },
        guest: guest.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let n = default_name(Path::new("/work/my project"));
        assert!(
            n.starts_with("my-project-") && n.len() == "my-project-".len() + 6,
            "{n}"
        );
        check_name(&n).unwrap();
        assert_ne!(n, default_name(Path::new("/other/my project")));
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
