use anyhow::Result;
use pkgsets::SetKind;
use std::fmt::Write;
use std::process::ExitCode;
use variant::{Project, Resolved};

/// `keel plan --variant V`.
pub fn run(project: &Project, name: &str) -> Result<ExitCode> {
    let resolved = project.resolve(name)?;
    for set in resolved.sets.values() {
        for w in &set.warnings {
            eprintln!("warning: {w}");
        }
    }
    print!("{}", render(project, &resolved));
    Ok(ExitCode::SUCCESS)
}

pub fn render(project: &Project, r: &Resolved) -> String {
    let mut out = String::new();
    let s = &r.settings;
    let _ = writeln!(out, "variant: {}", r.name);
    let _ = writeln!(out, "chain: {}", r.chain.join(" -> "));
    let _ = writeln!(
        out,
        "distribution: {}{}",
        s.distribution,
        s.suite
            .as_ref()
            .map(|x| format!(" ({x})"))
            .unwrap_or_default()
    );
    if let Some(p) = &s.profile {
        let _ = writeln!(out, "profile: {p}");
    }
    let _ = writeln!(out, "image: {}", s.image_format);
    let _ = writeln!(
        out,
        "selinux: {}",
        if s.selinux {
            format!("{} ({})", s.selinux_mode, s.selinux_type)
        } else {
            "off".into()
        }
    );
    let _ = writeln!(
        out,
        "python: {}",
        if s.python { "allowed" } else { "forbidden" }
    );
    for kind in SetKind::ALL {
        let set = r.set(kind);
        let _ = writeln!(
            out,
            "set {} ({} atoms):",
            kind.file_name(),
            set.entries.len()
        );
        let atoms: Vec<String> = set.entries.iter().map(|e| e.atom.to_string()).collect();
        let width = super::column_width(atoms.iter().map(String::len));
        for (atom, e) in atoms.iter().zip(&set.entries) {
            let _ = writeln!(out, "  {atom:width$}  {}", e.loc);
        }
    }
    let _ = writeln!(out, "layers:");
    for l in &r.layers {
        let _ = writeln!(out, "  {:10}  {}", l.kind, l.rel);
    }
    let _ = writeln!(out, "stages:");
    for (id, what) in pipeline::stages_of(project, r) {
        let _ = writeln!(out, "  {:12}  {what}", id.name());
    }
    out
}
