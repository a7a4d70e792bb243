//! Helpers for tests that drive real tools.
//!
//! A test that needs a real program calls [`require`]. Locally, a missing program skips the
//! test with a loud message. Under `cargo xtask test` (which sets `KEEL_TEST_STRICT=1` after
//! installing every tool) a missing program fails the test: in CI nothing skips.

use std::path::{Path, PathBuf};

mod fixture;
pub mod oci;
pub use fixture::{copy, copy_project, shared_build, Built, EPOCH};

/// Run `c` (stdin closed, output captured) in a process group of its own; past `limit` the
/// whole group is killed and the test fails, naming `what`.
pub fn output_within(
    mut c: std::process::Command,
    limit: std::time::Duration,
    what: &str,
) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!("{what} did not finish within {} s", limit.as_secs());
        }
    }
}

/// True when missing tools must fail tests (set by `cargo xtask test`).
pub fn strict() -> bool {
    std::env::var_os("KEEL_TEST_STRICT").is_some_and(|v| v == "1")
}

/// Whether `program` (a name looked up on PATH and in the sbin directories, or an absolute
/// path) exists. Returns false (skip) locally; panics under strict mode.
#[must_use]
pub fn require(program: &str) -> bool {
    if find(program).is_some() {
        return true;
    }
    skip_or_fail(&format!("`{program}` is not installed"))
}

/// Report a missing prerequisite: false (skip) locally, a panic under strict mode.
pub fn skip_or_fail(what: &str) -> bool {
    if strict() {
        panic!("{what}; `cargo xtask test` should have installed it");
    }
    eprintln!("SKIPPED: {what} (run `cargo xtask test` to install it)");
    false
}

/// The full path of a program.
pub fn find(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).exists().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The project's root directory.
pub fn project_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(Path::to_owned)
        .unwrap_or_else(|| here.to_owned())
}

/// The venv holding the pinned PyPI Portage: `$KEEL_PORTAGE_VENV`, else the one Keel
/// makes under `build/tools` (`portage::venv::venv_dir`), when complete. None (skip)
/// locally when absent; panics under strict mode.
pub fn portage_venv() -> Option<PathBuf> {
    let dir = std::env::var_os("KEEL_PORTAGE_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            let dir = portage::venv::venv_dir(&project_root().join("build"));
            dir.join(".keel-complete").exists().then_some(dir)
        });
    match dir {
        Some(d) if d.join("bin/python").exists() => Some(d),
        _ => {
            skip_or_fail("the PyPI Portage venv is missing");
            None
        }
    }
}

/// The Debian build environment image for `keel vm`: the OCI layout (tag `build-env`)
/// that `keel vm` without `--image` uses for this project, `build/tools/vm-build-env-<key>`,
/// made by the same code (`vm::build_env::ensure`) when missing, its `.deb`s kept in
/// `build/cache`. None (skip) locally when mmdebstrap or umoci is missing; panics under
/// strict mode, or when making it fails.
pub fn vm_build_env_image() -> Option<PathBuf> {
    if !require("mmdebstrap") || !require("umoci") {
        return None;
    }
    let build = project_root().join("build");
    match vm::build_env::ensure(&build, &build.join("cache"), &mut std::io::stderr()) {
        Ok(env) => Some(env.layout),
        Err(e) => panic!("the build environment for keel vm: {e}"),
    }
}
