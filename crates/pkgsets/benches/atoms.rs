//! Atom parsing speed, Keel against Portage's `isvalidatom`, over the test corpus.
//! Run with `cargo bench -p pkgsets --bench atoms`. A report, not a timed test.

use pkgsets::{Atom, ParseOptions};
use std::time::Instant;

const CORPUS: &str = include_str!("../tests/atoms.txt");
const ROUNDS: usize = 200;

/// Portage's side: the same atoms, the same rounds, timed inside Python (start-up excluded).
const PORTAGE: &str = r#"
import sys, time
import portage.dep as dep
atoms = [bytes.fromhex(l.strip()).decode() for l in open(sys.argv[1])]
rounds = int(sys.argv[2])
t = time.perf_counter()
for _ in range(rounds):
    for a in atoms:
        dep.isvalidatom(a, allow_blockers=True, allow_wildcard=False, allow_repo=True, eapi="8")
print(time.perf_counter() - t)
"#;

fn main() {
    // Plain lines only (the escapes are the test's business): what a set file holds.
    let atoms: Vec<&str> = CORPUS
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.contains('\\'))
        .collect();
    let opts = ParseOptions {
        allow_blockers: true,
        allow_repo: true,
    };
    let t = Instant::now();
    let mut valid = 0usize;
    for _ in 0..ROUNDS {
        for a in &atoms {
            valid += usize::from(std::hint::black_box(Atom::parse(a, opts)).is_ok());
        }
    }
    let keel = t.elapsed().as_secs_f64();
    let n = (atoms.len() * ROUNDS) as f64;
    println!(
        "atoms: {} atoms x {ROUNDS} rounds ({} valid per round)",
        atoms.len(),
        valid / ROUNDS
    );
    println!(
        "  keel    {:>8.1} ms  {:>8.0} ns/atom",
        keel * 1e3,
        keel * 1e9 / n
    );

    let venv = std::env::var_os("KEEL_PORTAGE_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| testutil::project_root().join("build/tools/portage-3.0.83-keel1"));
    if !venv.join("bin/python").exists() {
        println!(
            "  portage (skipped: no venv at {}; run `keel tools portage-venv`)",
            venv.display()
        );
        return;
    }
    let scratch = tempfile::tempdir().expect("scratch dir");
    let input = scratch.path().join("atoms.hex");
    let hex: String = atoms
        .iter()
        .map(|a| a.bytes().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    std::fs::write(&input, hex).expect("write atoms");
    let out = exec::Cmd::new(venv.join("bin/python"))
        .env_clear()
        .env("PORTAGE_OVERRIDE_EPREFIX", scratch.path())
        .args(["-c", PORTAGE])
        .arg(&input)
        .arg(ROUNDS.to_string())
        .output();
    match out.map(|o| o.stdout.trim().parse::<f64>()) {
        Ok(Ok(portage)) => {
            println!(
                "  portage {:>8.1} ms  {:>8.0} ns/atom",
                portage * 1e3,
                portage * 1e9 / n
            );
            println!("  ratio   keel is {:.1}x faster", portage / keel);
        }
        Ok(Err(e)) => println!("  portage: unreadable timing: {e}"),
        Err(e) => println!("  portage: {e}"),
    }
}
