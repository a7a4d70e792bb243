//! Differential test: Keel's atom parser against Portage's `portage.dep.isvalidatom`
//! (the PyPI `portage` pinned by crates/portage), over the corpus in `atoms.txt`, under
//! every combination of `allow_blockers` and `allow_repo`. One Python process checks the
//! whole corpus.

use pkgsets::{Atom, ParseOptions};
use std::fmt::Write as _;

const CORPUS: &str = include_str!("atoms.txt");

/// The option combinations, in the order the Python side prints its verdicts.
const COMBOS: [ParseOptions; 4] = [
    ParseOptions {
        allow_blockers: false,
        allow_repo: false,
    },
    ParseOptions {
        allow_blockers: false,
        allow_repo: true,
    },
    ParseOptions {
        allow_blockers: true,
        allow_repo: false,
    },
    ParseOptions {
        allow_blockers: true,
        allow_repo: true,
    },
];

/// Reads hex-encoded UTF-8 atoms, one a line; prints one line of four verdicts per atom
/// (`1` valid, `0` invalid, `E` exception) after a header line.
const ORACLE: &str = r#"
import sys
import portage
import portage.dep as dep
print("portage", portage.VERSION, "native-parser" if dep._c_dep_parser else "python-parser")
with open(sys.argv[1]) as f:
    for line in f:
        atom = bytes.fromhex(line.strip()).decode("utf-8")
        out = []
        for blockers in (False, True):
            for repo in (False, True):
                try:
                    ok = dep.isvalidatom(atom, allow_blockers=blockers, allow_wildcard=False,
                                         allow_repo=repo, eapi="8")
                    out.append("1" if ok else "0")
                except Exception as e:
                    out.append("E")
        print("".join(out))
"#;

/// The corpus lines, unescaped (see the head of atoms.txt).
fn corpus() -> Vec<(usize, String)> {
    let mut atoms = Vec::new();
    for (i, line) in CORPUS.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        atoms.push((i + 1, unescape(line, i + 1)));
    }
    atoms
}

fn unescape(line: &str, lineno: usize) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('#') => out.push('#'),
            Some('e') => {}
            Some('u') => {
                let rest: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let hex = rest
                    .strip_prefix('{')
                    .unwrap_or_else(|| panic!("atoms.txt:{lineno}: bad \\u escape"));
                let cp = u32::from_str_radix(hex, 16)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or_else(|| panic!("atoms.txt:{lineno}: bad \\u escape"));
                out.push(cp);
            }
            other => panic!("atoms.txt:{lineno}: unknown escape \\{other:?}"),
        }
    }
    out
}

fn hex(s: &str) -> String {
    s.bytes().fold(String::new(), |mut h, b| {
        let _ = write!(h, "{b:02x}");
        h
    })
}

#[test]
fn corpus_is_big_and_decodes() {
    let atoms = corpus();
    assert!(
        atoms.len() >= 300,
        "only {} atoms in the corpus",
        atoms.len()
    );
    let mut seen = std::collections::HashSet::new();
    for (line, atom) in &atoms {
        assert!(
            seen.insert(atom),
            "atoms.txt:{line}: duplicate atom {atom:?}"
        );
    }
}

/// Portage's verdicts for `atoms`, four per atom in [`COMBOS`] order: one Python process.
fn portage_verdicts(venv: &std::path::Path, atoms: &[String]) -> Vec<String> {
    let scratch = tempfile::tempdir().unwrap();
    let input = scratch.path().join("atoms.hex");
    let lines: String = atoms.iter().map(|a| hex(a) + "\n").collect();
    std::fs::write(&input, lines).unwrap();
    // `import portage.dep` reads no Portage configuration (measured with strace: nothing
    // under /etc/portage, /var/db/pkg, /var/cache/edb, /var/lib/portage); the empty
    // environment and a scratch EPREFIX make sure nothing of the host's leaks in.
    let eprefix = scratch.path().join("eprefix");
    std::fs::create_dir(&eprefix).unwrap();
    let out = exec::Cmd::new(venv.join("bin/python"))
        .env_clear()
        .env("HOME", scratch.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PORTAGE_OVERRIDE_EPREFIX", &eprefix)
        .args(["-c", ORACLE])
        .arg(&input)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut verdicts = out.stdout.lines();
    let header = verdicts.next().unwrap_or_default();
    eprintln!("oracle: {header}");
    let verdicts: Vec<String> = verdicts.map(str::to_owned).collect();
    assert_eq!(verdicts.len(), atoms.len(), "stderr: {}", out.stderr);
    verdicts
}

/// Every disagreement between Keel and Portage, one line each; and how many atoms Portage
/// finds valid and invalid with the default options.
fn compare(atoms: &[(String, String)], verdicts: &[String]) -> (Vec<String>, usize, usize) {
    let mut disagreements = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for ((origin, atom), verdict) in atoms.iter().zip(verdicts) {
        for (opts, portage) in COMBOS.iter().zip(verdict.chars()) {
            let keel = Atom::parse(atom, *opts);
            if *opts == ParseOptions::default() {
                if portage == '1' {
                    valid += 1;
                } else {
                    invalid += 1;
                }
            }
            let agree = match portage {
                '1' => keel.is_ok(),
                '0' => keel.is_err(),
                _ => false,
            };
            if !agree {
                let portage = match portage {
                    '1' => "valid".to_owned(),
                    '0' => "invalid".to_owned(),
                    other => format!("raised an exception ({other})"),
                };
                let keel = match keel {
                    Ok(a) => format!("valid, normalized `{a}`"),
                    Err(e) => format!("invalid: {}", e.reason),
                };
                disagreements.push(format!(
                    "{origin}: {atom:?} (allow_blockers={}, allow_repo={}): Portage {portage}; Keel {keel}",
                    opts.allow_blockers, opts.allow_repo
                ));
            }
        }
    }
    (disagreements, valid, invalid)
}

#[test]
fn keel_agrees_with_portage_on_the_corpus() {
    let Some(venv) = testutil::portage_venv() else {
        return;
    };
    let atoms: Vec<(String, String)> = corpus()
        .into_iter()
        .map(|(line, a)| (format!("atoms.txt:{line}"), a))
        .collect();
    let texts: Vec<String> = atoms.iter().map(|(_, a)| a.clone()).collect();
    let verdicts = portage_verdicts(&venv, &texts);
    let (disagreements, valid, invalid) = compare(&atoms, &verdicts);
    eprintln!(
        "{} atoms x {} option sets checked; with the default options Portage finds {valid} valid and {invalid} invalid",
        atoms.len(),
        COMBOS.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements with Portage:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    assert!(
        valid >= 100 && invalid >= 100,
        "the corpus needs both kinds in number: {valid} valid, {invalid} invalid"
    );
}

/// xorshift64*: a fixed seed gives the same mutants on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Near misses: each corpus atom that Keel accepts with every option, mutated by inserting,
/// deleting or replacing a character, or spliced with another atom.
fn mutants(count: usize) -> Vec<(String, String)> {
    const ALPHABET: &[&str] = &[
        "!", "<", ">", "=", "~", "*", ":", "::", "/", "[", "]", "(+)", "(-)", "(", ")", ",", "?",
        "+", "-", "_", ".", "@", "a", "z", "A", "0", "1", "9", "r", "-r1", "_p", "_rc1", "_alpha",
        "-1", " ", "é",
    ];
    let all = COMBOS[3];
    let seeds: Vec<Vec<char>> = corpus()
        .into_iter()
        .filter(|(_, a)| Atom::parse(a, all).is_ok())
        .map(|(_, a)| a.chars().collect())
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    while out.len() < count {
        let mut a = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(2) {
            let pos = rng.below(a.len() + 1);
            match rng.below(4) {
                0 => {
                    let ins: Vec<char> = ALPHABET[rng.below(ALPHABET.len())].chars().collect();
                    a.splice(pos..pos, ins);
                }
                1 if pos < a.len() => {
                    a.remove(pos);
                }
                2 if pos < a.len() => {
                    let rep: Vec<char> = ALPHABET[rng.below(ALPHABET.len())].chars().collect();
                    a.splice(pos..pos + 1, rep);
                }
                _ => {
                    let other = &seeds[rng.below(seeds.len())];
                    let cut = rng.below(other.len() + 1);
                    a.truncate(pos);
                    a.extend_from_slice(&other[cut..]);
                }
            }
        }
        let s: String = a.into_iter().collect();
        if seen.insert(s.clone()) {
            out.push((format!("mutant {}", out.len()), s));
        }
    }
    out
}

#[test]
fn keel_agrees_with_portage_on_mutants_of_the_corpus() {
    let Some(venv) = testutil::portage_venv() else {
        return;
    };
    let atoms = mutants(20_000);
    let texts: Vec<String> = atoms.iter().map(|(_, a)| a.clone()).collect();
    let verdicts = portage_verdicts(&venv, &texts);
    let (disagreements, valid, invalid) = compare(&atoms, &verdicts);
    eprintln!(
        "{} mutants x {} option sets checked; with the default options Portage finds {valid} valid and {invalid} invalid",
        atoms.len(),
        COMBOS.len()
    );
    assert!(
        disagreements.is_empty(),
        "{} disagreements with Portage:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
