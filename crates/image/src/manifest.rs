//! The manifest of a tree: one sorted line per path.
//!
//! ```text
//! <path>\t<type>\t<mode>\t<uid>:<gid>\t<size | -> target | major,minor>\t<sha256 | ->\t<label | ->
//! ```
//! `type` is `f d l c b p s`; `mode` is the permission bits in octal (with setuid, setgid,
//! sticky); regular files carry their size and the SHA-256 of their content; symlinks their
//! target verbatim; devices their numbers. `label` is the `security.selinux` xattr. Paths
//! and targets escape `\`, tab and newline as `\\`, `\t`, `\n`, and every byte of a control
//! character (C0, DEL, C1) and every byte that is not UTF-8 as `\xHH`: the escape is undone
//! byte for byte, so two names never share a line. Modification times are not part of the
//! manifest. [`Line`] is one line parsed (and written back).

use crate::walk::{walk, Entry};
use crate::Error;
use exec::Cmd;
use rustix::fs::{openat, FileType, Mode, OFlags};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Escape a path or link target for a manifest line.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                // The bytes, not the code point: U+0085 is `\xc2\x85`, as the invalid
                // byte 0x85 alone is `\x85`.
                c if c.is_control() => {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

fn type_char(t: FileType) -> char {
    match t {
        FileType::RegularFile => 'f',
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::CharacterDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        FileType::Unknown => '?',
    }
}

fn line(e: &Entry) -> Result<Line, Error> {
    let st = e.stat;
    let t = e.file_type();
    let shown = e.shown();
    let content = match (t, e.parent) {
        (FileType::RegularFile, Some((dir, name))) => {
            let fd = openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(Error::errno(&shown))?;
            let mut f = std::fs::File::from(fd);
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).map_err(Error::io(&shown))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Content::File {
                size: st.st_size as u64,
                sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
            }
        }
        (FileType::Symlink, Some((dir, name))) => {
            let target =
                rustix::fs::readlinkat(dir, name, Vec::new()).map_err(Error::errno(&shown))?;
            Content::Link {
                target: escape(target.as_bytes()),
            }
        }
        (FileType::CharacterDevice | FileType::BlockDevice, _) => {
            let dev = st.st_rdev;
            Content::Device {
                major: rustix::fs::major(dev),
                minor: rustix::fs::minor(dev),
            }
        }
        _ => Content::None,
    };
    Ok(Line {
        path: escape(e.path.as_os_str().as_bytes()),
        kind: type_char(t),
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        content,
        label: selinux_label(e)?,
    })
}

/// The `security.selinux` label of an entry (a link's own).
fn selinux_label(e: &Entry) -> Result<Option<String>, Error> {
    let mut buf = vec![0u8; 256];
    match e.get_xattr("security.selinux", &mut buf) {
        Ok(n) => {
            let v = &buf[..n];
            let v = v.strip_suffix(b"\0").unwrap_or(v);
            Ok(Some(escape(v)))
        }
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => Ok(None),
        Err(err) => Err(Error::errno(&e.shown())(err)),
    }
}

/// The manifest of a directory tree.
pub fn of_tree(root: &Path) -> Result<String, Error> {
    let mut lines = Vec::new();
    walk(root, &mut |e| {
        lines.push(line(e)?.to_string());
        Ok(())
    })?;
    lines.sort();
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// An image format, by its magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Squashfs,
    Erofs,
}

/// Which image `path` is: squashfs (`hsqs` at byte 0) or EROFS (0xE0F5E1E2 at byte
/// 1024); `None` for anything else or a file that cannot be read.
pub fn image_kind(path: &Path) -> Option<ImageKind> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).ok()?;
    if &magic == b"hsqs" {
        return Some(ImageKind::Squashfs);
    }
    f.seek(SeekFrom::Start(1024)).ok()?;
    f.read_exact(&mut magic).ok()?;
    (magic == 0xE0F5E1E2u32.to_le_bytes()).then_some(ImageKind::Erofs)
}

/// The manifest of a squashfs or EROFS image, read back by extracting it with the real
/// tools (`unsquashfs`, `fsck.erofs --extract`) into a scratch directory beside `scratch`.
pub fn of_image(image: &Path, scratch: &Path) -> Result<String, Error> {
    let dir = scratch.join("manifest-extract");
    if dir.symlink_metadata().is_ok() {
        std::fs::remove_dir_all(&dir).map_err(Error::io(&dir))?;
    }
    // Unreadable, or too short to hold a magic number: an error naming it.
    std::fs::File::open(image)
        .and_then(|mut f| f.read_exact(&mut [0u8; 4]))
        .map_err(Error::io(image))?;
    if image_kind(image) == Some(ImageKind::Squashfs) {
        Cmd::new("unsquashfs")
            .args(["-no-progress", "-quiet", "-d"])
            .arg(&dir)
            .arg(image)
            .output()?;
    } else {
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Cmd::new("fsck.erofs")
            .arg(format!("--extract={}", dir.display()))
            .arg("--force")
            .arg(image)
            .output()?;
    }
    let m = of_tree(&dir);
    std::fs::remove_dir_all(&dir).map_err(Error::io(&dir))?;
    m
}

pub use record::manifest::{Content, Line};

/// Every line of a manifest ([`Line::parse`]); the error names the line's number.
pub fn parse_all(text: &str) -> Result<Vec<Line>, Error> {
    record::manifest::parse_all(text).map_err(Error::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn escapes() {
        assert_eq!(escape(b"a b"), "a b");
        assert_eq!(escape(b"a\tb\nc\\"), "a\\tb\\nc\\\\");
        assert_eq!(escape(b"\xff\x01x"), "\\xff\\x01x");
        assert_eq!(escape("ünï".as_bytes()), "ünï");
    }

    /// Found by the fuzzer (crates/fuzz, target image_manifest): U+0085 (NEL, valid UTF-8
    /// `c2 85`) was written `\x85`, as is the invalid byte 0x85 alone, so two different
    /// names had the same manifest line.
    #[test]
    fn control_characters_escape_their_bytes() {
        assert_eq!(escape(b"\xc2\x85"), "\\xc2\\x85");
        assert_eq!(escape(b"\x85"), "\\x85");
        assert_ne!(escape(b"\\\xc2\x85"), escape(b"\\\x85"));
        assert_eq!(escape(b"\x1b[0m\x7f"), "\\x1b[0m\\x7f");
        assert_eq!(escape("\u{9f}".as_bytes()), "\\xc2\\x9f");
    }

    #[test]
    fn lines_of_a_tree() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("etc/a"), "hello\n").unwrap();
        fs::set_permissions(
            r.join("etc/a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4755),
        )
        .unwrap();
        fs::set_permissions(
            r.join("etc"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        fs::set_permissions(r, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("/outside/x", r.join("link")).unwrap();
        let m = of_tree(r).unwrap();
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        assert_eq!(
            m,
            format!(
                "/\td\t0755\t{uid}:{gid}\t-\t-\t-\n/etc\td\t0755\t{uid}:{gid}\t-\t-\t-\n\
                 /etc/a\tf\t4755\t{uid}:{gid}\t6\t5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\t-\n\
                 /link\tl\t0777\t{uid}:{gid}\t-> /outside/x\t-\t-\n"
            )
        );
        let back: String = parse_all(&m)
            .unwrap()
            .iter()
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(back, m);
    }

    #[test]
    fn lines_parse_and_print_back() {
        let text = "/\td\t0755\t0:0\t-\t-\tsystem_u:object_r:root_t:s0\n\
                    /dev/null\tc\t0666\t0:0\t1,3\t-\t-\n\
                    /etc/a\\tb\tf\t4755\t0:5\t6\t5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\t-\n\
                    /link\tl\t0777\t0:0\t-> /outside/x y\t-\t-\n";
        let lines = parse_all(text).unwrap();
        assert_eq!(lines[1].content, Content::Device { major: 1, minor: 3 });
        assert_eq!((lines[2].mode, lines[2].gid), (0o4755, 5));
        assert_eq!(lines[2].path, "/etc/a\\tb");
        assert_eq!(
            lines[3].content,
            Content::Link {
                target: "/outside/x y".into()
            }
        );
        assert_eq!(
            lines[0].label.as_deref(),
            Some("system_u:object_r:root_t:s0")
        );
        let back: String = lines.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(back, text);
    }

    #[test]
    fn a_bad_line_is_an_error_naming_it() {
        for (text, want) in [
            ("/\td\t0755\t0:0\t-\t-", "6 tab-separated fields; want 7"),
            ("etc\td\t0755\t0:0\t-\t-\t-", "path `etc`"),
            ("/\tx\t0755\t0:0\t-\t-\t-", "type `x`"),
            ("/\td\t755\t0:0\t-\t-\t-", "mode `755`"),
            ("/\td\t0755\t0\t-\t-\t-", "owner `0`"),
            ("/a\tf\t0644\t0:0\t1\tzz\t-", "want a size and a SHA-256"),
            ("/a\tc\t0644\t0:0\t1\t-\t-", "device `1`"),
            ("/a\td\t0755\t0:0\t-> x\t-\t-", "does not go with type `d`"),
        ] {
            let e = parse_all(&format!("/\td\t0755\t0:0\t-\t-\t-\n{text}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("manifest line 2: ") && e.contains(want),
                "{e}"
            );
        }
    }
}
