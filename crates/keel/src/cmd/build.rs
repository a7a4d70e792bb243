use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use variant::Project;

/// `keel build --variant V [--gentoo-repo DIR] [--output DIR]`.
pub fn run(
    project: &Project,
    variant: &str,
    repo: Option<PathBuf>,
    output: Option<PathBuf>,
) -> Result<ExitCode> {
    let repo = repo.unwrap_or_else(|| PathBuf::from(portage::DEFAULT_REPO));
    let repo = if repo.is_relative() {
        std::env::current_dir()?.join(repo)
    } else {
        repo
    };
    let opts = pipeline::Options { repo, output };
    let outcome = pipeline::build(project, variant, &opts, &mut std::io::stderr())?;
    if outcome.ran.is_empty() {
        eprintln!("nothing to do: every stage is up to date");
    }
    println!("{}", outcome.destroot.display());
    Ok(ExitCode::SUCCESS)
}
