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
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

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
    #[error("cannot start `{cmdline}`: {source}")]
    Spawn {
        cmdline: String,
        source: std::io::Error,
    },
    #[error("cannot open log `{}`: {source}", path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{cmdline}` failed ({status}){}\n{}", log.as_ref().map(|l| format!("; log: {}", l.display())).unwrap_or_default(), indent(tail))]
    Failed {
        cmdline: String,
        status: String,
        code: Option<i32>,
        tail: String,
        log: Option<PathBuf>,
    },
}

fn indent(s: &str) -> String {
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
            source,
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
                source,
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
                source,
            })?;
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        if let Some(path) = &self.log {
            let log_err = |source| Error::Log {
                path: path.to_owned(),
                source,
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
    /// a VM's console. [`Teed::wait`] judges the exit status like [`Cmd::run`].
    pub fn spawn_teed(&self, log: &Path, echo: Box<dyn Write + Send>) -> Result<Teed, Error> {
        let log_err = |source| Error::Log {
            path: log.to_owned(),
            source,
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
            source,
        };
        let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
        let writer2 = writer.try_clone().map_err(spawn_err)?;
        let mut cmd = self.command();
        cmd.stdout(writer).stderr(writer2);
        let child = cmd.spawn().map_err(spawn_err)?;
        // Our copies of the write end must be gone, or the pump never sees end of file.
        drop(cmd);
        let sink = f.try_clone().map_err(log_err)?;
        let pump = std::thread::spawn(move || pump(reader, sink, echo));
        Ok(Teed {
            child,
            pump: Some(pump),
            cmd: self.clone(),
            log: log.to_owned(),
            file: f,
            start,
        })
    }

    fn accepts(&self, status: ExitStatus) -> bool {
        status.code().is_some_and(|c| self.ok_codes.contains(&c))
    }

    fn failed(&self, status: ExitStatus, tail: String, log: Option<PathBuf>) -> Error {
        Error::Failed {
            cmdline: self.cmdline(),
            status: status.to_string(),
            code: status.code(),
            tail,
            log,
        }
    }
}

/// A command started by [`Cmd::spawn_teed`].
#[derive(Debug)]
pub struct Teed {
    child: std::process::Child,
    pump: Option<std::thread::JoinHandle<()>>,
    cmd: Cmd,
    log: PathBuf,
    file: File,
    start: u64,
}

impl Teed {
    /// The process id (to signal it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the command and for the last of its output; an exit status outside the
    /// accepted codes is an [`Error::Failed`] carrying the tail of what it printed.
    pub fn wait(mut self) -> Result<ExitStatus, Error> {
        let status = self.child.wait().map_err(|source| Error::Spawn {
            cmdline: self.cmd.cmdline(),
            source,
        })?;
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
        if self.cmd.accepts(status) {
            return Ok(status);
        }
        let tail = tail_of_file(&mut self.file, self.start);
        Err(self.cmd.failed(status, tail, Some(self.log.clone())))
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
