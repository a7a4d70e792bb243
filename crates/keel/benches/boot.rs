//! debian-selinux end to end (issue 8): cold and warm build times, image size, boot time
//! under QEMU, and Keel's labelling and image steps side by side with `setfiles` and
//! `mksquashfs` run by hand on the same tree. Run with `cargo xtask bench boot`.
//! Cold: a fresh project copy with no apt cache; warm: the build directory removed but the
//! package cache kept.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const VARIANT: &str = "debian-selinux";

fn keel(root: &Path, args: &[&str]) -> (f64, String) {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("-C")
        .arg(root)
        .args(args)
        .output()
        .expect("keel");
    let secs = t.elapsed().as_secs_f64();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "keel {args:?} failed:\n{out}");
    (secs, out)
}

fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let o = cmd.output().expect("run");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn copy(from: &Path, to: &Path) {
    let ok = Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(from)
        .arg(to)
        .status()
        .expect("cp")
        .success();
    assert!(ok);
}

fn main() {
    let real = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("root")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("p");
    fs::create_dir_all(&root).expect("mkdir");
    for d in ["variants", "portage", "overlay", "tmpfiles.d", "policy"] {
        copy(&real.join(d), &root.join(d));
    }
    println!("== {VARIANT}");
    let (cold, _) = keel(&root, &["build", "--variant", VARIANT]);
    println!("  cold build (no package cache): {cold:.1} s");
    for d in [
        root.join("build/work").join(VARIANT),
        root.join("build").join(VARIANT),
    ] {
        fs::remove_dir_all(&d).expect("rm");
    }
    let (warm, out) = keel(&root, &["build", "--variant", VARIANT]);
    println!("  warm build (package cache kept): {warm:.1} s");
    for l in out.lines().filter(|l| l.contains(": done")) {
        println!("    {l}");
    }
    let image = root
        .join("build")
        .join(VARIANT)
        .join(format!("{VARIANT}.squashfs"));
    let size = fs::metadata(&image).expect("image").len();
    println!("  image size: {:.1} MiB", size as f64 / 1048576.0);

    let (_, out) = keel(&root, &["boot", "--variant", VARIANT, "--check"]);
    for l in out
        .lines()
        .filter(|l| l.contains("QEMU ran") || l.contains("uptime at end of boot"))
    {
        println!("  boot: {}", l.trim());
    }

    // Labelling: Keel's labeller and setfiles, each on its own copy of the finished tree.
    let tree = root.join("build/work").join(VARIANT).join("tree");
    let ptype = "default";
    let a = dir.path().join("label-keel");
    let b = dir.path().join("label-setfiles");
    copy(&tree, &a);
    copy(&tree, &b);
    let t = Instant::now();
    policy::label(&a, ptype, &dir.path().join("label.log")).expect("keel label");
    let keel_label = t.elapsed().as_secs_f64();
    let pol: PathBuf = policy::binary_policy(&b, ptype).expect("policy");
    let fc = b.join(format!("etc/selinux/{ptype}/contexts/files/file_contexts"));
    let setfiles = timed(
        Command::new("setfiles")
            .arg("-F")
            .arg("-r")
            .arg(&b)
            .arg("-c")
            .arg(&pol)
            .arg(&fc)
            .arg(&b),
    );
    println!(
        "  labelling: Keel {keel_label:.2} s, setfiles -F -r -c {setfiles:.2} s, ratio {:.2}",
        keel_label / setfiles
    );

    // The image step: Keel's (mksquashfs through image::make) and mksquashfs by hand.
    let spec = image::make::Spec {
        tree: tree.clone(),
        out: dir.path().join("keel.squashfs"),
        format: image::make::Format::Squashfs,
        epoch: 1700000000,
        pseudo_files: None,
        log: dir.path().join("image.log"),
    };
    let t = Instant::now();
    image::make::make(&spec).expect("image");
    let keel_img = t.elapsed().as_secs_f64();
    let by_hand = timed(
        Command::new("mksquashfs")
            .arg(&tree)
            .arg(dir.path().join("hand.squashfs"))
            .args([
                "-noappend",
                "-no-progress",
                "-quiet",
                "-reproducible",
                "-xattrs",
                "-comp",
                "zstd",
                "-Xcompression-level",
                "3",
                "-mkfs-time",
                "1700000000",
            ])
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    println!(
        "  image: Keel {keel_img:.2} s, mksquashfs by hand {by_hand:.2} s, ratio {:.2}",
        keel_img / by_hand
    );
}
