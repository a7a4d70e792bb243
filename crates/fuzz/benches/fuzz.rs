//! The long fuzz run: every target (or those named in `KEEL_FUZZ_TARGETS`, comma
//! separated) for `KEEL_FUZZ_SECONDS` (default 60) each, or `KEEL_FUZZ_EXECS` executions
//! each when that is set, from `KEEL_FUZZ_SEED`. Run with `cargo xtask bench fuzz`
//! (docs/fuzz.md). Prints a table; exits 1 when a target panicked, after printing the
//! crash and where its input was written. `KEEL_FUZZ_REPLAY=FILE,...` replays saved
//! inputs instead.

use fuzz::{targets, Limits, Target};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

fn env_num(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|e| format!("{name}=`{v}`: {e}")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `KEEL_FUZZ_REPLAY=FILE,...`: run saved inputs through their target (the name of the
/// directory they are in, as the fuzzer saves them), timed, instead of fuzzing.
fn replay(files: &str) -> Result<ExitCode, String> {
    let mut failed = false;
    for f in files.split(',').map(Path::new) {
        let name = f
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let t = targets::by_name(&name)
            .ok_or_else(|| format!("{}: no fuzz target `{name}` (its directory)", f.display()))?;
        let input = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let start = std::time::Instant::now();
        let r = fuzz::replay(t, &input);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        match r {
            Ok(shapes) => println!(
                "{}: {name}: ok, {} shapes, {ms:.1} ms",
                f.display(),
                shapes.len()
            ),
            Err(m) => {
                println!("{}: {name}: {m} ({ms:.1} ms)", f.display());
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn run() -> Result<ExitCode, String> {
    if let Ok(files) = std::env::var("KEEL_FUZZ_REPLAY") {
        return replay(&files);
    }
    // `cargo bench` passes `--bench`; a name argument filters like KEEL_FUZZ_TARGETS.
    let filter: Vec<String> = match std::env::var("KEEL_FUZZ_TARGETS") {
        Ok(v) => v.split(',').map(|s| s.trim().to_owned()).collect(),
        Err(_) => std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect(),
    };
    let chosen: Vec<&Target> = if filter.is_empty() {
        targets::ALL.iter().collect()
    } else {
        filter
            .iter()
            .map(|n| targets::by_name(n).ok_or_else(|| format!("no fuzz target `{n}`")))
            .collect::<Result<_, _>>()?
    };
    let seed = fuzz::seed_from_env()?;
    let limits = match env_num("KEEL_FUZZ_EXECS")? {
        Some(n) => Limits {
            execs: Some(n),
            time: None,
        },
        None => Limits {
            execs: None,
            time: Some(Duration::from_secs(
                env_num("KEEL_FUZZ_SECONDS")?.unwrap_or(60),
            )),
        },
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz");
    println!(
        "fuzz: {} targets, {} each, seed {seed:#x}; crashing inputs go to {}",
        chosen.len(),
        match limits {
            Limits { execs: Some(n), .. } => format!("{n} executions"),
            Limits { time: Some(t), .. } => format!("{} s", t.as_secs()),
            _ => unreachable!("one limit is always set"),
        },
        out.display()
    );
    let mut reports = Vec::new();
    for t in chosen {
        let r = fuzz::run(t, seed, limits, &out);
        println!(
            "  {:<16} {:>10} executions {:>7.1} s",
            t.name,
            r.execs,
            r.elapsed.as_secs_f64()
        );
        if let Some(p) = &r.slow_input {
            println!(
                "    slowest input ({:.0} ms) saved to {}",
                r.slowest.as_secs_f64() * 1e3,
                p.display()
            );
        }
        reports.push(r);
    }
    println!();
    print!("{}", fuzz::table(&reports));
    let mut failed = false;
    for c in reports.iter().filter_map(|r| r.crash.as_ref()) {
        println!("\n{c}");
        failed = true;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
