//! What the host needs, and installing what is missing.
//!
//! Debian: each need is a file that must exist (a program, a data file) and the Debian
//! package that provides it. The check is a handful of `stat` calls (microseconds), so a
//! host that has everything costs nothing. Missing packages are installed with one
//! `apt-get install`, after printing what and why.
//!
//! Installing never removes a package the host has. apt's plan is simulated first
//! (`apt-get install -s`); when it would remove packages, the install is not run. If the
//! package apt would remove is a Debian backport (version `~bpoNN`), the host took it from
//! `<codename>-backports`, and the needed packages that conflict with it are taken from there
//! too (the suite is added to apt's sources in a Keel-owned file when missing). Otherwise
//! xtask stops, naming the package, the conflict and what the user can do. The real install
//! runs with `--no-remove` as well.
//!
//! Gentoo: the variant's `host-tools.packages` are emerged by the build's host-tools stage
//! (`keel build`), which knows the variant; nothing is done here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Build,
    Test,
}

/// (file that proves presence, Debian package, why, needed for builds too)
const NEEDS: &[(&str, &str, &str, bool)] = &[
    (
        "/usr/lib/python3.11/ensurepip/__init__.py",
        "python3-venv",
        "a private venv for Portage from PyPI",
        true,
    ),
    (
        "/usr/bin/mksquashfs",
        "squashfs-tools",
        "the image is a squashfs (and unsquashfs reads images back)",
        true,
    ),
    (
        "/usr/bin/mkfs.erofs",
        "erofs-utils",
        "variants with `format = \"erofs\"` (and fsck.erofs reads them back)",
        true,
    ),
    (
        "/usr/bin/scanelf",
        "pax-utils",
        "Portage strips binaries and records sonames with scanelf",
        true,
    ),
    (
        "/usr/bin/zstd",
        "zstd",
        "Portage's gpkg binary packages are zstd-compressed",
        true,
    ),
    (
        "/usr/bin/gcc",
        "gcc",
        "gentoo-mini's glibc stand-in compiles a shared library",
        true,
    ),
    (
        "/usr/bin/patch",
        "patch",
        "Portage applies patches with it, and Keel patches its Portage venv (crates/portage)",
        true,
    ),
    (
        "/usr/bin/make",
        "make",
        "ebuilds and the reference policy build with make",
        true,
    ),
    (
        "/usr/bin/rsync",
        "rsync",
        "the oracle of the overlay differential tests",
        false,
    ),
    (
        "/usr/bin/systemd-tmpfiles",
        "systemd",
        "the oracle of the tmpfiles differential tests",
        false,
    ),
    // SELinux variants: the refpolicy sources (sec-policy/* distfile) and the policy tools
    // the ebuilds and the policy stage run against the image's store (semodule -p ROOT)
    (
        "/usr/src/selinux-policy-src.tar.zst",
        "selinux-policy-src",
        "refpolicy sources for sec-policy/* (pinned distfile)",
        true,
    ),
    // gentoo-mini's sys-kernel/gentoo-kernel: Linux from source (docs/kernel.md); the tests
    // and the kernel bench build it, no shipped variant does yet
    (
        "/usr/src/linux-source-6.1.tar.xz",
        // the version gentoo-mini's Manifest pins (docs/kernel.md)
        "linux-source-6.1=6.1.192-3",
        "the Linux sources gentoo-mini's sys-kernel/gentoo-kernel builds (pinned distfile)",
        false,
    ),
    (
        "/usr/bin/flex",
        "flex",
        "the kernel's configuration program (kconfig) is built from flex sources",
        false,
    ),
    (
        "/usr/bin/bison",
        "bison",
        "the kernel's configuration program (kconfig) is built from bison sources",
        false,
    ),
    (
        "/usr/bin/bc",
        "bc",
        "the kernel's build computes constants with bc",
        false,
    ),
    (
        "/usr/include/libelf.h",
        "libelf-dev",
        "the kernel's objtool (x86_64's ORC unwinder) links libelf",
        false,
    ),
    (
        "/usr/include/openssl/ssl.h",
        "libssl-dev",
        "the kernel's certificate tools (scripts/sign-file, certs/extract-cert)",
        false,
    ),
    (
        "/usr/bin/checkmodule",
        "checkpolicy",
        "compiles refpolicy and Keel's local policy modules",
        true,
    ),
    (
        "/usr/sbin/semodule",
        "semodule-utils",
        "builds the image's policy store (semodule -p ROOT)",
        true,
    ),
    (
        "/usr/bin/semodule_package",
        "semodule-utils",
        "packages refpolicy modules",
        true,
    ),
    (
        "/usr/sbin/setfiles",
        "policycoreutils",
        "validates file_contexts against the target policy",
        true,
    ),
    (
        "/usr/bin/seinfo",
        "setools",
        "checks booleans in the built policy; sesearch for the policy tests",
        true,
    ),
    ("/usr/bin/secilc", "secilc", "CIL policy modules", false),
    (
        "/usr/sbin/getenforce",
        "selinux-utils",
        "the policy tests",
        false,
    ),
    // Debian variants and `keel boot` (docs/debian.md, docs/boot.md)
    (
        "/usr/bin/mmdebstrap",
        "mmdebstrap",
        "the Debian backend's destination root",
        true,
    ),
    (
        "/usr/bin/dpkg-deb",
        "dpkg",
        "the Debian backend unpacks the policy headers",
        true,
    ),
    (
        "/usr/share/selinux/devel/include/Makefile",
        "selinux-policy-dev",
        "m4 and the module tools that build refpolicy's container module for debian-selinux",
        true,
    ),
    (
        "/usr/sbin/mkfs.btrfs",
        "btrfs-progs",
        "keel boot: the writable /var disk",
        true,
    ),
    (
        "/usr/bin/unsquashfs",
        "squashfs-tools",
        "keel boot: kernel, initramfs and /var from the image",
        true,
    ),
    (
        "/usr/bin/qemu-system-x86_64",
        "qemu-system-x86",
        "keel boot and the boot tests",
        true,
    ),
    // The disk image (docs/disk.md)
    (
        "/usr/bin/systemd-repart",
        "systemd",
        "keel build: the disk's partition table and partitions",
        true,
    ),
    (
        "/usr/sbin/veritysetup",
        "cryptsetup-bin",
        "keel build: the disk's dm-verity hash partition",
        true,
    ),
    (
        "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "systemd-boot-efi",
        "keel build: the stub of the disk's unified kernel image",
        true,
    ),
    (
        "/usr/bin/bootctl",
        "systemd-boot",
        "keel build: systemd-boot on the disk's ESP",
        true,
    ),
    (
        "/usr/sbin/mkfs.fat",
        "dosfstools",
        "keel build: the disk's ESP",
        true,
    ),
    (
        "/usr/bin/mcopy",
        "mtools",
        "keel build: the files of the disk's ESP",
        true,
    ),
    (
        "/usr/bin/faketime",
        "faketime",
        "keel build: objcopy stamps the unified kernel image with the build's time",
        true,
    ),
    (
        "/usr/bin/objcopy",
        "binutils",
        "keel build: the disk's unified kernel image",
        true,
    ),
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "ovmf",
        "keel boot --disk: UEFI firmware for QEMU",
        true,
    ),
    (
        "/usr/sbin/sfdisk",
        "fdisk",
        "the disk tests read the partition table back",
        false,
    ),
    // Binhosts and distcc (docs/scale-out.md)
    (
        "/usr/bin/gpg",
        "gnupg",
        "keel publish signs binary packages, keel build --binhost verifies them",
        true,
    ),
    (
        "/usr/bin/curl",
        "curl",
        "keel build --binhost checks that the binhost answers and fetches its patch record",
        true,
    ),
    (
        "/usr/bin/wget",
        "wget",
        "Portage downloads binary packages from a binhost with wget",
        true,
    ),
    (
        "/usr/bin/distccd",
        "distcc",
        "keel build --distcc (distcc), and the distcc test (distccd on 127.0.0.1)",
        false,
    ),
    // crates/oci (docs/oci.md): the oracles of the image unpack tests
    (
        "/usr/bin/umoci",
        "umoci",
        "keel vm's default build environment (an OCI image); the oracle of the oci unpack tests",
        true,
    ),
    (
        "/usr/bin/groff",
        "groff-base",
        "the man page test renders every page `keel man` writes",
        false,
    ),
    (
        "/usr/bin/skopeo",
        "skopeo",
        "makes the oci-archive the oci archive tests read",
        false,
    ),
];

fn missing(purpose: Purpose) -> Vec<(&'static str, &'static str)> {
    NEEDS
        .iter()
        .filter(|(_, _, _, build)| *build || purpose == Purpose::Test)
        .filter(|(path, ..)| !Path::new(path).exists())
        .map(|(_, pkg, why, _)| (*pkg, *why))
        .collect()
}

pub fn ensure(purpose: Purpose) -> Result<(), String> {
    if Path::new("/etc/gentoo-release").exists() {
        return Ok(());
    }
    if !Path::new("/etc/debian_version").exists() {
        let need: Vec<&str> = missing(purpose).iter().map(|(p, _)| *p).collect();
        if need.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "this host is neither Debian nor Gentoo; install the equivalents of: {}",
            need.join(" ")
        ));
    }
    let need = missing(purpose);
    if need.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<&str> = Vec::new();
    for (pkg, why) in &need {
        eprintln!("xtask: installing {pkg}: {why}");
        if !pkgs.contains(pkg) {
            pkgs.push(pkg);
        }
    }
    install(&Apt::system(), &pkgs)?;
    let still: Vec<&str> = missing(purpose).iter().map(|(p, _)| *p).collect();
    if !still.is_empty() {
        return Err(format!(
            "still missing after apt-get install: {}",
            still.join(" ")
        ));
    }
    Ok(())
}

/// The apt programs and host files an install goes through: the host's, or a test's fakes.
pub struct Apt {
    pub apt_get: PathBuf,
    pub apt_cache: PathBuf,
    /// Where a Keel-owned sources file is written (`/etc/apt/sources.list.d`).
    pub sources_dir: PathBuf,
    /// `/etc/os-release`, for the host's `VERSION_CODENAME`.
    pub os_release: PathBuf,
}

impl Apt {
    pub fn system() -> Apt {
        Apt {
            apt_get: PathBuf::from("apt-get"),
            apt_cache: PathBuf::from("apt-cache"),
            sources_dir: PathBuf::from("/etc/apt/sources.list.d"),
            os_release: PathBuf::from("/etc/os-release"),
        }
    }

    /// `apt-get ARGS`, its output on the terminal.
    fn run(&self, args: &[&str]) -> Result<(), String> {
        let status = Command::new(&self.apt_get)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", self.apt_get.display()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("`apt-get {}` failed ({status})", args.join(" ")))
        }
    }

    /// Whether `PROGRAM ARGS` succeeded, and what it printed (stdout, then stderr), in the C
    /// locale.
    fn output(program: &Path, args: &[&str]) -> Result<(bool, String), String> {
        let out = Command::new(program)
            .args(args)
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok((out.status.success(), text))
    }

    /// What `apt-get install` would do for `step` (`-s`: nothing is changed).
    fn simulate(&self, step: &Step) -> Result<Sim, String> {
        let mut args = vec![
            "install",
            "-s",
            "-qq",
            "--no-install-recommends",
            "-o",
            "Debug::pkgProblemResolver=yes",
        ];
        args.extend(step.args());
        let (ok, text) = Self::output(&self.apt_get, &args)?;
        Ok(Sim::parse(ok, &text))
    }

    /// The real install; `--no-remove`: apt aborts rather than remove a package.
    fn install(&self, step: &Step) -> Result<(), String> {
        let mut args = vec![
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "--no-remove",
        ];
        args.extend(step.args());
        self.run(&args)
    }
}

/// One `apt-get install`: packages (`pkg` or `pkg/release`), optionally `-t RELEASE`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    target: Option<String>,
    pkgs: Vec<String>,
}

impl Step {
    fn plain(pkgs: &[&str]) -> Step {
        Step {
            target: None,
            pkgs: pkgs.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn args(&self) -> Vec<&str> {
        let mut args = Vec::new();
        if let Some(t) = &self.target {
            args.extend(["-t", t.as_str()]);
        }
        args.extend(self.pkgs.iter().map(String::as_str));
        args
    }
}

/// A package `apt-get install -s` would install: `Inst NAME [OLD] (NEW ORIGIN [ARCH])`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Inst {
    name: String,
    /// The installed version, when this is an upgrade (or downgrade).
    old: Option<String>,
    new: String,
    origin: String,
}

/// What `apt-get install -s` printed.
#[derive(Debug, Default, PartialEq, Eq)]
struct Sim {
    ok: bool,
    /// `Remv NAME [VERSION]` (or `Purg`): the package and its installed version.
    removals: Vec<(String, String)>,
    installs: Vec<Inst>,
    /// The problem resolver's `Broken A Breaks on B ...` lines.
    broken: Vec<String>,
    /// apt's `E:` lines.
    errors: Vec<String>,
}

impl Sim {
    fn parse(ok: bool, text: &str) -> Sim {
        let mut sim = Sim {
            ok,
            ..Sim::default()
        };
        for line in text.lines() {
            let line = line.trim();
            if let Some(r) = parse_remv(line) {
                sim.removals.push(r);
            } else if let Some(i) = parse_inst(line) {
                sim.installs.push(i);
            } else if line.starts_with("Broken ") {
                sim.broken.push(line.to_owned());
            } else if line.starts_with("E: ") {
                sim.errors.push(line.to_owned());
            }
        }
        sim
    }

    /// One line: what stands in the way of this simulation.
    fn trouble(&self) -> String {
        if !self.removals.is_empty() {
            let r: Vec<String> = self
                .removals
                .iter()
                .map(|(p, v)| format!("{p} {v}"))
                .collect();
            format!("would remove {}", r.join(", "))
        } else if !self.errors.is_empty() {
            self.errors.join(" ")
        } else {
            "apt-get failed".to_owned()
        }
    }
}

fn parse_remv(line: &str) -> Option<(String, String)> {
    let rest = line
        .strip_prefix("Remv ")
        .or_else(|| line.strip_prefix("Purg "))?;
    let name = rest.split_whitespace().next()?;
    let version = rest[name.len()..]
        .trim_start()
        .strip_prefix('[')
        .and_then(|v| v.split(']').next())
        .unwrap_or("");
    Some((name.to_owned(), version.to_owned()))
}

fn parse_inst(line: &str) -> Option<Inst> {
    let rest = line.strip_prefix("Inst ")?;
    let (name, mut rest) = rest.split_once(' ')?;
    let mut old = None;
    if let Some(r) = rest.strip_prefix('[') {
        let (o, r) = r.split_once(']')?;
        old = Some(o.to_owned());
        rest = r.trim_start();
    }
    let inner = rest.strip_prefix('(')?.split(')').next()?;
    let (new, origin) = inner.split_once(' ').unwrap_or((inner, ""));
    let origin = origin.rsplit_once(" [").map_or(origin, |(o, _)| o);
    Some(Inst {
        name: name.to_owned(),
        old,
        new: new.to_owned(),
        origin: origin.trim().to_owned(),
    })
}

/// The Debian release whose backports a version comes from: `~bpo12+1` is bookworm's.
fn backport_codename(version: &str) -> Option<&'static str> {
    let after = version.split("~bpo").nth(1)?;
    let n: String = after.chars().take_while(char::is_ascii_digit).collect();
    match n.as_str() {
        "11" => Some("bullseye"),
        "12" => Some("bookworm"),
        "13" => Some("trixie"),
        _ => None,
    }
}

/// `VERSION_CODENAME` of an os-release file.
fn os_codename(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let v = l.trim().strip_prefix("VERSION_CODENAME=")?;
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_owned())
    })
}

/// The Keel-owned deb822 sources file that adds `SUITE` (e.g. `bookworm-backports`).
fn backports_sources(suite: &str) -> String {
    format!(
        "# Written by Keel's xtask (xtask/src/host.rs): a package on this host came from {suite}.\n\
         # Debian pins backports at priority 100: nothing comes from here unless asked for.\n\
         Types: deb\n\
         URIs: http://deb.debian.org/debian\n\
         Suites: {suite}\n\
         Components: main\n\
         Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
}

/// The `Breaks`/`Conflicts` relations of the first stanza of `apt-cache show` output that
/// name one of `names`, as `Field: relation`.
fn relations_naming(show: &str, names: &[&str]) -> Vec<String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in show.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.to_owned(), v.trim().to_owned()));
        }
    }
    let mut out = Vec::new();
    for (field, value) in fields
        .iter()
        .filter(|(k, _)| k == "Breaks" || k == "Conflicts")
    {
        for rel in value.split(',').map(str::trim) {
            let named = rel.split('|').any(|alt| {
                let pkg = alt.trim().split([' ', '(', ':']).next().unwrap_or("");
                names.contains(&pkg)
            });
            if named {
                out.push(format!("{field}: {rel}"));
            }
        }
    }
    out
}

/// Whether a resolver line names package `pkg` (`pkg`, `pkg:amd64`).
fn line_names(line: &str, pkg: &str) -> bool {
    let pkg = pkg.split(':').next().unwrap_or(pkg);
    line.split_whitespace()
        .any(|w| w.split(':').next() == Some(pkg))
}

/// Installs `pkgs` (what `ensure` found missing) without removing any package the host has;
/// see the module's documentation.
pub fn install(apt: &Apt, pkgs: &[&str]) -> Result<(), String> {
    apt.run(&["update", "-qq"])?;
    let all = Step::plain(pkgs);
    let sim = apt.simulate(&all)?;
    if sim.removals.is_empty() {
        // apt's own errors (an unknown package, ...) are reported by the real run
        return apt.install(&all);
    }
    for step in resolve(apt, pkgs, &sim)? {
        apt.install(&step)?;
    }
    Ok(())
}

/// apt would remove packages to install `pkgs` (`sim`): the steps that install them without
/// removing anything, or an error that says why there are none and what the user can do.
fn resolve(apt: &Apt, pkgs: &[&str], sim: &Sim) -> Result<Vec<Step>, String> {
    // Which needed package makes apt remove which installed one.
    let mut causes: Vec<(String, Vec<&str>)> = sim
        .removals
        .iter()
        .map(|(p, _)| (p.clone(), Vec::new()))
        .collect();
    if pkgs.len() > 1 {
        for &pkg in pkgs {
            let one = apt.simulate(&Step::plain(&[pkg]))?;
            for (removed, by) in &mut causes {
                if one.removals.iter().any(|(r, _)| r == removed) {
                    by.push(pkg);
                }
            }
        }
    }
    for (_, by) in &mut causes {
        if by.is_empty() {
            // only the packages together (or only one asked for)
            *by = pkgs.to_vec();
        }
    }
    let mut culprits: Vec<&str> = Vec::new();
    for (_, by) in &causes {
        for p in by {
            if !culprits.contains(p) {
                culprits.push(p);
            }
        }
    }

    // Why: the removed version's Breaks/Conflicts on what would be installed, and apt's
    // problem resolver.
    let mut involved: Vec<&str> = pkgs.to_vec();
    involved.extend(sim.installs.iter().map(|i| i.name.as_str()));
    let mut whys: Vec<Vec<String>> = Vec::new();
    for (removed, version) in &sim.removals {
        let mut why = Vec::new();
        let spec = format!("{removed}={version}");
        if let Ok((true, show)) = Apt::output(&apt.apt_cache, &["show", &spec]) {
            for rel in relations_naming(&show, &involved) {
                why.push(format!("{removed} {version} {rel}"));
            }
        }
        for line in sim.broken.iter().filter(|l| line_names(l, removed)) {
            why.push(format!("apt: {line}"));
        }
        whys.push(why);
    }

    // A backport of this host's release: take the conflicting packages from there too.
    let codename = std::fs::read_to_string(&apt.os_release)
        .ok()
        .and_then(|t| os_codename(&t));
    let backported = sim
        .removals
        .iter()
        .find(|(_, v)| codename.is_some() && backport_codename(v) == codename.as_deref());
    let mut tried = None;
    if let (Some(codename), Some((removed, version))) = (&codename, backported) {
        let suite = format!("{codename}-backports");
        eprintln!(
            "xtask: {removed} {version} on this host is from {suite}, and installing {} from \
             {codename} would remove it; taking {} from {suite}",
            culprits.join(" "),
            culprits.join(" ")
        );
        match via_backports(apt, &suite, pkgs, &culprits) {
            Ok(plan) => return Ok(plan),
            Err(e) => tried = Some(format!("taking {} from {suite}: {e}", culprits.join(" "))),
        }
    }

    let mut msg = format!(
        "installing {} would remove packages this host has, so nothing was installed:",
        pkgs.join(" ")
    );
    for (((removed, version), (_, by)), why) in sim.removals.iter().zip(&causes).zip(&whys) {
        let from = match backport_codename(version) {
            Some(c) => format!(" (from {c}-backports)"),
            None => String::new(),
        };
        msg.push_str(&format!(
            "\n  {removed} {version}{from}: removed by installing {}",
            by.join(" ")
        ));
        for w in why {
            msg.push_str(&format!("\n    {w}"));
        }
    }
    if let Some(t) = tried {
        msg.push_str(&format!("\n  tried {t}"));
    }
    let removed: Vec<&str> = sim.removals.iter().map(|(p, _)| p.as_str()).collect();
    msg.push_str("\nwhat you can do, then run xtask again:");
    match sim.removals.iter().find_map(|(_, v)| backport_codename(v)) {
        Some(c) => msg.push_str(&format!(
            "\n  - install {} from the release {} came from: \
             `apt-get install -t {c}-backports --no-install-recommends {}` \
             ({c}-backports must be in apt's sources)",
            culprits.join(" "),
            removed.join(" "),
            culprits.join(" ")
        )),
        None => msg.push_str(&format!(
            "\n  - install {} yourself from a release whose version fits {} \
             (`apt-cache policy {} {}` lists the versions)",
            culprits.join(" "),
            removed.join(" "),
            culprits.join(" "),
            removed.join(" ")
        )),
    }
    msg.push_str(&format!(
        "\n  - or accept the removal: `apt-get install --no-install-recommends {}`",
        pkgs.join(" ")
    ));
    Err(msg)
}

/// Adds `suite` to apt's sources if they lack it, then finds steps that take `culprits` from
/// it (and the other packages from the release) without removing anything.
fn via_backports(
    apt: &Apt,
    suite: &str,
    pkgs: &[&str],
    culprits: &[&str],
) -> Result<Vec<Step>, String> {
    let (listed, targets) = Apt::output(
        &apt.apt_get,
        &[
            "indextargets",
            "--no-release-info",
            "--format",
            "$(RELEASE)",
        ],
    )?;
    if !(listed && targets.lines().any(|l| l.trim() == suite)) {
        let file = apt.sources_dir.join(format!("keel-{suite}.sources"));
        eprintln!(
            "xtask: adding {suite} to apt's sources, which do not list it, in {}; Debian pins \
             backports at priority 100, so only what is asked for from {suite} comes from it",
            file.display()
        );
        std::fs::write(&file, backports_sources(suite))
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        apt.run(&["update", "-qq"])?;
    }
    let rest: Vec<&str> = pkgs
        .iter()
        .filter(|p| !culprits.contains(p))
        .copied()
        .collect();
    // `-t SUITE` for the conflicting packages (their dependencies follow), the rest from the
    // release in a second call; or one call with `pkg/SUITE`.
    let mut with_target = vec![Step {
        target: Some(suite.to_owned()),
        pkgs: culprits.iter().map(|p| p.to_string()).collect(),
    }];
    if !rest.is_empty() {
        with_target.push(Step::plain(&rest));
    }
    let mut slashed = Step::plain(&rest);
    slashed
        .pkgs
        .extend(culprits.iter().map(|p| format!("{p}/{suite}")));
    let mut failures = Vec::new();
    for plan in [with_target, vec![slashed]] {
        let mut sims = Vec::new();
        for step in &plan {
            sims.push(apt.simulate(step)?);
        }
        if let Some((step, sim)) = plan
            .iter()
            .zip(&sims)
            .find(|(_, s)| !s.ok || !s.removals.is_empty())
        {
            failures.push(format!(
                "`apt-get install -s {}` {}",
                step.args().join(" "),
                sim.trouble()
            ));
            continue;
        }
        for (step, sim) in plan.iter().zip(&sims) {
            let from: Vec<String> = sim
                .installs
                .iter()
                .filter(|i| backport_codename(&i.new).is_some() || i.origin.contains("ackports"))
                .map(|i| format!("{} {}", i.name, i.new))
                .collect();
            let upgrades: Vec<String> = sim
                .installs
                .iter()
                .filter_map(|i| {
                    let old = i.old.as_ref()?;
                    Some(format!("{} {old} -> {}", i.name, i.new))
                })
                .collect();
            eprintln!(
                "xtask: `apt-get install {}` (checked with -s): removes nothing; {}; from {suite}: {}",
                step.args().join(" "),
                if upgrades.is_empty() {
                    "upgrades no installed package".to_owned()
                } else {
                    format!("upgrades {}", upgrades.join(", "))
                },
                if from.is_empty() {
                    "nothing".to_owned()
                } else {
                    from.join(", ")
                }
            );
        }
        return Ok(plan);
    }
    Err(failures.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Mutex;

    /// Real `apt-get install -s --no-install-recommends qemu-system-x86
    /// -o Debug::pkgProblemResolver=yes` on Debian 12 with qemu-utils from backports (cut).
    const CONFLICT: &str = "\
Reading package lists...
Building dependency tree...
Reading state information...
Starting pkgProblemResolver with broken count: 1
Starting 2 pkgProblemResolver with broken count: 1
Investigating (0) qemu-utils:amd64 < 1:10.0.2+ds-2+deb13u1~bpo12+1 @ii K Ib >
Broken qemu-utils:amd64 Breaks on qemu-system-common:amd64 < none -> 1:7.2+dfsg-7+deb12u18+b3 @un puN > (< 1:8.0+dfsg-5~)
  Considering qemu-system-common:amd64 -1 as a solution to qemu-utils:amd64 -1
  Removing qemu-utils:amd64 rather than change qemu-system-common:amd64
Done
The following packages will be REMOVED:
  qemu-utils
0 upgraded, 27 newly installed, 1 to remove and 127 not upgraded.
Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]
Inst ipxe-qemu (1.0.0+git-20190125.36a4c85-5.1 Debian:12.15/oldstable [all])
Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
Conf qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])
";

    /// Real `apt-get install -s -t bookworm-backports qemu-system-x86` on the same host (cut),
    /// with an upgrade line of the form apt prints.
    const BACKPORTS: &str = "\
Inst libbrlapi0.8 (6.7-3.1+deb13u3~bpo12+1 Debian Backports:oldstable-backports [amd64])
Inst libc6 [2.36-9+deb12u9] (2.36-9+deb12u10 Debian:12.15/oldstable [amd64]) []
Inst seabios (1.16.3-2~bpo12+1 Debian Backports:oldstable-backports [all])
Inst qemu-system-x86 (1:10.0.2+ds-2+deb13u1~bpo12+1 Debian Backports:oldstable-backports [amd64])
";

    #[test]
    fn parses_real_apt_output() {
        let sim = Sim::parse(true, CONFLICT);
        assert_eq!(
            sim.removals,
            [(
                "qemu-utils".to_owned(),
                "1:10.0.2+ds-2+deb13u1~bpo12+1".to_owned()
            )]
        );
        assert_eq!(sim.installs.len(), 3);
        assert_eq!(
            sim.installs[2],
            Inst {
                name: "qemu-system-x86".into(),
                old: None,
                new: "1:7.2+dfsg-7+deb12u18+b3".into(),
                origin: "Debian:12.15/oldstable".into(),
            }
        );
        assert_eq!(sim.broken.len(), 1);
        assert!(line_names(&sim.broken[0], "qemu-utils"));
        assert!(!line_names(&sim.broken[0], "qemu"));

        let bp = Sim::parse(true, BACKPORTS);
        assert!(bp.removals.is_empty());
        assert_eq!(
            bp.installs[0].origin,
            "Debian Backports:oldstable-backports"
        );
        assert_eq!(bp.installs[1].old.as_deref(), Some("2.36-9+deb12u9"));
        assert_eq!(bp.installs[1].new, "2.36-9+deb12u10");
        assert_eq!(
            parse_remv("Purg foo:i386 [1.0-1]"),
            Some(("foo:i386".into(), "1.0-1".into()))
        );
        assert_eq!(parse_remv("Remv bar"), Some(("bar".into(), String::new())));

        let err = Sim::parse(
            false,
            "E: Unable to correct problems, you have held broken packages.\n",
        );
        assert_eq!(
            err.trouble(),
            "E: Unable to correct problems, you have held broken packages."
        );
    }

    #[test]
    fn backport_versions_name_their_release() {
        assert_eq!(
            backport_codename("1:10.0.2+ds-2+deb13u1~bpo12+1"),
            Some("bookworm")
        );
        assert_eq!(backport_codename("1.16.3-2~bpo11+1"), Some("bullseye"));
        assert_eq!(backport_codename("6.1~bpo13+2"), Some("trixie"));
        assert_eq!(backport_codename("1:7.2+dfsg-7+deb12u18+b3"), None);
        assert_eq!(backport_codename("1.0~bpo9+1"), None);
        assert_eq!(
            os_codename(
                "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\n"
            ),
            Some("bookworm".into())
        );
        assert_eq!(os_codename("ID=debian\n"), None);
        let s = backports_sources("bookworm-backports");
        assert!(s.contains("\nSuites: bookworm-backports\n"));
        assert!(s.contains("\nURIs: http://deb.debian.org/debian\n"));
        assert!(s.contains("\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"));
    }

    #[test]
    fn relations_that_name_what_would_be_installed() {
        let show = "Package: qemu-utils\nVersion: 1:10.0.2+ds-2+deb13u1~bpo12+1\n\
                    Breaks: qemu-system-common (<< 1:8.0+dfsg-5~), other (<< 2)\n\
                    Conflicts: a | qemu-system-x86:any\n\nPackage: qemu-utils\nBreaks: x\n";
        assert_eq!(
            relations_naming(show, &["qemu-system-x86", "qemu-system-common"]),
            [
                "Breaks: qemu-system-common (<< 1:8.0+dfsg-5~)",
                "Conflicts: a | qemu-system-x86:any"
            ]
        );
    }

    /// Fake-apt tests write and run scripts: one at a time, so that no other test's fork
    /// holds a script open for writing while it runs ("text file busy").
    static FAKE: Mutex<()> = Mutex::new(());

    /// A tempdir with a fake `apt-get` and `apt-cache` (each logging its arguments to
    /// `log`), an os-release and an empty sources dir; removed on drop.
    struct Fake {
        dir: PathBuf,
        apt: Apt,
    }

    impl Fake {
        /// `sim`: the body of a shell `case "$*" in ... esac` for `apt-get install -s`.
        fn new(name: &str, sim: &str, indextargets: &str) -> Fake {
            let dir =
                std::env::temp_dir().join(format!("keel-xtask-apt-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("sources.list.d")).unwrap();
            let log = dir.join("log");
            let script = |file: &str, body: &str| {
                let path = dir.join(file);
                std::fs::write(
                    &path,
                    format!(
                        "#!/bin/sh\necho \"{file} $*\" >> '{}'\n{body}\n",
                        log.display()
                    ),
                )
                .unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
                path
            };
            let apt_get = script(
                "apt-get",
                &format!(
                    "case \" $* \" in\n\
                     *' indextargets '*) printf '{indextargets}' ;;\n\
                     *' -s '*) case \"$*\" in\n{sim}\nesac ;;\n\
                     esac"
                ),
            );
            let apt_cache = script(
                "apt-cache",
                "case \"$*\" in\n\
                 'show qemu-utils=1:10.0.2+ds-2+deb13u1~bpo12+1') \
                 printf 'Package: qemu-utils\\nBreaks: qemu-system-common (<< 1:8.0+dfsg-5~)\\n' ;;\n\
                 *) exit 100 ;;\n\
                 esac",
            );
            let os_release = dir.join("os-release");
            std::fs::write(&os_release, "ID=debian\nVERSION_CODENAME=bookworm\n").unwrap();
            let apt = Apt {
                apt_get,
                apt_cache,
                sources_dir: dir.join("sources.list.d"),
                os_release,
            };
            Fake { dir, apt }
        }

        fn log(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.join("log"))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect()
        }

        /// The apt-get install calls that were not simulations.
        fn real_installs(&self) -> Vec<String> {
            self.log()
                .into_iter()
                .filter(|l| {
                    let w: Vec<&str> = l.split(' ').collect();
                    w[0] == "apt-get" && w.contains(&"install") && !w.contains(&"-s")
                })
                .collect()
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const REMOVES_QEMU_UTILS: &str = "echo 'Broken qemu-utils:amd64 Breaks on qemu-system-common:amd64 < none -> 1:7.2+dfsg-7+deb12u18+b3 @un puN > (< 1:8.0+dfsg-5~)' >&2; \
         echo 'Remv qemu-utils [1:10.0.2+ds-2+deb13u1~bpo12+1]'; \
         echo 'Inst qemu-system-common (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])'; \
         echo 'Inst qemu-system-x86 (1:7.2+dfsg-7+deb12u18+b3 Debian:12.15/oldstable [amd64])'";

    #[test]
    fn installs_with_no_remove_when_nothing_would_be_removed() {
        let _one = FAKE.lock().unwrap_or_else(|e| e.into_inner());
        let fake = Fake::new(
            "happy",
            "*) echo 'Inst zstd (1.5.4+dfsg2-5 Debian:12.15/oldstable [amd64])' ;;",
            "",
        );
        install(&fake.apt, &["zstd", "make"]).unwrap();
        assert_eq!(
            fake.log(),
            [
                "apt-get update -qq",
                "apt-get install -s -qq --no-install-recommends -o Debug::pkgProblemResolver=yes zstd make",
                "apt-get install -y -qq --no-install-recommends --no-remove zstd make",
            ]
        );
    }

    #[test]
    fn stops_when_a_backport_would_be_removed_and_backports_do_not_help() {
        let _one = FAKE.lock().unwrap_or_else(|e| e.into_inner());
        let fake = Fake::new(
            "stuck",
            &format!("*qemu-system-x86*) {REMOVES_QEMU_UTILS} ;;"),
            "bookworm\\nbookworm-updates\\n",
        );
        let err = install(&fake.apt, &["zstd", "qemu-system-x86"]).unwrap_err();
        assert!(fake.real_installs().is_empty(), "{:?}", fake.log());
        for want in [
            "qemu-utils 1:10.0.2+ds-2+deb13u1~bpo12+1 (from bookworm-backports): removed by installing qemu-system-x86\n",
            "qemu-utils 1:10.0.2+ds-2+deb13u1~bpo12+1 Breaks: qemu-system-common (<< 1:8.0+dfsg-5~)",
            "apt: Broken qemu-utils:amd64 Breaks on qemu-system-common:amd64",
            "tried taking qemu-system-x86 from bookworm-backports: `apt-get install -s -t bookworm-backports qemu-system-x86` would remove qemu-utils",
            "`apt-get install -t bookworm-backports --no-install-recommends qemu-system-x86`",
            "accept the removal: `apt-get install --no-install-recommends zstd qemu-system-x86`",
        ] {
            assert!(err.contains(want), "{want:?} not in:\n{err}");
        }
        // bookworm-backports was not listed: added in the Keel-owned file, then updated
        let file = fake.apt.sources_dir.join("keel-bookworm-backports.sources");
        assert_eq!(
            std::fs::read_to_string(file).unwrap(),
            backports_sources("bookworm-backports")
        );
        let log = fake.log();
        assert_eq!(log.iter().filter(|l| *l == "apt-get update -qq").count(), 2);
    }

    #[test]
    fn stops_when_a_release_package_would_be_removed() {
        let _one = FAKE.lock().unwrap_or_else(|e| e.into_inner());
        let fake = Fake::new(
            "release",
            "*) echo 'Remv qemu-utils [1:7.2+dfsg-7+deb12u18+b3]' ;;",
            "",
        );
        let err = install(&fake.apt, &["qemu-system-x86"]).unwrap_err();
        eprintln!("xtask would stop with:\n{err}");
        assert!(fake.real_installs().is_empty(), "{:?}", fake.log());
        assert!(
            err.contains(
                "qemu-utils 1:7.2+dfsg-7+deb12u18+b3: removed by installing qemu-system-x86"
            ),
            "{err}"
        );
        assert!(
            err.contains("from a release whose version fits qemu-utils"),
            "{err}"
        );
        assert!(!err.contains("tried"), "{err}");
        // not a backport: apt's sources are left alone
        assert_eq!(std::fs::read_dir(&fake.apt.sources_dir).unwrap().count(), 0);
    }

    #[test]
    fn takes_the_conflicting_package_from_backports() {
        let _one = FAKE.lock().unwrap_or_else(|e| e.into_inner());
        let fake = Fake::new(
            "backports",
            &format!(
                "*'-t bookworm-backports qemu-system-x86'*) \
                 echo 'Inst qemu-system-x86 (1:10.0.2+ds-2+deb13u1~bpo12+1 Debian Backports:oldstable-backports [amd64])' ;;\n\
                 *qemu-system-x86*) {REMOVES_QEMU_UTILS} ;;\n\
                 *) echo 'Inst zstd (1.5.4+dfsg2-5 Debian:12.15/oldstable [amd64])' ;;"
            ),
            "",
        );
        install(&fake.apt, &["zstd", "qemu-system-x86"]).unwrap();
        assert_eq!(
            fake.real_installs(),
            [
                "apt-get install -y -qq --no-install-recommends --no-remove -t bookworm-backports qemu-system-x86",
                "apt-get install -y -qq --no-install-recommends --no-remove zstd",
            ]
        );
        assert!(fake
            .apt
            .sources_dir
            .join("keel-bookworm-backports.sources")
            .exists());
    }

    #[test]
    fn does_not_add_backports_twice() {
        let _one = FAKE.lock().unwrap_or_else(|e| e.into_inner());
        let fake = Fake::new(
            "listed",
            &format!("*'-t bookworm-backports'*) echo ok ;;\n*) {REMOVES_QEMU_UTILS} ;;"),
            "bookworm\\nbookworm-backports\\n",
        );
        install(&fake.apt, &["qemu-system-x86"]).unwrap();
        assert_eq!(std::fs::read_dir(&fake.apt.sources_dir).unwrap().count(), 0);
        assert_eq!(
            fake.log()
                .iter()
                .filter(|l| *l == "apt-get update -qq")
                .count(),
            1
        );
        assert_eq!(
            fake.real_installs(),
            ["apt-get install -y -qq --no-install-recommends --no-remove -t bookworm-backports qemu-system-x86"]
        );
    }
}
