//! Issue 17: `keel vm` on images someone else wrote. Every link trick that once made it
//! write or read outside the unpacked tree; each must leave the host unchanged (a
//! sentinel tree, compared inode by inode), say what it refused, and leave no temporary
//! tree behind. All of it fails before QEMU starts, so these runs are quick.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testutil::oci::{layer, write_layout, E};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// What identifies an entry: (inode, mode, uid, gid, size, mtime, ctime).
type Stat = (u64, u32, u32, u32, u64, i64, i64);

/// Every entry below `dir`.
fn sentinel(dir: &Path) -> BTreeMap<PathBuf, Stat> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let m = fs::symlink_metadata(&d).unwrap();
        out.insert(
            d.clone(),
            (
                m.ino(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime(),
                m.ctime(),
            ),
        );
        if m.is_dir() {
            for e in fs::read_dir(&d).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out
}

struct Scene {
    _t: tempfile::TempDir,
    top: PathBuf,
    project: PathBuf,
    victim: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().to_owned();
        let project = top.join("p");
        fs::create_dir_all(project.join("variants")).unwrap();
        let victim = top.join("VICTIM");
        fs::create_dir_all(victim.join("sub")).unwrap();
        fs::write(victim.join("secret"), "host secret\n").unwrap();
        fs::write(victim.join("sub/file"), "x").unwrap();
        // A kernel, initramfs and modules given on the command line (never booted: every
        // run here stops before QEMU).
        fs::write(top.join("vmlinuz"), "kernel").unwrap();
        fs::write(top.join("initrd.img"), "initramfs").unwrap();
        fs::create_dir_all(top.join("mods/6.6.6-x/kernel")).unwrap();
        fs::write(top.join("mods/6.6.6-x/kernel/x.ko"), "module").unwrap();
        Scene {
            _t: t,
            top,
            project,
            victim,
        }
    }

    /// `../` enough times to leave any tree, then the victim's absolute path.
    fn up(&self) -> String {
        let abs = self.victim.display().to_string();
        format!("{}{}", "../".repeat(12), abs.trim_start_matches('/'))
    }

    /// Run `keel vm` on an image of `layers`, with a time limit; (exit code, stderr).
    fn vm(&self, name: &str, layers: &[Vec<u8>], kernel: &[&str]) -> (Option<i32>, String) {
        let img = self.top.join(format!("img-{name}"));
        write_layout(&img, layers, TAR);
        let mut c = Command::new(env!("CARGO_BIN_EXE_keel"));
        c.arg("-C")
            .arg(&self.project)
            .args(["vm", "--name", name, "--image"])
            .arg(format!("{}:t", img.display()))
            .args(kernel)
            .args(["--", "true"])
            .stdin(std::process::Stdio::null());
        let o = testutil::output_within(
            c,
            Duration::from_secs(120),
            &format!("keel vm on image `{name}`"),
        );
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn files_kernel(&self) -> Vec<String> {
        vec![
            "--kernel".into(),
            self.top.join("vmlinuz").display().to_string(),
            "--initrd".into(),
            self.top.join("initrd.img").display().to_string(),
            "--modules".into(),
            self.top.join("mods/6.6.6-x").display().to_string(),
        ]
    }

    /// Nothing of a failed run is left in build/vm/images, and no file there holds the
    /// victim's secret.
    fn no_leftovers(&self, what: &str) {
        let images = self.project.join("build/vm/images");
        let Ok(entries) = fs::read_dir(&images) else {
            return;
        };
        let left: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
        assert!(
            left.is_empty(),
            "{what}: left in {}: {left:?}",
            images.display()
        );
    }
}

fn refused(code: Option<i32>, err: &str, what: &str, link: &str) {
    assert_eq!(code, Some(1), "{what}: {err}");
    assert!(
        err.contains(&format!("{link} is a symlink to")) && err.contains("leads out of the tree"),
        "{what}: the refusal names the link:\n{err}"
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
}

/// Item 1: `lib/modules` leading out (absolute, `../` repeated, or through `lib -> usr/lib`
/// and `usr/lib -> out`): the modules copy must not land in the victim.
#[test]
fn modules_are_not_copied_through_a_link_out_of_the_image() {
    let s = Scene::new();
    let before = sentinel(&s.victim);
    let abs = s.victim.display().to_string();
    let up = s.up();
    let kernel = s.files_kernel();
    let kernel: Vec<&str> = kernel.iter().map(String::as_str).collect();
    let cases: Vec<(&str, Vec<E<'_>>, &str)> = vec![
        (
            "abs",
            vec![E::Dir("lib"), E::Symlink("lib/modules", &abs)],
            "/lib/modules",
        ),
        (
            "up",
            vec![E::Dir("lib"), E::Symlink("lib/modules", &up)],
            "/lib/modules",
        ),
        (
            "usrlib",
            vec![
                E::Dir("usr"),
                E::Symlink("usr/lib", &abs),
                E::Symlink("lib", "usr/lib"),
            ],
            "/usr/lib",
        ),
    ];
    for (name, entries, link) in cases {
        let (code, err) = s.vm(name, &[layer(&entries)], &kernel);
        refused(code, &err, name, link);
        assert_eq!(sentinel(&s.victim), before, "{name}: the host tree changed");
        assert!(!s.victim.join("6.6.6-x").exists(), "{name}");
        s.no_leftovers(name);
    }
}

/// Item 2: the image's `boot/initrd.img-9.9` linked to a host file (absolute, or `../`
/// repeated): the host file must not be copied out and handed to the VM.
#[test]
fn the_images_kernel_files_are_not_read_through_a_link_out() {
    let s = Scene::new();
    let secret = s.victim.join("secret").display().to_string();
    let up = format!("{}/secret", s.up());
    for (name, target) in [("abs", secret.as_str()), ("up", up.as_str())] {
        let l = layer(&[
            E::Dir("boot"),
            E::File("boot/vmlinuz-9.9", b"kernel"),
            E::Symlink("boot/initrd.img-9.9", target),
        ]);
        let (code, err) = s.vm(name, &[l], &["--kernel", "image"]);
        refused(code, &err, name, "/boot/initrd.img-9.9");
        assert!(!err.contains("host secret"), "{err}");
        s.no_leftovers(name);
    }
}

/// Item 6: a run that fails after the unpack (an image with its own `/keel`) removes its
/// temporary tree.
#[test]
fn a_failed_root_disk_leaves_no_tree_behind() {
    let s = Scene::new();
    let kernel = s.files_kernel();
    let kernel: Vec<&str> = kernel.iter().map(String::as_str).collect();
    let l = layer(&[E::Dir("keel"), E::Dir("bin"), E::File("bin/sh", b"#!")]);
    let (code, err) = s.vm("ownkeel", &[l], &kernel);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("has a /keel of its own"), "{err}");
    s.no_leftovers("ownkeel");
    // A layer that fails mid-unpack (an entry below a symlink) leaves nothing either.
    let l = layer(&[E::Symlink("a", "/"), E::File("a/etc/x", b"x")]);
    let (code, err) = s.vm("midway", &[l], &kernel);
    assert_eq!(code, Some(1), "{err}");
    s.no_leftovers("midway");
}
