//! `keel build --variant V`: the build, its progress on stderr and its summary.

use anyhow::{bail, Result};
use pipeline::Show;
use record::summary::{self, StageTime, Summary};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use variant::Project;

#[derive(Debug, Default)]
pub struct Args {
    pub variant: String,
    pub repo: Option<PathBuf>,
    pub output: Option<PathBuf>,
    pub dry_run: bool,
    /// Nothing on stderr but errors (the image's path still goes to stdout).
    pub quiet: bool,
    /// The tools' output streamed to stderr as it comes.
    pub verbose: bool,
    /// The summary as one JSON object on stdout, instead of the image's path.
    pub json: bool,
    /// `--image-version`.
    pub image_version: Option<String>,
    /// The machine's settings: a binhost, distcc (docs/scale-out.md).
    pub site: pipeline::Site,
}

/// Colours on a terminal, unless `NO_COLOR` says otherwise (<https://no-color.org>: set
/// and not empty).
pub fn color_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The terminal's width: `COLUMNS`, else what the terminal says, else 80.
fn width() -> usize {
    if let Some(c) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return c;
    }
    rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|w| w.ws_col as usize)
        .filter(|w| *w > 0)
        .unwrap_or(80)
}

fn show(a: &Args) -> Show {
    if a.quiet {
        Show::Quiet
    } else if a.verbose {
        Show::Verbose
    } else if std::io::stderr().is_terminal() {
        Show::Terminal {
            width: width(),
            color: color_wanted(),
        }
    } else {
        Show::Lines
    }
}

/// Prints the image's path on stdout (or, with `--json`, the summary); progress, one
/// timed line per stage and the summary on stderr.
pub fn run(project: &Project, a: &Args) -> Result<ExitCode> {
    let repo = a
        .repo
        .clone()
        .unwrap_or_else(|| PathBuf::from(portage::DEFAULT_REPO));
    let cwd = std::env::current_dir()?;
    let repo = if repo.is_relative() {
        cwd.join(repo)
    } else {
        repo
    };
    let output = a.output.as_ref().map(|o| {
        if o.is_relative() {
            cwd.join(o)
        } else {
            o.clone()
        }
    });
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => match v.parse::<i64>() {
            Ok(t) if t >= 0 => Some(t),
            _ => bail!("SOURCE_DATE_EPOCH=`{v}` is not a number of seconds since 1970"),
        },
        _ => None,
    };
    if let Some(v) = &a.image_version {
        if !disk::valid_version(v) {
            bail!("--image-version `{v}`: a version is 1 to 64 letters, digits and `.`, `_`, `+`, `~`, `-`, starting with a letter or digit");
        }
    }
    let show = show(a);
    let opts = pipeline::Options {
        repo,
        output,
        source_date_epoch,
        image_version: a.image_version.clone(),
        selinux_probe: Box::new(policy::HostProbe),
        dry_run: a.dry_run,
        show,
        site: a.site.clone(),
    };
    let outcome = pipeline::build(project, &a.variant, &opts, &mut std::io::stderr())?;
    if a.dry_run {
        if outcome.ran.is_empty() && !a.quiet {
            eprintln!("nothing to do: every stage is up to date");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(rec) = &outcome.record_data else {
        bail!("the build of `{}` left no record", a.variant);
    };
    let shown = |p: &std::path::Path| p.display().to_string();
    let mut s = Summary::new(
        rec,
        outcome
            .timings
            .iter()
            .map(|(id, secs, ran)| StageTime {
                stage: id.name().to_owned(),
                seconds: ran.then_some((secs * 10.0).round() / 10.0),
            })
            .collect(),
        summary::Paths {
            image: shown(&outcome.image),
            manifest: shown(&outcome.manifest),
            record: shown(&outcome.record),
            build_log: shown(&outcome.build_log),
            logs: shown(&outcome.logs),
        },
    );
    s.since_previous = outcome.since_previous.clone();
    if a.json {
        super::print_json(&s)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !a.quiet {
        if outcome.ran.is_empty() {
            eprintln!("nothing to do: every stage is up to date");
        }
        eprint!("{}", summary::render(&s));
    }
    super::write_stdout(format!("{}\n", outcome.image.display()).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
