//! The `variant.toml` schema. Pure: parses text, does no I/O.
//!
//! Every key is optional. Unknown keys and wrong types are errors naming the file and line.
//! Along an inheritance chain a scalar takes the nearest variant's value (the variant's
//! own, else its parent's, ...); `etc-writable` lists append, ancestors first.

use serde::Deserialize;
use std::fmt;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct VariantToml {
    /// One line saying what the variant is for.
    pub description: Option<String>,
    /// The parent variant's name (its directory under `variants/`).
    pub inherits: Option<toml::Spanned<String>>,
    /// `gentoo` (Portage backend) or `debian` (mmdebstrap backend).
    pub distribution: Option<Distribution>,
    /// Debian suite (e.g. `bookworm`); only for `distribution = "debian"`.
    pub suite: Option<String>,
    /// Portage profile, relative to the main repository's `profiles/` directory.
    pub profile: Option<String>,
    /// The target's CHOST. A build for another CHOST than the host's is a cross build.
    pub chost: Option<String>,
    /// `false`: no Python interpreter or module may reach the image.
    pub python: Option<bool>,
    /// Paths under `/etc` that are writable at run time (they join the tmpfiles mutable prefixes).
    pub etc_writable: Option<Vec<String>>,
    pub image: Option<ImageToml>,
    /// A bootable disk image beside the image (docs/disk.md).
    pub disk: Option<DiskToml>,
    pub selinux: Option<SelinuxToml>,
    pub hooks: Option<HooksToml>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Distribution {
    Gentoo,
    Debian,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ImageFormat {
    Squashfs,
    Erofs,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageToml {
    /// `squashfs` (default) or `erofs`.
    pub format: Option<ImageFormat>,
    /// squashfs pseudo-file definitions (mksquashfs `-pf`), relative to the variant directory.
    pub pseudo_files: Option<String>,
}

/// `[disk]`: a GPT disk with systemd-boot, A/B root slots with dm-verity and a /var made on
/// first boot (docs/disk.md). Sizes are bytes, or a number with `K`, `M`, `G` or `T`
/// (powers of 1024), as systemd-repart writes them.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskToml {
    /// The EFI system partition: systemd-boot and a unified kernel image per version.
    pub esp_size: Option<toml::Spanned<String>>,
    /// Each root slot (A and B); its dm-verity hash partition is sized from it.
    pub root_size: Option<toml::Spanned<String>>,
    /// The space the disk leaves for /var, which the image makes on first boot.
    pub var_size: Option<toml::Spanned<String>>,
    /// The filesystem of /var: `btrfs`.
    pub var_format: Option<VarFormat>,
    /// Where installed disks update from (systemd-sysupdate: `http://` or `https://`, the
    /// directory that serves the update sets); none: the image carries no transfers.
    pub update_url: Option<toml::Spanned<String>>,
    /// Line of the `[disk]` header (set by [`parse`]).
    #[serde(skip)]
    pub line: usize,
    /// Lines of `esp-size`, `root-size`, `var-size` (set by [`parse`]; 0: not set).
    #[serde(skip)]
    pub size_lines: [usize; 3],
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VarFormat {
    Btrfs,
}

impl fmt::Display for VarFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VarFormat::Btrfs => "btrfs",
        })
    }
}

/// A size as systemd-repart writes it: bytes, or a number with `K`, `M`, `G` or `T`
/// (powers of 1024). `None`: not a size, or zero.
pub fn size_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last()? {
        (i, 'K') => (&s[..i], 10),
        (i, 'M') => (&s[..i], 20),
        (i, 'G') => (&s[..i], 30),
        (i, 'T') => (&s[..i], 40),
        _ => (s, 0),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    n.checked_mul(1u64 << shift).filter(|&b| b > 0)
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SelinuxToml {
    /// Label the image and ship an SELinux configuration.
    pub enabled: Option<bool>,
    /// `SELINUXTYPE=` of the image (`mcs`).
    pub policy_type: Option<String>,
    /// `SELINUX=` of the image: `enforcing` or `permissive`.
    pub mode: Option<SelinuxMode>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SelinuxMode {
    Enforcing,
    Permissive,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HooksToml {
    /// Runs after the tree is complete, before the image (relative to the variant directory).
    pub customize: Option<String>,
    /// Runs after the image is written.
    pub post_build: Option<String>,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Gentoo => "gentoo",
            Distribution::Debian => "debian",
        })
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageFormat::Squashfs => "squashfs",
            ImageFormat::Erofs => "erofs",
        })
    }
}

impl fmt::Display for SelinuxMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelinuxMode::Enforcing => "enforcing",
            SelinuxMode::Permissive => "permissive",
        })
    }
}

/// A `variant.toml` that does not follow the schema: `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct SchemaError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parse a `variant.toml`; `file` is the name used in messages.
pub fn parse(file: &str, text: &str) -> Result<VariantToml, SchemaError> {
    let mut v: VariantToml = toml::from_str(text).map_err(|e| SchemaError {
        file: file.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
        message: e.message().trim().to_owned(),
    })?;
    let err = |line, message: String| SchemaError {
        file: file.to_owned(),
        line,
        message,
    };
    let key_line = |key: &str| {
        text.lines()
            .position(|l| {
                l.trim_start().starts_with(key)
                    && l.trim_start()[key.len()..].trim_start().starts_with('=')
            })
            .map(|i| i + 1)
            .unwrap_or(1)
    };
    if let Some(paths) = &v.etc_writable {
        for p in paths {
            if !(p.starts_with("/etc/") && p.len() > 5)
                || p.split('/').any(|c| c == ".." || c == ".")
            {
                return Err(err(
                    key_line("etc-writable"),
                    format!("`etc-writable` entry `{p}` is not an absolute path under /etc/"),
                ));
            }
        }
    }
    if let Some(d) = &mut v.disk {
        d.line = text
            .lines()
            .position(|l| l.trim() == "[disk]")
            .map(|i| i + 1)
            .unwrap_or(1);
        for (i, (key, value)) in [
            ("esp-size", &d.esp_size),
            ("root-size", &d.root_size),
            ("var-size", &d.var_size),
        ]
        .into_iter()
        .enumerate()
        {
            if let Some(value) = value {
                d.size_lines[i] = line_of(text, value.span().start);
                if size_bytes(value.get_ref()).is_none() {
                    return Err(err(
                        line_of(text, value.span().start),
                        format!(
                            "[disk] `{key} = \"{}\"` is not a size (bytes, or a number with K, M, G or T)",
                            value.get_ref()
                        ),
                    ));
                }
            }
        }
    }
    if let Some(u) = v.disk.as_ref().and_then(|d| d.update_url.as_ref()) {
        let url = u.get_ref();
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(err(
                line_of(text, u.span().start),
                format!("[disk] `update-url = \"{url}\"` is not an http:// or https:// URL"),
            ));
        }
    }
    if let Some(inh) = &v.inherits {
        if !valid_name(inh.get_ref()) {
            return Err(err(
                line_of(text, inh.span().start),
                format!("`inherits = \"{}\"` is not a variant name", inh.get_ref()),
            ));
        }
    }
    Ok(v)
}

/// Variant names: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse("v/variant.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn disk_table() {
        let v = parse(
            "f",
            "description = \"x\"\n\n[disk]\nesp-size = \"128M\"\nroot-size = \"1073741824\"\nvar-format = \"btrfs\"\n",
        )
        .unwrap();
        let d = v.disk.unwrap();
        assert_eq!(d.line, 3);
        assert_eq!(size_bytes(d.esp_size.unwrap().get_ref()), Some(128 << 20));
        assert_eq!(size_bytes(d.root_size.unwrap().get_ref()), Some(1 << 30));
        assert_eq!(d.var_format, Some(VarFormat::Btrfs));
        let e = err("[disk]\nroot-size = \"1G\"\nvar-format = \"ext9\"\n");
        assert!(
            e.starts_with("v/variant.toml:3: ") && e.contains("ext9") && e.contains("btrfs"),
            "{e}"
        );
        let e = err("[disk]\n\nroot-size = \"12Q\"\n");
        assert!(
            e.starts_with("v/variant.toml:3: [disk] `root-size = \"12Q\"` is not a size"),
            "{e}"
        );
        let e = err("[disk]\nupdate-url = \"ftp://x/\"\n");
        assert!(
            e.starts_with("v/variant.toml:2: [disk] `update-url = \"ftp://x/\"` is not an http"),
            "{e}"
        );
        for bad in ["", "0", "M", "-1G", "1.5G", "99999999999T"] {
            assert_eq!(size_bytes(bad), None, "{bad}");
        }
        assert_eq!(size_bytes("4K"), Some(4096));
    }

    #[test]
    fn full_schema_parses() {
        let v = parse(
            "f",
            r#"
description = "x"
inherits = "base"
distribution = "gentoo"
profile = "default/linux/amd64/23.0/systemd"
chost = "x86_64-pc-linux-gnu"
python = false
etc-writable = ["/etc/ssh"]
[image]
format = "erofs"
pseudo-files = "pseudo"
[selinux]
enabled = true
policy-type = "mcs"
mode = "enforcing"
[hooks]
customize = "c.sh"
post-build = "p.sh"
"#,
        )
        .unwrap();
        assert_eq!(v.inherits.unwrap().into_inner(), "base");
        assert_eq!(v.image.unwrap().format, Some(ImageFormat::Erofs));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = err("description = \"x\"\n\nsurprise = 1\n");
        assert!(
            e.starts_with("v/variant.toml:3: unknown field `surprise`"),
            "{e}"
        );
        let e = err("[image]\nformat = \"squashfs\"\ncolour = \"red\"\n");
        assert!(
            e.starts_with("v/variant.toml:3: unknown field `colour`"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_line() {
        let e = err("description = \"x\"\npython = \"no\"\n");
        assert!(
            e.starts_with("v/variant.toml:2: invalid type: string \"no\", expected a boolean"),
            "{e}"
        );
        let e = err("[image]\nformat = \"zip\"\n");
        assert!(
            e.starts_with("v/variant.toml:2: unknown variant `zip`"),
            "{e}"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let e = err("a = \"x\"\nb = \n");
        assert!(e.starts_with("v/variant.toml:2:"), "{e}");
    }

    #[test]
    fn bad_values() {
        assert_eq!(
            err("\netc-writable = [\"/var/x\"]\n"),
            "v/variant.toml:2: `etc-writable` entry `/var/x` is not an absolute path under /etc/"
        );
        assert_eq!(
            err("inherits = \"Base!\"\n"),
            "v/variant.toml:1: `inherits = \"Base!\"` is not a variant name"
        );
    }
}
