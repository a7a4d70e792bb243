//! `keel man [--out DIR]`: manual pages generated from the clap definitions: `keel.1` on
//! stdout, or `keel.1` and one page per subcommand (`keel-build.1`, `keel-atom-check.1`,
//! ...) written into DIR.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `keel man`: `cli` is the whole `keel` command.
pub fn run(cli: clap::Command, out: Option<&Path>) -> Result<ExitCode> {
    let cli = cli.disable_help_subcommand(true);
    match out {
        None => super::write_stdout(&render(cli)?)?,
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            let written: String = write_pages(cli, dir)?
                .iter()
                .map(|p| format!("{}\n", p.display()))
                .collect();
            super::write_stdout(written.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The pages of `cmd` and of every visible subcommand under it (each before its
/// subcommands), named after their display names (`keel-atom-check.1`); the paths written.
pub fn write_pages(mut cmd: clap::Command, dir: &Path) -> Result<Vec<PathBuf>> {
    fn write(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
        let man = clap_mangen::Man::new(cmd.clone());
        let path = dir.join(man.get_filename());
        let mut page = Vec::new();
        man.render(&mut page)?;
        std::fs::write(&path, page).with_context(|| format!("{}", path.display()))?;
        written.push(path);
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            write(sub, dir, written)?;
        }
        Ok(())
    }
    // Built once here, so every subcommand has its display name (`keel-atom-check`).
    cmd.build();
    let mut written = Vec::new();
    write(&cmd, dir, &mut written)?;
    Ok(written)
}

fn render(cmd: clap::Command) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    Ok(page)
}
