//! The packages installed in a Debian root, from dpkg's own database (the build record's
//! package list).

use crate::Error;
use std::path::Path;

/// The most a dpkg database file may hold.
const DB_FILE_LIMIT: u64 = 256 << 20;

/// dpkg's status paragraphs of installed packages: `(name, architecture, version,
/// installed size in KiB)`.
pub fn installed(status: &str) -> Vec<(String, String, String, u64)> {
    let mut out = Vec::new();
    for para in status.split("\n\n") {
        let field = |key: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let (Some(name), Some(state)) = (field("Package"), field("Status")) else {
            continue;
        };
        if !state.ends_with(" installed") {
            continue;
        }
        out.push((
            name,
            field("Architecture").unwrap_or_default(),
            field("Version").unwrap_or_default(),
            field("Installed-Size")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        ));
    }
    out
}

/// The packages installed in `root`: name, version and size from `var/lib/dpkg/status`,
/// the paths from `var/lib/dpkg/info/<name>[:<arch>].list` (directories included: the
/// caller knows which paths are directories). Read through a handle on `root`.
pub fn packages(root: &Path) -> Result<Vec<record::Package>, Error> {
    let r = rootdir::Root::open(root)?;
    let read = |rel: &str| -> Result<Option<String>, Error> {
        let rel = Path::new(rel);
        if !r.is_file(rel) {
            return Ok(None);
        }
        let bytes = r.read(rel, DB_FILE_LIMIT, "a dpkg database file")?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    };
    let Some(status) = read("var/lib/dpkg/status")? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (name, arch, version, kib) in installed(&status) {
        let list = match read(&format!("var/lib/dpkg/info/{name}.list"))? {
            Some(l) => Some(l),
            None => read(&format!("var/lib/dpkg/info/{name}:{arch}.list"))?,
        };
        let files = list
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with('/') && *l != "/.")
            .map(str::to_owned)
            .collect();
        out.push(record::Package {
            name,
            version,
            size: kib * 1024,
            files,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn installed_paragraphs_only() {
        let status = "Package: a\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\nInstalled-Size: 12\nDescription: x\n y\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n";
        assert_eq!(
            super::installed(status),
            vec![("a".into(), "amd64".into(), "1.0".into(), 12)]
        );
    }
}
