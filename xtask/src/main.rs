//! `cargo xtask <command> [args]`.
//!
//! 1. Makes sure the host has what the build and the tests need (`host.rs`).
//! 2. `test` and `bench` are run here (they drive cargo); every other command builds the
//!    engine binary `keel` and runs it with the same arguments.

mod host;
mod suite;

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
            let t = std::time::Instant::now();
            host::ensure(host::Purpose::Test)?;
            // The test profile shares the dev profile's artifacts: no second release build.
            let keel_bin = build_keel(root, false)?;
            let venv = portage_venv(&keel_bin, root)?;
            let env = [
                ("KEEL_TEST_STRICT", "1"),
                ("KEEL_PORTAGE_VENV", venv.as_str()),
            ];
            if args.len() > 1 {
                // A selection (`cargo xtask test -p tmpfiles --test cat`): cargo runs it,
                // over the whole workspace unless it names packages (cargo lets
                // `--workspace` win over `-p`).
                let names_packages = args[1..]
                    .iter()
                    .take_while(|a| *a != "--")
                    .any(|a| a.starts_with("-p") || a.starts_with("--package"));
                let mut cargo = Command::new(env!("CARGO"));
                cargo.args(["test", "--locked", "--no-fail-fast"]);
                if !names_packages {
                    cargo.arg("--workspace");
                }
                let status = cargo
                    .args(&args[1..])
                    .envs(env)
                    .current_dir(root)
                    .status()
                    .map_err(|e| format!("cannot run cargo test: {e}"))?;
                return Ok(exit(status));
            }
            whole_suite(root, &env, t)
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

/// Every test binary (`suite.rs`): compiled by cargo, run here a few at a time, timed;
/// the table at the end is also written to `build/logs/test-times.txt`.
fn whole_suite(
    root: &Path,
    env: &[(&str, &str)],
    t: std::time::Instant,
) -> Result<ExitCode, String> {
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
    let mut bins = suite::parse_artifacts(&String::from_utf8_lossy(&out.stdout));
    if bins.is_empty() {
        return Err("cargo built no test binaries".into());
    }
    bins.push(suite::Binary::doctests(root));
    // Lints are part of the suite: `cargo clippy` with warnings as errors (its verdict is
    // reported with the tests' at the end; the tests run either way).
    eprintln!("xtask: cargo clippy --workspace --all-targets -- -D warnings");
    let clippy_ok = Command::new(env!("CARGO"))
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(root)
        .status()
        .map_err(|e| format!("cannot run cargo clippy: {e}"))?
        .success();
    // One binary more than CPUs: the longest (a VM under TCG) mostly keeps one CPU busy,
    // and several binaries wait on downloads and QEMU boots part of their time.
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get()) + 1;
    let setup = t.elapsed();
    let tests = std::time::Instant::now();
    let outcomes = suite::run(root, bins, env, jobs)?;
    let table = suite::table(&outcomes, setup, tests.elapsed(), jobs);
    eprint!("\n{table}");
    let path = root.join("build/logs/test-times.txt");
    std::fs::write(&path, &table).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("xtask: the table is in {}", path.display());
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.ok)
        .map(|o| o.name.as_str())
        .collect();
    if !clippy_ok {
        eprintln!("xtask: FAILED cargo clippy -- -D warnings (its output is above the tests')");
    }
    if failed.is_empty() && clippy_ok {
        eprintln!("xtask: every test binary passed, and clippy");
        Ok(ExitCode::SUCCESS)
    } else if failed.is_empty() {
        Err("cargo clippy found warnings".into())
    } else {
        for o in outcomes.iter().filter(|o| !o.ok) {
            eprintln!(
                "xtask: FAILED {} ({}); log: {}",
                o.name,
                o.status,
                o.log.display()
            );
        }
        Err(format!(
            "{} test binaries failed: {}",
            failed.len(),
            failed.join(", ")
        ))
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
