//! The console log (the first serial port, and what QEMU itself printed): its tail for
//! error messages, and the one kernel panic detector.

use std::path::Path;

/// How many lines of the console an error quotes.
pub const TAIL_LINES: usize = 30;

/// The console log as text ("" when it cannot be read: QEMU never started).
pub fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last [`TAIL_LINES`] lines of the console log.
pub fn tail(path: &Path) -> String {
    exec::tail_lines(&read(path), TAIL_LINES)
}

/// Whether the kernel panicked: its `Kernel panic - not syncing` line (with `panic=-1`
/// and `-no-reboot`, a panic ends the machine). A program that merely prints the words
/// inside a longer line of its own (a build log quoting them) does not count: the kernel's
/// line starts with them, after the timestamp.
pub fn panicked(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start();
        let l = match l.strip_prefix('[') {
            Some(r) => r.split_once(']').map_or(r, |(_, after)| after).trim_start(),
            None => l,
        };
        l.starts_with("Kernel panic - not syncing")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_panics_are_told_from_text_that_mentions_them() {
        for (text, panic) in [
            ("[    2.105632] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n", true),
            ("boot\r\n[ 1.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n", true),
            ("Kernel panic - not syncing: Fatal exception\n", true),
            ("[  3.0] ---[ end Kernel panic - not syncing: Fatal exception ]---\n", false),
            ("grep: no 'Kernel panic - not syncing' in build.log\n", false),
            ("[    0.000000] Linux version 6.1.0\nsystemd[1]: Reached target multi-user.target\n", false),
            ("", false),
            ("[unterminated", false),
        ] {
            assert_eq!(panicked(text), panic, "{text:?}");
        }
    }

    #[test]
    fn tail_of_a_missing_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(tail(&dir.path().join("none")), "");
        let log = dir.path().join("console.log");
        let text: String = (1..=40).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let t = tail(&log);
        assert!(t.starts_with("line 11\n") && t.ends_with("line 40"), "{t}");
    }
}
