//! `keel`: Keel's engine. `cargo xtask X` runs `keel X` after making sure the host has the
//! tools; both take the same arguments.

mod cmd;

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "Build immutable, SELinux-enforcing container-host images from Gentoo"
)]
struct Cli {
    /// Project directory (default: the nearest directory at or above the current one that holds `variants/`)
    #[arg(
        short = 'C',
        long,
        global = true,
        value_name = "DIR",
        env = "KEEL_PROJECT"
    )]
    project: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the variants, one line each: name and inheritance chain
    Variants {
        /// Print a JSON array of {"name", "chain"} instead
        #[arg(long)]
        json: bool,
    },
    /// Show what a build of a variant would do: chain, merged package sets, layers, stages
    Plan {
        #[arg(long)]
        variant: String,
        /// Print the same as one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Build a variant: every stage whose inputs changed since the last build, and all later ones
    Build {
        #[arg(long)]
        variant: String,
        /// The Gentoo ebuild repository [default: /var/db/repos/gentoo]
        #[arg(long, value_name = "DIR")]
        gentoo_repo: Option<PathBuf>,
        /// Where the image, manifest and log go [default: build/<variant>]
        #[arg(long, value_name = "DIR")]
        output: Option<PathBuf>,
        /// Say which stages would run and why (which inputs changed), and run none
        #[arg(long)]
        dry_run: bool,
        /// Nothing on stderr but errors (the image's path still goes to stdout)
        #[arg(short, long, conflicts_with = "verbose")]
        quiet: bool,
        /// Stream the tools' output (what the stage logs get) to stderr as it comes
        #[arg(short, long)]
        verbose: bool,
        /// Print the build summary as one JSON object on stdout instead of the image's path
        #[arg(long)]
        json: bool,
        /// The image's version (IMAGE_VERSION in its os-release; the disk's slot and unified kernel image are named after it) [default: the build time, with a [disk]]
        #[arg(long, value_name = "VERSION")]
        image_version: Option<String>,
        #[command(flatten)]
        site: cmd::site::BuildArgs,
    },
    /// What changed between two builds: packages, files (type, mode, owner, content, label), sizes
    Diff {
        /// A build: its output directory or record.json, a history entry (build/V/history/N), a manifest, an image or a tree
        a: PathBuf,
        /// The other build, as A
        b: PathBuf,
        /// One JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Where the image's bytes go: each package's installed size, largest first, with its share
    Size {
        #[arg(long)]
        variant: String,
        /// One JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Publish a built variant's binary packages as a Portage binhost (signed with --sign-key) in DIR, for any static HTTP server
    Publish {
        #[arg(long)]
        variant: String,
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        #[command(flatten)]
        sign: cmd::site::SignArgs,
    },
    /// Boot a variant's image under QEMU (building what is missing first); `--check` runs the boot check
    Boot {
        #[arg(long)]
        variant: String,
        /// The Gentoo ebuild repository, for building what is missing [default: /var/db/repos/gentoo]
        #[arg(long, value_name = "DIR")]
        gentoo_repo: Option<PathBuf>,
        /// Boot with the boot check: print what the running system reported; exit 0 only when every assertion holds
        #[arg(long)]
        check: bool,
        /// Boot the disk image (`[disk]`, docs/disk.md) with UEFI firmware instead of the image with QEMU's -kernel
        #[arg(long)]
        disk: bool,
        /// Without --check: the serial console into this file instead of the terminal
        #[arg(long, value_name = "FILE", conflicts_with = "check")]
        console_log: Option<PathBuf>,
        /// Seconds before a checked boot is stopped
        #[arg(long, default_value_t = 900)]
        timeout: u64,
        /// Guest memory in MiB
        #[arg(long, default_value_t = 2048)]
        memory: u32,
        /// Guest CPUs
        #[arg(long, default_value_t = 2)]
        cpus: u32,
    },
    /// Remove build results: one variant's, every variant's (keeping tools and caches), or all of build/
    Clean {
        #[arg(long, conflicts_with = "all")]
        variant: Option<String>,
        /// Remove the whole build/ directory, the Portage venv and download caches included
        #[arg(long)]
        all: bool,
    },
    /// Print the manifest of a directory tree or an image (one sorted line per path)
    Manifest {
        /// A directory, or a squashfs/EROFS image
        path: PathBuf,
        /// Print one JSON object: an `entries` array, one object per line
        #[arg(long)]
        json: bool,
    },
    /// Package atoms (PMS, EAPI 8)
    Atom {
        #[command(subcommand)]
        command: cmd::atom::AtomCommand,
    },
    /// Overlay sync into a root (plumbing of the overlay stage)
    Overlay {
        #[command(subcommand)]
        command: cmd::overlay::OverlayCommand,
    },
    /// Kernel configuration plumbing: the check of a kernel's .config against the variant's fragments
    Kernel {
        #[command(subcommand)]
        command: cmd::kernel::KernelCommand,
    },
    /// Regenerate the stand-in tree's packages made of Debian packages' files (ebuilds, Manifests) from its metadata/keel-standins.toml, with the host's apt
    Standins {
        /// The stand-in tree (default: tests/fixtures/gentoo-mini)
        #[arg(long, value_name = "DIR")]
        repo: Option<std::path::PathBuf>,
        /// Generate every atom of the mapping, `source = true` ones too, into a copy of the tree made at --out
        #[arg(long, requires = "out")]
        all: bool,
        /// With --all: where the copy goes (a path that does not exist yet)
        #[arg(long, value_name = "DIR", requires = "all")]
        out: Option<std::path::PathBuf>,
    },
    /// Tools Keel installs for itself
    Tools {
        #[command(subcommand)]
        command: cmd::tools::ToolsCommand,
    },
    /// tmpfiles.d plumbing: effective configuration and build-time creation in a root
    Tmpfiles {
        #[command(subcommand)]
        command: cmd::tmpfiles::TmpfilesCommand,
    },
    /// Run a Keel command in a build VM made from a container image (default: Keel's Debian build environment), e.g. `keel vm -- build --variant selinux`
    Vm(cmd::vm::Args),
    /// Print the shell completion script for keel, e.g. `keel completions bash > /etc/bash_completion.d/keel`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page keel(1), or write it and one page per subcommand (keel-build.1, ...) into a directory
    Man {
        /// Write keel.1 and the subcommands' pages here, and print their paths
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Variants { json } => {
            cmd::project(cli.project.as_deref()).and_then(|p| cmd::variants::run(&p, json))
        }
        Command::Plan { variant, json } => {
            let project = cmd::project(cli.project.as_deref());
            project.and_then(|p| cmd::plan::run(&p, &variant, json))
        }
        Command::Build {
            variant,
            gentoo_repo,
            output,
            dry_run,
            quiet,
            verbose,
            json,
            image_version,
            site,
        } => cmd::project(cli.project.as_deref()).and_then(|p| {
            let site = cmd::site::build_site(&site)?;
            cmd::build::run(
                &p,
                &cmd::build::Args {
                    variant,
                    repo: gentoo_repo,
                    output,
                    dry_run,
                    quiet,
                    verbose,
                    json,
                    image_version,
                    site,
                },
            )
        }),
        Command::Diff { a, b, json } => cmd::diff::run(&a, &b, json),
        Command::Size { variant, json } => {
            cmd::project(cli.project.as_deref()).and_then(|p| cmd::size::run(&p, &variant, json))
        }
        Command::Publish { variant, to, sign } => cmd::project(cli.project.as_deref())
            .and_then(|p| cmd::publish::run(&p, &variant, &to, &sign)),
        Command::Boot {
            variant,
            gentoo_repo,
            check,
            disk,
            console_log,
            timeout,
            memory,
            cpus,
        } => cmd::project(cli.project.as_deref()).and_then(|p| {
            cmd::boot::run(
                &p,
                &cmd::boot::Args {
                    variant,
                    repo: gentoo_repo,
                    check,
                    disk,
                    console_log,
                    timeout,
                    memory_mb: memory,
                    cpus,
                },
            )
        }),
        Command::Manifest { path, json } => cmd::manifest::run(&path, json),
        Command::Clean { variant, all } => cmd::project(cli.project.as_deref())
            .and_then(|p| cmd::clean::run(&p, variant.as_deref(), all)),
        Command::Atom { command } => command.run(),
        Command::Overlay { command } => command.run(),
        Command::Kernel { command } => command.run(),
        // --all and --out require each other (clap): `out` says both.
        Command::Standins { repo, all: _, out } => cmd::project(cli.project.as_deref())
            .and_then(|p| cmd::standins::run(&p, repo.as_deref(), out.as_deref())),
        Command::Tools { command } => {
            cmd::project(cli.project.as_deref()).and_then(|p| command.run(&p))
        }
        Command::Tmpfiles { command } => command.run(),
        Command::Vm(args) => {
            cmd::project(cli.project.as_deref()).and_then(|p| cmd::vm::run(&p, args))
        }
        Command::Completions { shell } => cmd::completions::run(shell, Cli::command()),
        Command::Man { out } => cmd::man::run(Cli::command(), out.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let error = if cmd::build::color_wanted() {
                "\x1b[31merror\x1b[0m"
            } else {
                "error"
            };
            eprintln!("{error}: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes. Each error in the chain shows its own message only: a library
/// error that shows its cause keeps it out of `source()`, a wrapper that does not is
/// transparent (the tidy test `no_error_shows_its_source_twice` holds every crate to it),
/// and context added with anyhow shows only itself.
fn error_chain(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}
