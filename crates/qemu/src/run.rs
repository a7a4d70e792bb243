//! Running a [`Machine`]: one bounded run with its console captured, or an interactive one
//! on the terminal.

use crate::machine::{Console, Machine};
use crate::report::Report;
use crate::{console, io, signals, Error, Seen, QEMU};
use exec::{Cmd, Ending};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// A machine that ran to its end by itself.
#[derive(Debug, Clone)]
pub struct Run {
    pub status: ExitStatus,
    /// From QEMU's start to its end.
    pub secs: f64,
    /// QEMU's command line, as the console log's first line has it.
    pub cmdline: String,
    pub console: PathBuf,
    /// What the guest reported on the second serial port (empty without one).
    pub report: Report,
    /// When each report section first appeared, in seconds from QEMU's start (host clock,
    /// to the 50 ms the run looks at the port).
    pub arrivals: Vec<(String, f64)>,
}

impl Run {
    /// When `section` first appeared on the report port.
    pub fn arrived(&self, section: &str) -> Option<f64> {
        self.arrivals
            .iter()
            .find(|(name, _)| name == section)
            .map(|(_, t)| *t)
    }

    /// The last lines of the console log.
    pub fn console_tail(&self) -> String {
        console::tail(&self.console)
    }

    /// The error for a machine that ended without what its user needed from the report:
    /// `what` names the machine ("the VM `x`"), `missing` what the report lacks ("an exit
    /// code"); a kernel panic on the console is said.
    pub fn unreported(&self, what: &str, missing: &str) -> Error {
        Error::Unreported {
            what: what.to_owned(),
            missing: missing.to_owned(),
            panic: console::panicked(&console::read(&self.console)),
            at: seen(&self.cmdline, &self.console),
        }
    }
}

/// Run `m` (its console must be [`Console::Log`], which is replaced, as is the report
/// file) until the guest powers off, `limit` passes, or SIGINT, SIGTERM or SIGHUP comes.
/// QEMU runs as `setpriv --pdeathsig KILL -- qemu-system-x86_64 ...` in a process group
/// of its own, started from this thread, which waits for it: if Keel dies, the kernel
/// kills QEMU. The limit and a signal stop QEMU's process group (SIGTERM, then SIGKILL)
/// and are errors ([`Error::Deadline`], [`Error::Interrupted`]); so is QEMU failing
/// ([`Error::Exec`], with the console log's tail, which has what QEMU printed). A machine
/// that stopped by itself is a [`Run`], whatever its guest reported: the caller judges.
pub fn run(m: &Machine, limit: Option<Duration>) -> Result<Run, Error> {
    let Console::Log {
        path: console,
        echo,
    } = &m.console
    else {
        return Err(Error::Invalid(
            "a machine with its console on the terminal runs with run_interactive".into(),
        ));
    };
    let mut fresh: Vec<&Path> = vec![console];
    fresh.extend(m.report.as_deref());
    for f in fresh {
        match fs::remove_file(f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(f)(e)),
            _ => {}
        }
        if let Some(dir) = f.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
    }
    let cmd = Cmd::new("setpriv")
        .args(["--pdeathsig", "KILL", "--", QEMU])
        .args(m.args());
    let cmdline = cmd.cmdline();
    let echo: Box<dyn std::io::Write + Send> = if *echo {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::sink())
    };
    let watch = signals::watch().map_err(io(Path::new("signal handlers")))?;
    let t0 = Instant::now();
    let running = cmd.spawn_teed(console, echo)?;
    let mut port = PortWatch::default();
    let bounded = running.wait_bounded(limit, &mut || {
        if let Some(r) = &m.report {
            port.look(r, t0.elapsed().as_secs_f64());
        }
        watch.signal().is_some()
    })?;
    let secs = t0.elapsed().as_secs_f64();
    match bounded.ending {
        Ending::Exited => {}
        Ending::Deadline => {
            return Err(Error::Deadline {
                limit: limit.unwrap_or_default().as_secs(),
                at: seen(&cmdline, console),
            })
        }
        Ending::Stopped => {
            return Err(Error::Interrupted {
                signal: watch.signal().unwrap_or(0),
                at: seen(&cmdline, console),
            })
        }
    }
    drop(watch);
    let report = match &m.report {
        Some(r) => {
            // sections that came after the last look came by the end
            port.look(r, secs);
            Report::read(r)
        }
        None => Report::default(),
    };
    Ok(Run {
        status: bounded.status,
        secs,
        cmdline,
        console: console.clone(),
        report,
        arrivals: port.arrivals,
    })
}

/// Run `m` (its console must be [`Console::Terminal`]) on the user's terminal until they
/// quit it or the guest powers off; QEMU's exit status.
pub fn run_interactive(m: &Machine) -> Result<ExitStatus, Error> {
    if m.console != Console::Terminal {
        return Err(Error::Invalid(
            "a machine with its console in a log runs with run".into(),
        ));
    }
    Ok(Cmd::new(QEMU).args(m.args()).run_interactive()?)
}

fn seen(cmdline: &str, console: &Path) -> Box<Seen> {
    Box::new(Seen {
        cmdline: cmdline.to_owned(),
        console: console.to_owned(),
        tail: console::tail(console),
    })
}

/// The report port while the machine runs: which sections came when.
#[derive(Default)]
struct PortWatch {
    len: u64,
    arrivals: Vec<(String, f64)>,
}

impl PortWatch {
    /// Look at the port `now` seconds after QEMU's start.
    fn look(&mut self, report: &Path, now: f64) {
        let len = fs::metadata(report).map(|m| m.len()).unwrap_or(0);
        if len == self.len {
            return;
        }
        self.len = len;
        for name in Report::read(report).sections.into_keys() {
            if !self.arrivals.iter().any(|(n, _)| *n == name) {
                self.arrivals.push((name, now));
            }
        }
    }
}
