//! Regenerating the stand-ins (`keel standins`): apt says what each mapped Debian package
//! is now (the build host's suite), the `.deb`s are downloaded once into a cache, hashed, and
//! each generated atom's ebuild and Manifest are written. The only I/O of this crate.

use crate::control;
use crate::map::{self, Mapping};
use crate::plan::{self, Deb, Hashes, Standin};
use exec::Cmd;
use sha2::Digest;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Map(#[from] map::Error),
    #[error(transparent)]
    Plan(#[from] plan::Unresolved),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |cause| Error::Io {
        path: path.to_owned(),
        cause,
    }
}

/// The mapping and the tree's package.mask are small text files: read no more than this.
const MAX_MAPPING: u64 = 1 << 20;

/// What a regeneration wrote.
#[derive(Debug, Default)]
pub struct Report {
    /// Files written, relative to the repository.
    pub written: Vec<String>,
    /// Generated ebuilds removed (an older version of a regenerated atom).
    pub removed: Vec<String>,
    /// The stand-ins, for the summary.
    pub standins: Vec<Standin>,
}

/// A small text file of the tree, read no further than [`MAX_MAPPING`] bytes.
fn read_small(path: &Path) -> Result<String, Error> {
    let f = fs::File::open(path).map_err(io(path))?;
    let mut text = String::new();
    f.take(MAX_MAPPING + 1)
        .read_to_string(&mut text)
        .map_err(io(path))?;
    if text.len() as u64 > MAX_MAPPING {
        return Err(Error::Invalid(format!(
            "{}: larger than {MAX_MAPPING} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// Read `repo`'s mapping.
pub fn read_mapping(repo: &Path) -> Result<Mapping, Error> {
    let path = repo.join(map::PATH);
    let text = read_small(&path)?;
    Ok(map::parse(&path.display().to_string(), &text)?)
}

/// Regenerate `repo`'s stand-ins; `.deb`s are kept in `cache`, commands logged to `log`.
/// With `all`, every atom of the mapping is generated, `source = true` ones too, and their
/// hand-written ebuilds are removed: for a copy of the tree (`keel standins --all --out`).
pub fn regen(repo: &Path, cache: &Path, log: &Path, all: bool) -> Result<Report, Error> {
    let map = read_mapping(repo)?;
    let map = if all { map.all_generated()? } else { map };
    let names: Vec<&str> = map
        .atoms
        .iter()
        .flat_map(|a| a.debian.iter().map(String::as_str))
        .collect();
    // apt-cache exits 100 when a name has no version; the plan names the missing ones.
    let shown = Cmd::new("apt-cache")
        .args(["show", "--no-all-versions"])
        .args(&names)
        .ok_codes(&[0, 100])
        .output()?;
    let mut stanzas: BTreeMap<String, control::Stanza> = BTreeMap::new();
    for s in control::parse(&shown.stdout) {
        if s.architecture == "amd64" || s.architecture == "all" {
            stanzas.entry(s.package.clone()).or_insert(s);
        }
    }
    let wanted: Vec<String> = map
        .generated()
        .flat_map(|a| a.debian.iter())
        .filter_map(|n| {
            stanzas
                .get(n)
                .map(|s| format!("{}={}", s.package, s.version))
        })
        .collect();
    let mut urls: BTreeMap<String, String> = BTreeMap::new();
    if !wanted.is_empty() {
        let out = Cmd::new("apt-get")
            .args(["download", "--print-uris"])
            .args(&wanted)
            .output()?;
        for line in out.stdout.lines() {
            // 'URL' FILE SIZE SHA256:HASH
            let mut w = line.split_whitespace();
            let (Some(url), Some(file)) = (w.next(), w.next()) else {
                continue;
            };
            let url = url.trim_matches('\'');
            if let Some((pkg, _)) = file.split_once('_') {
                urls.insert(pkg.to_owned(), url.to_owned());
            }
        }
    }
    let debs: BTreeMap<String, Deb> = stanzas
        .into_iter()
        .map(|(name, stanza)| {
            let url = urls.get(&name).cloned().unwrap_or_default();
            (name, Deb { stanza, url })
        })
        .collect();
    let standins = plan::plan(&map, &debs)?;
    for a in map.generated() {
        for l in a.license.split_whitespace() {
            if !repo.join("licenses").join(l).is_file() {
                return Err(Error::Invalid(format!(
                    "{}:{}: `{}`: license `{l}` is not in {} (add it there, and to a group of profiles/license_groups)",
                    map.file,
                    a.line,
                    a.key,
                    repo.join("licenses").display()
                )));
            }
        }
    }

    fs::create_dir_all(cache).map_err(io(cache))?;
    let mut hashes = BTreeMap::new();
    for d in standins.iter().flat_map(|s| &s.debs) {
        let dest = cache.join(d.distfile());
        if !dest.exists() {
            download(d, cache, log)?;
        }
        // apt verified the download; a cached file is held to the same SHA256 again
        let (h, sha256) = hash(&dest)?;
        if h.size != d.stanza.size || sha256 != d.stanza.sha256 {
            return Err(Error::Invalid(format!(
                "{}: {} bytes, SHA256 {sha256}, but apt says {} bytes, SHA256 {} (delete it and run again)",
                dest.display(),
                h.size,
                d.stanza.size,
                d.stanza.sha256
            )));
        }
        hashes.insert(d.distfile().to_owned(), h);
    }

    // Every directory is checked before anything is written: a hand-written ebuild where a
    // stand-in is generated leaves the tree as it was.
    let masks_path = repo.join(map::MASKS);
    let masks = if masks_path.exists() {
        map::exact_masks(&read_small(&masks_path)?)
    } else {
        Default::default()
    };
    let mut stale = Vec::new();
    for s in &standins {
        stale.extend(generated_elsewhere(repo, &map, s, all, &masks)?);
    }
    let mut report = Report::default();
    for p in stale {
        fs::remove_file(&p).map_err(io(&p))?;
        report
            .removed
            .push(p.strip_prefix(repo).unwrap_or(&p).display().to_string());
    }
    for s in &standins {
        write(
            repo,
            &s.ebuild_path(),
            &plan::ebuild(s, &map.suite),
            &mut report,
        )?;
        write(
            repo,
            &format!("{}/Manifest", s.key),
            &plan::manifest(s, &hashes),
            &mut report,
        )?;
    }
    add_categories(repo, &standins, &mut report)?;
    report.standins = standins;
    Ok(report)
}

/// `apt-get download` into `cache`, then the file under the pool's name.
fn download(d: &Deb, cache: &Path, log: &Path) -> Result<(), Error> {
    let s = &d.stanza;
    Cmd::new("apt-get")
        .args(["download", &format!("{}={}", s.package, s.version)])
        .cwd(cache)
        .log(log)
        .run()?;
    let apt_name = format!(
        "{}_{}_{}.deb",
        s.package,
        s.version.replace(':', "%3a"),
        s.architecture
    );
    let from = cache.join(&apt_name);
    let to = cache.join(d.distfile());
    if from != to {
        fs::rename(&from, &to).map_err(io(&from))?;
    }
    Ok(())
}

/// Size, BLAKE2b-512 and SHA-512 of `path` (a Manifest's hashes), and its SHA-256 (apt's).
pub fn hash(path: &Path) -> Result<(Hashes, String), Error> {
    let mut f = fs::File::open(path).map_err(io(path))?;
    let mut b = blake2::Blake2b512::new();
    let mut s = sha2::Sha512::new();
    let mut s256 = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        b.update(&buf[..n]);
        s.update(&buf[..n]);
        s256.update(&buf[..n]);
        size += n as u64;
    }
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok((
        Hashes {
            size,
            blake2b: hex(&b.finalize()),
            sha512: hex(&s.finalize()),
        },
        hex(&s256.finalize()),
    ))
}

/// The other ebuilds in `s`'s directory: older generated versions, to remove. A
/// hand-written one stays when `masked` (the tree's `profiles/package.mask`) names exactly
/// its version: a source-built stand-in kept beside the generated one, which only a
/// variant that unmasks it gets. Any other hand-written one is an error, unless
/// `replace_hand_written` (`--all`, on a copy: it goes too).
pub(crate) fn generated_elsewhere(
    repo: &Path,
    map: &Mapping,
    s: &Standin,
    replace_hand_written: bool,
    masked: &std::collections::BTreeSet<String>,
) -> Result<Vec<PathBuf>, Error> {
    let dir = repo.join(&s.key);
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries {
        let p = e.map_err(io(&dir))?.path();
        if p.extension().is_none_or(|x| x != "ebuild") || p == repo.join(s.ebuild_path()) {
            continue;
        }
        let mut head = String::new();
        fs::File::open(&p)
            .map_err(io(&p))?
            .take(plan::HEADER.len() as u64)
            .read_to_string(&mut head)
            .map_err(io(&p))?;
        if head != plan::HEADER && !replace_hand_written {
            let pf = p
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if masked.contains(&format!("{}/{pf}", s.key.split('/').next().unwrap_or(""))) {
                continue;
            }
            return Err(Error::Invalid(format!(
                "{}: written by hand, but {} generates `{}` (remove the file, mask exactly its version in {}, or mark the atom `source = true`); nothing was written",
                p.display(),
                map.file,
                s.key,
                map::MASKS
            )));
        }
        out.push(p);
    }
    Ok(out)
}

fn write(repo: &Path, rel: &str, text: &str, report: &mut Report) -> Result<(), Error> {
    let path = repo.join(rel);
    if fs::read_to_string(&path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    rootdir::write_atomic(&path, text.as_bytes(), 0o644).map_err(io(&path))?;
    report.written.push(rel.to_owned());
    Ok(())
}

/// Every generated atom's category must be in `profiles/categories` (sorted, one per line).
fn add_categories(repo: &Path, standins: &[Standin], report: &mut Report) -> Result<(), Error> {
    let rel = "profiles/categories";
    let path = repo.join(rel);
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    let mut cats: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    for s in standins {
        let c = s.key.split('/').next().unwrap_or_default().to_owned();
        if !cats.contains(&c) {
            cats.push(c);
        }
    }
    cats.sort();
    let mut new = cats.join("\n");
    new.push('\n');
    write(repo, rel, &new, report)
}
