//! Specifier expansion (`%m`, `%o`, `%t`, ...). Values come from the caller: the target
//! root's `/etc/machine-id` and `os-release`, fixed system-instance values, and the few
//! that systemd takes from the running host at build time (`%b %H %l %v %a`).

use std::collections::BTreeMap;

/// Why a specifier could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecError {
    /// Not a specifier tmpfiles.d knows: the line is invalid.
    Unknown(char),
    /// Known but without a value here (e.g. no machine-id in the root): systemd skips the
    /// line quietly.
    Unresolvable(char),
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecError::Unknown(c) => write!(f, "unknown specifier '%{c}'"),
            SpecError::Unresolvable(c) => write!(f, "failed to resolve specifier '%{c}'"),
        }
    }
}

/// Host facts systemd reads from the running system even with `--root`.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub boot_id: Option<String>,
    pub hostname: Option<String>,
    pub kernel_release: Option<String>,
}

/// The value of every specifier tmpfiles.d accepts; None = unresolvable.
#[derive(Debug, Clone, Default)]
pub struct Specifiers {
    values: BTreeMap<char, Option<String>>,
}

/// systemd's architecture name for the architecture Keel was built for.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

/// Parse `os-release` (KEY=value lines, values optionally quoted).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = match crate::escape::extract_word(v) {
                Ok(Some((w, _))) => w,
                _ => v.to_owned(),
            };
            m.insert(k.trim().to_owned(), v);
        }
    }
    m
}

impl Specifiers {
    /// Values for the system instance run against a root whose `os-release` and
    /// `machine-id` contents are given (None when the file is missing).
    pub fn system(os_release: Option<&str>, machine_id: Option<&str>, host: &Host) -> Specifiers {
        let mut v: BTreeMap<char, Option<String>> = BTreeMap::new();
        let os = os_release.map(parse_os_release);
        let field = |k: &str, empty_ok: bool| -> Option<String> {
            let os = os.as_ref()?;
            match os.get(k) {
                Some(x) => Some(x.clone()),
                None if empty_ok => Some(String::new()),
                None => None,
            }
        };
        v.insert('a', Some(architecture().into()));
        v.insert('A', field("IMAGE_VERSION", true));
        v.insert('b', host.boot_id.clone());
        v.insert('B', field("BUILD_ID", true));
        v.insert('C', Some("/var/cache".into()));
        v.insert('g', Some("root".into()));
        v.insert('G', Some("0".into()));
        v.insert('h', Some("/root".into()));
        v.insert('H', host.hostname.clone());
        v.insert(
            'l',
            host.hostname
                .as_ref()
                .map(|h| h.split('.').next().unwrap_or("").to_owned()),
        );
        v.insert('L', Some("/var/log".into()));
        let mid = machine_id
            .map(str::trim)
            .filter(|m| m.len() == 32 && m.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_ascii_lowercase);
        v.insert('m', mid);
        v.insert('M', field("IMAGE_ID", true));
        v.insert('o', field("ID", true));
        v.insert('S', Some("/var/lib".into()));
        v.insert('t', Some("/run".into()));
        v.insert('T', Some("/tmp".into()));
        v.insert('u', Some("root".into()));
        v.insert('U', Some("0".into()));
        v.insert('v', host.kernel_release.clone());
        v.insert('V', Some("/var/tmp".into()));
        v.insert('w', field("VERSION_ID", true));
        v.insert('W', field("VARIANT_ID", true));
        Specifiers { values: v }
    }

    /// Override one value (tests, or a pipeline that knows better).
    pub fn set(&mut self, c: char, value: Option<String>) {
        self.values.insert(c, value);
    }

    /// Expand `%X` and `%%`; a lone `%` at the end stays.
    pub fn expand(&self, s: &str) -> Result<String, SpecError> {
        if !s.contains('%') {
            return Ok(s.to_owned());
        }
        let mut out = String::with_capacity(s.len());
        let mut it = s.chars();
        while let Some(c) = it.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match it.next() {
                None => out.push('%'),
                Some('%') => out.push('%'),
                Some(k) => match self.values.get(&k) {
                    None => return Err(SpecError::Unknown(k)),
                    Some(None) => return Err(SpecError::Unresolvable(k)),
                    Some(Some(v)) => out.push_str(v),
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion() {
        let s = Specifiers::system(
            Some("ID=keel\nVERSION_ID=\"1.0\"\n"),
            Some("0123456789abcdef0123456789ABCDEF\n"),
            &Host::default(),
        );
        assert_eq!(
            s.expand("/run/%o-%w/%m").unwrap(),
            "/run/keel-1.0/0123456789abcdef0123456789abcdef"
        );
        assert_eq!(s.expand("%S/%%x%").unwrap(), "/var/lib/%x%");
        assert_eq!(s.expand("%B").unwrap(), "");
        assert_eq!(s.expand("%Y"), Err(SpecError::Unknown('Y')));
        assert_eq!(s.expand("%b"), Err(SpecError::Unresolvable('b')));
        let none = Specifiers::system(None, None, &Host::default());
        assert_eq!(none.expand("%m"), Err(SpecError::Unresolvable('m')));
        assert_eq!(none.expand("%o"), Err(SpecError::Unresolvable('o')));
    }
}
