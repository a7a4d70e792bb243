//! The whole test suite, run by xtask itself (`cargo xtask test` without arguments).
//!
//! `cargo test` runs one test binary after another. Here the binaries are listed from
//! cargo's build messages (`cargo test --no-run --message-format=json`) and run a few at a
//! time, the known long ones first, each from its package's directory with the environment
//! `cargo test` gives it. Each binary's output goes to `build/logs/tests/<binary>.log`,
//! every line stamped as it arrives, which gives each test's time without unstable libtest
//! flags: libtest prints `test T has been running for over 60 seconds` exactly 60 s after
//! `T` started (with more than one test thread) and `test T ... ok` when it ends.
//!
//! At the end a timing table (every binary, each test over 60 s, the total, a warning past
//! the budget) is printed and written to `build/logs/test-times.txt`. A binary still
//! running after [`BINARY_LIMIT`] is killed (its process group: builds, QEMU) and fails.
//! The longest binary runs at normal priority, every other one under `nice -n 10`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The suite's budget on the project's 2-CPU machines (CI stops at 90 minutes).
pub const BUDGET: Duration = Duration::from_secs(40 * 60);
/// A test binary that runs longer than this is hung: killed, reported, failed.
const BINARY_LIMIT: Duration = Duration::from_secs(60 * 60);
/// Tests at least this long get their own line in the table (libtest's warning time).
const LONG_TEST: Duration = Duration::from_secs(60);
/// The binaries known to take longest, started first in this order (a longest-first
/// schedule keeps the suite's end near its longest binary's).
const LONG_FIRST: &[&str] = &[
    "keel::vm",
    // The Debian twins' boots, and the Gentoo `selinux` built cold (~85 packages) and booted.
    "keel::boot",
    "keel::portage_build",
    // Three builds of debian-trixie and two machine runs across seven boots.
    "keel::update",
    // Makes the shared `selinux-quick` build (cold, a few minutes), then builds from its binhost.
    "keel::binhost",
    "policy::policy",
    "keel::image_build",
    // Waits for the shared selinux-mini build the VM test starts, then builds on its own.
    "keel::distcc",
    "oci::umoci",
];

/// One test binary, as cargo built it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    /// `package::target` for integration tests, `package (lib)` / `package (bin NAME)` for
    /// unit tests.
    pub name: String,
    pub exe: PathBuf,
    /// The package's directory: `cargo test` runs a test binary from there.
    pub dir: PathBuf,
    pub package: String,
    /// Arguments before libtest's own (empty for a test binary; `test --doc ...` for the
    /// doctests, which cargo runs through rustdoc).
    pub args: Vec<String>,
}

impl Binary {
    /// The workspace's doctests, as `cargo test --doc` runs them (no binary of their own).
    pub fn doctests(root: &Path) -> Binary {
        Binary {
            name: "doctests".into(),
            exe: PathBuf::from(env!("CARGO")),
            dir: root.to_owned(),
            package: String::new(),
            args: ["test", "--workspace", "--locked", "--doc", "--"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// What one binary did.
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    pub status: String,
    pub time: Duration,
    /// Tests of at least [`LONG_TEST`], with their times.
    pub long: Vec<(String, Duration)>,
    pub log: PathBuf,
}

/// The value of `"key":"..."` at or after `from` in one JSON message line (cargo's paths
/// and names carry no escaped quotes worth decoding here; `\\` is undone).
fn field<'a>(line: &'a str, key: &str, from: usize) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let at = line.get(from..)?.find(&pat)? + from + pat.len();
    let rest = &line[at..];
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// The test binaries in cargo's `--message-format=json` output.
pub fn parse_artifacts(json: &str) -> Vec<Binary> {
    let mut out: Vec<Binary> = Vec::new();
    for l in json.lines() {
        // A test binary: built with the test profile (`"profile":{...,"test":true}`), not
        // a target that merely has tests enabled.
        let test_profile = l
            .split("\"profile\":{")
            .nth(1)
            .and_then(|p| p.split('}').next())
            .is_some_and(|p| p.contains("\"test\":true"));
        if !l.contains("\"reason\":\"compiler-artifact\"") || !test_profile {
            continue;
        }
        let (Some(exe), Some(manifest)) = (field(l, "executable", 0), field(l, "manifest_path", 0))
        else {
            continue;
        };
        let Some(t) = l.find("\"target\":{") else {
            continue;
        };
        let Some(target) = field(l, "name", t) else {
            continue;
        };
        let dir = Path::new(manifest)
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        let package = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = l[t..]
            .split("\"kind\":[\"")
            .nth(1)
            .and_then(|k| k.split('"').next())
            .unwrap_or("");
        let name = match kind {
            "test" => format!("{package}::{target}"),
            "bin" => format!("{package} (bin {target})"),
            "bench" => format!("{package} (bench {target})"),
            _ => format!("{package} (lib)"),
        };
        let b = Binary {
            name,
            exe: PathBuf::from(exe.replace("\\\\", "\\")),
            dir,
            package,
            args: Vec::new(),
        };
        if !out.contains(&b) {
            out.push(b);
        }
    }
    out
}

/// Long ones first (in [`LONG_FIRST`]'s order), then the rest as cargo listed them.
pub fn schedule(mut bins: Vec<Binary>) -> Vec<Binary> {
    let rank = |b: &Binary| {
        LONG_FIRST
            .iter()
            .position(|n| *n == b.name)
            .unwrap_or(LONG_FIRST.len())
    };
    bins.sort_by_key(rank);
    bins
}

/// Per-test times from stamped libtest output lines (`(seconds since start, line)`).
pub fn long_tests(lines: &[(f64, String)]) -> Vec<(String, Duration)> {
    let mut started: BTreeMap<&str, f64> = BTreeMap::new();
    let mut out = Vec::new();
    for (t, l) in lines {
        if let Some(rest) = l.strip_prefix("test ") {
            if let Some(name) = rest.strip_suffix(" has been running for over 60 seconds") {
                started.insert(name, t - LONG_TEST.as_secs_f64());
            } else if let Some((name, result)) = rest.split_once(" ... ") {
                if let Some(s) = started.get(name) {
                    let d = Duration::from_secs_f64((t - s).max(0.0));
                    out.push((format!("{name} ({})", result.trim()), d));
                }
            }
        }
    }
    out
}

/// Run every binary, at most `jobs` at once; returns what each did, in finishing order.
pub fn run(
    root: &Path,
    bins: Vec<Binary>,
    env: &[(&str, &str)],
    jobs: usize,
) -> Result<Vec<Outcome>, String> {
    let logs = root.join("build/logs/tests");
    fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let suite = Instant::now();
    let (tx, rx) = mpsc::channel::<Outcome>();
    let mut todo = schedule(bins).into_iter();
    let mut running = 0usize;
    let mut done = Vec::new();
    loop {
        while running < jobs {
            let Some(b) = todo.next() else { break };
            let log = logs.join(format!("{}.log", file_name(&b.name)));
            // The critical path (the first long binary, a VM under TCG that waits for a build
            // on the host) keeps the normal priority; the rest, which finish well before it,
            // give way to it when the CPUs are contended (`nice`: lower priority, same work).
            let mut c = if LONG_FIRST.first() == Some(&b.name.as_str()) {
                Command::new(&b.exe)
            } else {
                let mut n = Command::new("nice");
                n.args(["-n", "10"]).arg(&b.exe);
                n
            };
            c.args(&b.args)
                .arg(format!("--test-threads={threads}"))
                .arg("--nocapture")
                .current_dir(&b.dir)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .process_group(0);
            if !b.package.is_empty() {
                c.env("CARGO_MANIFEST_DIR", &b.dir)
                    .env("CARGO_PKG_NAME", &b.package);
            }
            let (reader, writer) =
                std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
            let w2 = writer
                .try_clone()
                .map_err(|e| format!("cannot make a pipe: {e}"))?;
            c.stdout(writer).stderr(w2);
            let child = c
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", b.exe.display()))?;
            drop(c);
            eprintln!(
                "xtask: [{:>5.0} s] started {} (log: {})",
                suite.elapsed().as_secs_f64(),
                b.name,
                log.display()
            );
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(watch(b.name, child, reader, log));
            });
            running += 1;
        }
        if running == 0 {
            break;
        }
        let o = rx
            .recv()
            .map_err(|e| format!("a test runner thread ended: {e}"))?;
        running -= 1;
        eprintln!(
            "xtask: [{:>5.0} s] {} {} ({:.0} s)",
            suite.elapsed().as_secs_f64(),
            if o.ok { "ok    " } else { "FAILED" },
            o.name,
            o.time.as_secs_f64()
        );
        if !o.ok {
            print_tail(&o);
        }
        done.push(o);
    }
    Ok(done)
}

fn file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Stamp and log a binary's output until it ends (or kill it past [`BINARY_LIMIT`]).
fn watch(
    name: String,
    mut child: std::process::Child,
    reader: std::io::PipeReader,
    log: PathBuf,
) -> Outcome {
    let start = Instant::now();
    let pid = child.id();
    // The watchdog: the whole process group (the test's builds and VMs too).
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if stop_rx.recv_timeout(BINARY_LIMIT) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stdin(Stdio::null())
                .status();
            return true;
        }
        false
    });
    let mut file = fs::File::create(&log).ok();
    let mut lines = Vec::new();
    for l in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
        let l = String::from_utf8_lossy(&l).into_owned();
        let t = start.elapsed().as_secs_f64();
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "[{t:>7.1}] {l}");
        }
        if l.starts_with("test ") {
            lines.push((t, l));
        }
    }
    let status = child.wait();
    let _ = stop_tx.send(());
    let killed = dog.join().unwrap_or(false);
    let time = start.elapsed();
    let (ok, status) = match status {
        Ok(s) if killed => (
            false,
            format!("killed after {} min ({s})", BINARY_LIMIT.as_secs() / 60),
        ),
        Ok(s) => (s.success(), s.to_string()),
        Err(e) => (false, format!("cannot wait: {e}")),
    };
    if let Some(f) = file.as_mut() {
        let _ = writeln!(
            f,
            "xtask: {name}: {status} after {:.0} s",
            time.as_secs_f64()
        );
    }
    Outcome {
        name,
        ok,
        status,
        time,
        long: long_tests(&lines),
        log,
    }
}

fn print_tail(o: &Outcome) {
    let text = fs::read_to_string(&o.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(80);
    eprintln!(
        "---- {} ({}), last {} lines of {} ----",
        o.name,
        o.status,
        lines.len() - from,
        o.log.display()
    );
    for l in &lines[from..] {
        eprintln!("{l}");
    }
    eprintln!("---- end of {} ----", o.name);
}

fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

/// The timing table: every binary (longest first) with each long test under it, the
/// time before the tests (compiling, tools), the tests' wall time, the total, and a
/// warning line past [`BUDGET`].
pub fn table(outcomes: &[Outcome], setup: Duration, tests: Duration, jobs: usize) -> String {
    let mut sorted: Vec<&Outcome> = outcomes.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then(a.name.cmp(&b.name)));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut t = format!(
        "test times (wall clock; {} binaries, up to {jobs} at once on {cpus} CPUs)\n",
        outcomes.len()
    );
    for o in sorted {
        t += &format!(
            "{:>7.0} s  {:<6}  {}\n",
            o.time.as_secs_f64(),
            if o.ok { "ok" } else { "FAILED" },
            o.name
        );
        for (test, d) in &o.long {
            t += &format!("{:>7.0} s            {test}\n", d.as_secs_f64());
        }
    }
    let total = setup + tests;
    t += &format!(
        "{:>7.0} s  setup   (installing tools, compiling the tests, the Portage venv)\n",
        setup.as_secs_f64()
    );
    t += &format!("{:>7.0} s  tests   (wall clock)\n", tests.as_secs_f64());
    t += &format!(
        "{:>7.0} s  total   ({})\n",
        total.as_secs_f64(),
        mmss(total)
    );
    if total > BUDGET {
        t += &format!(
            "WARNING: the suite took {}, over its budget of {} on this machine class\n",
            mmss(total),
            mmss(BUDGET)
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/keel#0.1.0","manifest_path":"/w/crates/keel/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"vm","src_path":"/w/crates/keel/tests/vm.rs","edition":"2021","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/vm-1"],"executable":"/w/target/debug/deps/vm-1","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/keel#0.1.0","manifest_path":"/w/crates/keel/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"keel","src_path":"/w/crates/keel/src/main.rs","test":true},"profile":{"test":false},"executable":"/w/target/debug/keel","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/keel#0.1.0","manifest_path":"/w/crates/keel/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"keel","src_path":"/w/crates/keel/src/main.rs","test":true},"profile":{"test":true},"executable":"/w/target/debug/deps/keel-2","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/crates/oci#0.1.0","manifest_path":"/w/crates/oci/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"oci","src_path":"/w/crates/oci/src/lib.rs","test":true},"profile":{"test":true},"executable":"/w/target/debug/deps/oci-3","fresh":true}
{"reason":"build-finished","success":true}"#;

    #[test]
    fn test_binaries_come_from_cargos_messages() {
        let bins = parse_artifacts(JSON);
        let names: Vec<&str> = bins.iter().map(|b| b.name.as_str()).collect();
        // The plain `keel` binary (profile.test false) is not a test binary.
        assert_eq!(names, ["keel::vm", "keel (bin keel)", "oci (lib)"]);
        assert_eq!(bins[0].exe, Path::new("/w/target/debug/deps/vm-1"));
        assert_eq!(bins[0].dir, Path::new("/w/crates/keel"));
        assert_eq!(bins[0].package, "keel");
        let order: Vec<String> = schedule(bins).into_iter().map(|b| b.name).collect();
        assert_eq!(order[0], "keel::vm");
    }

    #[test]
    fn long_tests_are_timed_from_libtests_warning() {
        let lines: Vec<(f64, String)> = [
            (1.0, "test quick ... ok"),
            (65.0, "test slow has been running for over 60 seconds"),
            (70.0, "test other has been running for over 60 seconds"),
            (125.5, "test slow ... ok"),
            (300.0, "test other ... FAILED"),
        ]
        .iter()
        .map(|(t, l)| (*t, l.to_string()))
        .collect();
        let long = long_tests(&lines);
        assert_eq!(
            long.iter()
                .map(|(n, d)| (n.as_str(), d.as_secs()))
                .collect::<Vec<_>>(),
            [("slow (ok)", 120), ("other (FAILED)", 290)]
        );
    }

    #[test]
    fn the_table_warns_past_the_budget() {
        let o = |name: &str, secs, ok| Outcome {
            name: name.into(),
            ok,
            status: String::new(),
            time: Duration::from_secs(secs),
            long: vec![("t (ok)".into(), Duration::from_secs(secs))],
            log: PathBuf::new(),
        };
        let outcomes = [o("a::x", 100, true), o("b::y", 2000, false)];
        let t = table(
            &outcomes,
            Duration::from_secs(300),
            Duration::from_secs(2100),
            3,
        );
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[1].ends_with("FAILED  b::y"), "{t}");
        assert!(
            lines[2].ends_with("t (ok)") && lines[2].contains("2000 s"),
            "{t}"
        );
        assert!(t.contains("2400 s  total   (40m00s)"), "{t}");
        assert!(
            !t.contains("WARNING"),
            "exactly the budget is within it: {t}"
        );
        let t = table(
            &outcomes,
            Duration::from_secs(301),
            Duration::from_secs(2100),
            3,
        );
        assert!(
            t.contains("WARNING: the suite took 40m01s, over its budget of 40m00s"),
            "{t}"
        );
    }

    #[test]
    fn log_names_are_plain() {
        assert_eq!(file_name("keel::vm"), "keel-vm");
        assert_eq!(file_name("keel (bin keel)"), "keel-bin-keel");
    }
}
