//! How far a long tool run is, read from the tool's own output.
//!
//! A stage's tools write their progress into the stage log: emerge's `Emerging (N of M)
//! cat/pkg-ver`, `Installing`, `Completed` and `Jobs:` lines, mmdebstrap's `I:` phases,
//! mksquashfs's percentage. [`parse`] turns one line into an [`Event`]; a [`Tracker`] fed
//! the lines with the time each was seen knows the package count, the current package and
//! how long each package took, and with the times of the stage's last run
//! ([`History`]) estimates what is left. [`Tracker::status`] is the one status line a
//! terminal shows, [`Tracker::take_news`] the plain lines a pipe gets. Pure: the caller
//! reads the log and keeps the history.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// What one line of a tool's output says about its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// emerge: package `n` of `of` reached `step`.
    Package {
        step: Step,
        n: u32,
        of: u32,
        /// `cat/pkg-ver`, without the repository.
        cpv: String,
    },
    /// emerge's job count: `done` of `of` complete.
    Jobs { done: u32, of: u32 },
    /// mmdebstrap: the phase it entered (`downloading packages with apt...`).
    Phase(String),
    /// mksquashfs: the share of the image written.
    Percent(u8),
}

/// Where a package is in emerge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Built from source (`Emerging`).
    Build,
    /// Taken from a binary package (`Emerging binary`).
    Binary,
    /// Being merged into the root (`Installing`).
    Install,
    /// Done (`Completed`).
    Done,
}

impl Step {
    fn shown(self) -> &'static str {
        match self {
            Step::Build => "building",
            Step::Binary => "binary",
            Step::Install => "installing",
            Step::Done => "done",
        }
    }
}

/// `(N of M)` at the start of `s`, and the rest.
fn n_of_m(s: &str) -> Option<(u32, u32, &str)> {
    let s = s.strip_prefix('(')?;
    let (inner, rest) = s.split_once(')')?;
    let (n, m) = inner.split_once(" of ")?;
    Some((
        n.trim().parse().ok()?,
        m.trim().parse().ok()?,
        rest.trim_start(),
    ))
}

/// `cat/pkg-ver` out of emerge's `cat/pkg-ver::repo for /root/` (or `to /root/`).
fn cpv_of(s: &str) -> Option<String> {
    let word = s.split_whitespace().next()?;
    let cpv = word.split("::").next()?;
    (cpv.contains('/') && !cpv.is_empty()).then(|| cpv.to_owned())
}

/// What `line` says about progress, if anything.
pub fn parse(line: &str) -> Option<Event> {
    let line = line.trim_end();
    if let Some(rest) = line.strip_prefix(">>> ") {
        let (step, rest) = if let Some(r) = rest.strip_prefix("Emerging binary ") {
            (Step::Binary, r)
        } else if let Some(r) = rest.strip_prefix("Emerging ") {
            (Step::Build, r)
        } else if let Some(r) = rest.strip_prefix("Installing ") {
            (Step::Install, r)
        } else if let Some(r) = rest.strip_prefix("Completed ") {
            (Step::Done, r)
        } else if let Some(r) = rest.strip_prefix("Jobs: ") {
            let (done, r) = r.split_once(" of ")?;
            let of = r.split_whitespace().next()?;
            return Some(Event::Jobs {
                done: done.trim().parse().ok()?,
                of: of.parse().ok()?,
            });
        } else {
            return None;
        };
        let (n, of, rest) = n_of_m(rest)?;
        return Some(Event::Package {
            step,
            n,
            of,
            cpv: cpv_of(rest)?,
        });
    }
    if let Some(phase) = line.strip_prefix("I: ") {
        let phase = phase.trim();
        // The per-hook lines carry whole shell commands: the phase is what matters.
        if phase.starts_with("running --") || phase.starts_with("running special hook") {
            return None;
        }
        return (!phase.is_empty()).then(|| Event::Phase(phase.to_owned()));
    }
    // mksquashfs -progress: `[=====/      ] 1234/5678  21%`
    if line.starts_with('[') && line.ends_with('%') {
        let pct = line.rsplit(' ').next()?.strip_suffix('%')?;
        return pct
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 100)
            .map(Event::Percent);
    }
    None
}

/// How long each package took in a stage's last run, in the order it ran:
/// `cat/pkg-ver<TAB>seconds` lines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub packages: Vec<(String, f64)>,
    /// `cat/pkg` of each package, to match another version.
    keys: Vec<Option<String>>,
}

impl History {
    /// Lines that are not `cpv<TAB>seconds` are skipped: a history only informs an estimate.
    pub fn parse(text: &str) -> History {
        let packages = text
            .lines()
            .filter_map(|l| {
                let (cpv, secs) = l.split_once('\t')?;
                let secs: f64 = secs.trim().parse().ok()?;
                (secs.is_finite() && secs >= 0.0 && !cpv.is_empty()).then(|| (cpv.to_owned(), secs))
            })
            .collect();
        History::new(packages)
    }

    pub fn new(packages: Vec<(String, f64)>) -> History {
        let keys = packages.iter().map(|(c, _)| package_key(c)).collect();
        History { packages, keys }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (cpv, secs) in &self.packages {
            let _ = writeln!(out, "{cpv}\t{secs:.1}");
        }
        out
    }

    /// The entry for `cpv`, or for another version of the same package.
    fn index_of(&self, cpv: &str) -> Option<usize> {
        let exact = self.packages.iter().position(|(c, _)| c == cpv);
        exact.or_else(|| {
            let key = package_key(cpv)?;
            self.keys.iter().position(|k| k.as_ref() == Some(&key))
        })
    }
}

/// `cat/pkg` of `cat/pkg-ver`.
fn package_key(cpv: &str) -> Option<String> {
    let atom = pkgsets::atom::Atom::parse(&format!("={cpv}"), Default::default()).ok()?;
    Some(atom.key().to_owned())
}

/// What a stage's output said so far.
#[derive(Debug, Default)]
pub struct Tracker {
    history: History,
    /// Package count and the last package number seen.
    of: u32,
    n: u32,
    /// The package being worked on, its step and when it started.
    current: Option<(String, Step, f64)>,
    /// Packages started and not yet completed, with their start time.
    started: BTreeMap<String, f64>,
    /// Packages completed in this run, in order, with the time each took.
    finished: Vec<(String, f64)>,
    /// The history's entries for the packages completed in this run.
    done: BTreeSet<usize>,
    phase: Option<String>,
    percent: Option<u8>,
    /// Lines worth a plain progress line, not yet taken.
    news: Vec<String>,
}

impl Tracker {
    /// A tracker whose estimates come from `history` (the stage's last run).
    pub fn new(history: History) -> Tracker {
        Tracker {
            history,
            ..Tracker::default()
        }
    }

    /// Feed one line of output, seen `t` seconds into the stage.
    pub fn feed(&mut self, line: &str, t: f64) {
        let Some(event) = parse(line) else { return };
        match event {
            Event::Package { step, n, of, cpv } => {
                self.of = of;
                self.n = self.n.max(n);
                match step {
                    Step::Build | Step::Binary => {
                        self.started.insert(cpv.clone(), t);
                        self.news
                            .push(format!("{n} of {of} {cpv} ({})", step.shown()));
                        self.current = Some((cpv, step, t));
                    }
                    Step::Install => {
                        let since = self.started.get(&cpv).copied().unwrap_or(t);
                        self.current = Some((cpv, step, since));
                    }
                    Step::Done => {
                        let since = self.started.remove(&cpv).unwrap_or(t);
                        self.finished.push((cpv.clone(), (t - since).max(0.0)));
                        if let Some(i) = self.history.index_of(&cpv) {
                            self.done.insert(i);
                        }
                        if self.current.as_ref().is_some_and(|(c, _, _)| *c == cpv) {
                            self.current = None;
                        }
                    }
                }
            }
            Event::Jobs { of, .. } => {
                if of > 0 {
                    self.of = of;
                }
            }
            Event::Phase(p) => {
                self.news.push(p.clone());
                self.phase = Some(p);
            }
            Event::Percent(p) => {
                // A plain line every tenth, the status line every change.
                if self.percent.is_none_or(|was| p / 10 > was / 10) {
                    self.news.push(format!("{p}%"));
                }
                self.percent = Some(p);
            }
        }
    }

    /// The lines worth printing on their own since the last call (a package started, a
    /// phase began, another tenth done).
    pub fn take_news(&mut self) -> Vec<String> {
        std::mem::take(&mut self.news)
    }

    /// Each package this run completed and how long it took: the next run's [`History`].
    pub fn history(&self) -> History {
        History::new(self.finished.clone())
    }

    /// Seconds left, `t` seconds into the stage, by the last run's times: the packages it
    /// ran that this run has not completed (the current one less what it already took).
    /// `None` without a history that knows what is left.
    pub fn estimate(&self, t: f64) -> Option<f64> {
        if self.history.packages.is_empty() || self.of == 0 {
            return None;
        }
        // The current package's entry: the same version, or another one of it.
        let current = self.current.as_ref().and_then(|(c, _, since)| {
            let i = self.history.index_of(c)?;
            Some((i, t - since))
        });
        let mut left = 0.0;
        let mut known = false;
        for (i, (_, secs)) in self.history.packages.iter().enumerate() {
            if self.done.contains(&i) {
                continue;
            }
            known = true;
            match current {
                Some((c, elapsed)) if c == i => left += (secs - elapsed).max(0.0),
                _ => left += secs,
            }
        }
        known.then_some(left)
    }

    /// The status line, `t` seconds into the stage: package N of M and the current one,
    /// or the phase, or the percentage; the elapsed time and, when there is one, the
    /// estimate. `None` until the output said something.
    pub fn status(&self, t: f64) -> Option<String> {
        // The counts and times first: a narrow terminal cuts the package's name, not them.
        let (mut s, detail) = if self.of > 0 {
            let detail = self
                .current
                .as_ref()
                .map(|(cpv, step, _)| format!("{cpv} ({})", step.shown()));
            (
                format!("{} of {}", self.n.max(1).min(self.of), self.of),
                detail,
            )
        } else if let Some(p) = self.percent {
            (format!("{p}%"), None)
        } else {
            (String::new(), Some(self.phase.clone()?))
        };
        if !s.is_empty() {
            s.push_str(" · ");
        }
        s.push_str(&clock(t));
        if let Some(left) = self.estimate(t) {
            let _ = write!(s, " · about {} left", clock(left));
        }
        if let Some(d) = detail {
            let _ = write!(s, " · {d}");
        }
        Some(s)
    }
}

/// `m:ss` (or `h:mm:ss`).
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `line` cut to `width` characters (a status line must not wrap, or rewriting it in
/// place fails).
pub fn fit(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let mut s: String = line.chars().take(width.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// Split `buf` into the complete lines it holds (ended by `\n` or `\r`: progress bars
/// rewrite one line with `\r`), leaving the unfinished rest in `buf`. A rest longer than
/// `cap` bytes is cut: a tool that never ends its line cannot fill memory.
pub fn lines(buf: &mut Vec<u8>, cap: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in buf.iter().enumerate() {
        if *b == b'\n' || *b == b'\r' {
            if i > start {
                out.push(String::from_utf8_lossy(&buf[start..i]).into_owned());
            }
            start = i + 1;
        }
    }
    buf.drain(..start);
    if buf.len() > cap {
        out.push(String::from_utf8_lossy(&buf[..cap]).into_owned());
        buf.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMERGE: &str = "\
>>> Jobs: 0 of 17 complete, 1 running                                   Load avg: 1.19, 1.13, 2.39
>>> Emerging binary (1 of 17) sys-apps/baselayout-2.15::gentoo for /r/
>>> Installing (1 of 17) sys-apps/baselayout-2.15::gentoo to /r/
>>> Completed (1 of 17) sys-apps/baselayout-2.15::gentoo to /r/
>>> Jobs: 1 of 17 complete                                              Load avg: 1.19, 1.13, 2.39
>>> Emerging (2 of 17) sys-libs/glibc-2.39-r1::gentoo
";

    #[test]
    fn reads_emerge_lines() {
        let events: Vec<Event> = EMERGE.lines().filter_map(parse).collect();
        assert_eq!(
            events[1],
            Event::Package {
                step: Step::Binary,
                n: 1,
                of: 17,
                cpv: "sys-apps/baselayout-2.15".into()
            }
        );
        assert_eq!(events[4], Event::Jobs { done: 1, of: 17 });
        assert_eq!(
            events[5],
            Event::Package {
                step: Step::Build,
                n: 2,
                of: 17,
                cpv: "sys-libs/glibc-2.39-r1".into()
            }
        );
        assert_eq!(events.len(), 6);
    }

    #[test]
    fn reads_mmdebstrap_and_mksquashfs() {
        assert_eq!(
            parse("I: downloading packages with apt..."),
            Some(Event::Phase("downloading packages with apt...".into()))
        );
        assert_eq!(parse("I: running --setup-hook in shell: sh -c x"), None);
        assert_eq!(
            parse("[===========/            ] 1234/5678  21%"),
            Some(Event::Percent(21))
        );
        assert_eq!(parse("[x] 300%"), None);
        assert_eq!(parse(">>> Emerging (x of 3) a/b-1"), None);
        assert_eq!(parse("random text"), None);
    }

    #[test]
    fn tracks_packages_and_records_their_times() {
        let mut t = Tracker::new(History::default());
        assert_eq!(t.status(0.0), None);
        let lines: Vec<&str> = EMERGE.lines().collect();
        t.feed(lines[0], 0.0);
        t.feed(lines[1], 1.0);
        assert_eq!(
            t.status(2.0).unwrap(),
            "1 of 17 · 0:02 · sys-apps/baselayout-2.15 (binary)"
        );
        t.feed(lines[2], 3.0);
        t.feed(lines[3], 4.0);
        t.feed(lines[5], 5.0);
        assert_eq!(
            t.take_news(),
            vec![
                "1 of 17 sys-apps/baselayout-2.15 (binary)",
                "2 of 17 sys-libs/glibc-2.39-r1 (building)"
            ]
        );
        assert!(t.take_news().is_empty());
        assert_eq!(
            t.history().packages,
            vec![("sys-apps/baselayout-2.15".into(), 3.0)]
        );
    }

    #[test]
    fn estimates_from_the_last_run() {
        let h =
            History::parse("sys-apps/baselayout-2.15\t3.0\nsys-libs/glibc-2.39\t60.0\nbad line\n");
        assert_eq!(h.packages.len(), 2);
        let mut t = Tracker::new(h);
        let lines: Vec<&str> = EMERGE.lines().collect();
        t.feed(lines[1], 0.0);
        // baselayout 3 s (1 s in) + glibc 60 s: 62 s left.
        assert_eq!(t.estimate(1.0), Some(62.0));
        t.feed(lines[3], 3.0);
        // glibc-2.39-r1 is another version of the glibc the history knows.
        t.feed(lines[5], 3.0);
        assert_eq!(t.estimate(13.0), Some(50.0));
        let mut done = Tracker::new(t.history.clone());
        done.feed(lines[5], 0.0);
        done.feed(
            ">>> Completed (2 of 17) sys-libs/glibc-2.39-r1::gentoo to /r/",
            1.0,
        );
        assert_eq!(done.estimate(1.0), Some(3.0));
        assert_eq!(
            t.status(13.0).unwrap(),
            "2 of 17 · 0:13 · about 0:50 left · sys-libs/glibc-2.39-r1 (building)"
        );
        assert_eq!(
            History::parse(&t.history().render()).packages,
            vec![("sys-apps/baselayout-2.15".into(), 3.0)]
        );
    }

    #[test]
    fn plain_percent_lines_every_tenth() {
        let mut t = Tracker::new(History::default());
        for p in [1, 5, 9, 10, 15, 21, 100] {
            t.feed(&format!("[==] 1/2 {p}%"), 0.0);
        }
        assert_eq!(t.take_news(), vec!["1%", "10%", "21%", "100%"]);
        assert_eq!(t.status(61.0).unwrap(), "100% · 1:01");
        let mut phase = Tracker::new(History::default());
        phase.feed("I: extracting archives...", 0.0);
        assert_eq!(phase.status(3.0).unwrap(), "0:03 · extracting archives...");
    }

    #[test]
    fn splits_lines_and_caps_the_rest() {
        let mut buf = b"a\nb\r\rc".to_vec();
        assert_eq!(lines(&mut buf, 100), vec!["a", "b"]);
        assert_eq!(buf, b"c");
        let mut long = vec![b'x'; 50];
        assert_eq!(lines(&mut long, 10), vec!["x".repeat(10)]);
        assert!(long.is_empty());
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(clock(3725.0), "1:02:05");
    }
}
