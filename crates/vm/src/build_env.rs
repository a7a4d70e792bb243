//! `keel vm`'s default build environment, used when no `--image` is given (docs/vm.md):
//! Debian bookworm made by `build-env.sh` (embedded here) with mmdebstrap and umoci into
//! an OCI image layout, once per key, as mkosi makes its default tools tree.
//!
//! - The layout is `build/tools/vm-build-env-<key>/` (tag [`TAG`]); the key is a hash of
//!   the script, the Debian mirrors it reads and the architecture ([`key`]), so a change
//!   to any of them makes a new environment beside the old one.
//! - It is made in `vm-build-env-<key>.tmp/` and renamed into place with a
//!   `.keel-complete` marker in it: a killed run leaves only the `.tmp` directory, removed
//!   by the next. A lock (`vm-build-env-<key>.lock`) makes a second `keel vm` wait for the
//!   first instead of making it again.
//! - The `.deb`s are kept in the Debian backend's cache of the suite
//!   (`build/cache/debian/bookworm/archives`, under its lock), so a new key is made from
//!   the cache and Debian variants of the same suite share it.

use crate::{io, Error};
use exec::Cmd;
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The script: `sh build-env.sh LAYOUT APT-CACHE`.
pub const SCRIPT: &str = include_str!("build-env.sh");
/// The image's tag in the layout.
pub const TAG: &str = "build-env";
/// The Debian suite the script bootstraps.
pub const SUITE: &str = "bookworm";
/// The programs the script runs that a host may lack.
pub const TOOLS: &[&str] = &["mmdebstrap", "umoci"];
/// Present in a layout only once it is complete.
pub const COMPLETE: &str = ".keel-complete";

/// What decides the environment besides the script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    /// `KEEL_DEBIAN_MIRROR`, or Debian's archive.
    pub mirror: String,
    /// `KEEL_DEBIAN_SECURITY_MIRROR`, or Debian's security archive.
    pub security_mirror: String,
    /// The Debian architecture (the host's).
    pub arch: String,
}

impl Inputs {
    /// This host's: the mirrors from the environment as the Debian backend reads them, and
    /// the host's architecture.
    pub fn of_host() -> Inputs {
        // The cache directory plays no part in the mirrors.
        let deb = debian::Debian::for_suite(Path::new(""), SUITE);
        Inputs {
            mirror: deb.mirror,
            security_mirror: deb.security_mirror,
            arch: debian_arch(std::env::consts::ARCH).to_owned(),
        }
    }

    /// One line per input (written into the `.keel-complete` marker).
    fn describe(&self, script: &str) -> String {
        let digest: String = Sha256::digest(script.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "script sha256:{digest}\nmirror {}\nsecurity-mirror {}\narch {}\n",
            self.mirror, self.security_mirror, self.arch
        )
    }
}

/// Debian's name of a Rust target architecture.
pub fn debian_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "powerpc64" => "ppc64el",
        "arm" => "armhf",
        other => other,
    }
}

/// The cache key of an environment: 16 hex digits of a SHA-256 over the labelled script
/// and inputs.
pub fn key(script: &str, inputs: &Inputs) -> String {
    let mut h = Sha256::new();
    for (label, value) in [
        ("script", script),
        ("mirror", &inputs.mirror),
        ("security-mirror", &inputs.security_mirror),
        ("arch", &inputs.arch),
    ] {
        for part in [label, value] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where the environment of `key` is kept: `build/tools/vm-build-env-<key>`.
pub fn layout_dir(build_dir: &Path, key: &str) -> PathBuf {
    build_dir.join("tools").join(format!("vm-build-env-{key}"))
}

/// The default environment, ready.
#[derive(Debug, Clone)]
pub struct BuildEnv {
    /// The OCI image layout.
    pub layout: PathBuf,
    /// Seconds spent making it (0 when it was kept from an earlier run).
    pub made_secs: f64,
}

impl BuildEnv {
    /// The image reference `keel vm --image` takes: `LAYOUT:build-env`.
    pub fn image(&self) -> String {
        format!("{}:{TAG}", self.layout.display())
    }
}

/// The default build environment of this host under `build_dir`, made when missing (the
/// `.deb`s kept under `cache_dir`). Progress goes to `progress`; the script's output to
/// `build/logs/vm-build-env.log`.
pub fn ensure(
    build_dir: &Path,
    cache_dir: &Path,
    progress: &mut dyn Write,
) -> Result<BuildEnv, Error> {
    let inputs = Inputs::of_host();
    let key = key(SCRIPT, &inputs);
    let layout = layout_dir(build_dir, &key);
    let kept = BuildEnv {
        layout: layout.clone(),
        made_secs: 0.0,
    };
    if layout.join(COMPLETE).exists() {
        return Ok(kept);
    }
    check_host()?;
    let tools = layout.parent().unwrap_or(build_dir);
    fs::create_dir_all(tools).map_err(io(tools))?;
    let lock_path = tools.join(format!("vm-build-env-{key}.lock"));
    let _lock = lock(&lock_path, progress)?;
    if layout.join(COMPLETE).exists() {
        // Another keel made it while this one waited.
        return Ok(kept);
    }

    let t = std::time::Instant::now();
    let log = build_dir.join("logs/vm-build-env.log");
    match fs::remove_file(&log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&log)(e)),
        _ => {}
    }
    let tmp = tools.join(format!("vm-build-env-{key}.tmp"));
    for d in [&tmp, &layout] {
        if d.symlink_metadata().is_ok() {
            fs::remove_dir_all(d).map_err(io(d))?;
        }
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let script = tmp.join("build-env.sh");
    fs::write(&script, SCRIPT).map_err(io(&script))?;
    let deb = debian::Debian::for_suite(cache_dir, SUITE);
    let archives = deb.archives();
    fs::create_dir_all(&archives).map_err(io(&archives))?;
    let _ = writeln!(
        progress,
        "keel vm: no --image: making the default build environment (Debian {SUITE} {}, mmdebstrap + umoci) in {}; log {}",
        inputs.arch,
        layout.display(),
        log.display()
    );
    // Debian builds of the suite share the .deb cache: wait for one that holds it.
    let _cache_lock = deb.lock_cache().map_err(|e| Error::Debian(Box::new(e)))?;
    let made = tmp.join("layout");
    Cmd::new("sh")
        .arg(&script)
        .arg(&made)
        .arg(&archives)
        .env("KEEL_DEBIAN_MIRROR", &inputs.mirror)
        .env("KEEL_DEBIAN_SECURITY_MIRROR", &inputs.security_mirror)
        .env("KEEL_VM_ARCH", &inputs.arch)
        .log(&log)
        .run()
        .map_err(|e| Error::BuildEnv {
            log: log.clone(),
            cause: Box::new(e),
        })?;
    let marker = made.join(COMPLETE);
    fs::write(&marker, inputs.describe(SCRIPT)).map_err(io(&marker))?;
    fs::rename(&made, &layout).map_err(io(&layout))?;
    fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    let secs = t.elapsed().as_secs_f64();
    let _ = writeln!(progress, "keel vm: build environment ready ({secs:.1} s)");
    Ok(BuildEnv {
        layout,
        made_secs: secs,
    })
}

/// What making the environment needs of the host: root, and the [`TOOLS`].
fn check_host() -> Result<(), Error> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| find(t).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(Error::Invalid(format!(
            "keel vm: {} not installed: without --image, keel vm makes its default build environment (Debian {SUITE}) with mmdebstrap and umoci; `cargo xtask vm ...` installs them (on Debian: apt-get install {}), or give --image",
            missing
                .iter()
                .map(|t| format!("`{t}` is"))
                .collect::<Vec<_>>()
                .join(" and "),
            missing.join(" ")
        )));
    }
    if !rustix::process::geteuid().is_root() {
        return Err(Error::Invalid(format!(
            "keel vm: without --image, keel vm makes its default build environment (Debian {SUITE}, mmdebstrap --mode=root), which needs root: run it once as root (sudo keel vm ...), or give --image"
        )));
    }
    Ok(())
}

/// A program on PATH or in the sbin directories.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The make lock of one key: taken at once, or after saying whom it waits for.
fn lock(path: &Path, progress: &mut dyn Write) -> Result<fs::File, Error> {
    rootdir::lock(path, || {
        let _ = writeln!(
            progress,
            "keel vm: another keel is making the build environment; waiting for it (lock {})",
            path.display()
        );
    })
    .map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            mirror: "http://deb.debian.org/debian".into(),
            security_mirror: "http://deb.debian.org/debian-security".into(),
            arch: "amd64".into(),
        }
    }

    #[test]
    fn key_follows_the_script_mirrors_and_arch() {
        let base = key(SCRIPT, &inputs());
        assert_eq!(base.len(), 16);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()), "{base}");
        assert_eq!(base, key(SCRIPT, &inputs()), "stable");
        let mut changed = vec![key(&format!("{SCRIPT}\n# edited\n"), &inputs())];
        let mut i = inputs();
        i.mirror = "http://mirror.example/debian".into();
        changed.push(key(SCRIPT, &i));
        let mut i = inputs();
        i.security_mirror = "http://mirror.example/debian-security".into();
        changed.push(key(SCRIPT, &i));
        let mut i = inputs();
        i.arch = "arm64".into();
        changed.push(key(SCRIPT, &i));
        // Labels and lengths keep a value from moving into its neighbour unnoticed.
        let mut i = inputs();
        i.mirror.push('x');
        i.security_mirror.insert(0, 'x');
        changed.push(key(SCRIPT, &i));
        for (n, k) in changed.iter().enumerate() {
            assert_ne!(*k, base, "change {n}");
            for other in &changed[n + 1..] {
                assert_ne!(k, other);
            }
        }
    }

    #[test]
    fn layout_path_and_image_reference() {
        let dir = layout_dir(Path::new("/p/build"), "0123456789abcdef");
        assert_eq!(
            dir,
            Path::new("/p/build/tools/vm-build-env-0123456789abcdef")
        );
        let env = BuildEnv {
            layout: dir,
            made_secs: 0.0,
        };
        assert_eq!(
            env.image(),
            "/p/build/tools/vm-build-env-0123456789abcdef:build-env"
        );
        let r = oci::ImageRef::parse_with(&env.image(), |_| false);
        assert_eq!(r.tag.as_deref(), Some(TAG));
    }

    #[test]
    fn host_inputs_use_the_mirror_variables_defaults() {
        // The defaults are the Debian backend's; the variables are read as it reads them.
        let i = Inputs::of_host();
        if std::env::var_os("KEEL_DEBIAN_MIRROR").is_none() {
            assert_eq!(i.mirror, debian::DEFAULT_MIRROR);
        }
        assert_eq!(debian_arch("x86_64"), "amd64");
        assert_eq!(debian_arch("aarch64"), "arm64");
        assert_eq!(debian_arch("riscv64"), "riscv64");
    }

    #[test]
    fn a_second_maker_waits_for_the_first_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm-build-env-x.lock");
        let mut said = Vec::new();
        let first = lock(&path, &mut said).unwrap();
        assert!(said.is_empty(), "the first takes it at once");
        let p = path.clone();
        let second = std::thread::spawn(move || {
            let mut said = Vec::new();
            let t = std::time::Instant::now();
            let l = lock(&p, &mut said).unwrap();
            drop(l);
            (t.elapsed(), String::from_utf8(said).unwrap())
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        drop(first);
        let (waited, said) = second.join().unwrap();
        assert!(
            waited >= std::time::Duration::from_millis(250),
            "{waited:?}"
        );
        assert!(
            said.contains("waiting for it") && said.contains(&path.display().to_string()),
            "{said}"
        );
    }

    #[test]
    fn script_is_valid_shell_with_the_tag_and_suite() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("build-env.sh");
        fs::write(&f, SCRIPT).unwrap();
        Cmd::new("sh").arg("-n").arg(&f).run().unwrap();
        assert!(SCRIPT.contains(&format!("\"$layout:{TAG}\"")));
        assert!(SCRIPT.contains(&format!("\n\t{SUITE} \"$work/rootfs\"")));
        for var in [
            "KEEL_DEBIAN_MIRROR",
            "KEEL_DEBIAN_SECURITY_MIRROR",
            "KEEL_VM_ARCH",
        ] {
            assert!(SCRIPT.contains(&format!("${{{var}:-")), "{var}");
        }
    }
}
