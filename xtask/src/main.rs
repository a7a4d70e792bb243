//! `cargo xtask <command> [args]`.
//!
//! 1. Makes sure the host has what the build and the tests need (`host.rs`).
//! 2. `test` and `bench` are run here (they drive cargo); every other command builds the
//!    engine binary `keel` and runs it with the same arguments.

mod host;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    match run(&root, &args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default()
}

fn run(root: &Path, args: &[String]) -> Result<ExitCode, String> {
    let first = args.first().map(String::as_str);
    match first {
        None | Some("-h" | "--help" | "help") => {
            println!("usage: cargo xtask <command> [args]\n");
            println!("  test [cargo test args]   install what the tests need, run every test (real tools included)");
            println!(
                "  bench [name]             run the benchmarks (plan, ...) and print their reports"
            );
            println!("  <keel command> [args]    make sure the host has the build tools, then run `keel <command> [args]`\n");
            println!("keel's commands:");
            keel(root, &["--help".to_owned()])
        }
        Some("test") => {
            host::ensure(host::Purpose::Test)?;
            // The test profile shares the dev profile's artifacts: no second release build.
            let keel_bin = build_keel(root, false)?;
            let venv = portage_venv(&keel_bin, root)?;
            // The whole suite: the long VM build test runs beside the rest (see `side_test`).
            let side = if args.len() == 1 {
                Some(side_test(root, &venv)?)
            } else {
                None
            };
            let mut cargo = Command::new(env!("CARGO"));
            cargo
                .args(["test", "--workspace", "--locked", "--no-fail-fast"])
                .args(&args[1..]);
            if side.is_some() {
                cargo.args(["--", "--skip", SIDE_TEST]);
            }
            let status = cargo
                .env("KEEL_TEST_STRICT", "1")
                .env("KEEL_PORTAGE_VENV", &venv)
                .current_dir(root)
                .status()
                .map_err(|e| format!("cannot run cargo test: {e}"))?;
            let side_ok = match side {
                None => true,
                Some(s) => s.finish()?,
            };
            Ok(if side_ok {
                exit(status)
            } else {
                ExitCode::FAILURE
            })
        }
        Some("bench") => {
            host::ensure(host::Purpose::Test)?;
            let mut c = Command::new(env!("CARGO"));
            c.args(["bench", "--workspace", "--locked"]);
            if let Some(name) = args.get(1) {
                c.args(["--bench", name]);
            }
            let status = c
                .current_dir(root)
                .status()
                .map_err(|e| format!("cannot run cargo bench: {e}"))?;
            Ok(exit(status))
        }
        Some(_) => {
            host::ensure(host::Purpose::Build)?;
            keel(root, args)
        }
    }
}

/// The test that builds the `selinux` variant on the host and then in a VM under TCG (over
/// the host build's binary packages): the longest test on a 2-CPU machine, mostly one
/// CPU's worth of emulated Python. It runs beside the rest of the suite instead of after
/// it, so the suite takes about as long as this one test.
const SIDE_TEST: &str = "keel_vm_builds_what_the_host_builds";

/// A test binary running one test on its own, its output in a log file.
struct SideTest {
    child: std::process::Child,
    log: PathBuf,
}

/// Compile every test, then start the VM build test's binary (found in cargo's JSON
/// messages) directly, as `cargo test` would run it: from the package's directory, with
/// the same environment.
fn side_test(root: &Path, venv: &str) -> Result<SideTest, String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "test",
            "--workspace",
            "--locked",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo test --no-run: {e}"))?;
    if !out.status.success() {
        return Err("the tests do not compile (cargo test --no-run failed)".into());
    }
    let src = root.join("crates/keel/tests/vm.rs");
    let wanted = format!("\"src_path\":\"{}\"", src.display());
    let exe = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&wanted) && l.contains("\"test\":true"))
        .find_map(|l| {
            let rest = l.split("\"executable\":\"").nth(1)?;
            rest.split('"').next().map(PathBuf::from)
        })
        .ok_or_else(|| format!("cargo built no test binary for {}", src.display()))?;
    let logs = root.join("build/logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let log = logs.join("test-vm.log");
    let f = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let f2 = f
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    eprintln!(
        "xtask: running {SIDE_TEST} beside the other tests (log: {})",
        log.display()
    );
    let child = Command::new(&exe)
        .args(["--exact", SIDE_TEST, "--nocapture"])
        .env("KEEL_TEST_STRICT", "1")
        .env("KEEL_PORTAGE_VENV", venv)
        .current_dir(root.join("crates/keel"))
        .stdin(std::process::Stdio::null())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
    Ok(SideTest { child, log })
}

impl SideTest {
    /// Wait for it, print its log, and say whether it passed.
    fn finish(mut self) -> Result<bool, String> {
        eprintln!(
            "xtask: waiting for {SIDE_TEST} (log: {})",
            self.log.display()
        );
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for {SIDE_TEST}: {e}"))?;
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        eprintln!("---- {SIDE_TEST} ----\n{text}");
        if status.success() {
            eprintln!("xtask: {SIDE_TEST} passed");
        } else {
            eprintln!(
                "xtask: {SIDE_TEST} FAILED ({status}); log: {}",
                self.log.display()
            );
        }
        Ok(status.success())
    }
}

/// Build `keel` and return its path.
fn build_keel(root: &Path, release: bool) -> Result<PathBuf, String> {
    let mut args = vec!["build", "--quiet", "--locked", "--package", "keel"];
    if release {
        args.push("--release");
    }
    let status = Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err("building keel failed".into());
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join(if release {
        "release/keel"
    } else {
        "debug/keel"
    }))
}

fn keel(root: &Path, args: &[String]) -> Result<ExitCode, String> {
    let bin = build_keel(root, true)?;
    let status = Command::new(&bin)
        .args(args)
        .env("KEEL_PROJECT", root)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    Ok(exit(status))
}

/// Portage from PyPI for the tests (the atom oracle, the Portage backend): keel owns the pin.
fn portage_venv(keel_bin: &Path, root: &Path) -> Result<String, String> {
    let out = Command::new(keel_bin)
        .args(["tools", "portage-venv"])
        .env("KEEL_PROJECT", root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", keel_bin.display()))?;
    if !out.status.success() {
        return Err("keel could not set up Portage from PyPI".into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn exit(status: std::process::ExitStatus) -> ExitCode {
    match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    }
}
