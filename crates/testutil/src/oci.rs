//! Hand-made OCI image layouts for tests: layers from a list of entries, written as a
//! layout with one image tagged `t`.

use sha2::{Digest, Sha256};
use std::path::Path;

/// One entry of a hand-made layer.
pub enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn set_raw(field: &mut [u8], v: &str) {
    assert!(v.len() < field.len(), "name too long for a raw header: {v}");
    field.fill(0);
    field[..v.len()].copy_from_slice(v.as_bytes());
}

/// An uncompressed tar of these entries (mode 0644/0755, owner 0:0, mtime 1000000000).
/// Names and link targets are written raw, so `..` and absolute names go in unchanged.
pub fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        let (name, data): (&str, &[u8]) = match e {
            E::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                (n, d)
            }
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"")
            }
            E::Symlink(n, t) | E::Hardlink(n, t) => {
                h.set_entry_type(if matches!(e, E::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                set_raw(&mut h.as_old_mut().linkname, t);
                (n, b"")
            }
        };
        set_raw(&mut h.as_old_mut().name, name);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// Store `data` as a blob of the layout at `layout`; its digest.
pub fn put_blob(layout: &Path, data: &[u8]) -> String {
    let d = sha256(data);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(&d[7..]), data).unwrap();
    d
}

/// Write an OCI image layout at `dir` holding one image tagged `t` whose layers are the
/// given uncompressed tars, stored with `media_type` (gzip-compressed when it ends in
/// `+gzip`). Returns the manifest digest.
pub fn write_layout(dir: &Path, layers: &[Vec<u8>], media_type: &str) -> String {
    write_layout_with(dir, layers, media_type, None)
}

/// [`write_layout`] with the config's `diff_ids` given (to make them wrong).
pub fn write_layout_with(
    dir: &Path,
    layers: &[Vec<u8>],
    media_type: &str,
    diff_ids_override: Option<&[&str]>,
) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        diff_ids.push(format!("\"{}\"", sha256(l)));
        let blob = if media_type.ends_with("+gzip") {
            use std::io::Write;
            let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            g.write_all(l).unwrap();
            g.finish().unwrap()
        } else {
            l.clone()
        };
        let d = put_blob(dir, &blob);
        descs.push(format!(
            r#"{{"mediaType":"{media_type}","digest":"{d}","size":{}}}"#,
            blob.len()
        ));
    }
    if let Some(o) = diff_ids_override {
        diff_ids = o.iter().map(|d| format!("\"{d}\"")).collect();
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"WorkingDir":"/w"}},"rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let cd = put_blob(dir, config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        descs.join(",")
    );
    let md = put_blob(dir, manifest.as_bytes());
    std::fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
            manifest.len()
        ),
    )
    .unwrap();
    md
}
