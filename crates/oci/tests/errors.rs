//! Bad images: clear errors naming the image and the file or blob, never a panic, nothing
//! left at DEST.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn one_layer() -> Vec<u8> {
    layer(&[E::Dir("etc/"), E::File("etc/hostname", b"keel\n")])
}

/// `TOP/img`: a layout of [`one_layer`], uncompressed; (layout, layer digest, layer blob).
fn one_layer_layout(top: &Path) -> (PathBuf, String, PathBuf) {
    let l = top.join("img");
    let data = one_layer();
    write_layout(&l, std::slice::from_ref(&data), TAR);
    let ld = sha256(&data);
    let p = l.join("blobs/sha256").join(&ld[7..]);
    (l, ld, p)
}

fn resolve(s: &str) -> Result<oci::Image, oci::Error> {
    oci::resolve(&oci::ImageRef::parse(s))
}

/// Unpack into `TOP/root`, which must fail and leave nothing behind.
fn unpack_fails(top: &Path, reference: &str) -> oci::Error {
    let dest = top.join("root");
    let e = oci::unpack_ref(reference, &dest).unwrap_err();
    eprintln!("error: {e}");
    assert!(!dest.exists(), "{e}");
    assert!(leftovers(top).is_empty(), "{:?}", leftovers(top));
    e
}

#[test]
fn a_missing_image_names_the_path() {
    let d = tmp();
    let p = d.path().join("nope");
    let e = resolve(&p.to_string_lossy()).unwrap_err();
    assert!(matches!(e, oci::Error::Open { .. }), "{e}");
    assert!(e.to_string().contains(&*p.to_string_lossy()), "{e}");
}

#[test]
fn a_missing_index_or_layout_file_is_named() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], TAR);
    std::fs::remove_file(l.join("index.json")).unwrap();
    let e = resolve(&l.to_string_lossy()).unwrap_err();
    assert!(
        matches!(
            e,
            oci::Error::NotLayout {
                member: "index.json",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("index.json"), "{e}");
    assert!(e.to_string().contains(&*l.to_string_lossy()), "{e}");
    std::fs::remove_file(l.join("oci-layout")).unwrap();
    let e = resolve(&l.to_string_lossy()).unwrap_err();
    assert!(e.to_string().contains("oci-layout"), "{e}");
}

#[test]
fn invalid_json_names_the_file() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], TAR);
    std::fs::write(
        l.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    let e = resolve(&l.to_string_lossy()).unwrap_err();
    assert!(matches!(e, oci::Error::Json { .. }), "{e}");
    assert!(e.to_string().contains("`index.json` is not valid"), "{e}");
}

#[test]
fn an_unknown_tag_lists_the_tags() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], TAR);
    let e = resolve(&format!("{}:latest", l.display())).unwrap_err();
    let m = e.to_string();
    assert!(
        matches!(&e, oci::Error::UnknownTag { tag, available, .. } if tag == "latest" && available == &["t"]),
        "{m}"
    );
    assert!(
        m.contains("no manifest tagged `latest`; its tags: t"),
        "{m}"
    );
}

#[test]
fn several_manifests_and_no_tag_lists_the_tags() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], TAR);
    let index = std::fs::read_to_string(l.join("index.json")).unwrap();
    let entry = &index[index.find("[{").unwrap() + 1..index.rfind("}]").unwrap() + 1];
    let twice = index.replacen(
        entry,
        &format!("{entry},{}", entry.replace("\"t\"", "\"u\"")),
        1,
    );
    std::fs::write(l.join("index.json"), twice).unwrap();
    let e = resolve(&l.to_string_lossy()).unwrap_err();
    assert!(e.to_string().contains("holds 2 manifests"), "{e}");
    assert!(e.to_string().contains("its tags: t, u"), "{e}");
    assert!(resolve(&format!("{}:u", l.display())).is_ok());
}

#[test]
fn a_corrupt_config_blob_is_named() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], TAR);
    let img = resolve(&format!("{}:t", l.display())).unwrap();
    let cd = img.manifest.config.digest.clone();
    let p = l.join("blobs/sha256").join(&cd[7..]);
    let mut c = std::fs::read(&p).unwrap();
    c[5] ^= 1;
    std::fs::write(&p, c).unwrap();
    let e = resolve(&format!("{}:t", l.display())).unwrap_err();
    assert!(
        matches!(&e, oci::Error::DigestMismatch { digest, .. } if *digest == cd),
        "{e}"
    );
    assert!(
        e.to_string().contains(&format!("blob {cd} is corrupt")),
        "{e}"
    );
}

#[test]
fn a_corrupt_layer_fails_the_unpack_and_leaves_nothing() {
    let d = tmp();
    let (l, ld, p) = one_layer_layout(d.path());
    let mut c = std::fs::read(&p).unwrap();
    let at = c.windows(5).position(|w| w == b"keel\n").unwrap();
    c[at] = b'K';
    std::fs::write(&p, c).unwrap();
    let e = unpack_fails(d.path(), &format!("{}:t", l.display()));
    assert!(
        matches!(&e, oci::Error::DigestMismatch { digest, .. } if *digest == ld),
        "{e}"
    );
}

#[test]
fn a_broken_gzip_layer_names_the_layer() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], GZ);
    let img = resolve(&format!("{}:t", l.display())).unwrap();
    let ld = img.layers()[0].digest.clone();
    let p = l.join("blobs/sha256").join(&ld[7..]);
    let mut c = std::fs::read(&p).unwrap();
    let n = c.len();
    for b in &mut c[12..n - 8] {
        *b = !*b;
    }
    std::fs::write(&p, c).unwrap();
    let e = unpack_fails(d.path(), &format!("{}:t", l.display()));
    assert!(e.to_string().contains(&ld), "{e}");
}

#[test]
fn a_missing_layer_blob_is_named() {
    let d = tmp();
    let l = d.path().join("img");
    let data = one_layer();
    write_layout(&l, std::slice::from_ref(&data), TAR);
    let ld = sha256(&data);
    std::fs::remove_file(l.join("blobs/sha256").join(&ld[7..])).unwrap();
    let e = unpack_fails(d.path(), &format!("{}:t", l.display()));
    assert!(
        matches!(&e, oci::Error::MissingBlob { digest, .. } if *digest == ld),
        "{e}"
    );
}

#[test]
fn an_unsupported_layer_media_type_is_named() {
    let d = tmp();
    let l = d.path().join("img");
    let data = one_layer();
    write_layout(
        &l,
        std::slice::from_ref(&data),
        "application/vnd.oci.image.layer.v1.tar+bzip2",
    );
    let e = resolve(&format!("{}:t", l.display())).unwrap_err();
    let m = e.to_string();
    assert!(
        matches!(e, oci::Error::MediaType { what: "layer", .. }),
        "{m}"
    );
    assert!(m.contains(&sha256(&data)) && m.contains("tar+bzip2"), "{m}");
}

#[test]
fn a_wrong_diff_id_is_named() {
    let d = tmp();
    let l = d.path().join("img");
    let wrong = sha256(b"not this layer");
    write_layout_with(&l, &[one_layer()], GZ, Some(&[&wrong]));
    let e = unpack_fails(d.path(), &format!("{}:t", l.display()));
    assert!(
        matches!(&e, oci::Error::DiffIdMismatch { expected, .. } if *expected == wrong),
        "{e}"
    );
}

#[test]
fn a_non_empty_dest_is_refused_and_left_alone() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], TAR);
    let dest = d.path().join("root");
    std::fs::create_dir(&dest).unwrap();
    std::fs::write(dest.join("mine"), b"mine").unwrap();
    let e = oci::unpack_ref(&format!("{}:t", l.display()), &dest).unwrap_err();
    assert!(matches!(e, oci::Error::DestNotEmpty { .. }), "{e}");
    assert_eq!(std::fs::read(dest.join("mine")).unwrap(), b"mine");
    let file = d.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let e = oci::unpack_ref(&format!("{}:t", l.display()), &file).unwrap_err();
    assert!(matches!(e, oci::Error::DestNotEmpty { .. }), "{e}");
}

#[test]
fn an_empty_dest_directory_is_filled() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], GZ);
    let dest = d.path().join("root");
    std::fs::create_dir(&dest).unwrap();
    let (img, stats) = oci::unpack_ref(&format!("{}:t", l.display()), &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("etc/hostname")).unwrap(), b"keel\n");
    assert_eq!((stats.layers, stats.files, stats.dirs), (1, 1, 1));
    assert_eq!(img.config.config.working_dir.as_deref(), Some("/w"));
    assert_eq!(
        img.config.config.env.as_deref(),
        Some(&["PATH=/bin".to_owned()][..])
    );
}

/// Run `f` in a thread; fail if it takes more than `limit` (a hang fails the test instead of
/// hanging it; the stuck thread is left behind and dies with the test binary).
fn within<T: Send + 'static>(
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let start = std::time::Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            eprintln!("took {:?}", start.elapsed());
            v
        }
        Err(_) => panic!("still running after {limit:?}: it hangs"),
    }
}

/// A layout with one uncompressed layer whose blob is replaced by `make(blob path)`; the
/// unpack must fail within `limit`. Returns the error and the layer's digest.
fn hostile_layer_blob(
    limit: std::time::Duration,
    make: impl FnOnce(&Path),
) -> (tempfile::TempDir, oci::Error, String) {
    let d = tmp();
    let (l, ld, p) = one_layer_layout(d.path());
    std::fs::remove_file(&p).unwrap();
    make(&p);
    let reference = format!("{}:t", l.display());
    let dest = d.path().join("root");
    let e = within(limit, move || {
        oci::unpack_ref(&reference, &dest).unwrap_err()
    });
    eprintln!("error: {e}");
    assert!(!d.path().join("root").exists(), "{e}");
    assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
    (d, e, ld)
}

#[test]
fn a_layer_blob_linked_to_dev_zero_is_refused_at_once() {
    let (d, e, ld) = hostile_layer_blob(std::time::Duration::from_secs(20), |p| {
        std::os::unix::fs::symlink("/dev/zero", p).unwrap()
    });
    let m = e.to_string();
    assert!(
        matches!(&e, oci::Error::NotRegular { digest: Some(x), .. } if *x == ld),
        "{m}"
    );
    assert!(m.contains(&ld) && m.contains("not a regular file"), "{m}");
    assert!(m.contains(&format!("blobs/sha256/{}", &ld[7..])), "{m}");
    assert!(m.contains("character device"), "{m}");
    assert!(m.contains(&*d.path().to_string_lossy()), "{m}");
}

#[test]
fn a_fifo_layer_blob_does_not_block() {
    let (_d, e, ld) = hostile_layer_blob(std::time::Duration::from_secs(20), |p| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap()
    });
    let m = e.to_string();
    assert!(
        matches!(&e, oci::Error::NotRegular { digest: Some(x), .. } if *x == ld),
        "{m}"
    );
    assert!(m.contains(&ld) && m.contains("not a regular file"), "{m}");
    assert!(m.contains("fifo"), "{m}");
}

#[test]
fn a_huge_sparse_layer_blob_fails_on_its_size_in_well_under_a_second() {
    // 8 GiB of holes where the descriptor says a few KiB: the size is checked before a byte
    // is read (it took 27 s to hash it all and call it corrupt).
    let size = one_layer().len() as u64;
    let huge = 8u64 << 30;
    let start = std::time::Instant::now();
    let (_d, e, ld) = hostile_layer_blob(std::time::Duration::from_secs(20), |p| {
        std::fs::File::create(p).unwrap().set_len(huge).unwrap()
    });
    let took = start.elapsed();
    let m = e.to_string();
    assert!(
        took < std::time::Duration::from_secs(1),
        "{m}: took {took:?}"
    );
    assert!(
        matches!(&e, oci::Error::SizeMismatch { digest, expected, actual, .. }
            if *digest == ld && *expected == size && *actual == huge),
        "{m}"
    );
    assert!(m.contains(&ld), "{m}");
    assert!(m.contains(&format!("is {huge} bytes")), "{m}");
    assert!(m.contains(&format!("the descriptor says {size}")), "{m}");
}

#[test]
fn a_layer_blob_linked_to_a_regular_file_is_read() {
    // A symlink to a regular file is followed (LXC's shared blob cache, layouts whose blobs
    // link into a build tool's store): the content is verified by its digest anyway.
    let d = tmp();
    let (l, _, p) = one_layer_layout(d.path());
    let store = d.path().join("store");
    std::fs::rename(&p, &store).unwrap();
    std::os::unix::fs::symlink(&store, &p).unwrap();
    let dest = d.path().join("root");
    oci::unpack_ref(&format!("{}:t", l.display()), &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("etc/hostname")).unwrap(), b"keel\n");
}

#[test]
fn a_config_blob_that_is_not_a_regular_file_is_refused() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], TAR);
    let img = resolve(&format!("{}:t", l.display())).unwrap();
    let cd = img.manifest.config.digest.clone();
    let p = l.join("blobs/sha256").join(&cd[7..]);
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &p).unwrap();
    let reference = format!("{}:t", l.display());
    let e = within(std::time::Duration::from_secs(20), move || {
        resolve(&reference).unwrap_err()
    });
    let m = e.to_string();
    assert!(
        matches!(&e, oci::Error::NotRegular { digest: Some(x), .. } if *x == cd),
        "{m}"
    );
    assert!(m.contains(&cd) && m.contains("not a regular file"), "{m}");
}

#[test]
fn an_index_json_fifo_does_not_block() {
    let d = tmp();
    let l = d.path().join("img");
    write_layout(&l, &[one_layer()], TAR);
    let p = l.join("index.json");
    std::fs::remove_file(&p).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let reference = l.to_string_lossy().into_owned();
    let e = within(std::time::Duration::from_secs(20), move || {
        resolve(&reference).unwrap_err()
    });
    let m = e.to_string();
    assert!(
        matches!(&e, oci::Error::NotRegular { member, digest: None, what: "a fifo", .. } if member == "index.json"),
        "{m}"
    );
    assert!(
        m.contains("`index.json` is a fifo, not a regular file"),
        "{m}"
    );
}
