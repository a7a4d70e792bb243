//! Property tests: generated valid atoms parse into the parts they were made of, and
//! `Display` then `parse` gives an equal atom; arbitrary strings never panic the parser.

use pkgsets::{Atom, ParseOptions};
use proptest::prelude::*;

const ALL: ParseOptions = ParseOptions {
    allow_blockers: true,
    allow_repo: true,
};

/// A package name: segments after a hyphen start with a non-digit, so no tail is a version.
fn package() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_+]{0,6}(-[a-zA-Z_+][a-zA-Z0-9_+]{0,5}){0,2}"
}

fn version() -> impl Strategy<Value = String> {
    "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}[a-z]?(_(alpha|beta|pre|rc|p)[0-9]{0,3}){0,3}(-r[0-9]{1,3})?"
}

fn slot() -> impl Strategy<Value = String> {
    let name = "[A-Za-z0-9_][A-Za-z0-9_+.-]{0,5}";
    prop_oneof![
        Just(String::new()),
        Just(":*".to_owned()),
        Just(":=".to_owned()),
        (name, proptest::option::of(name), any::<bool>()).prop_map(|(s, sub, eq)| {
            let sub = sub.map(|x| format!("/{x}")).unwrap_or_default();
            format!(":{s}{sub}{}", if eq { "=" } else { "" })
        }),
    ]
}

fn use_deps() -> impl Strategy<Value = String> {
    let dep = (0..6usize, "[A-Za-z0-9][A-Za-z0-9+_@-]{0,6}", 0..3usize);
    proptest::collection::vec(dep, 0..6).prop_map(|deps| {
        if deps.is_empty() {
            return String::new();
        }
        // One default per flag (Portage rejects mixed defaults for a flag).
        let mut defaults = std::collections::HashMap::new();
        let tokens: Vec<String> = deps
            .iter()
            .map(|(kind, flag, default)| {
                let default = *defaults.entry(flag.clone()).or_insert(*default);
                let d = ["", "(+)", "(-)"][default];
                let (pre, post) = [
                    ("", ""),
                    ("-", ""),
                    ("", "="),
                    ("!", "="),
                    ("", "?"),
                    ("!", "?"),
                ][*kind];
                format!("{pre}{flag}{d}{post}")
            })
            .collect();
        format!("[{}]", tokens.join(","))
    })
}

#[derive(Debug, Clone)]
struct Parts {
    blocker: &'static str,
    op: &'static str,
    glob: bool,
    cat: String,
    pkg: String,
    version: String,
    slot: String,
    repo: Option<String>,
    uses: String,
}

impl Parts {
    fn text(&self) -> String {
        let mut s = format!("{}{}{}/{}", self.blocker, self.op, self.cat, self.pkg);
        if !self.op.is_empty() {
            s += &format!("-{}", self.version);
        }
        if self.glob {
            s += "*";
        }
        s += &self.slot;
        if let Some(r) = &self.repo {
            s += &format!("::{r}");
        }
        s + &self.uses
    }
}

fn atom() -> impl Strategy<Value = Parts> {
    (
        prop::sample::select(vec!["", "!", "!!"]),
        prop::sample::select(vec!["", "<", "<=", "=", "=*", "~", ">=", ">"]),
        "[A-Za-z0-9_][A-Za-z0-9_+.-]{0,8}",
        package(),
        version(),
        slot(),
        proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_-]{0,8}"),
        use_deps(),
    )
        .prop_map(|(blocker, op, cat, pkg, version, slot, repo, uses)| {
            let glob = op == "=*";
            Parts {
                blocker,
                op: if glob { "=" } else { op },
                glob,
                cat,
                pkg,
                version,
                slot,
                repo,
                uses,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn generated_atoms_parse_and_round_trip(p in atom()) {
        let text = p.text();
        let a = Atom::parse(&text, ALL).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(a.key(), format!("{}/{}", p.cat, p.pkg));
        prop_assert_eq!(a.version().map(|v| v.to_string()), (!p.op.is_empty()).then(|| p.version.clone()));
        prop_assert_eq!(a.repo(), p.repo.as_deref());
        prop_assert_eq!(a.slot().map(|s| format!(":{s}")).unwrap_or_default(), p.slot.clone());
        let normal = a.to_string();
        let again = Atom::parse(&normal, ALL).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&again, &a);
        prop_assert_eq!(again.to_string(), normal);
        // Without USE dependencies there is nothing to reorder: the normal form is the input.
        if p.uses.is_empty() {
            prop_assert_eq!(a.to_string(), text);
        }
    }

    #[test]
    fn arbitrary_strings_never_panic_and_valid_ones_round_trip(
        s in "[!<>=~a-z0-9_/.:*+@()?,\\[\\]-]{0,30}"
    ) {
        if let Ok(a) = Atom::parse(&s, ALL) {
            let again = Atom::parse(&a.to_string(), ALL).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(again, a);
        }
    }

    #[test]
    fn any_unicode_never_panics(s in any::<String>()) {
        let _ = Atom::parse(&s, ALL);
    }
}
