//! Binary packages shared between machines through a Portage binhost (docs/scale-out.md).
//!
//! Publishing ([`publish`]): a copy of a variant's binary packages, each signed by
//! Portage's own `gpkg-sign` when a signing key is given, the `Packages` index Portage's
//! `emaint binhost --fix` writes for the copy, and Keel's record of the user patches the
//! packages were built with (`keel/patches`, signed too): a directory any static HTTP
//! server can serve.
//!
//! Consuming ([`prepare`]): a keyring made from the binhost's public key, in which only
//! that key is trusted; `binrepos.conf` with `verify-signature = true` in the sysroot's
//! configuration root; `emerge --getbinpkg`. Portage verifies each package it downloads,
//! and, since a signed package is verified wherever Portage reads it, every later use of
//! the variant's binary packages gets the keyring too ([`verify_env`]).

use crate::{Error, Portage};
use exec::Cmd;
use stage::{Binhost, Layout};
use std::fs;
use std::path::{Path, PathBuf};

/// The binhost's section in `binrepos.conf`.
pub const REPO_NAME: &str = "keel-binhost";

/// Where a published binhost keeps Keel's record of user patches (beside `Packages`).
pub const PATCHES: &str = "keel/patches";

/// A GnuPG key to sign published packages with.
#[derive(Debug, Clone)]
pub struct Signing {
    /// A key id, fingerprint or user id `gpg --local-user` takes.
    pub key: String,
    /// The GnuPG home holding its secret key (default: GnuPG's, `~/.gnupg`).
    pub gpg_home: Option<PathBuf>,
}

impl Signing {
    fn home(&self) -> PathBuf {
        self.gpg_home.clone().unwrap_or_else(|| {
            std::env::var_os("GNUPGHOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    Path::new(&std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                        .join(".gnupg")
                })
        })
    }
}

/// The keyring made from the binhost's key.
pub fn keyring_dir(layout: &Layout) -> PathBuf {
    layout.binhost_dir().join("gnupg")
}

/// `c` with the settings Portage verifies signed packages with, when this variant's binary
/// packages came (partly) from a binhost: its keyring (`BINPKG_GPG_VERIFY_GPG_HOME`), gpg
/// run as the build's user (Portage would switch to `nobody`, who may not enter the
/// directories a build lives in), and no trust helper (`getuto` makes Gentoo's keyring,
/// not this one).
pub fn verify_env(layout: &Layout, c: Cmd) -> Cmd {
    let keyring = keyring_dir(layout);
    if !keyring.is_dir() {
        return c;
    }
    verify_with(c, &keyring)
}

/// The settings [`verify_env`] changes. They are the build machine's, not the packages':
/// every build unsets them for the ebuilds (`ENV_UNSET` in `make.conf/00-keel`), or Portage
/// would save them, with the keyring's path in the project's directory, in the environment
/// of every package compiled once a binhost was used.
pub const VERIFY_SETTINGS: [&str; 4] = [
    "BINPKG_GPG_VERIFY_GPG_HOME",
    "GPG_VERIFY_USER_DROP",
    "GPG_VERIFY_GROUP_DROP",
    "PORTAGE_TRUST_HELPER",
];

fn verify_with(c: Cmd, keyring: &Path) -> Cmd {
    let [home, user, group, helper] = VERIFY_SETTINGS;
    c.env(home, keyring)
        .env(user, "")
        .env(group, "")
        .env(helper, "")
}

fn gpg(home: &Path) -> Cmd {
    Cmd::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args(["--batch", "--no-tty"])
}

/// What a published binhost holds.
#[derive(Debug, Clone)]
pub struct Published {
    pub dir: PathBuf,
    pub packages: usize,
    pub signed_by: Option<String>,
}

/// Whether the variant of `l` has been built: binary packages with their index, and the
/// sysroot configuration [`publish`] indexes them with.
pub fn publishable(l: &Layout) -> Result<(), Error> {
    let pkgdir = l.pkgdir();
    let config = l.config_root("sysroot").join("etc/portage");
    if pkgdir.join("Packages").is_file() && config.is_dir() {
        return Ok(());
    }
    Err(Error::Config(format!(
        "variant `{}` has no binary packages to publish in {} (build it first: keel build --variant {})",
        l.variant,
        pkgdir.display(),
        l.variant
    )))
}

/// Publish `portage`'s variant's binary packages into `to` (made beside it as
/// `<to>.partial` and renamed when complete; an existing `to` is replaced). The variant
/// must have been built: the index is written with its sysroot configuration.
pub fn publish(
    portage: &Portage,
    signing: Option<&Signing>,
    to: &Path,
    log: &Path,
) -> Result<Published, Error> {
    let l = &portage.layout;
    publishable(l)?;
    let pkgdir = l.pkgdir();
    let name = to
        .file_name()
        .ok_or_else(|| Error::Config(format!("--to {}: not a directory name", to.display())))?;
    let partial = to.with_file_name(format!("{}.partial", name.to_string_lossy()));
    remove_all(&partial)?;
    if let Some(parent) = partial.parent() {
        fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    Cmd::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(&pkgdir)
        .arg(&partial)
        .log(log)
        .run()?;
    let mut packages = Vec::new();
    gpkgs(&partial, &mut packages)?;
    packages.sort();
    let root = l.sysroot();
    if let Some(s) = signing {
        let home = s.home();
        for p in &packages {
            portage
                .tool("gpkg-sign", "sysroot", &root)
                .env("BINPKG_GPG_SIGNING_GPG_HOME", &home)
                .env("BINPKG_GPG_SIGNING_KEY", &s.key)
                .arg(p)
                .log(log)
                .run()
                .map_err(|cause| Error::Binhost {
                    message: format!(
                        "signing {} with key `{}` (GnuPG home {}) failed",
                        p.display(),
                        s.key,
                        home.display()
                    ),
                    cause,
                })?;
        }
    }
    // The index of the copy, by Portage: signing changed every package's size and digests.
    // Portage verifies each signed package as it reads it, here with the signer's own
    // keyring: a package it cannot verify would be left out of the index.
    let mut index = portage
        .tool("emaint", "sysroot", &root)
        .env("PKGDIR", &partial);
    if let Some(s) = signing {
        index = verify_with(index, &s.home());
    }
    index.args(["binhost", "--fix"]).log(log).run()?;
    let indexed = count_indexed(&partial.join("Packages"))?;
    if indexed != packages.len() {
        return Err(Error::Config(format!(
            "Portage indexed {indexed} of the {} binary packages in {} (see {}): is `{}` a key its GnuPG home trusts?",
            packages.len(),
            partial.display(),
            log.display(),
            signing.map(|s| s.key.as_str()).unwrap_or("")
        )));
    }
    let record = partial.join(PATCHES);
    fs::create_dir_all(record.parent().unwrap_or(&partial)).map_err(Error::io(&partial))?;
    let text = match fs::read(l.pkgdir_patches()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&l.pkgdir_patches())(e)),
    };
    fs::write(&record, text).map_err(Error::io(&record))?;
    if let Some(s) = signing {
        gpg(&s.home())
            .arg("--local-user")
            .arg(&s.key)
            .args(["--armor", "--detach-sign", "--output"])
            .arg(record.with_extension("asc"))
            .arg(&record)
            .log(log)
            .run()?;
    }
    let old = to.with_file_name(format!("{}.old", name.to_string_lossy()));
    remove_all(&old)?;
    if to.symlink_metadata().is_ok() {
        fs::rename(to, &old).map_err(Error::io(to))?;
    }
    fs::rename(&partial, to).map_err(Error::io(to))?;
    remove_all(&old)?;
    Ok(Published {
        dir: to.to_owned(),
        packages: packages.len(),
        signed_by: signing.map(|s| s.key.clone()),
    })
}

/// The packages a `Packages` index lists (its `CPV:` lines).
fn count_indexed(index: &Path) -> Result<usize, Error> {
    let text = fs::read_to_string(index).map_err(Error::io(index))?;
    Ok(text.lines().filter(|l| l.starts_with("CPV: ")).count())
}

fn remove_all(p: &Path) -> Result<(), Error> {
    match p.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(Error::io(p)),
        Ok(_) => fs::remove_file(p).map_err(Error::io(p)),
        Err(_) => Ok(()),
    }
}

/// The binary packages (`*.gpkg.tar`) under `dir`.
fn gpkgs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    for e in fs::read_dir(dir).map_err(Error::io(dir))? {
        let e = e.map_err(Error::io(dir))?;
        let ft = e.file_type().map_err(Error::io(&e.path()))?;
        if ft.is_dir() {
            gpkgs(&e.path(), out)?;
        } else if ft.is_file() && e.file_name().to_string_lossy().ends_with(".gpkg.tar") {
            out.push(e.path());
        }
    }
    Ok(())
}

/// The primary keys' fingerprints in `gpg --with-colons` output.
pub fn fingerprints(colons: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut primary = false;
    for l in colons.lines() {
        let f: Vec<&str> = l.split(':').collect();
        match f.first() {
            Some(&"pub") => primary = true,
            Some(&"sub") => primary = false,
            Some(&"fpr") if primary => {
                if let Some(fpr) = f.get(9).filter(|s| !s.is_empty()) {
                    out.push((*fpr).to_owned());
                }
                primary = false;
            }
            _ => {}
        }
    }
    out
}

/// Make the keyring of `bh`'s key again (only the key given now is trusted), check that the
/// binhost answers, and fetch and verify its record of user patches. Returns the record's
/// text (empty when the binhost has none). Then `binrepos.conf` goes into the sysroot's
/// configuration root (outside the fingerprinted configuration: a binhost changes where
/// packages come from, not what they are).
pub fn prepare(portage: &Portage, bh: &Binhost, log: &Path) -> Result<String, Error> {
    let l = &portage.layout;
    if !bh.key.is_file() {
        return Err(Error::Config(format!(
            "the binhost key {} does not exist (--binhost-key, or `key` in the config file's [binhost] table): the packages of {} cannot be verified without it",
            bh.key.display(),
            bh.url
        )));
    }
    let dir = l.binhost_dir();
    fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let keyring = keyring_dir(l);
    let new = dir.join("gnupg.new");
    remove_all(&new)?;
    fs::create_dir_all(&new).map_err(Error::io(&new))?;
    fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .map_err(Error::io(&new))?;
    let key_err = |cause| Error::Binhost {
        message: format!(
            "the binhost key {} is not an OpenPGP public key gpg can import",
            bh.key.display()
        ),
        cause,
    };
    gpg(&new)
        .arg("--import")
        .arg(&bh.key)
        .log(log)
        .run()
        .map_err(key_err)?;
    let listed = gpg(&new)
        .args(["--with-colons", "--list-keys"])
        .output()
        .map_err(key_err)?;
    let fprs = fingerprints(&listed.stdout);
    if fprs.is_empty() {
        return Err(Error::Config(format!(
            "the binhost key {} holds no public key",
            bh.key.display()
        )));
    }
    let trust = new.join("ownertrust.txt");
    let text: String = fprs.iter().map(|f| format!("{f}:6:\n")).collect();
    fs::write(&trust, text).map_err(Error::io(&trust))?;
    gpg(&new)
        .arg("--import-ownertrust")
        .arg(&trust)
        .log(log)
        .run()?;
    gpg(&new).arg("--check-trustdb").log(log).run()?;
    // gpg started an agent for the new home on the way; nothing here needs it.
    Cmd::new("gpgconf")
        .arg("--homedir")
        .arg(&new)
        .args(["--kill", "gpg-agent"])
        .log(log)
        .run()?;
    remove_all(&keyring)?;
    fs::rename(&new, &keyring).map_err(Error::io(&keyring))?;

    // The binhost answers with an index (Portage would only warn and compile everything).
    let url = bh.url.trim_end_matches('/');
    let index = dir.join("Packages");
    fetch(&format!("{url}/Packages"), &index, log)?.ok_or_else(|| {
        Error::Config(format!(
            "the binhost {url} has no Packages index ({url}/Packages: not found)"
        ))
    })?;
    let record = dir.join("patches");
    let record = match fetch(&format!("{url}/{PATCHES}"), &record, log)? {
        None => String::new(),
        Some(text) => {
            let sig = dir.join("patches.asc");
            fetch(&format!("{url}/{PATCHES}.asc"), &sig, log)?;
            gpg(&keyring)
                .arg("--verify")
                .arg(&sig)
                .arg(dir.join("patches"))
                .log(log)
                .run()
                .map_err(|cause| Error::Binhost {
                    message: format!(
                        "the binhost's record of user patches {url}/{PATCHES} is not signed by the binhost key {}",
                        bh.key.display()
                    ),
                    cause,
                })?;
            text
        }
    };
    write_binrepos_conf(l, "sysroot", url)?;
    Ok(record)
}

/// [`binrepos_conf`] for `url` into the configuration root `kind` (`sysroot`, `destroot`).
pub fn write_binrepos_conf(l: &Layout, kind: &str, url: &str) -> Result<(), Error> {
    let conf = l.config_root(kind).join("etc/portage/binrepos.conf");
    let text = binrepos_conf(url.trim_end_matches('/'), &l.pkgdir());
    fs::write(&conf, text).map_err(Error::io(&conf))
}

/// Take the binhost out of the sysroot's configuration root (a build without one).
pub fn unconfigure(layout: &Layout) -> Result<(), Error> {
    remove_all(
        &layout
            .config_root("sysroot")
            .join("etc/portage/binrepos.conf"),
    )
}

/// `binrepos.conf` for one binhost: every package from it must carry a good signature by a
/// trusted key, and what is downloaded goes into the variant's own binary packages
/// (`pkgdir`; Portage's default would be the host's `/var/cache/binhost`), where the
/// destroot stage finds it.
pub fn binrepos_conf(url: &str, pkgdir: &Path) -> String {
    format!(
        "# generated by keel: the binhost of this machine (keel build --binhost)\n[{REPO_NAME}]\npriority = 1\nsync-uri = {url}\nlocation = {}\nverify-signature = true\n",
        pkgdir.display()
    )
}

/// Fetch `url` into `dest`: `Some(text)`, or `None` when the server says it is not there.
/// A server that does not answer is an error naming the URL.
fn fetch(url: &str, dest: &Path, log: &Path) -> Result<Option<String>, Error> {
    remove_all(dest)?;
    // 22: curl -f's exit code for an HTTP error (404), told apart below.
    let out = Cmd::new("curl")
        .args([
            "-fsSL",
            "--connect-timeout",
            "10",
            "--max-time",
            "120",
            "-o",
        ])
        .arg(dest)
        .arg(url)
        .ok_codes(&[0, 22])
        .log(log)
        .output()
        .map_err(|cause| Error::Binhost {
            message: format!("the binhost does not answer: {url}"),
            cause,
        })?;
    if out.status.code() == Some(22) {
        return Ok(None);
    }
    Ok(Some(fs::read_to_string(dest).map_err(Error::io(dest))?))
}

/// The packages a pretend emerge (`--pretend --quiet`) says it would compile.
pub fn would_compile(pretend: &str) -> Vec<String> {
    pretend
        .lines()
        .filter_map(|l| l.strip_prefix("[ebuild"))
        .filter_map(|rest| rest.split_once(']'))
        .filter_map(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A binary package Portage refused, as its log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `cat/pkg-ver`, when the log names it.
    pub package: Option<String>,
    /// The downloaded file.
    pub file: Option<PathBuf>,
    /// Why, in a few words (the signing key's id when gpg named it).
    pub why: String,
}

/// What an emerge log says about a binary package Portage refused: a bad or missing
/// signature, a key that is not trusted, a digest that is not the index's.
pub fn refused(text: &str) -> Option<Refused> {
    let lines: Vec<&str> = text.lines().collect();
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    let key_after = |marker: &str| {
        lines.iter().find_map(|l| {
            l.split(marker)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_owned)
        })
    };
    let why = if has("Digest verification failed") {
        let reason = lines
            .iter()
            .find_map(|l| l.split("Reason: ").nth(1))
            .unwrap_or("");
        format!("its digest is not the one the binhost's index gives ({reason})")
    } else if let Some(k) = key_after("[GNUPG:] BADSIG ") {
        format!("BAD signature (key {k}): the package was changed after it was signed")
    } else if let Some(k) = key_after("[GNUPG:] NO_PUBKEY ") {
        format!(
            "signed by key {k}, which is not the binhost key (no public key for it in the keyring)"
        )
    } else if has("[GNUPG:] NODATA") || has("signature not found in") {
        "it is not signed".to_owned()
    } else if has("TRUST_UNDEFINED") {
        "signed by a key that is not trusted".to_owned()
    } else if has("GnuPG verification failed") || has("Binary package is not usable") {
        "its signature does not verify".to_owned()
    } else {
        return None;
    };
    let package = lines.iter().find_map(|l| {
        l.split(">>> Failed to emerge ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .map(str::to_owned)
    });
    let quoted = |l: &str, marker: &str| {
        l.split(marker)
            .nth(1)
            .and_then(|r| r.split(['\'', '\u{2019}']).next())
            .map(PathBuf::from)
    };
    let file = lines.iter().find_map(|l| {
        quoted(l, "Error extracting '")
            .or_else(|| quoted(l, "Invalid binary package: '"))
            .or_else(|| {
                let p = l.strip_prefix("!!! ")?;
                (p.starts_with('/') && p.contains(".gpkg.tar")).then(|| PathBuf::from(p.trim()))
            })
    });
    Some(Refused { package, file, why })
}

impl Portage {
    /// With `--binhost-only`: the packages the sysroot emerge would compile, by a pretend
    /// run of the same command; an error naming them when there are any.
    pub fn check_binhost_only(&self, cmd: Cmd, bh: &Binhost, log: &Path) -> Result<(), Error> {
        let out = cmd
            .args(["--pretend", "--quiet"])
            .log(log)
            .output()
            .map_err(Error::Exec)?;
        let compile = would_compile(&out.stdout);
        if compile.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "--binhost-only: {} package(s) would be compiled, not taken from the binhost {}: {}",
            compile.len(),
            bh.url,
            compile.join(" ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_fingerprints_only() {
        let colons = "tru::1:1700000000:0:3:1:5\n\
            pub:u:255:22:AAAA:1700000000:::u:::scESC:::::ed25519:::0:\n\
            fpr:::::::::1111222233334444555566667777888899990000:\n\
            uid:u::::1700000000::X::Keel test <t@keel>::::::::::0:\n\
            sub:u:255:18:BBBB:1700000000::::::e:::::cv25519::\n\
            fpr:::::::::AAAA222233334444555566667777888899990000:\n";
        assert_eq!(
            fingerprints(colons),
            ["1111222233334444555566667777888899990000"]
        );
    }

    #[test]
    fn pretend_lines_that_compile() {
        let out = "[binary   R    ] sys-libs/glibc-2.37-r7::gentoo\n\
                   [ebuild  N     ] sec-policy/selinux-base-2.20221101-r1::gentoo  USE=\"-doc\"\n\
                   [ebuild     U  ] app-shells/bash-5.2_p15::gentoo [5.1]\n";
        assert_eq!(
            would_compile(out),
            [
                "sec-policy/selinux-base-2.20221101-r1::gentoo",
                "app-shells/bash-5.2_p15::gentoo"
            ]
        );
        assert!(would_compile("[binary  N ] a/b-1\n").is_empty());
    }

    #[test]
    fn refusals_name_the_package_and_why() {
        let log = ">>> Failed to emerge sys-libs/libselinux-3.6 for /s/, Log file:\n\
             * \t[GNUPG:] BADSIG 16595C41E439BF60 Keel test <t@keel>\n\
             !!! Error extracting '/c/pkgdir/sys-libs/libselinux/libselinux-3.6-1.gpkg.tar', GnuPG verification failed\n";
        let r = refused(log).unwrap();
        assert_eq!(r.package.as_deref(), Some("sys-libs/libselinux-3.6"));
        assert_eq!(
            r.file.as_deref(),
            Some(Path::new(
                "/c/pkgdir/sys-libs/libselinux/libselinux-3.6-1.gpkg.tar"
            ))
        );
        assert!(
            r.why.starts_with("BAD signature (key 16595C41E439BF60)"),
            "{}",
            r.why
        );
        let log = " * \t[GNUPG:] NO_PUBKEY 0123456789ABCDEF\n>>> Failed to emerge a/b-1 for /s/\n";
        assert!(refused(log).unwrap().why.contains("key 0123456789ABCDEF"));
        let log = "!!! Digest verification failed:\n!!! /c/pkgdir/a/b/b-1-2.gpkg.tar.partial\n!!! Reason: Failed on MD5 verification\n";
        let r = refused(log).unwrap();
        assert!(r.why.contains("Failed on MD5 verification"), "{}", r.why);
        assert_eq!(
            r.file.as_deref(),
            Some(Path::new("/c/pkgdir/a/b/b-1-2.gpkg.tar.partial"))
        );
        assert_eq!(
            refused("emerge: there are no ebuilds to satisfy \"x\"\n"),
            None
        );
    }

    #[test]
    fn binrepos_conf_verifies() {
        let c = binrepos_conf("http://127.0.0.1:8080/selinux", Path::new("/c/pkgdir"));
        assert!(c.contains("location = /c/pkgdir\n"), "{c}");
        assert!(c.contains("[keel-binhost]\n"), "{c}");
        assert!(
            c.contains("sync-uri = http://127.0.0.1:8080/selinux\n"),
            "{c}"
        );
        assert!(c.contains("verify-signature = true\n"), "{c}");
    }
}
