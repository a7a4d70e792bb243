//! Helpers for tests that drive real tools.
//!
//! A test that needs a real program calls [`require`]. Locally, a missing program skips the
//! test with a loud message. Under `cargo xtask test` (which sets `KEEL_TEST_STRICT=1` after
//! installing every tool) a missing program fails the test: in CI nothing skips.

use std::path::{Path, PathBuf};

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

/// The venv holding the pinned PyPI Portage: `$KEEL_PORTAGE_VENV`, else the default
/// location under `build/tools`. None (skip) locally when absent; panics under strict mode.
pub fn portage_venv() -> Option<PathBuf> {
    let dir = std::env::var_os("KEEL_PORTAGE_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            let tools = project_root().join("build/tools");
            std::fs::read_dir(tools)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("portage-"))
                        && p.join(".keel-complete").exists()
                })
        });
    match dir {
        Some(d) if d.join("bin/python").exists() => Some(d),
        _ => {
            skip_or_fail("the PyPI Portage venv is missing");
            None
        }
    }
}

/// The Debian build environment image for `keel vm` (an OCI layout, tag `build-env`), made
/// by `tests/fixtures/vm/build-env.sh` once per version of that script and kept under
/// `build/test-cache/vm` with the `.deb`s it downloaded. None (skip) locally when
/// mmdebstrap or umoci is missing; panics under strict mode, or when the script fails.
pub fn vm_build_env_image() -> Option<PathBuf> {
    if !require("mmdebstrap") || !require("umoci") {
        return None;
    }
    let real = project_root();
    let script = real.join("tests/fixtures/vm/build-env.sh");
    let text = std::fs::read(&script).expect("tests/fixtures/vm/build-env.sh");
    // FNV-1a: a key for the cache directory, not a security boundary.
    let hash = text.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    });
    let dir = real.join("build/test-cache/vm");
    let layout = dir.join(format!("build-env-{hash:016x}"));
    if layout.join("index.json").exists() {
        return Some(layout);
    }
    std::fs::create_dir_all(&dir).expect("build/test-cache/vm");
    let t = std::time::Instant::now();
    let o = std::process::Command::new("sh")
        .arg(&script)
        .arg(&layout)
        .arg(dir.join("apt"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("sh");
    assert!(
        o.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!(
        "build environment image {} made in {:.0} s",
        layout.display(),
        t.elapsed().as_secs_f64()
    );
    Some(layout)
}
