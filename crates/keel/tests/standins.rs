//! Issue 18: gentoo-mini's stand-ins made of Debian packages' files (docs/gentoo-mini.md,
//! crate `standins`). A variant installs one through the real pipeline: Portage fetches
//! the `.deb` from Debian's archive through `mirror://debian/` (profiles/thirdpartymirrors)
//! unless DISTDIR has it, verifies it against the generated Manifest, unpacks it with keel-deb.eclass into
//! Gentoo's merged-/usr layout, builds its binary package and merges that; the program in
//! the root is Debian's and runs.

mod common;

use common::{keel_cmd, project, text};
use std::fs;
use std::time::Duration;

#[test]
fn a_stand_in_from_debian_files_is_fetched_verified_and_runs() {
    let Some(p) = project() else { return };
    let v = p.root.join("variants/debfiles");
    fs::create_dir_all(&v).unwrap();
    // A variant of its own (not over base): only the stand-in is built, in seconds. The
    // project's shared tmpfiles.d edits name systemd's files, which this root has not.
    fs::remove_dir_all(p.root.join("tmpfiles.d")).unwrap();
    fs::write(
        v.join("variant.toml"),
        "distribution = \"gentoo\"\nprofile = \"default/linux/amd64/23.0/systemd\"\nchost = \"x86_64-pc-linux-gnu\"\n\n[image]\nformat = \"squashfs\"\n",
    )
    .unwrap();
    fs::write(v.join("build.packages"), "sys-apps/busybox\n").unwrap();
    fs::write(v.join("install.packages"), "sys-apps/busybox\n").unwrap();
    let (ok, _, err) = text(&testutil::output_within(
        keel_cmd(&p, &["build", "--variant", "debfiles"]),
        Duration::from_secs(900),
        "keel build --variant debfiles",
    ));
    assert!(ok, "{err}");
    // in DISTDIR under the pool's name (fetched once, then shared like every distfile)
    let fetched: Vec<String> = fs::read_dir(p.root.join("build/cache/distfiles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        fetched
            .iter()
            .any(|f| f.starts_with("busybox-static_") && f.ends_with("_amd64.deb")),
        "{fetched:?}"
    );
    let busybox = p.root.join("build/work/debfiles/destroot/usr/bin/busybox");
    let out = std::process::Command::new(&busybox)
        .args(["echo", "keel"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", busybox.display()));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "keel\n");
    let vdb = p
        .root
        .join("build/work/debfiles/destroot/var/db/pkg/sys-apps");
    let names: Vec<String> = fs::read_dir(&vdb)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("busybox-")), "{names:?}");
    // merged /usr: Debian's /bin/busybox went to /usr/bin, no /bin directory of its own
    let bin = fs::symlink_metadata(p.root.join("build/work/debfiles/destroot/bin"));
    assert!(
        bin.map_or(true, |m| !m.is_dir()),
        "a /bin directory in the root"
    );
}
