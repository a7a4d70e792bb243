//! What `keel build` prints at the end: each stage with its time or "up to date", the
//! image's size, path count and package count, the paths of what it made, and what
//! changed since the previous build. [`to_json`] is the same for CI.

use crate::{human, Record};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTime {
    pub stage: String,
    /// Seconds it ran; `None`: it was up to date.
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub variant: String,
    pub stages: Vec<StageTime>,
    pub image: String,
    pub image_bytes: u64,
    pub paths: u64,
    pub packages: usize,
    pub manifest: String,
    pub record: String,
    pub build_log: String,
    pub logs: String,
    /// What changed since the previous build of the variant (`None`: there is none).
    pub since_previous: Option<String>,
}

impl Summary {
    /// The summary of a build whose record is `r`.
    pub fn new(r: &Record, stages: Vec<StageTime>, paths: Paths) -> Summary {
        Summary {
            variant: r.variant.clone(),
            stages,
            image: paths.image,
            image_bytes: r.image.bytes,
            paths: r.image.paths,
            packages: r.packages.len(),
            manifest: paths.manifest,
            record: paths.record,
            build_log: paths.build_log,
            logs: paths.logs,
            since_previous: None,
        }
    }
}

/// Where a build put what it made.
pub struct Paths {
    pub image: String,
    pub manifest: String,
    pub record: String,
    pub build_log: String,
    pub logs: String,
}

pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "summary of {}:", s.variant);
    let width = s.stages.iter().map(|t| t.stage.len()).max().unwrap_or(0);
    for t in &s.stages {
        let _ = match t.seconds {
            Some(secs) => writeln!(out, "  {:<width$}  {secs:>8.1} s", t.stage),
            None => writeln!(out, "  {:<width$}  up to date", t.stage),
        };
    }
    let _ = writeln!(
        out,
        "  image:    {} ({}, {} paths, {} packages)",
        s.image,
        human(s.image_bytes),
        s.paths,
        s.packages
    );
    let _ = writeln!(out, "  manifest: {}", s.manifest);
    let _ = writeln!(out, "  record:   {}", s.record);
    let _ = writeln!(out, "  logs:     {} and {}", s.build_log, s.logs);
    if let Some(changes) = &s.since_previous {
        let _ = writeln!(out, "since the previous build: {changes}");
    }
    out
}

/// The summary as one JSON object.
pub fn to_json(s: &Summary) -> String {
    serde_json::to_string_pretty(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary {
            variant: "selinux".into(),
            stages: vec![
                StageTime {
                    stage: "sysroot".into(),
                    seconds: None,
                },
                StageTime {
                    stage: "destroot".into(),
                    seconds: Some(41.25),
                },
                StageTime {
                    stage: "image".into(),
                    seconds: Some(3.0),
                },
            ],
            image: "build/selinux/selinux.squashfs".into(),
            image_bytes: 54_700_000,
            paths: 3412,
            packages: 17,
            manifest: "build/selinux/manifest.txt".into(),
            record: "build/selinux/record.json".into(),
            build_log: "build/selinux/build.log".into(),
            logs: "build/work/selinux/logs".into(),
            since_previous: Some("1 package added (app-misc/hello 1.0)".into()),
        }
    }

    #[test]
    fn text() {
        insta::assert_snapshot!(render(&summary()));
    }

    #[test]
    fn json() {
        insta::assert_snapshot!(to_json(&summary()));
    }
}
