use anyhow::Result;
use pkgsets::SetKind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::process::ExitCode;
use variant::{Project, Resolved};

/// `keel plan --variant V [--json]`.
pub fn run(project: &Project, name: &str, json: bool) -> Result<ExitCode> {
    let resolved = project.resolve(name)?;
    for set in resolved.sets.values() {
        for w in &set.warnings {
            eprintln!("warning: {w}");
        }
    }
    if json {
        super::print_json(&Plan::of(project, &resolved))?;
    } else {
        super::write_stdout(render(project, &resolved).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `keel plan --json`: what the text shows, as one object.
#[derive(Serialize)]
pub struct Plan<'a> {
    variant: &'a str,
    /// From the root of the inheritance chain to the variant.
    chain: &'a [String],
    distribution: String,
    suite: Option<&'a str>,
    profile: Option<&'a str>,
    /// `squashfs` or `erofs`.
    image: String,
    /// `null` when the variant has no SELinux.
    selinux: Option<Selinux<'a>>,
    /// Whether Python may be in the image.
    python: bool,
    /// Each set by its file name (`install.packages`), its atoms in order.
    sets: BTreeMap<&'static str, Vec<SetAtom<'a>>>,
    /// In the order they apply.
    layers: Vec<Layer<'a>>,
    /// In the order they run.
    stages: Vec<Stage>,
}

#[derive(Serialize)]
struct Selinux<'a> {
    mode: String,
    #[serde(rename = "type")]
    policy_type: &'a str,
}

#[derive(Serialize)]
struct SetAtom<'a> {
    /// The normalized form.
    atom: String,
    /// The set file and line the atom comes from.
    file: &'a str,
    line: usize,
}

#[derive(Serialize)]
struct Layer<'a> {
    kind: &'a str,
    /// From the project's root.
    path: &'a str,
}

#[derive(Serialize)]
struct Stage {
    name: &'static str,
    what: String,
}

impl<'a> Plan<'a> {
    pub fn of(project: &Project, r: &'a Resolved) -> Plan<'a> {
        let s = &r.settings;
        Plan {
            variant: &r.name,
            chain: &r.chain,
            distribution: s.distribution.to_string(),
            suite: s.suite.as_deref(),
            profile: s.profile.as_deref(),
            image: s.image_format.to_string(),
            selinux: s.selinux.then(|| Selinux {
                mode: s.selinux_mode.to_string(),
                policy_type: &s.selinux_type,
            }),
            python: s.python,
            sets: SetKind::ALL
                .into_iter()
                .map(|kind| {
                    let atoms = r
                        .set(kind)
                        .entries
                        .iter()
                        .map(|e| SetAtom {
                            atom: e.atom.to_string(),
                            file: &e.loc.file,
                            line: e.loc.line,
                        })
                        .collect();
                    (kind.file_name(), atoms)
                })
                .collect(),
            layers: r
                .layers
                .iter()
                .map(|l| Layer {
                    kind: l.kind,
                    path: &l.rel,
                })
                .collect(),
            stages: pipeline::stages_of(project, r)
                .into_iter()
                .map(|(id, what)| Stage {
                    name: id.name(),
                    what,
                })
                .collect(),
        }
    }
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
