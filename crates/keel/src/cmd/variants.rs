use anyhow::Result;
use serde::Serialize;
use std::process::ExitCode;
use variant::Project;

/// One variant, as `keel variants --json` prints it.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    /// From the root of the inheritance chain to the variant.
    chain: Vec<&'a str>,
}

/// `keel variants`: `name  chain` per line, e.g. `selinux  base -> selinux`; with `json`,
/// an array of `{"name", "chain"}` objects in the same order.
pub fn run(project: &Project, json: bool) -> Result<ExitCode> {
    let mut listed = Vec::new();
    for name in project.variants.keys() {
        let chain = project
            .chain(name)?
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        listed.push(Listed { name, chain });
    }
    if json {
        super::print_json(&listed)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = super::column_width(listed.iter().map(|l| l.name.len()));
    let text: String = listed
        .iter()
        .map(|l| format!("{:width$}  {}\n", l.name, l.chain.join(" -> ")))
        .collect();
    super::write_stdout(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
