use anyhow::Result;
use std::process::ExitCode;
use variant::Project;

/// `keel variants`: `name  chain` per line, e.g. `selinux  base -> selinux`.
pub fn run(project: &Project) -> Result<ExitCode> {
    let width = super::column_width(project.variants.keys().map(String::len));
    for name in project.variants.keys() {
        let chain: Vec<&str> = project
            .chain(name)?
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        println!("{name:width$}  {}", chain.join(" -> "));
    }
    Ok(ExitCode::SUCCESS)
}
