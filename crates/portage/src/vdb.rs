//! Making Portage's records in a root reproducible.
//!
//! A merge writes the time of the merge into the installed-package database: `CONTENTS`
//! lines carry each file's mtime, `BUILD_TIME` the build time of packages built from source
//! (installonly), Portage 3's `metadata` cache the database directory's mtime in
//! nanoseconds, and `BINPKGMD5` the checksum of the binary package file, whose archive
//! headers hold the time it was built. `/var/cache/edb` holds Portage's own state, with the
//! build host's paths. [`normalize`] always drops the cache (Portage rebuilds it),
//! `BINPKGMD5` and `/var/cache/edb` and sorts `CONTENTS`, `NEEDED` and `NEEDED.ELF.2` (one
//! line per file, in the order a walk of a directory on the build machine's filesystem met
//! them); with `SOURCE_DATE_EPOCH` it also clamps those times as the files themselves are
//! clamped.
//! Symlinks are never followed: a symlink where a database directory should be is an error.

use crate::Error;
use std::fs;
use std::path::Path;

fn real_dir(path: &Path) -> Result<bool, Error> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(true),
        Ok(m) if m.file_type().is_symlink() => Err(Error::Config(format!(
            "{}: a symlink where Portage's database should be",
            path.display()
        ))),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path)(e)),
    }
}

/// Clamp a CONTENTS line's trailing mtime (`obj PATH MD5 MTIME`, `sym PATH -> T MTIME`).
pub fn clamp_contents_line(line: &str, epoch: i64) -> String {
    if !(line.starts_with("obj ") || line.starts_with("sym ")) {
        return line.to_owned();
    }
    match line.rsplit_once(' ') {
        Some((head, t)) => match t.parse::<i64>() {
            Ok(t) if t > epoch => format!("{head} {epoch}"),
            _ => line.to_owned(),
        },
        None => line.to_owned(),
    }
}

/// A CONTENTS file in path order (Portage writes the order the merge walked the image
/// directory in, which is the order of that filesystem's directories: ext4 on one machine,
/// 9p or tmpfs on another; Portage itself never depends on it), its times clamped to
/// `epoch`.
pub fn normalize_contents(text: &str, epoch: Option<i64>) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| match epoch {
            Some(e) => clamp_contents_line(l, e),
            None => l.to_owned(),
        })
        .collect();
    // the type is three letters and a space (`dir `, `obj `, `sym `, `fif `, `dev `)
    lines.sort_by(|a, b| (a.get(4..), a.as_str()).cmp(&(b.get(4..), b.as_str())));
    lines.into_iter().map(|l| l + "\n").collect()
}

/// `NEEDED` / `NEEDED.ELF.2` in line order. `scanelf` lists a package's ELF files in the
/// order it walked the image directory where the package was built: ext4's hash order on
/// one machine differs from another's (a build VM's), and Portage reads the lines into maps.
pub fn normalize_needed(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.into_iter().map(|l| format!("{l}\n")).collect()
}

/// Replace the text of the regular file `path`, if there is one, by `f` of it; unchanged
/// files are not written.
fn rewrite(path: &Path, f: impl Fn(&str) -> String) -> Result<(), Error> {
    if !fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let text = fs::read_to_string(path).map_err(Error::io(path))?;
    let new = f(&text);
    if new != text {
        fs::write(path, new).map_err(Error::io(path))?;
    }
    Ok(())
}

/// FEATURES of the build host that say nothing about a package: where its compiles ran
/// (`distcc`, docs/scale-out.md). Portage records the FEATURES a package was built with
/// (`FEATURES`, and `FEATURES`/`PORTAGE_FEATURES` in `environment.bz2`); a package built
/// with these gets the record of a local build, so the image does not depend on where it
/// was compiled.
pub const HOST_FEATURES: &[&str] = &["distcc"];

/// FEATURES Keel turns off for a distcc build ([`crate::distcc`]), given back in the record.
const OFF_FOR_DISTCC: &[&str] = &["network-sandbox"];

/// A FEATURES value as a local build records it: [`HOST_FEATURES`] out and, when one was
/// there, what Keel turned off for it back in (Portage records FEATURES sorted).
pub fn without_host_features(value: &str) -> String {
    let words: Vec<&str> = value.split(' ').collect();
    if !words.iter().any(|w| HOST_FEATURES.contains(w)) {
        return value.to_owned();
    }
    let mut kept: Vec<&str> = words
        .into_iter()
        .filter(|w| !HOST_FEATURES.contains(w))
        .collect();
    for f in OFF_FOR_DISTCC {
        if !kept.contains(f) {
            kept.push(f);
            kept.sort_unstable();
        }
    }
    kept.join(" ")
}

/// A saved ebuild environment with [`HOST_FEATURES`] taken out of its `FEATURES` and
/// `PORTAGE_FEATURES` declarations (bytes: the rest is left as it is).
pub fn environment_without_host_features(env: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(env.len());
    for (i, line) in env.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        let edited = ["declare -x FEATURES=\"", "declare -x PORTAGE_FEATURES=\""]
            .iter()
            .find_map(|p| {
                let rest = line.strip_prefix(p.as_bytes())?;
                let value = std::str::from_utf8(rest.strip_suffix(b"\"")?).ok()?;
                Some(format!("{p}{}\"", without_host_features(value)).into_bytes())
            });
        out.extend_from_slice(edited.as_deref().unwrap_or(line));
    }
    out
}

/// Take [`HOST_FEATURES`] out of one package's records, when its `FEATURES` has one.
fn drop_host_features(pkg: &Path) -> Result<(), Error> {
    let f = pkg.join("FEATURES");
    let Ok(text) = fs::read_to_string(&f) else {
        return Ok(());
    };
    if !text.split_whitespace().any(|w| HOST_FEATURES.contains(&w)) {
        return Ok(());
    }
    rewrite(&f, |t| {
        t.lines()
            .map(|l| format!("{}\n", without_host_features(l)))
            .collect()
    })?;
    let bz2 = pkg.join("environment.bz2");
    if !fs::symlink_metadata(&bz2).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    // bzip2 -9, as Portage compresses it: the same text gives the same file.
    let env = pkg.join("environment");
    exec::Cmd::new("bzip2")
        .args(["-d", "-k", "-f"])
        .arg(&bz2)
        .run()?;
    let text = fs::read(&env).map_err(Error::io(&env))?;
    fs::write(&env, environment_without_host_features(&text)).map_err(Error::io(&env))?;
    exec::Cmd::new("bzip2").args(["-9", "-f"]).arg(&env).run()?;
    Ok(())
}

/// Normalize the database of `root`: always drop `/var/cache/edb`, the `metadata` caches
/// and `BINPKGMD5` (build artifacts that say nothing about the image), the
/// [`HOST_FEATURES`], and sort `CONTENTS`, `NEEDED` and `NEEDED.ELF.2`;
/// with `SOURCE_DATE_EPOCH = epoch`, also clamp the recorded times.
pub fn normalize(root: &Path, epoch: Option<i64>) -> Result<(), Error> {
    for d in ["var", "var/cache"] {
        real_dir(&root.join(d))?;
    }
    let edb = root.join("var/cache/edb");
    if real_dir(&edb)? {
        fs::remove_dir_all(&edb).map_err(Error::io(&edb))?;
    }
    let vdb = root.join("var/db/pkg");
    for d in ["var/db", "var/db/pkg"] {
        if !real_dir(&root.join(d))? {
            return Ok(());
        }
    }
    for cat in fs::read_dir(&vdb).map_err(Error::io(&vdb))? {
        let cat = cat.map_err(Error::io(&vdb))?.path();
        if !real_dir(&cat)? {
            continue;
        }
        for pkg in fs::read_dir(&cat).map_err(Error::io(&cat))? {
            let pkg = pkg.map_err(Error::io(&cat))?.path();
            if !real_dir(&pkg)? {
                continue;
            }
            for name in ["metadata", "BINPKGMD5"] {
                let f = pkg.join(name);
                if fs::symlink_metadata(&f).is_ok_and(|m| m.is_file()) {
                    fs::remove_file(&f).map_err(Error::io(&f))?;
                }
            }
            rewrite(&pkg.join("CONTENTS"), |t| normalize_contents(t, epoch))?;
            drop_host_features(&pkg)?;
            for name in ["NEEDED", "NEEDED.ELF.2"] {
                rewrite(&pkg.join(name), normalize_needed)?;
            }
            let Some(epoch) = epoch else { continue };
            rewrite(&pkg.join("BUILD_TIME"), |t| {
                if t.trim().parse::<i64>().is_ok_and(|t| t > epoch) {
                    format!("{epoch}\n")
                } else {
                    t.to_owned()
                }
            })?;
        }
    }
    Ok(())
}

/// The most a package database file may hold (a `CONTENTS` of a very large package is a
/// few MiB).
const DB_FILE_LIMIT: u64 = 64 << 20;

/// The packages installed in `root` (the build record's package list): name and version
/// from the database directory's name, the installed size from `SIZE`, the paths from
/// `CONTENTS` (every entry but directories). Read through a handle on `root`: a link in
/// the database never leads out of it.
pub fn packages(root: &Path) -> Result<Vec<record::Package>, Error> {
    let r = rootdir::Root::open(root)?;
    let vdb = Path::new("var/db/pkg");
    let mut out = Vec::new();
    if !r.is_dir(vdb) {
        return Ok(out);
    }
    for cat in r.names(vdb)? {
        let cat_dir = vdb.join(&cat);
        if !r.is_dir(&cat_dir) {
            continue;
        }
        for pf in r.names(&cat_dir)? {
            let dir = cat_dir.join(&pf);
            if pf.starts_with('-') || !r.is_dir(&dir) {
                continue;
            }
            let atom = pkgsets::atom::Atom::parse(&format!("={cat}/{pf}"), Default::default())
                .map_err(|e| {
                    Error::Config(format!(
                        "{}: not a package's database entry: {e}",
                        r.display(&dir).display()
                    ))
                })?;
            let version = pf
                .strip_prefix(atom.package())
                .and_then(|v| v.strip_prefix('-'))
                .unwrap_or_default()
                .to_owned();
            let text = |name: &str| -> Result<String, Error> {
                let f = dir.join(name);
                if !r.is_file(&f) {
                    return Ok(String::new());
                }
                let bytes = r.read(&f, DB_FILE_LIMIT, "a package database file")?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            };
            let size = text("SIZE")?.trim().parse().unwrap_or(0);
            let files = text("CONTENTS")?
                .lines()
                .filter_map(contents_path)
                .collect();
            out.push(record::Package {
                name: atom.key().to_owned(),
                version,
                size,
                files,
            });
        }
    }
    Ok(out)
}

/// The path of a `CONTENTS` line that is not a directory: `obj PATH MD5 MTIME`,
/// `sym PATH -> TARGET MTIME`, `fif PATH`, `dev PATH`.
pub fn contents_path(line: &str) -> Option<String> {
    let (kind, rest) = line.split_at_checked(4)?;
    let path = match kind {
        "obj " => {
            let mut it = rest.rsplitn(3, ' ');
            let (_mtime, _md5) = (it.next()?, it.next()?);
            it.next()?
        }
        "sym " => rest.rsplit_once(' ')?.0.split_once(" -> ")?.0,
        "fif " | "dev " => rest,
        _ => return None,
    };
    Some(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_lines() {
        assert_eq!(
            clamp_contents_line("obj /usr/bin/x 0123abcd 1795883908", 100),
            "obj /usr/bin/x 0123abcd 100"
        );
        assert_eq!(
            clamp_contents_line("obj /usr/bin/a b 0123abcd 50", 100),
            "obj /usr/bin/a b 0123abcd 50"
        );
        assert_eq!(
            clamp_contents_line("sym /usr/bin/sh -> bash 1795883921", 100),
            "sym /usr/bin/sh -> bash 100"
        );
        assert_eq!(clamp_contents_line("dir /usr/bin", 100), "dir /usr/bin");
    }

    #[test]
    fn host_features_are_taken_out() {
        assert_eq!(without_host_features("a distcc z"), "a network-sandbox z");
        assert_eq!(
            without_host_features("a distcc network-sandbox z"),
            "a network-sandbox z"
        );
        assert_eq!(
            without_host_features("b a"),
            "b a",
            "untouched without distcc"
        );
        let env = b"X=1\ndeclare -x FEATURES=\"a distcc b\"\ndeclare -x PORTAGE_FEATURES=\"distcc\"\n\xff\n";
        assert_eq!(
            environment_without_host_features(env),
            b"X=1\ndeclare -x FEATURES=\"a b network-sandbox\"\ndeclare -x PORTAGE_FEATURES=\"network-sandbox\"\n\xff\n"
        );
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("FEATURES"), "a distcc b\n").unwrap();
        fs::write(p.join("environment"), env).unwrap();
        exec::Cmd::new("bzip2")
            .arg("-9")
            .arg(p.join("environment"))
            .run()
            .unwrap();
        drop_host_features(p).unwrap();
        assert_eq!(
            fs::read_to_string(p.join("FEATURES")).unwrap(),
            "a b network-sandbox\n"
        );
        assert!(!p.join("environment").exists());
        let o = exec::Cmd::new("bzip2")
            .arg("-dc")
            .arg(p.join("environment.bz2"))
            .output()
            .unwrap();
        assert!(
            o.stdout
                .contains("declare -x FEATURES=\"a b network-sandbox\"\n"),
            "{}",
            o.stdout
        );
    }

    #[test]
    fn contents_in_path_order() {
        let text = "obj /usr/bin/x a 5\ndir /usr/bin\nsym /usr/bin/sh -> bash 9\ndir /usr\n";
        assert_eq!(
            normalize_contents(text, Some(7)),
            "dir /usr\ndir /usr/bin\nsym /usr/bin/sh -> bash 7\nobj /usr/bin/x a 5\n"
        );
        assert_eq!(
            normalize_contents(text, None),
            "dir /usr\ndir /usr/bin\nsym /usr/bin/sh -> bash 9\nobj /usr/bin/x a 5\n"
        );
    }

    #[test]
    fn needed_in_line_order() {
        let text = "x86_64;/usr/lib64/libselinux.so.1;libselinux.so.1;;libc.so.6\n\
                    x86_64;/usr/bin/getenforce;;;libselinux.so.1,libc.so.6\n";
        assert_eq!(
            normalize_needed(text),
            "x86_64;/usr/bin/getenforce;;;libselinux.so.1,libc.so.6\n\
             x86_64;/usr/lib64/libselinux.so.1;libselinux.so.1;;libc.so.6\n"
        );
        assert_eq!(normalize_needed(""), "");
    }

    #[test]
    fn normalizes_and_refuses_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let p = r.join("var/db/pkg/app-shells/bash-5");
        fs::create_dir_all(&p).unwrap();
        fs::create_dir_all(r.join("var/cache/edb")).unwrap();
        fs::write(r.join("var/cache/edb/mtimedb"), "x").unwrap();
        fs::write(p.join("CONTENTS"), "dir /usr\nobj /usr/bin/bash abc 2000\n").unwrap();
        fs::write(p.join("BUILD_TIME"), "2000\n").unwrap();
        fs::write(p.join("metadata"), "#dir_mtime=1\n").unwrap();
        fs::write(p.join("BINPKGMD5"), "0123\n").unwrap();
        fs::write(p.join("NEEDED"), "/usr/lib64/b.so c\n/usr/bin/a b\n").unwrap();
        normalize(r, Some(1000)).unwrap();
        assert_eq!(
            fs::read_to_string(p.join("NEEDED")).unwrap(),
            "/usr/bin/a b\n/usr/lib64/b.so c\n"
        );
        assert_eq!(
            fs::read_to_string(p.join("CONTENTS")).unwrap(),
            "dir /usr\nobj /usr/bin/bash abc 1000\n"
        );
        assert_eq!(fs::read_to_string(p.join("BUILD_TIME")).unwrap(), "1000\n");
        assert!(
            !p.join("metadata").exists()
                && !p.join("BINPKGMD5").exists()
                && !r.join("var/cache/edb").exists()
        );

        let outside = tempfile::tempdir().unwrap();
        let e = tempfile::tempdir().unwrap();
        fs::create_dir_all(e.path().join("var/db")).unwrap();
        std::os::unix::fs::symlink(outside.path(), e.path().join("var/db/pkg")).unwrap();
        assert!(normalize(e.path(), Some(1000)).is_err());
    }

    #[test]
    fn contents_lines_give_their_paths() {
        assert_eq!(
            contents_path("obj /usr/bin/a b 0123abcd 1700000000").as_deref(),
            Some("/usr/bin/a b")
        );
        assert_eq!(
            contents_path("sym /usr/lib/x.so -> x.so.1 1700000000").as_deref(),
            Some("/usr/lib/x.so")
        );
        assert_eq!(contents_path("dir /usr/bin"), None);
        assert_eq!(contents_path("fif /run/f").as_deref(), Some("/run/f"));
        assert_eq!(contents_path("obj"), None);
    }
}
