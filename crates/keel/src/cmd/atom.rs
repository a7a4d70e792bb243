//! `keel atom check ATOM...`: validate atoms against the PMS EAPI 8 grammar (docs/atoms.md).

use anyhow::Result;
use clap::Subcommand;
use pkgsets::{Atom, ParseOptions};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum AtomCommand {
    /// Check atoms; print each one's normalized form or why it is invalid. Exit 0 when all are valid
    Check {
        /// Also accept `!`/`!!` blockers
        #[arg(long)]
        allow_blockers: bool,
        /// Reject `::repo` (accepted by default, as in package set files)
        #[arg(long)]
        no_repo: bool,
        #[arg(required = true)]
        atoms: Vec<String>,
    },
}

impl AtomCommand {
    pub fn run(self) -> Result<ExitCode> {
        let AtomCommand::Check {
            allow_blockers,
            no_repo,
            atoms,
        } = self;
        let opts = ParseOptions {
            allow_blockers,
            allow_repo: !no_repo,
        };
        let (report, all_valid) = check(&atoms, opts);
        super::write_stdout(report.as_bytes())?;
        Ok(if all_valid {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// One line per atom: its normalized form, or `ATOM: invalid: reason`; and whether all
/// were valid.
fn check(atoms: &[String], opts: ParseOptions) -> (String, bool) {
    let mut out = String::new();
    let mut all_valid = true;
    for a in atoms {
        match Atom::parse(a, opts) {
            Ok(atom) => out += &format!("{atom}\n"),
            Err(e) => {
                all_valid = false;
                out += &match pkgsets::atom::excerpt(a) {
                    (shown, false) => format!("{shown}: invalid: {}\n", e.reason),
                    (shown, true) => {
                        format!("{shown}… ({} bytes): invalid: {}\n", a.len(), e.reason)
                    }
                };
            }
        }
    }
    (out, all_valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_cli(opts: ParseOptions, atoms: &[&str], expect: &str, expect_ok: bool) {
        let atoms: Vec<String> = atoms.iter().map(|s| s.to_string()).collect();
        let (out, ok) = check(&atoms, opts);
        assert_eq!(out, expect);
        assert_eq!(ok, expect_ok);
    }

    #[test]
    fn prints_normal_forms_or_reasons() {
        let d = ParseOptions::default();
        check_cli(
            d,
            &[">=dev-lang/python-3.11:3.11", "dev-libs/foo[b,a]"],
            ">=dev-lang/python-3.11:3.11\ndev-libs/foo[a,b]\n",
            true,
        );
        check_cli(
            d,
            &["sys-apps/systemd", "dev-libs/foo-1", "!dev-libs/foo"],
            "sys-apps/systemd\n\
             dev-libs/foo-1: invalid: package name `foo-1` ends in `-1`, which is a version; a version needs an operator (`=`, `>=`, ...)\n\
             !dev-libs/foo: invalid: blockers (`!`, `!!`) are not allowed here\n",
            false,
        );
        let blockers = ParseOptions {
            allow_blockers: true,
            allow_repo: false,
        };
        let long = format!("app-misc/{}", "a".repeat(120 * 1024));
        check_cli(
            d,
            &[&long],
            &format!(
                "app-misc/{}… (122889 bytes): invalid: package name is 122880 bytes; at most 255 (NAME_MAX: a package is a directory of its category)\n",
                "a".repeat(55)
            ),
            false,
        );
        check_cli(
            blockers,
            &["!!dev-libs/foo", "dev-libs/foo::gentoo"],
            "!!dev-libs/foo\ndev-libs/foo::gentoo: invalid: a repository (`::repo`) is not allowed here\n",
            false,
        );
    }
}
