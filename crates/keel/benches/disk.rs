//! The disk image (issue 19, docs/disk.md): how long the disk stage takes beside the image
//! stage it follows, on debian-selinux's real tree, and what the disk costs in bytes over
//! the root image. Both steps are run here side by side, as the pipeline runs them
//! (`image::make::make` on the finished tree, `disk::make` on the image), three times each;
//! then the disk is made twice more with one `SOURCE_DATE_EPOCH` and compared byte for
//! byte. Run with `cargo bench -p keel --bench disk` (it builds debian-selinux first).

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const VARIANT: &str = "debian-selinux";
const RUNS: usize = 3;

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("root")
        .to_owned();
    let o = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("-C")
        .arg(&root)
        .args(["build", "--quiet", "--variant", VARIANT])
        .output()
        .expect("keel");
    assert!(
        o.status.success(),
        "keel build failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let project = variant::Project::load(&root).expect("project");
    let settings = project.resolve(VARIANT).expect("variant").settings;
    let layout = pipeline::Layout::new(&root, VARIANT, None);
    let tree = layout.tree();
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join(format!("{VARIANT}.squashfs"));
    let epoch = 1_700_000_000;
    let (mut image_secs, mut disk_secs) = (Vec::new(), Vec::new());
    let mut made = None;
    for i in 0..RUNS {
        let _ = fs::remove_file(&image);
        let t = Instant::now();
        image::make::make(&image::make::Spec {
            tree: tree.clone(),
            out: image.clone(),
            format: image::make::Format::Squashfs,
            epoch,
            pseudo_files: None,
            log: dir.path().join("image.log"),
        })
        .expect("image");
        image_secs.push(t.elapsed().as_secs_f64());
        let spec = disk::Spec {
            name: VARIANT.into(),
            image: image.clone(),
            disk: settings.disk.clone().expect("[disk]"),
            out: dir.path().join(format!("out{i}")),
            work: dir.path().join("work"),
            epoch: epoch as u64,
            cmdline: boot::image_cmdline(Some(true)),
            log: dir.path().join("disk.log"),
        };
        let t = Instant::now();
        made = Some(disk::make(&spec).expect("disk"));
        disk_secs.push(t.elapsed().as_secs_f64());
    }
    let made = made.expect("a disk");
    let (img, raw) = (
        fs::metadata(&image).expect("image"),
        fs::metadata(&made.raw).expect("disk"),
    );
    let allocated = raw.blocks() * 512;
    let same = (1..RUNS).all(|i| {
        fs::read(dir.path().join(format!("out{i}/{VARIANT}.raw"))).expect("disk")
            == fs::read(dir.path().join(format!("out0/{VARIANT}.raw"))).expect("disk")
    });
    let (i, d) = (median(image_secs.clone()), median(disk_secs.clone()));
    println!("{VARIANT}: image stage (mksquashfs of the tree) vs disk stage (verity, unified kernel image, ESP, partitions), {RUNS} runs each");
    println!("image: {image_secs:.2?} s, median {i:.2} s");
    println!("disk:  {disk_secs:.2?} s, median {d:.2} s");
    println!("disk / image time: {:.2}x", d / i);
    println!(
        "image {:.1} MiB; disk {:.1} MiB apparent, {:.1} MiB allocated (slot B and the /var space are holes)",
        mib(img.len()),
        mib(raw.len()),
        mib(allocated)
    );
    println!(
        "disk overhead over the image: {:.1} MiB allocated ({:.1}%): ESP with the unified kernel image, verity hash tree, GPT",
        mib(allocated.saturating_sub(img.len())),
        100.0 * (allocated as f64 - img.len() as f64) / img.len() as f64
    );
    println!(
        "{RUNS} disks of one image with SOURCE_DATE_EPOCH={epoch}: {}",
        if same { "byte-identical" } else { "DIFFERENT" }
    );
    assert!(same, "the disks differ");
}
