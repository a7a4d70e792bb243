//! From root tree to image (issue 6), with real emerge, mksquashfs and unsquashfs against
//! tests/fixtures/gentoo-mini. The image is read back with unsquashfs, not Keel's reader.
//! The variant is `base-quick` (tests/fixtures/variants): the shipped `base` with
//! gentoo-mini's source-built core and no kernel.
//!
//! One test walks the contract in order on one project copy (a clean build costs about a
//! minute here): contents of the image; manifest of the tree == manifest of the image;
//! no-op rebuild; overlay-only and tmpfiles-only rebuilds; a kill at each stage followed by
//! a rebuild gives the clean build's image, also a kill while Portage merges into the
//! sysroot; a second clean build gives the same bytes.
//!
//! Cold on purpose, not a shared build (`testutil::shared_build`): it kills builds, edits
//! the project, and checks that two clean builds give the same bytes.

mod common;

use common::{build_env, from, keel, keel_cmd, project, sha256, text, Project};
use pipeline::StageId;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SDE: &str = "1700000000";
/// An overlay file's mtime in the source: older than SOURCE_DATE_EPOCH, so it is kept.
const OVERLAY_MTIME: i64 = 1600000000;

/// `unsquashfs -lln` of the image: path -> (mode string, uid/gid, mtime, link target).
fn listing(image: &Path) -> Vec<(String, String, String, String)> {
    let o = Command::new("unsquashfs")
        .args(["-lln", "-UTC", "-d", ""])
        .arg(image)
        .output()
        .unwrap();
    assert!(o.status.success());
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        // drwxr-xr-x 0/0 247 2023-11-14 22:13 /path [-> target]
        let f: Vec<&str> = line.splitn(6, ' ').filter(|s| !s.is_empty()).collect();
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 || f.is_empty() {
            continue;
        }
        let rest = cols[5..].join(" ");
        let (path, target) = match rest.split_once(" -> ") {
            Some((p, t)) => (p.to_owned(), t.to_owned()),
            None => (rest.clone(), String::new()),
        };
        v.push((
            path,
            format!("{} {}", cols[0], cols[1]),
            format!("{} {}", cols[3], cols[4]),
            target,
        ));
    }
    v
}

fn entry<'a>(
    l: &'a [(String, String, String, String)],
    path: &str,
) -> Option<&'a (String, String, String, String)> {
    l.iter().find(|e| e.0 == path)
}

/// Extract one file of the image with unsquashfs.
fn extract(image: &Path, path: &str) -> Vec<u8> {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("x");
    let o = Command::new("unsquashfs")
        .args(["-no-progress", "-quiet", "-d"])
        .arg(&out)
        .arg(image)
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::read(out.join(path.trim_start_matches('/'))).unwrap()
}

fn build(p: &Project) -> (Vec<String>, PathBuf) {
    build_env(p, "base-quick", &[("SOURCE_DATE_EPOCH", SDE)])
}

fn set_mtime(path: &Path, secs: i64) {
    let st = Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{secs}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A build of `base-quick` in its own process group, its stderr to `stderr`.
fn spawn_build(p: &Project, stderr: Stdio) -> Child {
    keel_cmd(p, &["build", "--variant", "base-quick"])
        .env("SOURCE_DATE_EPOCH", SDE)
        .stdout(Stdio::null())
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .unwrap()
}

/// SIGKILL to a [`spawn_build`]'s whole process group, then wait for it.
fn kill_build(mut child: Child) {
    let st = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    assert!(st.success());
    let _ = child.wait();
}

/// Start a build in its own process group, kill the group (SIGKILL) as soon as `stage`
/// reports running, and wait for it.
fn build_killed_at(p: &Project, stage: &str) {
    let mut child = spawn_build(p, Stdio::piped());
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with(&format!("[      running] {stage}:")) {
            kill_build(child);
            return;
        }
    }
    let _ = child.wait();
    panic!("stage {stage} never ran: {seen:#?}");
}

/// Remake the sysroot from the binary packages and kill the build (SIGKILL of its process
/// group) while Portage merges a package after the first one it finished. Returns the
/// packages the sysroot's database then lists (`cat/pf`).
fn build_killed_merging(p: &Project) -> Vec<String> {
    let work = p.root.join("build/work/base-quick");
    fs::remove_dir_all(work.join("sysroot")).unwrap();
    fs::remove_file(work.join("stamps/sysroot")).unwrap();
    let log = work.join("logs/sysroot.log");
    fs::remove_file(&log).unwrap();
    let mut child = spawn_build(p, Stdio::null());
    // `>>> Completed (k of n)`, then a later `>>> Installing (j of n)`.
    let merging = |text: &str| {
        text.find(">>> Completed (")
            .is_some_and(|at| text[at..].contains(">>> Installing ("))
    };
    let t = std::time::Instant::now();
    while !fs::read_to_string(&log).is_ok_and(|l| merging(&l)) {
        assert!(child.try_wait().unwrap().is_none(), "the build ended first");
        assert!(
            t.elapsed().as_secs() < 600,
            "no second merge in {}",
            log.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill_build(child);
    let vdb = work.join("sysroot/var/db/pkg");
    let mut merged = Vec::new();
    for cat in fs::read_dir(&vdb).unwrap().flatten() {
        for pkg in fs::read_dir(cat.path()).unwrap().flatten() {
            let name = pkg.file_name().to_string_lossy().into_owned();
            if !name.starts_with('-') {
                merged.push(format!("{}/{name}", cat.file_name().to_string_lossy()));
            }
        }
    }
    merged.sort();
    merged
}

#[test]
fn image_end_to_end() {
    let Some(p) = project() else { return };
    let overlay_file = p.root.join(
        "overlay/usr/lib/systemd/system/systemd-tmpfiles-setup.service.d/keel-subvolumes.conf",
    );
    set_mtime(&overlay_file, OVERLAY_MTIME);

    // A clean build.
    let (ran, image) = build(&p);
    assert_eq!(ran, from(&p, StageId::HostTools, "base-quick"));
    let clean = sha256(&image);
    let l = listing(&image);

    // Overlay files are 0:0 with their source mtimes; /usr's mtime is the build time.
    let e = entry(
        &l,
        "/usr/lib/systemd/system/systemd-tmpfiles-setup.service.d/keel-subvolumes.conf",
    )
    .expect("overlay file");
    assert_eq!(e.1, "-rw-r--r-- 0/0", "{e:?}");
    assert_eq!(e.2, "2020-09-13 12:26", "{e:?}");
    assert_eq!(
        entry(&l, "/usr").unwrap().2,
        "2023-11-14 22:13",
        "/usr mtime must be SOURCE_DATE_EPOCH"
    );
    // The var.conf edit, and provision.conf dropped (masked).
    let var = String::from_utf8(extract(&image, "/etc/tmpfiles.d/var.conf")).unwrap();
    assert!(
        var.lines()
            .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["v", "/var/log"]),
        "{var}"
    );
    assert!(
        !var.lines()
            .any(|l| l.split_whitespace().take(2).collect::<Vec<_>>() == ["d", "/var/log"]),
        "{var}"
    );
    assert_eq!(
        entry(&l, "/etc/tmpfiles.d/provision.conf").unwrap().3,
        "/dev/null"
    );
    // An entry in the immutable root was created at build time (etc.conf's L+ /etc/mtab).
    assert_eq!(
        entry(&l, "/etc/mtab").map(|e| e.3.as_str()),
        Some("../proc/self/mounts")
    );
    // ld.so.cache lists the stand-in library; ldconfig.service cannot start (masked).
    let cache = extract(&image, "/etc/ld.so.cache");
    assert!(
        cache.windows(17).any(|w| w == b"libkeelmini.so.1\0"),
        "ld.so.cache lacks libkeelmini.so.1"
    );
    assert_eq!(
        entry(&l, "/etc/systemd/system/ldconfig.service").unwrap().3,
        "/dev/null"
    );
    // /var/log is not shipped: the `v` entry makes it at boot; no .updated stamps.
    assert!(entry(&l, "/var/log").is_none());
    assert!(entry(&l, "/etc/.updated").is_none() && entry(&l, "/var/.updated").is_none());
    // The drop-in that makes tmpfiles create real subvolumes.
    let dropin = String::from_utf8(extract(
        &image,
        "/usr/lib/systemd/system/systemd-tmpfiles-setup.service.d/keel-subvolumes.conf",
    ))
    .unwrap();
    assert!(dropin.contains("Environment=SYSTEMD_TMPFILES_FORCE_SUBVOL=1"));
    // No mtime later than SOURCE_DATE_EPOCH.
    assert!(
        l.iter().all(|e| e.2.as_str() <= "2023-11-14 22:13"),
        "unclamped mtimes"
    );

    // The manifest of the built tree and of the image read back are identical.
    let manifest = fs::read_to_string(p.root.join("build/base-quick/manifest.txt")).unwrap();
    let (ok, from_image, err) = keel(&p, &["manifest", image.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(manifest, from_image);
    assert!(
        manifest
            .lines()
            .any(|l| l.starts_with("/etc/mtab\tl\t0777\t0:0\t-> ../proc/self/mounts\t")),
        "{manifest}"
    );
    assert!(p.root.join("build/base-quick/build.log").is_file());

    // Snapshots: the manifest and the generated configuration. A change to the variant
    // shows up as a reviewable snapshot diff.
    insta::assert_snapshot!("base-manifest", common::manifest_for_snapshot(&manifest));
    let work = p.root.join("build/work/base-quick");
    insta::assert_snapshot!(
        "base-config-sysroot",
        common::render_dir(&p, &work.join("config/sysroot/etc/portage"))
    );
    insta::assert_snapshot!(
        "base-config-destroot",
        common::render_dir(&p, &work.join("config/destroot/etc/portage"))
    );
    insta::assert_snapshot!(
        "base-config-host",
        common::render_dir(&p, &work.join("host/etc/portage"))
    );
    insta::assert_snapshot!(
        "base-tmpfiles-edits",
        common::render_dir(&p, &work.join("tree/etc/tmpfiles.d"))
    );

    // No-op rebuild: no stage runs; same image.
    let (ran, _) = build(&p);
    assert_eq!(ran, Vec::<String>::new());
    assert_eq!(sha256(&image), clean);

    // A missing output is made again, as make would (issue 15): the image moved away
    // reruns the image stage only, and gives the same bytes.
    let moved = image.with_extension("moved");
    fs::rename(&image, &moved).unwrap();
    let (ran, _) = build(&p);
    assert_eq!(ran, from(&p, StageId::Image, "base-quick"));
    assert_eq!(sha256(&image), clean);
    fs::remove_file(&moved).unwrap();
    // The destination root deleted and an overlay file touched: the build reruns from
    // the destroot stage and finishes (it failed in the overlay stage on `cp` before).
    fs::remove_dir_all(p.root.join("build/work/base-quick/destroot")).unwrap();
    set_mtime(&overlay_file, OVERLAY_MTIME + 60);
    let (ran, _) = build(&p);
    assert_eq!(ran, from(&p, StageId::Destroot, "base-quick"));
    set_mtime(&overlay_file, OVERLAY_MTIME);
    let (ran, _) = build(&p);
    assert_eq!(ran, from(&p, StageId::Overlay, "base-quick"));
    assert_eq!(sha256(&image), clean);
    // The tree deleted: the stage that makes it and the later ones.
    fs::remove_dir_all(p.root.join("build/work/base-quick/tree")).unwrap();
    let (ran, _) = build(&p);
    assert_eq!(ran, from(&p, StageId::Overlay, "base-quick"));
    assert_eq!(sha256(&image), clean);

    // Touching only an overlay file reruns overlay and later stages only.
    set_mtime(&overlay_file, OVERLAY_MTIME + 60);
    let (ran, _) = build(&p);
    assert_eq!(ran, from(&p, StageId::Overlay, "base-quick"));
    assert_ne!(sha256(&image), clean, "the new mtime must reach the image");
    set_mtime(&overlay_file, OVERLAY_MTIME);
    let (ran, _) = build(&p);
    assert_eq!(ran, from(&p, StageId::Overlay, "base-quick"));
    assert_eq!(sha256(&image), clean);

    // Editing a tmpfiles edit reruns tmpfiles and later stages; tmpfiles works in place on
    // the tree overlay made, so the tree is made again from overlay (the destination root
    // is not).
    let edit = p.root.join("tmpfiles.d/var.conf.edit");
    let orig = fs::read_to_string(&edit).unwrap();
    fs::write(&edit, format!("{orig}set /var/cache mode=0750\n")).unwrap();
    let (ran, _) = build(&p);
    assert_eq!(ran, from(&p, StageId::Overlay, "base-quick"));
    let var = String::from_utf8(extract(&image, "/etc/tmpfiles.d/var.conf")).unwrap();
    assert!(
        var.lines().any(
            |l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["d", "/var/cache", "0750"]
        ),
        "{var}"
    );
    // An edit that matches nothing fails naming the edit's file and line.
    fs::write(&edit, format!("{orig}set /var/nonexistent mode=0750\n")).unwrap();
    let o = keel_cmd(&p, &["build", "--variant", "base-quick"])
        .env("SOURCE_DATE_EPOCH", SDE)
        .output()
        .unwrap();
    let (ok, _, err) = text(&o);
    assert!(!ok);
    assert!(err.contains("var.conf.edit:5"), "{err}");
    // A failed in-place stage leaves no stage that says the tree is its output.
    for stage in ["overlay", "tmpfiles"] {
        assert!(
            !p.root
                .join("build/work/base-quick/stamps")
                .join(stage)
                .exists(),
            "a failed stage leaves no finished-looking tree ({stage})"
        );
    }
    fs::write(&edit, &orig).unwrap();
    let (ran, _) = build(&p);
    assert_eq!(ran, from(&p, StageId::Overlay, "base-quick"));
    assert_eq!(sha256(&image), clean);

    // A kill (SIGKILL of the whole process group) at each stage, then a rebuild: the
    // clean build's image. The stage's stamp is removed first so that it runs. A stage
    // that works in place on the tree reruns from overlay, which made it.
    for (stage, reruns_from) in [
        (StageId::Destroot, StageId::Destroot),
        (StageId::Overlay, StageId::Overlay),
        (StageId::Tmpfiles, StageId::Overlay),
        (StageId::Fixups, StageId::Overlay),
        (StageId::Image, StageId::Image),
    ] {
        let stage = stage.name();
        fs::remove_file(p.root.join("build/work/base-quick/stamps").join(stage)).unwrap();
        build_killed_at(&p, stage);
        let (ran, img) = build(&p);
        assert_eq!(
            ran,
            from(&p, reruns_from, "base-quick"),
            "after a kill at {stage}"
        );
        assert_eq!(sha256(&img), clean, "after a kill at {stage}");
    }

    // A kill while Portage merges into the sysroot can cut a package's pkg_postinst short
    // after Portage recorded it as installed. The next build installs again what the
    // killed run merged (here the first packages, from their binary packages), and gives
    // the clean build's image.
    let merged = build_killed_merging(&p);
    assert!(!merged.is_empty(), "nothing was merged before the kill");
    let (ran, img) = build(&p);
    assert_eq!(
        ran,
        from(&p, StageId::Sysroot, "base-quick"),
        "after a kill in the sysroot"
    );
    assert_eq!(sha256(&img), clean, "after a kill in the sysroot");
    let log = fs::read_to_string(p.root.join("build/work/base-quick/logs/sysroot.log")).unwrap();
    for pf in &merged {
        assert!(
            log.contains(&format!(") {pf}::")),
            "{pf} was merged by the killed run but not installed again:\n{log}"
        );
    }
    assert!(
        !p.root
            .join("build/work/base-quick/stamps/sysroot.running")
            .exists(),
        "the mark of an unfinished sysroot run outlives a finished one"
    );

    // A second clean build gives the same bytes.
    fs::remove_dir_all(p.root.join("build/work/base-quick")).unwrap();
    fs::remove_dir_all(p.root.join("build/base-quick")).unwrap();
    let (ran, image2) = build(&p);
    assert_eq!(ran, from(&p, StageId::HostTools, "base-quick"));
    assert_eq!(sha256(&image2), clean, "two clean builds differ");
}

#[test]
fn bad_source_date_epoch_is_a_clear_error() {
    let Some(p) = project() else { return };
    let o = keel_cmd(&p, &["build", "--variant", "base-quick"])
        .env("SOURCE_DATE_EPOCH", "yesterday")
        .output()
        .unwrap();
    let (ok, _, err) = text(&o);
    assert!(!ok);
    assert!(err.contains("SOURCE_DATE_EPOCH=`yesterday`"), "{err}");
}
