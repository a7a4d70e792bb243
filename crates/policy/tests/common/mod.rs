//! The real refpolicy for tests and the bench: gentoo-mini's sec-policy ebuilds driven by
//! the real (PyPI) emerge, with the project's patches as Portage user patches, into a root;
//! then Keel's local modules. Cached under CARGO_TARGET_TMPDIR by a hash of its inputs.
#![allow(dead_code)]

use exec::Cmd;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub fn root_dir() -> PathBuf {
    testutil::project_root()
}

/// The tools the fixture needs, skipping (or failing under KEEL_TEST_STRICT) when missing.
pub fn tools() -> bool {
    [
        "make",
        "m4",
        "checkmodule",
        "semodule",
        "semodule_package",
        "setfiles",
        "sesearch",
        "seinfo",
        "zstd",
        "patch",
    ]
    .iter()
    .all(|t| testutil::require(t))
        && (Path::new(policy::POLICY_SRC).exists()
            || !testutil::skip_or_fail(
                "selinux-policy-src (/usr/src/selinux-policy-src.tar.zst) is not installed",
            ))
}

/// The project's patch layers for sec-policy/selinux-base, tree-merged like
/// portage::config (later layer's file of the same name wins), in name order.
pub fn project_patches() -> Vec<PathBuf> {
    let top = root_dir();
    let mut by_name = std::collections::BTreeMap::new();
    for layer in [
        "portage",
        "variants/base/portage",
        "variants/selinux/portage",
    ] {
        let d = top.join(layer).join("patches/sec-policy/selinux-base");
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                by_name.insert(e.file_name(), e.path());
            }
        }
    }
    by_name.into_values().collect()
}

/// A Portage setup like check.sh's: config root, PORTAGE_OVERRIDE_EPREFIX, DISTDIR seeded
/// by `policy::seed_distfiles`, user patches copied in.
pub struct Emerge {
    pub dir: PathBuf,
    venv: PathBuf,
}

impl Emerge {
    pub fn new(dir: &Path, venv: &Path, patches: &[PathBuf]) -> Emerge {
        let repo = root_dir().join("tests/fixtures/gentoo-mini");
        let _ = fs::remove_dir_all(dir);
        let cfg = dir.join("host/share/portage/config");
        fs::create_dir_all(&cfg).unwrap();
        for f in ["make.globals", "sets", "binrepos.conf", "repo.postsync.d"] {
            std::os::unix::fs::symlink(venv.join("share/portage/config").join(f), cfg.join(f))
                .unwrap();
        }
        fs::write(
            cfg.join("repos.conf"),
            format!(
                "[DEFAULT]\nmain-repo = gentoo\n\n[gentoo]\nlocation = {}\n",
                repo.display()
            ),
        )
        .unwrap();
        let etc = dir.join("host/etc/portage");
        fs::create_dir_all(&etc).unwrap();
        std::os::unix::fs::symlink(
            repo.join("profiles/default/linux/amd64/23.0/hardened/selinux/systemd"),
            etc.join("make.profile"),
        )
        .unwrap();
        for d in ["distfiles", "tmp", "logs", "bin", "pkgdir"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(
            etc.join("make.conf"),
            format!(
                "FEATURES=\"-sandbox -usersandbox -news\"\nPORTAGE_TMPDIR=\"{0}/tmp\"\nDISTDIR=\"{0}/distfiles\"\nPKGDIR=\"{0}/pkgdir\"\nPORTAGE_LOGDIR=\"{0}/logs\"\nACCEPT_LICENSE=\"-* @FREE\"\nCLEAN_DELAY=\"0\"\nEMERGE_WARNING_DELAY=\"0\"\nMAKEOPTS=\"-j2\"\n",
                dir.display()
            ),
        )
        .unwrap();
        let pd = etc.join("patches/sec-policy/selinux-base");
        fs::create_dir_all(&pd).unwrap();
        for p in patches {
            fs::copy(p, pd.join(p.file_name().unwrap())).unwrap();
        }
        std::os::unix::fs::symlink("/usr/bin/tar", dir.join("bin/gtar")).unwrap();
        policy::seed_distfiles(&dir.join("distfiles")).unwrap();
        Emerge {
            dir: dir.to_owned(),
            venv: venv.to_owned(),
        }
    }

    /// `emerge --root=R --sysroot=R --oneshot --nodeps ATOMS...`, logged to logs/emerge.log.
    pub fn run(&self, root: &Path, atoms: &[&str]) -> Result<(), exec::Error> {
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Cmd::new(self.venv.join("bin/emerge"))
            .env("PORTAGE_OVERRIDE_EPREFIX", self.dir.join("host"))
            .env("PORTAGE_CONFIGROOT", self.dir.join("host"))
            .env("EPREFIX", "")
            .env("ROOT", root)
            .env("PATH", path)
            .env("NOCOLOR", "true")
            .env("PORTAGE_USERNAME", "root")
            .env("PORTAGE_GRPNAME", "root")
            .arg(format!("--root={}", root.display()))
            .arg(format!("--sysroot={}", root.display()))
            .args([
                "--oneshot",
                "--nodeps",
                "--color=n",
                "--nospinner",
                "--quiet-build=y",
            ])
            .log(self.dir.join("logs/emerge.log"));
        for a in atoms {
            c = c.arg(a);
        }
        c.run()
    }
}

fn inputs_hash() -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let top = root_dir();
    let mut files = project_patches();
    for p in [
        "sec-policy/selinux-base",
        "sec-policy/selinux-base-policy",
        "sec-policy/selinux-container",
    ] {
        for e in fs::read_dir(top.join("tests/fixtures/gentoo-mini").join(p))
            .unwrap()
            .flatten()
        {
            files.push(e.path());
        }
    }
    for l in ["policy", "variants/selinux/policy"] {
        if let Ok(rd) = fs::read_dir(top.join(l)) {
            files.extend(rd.flatten().map(|e| e.path()));
        }
    }
    files.sort();
    for f in files {
        f.hash(&mut h);
        fs::read(&f).unwrap_or_default().hash(&mut h);
    }
    fs::metadata(policy::POLICY_SRC)
        .map(|m| m.len())
        .unwrap_or(0)
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

/// A root with the real policy (all patches, selinux-base-policy's store, the container
/// module) and Keel's local modules and booleans installed. None when skipping.
pub fn policy_root() -> Option<&'static PathBuf> {
    static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
    ROOT.get_or_init(|| {
        if !tools() {
            return None;
        }
        let venv = testutil::portage_venv()?;
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("policy-fixture");
        let dir = base.join(inputs_hash());
        let root = dir.join("root");
        if dir.join("complete").exists() {
            return Some(root);
        }
        let _ = fs::remove_dir_all(&base);
        let t = std::time::Instant::now();
        let em = Emerge::new(&dir.join("portage"), &venv, &project_patches());
        em.run(
            &root,
            &[
                "sec-policy/selinux-base",
                "sec-policy/selinux-base-policy",
                "sec-policy/selinux-container",
            ],
        )
        .unwrap_or_else(|e| panic!("building the policy with emerge failed: {e}"));
        let layers = vec![
            root_dir().join("policy"),
            root_dir().join("variants/selinux/policy"),
        ];
        let installed =
            policy::install_modules(&root, "mcs", &root_dir(), &layers, &dir.join("modules.log"))
                .unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "policy fixture built in {:.1}s: {} local modules, booleans {:?}",
            t.elapsed().as_secs_f64(),
            installed.modules.len(),
            installed.booleans
        );
        fs::write(dir.join("complete"), "").unwrap();
        Some(root)
    })
    .as_ref()
}

/// A generated tree: for every spec of the file_contexts with a literal path prefix, that
/// path (a directory when something goes below it or the spec is for directories, else a
/// file) and a file inside each directory; plus symlinks, a fifo, odd names, merged-/usr links.
pub fn generate_tree(fc: &Path, dest: &Path) -> usize {
    use std::collections::BTreeSet;
    let text = fs::read_to_string(fc).unwrap();
    let mut paths: BTreeSet<String> = BTreeSet::new();
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with('/')) {
        let mut it = line.split_whitespace();
        let re = it.next().unwrap();
        let typ = if line.split_whitespace().count() == 3 {
            it.next().unwrap()
        } else {
            ""
        };
        let lit: String = {
            let mut out = String::new();
            let b: Vec<char> = re.chars().collect();
            let mut i = 0;
            while i < b.len() {
                let c = b[i];
                if c == '\\' && i + 1 < b.len() {
                    out.push(b[i + 1]);
                    i += 2;
                    continue;
                }
                if ".^$?*+|[({".contains(c) {
                    if "?*{".contains(c) {
                        out.pop();
                    }
                    break;
                }
                out.push(c);
                i += 1;
            }
            out
        };
        let lit = lit.trim_end_matches('/').to_owned();
        if lit.len() < 2 || lit.contains("//") || lit.contains("HOME") {
            continue;
        }
        paths.insert(lit.clone());
        if typ == "-d" || re[lit.len()..].starts_with("(/.*)?") || re[lit.len()..].starts_with('/')
        {
            dirs.insert(lit);
        }
    }
    // every proper prefix is a directory
    for p in paths.clone() {
        let mut cur = String::new();
        for c in p.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(c);
            if cur != p {
                dirs.insert(cur.clone());
            }
        }
    }
    let _ = fs::remove_dir_all(dest);
    fs::create_dir_all(dest).unwrap();
    let mut n = 0;
    for d in &dirs {
        fs::create_dir_all(dest.join(&d[1..])).unwrap();
    }
    for p in &paths {
        if !dirs.contains(p) {
            let full = dest.join(&p[1..]);
            if fs::symlink_metadata(&full).is_err() {
                fs::write(full, "x").unwrap();
            }
        }
    }
    for d in &dirs {
        let f = dest.join(&d[1..]).join("keel-probe.conf");
        fs::write(f, "x").unwrap();
    }
    // merged /usr links (the .subs_dist aliases), symlinks, a fifo, odd names
    for (l, t) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        let p = dest.join(l);
        if fs::symlink_metadata(&p).is_err() {
            std::os::unix::fs::symlink(t, &p).unwrap();
        }
    }
    fs::create_dir_all(dest.join("etc")).unwrap();
    let _ = std::os::unix::fs::symlink("/etc/passwd-outside", dest.join("etc/dangling-link"));
    let _ = std::os::unix::fs::symlink("../../../../../../etc", dest.join("etc/escape-link"));
    fs::write(dest.join("etc/a file with spaces"), "x").unwrap();
    let _ = Cmd::new("mkfifo").arg(dest.join("etc/keel-fifo")).run();
    fs::create_dir_all(dest.join("var/log/rspamd/sub")).unwrap();
    fs::write(dest.join("var/log/rspamd/sub/x.log"), "x").unwrap();
    walk_count(dest, &mut n);
    n + 1
}

fn walk_count(d: &Path, n: &mut usize) {
    for e in fs::read_dir(d).unwrap().flatten() {
        *n += 1;
        if e.file_type().unwrap().is_dir() {
            walk_count(&e.path(), n);
        }
    }
}

/// Every path's `security.selinux` (None when unset), read without following symlinks.
pub fn labels(root: &Path) -> std::collections::BTreeMap<String, Option<String>> {
    let mut out = std::collections::BTreeMap::new();
    fn get(p: &Path) -> Option<String> {
        let mut buf = [0u8; 512];
        rustix::fs::lgetxattr(p, "security.selinux", &mut buf)
            .ok()
            .map(|n| {
                String::from_utf8_lossy(&buf[..n])
                    .trim_end_matches('\0')
                    .to_owned()
            })
    }
    out.insert("/".to_owned(), get(root));
    fn rec(root: &Path, d: &Path, out: &mut std::collections::BTreeMap<String, Option<String>>) {
        for e in fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            let rel = format!("/{}", p.strip_prefix(root).unwrap().display());
            out.insert(rel, get(&p));
            if e.file_type().unwrap().is_dir() {
                rec(root, &p, out);
            }
        }
    }
    rec(root, root, &mut out);
    out
}
