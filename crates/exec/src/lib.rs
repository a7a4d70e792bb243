//! The one way Keel runs external commands.
//!
//! Every command runs with stdin closed (`/dev/null`), a fixed locale, and its stdout and
//! stderr appended to a log file (or captured when no log is given). A failure becomes an
//! [`Error`] that carries the copy-pasteable command line, the exit status, the last lines
//! of the output and the path of the log.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How many lines of output an error shows.
pub const TAIL_LINES: usize = 20;

/// A command to run. Build it with [`Cmd::new`], then [`Cmd::run`] or [`Cmd::output`].
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    clear_env: bool,
    cwd: Option<PathBuf>,
    log: Option<PathBuf>,
    ok_codes: Vec<i32>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start `{cmdline}`: {cause}")]
    Spawn {
        cmdline: String,
        cause: std::io::Error,
    },
    #[error("cannot open log `{}`: {cause}", path.display())]
    Log {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Boxed: every crate's error carries this one, and a `Result` stays small.
    #[error(transparent)]
    Failed(Box<Failed>),
}

/// A command that ran and exited with a code it was not allowed.
#[derive(Debug, thiserror::Error)]
#[error("`{cmdline}` failed ({status}){}\n{}", log.as_ref().map(|l| format!("; log: {}", l.display())).unwrap_or_default(), indent(tail))]
pub struct Failed {
    pub cmdline: String,
    pub status: String,
    pub code: Option<i32>,
    /// The last lines it printed.
    pub tail: String,
    pub log: Option<PathBuf>,
}

/// Each line of `s` behind `    | `: command output quoted in an error message.
pub fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: false,
            cwd: None,
            log: None,
            ok_codes: vec![0],
        }
    }
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cmd {
        self.args.push(a.as_ref().to_owned());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, it: I) -> Cmd {
        self.args
            .extend(it.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }
    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Cmd {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }
    /// Start from an empty environment (PATH and the locale are still set).
    pub fn env_clear(mut self) -> Cmd {
        self.clear_env = true;
        self
    }
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }
    /// Append stdout and stderr to this file instead of capturing them.
    pub fn log(mut self, path: impl AsRef<Path>) -> Cmd {
        self.log = Some(path.as_ref().to_owned());
        self
    }
    /// Exit codes that count as success (default: only 0). Say why at the call site.
    pub fn ok_codes(mut self, codes: &[i32]) -> Cmd {
        self.ok_codes = codes.to_vec();
        self
    }

    /// The command line, quoted so it can be pasted into a shell.
    pub fn cmdline(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in &self.env {
            if let Some(v) = v {
                parts.push(format!(
                    "{}={}",
                    k.to_string_lossy(),
                    shell_quote(&v.to_string_lossy())
                ));
            }
        }
        parts.push(shell_quote(&self.program.to_string_lossy()));
        parts.extend(self.args.iter().map(|a| shell_quote(&a.to_string_lossy())));
        parts.join(" ")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).stdin(Stdio::null());
        if self.clear_env {
            c.env_clear();
            c.env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            );
        }
        c.env("LC_ALL", "C.UTF-8").env("LANG", "C.UTF-8");
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        c
    }

    /// Run to completion; output goes to the log (or is captured and shown on failure).
    pub fn run(&self) -> Result<(), Error> {
        match &self.log {
            Some(path) => self.run_logged(path).map(|_| ()),
            None => self.output().map(|_| ()),
        }
    }

    fn run_logged(&self, path: &Path) -> Result<ExitStatus, Error> {
        let log_err = |source| Error::Log {
            path: path.to_owned(),
            cause: source,
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(log_err)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(log_err)?;
        let start = f.seek(SeekFrom::End(0)).map_err(log_err)?;
        writeln!(f, "$ {}", self.cmdline()).map_err(log_err)?;
        let out = f.try_clone().map_err(log_err)?;
        let err = f.try_clone().map_err(log_err)?;
        let status = self
            .command()
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .status()
            .map_err(|source| Error::Spawn {
                cmdline: self.cmdline(),
                cause: source,
            })?;
        if self.accepts(status) {
            return Ok(status);
        }
        let tail = tail_of_file(&mut f, start);
        Err(self.failed(status, tail, Some(path.to_owned())))
    }

    /// Run to completion capturing stdout and stderr (also written to the log when set).
    pub fn output(&self) -> Result<Output, Error> {
        let o = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| Error::Spawn {
                cmdline: self.cmdline(),
                cause: source,
            })?;
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        if let Some(path) = &self.log {
            let log_err = |source| Error::Log {
                path: path.to_owned(),
                cause: source,
            };
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(log_err)?;
            }
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(log_err)?;
            write!(f, "$ {}\n{stdout}{stderr}", self.cmdline()).map_err(log_err)?;
        }
        if !self.accepts(o.status) {
            let tail = tail_lines(&format!("{stdout}{stderr}"), TAIL_LINES);
            return Err(self.failed(o.status, tail, self.log.clone()));
        }
        Ok(Output {
            status: o.status,
            stdout,
            stderr,
        })
    }

    /// Start the command with its stdout and stderr merged, each chunk copied as it comes
    /// to the log and to `echo` (the terminal): for long commands the user watches, like
    /// a VM's console. [`Teed::wait`] judges the exit status like [`Cmd::run`];
    /// [`Teed::wait_bounded`] also stops the command at a time limit or when asked.
    ///
    /// The command leads a process group of its own, so that stopping it stops whatever it
    /// started too, and a Ctrl-C on the terminal reaches Keel, not the command: the caller
    /// decides what a signal means for it.
    pub fn spawn_teed(&self, log: &Path, echo: Box<dyn Write + Send>) -> Result<Teed, Error> {
        let log_err = |source| Error::Log {
            path: log.to_owned(),
            cause: source,
        };
        if let Some(parent) = log.parent() {
            fs::create_dir_all(parent).map_err(log_err)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(log)
            .map_err(log_err)?;
        let start = f.seek(SeekFrom::End(0)).map_err(log_err)?;
        writeln!(f, "$ {}", self.cmdline()).map_err(log_err)?;
        let spawn_err = |source| Error::Spawn {
            cmdline: self.cmdline(),
            cause: source,
        };
        let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
        let writer2 = writer.try_clone().map_err(spawn_err)?;
        let mut cmd = self.command();
        cmd.stdout(writer).stderr(writer2).process_group(0);
        let child = cmd.spawn().map_err(spawn_err)?;
        // Our copies of the write end must be gone, or the pump never sees end of file.
        drop(cmd);
        let sink = f.try_clone().map_err(log_err)?;
        let (done, pumped) = mpsc::channel();
        std::thread::spawn(move || {
            pump(reader, sink, echo);
            let _ = done.send(());
        });
        Ok(Teed {
            child,
            pumped,
            cmd: self.clone(),
            log: log.to_owned(),
            file: f,
            start,
        })
    }

    /// Run with the terminal as stdin, stdout and stderr: for a program the user drives
    /// (a VM's console), the one exception to the closed stdin. The user saw the output, so
    /// the exit status is returned for the caller to judge, not turned into an error.
    pub fn run_interactive(&self) -> Result<ExitStatus, Error> {
        self.command()
            .stdin(Stdio::inherit())
            .status()
            .map_err(|source| Error::Spawn {
                cmdline: self.cmdline(),
                cause: source,
            })
    }

    fn accepts(&self, status: ExitStatus) -> bool {
        status.code().is_some_and(|c| self.ok_codes.contains(&c))
    }

    fn failed(&self, status: ExitStatus, tail: String, log: Option<PathBuf>) -> Error {
        Error::Failed(Box::new(Failed {
            cmdline: self.cmdline(),
            status: status.to_string(),
            code: status.code(),
            tail,
            log,
        }))
    }
}

/// A command started by [`Cmd::spawn_teed`].
#[derive(Debug)]
pub struct Teed {
    child: std::process::Child,
    /// Says when the pump has copied the last of the output.
    pumped: mpsc::Receiver<()>,
    cmd: Cmd,
    log: PathBuf,
    file: File,
    start: u64,
}

/// How long a command stopped by [`Teed::wait_bounded`] gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);

/// How often [`Teed::wait_bounded`] looks at the command and asks `stop`.
const POLL: Duration = Duration::from_millis(50);

/// Why [`Teed::wait_bounded`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The command ended by itself; its status was judged as [`Cmd::run`] judges it.
    Exited,
    /// The time limit passed, and the command was stopped.
    Deadline,
    /// `stop` asked for it, and the command was stopped.
    Stopped,
}

/// What [`Teed::wait_bounded`] gave.
#[derive(Debug, Clone, Copy)]
pub struct Bounded {
    pub status: ExitStatus,
    pub ending: Ending,
    /// From the start of the wait to the command's end.
    pub elapsed: Duration,
}

impl Teed {
    /// The process id (also its process group's).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the command and for the last of its output; an exit status outside the
    /// accepted codes is an [`Error::Failed`] carrying the tail of what it printed.
    pub fn wait(self) -> Result<ExitStatus, Error> {
        self.wait_bounded(None, &mut || false).map(|b| b.status)
    }

    /// Wait at most `limit`, and ask `stop` every 50 ms whether to stop waiting. At the
    /// limit, or when `stop` says so, the command's process group gets SIGTERM, and SIGKILL
    /// [`GRACE`] later; the status of a command stopped so is not judged (its
    /// [`Bounded::ending`] says why it ended). Whatever is left of the group when the
    /// command has ended is killed, and the output is waited for at most [`GRACE`], so the
    /// wait ends even when something outside the group holds the output open.
    pub fn wait_bounded(
        mut self,
        limit: Option<Duration>,
        stop: &mut dyn FnMut() -> bool,
    ) -> Result<Bounded, Error> {
        let t0 = Instant::now();
        let mut ending = Ending::Exited;
        let mut term_at: Option<Instant> = None;
        let mut killed = false;
        let spawn_err = |source| Error::Spawn {
            cmdline: self.cmd.cmdline(),
            cause: source,
        };
        loop {
            // Ended? Asked without reaping it, so that its process group id cannot be taken
            // by another process before what is left of the group is killed below.
            match self.exited() {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    self.signal_group(rustix::process::Signal::Kill);
                    let _ = self.child.wait();
                    return Err(spawn_err(e));
                }
            }
            match term_at {
                None => {
                    if limit.is_some_and(|l| t0.elapsed() >= l) {
                        ending = Ending::Deadline;
                    } else if stop() {
                        ending = Ending::Stopped;
                    }
                    if ending != Ending::Exited {
                        self.signal_group(rustix::process::Signal::Term);
                        term_at = Some(Instant::now());
                    }
                }
                Some(t) if !killed && t.elapsed() >= GRACE => {
                    self.signal_group(rustix::process::Signal::Kill);
                    killed = true;
                }
                Some(_) => {}
            }
            std::thread::sleep(POLL);
        }
        let elapsed = t0.elapsed();
        // What the command started and left behind in its group.
        self.signal_group(rustix::process::Signal::Kill);
        let status = self.child.wait().map_err(spawn_err)?;
        let _ = self.pumped.recv_timeout(GRACE);
        if ending == Ending::Exited && !self.cmd.accepts(status) {
            let tail = tail_of_file(&mut self.file, self.start);
            return Err(self.cmd.failed(status, tail, Some(self.log.clone())));
        }
        Ok(Bounded {
            status,
            ending,
            elapsed,
        })
    }

    /// Whether the command has ended (it is left to be reaped).
    fn exited(&self) -> std::io::Result<bool> {
        use rustix::process::{waitid, Pid, WaitId, WaitidOptions};
        let Some(pid) = Pid::from_raw(self.child.id() as i32) else {
            return Ok(true);
        };
        let o = WaitidOptions::EXITED | WaitidOptions::NOHANG | WaitidOptions::NOWAIT;
        Ok(waitid(WaitId::Pid(pid), o)?.is_some())
    }

    fn signal_group(&self, sig: rustix::process::Signal) {
        if let Some(p) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            // ESRCH once the group is gone: nothing to stop.
            let _ = rustix::process::kill_process_group(p, sig);
        }
    }
}

/// Copy what a teed command prints to the log and to the terminal, until end of file.
/// A terminal that went away (a closed pipe) does not stop the log.
fn pump(mut from: std::io::PipeReader, mut log: File, mut echo: Box<dyn Write + Send>) {
    let mut buf = [0u8; 8192];
    let mut echo_ok = true;
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let _ = log.write_all(&buf[..n]);
                if echo_ok {
                    echo_ok = echo.write_all(&buf[..n]).and_then(|_| echo.flush()).is_ok();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
}

fn tail_of_file(f: &mut File, start: u64) -> String {
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_ok() {
        let _ = f.read_to_end(&mut buf);
    }
    tail_lines(&String::from_utf8_lossy(&buf), TAIL_LINES)
}

/// The last `n` lines of `s`.
pub fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Quote one word for a POSIX shell, leaving plain words alone.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cmdline())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_carries_cmdline_status_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let err = Cmd::new("sh")
            .args([
                "-c",
                "for i in $(seq 1 30); do echo line$i; done; echo oops >&2; exit 3",
            ])
            .log(&log)
            .run()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`sh -c 'for i in"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(
            msg.contains("| oops") && msg.contains("| line30") && !msg.contains("| line5\n"),
            "{msg}"
        );
        assert!(msg.contains(&log.display().to_string()), "{msg}");
        let logged = fs::read_to_string(&log).unwrap();
        assert!(logged.starts_with("$ sh -c") && logged.contains("line1\n"));
    }

    #[test]
    fn teed_output_reaches_log_and_echo_in_order() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("t.log");
        let seen = Shared(Arc::new(Mutex::new(Vec::new())));
        let t = Cmd::new("sh")
            .args(["-c", "echo out1; echo err1 >&2; echo out2; exit 4"])
            .spawn_teed(&log, Box::new(seen.clone()))
            .unwrap();
        let err = t.wait().unwrap_err();
        let echoed = String::from_utf8(seen.0.lock().unwrap().clone()).unwrap();
        assert_eq!(echoed, "out1\nerr1\nout2\n");
        let logged = fs::read_to_string(&log).unwrap();
        assert!(logged.starts_with("$ sh -c") && logged.ends_with("out1\nerr1\nout2\n"));
        let msg = err.to_string();
        assert!(
            msg.contains("exit status: 4") && msg.contains("| err1"),
            "{msg}"
        );
        let ok = Cmd::new("true")
            .spawn_teed(&log, Box::new(std::io::sink()))
            .unwrap();
        assert!(ok.wait().unwrap().success());
    }

    /// Whether a process is gone (or a zombie waiting for its new parent to reap it).
    fn gone(pid: &str) -> bool {
        match fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z')),
        }
    }

    #[test]
    fn bounded_wait_stops_the_whole_group_at_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("b.log");
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 100 & echo $! >{0}; echo $$ >>{0}; sleep 100",
            pids.display()
        );
        let t = Cmd::new("sh")
            .args(["-c", &script])
            .spawn_teed(&log, Box::new(std::io::sink()))
            .unwrap();
        let b = t
            .wait_bounded(Some(Duration::from_millis(300)), &mut || false)
            .unwrap();
        assert_eq!(b.ending, Ending::Deadline);
        assert!(b.elapsed < Duration::from_secs(5), "{:?}", b.elapsed);
        assert!(!b.status.success());
        let pids = fs::read_to_string(&pids).unwrap();
        assert_eq!(pids.lines().count(), 2, "{pids}");
        for p in pids.lines() {
            assert!(gone(p), "process {p} outlived the wait");
        }
    }

    #[test]
    fn bounded_wait_stops_when_asked_and_kills_what_ignores_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("s.log");
        let t = Cmd::new("sh")
            .args(["-c", "trap '' TERM; echo ready; sleep 100"])
            .spawn_teed(&log, Box::new(std::io::sink()))
            .unwrap();
        let mut asked = 0;
        let b = t
            .wait_bounded(None, &mut || {
                asked += 1;
                asked == 3
            })
            .unwrap();
        assert_eq!(b.ending, Ending::Stopped);
        assert_eq!(asked, 3);
        // SIGTERM was ignored: SIGKILL came after the grace period.
        assert!(
            b.elapsed >= GRACE && b.elapsed < GRACE * 2,
            "{:?}",
            b.elapsed
        );
        assert!(fs::read_to_string(&log).unwrap().contains("ready\n"));
    }

    #[test]
    fn bounded_wait_judges_a_command_that_ended_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("e.log");
        let start = |script: &str| {
            Cmd::new("sh")
                .args(["-c", script])
                .spawn_teed(&log, Box::new(std::io::sink()))
                .unwrap()
        };
        let b = start("echo fine")
            .wait_bounded(Some(Duration::from_secs(60)), &mut || false)
            .unwrap();
        assert_eq!((b.ending, b.status.code()), (Ending::Exited, Some(0)));
        let e = start("echo broken; exit 2")
            .wait_bounded(Some(Duration::from_secs(60)), &mut || false)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("exit status: 2") && msg.contains("| broken"),
            "{msg}"
        );
        assert!(msg.contains(&log.display().to_string()), "{msg}");
    }

    #[test]
    fn stdin_is_closed() {
        let o = Cmd::new("cat").output().unwrap();
        assert_eq!(o.stdout, "");
    }

    #[test]
    fn accepted_codes() {
        Cmd::new("sh")
            .args(["-c", "exit 7"])
            .ok_codes(&[0, 7])
            .run()
            .unwrap();
        assert!(Cmd::new("false").run().is_err());
        let e = Cmd::new("/nonexistent/prog").run().unwrap_err();
        assert!(e.to_string().contains("cannot start `/nonexistent/prog`"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(">=sys-apps/foo-1"), "'>=sys-apps/foo-1'");
        assert_eq!(shell_quote("--root=/x"), "--root=/x");
    }
}
