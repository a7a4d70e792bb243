//! The report port: the second serial port (`/dev/ttyS1` in the guest, a file on the
//! host), Keel's one protocol from a guest to the host. Pure: text in, [`Report`] out.
//!
//! ```text
//! KEEL-REPORT-BEGIN
//! @@ section-name
//! what the guest printed for it, any number of lines
//! @@ another-section
//! ...
//! KEEL-REPORT-END
//! ```
//!
//! Lines before the begin marker are ignored; a report without the end marker was cut
//! short ([`Report::complete`] is false). A section named twice gets both bodies. The
//! boot check (`/usr/libexec/keel/boot-check` in the shared `overlay/`) writes one
//! section per fact; `keel vm`'s PID 1 and run script write `start` (the guest's uptime
//! when the command starts) and `exit` (its exit code).

use std::collections::BTreeMap;

pub const BEGIN: &str = "KEEL-REPORT-BEGIN";
pub const END: &str = "KEEL-REPORT-END";
/// What starts a section's line: `@@ name`.
pub const SECTION: &str = "@@ ";

/// A parsed report: section name -> the lines the guest printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub sections: BTreeMap<String, String>,
    /// [`END`] was seen: the guest finished its report.
    pub complete: bool,
}

impl Report {
    pub fn parse(text: &str) -> Report {
        let mut r = Report::default();
        let mut cur: Option<String> = None;
        let mut started = false;
        for raw in text.lines() {
            // a port without `stty -onlcr` ends lines with \r\n
            let line = raw.trim_end_matches('\r');
            if line == BEGIN {
                started = true;
                continue;
            }
            if !started {
                continue;
            }
            if line == END {
                r.complete = true;
                break;
            }
            if let Some(name) = line.strip_prefix(SECTION) {
                let name = name.trim().to_owned();
                r.sections.entry(name.clone()).or_default();
                cur = Some(name);
                continue;
            }
            if let Some(c) = &cur {
                let s = r.sections.entry(c.clone()).or_default();
                s.push_str(line);
                s.push('\n');
            }
        }
        r
    }

    /// The report in `path` ("nothing reported" when the file is missing or unreadable:
    /// QEMU never made it).
    pub fn read(path: &std::path::Path) -> Report {
        Report::parse(&crate::console::read(path))
    }

    /// A section's text, trimmed ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        self.sections.get(name).map(|s| s.trim()).unwrap_or("")
    }

    /// In a section of `key value` lines, the value after the first word `key`.
    pub fn field<'a>(&'a self, section: &str, key: &str) -> Option<&'a str> {
        self.get(section).lines().find_map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k == key).then(|| v.trim())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_between_the_markers() {
        let r = Report::parse(
            "noise before\nKEEL-REPORT-BEGIN\r\n@@ start\r\n7.25\r\n@@ facts\nkey one two\nother 3\n\n@@ empty\n@@ start\nagain\nKEEL-REPORT-END\n@@ after\nignored\n",
        );
        assert!(r.complete);
        assert_eq!(
            r.sections.keys().collect::<Vec<_>>(),
            ["empty", "facts", "start"]
        );
        assert_eq!(r.sections["start"], "7.25\nagain\n");
        assert_eq!(r.get("facts"), "key one two\nother 3");
        assert_eq!(r.get("empty"), "");
        assert_eq!(r.get("absent"), "");
        assert_eq!(r.field("facts", "key"), Some("one two"));
        assert_eq!(r.field("facts", "other"), Some("3"));
        assert_eq!(r.field("facts", "ke"), None);
    }

    #[test]
    fn cut_short_or_never_begun() {
        let r = Report::parse("KEEL-REPORT-BEGIN\n@@ start\n1.5\n@@ exi");
        assert!(!r.complete);
        assert_eq!(r.get("start"), "1.5");
        assert_eq!(r.get("exi"), "");
        // lines before the begin marker, even well formed, are not the report
        for text in [
            "",
            "@@ exit\n0\nKEEL-REPORT-END\n",
            "KEEL-REPORT-BEGINS\n@@ x\n",
        ] {
            assert_eq!(Report::parse(text), Report::default(), "{text:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Report::read(&dir.path().join("none")), Report::default());
    }
}
