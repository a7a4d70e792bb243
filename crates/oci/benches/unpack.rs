//! Unpack time of a large gzip image: `oci::unpack` against `umoci unpack`, side by side.
//!
//! The image is made once with umoci from host directories (default `/usr/bin`,
//! `/usr/lib/python3`, `/usr/include`: about 1 GB, a ~400 MB gzip layer; override with
//! `KEEL_OCI_BENCH_SRC=/a:/b`) and kept in `$CARGO_TARGET_DIR/oci-bench`. Each tool unpacks
//! it three times, interleaved; the median is reported, with GNU tar extracting the same
//! layer for scale (no whiteouts, no verification: what the disk allows). Note that `umoci unpack` also walks
//! the result to write an mtree manifest (sha256 of every file), which `oci::unpack` does not.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn run(program: &str, args: &[&dyn AsRef<std::ffi::OsStr>]) {
    let mut c = exec::Cmd::new(program);
    for a in args {
        c = c.arg(a);
    }
    if let Err(e) = c.output() {
        panic!("{e}");
    }
}

fn work_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| testutil::project_root().join("target"))
        .join("oci-bench")
}

fn build(root: &Path, srcs: &str) -> PathBuf {
    let layout = root.join("L");
    let stamp = root.join("complete");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(srcs) {
        return layout;
    }
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).unwrap();
    let t = Instant::now();
    let image = format!("{}:bench", layout.display());
    let bundle = root.join("B");
    run("umoci", &[&"init", &"--layout", &layout]);
    run("umoci", &[&"new", &"--image", &image]);
    run("umoci", &[&"unpack", &"--image", &image, &bundle]);
    for s in srcs.split(':') {
        let dst = bundle.join("rootfs").join(s.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        run("cp", &[&"-a", &s, &dst]);
    }
    run("umoci", &[&"repack", &"--image", &image, &bundle]);
    run("rm", &[&"-rf", &bundle]);
    std::fs::write(&stamp, srcs).unwrap();
    eprintln!("built the bench image from {srcs} in {:.1?}", t.elapsed());
    layout
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !testutil::require("umoci") {
        return;
    }
    let srcs = std::env::var("KEEL_OCI_BENCH_SRC")
        .unwrap_or_else(|_| "/usr/bin:/usr/lib/python3:/usr/include".to_owned());
    let root = work_dir();
    let layout = build(&root, &srcs);
    let image = format!("{}:bench", layout.display());
    let img = oci::resolve(&oci::ImageRef::parse(&image)).unwrap();
    let blob: u64 = img.layers().iter().map(|l| l.size).sum();
    let (ours_dir, umoci_dir, tar_dir) = (root.join("ours"), root.join("umoci"), root.join("tar"));
    let (mut ours, mut theirs, mut gnutar) = (Vec::new(), Vec::new(), Vec::new());
    // GNU tar extracting the single gzip layer: what the disk and kernel allow, for scale.
    let layer = (img.layers().len() == 1).then(|| {
        layout
            .join("blobs/sha256")
            .join(&img.layers()[0].digest[7..])
    });
    let mut stats = None;
    for _ in 0..3 {
        let t = Instant::now();
        let (_, s) = oci::unpack_ref(&image, &ours_dir).unwrap();
        ours.push(t.elapsed());
        stats = Some(s);
        run("rm", &[&"-rf", &ours_dir]);
        let t = Instant::now();
        run("umoci", &[&"unpack", &"--image", &image, &umoci_dir]);
        theirs.push(t.elapsed());
        run("rm", &[&"-rf", &umoci_dir]);
        if let Some(layer) = &layer {
            std::fs::create_dir(&tar_dir).unwrap();
            let t = Instant::now();
            run(
                "tar",
                &[
                    &"-xzf",
                    layer,
                    &"-C",
                    &tar_dir,
                    &"--numeric-owner",
                    &"--xattrs",
                    &"--xattrs-include=*",
                ],
            );
            gnutar.push(t.elapsed());
            run("rm", &[&"-rf", &tar_dir]);
        }
    }
    let s = stats.unwrap();
    let (o, u) = (median(ours.clone()), median(theirs.clone()));
    println!(
        "oci unpack bench: {} layer(s), {:.0} MB gzip, {:.0} MB of content in {} files, {} dirs, {} symlinks",
        s.layers,
        blob as f64 / 1e6,
        s.bytes as f64 / 1e6,
        s.files,
        s.dirs,
        s.symlinks
    );
    println!("{:<14} {:>10} {:>10}  runs", "", "median", "MB/s");
    let mut rows = vec![("oci::unpack", o, &ours), ("umoci unpack", u, &theirs)];
    if !gnutar.is_empty() {
        rows.push(("GNU tar -xzf", median(gnutar.clone()), &gnutar));
    }
    for (name, m, all) in rows {
        println!(
            "{name:<14} {:>9.2}s {:>10.0}  {:?}",
            m.as_secs_f64(),
            s.bytes as f64 / 1e6 / m.as_secs_f64(),
            all.iter()
                .map(|d| format!("{:.2}", d.as_secs_f64()))
                .collect::<Vec<_>>()
        );
    }
    println!(
        "ratio oci::unpack / umoci unpack: {:.2}",
        o.as_secs_f64() / u.as_secs_f64()
    );
}
