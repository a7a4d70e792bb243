//! Tidy: the docs that describe the code are checked against it (rust-analyzer's
//! `tidy.rs` is the model). The code map in docs/ARCHITECTURE.md against the workspace
//! members; the stage table in docs/pipeline.md against `pipeline::plan`; the keys in
//! docs/variants.md against the `variant.toml` schema; every "Architecture Invariant"
//! names the test that enforces it; `cargo fmt --check`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    testutil::project_root()
}

fn read(rel: &str) -> String {
    fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The workspace members: `xtask` and every directory under `crates/` with a Cargo.toml.
fn members() -> BTreeSet<String> {
    let mut m: BTreeSet<String> = fs::read_dir(root().join("crates"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| format!("crates/{}", e.file_name().to_string_lossy()))
        .collect();
    m.insert("xtask/".into());
    m
}

#[test]
fn code_map_names_every_crate_and_nothing_else() {
    let arch = read("docs/ARCHITECTURE.md");
    let mapped: BTreeSet<String> = arch
        .lines()
        .filter_map(|l| l.strip_prefix("### `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(str::to_owned)
        .collect();
    let members = members();
    let missing: Vec<&String> = members.difference(&mapped).collect();
    let stale: Vec<&String> = mapped.difference(&members).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/ARCHITECTURE.md's code map: no `### `crate`` section for {missing:?}; sections for no crate: {stale:?}"
    );
}

/// The first column of docs/pipeline.md's stage table, with its "(Gentoo)"-style notes
/// taken off.
fn documented_stages() -> Vec<String> {
    let doc = read("docs/pipeline.md");
    let table = doc
        .split("<!-- stages")
        .nth(1)
        .and_then(|t| t.split("<!-- end of stages -->").next())
        .expect("docs/pipeline.md has no `<!-- stages ... <!-- end of stages -->` table");
    table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| stage ") && !l.starts_with("|---"))
        .filter_map(|l| l.trim_start_matches("| ").split(" |").next())
        .map(|c| c.split(" (").next().unwrap_or(c).trim().to_owned())
        .collect()
}

#[test]
fn pipeline_doc_lists_the_plans_stages_in_order() {
    let documented = documented_stages();
    let project = variant::Project::load(&root()).unwrap();
    let mut used = BTreeSet::new();
    assert!(!project.variants.is_empty());
    for name in project.variants.keys() {
        let resolved = project.resolve(name).unwrap();
        let plan: Vec<&str> = pipeline::stages_of(&project, &resolved)
            .iter()
            .map(|(id, _)| id.name())
            .collect();
        // The plan is the documented list with the stages this variant does not have
        // left out.
        let seen: Vec<&str> = documented
            .iter()
            .map(String::as_str)
            .filter(|s| plan.contains(s))
            .collect();
        assert_eq!(
            seen, plan,
            "docs/pipeline.md's stage table ({documented:?}) does not list the stages of `{name}` in its plan's order"
        );
        used.extend(plan.iter().map(|s| s.to_string()));
    }
    let unused: Vec<&String> = documented.iter().filter(|s| !used.contains(*s)).collect();
    assert!(
        unused.is_empty(),
        "docs/pipeline.md lists stages no shipped variant's plan has: {unused:?}"
    );
}

/// The keys of one table of `variant.toml`, as the schema knows them: serde names every
/// field when it refuses an unknown one.
fn schema_keys(table: Option<&str>) -> Vec<String> {
    let text = match table {
        Some(t) => format!("[{t}]\ntidy-unknown-key = 1\n"),
        None => "tidy-unknown-key = 1\n".to_owned(),
    };
    let e = toml::from_str::<variant::schema::VariantToml>(&text)
        .expect_err("the schema must refuse an unknown key")
        .to_string();
    // "expected `a` or `b`", or "expected one of `a`, `b`, ..."
    let list = e
        .split("expected ")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in the schema's error: {e}"));
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn variants_doc_lists_every_schema_key() {
    let doc = read("docs/variants.md");
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let mut schema = BTreeSet::new();
    let tables = ["image", "disk", "selinux", "hooks"];
    for k in schema_keys(None) {
        if !tables.contains(&k.as_str()) {
            schema.insert(k);
        }
    }
    for t in tables {
        assert!(schema_keys(None).contains(&t.to_owned()), "no table `{t}`");
        for k in schema_keys(Some(t)) {
            schema.insert(format!("[{t}] {k}"));
        }
    }
    assert!(
        schema.len() > 10,
        "the schema's keys were not found: {schema:?}"
    );
    let missing: Vec<&String> = schema.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "docs/variants.md's key table lacks schema keys {missing:?}"
    );
    // Rows of the key table that the schema does not know.
    let table = doc
        .split("| key | type | default | meaning |")
        .nth(1)
        .and_then(|t| t.split("\n\n").next())
        .expect("docs/variants.md has no key table");
    let rows: BTreeSet<String> = table
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let stale: Vec<&String> = rows.difference(&schema).collect();
    assert!(
        stale.is_empty(),
        "docs/variants.md documents keys the schema does not have: {stale:?}"
    );
}

/// Every `.rs` file of the workspace.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name == "build" || name == ".git" {
            continue;
        }
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_architecture_invariant_names_its_test() {
    let arch = read("docs/ARCHITECTURE.md");
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    rust_files(&root().join("xtask"), &mut files);
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|p| {
            (
                p.strip_prefix(root())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                fs::read_to_string(p).unwrap_or_default(),
            )
        })
        .collect();
    // A test is named by a test file's path, or by a function in a file that has tests.
    let names_a_test = |para: &str| {
        para.split('`').skip(1).step_by(2).any(|tok| {
            let tok = tok.trim_end_matches("()");
            let tok = tok.rsplit("::").next().unwrap_or(tok);
            let tok = tok.split(',').next().unwrap_or(tok).trim();
            if tok.ends_with(".rs") {
                return sources.iter().any(|(path, text)| {
                    path.ends_with(tok) && (path.contains("tests") || text.contains("#[test]"))
                });
            }
            !tok.is_empty()
                && tok.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && sources.iter().any(|(_, text)| {
                    text.contains("#[test]") && text.contains(&format!("fn {tok}("))
                })
        })
    };
    let paragraphs: Vec<&str> = arch
        .split("\n\n")
        .filter(|p| p.contains("**Architecture Invariant:**"))
        .collect();
    assert!(!paragraphs.is_empty());
    let unnamed: Vec<String> = paragraphs
        .iter()
        .filter(|p| !names_a_test(p))
        .map(|p| p.lines().next().unwrap_or("").to_owned())
        .collect();
    assert!(
        unnamed.is_empty(),
        "docs/ARCHITECTURE.md: these Architecture Invariants name no test that enforces them (a test file's path or a test function in backticks):\n{}",
        unnamed.join("\n")
    );
}

#[test]
fn code_is_formatted() {
    let o = Command::new(env!("CARGO"))
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(root())
        .output()
        .expect("run cargo fmt");
    assert!(
        o.status.success(),
        "`cargo fmt --all -- --check` found unformatted code (run `cargo fmt --all`):\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn no_variant_name_in_code() {
    // `selinux` is also the LSM's name and a policy word: not checked.
    let names = ["\"base\"", "\"debian-base\"", "\"debian-selinux\""];
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // Tests, benches and the test-support crates may name the shipped variants.
        let code_file = rel.contains("/src/")
            && !rel.ends_with("tests.rs")
            && !rel.starts_with("crates/testutil/")
            && !rel.starts_with("crates/fuzz/");
        if !code_file {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            if names.iter().any(|n| line.contains(n)) {
                found.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "variant names in code (everything about a variant comes from its directory):\n{}",
        found.join("\n")
    );
}

/// One rule for error messages: a wrapper either shows its cause or is transparent, never
/// both. A field named `source` (or marked `#[from]`/`#[source]`) is the error's cause for
/// `Error::source()`, and the CLI prints the chain; so a message may not show it too.
#[test]
fn no_error_shows_its_source_twice() {
    let mut files = Vec::new();
    rust_files(&root().join("crates"), &mut files);
    let mut found = Vec::new();
    for f in files {
        let text = fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(root()).unwrap().display().to_string();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim_start();
            if !l.starts_with("#[error(") {
                continue;
            }
            // The attribute and the variant or struct it describes, up to the next attribute
            // of the same kind.
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.trim_start().starts_with("#[error(") || l.trim_start() == "}")
                .map_or(lines.len(), |n| i + 1 + n);
            let item = lines[i..end].join("\n");
            let shows_source = l.contains("{source}");
            let shows_zero_from =
                l.contains("{0}") && (item.contains("#[from]") || item.contains("#[source]"));
            if shows_source || shows_zero_from {
                found.push(format!("{rel}:{}: {}", i + 1, l));
            }
        }
    }
    assert!(
        found.is_empty(),
        "errors that show their source in the message and return it from source() too (name the field otherwise, or make the wrapper #[error(transparent)]):\n{}",
        found.join("\n")
    );
}
