//! The machine's own settings: a binhost to take packages from, a key to sign published
//! packages with, distcc hosts to compile on. They belong to the machine, not to the OS a variant describes, so they
//! live outside the project: flags of `keel build`/`keel publish`, or the machine's
//! config file (docs/scale-out.md):
//!
//! 1. `$KEEL_CONFIG` when set (empty: no config file),
//! 2. else `$XDG_CONFIG_HOME/keel/config.toml` (`~/.config/keel/config.toml`) when it exists,
//! 3. else `/etc/keel/config.toml` when it exists.
//!
//! ```toml
//! [binhost]
//! url = "http://binhost.example/selinux"   # where Packages is
//! key = "/etc/keel/binhost.asc"            # its public key (relative: to this file)
//! only = false                             # true: compile nothing
//!
//! [publish]
//! signing-key = "0xKEYID"                  # gpg --local-user
//! gpg-home = "/root/.gnupg"
//!
//! [distcc]
//! hosts = "192.168.0.2/8 192.168.0.3/8"   # DISTCC_HOSTS
//! ```
//!
//! A flag wins over the file.

use anyhow::{anyhow, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `keel build`'s site flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildArgs {
    /// Take binary packages from this Portage binhost (its `Packages` index is at URL/Packages); signatures are verified
    #[arg(long, value_name = "URL")]
    pub binhost: Option<String>,
    /// The public key the binhost's packages are signed with (a file `gpg --import` reads)
    #[arg(long, value_name = "FILE")]
    pub binhost_key: Option<PathBuf>,
    /// Compile nothing: fail before the sysroot emerge, naming every package the binhost does not have
    #[arg(long)]
    pub binhost_only: bool,
    /// Send the sysroot's compiles to these distcc hosts (DISTCC_HOSTS syntax: "host[:port][/jobs] ...")
    #[arg(long, value_name = "HOSTS")]
    pub distcc: Option<String>,
}

/// `keel publish`'s signing flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SignArgs {
    /// Sign every package with this GnuPG key (`gpg --local-user`)
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<String>,
    /// The GnuPG home that holds the signing key [default: $GNUPGHOME or ~/.gnupg]
    #[arg(long, value_name = "DIR")]
    pub gpg_home: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    binhost: Option<BinhostTable>,
    publish: Option<PublishTable>,
    distcc: Option<DistccTable>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DistccTable {
    hosts: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BinhostTable {
    url: Option<String>,
    key: Option<PathBuf>,
    only: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct PublishTable {
    signing_key: Option<String>,
    gpg_home: Option<PathBuf>,
}

/// The config file in use, if any.
fn config_path() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("KEEL_CONFIG") {
        return (!v.is_empty()).then(|| PathBuf::from(v));
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")));
    [
        xdg.map(|d| d.join("keel/config.toml")),
        Some(PathBuf::from("/etc/keel/config.toml")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// The config file, parsed, and its directory (relative paths are relative to it).
fn load() -> Result<(File, PathBuf)> {
    let Some(path) = config_path() else {
        return Ok((File::default(), PathBuf::new()));
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let file: File = toml::from_str(&text)
        .map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
    let dir = path.parent().map(Path::to_owned).unwrap_or_default();
    Ok((file, dir))
}

/// The site settings of a build: the flags, then the config file.
pub fn build_site(args: &BuildArgs) -> Result<pipeline::Site> {
    let (file, dir) = load()?;
    let table = file.binhost.unwrap_or_default();
    let cwd = std::env::current_dir()?;
    let url = args.binhost.clone().or(table.url);
    let key = match (&args.binhost_key, table.key) {
        (Some(k), _) => Some(cwd.join(k)),
        (None, Some(k)) => Some(dir.join(k)),
        (None, None) => None,
    };
    let only = args.binhost_only || table.only.unwrap_or(false);
    let binhost = match (url, key) {
        (None, None) if !only => None,
        (Some(url), Some(key)) => Some(pipeline::Binhost { url, key, only }),
        (None, _) => {
            return Err(anyhow!(
                "no binhost URL: --binhost-only and --binhost-key need --binhost URL (or `url` in the [binhost] table of the config file{})",
                shown(config_path())
            ))
        }
        (Some(url), None) => {
            return Err(anyhow!(
                "the binhost {url} has no key: its packages are verified against the key they are signed with (--binhost-key FILE, or `key` in the [binhost] table of the config file{})",
                shown(config_path())
            ))
        }
    };
    let distcc = args
        .distcc
        .clone()
        .or(file.distcc.unwrap_or_default().hosts);
    Ok(pipeline::Site { binhost, distcc })
}

/// How `keel publish` signs: the flags, then the config file; none is no signing.
pub fn signing(args: &SignArgs) -> Result<Option<portage::binhost::Signing>> {
    let (file, dir) = load()?;
    let table = file.publish.unwrap_or_default();
    let cwd = std::env::current_dir()?;
    let gpg_home = match (&args.gpg_home, table.gpg_home) {
        (Some(h), _) => Some(cwd.join(h)),
        (None, Some(h)) => Some(dir.join(h)),
        (None, None) => None,
    };
    Ok(args
        .sign_key
        .clone()
        .or(table.signing_key)
        .map(|key| portage::binhost::Signing { key, gpg_home }))
}

fn shown(p: Option<PathBuf>) -> String {
    p.map(|p| format!(" {}", p.display())).unwrap_or_default()
}
