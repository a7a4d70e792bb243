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

#[test]
fn keel_agrees_with_portage_on_the_corpus() {
    let Some(venv) = testutil::portage_venv() else {
        return;
    };
    let atoms = corpus();
    let scratch = tempfile::tempdir().unwrap();
    let input = scratch.path().join("atoms.hex");
    let lines: String = atoms.iter().map(|(_, a)| hex(a) + "\n").collect();
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
    let verdicts: Vec<&str> = verdicts.collect();
    assert_eq!(verdicts.len(), atoms.len(), "stderr: {}", out.stderr);

    let mut disagreements = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for ((line, atom), verdict) in atoms.iter().zip(&verdicts) {
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
                    "atoms.txt:{line}: {atom:?} (allow_blockers={}, allow_repo={}): Portage {portage}; Keel {keel}",
                    opts.allow_blockers, opts.allow_repo
                ));
            }
        }
    }
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
