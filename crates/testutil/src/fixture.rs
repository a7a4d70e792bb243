//! Built variants shared by the tests of one suite run (and by later runs with the same
//! inputs): a test that needs a variant built, and does not need to watch the build itself
//! (a cold build, a kill, a reproducibility check), reads one shared build instead of
//! making its own.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// The project's directories a build reads, and the test fixtures.
const INPUTS: &[&str] = &[
    "variants",
    "portage",
    "overlay",
    "tmpfiles.d",
    "policy",
    "tests/fixtures/gentoo-mini",
    "tests/fixtures/variants",
];

/// The `SOURCE_DATE_EPOCH` of shared builds.
pub const EPOCH: &str = "1700000000";

/// A variant built once per fingerprint of its inputs. Read it; copy what you change.
#[derive(Debug, Clone)]
pub struct Built {
    /// The project copy it was built in (`variants/` holds the fixture variants too).
    pub project: PathBuf,
    /// Its outputs: `<variant>.squashfs`, `manifest.txt`, `build.log`.
    pub output: PathBuf,
    /// Its cache (`binpkgs/<variant>/`, distfiles).
    pub cache: PathBuf,
    /// How long the build took; 0 when it was already there.
    pub secs: f64,
}

/// Hash a tree: every entry's relative path, type, mode, and content or link target,
/// in name order.
fn hash_tree(h: &mut Sha256, root: &Path, rel: &Path) {
    let dir = root.join(rel);
    let Ok(rd) = fs::read_dir(&dir) else {
        h.update(b"\0absent\0");
        return;
    };
    let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let r = rel.join(&n);
        let p = root.join(&r);
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        h.update(r.as_os_str().as_encoded_bytes());
        h.update(
            format!(
                "\0{:o}\0",
                std::os::unix::fs::PermissionsExt::mode(&m.permissions())
            )
            .as_bytes(),
        );
        if m.is_dir() {
            hash_tree(h, root, &r);
        } else if m.file_type().is_symlink() {
            h.update(
                fs::read_link(&p)
                    .unwrap_or_default()
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else {
            hash_file(h, &p);
        }
    }
}

fn hash_file(h: &mut Sha256, path: &Path) {
    if let Ok(mut f) = fs::File::open(path) {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
}

/// The key of a shared build: Keel's binary, the inputs, the variant, the environment.
fn key(real: &Path, keel: &Path, venv: &Path, variant: &str) -> String {
    let mut h = Sha256::new();
    hash_file(&mut h, keel);
    for i in INPUTS {
        h.update(i.as_bytes());
        hash_tree(&mut h, real, Path::new(i));
    }
    h.update(venv.as_os_str().as_encoded_bytes());
    h.update(variant.as_bytes());
    h.update(EPOCH.as_bytes());
    let d = h.finalize();
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// `variant` built from `tests/fixtures/gentoo-mini` by `keel` (the test's
/// `CARGO_BIN_EXE_keel`), kept under `base` (the test's `CARGO_TARGET_TMPDIR`) in
/// `keel-fixtures/<variant>-<key>/`. The first caller builds it; concurrent callers (other
/// test binaries of the suite) wait on a lock. None (skip) locally when the Portage venv
/// is missing; panics with the build's log when the build fails.
pub fn shared_build(base: &Path, keel: &Path, variant: &str) -> Option<Built> {
    let real = crate::project_root();
    let venv = crate::portage_venv()?;
    let parent = base.join("keel-fixtures");
    fs::create_dir_all(&parent).expect("keel-fixtures");
    let lock_path = parent.join(format!("{variant}.lock"));
    let _lock = rootdir::lock(&lock_path, || {
        eprintln!("shared build of {variant}: waiting for another test building it")
    })
    .expect("lock file");
    let k = key(&real, keel, &venv, variant);
    let dir = parent.join(format!("{variant}-{k}"));
    let project = dir.join("p");
    let built = Built {
        output: project.join("build").join(variant),
        cache: project.join("build/cache"),
        project: project.clone(),
        secs: 0.0,
    };
    if dir.join("complete").exists() {
        eprintln!(
            "shared build of {variant}: {} (already built)",
            dir.display()
        );
        return Some(built);
    }
    // Builds of other inputs, and a half-made one of these, go.
    for e in fs::read_dir(&parent).expect("keel-fixtures").flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let old_key = n
            .strip_prefix(&format!("{variant}-"))
            .is_some_and(|k| k.len() == 16 && k.bytes().all(|b| b.is_ascii_hexdigit()));
        if old_key && e.path().is_dir() {
            fs::remove_dir_all(e.path()).expect("remove an old shared build");
        }
    }
    fs::create_dir_all(project.join("build/tools")).expect("mkdir");
    copy_project(&real, &project);
    std::os::unix::fs::symlink(
        &venv,
        project
            .join("build/tools")
            .join(venv.file_name().expect("venv name")),
    )
    .expect("symlink the venv");
    let log = dir.join("build.log");
    let t = std::time::Instant::now();
    let st = Command::new(keel)
        .arg("-C")
        .arg(&project)
        .args(["build", "--variant", variant, "--gentoo-repo"])
        .arg(real.join("tests/fixtures/gentoo-mini"))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env_remove("KEEL_CACHE_DIR")
        .env_remove("KEEL_BUILD_DIR")
        .env_remove("KEEL_OUTPUT_DIR")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).expect("build.log"))
        .stderr(fs::File::create(dir.join("build.stderr")).expect("build.stderr"))
        .status()
        .expect("run keel");
    let err = fs::read_to_string(dir.join("build.stderr")).unwrap_or_default();
    assert!(
        st.success(),
        "the shared build of {variant} failed ({st}):\n{err}"
    );
    fs::write(dir.join("complete"), "").expect("complete");
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "shared build of {variant}: built in {secs:.0} s ({})",
        dir.display()
    );
    Some(Built { secs, ..built })
}

/// Copy the project `real`'s variants and layers to `to` (a new project directory), with
/// the fixture variants of `tests/fixtures/variants` beside the shipped ones.
pub fn copy_project(real: &Path, to: &Path) {
    for d in ["variants", "portage", "overlay", "tmpfiles.d", "policy"] {
        if real.join(d).exists() {
            copy(&real.join(d), &to.join(d));
        }
    }
    for e in fs::read_dir(real.join("tests/fixtures/variants"))
        .expect("tests/fixtures/variants")
        .flatten()
    {
        copy(&e.path(), &to.join("variants").join(e.file_name()));
    }
}

/// `cp -a from to`.
pub fn copy(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .stdin(Stdio::null())
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_follows_every_input() {
        let dir = std::env::temp_dir().join(format!("testutil-key-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let real = dir.join("p");
        fs::create_dir_all(real.join("variants/v")).unwrap();
        fs::create_dir_all(real.join("tests/fixtures/gentoo-mini")).unwrap();
        fs::write(
            real.join("variants/v/variant.toml"),
            "inherits = \"base\"\n",
        )
        .unwrap();
        fs::write(real.join("tests/fixtures/gentoo-mini/x.ebuild"), "EAPI=8\n").unwrap();
        let keel = dir.join("keel");
        fs::write(&keel, "binary 1").unwrap();
        let venv = Path::new("/venv");
        let k0 = key(&real, &keel, venv, "v");
        assert_eq!(k0.len(), 16);
        assert_eq!(key(&real, &keel, venv, "v"), k0, "stable");
        assert_ne!(key(&real, &keel, venv, "w"), k0, "the variant");
        fs::write(&keel, "binary 2").unwrap();
        let k1 = key(&real, &keel, venv, "v");
        assert_ne!(k1, k0, "Keel's binary");
        fs::write(real.join("tests/fixtures/gentoo-mini/x.ebuild"), "EAPI=7\n").unwrap();
        let k2 = key(&real, &keel, venv, "v");
        assert_ne!(k2, k1, "a file's content");
        fs::rename(
            real.join("variants/v/variant.toml"),
            real.join("variants/v/other.toml"),
        )
        .unwrap();
        let k3 = key(&real, &keel, venv, "v");
        assert_ne!(k3, k2, "a file's name");
        std::os::unix::fs::symlink("a", real.join("variants/v/link")).unwrap();
        assert_ne!(key(&real, &keel, venv, "v"), k3, "a new link");
        fs::remove_dir_all(&dir).unwrap();
    }
}
