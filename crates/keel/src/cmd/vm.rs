//! `keel vm [OPTIONS] -- KEEL-ARGS...`: run a Keel command in a build VM (docs/vm.md).

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use variant::Project;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The build environment: an OCI image layout directory or archive, PATH[:TAG] [default: Keel's Debian bookworm build environment, made once into build/tools/vm-build-env-KEY/]
    #[arg(
        long,
        value_name = "REF",
        env = "KEEL_VM_IMAGE",
        long_help = "The build environment: an OCI image layout directory or archive, PATH[:TAG].\n\n\
            Default: Keel's own Debian bookworm build environment (the build tools, the SELinux policy tools, \
            a compiler, a kernel and initramfs; Keel and the Portage venv are shared in). The first \
            `keel vm` without --image makes it as root with mmdebstrap and umoci (a few minutes) into \
            build/tools/vm-build-env-KEY/ (KEY: a hash of Keel's script and of KEEL_DEBIAN_MIRROR, \
            KEEL_DEBIAN_SECURITY_MIRROR and the architecture), its .debs kept in \
            build/cache/debian/bookworm/; later runs use it at once. To make it again, delete that \
            directory (`keel clean --all` removes it with the rest of build/). See docs/vm.md."
    )]
    pub image: Option<String>,
    /// The VM's name: its state lives in build/vm/NAME, one run per name at a time [default: the project's]
    #[arg(long)]
    pub name: Option<String>,
    /// Where the inner build's <variant>/ goes (shared read-write) [default: build/]
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// `host` (the running kernel from /boot), `image` (the image's /boot), or a kernel file [default: host if /boot has it, else image]
    #[arg(long, value_name = "host|image|FILE")]
    pub kernel: Option<String>,
    /// The initramfs for --kernel FILE
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// /lib/modules/<version> for --kernel FILE (copied into the VM's root)
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 4096)]
    pub memory: u32,
    /// Guest CPUs [default: the host's]
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Seconds before the VM is stopped [default: no limit]
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Size of the VM's build disk in GiB when it is made (a sparse file)
    #[arg(long, default_value_t = 64)]
    pub disk_size: u64,
    /// The Keel command to run in the VM, e.g. `-- build --variant selinux`
    #[arg(last = true, required = true, value_name = "KEEL-ARGS")]
    pub args: Vec<String>,
}

/// Variables a build reads that the VM passes on.
const PASSED_ON: &[&str] = &[
    "SOURCE_DATE_EPOCH",
    "KEEL_DEBIAN_MIRROR",
    "KEEL_DEBIAN_SECURITY_MIRROR",
];

pub fn run(project: &Project, a: Args) -> Result<ExitCode> {
    let image = match a.image.filter(|i| !i.is_empty()) {
        Some(i) => i,
        None => vm::build_env::ensure(
            &pipeline::Layout::build_dir(&project.root),
            &pipeline::Layout::cache_dir(&project.root),
            &mut std::io::stderr(),
        )?
        .image(),
    };
    let cwd = std::env::current_dir()?;
    let output_dir = match a.output {
        Some(o) if o.is_relative() => cwd.join(o),
        Some(o) => o,
        None => pipeline::Layout::outputs_dir(&project.root),
    };
    let kernel = vm::KernelChoice::parse(a.kernel.as_deref(), a.initrd, a.modules)?;
    let cpus = a.cpus.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(2)
    });
    let opts = vm::Options {
        name: a.name.unwrap_or_else(|| vm::default_name(&project.root)),
        project: project.root.clone(),
        build_dir: pipeline::Layout::build_dir(&project.root),
        cache_dir: pipeline::Layout::cache_dir(&project.root),
        output_dir,
        image,
        kernel,
        memory_mb: a.memory,
        cpus,
        timeout: a.timeout,
        build_disk_gib: a.disk_size,
        args: a.args,
        cwd,
        env: PASSED_ON
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect(),
        owner: invoking_user(),
    };
    let out = match vm::run(&opts, &mut std::io::stderr()) {
        Ok(out) => out,
        Err(e @ vm::Error::Interrupted { signal, .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(128 + signal as u8));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(s) = out.start_secs {
        eprintln!(
            "keel vm: the command started {s:.1} s after QEMU, ran until {:.1} s",
            out.vm_secs
        );
    }
    if out.code != 0 {
        eprintln!(
            "error: `keel {}` failed in VM `{}` with exit code {}; console log {}; its last lines:\n{}",
            opts.args.join(" "),
            opts.name,
            out.code,
            out.console.display(),
            exec::indent(&qemu::console::tail(&out.console))
        );
    }
    Ok(ExitCode::from(u8::try_from(out.code).unwrap_or(1)))
}

/// The user who asked: under `sudo`, the one sudo names; else whoever runs keel.
fn invoking_user() -> (u32, u32) {
    let euid = rustix::process::geteuid().as_raw();
    let egid = rustix::process::getegid().as_raw();
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    match (euid, var("SUDO_UID"), var("SUDO_GID")) {
        (0, Some(u), Some(g)) => (u, g),
        _ => (euid, egid),
    }
}
