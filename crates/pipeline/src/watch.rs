//! Live progress while a stage runs: a thread follows the stage's log as the tools write
//! it, feeds each line to a [`progress::Tracker`] and shows what it says on stderr: one
//! status line rewritten in place on a terminal, plain timestamped lines elsewhere (CI,
//! pipes), every line of the log with `--verbose`. The tools' output itself goes only to
//! the log, as before; following it costs one read of what was appended, five times a
//! second.
//!
//! Each package's time is kept per variant and stage under the cache
//! (`times/<variant>/<stage>.tsv`), so the next run estimates what is left.

use progress::{fit, History, Tracker};
use stage::StageId;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a build shows itself on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// Nothing but errors; the log is not followed.
    Quiet,
    /// One line per stage, and a plain timestamped line for each step a tool reports
    /// (package N of M, a phase, another tenth of an image).
    Lines,
    /// One line per stage, and under it one status line rewritten in place.
    Terminal {
        /// Columns: the status line is cut to fit, or rewriting it would fail.
        width: usize,
        /// Colours on the stage lines (off with `NO_COLOR`).
        color: bool,
    },
    /// One line per stage, and every line of the tools' output as it comes.
    Verbose,
}

/// How often the log is read and the status line redrawn.
const TICK: Duration = Duration::from_millis(200);
/// The longest unfinished line kept: a tool that never ends a line cannot fill memory.
const LINE_CAP: usize = 64 * 1024;

/// A running follower of one stage's log.
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Tracker>>,
}

/// Where a stage's package times are kept.
pub(crate) fn times_file(cache: &Path, variant: &str, id: StageId) -> PathBuf {
    cache
        .join("times")
        .join(variant)
        .join(format!("{}.tsv", id.name()))
}

/// Follow `log` until [`Watch::finish`]; `None` when `show` is [`Show::Quiet`].
pub(crate) fn start(log: &Path, id: StageId, show: Show, times: &Path) -> Option<Watch> {
    if show == Show::Quiet {
        return None;
    }
    // A history only informs an estimate: an unreadable one is no history.
    let history = std::fs::read(times)
        .ok()
        .filter(|b| b.len() < 16 << 20)
        .map(|b| History::parse(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    let stop = Arc::new(AtomicBool::new(false));
    let log = log.to_owned();
    let flag = stop.clone();
    let thread = std::thread::spawn(move || follow(&log, id, show, history, &flag));
    Some(Watch {
        stop,
        thread: Some(thread),
    })
}

impl Watch {
    /// Read what is left of the log, clear the status line, and give back what the
    /// tracker learnt.
    pub(crate) fn finish(mut self) -> Option<Tracker> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take()?.join().ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn follow(log: &Path, id: StageId, show: Show, history: History, stop: &AtomicBool) -> Tracker {
    let start = Instant::now();
    let mut tracker = Tracker::new(history);
    let mut file: Option<File> = None;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut err = std::io::stderr();
    let mut shown = String::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        if file.is_none() {
            file = File::open(log).ok();
        }
        if let Some(f) = &mut file {
            // What was appended since the last tick (bounded per tick: a flood of output
            // is read over several ticks, and the status line keeps up with time).
            let mut budget = 4usize << 20;
            while budget > 0 {
                match f.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        budget = budget.saturating_sub(n);
                    }
                }
                let t = start.elapsed().as_secs_f64();
                for line in progress::lines(&mut buf, LINE_CAP) {
                    tracker.feed(&line, t);
                    if show == Show::Verbose {
                        let _ = writeln!(err, "{line}");
                    }
                }
            }
        }
        let t = start.elapsed().as_secs_f64();
        let news = tracker.take_news();
        match show {
            Show::Lines => {
                for n in news {
                    let _ = writeln!(err, "[{:>13}] {id}: {n}", format!("+{t:.1}s"));
                }
            }
            Show::Terminal { width, .. } if !stopping => {
                if let Some(s) = tracker.status(t) {
                    let line = fit(&format!("[      running] {id}: {s}"), width);
                    // Redrawn when it changed (the elapsed time does, once a second).
                    if line != shown {
                        let _ = write!(err, "\r\x1b[2K{line}");
                        let _ = err.flush();
                        shown = line;
                    }
                }
            }
            _ => {}
        }
        if stopping {
            break;
        }
        std::thread::sleep(TICK);
    }
    if !shown.is_empty() {
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
    tracker
}
