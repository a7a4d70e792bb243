//! New files are written unnamed (`O_TMPFILE`) and linked in when complete. Before Linux
//! 6.10, `linkat(AT_EMPTY_PATH)` needs CAP_DAC_READ_SEARCH, and without it Keel links through
//! `/proc/self/fd`. This runs a sync on a thread that dropped that capability (capabilities
//! are per thread, and the sync's worker threads inherit them) and checks the result is the
//! same as with it.

mod common;

use common::*;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::thread::{capabilities, set_capabilities, CapabilityFlags};

#[test]
fn new_files_are_linked_in_without_cap_dac_read_search() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let src = t.join("src");
    std::fs::create_dir(&src).unwrap();
    generate(&src, 61, Shape::default());
    let (reference, dest) = (t.join("reference"), t.join("dest"));
    std::fs::create_dir(&reference).unwrap();
    std::fs::create_dir(&dest).unwrap();
    let start = now();
    let want = overlay::sync_with_threads(&[&src], &reference, 1).unwrap();

    let (src2, dest2) = (src.clone(), dest.clone());
    let got = std::thread::spawn(move || {
        let mut caps = capabilities(None).unwrap();
        caps.effective.remove(CapabilityFlags::DAC_READ_SEARCH);
        set_capabilities(None, caps).unwrap();
        // Since Linux 6.10 the direct way is allowed without the capability for a file the
        // caller opened itself (as Keel always does); before, it fails with ENOENT and the
        // fallback runs. Either way the sync must give the same result.
        let dir =
            rustix::fs::open(&dest2, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let fd = rustix::fs::openat(
            &dir,
            c".",
            OFlags::WRONLY | OFlags::TMPFILE,
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let direct = rustix::fs::linkat(&fd, c"", &dir, c"probe", AtFlags::EMPTY_PATH);
        eprintln!("linkat(AT_EMPTY_PATH) without CAP_DAC_READ_SEARCH: {direct:?}");
        if direct.is_ok() {
            rustix::fs::unlinkat(&dir, c"probe", AtFlags::empty()).unwrap();
        }
        overlay::sync_with_threads(&[&src2], &dest2, 2)
    })
    .join()
    .unwrap()
    .unwrap();
    assert_eq!(got, want);
    assert!(got.files_written > 100, "{got:?}");
    let (r, k) = (snapshot(&reference), snapshot(&dest));
    let d = diff(&r, &k, &Default::default(), &Default::default(), start);
    assert!(d.is_empty(), "{}", d.join("\n"));
}
