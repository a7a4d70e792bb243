//! The parallel walk: the result, the stats and the error list (and its order) do not
//! depend on the number of worker threads. One thread is the reference; the same layered
//! sources are synced into identically pre-populated DESTs with 2, 4 and 16 threads (16 is
//! more workers than there are directories at some levels, and more than the CPUs here).
//! That one thread matches rsync is shown by the differential suite.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The error list with DEST's own path replaced by `DEST`, in the order returned.
fn errors(r: &Result<overlay::Stats, overlay::Error>, dest: &Path) -> Vec<String> {
    match r {
        Ok(_) => vec![],
        Err(overlay::Error::Incomplete { errors, .. }) => errors
            .iter()
            .map(|e| e.to_string().replace(&*dest.to_string_lossy(), "DEST"))
            .collect(),
        Err(e) => panic!("whole sync failed: {e}"),
    }
}

fn stats(r: &Result<overlay::Stats, overlay::Error>) -> overlay::Stats {
    match r {
        Ok(s) => *s,
        Err(overlay::Error::Incomplete { stats, .. }) => *stats,
        Err(e) => panic!("whole sync failed: {e}"),
    }
}

#[test]
fn thread_count_does_not_change_the_result() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let mut layers: Vec<PathBuf> = Vec::new();
    for (i, seed) in [51u64, 151, 251].iter().enumerate() {
        let l = t.join(format!("layer{i}"));
        std::fs::create_dir(&l).unwrap();
        generate(
            &l,
            *seed,
            Shape {
                entries: 600,
                max_depth: 5,
                big_files: 1,
            },
        );
        layers.push(l);
    }
    let run = |threads: usize| {
        let d = t.join(format!("dest-{threads}/root"));
        std::fs::create_dir_all(&d).unwrap();
        prepopulate(&layers[0], &d, &t.join("elsewhere"), 51);
        let before = snapshot(&d);
        let r = overlay::sync_with_threads(&layers, &d, threads);
        (errors(&r, &d), stats(&r), before, snapshot(&d))
    };
    // Directory mtimes are compared as classes (kept, or set during the syncs).
    let start = now();
    let (err1, stats1, before1, after1) = run(1);
    assert!(
        !err1.is_empty(),
        "the case must include refusals (non-empty directories in the way)"
    );
    assert!(stats1.files_written > 100 && stats1.dirs_created > 10);
    for threads in [2, 4, 16] {
        let (err, stats, before, after) = run(threads);
        let d = diff(&after1, &after, &before1, &before, start);
        assert!(
            d.is_empty(),
            "{threads} threads vs 1 ({} differences):\n{}",
            d.len(),
            d.join("\n")
        );
        assert_eq!(err, err1, "error list with {threads} threads vs 1");
        assert_eq!(stats, stats1, "stats with {threads} threads vs 1");
    }
}
