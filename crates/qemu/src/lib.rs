//! The one QEMU driver of Keel: `boot` (the boot check, `keel boot`) and `vm` (`keel vm`)
//! describe their machines with it and read their guests' reports through it.
//!
//! - [`machine`]: a machine as data (accelerator, memory, CPUs, direct kernel boot,
//!   drives, 9p shares, the console, the report port) and [`Machine::args`], the pure
//!   function from it to QEMU's arguments.
//! - [`host`]: what the host's QEMU does: whether KVM works ([`Accel::detect`]), how
//!   it spells "run as this user" ([`RunAs::probe`]).
//! - [`run`]: one run: QEMU under `setpriv --pdeathsig KILL`, its console captured in a
//!   file (and echoed, if asked), bounded in time, stopped by SIGINT, SIGTERM and SIGHUP.
//! - [`console`]: the console log's tail for error messages, and the kernel panic detector.
//! - [`report`]: the report protocol of the second serial port and its reader.
//!
//! **Invariant:** a machine never outlives its run: a time limit, a signal, or the death
//! of the process that started it stops QEMU and its process group (`exec`'s bounded wait:
//! SIGTERM, SIGKILL 10 s later). An error names QEMU's command line and the console log,
//! and quotes the log's last lines.

pub mod console;
pub mod host;
pub mod machine;
pub mod report;
pub mod run;
mod signals;

pub use host::{Accel, RunAs};
pub use machine::{Boot, Console, Drive, DriveMode, Machine, Name, Share, OVMF_CODE, OVMF_VARS};
pub use report::Report;
pub use run::Run;

use std::path::PathBuf;

/// The QEMU binary Keel runs.
pub const QEMU: &str = "qemu-system-x86_64";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    /// QEMU could not start, or failed (the console log holds what it printed).
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("the machine did not finish within {limit} s (QEMU stopped): {at}")]
    Deadline { limit: u64, at: Box<Seen> },
    #[error("interrupted by signal {signal}: the machine was stopped (console log {})", at.console.display())]
    Interrupted { signal: i32, at: Box<Seen> },
    #[error("{what} stopped{} without {missing}: {at}", if *panic { " after a kernel panic" } else { "" })]
    Unreported {
        /// The machine, as its user calls it ("the VM `x`").
        what: String,
        /// What the report lacks ("an exit code").
        missing: String,
        panic: bool,
        at: Box<Seen>,
    },
}

/// Where to look when a machine did not do what it should: QEMU's command line, the
/// console log and its last lines.
#[derive(Debug, Clone)]
pub struct Seen {
    pub cmdline: String,
    pub console: PathBuf,
    pub tail: String,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`; console log {}:\n{}",
            self.cmdline,
            self.console.display(),
            exec::indent(&self.tail)
        )
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let at = rootdir::PathError::at(path);
    move |e| Error::Io(at(e))
}
