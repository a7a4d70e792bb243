//! Shared by the integration tests that build variants with real emerge against
//! tests/fixtures/gentoo-mini, on a copy of the project.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// A copy of the project's variants (and the fixture variants) and layers in a temp dir (so
/// tests can edit them), sharing the real project's `build/tools` (the PyPI Portage venv).
pub struct Project {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
}

/// `cp -a from to` (testutil's).
pub fn copy_tree(from: &Path, to: &Path) {
    testutil::copy(from, to);
}

/// None (skip) locally when a prerequisite is missing; a panic under KEEL_TEST_STRICT.
pub fn project() -> Option<Project> {
    let real = testutil::project_root();
    let venv = testutil::portage_venv()?;
    for tool in ["scanelf", "gcc", "mksquashfs", "unsquashfs"] {
        if !testutil::require(tool) {
            return None;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("p");
    fs::create_dir_all(root.join("build/tools")).unwrap();
    // The fixture variants (base-quick, selinux-quick, selinux-mini) beside the shipped ones.
    testutil::copy_project(&real, &root);
    std::os::unix::fs::symlink(
        &venv,
        root.join("build/tools").join(venv.file_name().unwrap()),
    )
    .unwrap();
    Some(Project { _dir: dir, root })
}

pub fn repo() -> PathBuf {
    testutil::project_root().join("tests/fixtures/gentoo-mini")
}

pub fn keel_cmd(p: &Project, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
    c.arg("-C")
        .arg(&p.root)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH");
    if args.first() == Some(&"build") {
        c.arg("--gentoo-repo").arg(repo());
    }
    c
}

pub fn text(o: &Output) -> (bool, String, String) {
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn keel(p: &Project, args: &[&str]) -> (bool, String, String) {
    text(&keel_cmd(p, args).output().unwrap())
}

/// The stages from `first` to the end, as the plan of `variant` in project `p` lists them
/// (`pipeline::plan`: the one list of stages).
pub fn from(p: &Project, first: pipeline::StageId, variant: &str) -> Vec<String> {
    let project = variant::Project::load(&p.root).unwrap();
    let resolved = project.resolve(variant).unwrap();
    let ids: Vec<pipeline::StageId> = pipeline::stages_of(&project, &resolved)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let pos = ids
        .iter()
        .position(|s| *s == first)
        .unwrap_or_else(|| panic!("`{first}` is not a stage of `{variant}`: {ids:?}"));
    ids[pos..].iter().map(|s| s.name().to_owned()).collect()
}

/// The stages a build's progress says ran.
pub fn ran(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[      running] "))
        .map(|l| l.split(':').next().unwrap().to_owned())
        .collect()
}

/// Build (with `env`); returns the stages that ran and the image path.
pub fn build_env(p: &Project, variant: &str, env: &[(&str, &str)]) -> (Vec<String>, PathBuf) {
    let mut c = keel_cmd(p, &["build", "--variant", variant]);
    for (k, v) in env {
        c.env(k, v);
    }
    let (ok, out, err) = text(&c.output().unwrap());
    assert!(ok, "build of {variant} failed:\n{err}");
    let image = PathBuf::from(out.trim());
    assert!(image.is_file(), "the build prints the image path: {out}");
    (ran(&err), image)
}

/// Build; returns the stages that ran and the destination root.
pub fn build(p: &Project, variant: &str) -> (Vec<String>, String) {
    let (ran, _) = build_env(p, variant, &[]);
    let dest = p.root.join("build/work").join(variant).join("destroot");
    (ran, dest.display().to_string())
}

pub fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// A text rendering of a directory for snapshots: one line per entry, sorted, with the
/// project copy's path, the repository's and the Portage venv's replaced by placeholders.
pub fn render_dir(p: &Project, dir: &Path) -> String {
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            let m = fs::symlink_metadata(&path).unwrap();
            if m.file_type().is_symlink() {
                lines.push(format!(
                    "{rel} -> {}",
                    fs::read_link(&path).unwrap().display()
                ));
            } else if m.is_dir() {
                stack.push(path);
            } else {
                let text = String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned();
                lines.push(format!(
                    "{rel}:\n{}",
                    text.lines()
                        .map(|l| format!("    {l}\n"))
                        .collect::<String>()
                        .trim_end()
                ));
            }
        }
    }
    lines.sort();
    // Keel's default `--jobs` is this machine's CPU count.
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let text = lines.join("\n").replace(
        &format!("--jobs={n} --load-average={n}"),
        "--jobs=<cpus> --load-average=<cpus>",
    );
    placeholders(p, &text)
}

pub fn placeholders(p: &Project, text: &str) -> String {
    let venv = fs::read_link(
        fs::read_dir(p.root.join("build/tools"))
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path(),
    )
    .unwrap();
    text.replace(&venv.display().to_string(), "<portage-venv>")
        .replace(&repo().display().to_string(), "<gentoo-mini>")
        .replace(&p.root.display().to_string(), "<project>")
}

/// A manifest for snapshots: the content hashes under /var/db/pkg depend on build paths
/// (the saved ebuild environments), so they are replaced; everything else stays.
pub fn manifest_for_snapshot(manifest: &str) -> String {
    manifest
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if l.starts_with("/var/db/pkg/") && f.len() == 7 && f[1] == "f" {
                format!(
                    "{}\t{}\t{}\t{}\t{}\t<vdb>\t{}",
                    f[0],
                    f[1],
                    f[2],
                    f[3],
                    if f[0].ends_with("environment.bz2") {
                        "<size>"
                    } else {
                        f[4]
                    },
                    f[6]
                )
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The emerge invocations recorded in the logs of a variant's stages (each log holds the
/// stage's last run only).
pub fn emerge_runs(p: &Project, variant: &str) -> usize {
    let logs = p.root.join("build/work").join(variant).join("logs");
    fs::read_dir(logs)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| {
                    fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| l.starts_with("$ ") && l.contains("/emerge "))
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A throwaway GnuPG home with one signing key: (home, fingerprint, exported public key).
pub fn gpg_key(dir: &Path, name: &str) -> (PathBuf, String, PathBuf) {
    let home = dir.join(format!("gnupg-{name}"));
    fs::create_dir_all(&home).unwrap();
    fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let o = Command::new("gpg")
            .arg("--homedir")
            .arg(&home)
            .args(["--batch", "--no-tty"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "gpg {args:?}: {o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        &format!("Keel test {name} <{name}@keel.invalid>"),
        "ed25519",
        "sign",
        "never",
    ]);
    let fpr = portage::binhost::fingerprints(&gpg(&["--with-colons", "--list-keys"]))
        .pop()
        .unwrap();
    let public = dir.join(format!("{name}.asc"));
    fs::write(&public, gpg(&["--armor", "--export", &fpr])).unwrap();
    (home, fpr, public)
}

/// Stops the GnuPG agents the keys of [`gpg_key`] started, and the HTTP server of [`serve`].
pub struct Cleanup {
    pub homes: Vec<PathBuf>,
    pub server: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for h in &self.homes {
            let _ = Command::new("gpgconf")
                .arg("--homedir")
                .arg(h)
                .args(["--kill", "gpg-agent"])
                .status();
        }
        if let Some(s) = &mut self.server {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// `python3 -m http.server` on 127.0.0.1 (a port the kernel picks) serving `dir`.
pub fn serve(dir: &Path) -> (Child, u16) {
    let mut child = Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
            "--directory",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "Serving HTTP on 127.0.0.1 port 34677 (http://127.0.0.1:34677/) ..."
    let port = line
        .split(" port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("http.server said: {line}"));
    (child, port)
}

/// distccd on 127.0.0.1 (a port the kernel picked), its log (stderr: run as root, distccd
/// becomes the `distccd` user, who may not write a file of ours) in `log`; stopped when
/// dropped. Returns once it listens.
pub struct Distccd {
    child: Child,
    pub port: u16,
}

impl Distccd {
    pub fn start(log: &Path) -> Distccd {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A group of its own: distccd forks its workers, and they go with it.
        let child = Command::new("distccd")
            .args([
                "--daemon",
                "--no-detach",
                "--allow",
                "127.0.0.1",
                "--listen",
                "127.0.0.1",
            ])
            .args(["--port", &port.to_string(), "--jobs", "4"])
            .args(["--log-stderr", "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while !fs::read_to_string(log)
            .unwrap_or_default()
            .contains("listening on")
            && t.elapsed() < std::time::Duration::from_secs(20)
        {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Distccd { child, port }
    }

    /// The compile jobs its log says it ran: (count, the log).
    pub fn jobs(log: &Path) -> (usize, String) {
        let text = fs::read_to_string(log).unwrap_or_default();
        (
            text.lines().filter(|l| l.contains("COMPILE_OK")).count(),
            text,
        )
    }
}

impl Drop for Distccd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// The suite's shared build of `variant` (`testutil::shared_build`, under `tmpdir`), and a
/// fresh project copy with the fixture variants, nothing built: two machines with the same
/// project.
pub fn shared_build_and_fresh_copy(
    tmpdir: &Path,
    variant: &str,
) -> Option<(testutil::Built, Project)> {
    let built = testutil::shared_build(tmpdir, Path::new(env!("CARGO_BIN_EXE_keel")), variant)?;
    Some((built, project()?))
}
