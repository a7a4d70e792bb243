use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use variant::Project;

/// `keel build --variant V [--gentoo-repo DIR] [--output DIR]`.
/// Prints the image's path on stdout; progress, one timed line per stage, on stderr.
pub fn run(
    project: &Project,
    variant: &str,
    repo: Option<PathBuf>,
    output: Option<PathBuf>,
    dry_run: bool,
    site: pipeline::Site,
) -> Result<ExitCode> {
    let repo = repo.unwrap_or_else(|| PathBuf::from(portage::DEFAULT_REPO));
    let cwd = std::env::current_dir()?;
    let repo = if repo.is_relative() {
        cwd.join(repo)
    } else {
        repo
    };
    let output = output.map(|o| if o.is_relative() { cwd.join(o) } else { o });
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => match v.parse::<i64>() {
            Ok(t) if t >= 0 => Some(t),
            _ => bail!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970"),
        },
        _ => None,
    };
    let opts = pipeline::Options {
        repo,
        output,
        source_date_epoch,
        selinux_probe: Box::new(policy::HostProbe),
        dry_run,
        site,
    };
    let outcome = pipeline::build(project, variant, &opts, &mut std::io::stderr())?;
    if dry_run {
        if outcome.ran.is_empty() {
            eprintln!("nothing to do: every stage is up to date");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if outcome.ran.is_empty() {
        eprintln!("nothing to do: every stage is up to date");
    }
    eprintln!("image:    {}", outcome.image.display());
    eprintln!("manifest: {}", outcome.manifest.display());
    println!("{}", outcome.image.display());
    Ok(ExitCode::SUCCESS)
}
