//! What a build leaves beside its image for later comparison: `record.json` (the
//! [`record::Record`]: packages with versions, sizes and files, the image's size and
//! digest, the inputs' fingerprint) and, per build whose inputs differ from the last one
//! kept, a copy of the record and the manifest under `history/NNNN/` (the last
//! [`KEEP`]). A build ends with what changed since the entry before its own.

use crate::{io, tree, Error, Outcome};
use record::{diff, Manifest, Record};
use stage::fingerprint::write_atomic;
use stage::{Build, StageId};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use variant::schema::Distribution;

/// History entries kept per output directory.
pub const KEEP: usize = 10;
/// The most a record or manifest read back may hold.
const READ_LIMIT: u64 = 512 << 20;

pub const RECORD: &str = "record.json";
const MANIFEST: &str = "manifest.txt";

/// The record of the build in `b`'s output directory, written when the image stage ran
/// (or there is none, or it is of other inputs), the history entry added, and what
/// changed since the previous entry.
pub(crate) fn record(b: &Build, outcome: &mut Outcome) -> Result<(), Error> {
    let out = &b.layout.output;
    let path = out.join(RECORD);
    outcome.record = path.clone();
    let stamp = b.layout.stamps().join(StageId::Image.name());
    let fingerprint = fs::read_to_string(&stamp)
        .map_err(io(&stamp))?
        .trim()
        .to_owned();
    let image = tree::image_path(b);
    let manifest_path = out.join(MANIFEST);
    let kept = read_capped(&path)
        .ok()
        .and_then(|t| Record::parse(&t, "").ok())
        .filter(|r| r.fingerprint == fingerprint && !outcome.ran.contains(&StageId::Image));
    let rec = match kept {
        // Nothing ran: the image is the newest entry of the history already.
        Some(r) if outcome.ran.is_empty() => {
            outcome.record_data = Some(r);
            return Ok(());
        }
        Some(r) => r,
        None => {
            let manifest_text = read_capped(&manifest_path)?;
            let manifest = record::parse_manifest(&manifest_text, &manifest_path.to_string_lossy())
                .map_err(Error::Tree)?;
            let tree = b.layout.tree();
            let packages = match b.resolved.settings.distribution {
                Distribution::Gentoo => portage::vdb::packages(&tree)?,
                Distribution::Debian => {
                    debian::dpkg::packages(&tree).map_err(|e| Error::Tree(e.to_string()))?
                }
            };
            let r = make(b, fingerprint, &image, &manifest, packages)?;
            write_atomic(&path, r.to_json().as_bytes())?;
            r
        }
    };
    outcome.since_previous = keep(out, &rec, &manifest_path)?;
    outcome.record_data = Some(rec);
    Ok(())
}

/// The record of an image whose manifest is `manifest`: each package's paths are those of
/// its files (not directories) that are in the image.
fn make(
    b: &Build,
    fingerprint: String,
    image: &Path,
    manifest: &Manifest,
    mut packages: Vec<record::Package>,
) -> Result<Record, Error> {
    for p in &mut packages {
        p.files
            .retain(|f| manifest.get(f).is_some_and(|e| e.kind != 'd'));
        p.files.sort();
        p.files.dedup();
    }
    packages.sort_by(|x, y| (&x.name, &x.version).cmp(&(&y.name, &y.version)));
    let bytes = fs::metadata(image).map_err(io(image))?.len();
    let sha256 = stage::fingerprint::hash_file(image)?;
    Ok(Record {
        version: record::VERSION,
        variant: b.layout.variant.clone(),
        distribution: match b.resolved.settings.distribution {
            Distribution::Gentoo => "gentoo",
            Distribution::Debian => "debian",
        }
        .into(),
        fingerprint,
        image: record::Image {
            file: file_name(image),
            bytes,
            sha256,
            paths: manifest.len() as u64,
            content_bytes: manifest.values().map(|e| e.size()).sum(),
        },
        manifest: MANIFEST.into(),
        packages,
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_capped(p: &Path) -> Result<String, Error> {
    let f = fs::File::open(p).map_err(io(p))?;
    let bytes = rootdir::read_capped(f, p, READ_LIMIT, "a build record or manifest")
        .map_err(|e| Error::Tree(e.to_string()))?;
    String::from_utf8(bytes).map_err(|_| Error::Tree(format!("{}: not UTF-8", p.display())))
}

/// The history entries under `out`, oldest first.
fn entries(out: &Path) -> Vec<(u32, PathBuf)> {
    let dir = out.join("history");
    let mut list: Vec<(u32, PathBuf)> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    list.sort();
    list
}

/// Keep `rec` (and its manifest) in the history unless the newest entry is of the same
/// build; what changed since the entry before it, in one paragraph (`None`: no earlier
/// build).
fn keep(out: &Path, rec: &Record, manifest: &Path) -> Result<Option<String>, Error> {
    let mut list = entries(out);
    let same = |dir: &Path| {
        read_capped(&dir.join(RECORD))
            .ok()
            .and_then(|t| Record::parse(&t, "").ok())
            .is_some_and(|r| r.fingerprint == rec.fingerprint && r.image == rec.image)
    };
    if !list.last().is_some_and(|(_, d)| same(d)) {
        let n = list.last().map_or(1, |(n, _)| n + 1);
        let dir = out.join("history").join(format!("{n:04}"));
        let partial = dir.with_extension("partial");
        let _ = fs::remove_dir_all(&partial);
        fs::create_dir_all(&partial).map_err(io(&partial))?;
        write_atomic(&partial.join(RECORD), rec.to_json().as_bytes())?;
        fs::copy(manifest, partial.join(MANIFEST)).map_err(io(manifest))?;
        fs::rename(&partial, &dir).map_err(io(&dir))?;
        list.push((n, dir));
        while list.len() > KEEP {
            let (_, old) = list.remove(0);
            fs::remove_dir_all(&old).map_err(io(&old))?;
        }
    }
    let [.., before, now] = list.as_slice() else {
        return Ok(None);
    };
    let a = load(&before.1)?;
    let b = load(&now.1)?;
    let d = diff::diff(&a.side(), &b.side());
    Ok(Some(diff::paragraph(&d)))
}

/// One side of `keel diff`: a manifest, and the record when there is one.
pub struct Loaded {
    pub manifest: Manifest,
    pub record: Option<Record>,
}

impl Loaded {
    pub fn side(&self) -> diff::Side<'_> {
        diff::Side {
            manifest: &self.manifest,
            record: self.record.as_ref(),
        }
    }
}

/// Read one side of a comparison from `path`: a build record (`record.json`, with the
/// manifest beside it), a directory holding one (a build's output directory or a history
/// entry), a manifest, an image, or any other directory tree (its manifest is made).
pub fn load(path: &Path) -> Result<Loaded, Error> {
    let meta = fs::metadata(path).map_err(io(path))?;
    let record_file = if meta.is_dir() {
        Some(path.join(RECORD)).filter(|p| p.is_file())
    } else {
        let mut head = [0u8; 1];
        let _ = fs::File::open(path).and_then(|mut f| f.read(&mut head));
        (head[0] == b'{').then(|| path.to_owned())
    };
    if let Some(rf) = record_file {
        let shown = rf.to_string_lossy().into_owned();
        let r = Record::parse(&read_capped(&rf)?, &shown).map_err(Error::Tree)?;
        let mf = rf.with_file_name(&r.manifest);
        let manifest = record::parse_manifest(&read_capped(&mf)?, &mf.to_string_lossy())
            .map_err(Error::Tree)?;
        return Ok(Loaded {
            manifest,
            record: Some(r),
        });
    }
    let text = if meta.is_dir() {
        image::manifest::of_tree(path)?
    } else {
        if image::manifest::image_kind(path).is_some() {
            let scratch = tempdir_beside()?;
            let t = image::manifest::of_image(path, scratch.path());
            t?
        } else {
            read_capped(path)?
        }
    };
    let manifest = record::parse_manifest(&text, &path.to_string_lossy()).map_err(Error::Tree)?;
    Ok(Loaded {
        manifest,
        record: None,
    })
}

fn tempdir_beside() -> Result<tempfile::TempDir, Error> {
    tempfile::tempdir().map_err(io(Path::new("/tmp")))
}
