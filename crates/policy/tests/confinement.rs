//! Labelling touches only the tree it is given: a symlink in the tree, to a file or a
//! directory outside it, is labelled itself, and nothing outside the tree is.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

fn label_of(p: &Path) -> Option<String> {
    let mut buf = vec![0u8; 256];
    match rustix::fs::lgetxattr(p, "security.selinux", &mut buf) {
        Ok(n) => Some(
            String::from_utf8_lossy(&buf[..n])
                .trim_end_matches('\0')
                .to_owned(),
        ),
        Err(_) => None,
    }
}

#[test]
fn symlinks_out_of_the_tree_are_labelled_not_followed() {
    let d = tempfile::tempdir().unwrap();
    let outside = d.path().join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("file"), "host").unwrap();
    fs::write(outside.join("dir/inner"), "host").unwrap();
    let root = d.path().join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/real"), "x").unwrap();
    symlink(outside.join("file"), root.join("etc/file-out")).unwrap();
    symlink(outside.join("dir"), root.join("lib")).unwrap();
    symlink("../../outside/dir", root.join("etc/rel-out")).unwrap();

    let fc = d.path().join("file_contexts");
    let text = "/.*\tsystem_u:object_r:etc_t:s0\n/lib(/.*)?\tsystem_u:object_r:lib_t:s0\n";
    fs::write(&fc, text).unwrap();
    let specs = policy::fc::parse(text, &fc).unwrap();
    let fcs = policy::fc::FileContexts::from_specs(specs, Vec::new(), Vec::new(), vec![fc.clone()])
        .unwrap();
    let report = policy::label_with(&root, &fcs, d.path().join("policy"), fc).unwrap();
    assert!(report.set > 0, "{report:?}");

    assert_eq!(
        label_of(&root.join("etc/real")).as_deref(),
        Some("system_u:object_r:etc_t:s0")
    );
    assert_eq!(
        label_of(&root.join("lib")).as_deref(),
        Some("system_u:object_r:lib_t:s0"),
        "the link itself is labelled"
    );
    for p in ["file", "dir", "dir/inner"] {
        assert_eq!(
            label_of(&outside.join(p)),
            None,
            "{p} outside the tree was labelled through a link"
        );
    }
}
