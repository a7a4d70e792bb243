use anyhow::{Context, Result};
use std::path::Path;
use std::process::ExitCode;
use variant::Project;

/// `keel publish --variant V --to DIR [--sign-key KEY] [--gpg-home DIR]`: the variant's
/// binary packages as a Portage binhost in DIR (docs/scale-out.md). Prints DIR on stdout.
pub fn run(
    project: &Project,
    variant: &str,
    to: &Path,
    sign: &super::site::SignArgs,
) -> Result<ExitCode> {
    // The variant must exist (its name is a directory under the cache).
    project.resolve(variant)?;
    let signing = super::site::signing(sign)?;
    let to = std::env::current_dir()?.join(to);
    let layout = pipeline::Layout::new(&project.root, variant, None);
    // Not while a build of the variant writes its packages.
    let _lock = pipeline::lock_work(&layout)?;
    portage::binhost::publishable(&layout)?;
    let install = portage::Install::detect(&layout.build)?;
    let portage = portage::Portage {
        install,
        repo: std::path::PathBuf::new(),
        layout: layout.clone(),
    };
    let log = layout.logs().join("publish.log");
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    }
    let _ = std::fs::remove_file(&log);
    let p = portage::binhost::publish(&portage, signing.as_ref(), &to, &log)?;
    eprintln!(
        "published {} binary packages of `{variant}` to {} ({}; log: {})",
        p.packages,
        p.dir.display(),
        match &p.signed_by {
            Some(k) => format!("signed with {k}"),
            None => "unsigned: consumers verify signatures, give --sign-key".to_owned(),
        },
        log.display()
    );
    println!("{}", p.dir.display());
    Ok(ExitCode::SUCCESS)
}
