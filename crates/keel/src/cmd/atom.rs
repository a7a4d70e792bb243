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
        #[arg(required = true)]
        atoms: Vec<String>,
    },
}

impl AtomCommand {
    pub fn run(self) -> Result<ExitCode> {
        let AtomCommand::Check {
            allow_blockers,
            atoms,
        } = self;
        let opts = ParseOptions {
            allow_blockers,
            ..ParseOptions::default()
        };
        let mut ok = true;
        for a in &atoms {
            match Atom::parse(a, opts) {
                Ok(atom) => println!("{atom}"),
                Err(e) => {
                    ok = false;
                    println!("{a}: invalid: {}", e.reason);
                }
            }
        }
        Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
