//! `cat` agrees with `systemd-tmpfiles --root=DIR --cat-config` on precedence, masking,
//! name order and line splitting.

use std::os::unix::fs::symlink;
use std::path::Path;
use tmpfiles::apply;

fn write(root: &Path, p: &str, content: &[u8]) {
    let f = root.join(p);
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(f, content).unwrap();
}

fn systemd_cat(root: &Path) -> String {
    exec::Cmd::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.display()))
        .arg("--cat-config")
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "cat")
        .output()
        .expect("systemd-tmpfiles --cat-config")
        .stdout
}

#[test]
fn cat_agrees_with_systemd() {
    if !testutil::require("systemd-tmpfiles") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    write(r, "usr/lib/tmpfiles.d/a.conf", b"d /usr-lib-a\n");
    write(r, "etc/tmpfiles.d/a.conf", b"d /etc-a\n");
    write(r, "usr/lib/tmpfiles.d/b.conf", b"d /b\n");
    std::fs::create_dir_all(r.join("run/tmpfiles.d")).unwrap();
    symlink("/dev/null", r.join("run/tmpfiles.d/b.conf")).unwrap();
    write(r, "usr/local/lib/tmpfiles.d/c.conf", b"d /local-c\n");
    write(r, "usr/lib/tmpfiles.d/c.conf", b"d /lib-c\n");
    write(r, "etc/tmpfiles.d/empty.conf", b"");
    write(r, "usr/lib/tmpfiles.d/empty.conf", b"d /shadowed\n");
    write(r, "other/x", b"d /via-relative-link\n");
    symlink("../../other/x", r.join("etc/tmpfiles.d/rel.conf")).unwrap();
    write(r, "usr/lib/tmpfiles.d/notconf", b"d /n\n");
    write(r, "usr/lib/tmpfiles.d/.hidden.conf", b"d /h\n");
    write(r, "usr/lib/tmpfiles.d/Z.conf", b"d /Z\n");
    write(r, "usr/lib/tmpfiles.d/nonl.conf", b"d /no-newline");
    write(r, "usr/lib/tmpfiles.d/crlf.conf", b"d /crlf\r\nd /x2\r\n");
    write(
        r,
        "usr/lib/tmpfiles.d/ws.conf",
        b"d /t\t\n\n\nd /y\n  \n# comment\n",
    );
    // The host's own packaged files, as shipped.
    for e in std::fs::read_dir("/usr/lib/tmpfiles.d").unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            write(
                r,
                &format!("usr/lib/tmpfiles.d/host-{name}"),
                &std::fs::read(e.path()).unwrap(),
            );
        }
    }
    let root = apply::open_root(r).unwrap();
    let ours = apply::cat(&root).unwrap();
    let theirs = systemd_cat(r);
    assert!(
        ours.contains("d /etc-a") && !ours.contains("d /usr-lib-a") && ours.contains("d /local-c")
    );
    assert_eq!(ours, theirs);
}
