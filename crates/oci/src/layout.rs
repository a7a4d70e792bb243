//! Reading an OCI image layout, from a directory or from a tar archive of one, and resolving
//! a reference to a verified manifest and config.

use crate::reference::ImageRef;
use crate::spec::{self, Choice, Descriptor, ImageConfig, Index, Manifest};
use crate::Error;
use rustix::fd::AsRawFd;
use rustix::fs::{self as fs, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The largest JSON document (index, manifest, config) read into memory.
const MAX_JSON: u64 = 64 << 20;
/// How deep nested image indexes are followed.
const MAX_DEPTH: usize = 4;

/// A resolved image: its manifest (verified), config (verified) and where its blobs are.
#[derive(Debug)]
pub struct Image {
    /// What was resolved.
    pub reference: ImageRef,
    /// The digest of the chosen manifest: the image's identity.
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub(crate) source: Source,
}

impl Image {
    /// The layer descriptors, lowest first, with their media types.
    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }

    /// The layout directory or archive.
    pub fn path(&self) -> &Path {
        self.source.path()
    }
}

/// Where blobs come from.
#[derive(Debug)]
pub(crate) enum Source {
    Dir(PathBuf),
    /// A tar archive of a layout: each member's data offset and size. A compressed archive
    /// is first decompressed into an unnamed temporary file (`file`).
    Archive {
        path: PathBuf,
        file: File,
        members: HashMap<Vec<u8>, (u64, u64)>,
    },
}

/// A member's content and its size.
type Member<'a> = (Box<dyn Read + 'a>, u64);

/// A window of a file read with `pread` (no shared cursor).
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive member ends early",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// The running sha256 and byte count of what passed through a [`Hashing`] reader.
pub(crate) type HashState = Rc<RefCell<(Sha256, u64)>>;

/// A reader that hashes what it reads.
pub(crate) struct Hashing<R> {
    inner: R,
    state: HashState,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> (Self, HashState) {
        let state = Rc::new(RefCell::new((Sha256::new(), 0)));
        (
            Hashing {
                inner,
                state: state.clone(),
            },
            state,
        )
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut s = self.state.borrow_mut();
        s.0.update(&buf[..n]);
        s.1 += n as u64;
        Ok(n)
    }
}

/// `sha256:HEX` of a finished hash.
pub(crate) fn finish(state: &HashState) -> (String, u64) {
    let s = state.borrow();
    let d = s.0.clone().finalize();
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for b in d {
        hex.push_str(&format!("{b:02x}"));
    }
    (hex, s.1)
}

fn open_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Open {
        path: path.to_owned(),
        cause: source,
    }
}

impl Source {
    fn open(path: &Path) -> Result<Source, Error> {
        let meta = std::fs::metadata(path).map_err(open_err(path))?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_owned()));
        }
        let mut file = File::open(path).map_err(open_err(path))?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(open_err(path))?;
        file.rewind().map_err(open_err(path))?;
        let decompress = |mut r: Box<dyn Read>| -> io::Result<File> {
            let mut t = tempfile::tempfile()?;
            io::copy(&mut r, &mut t)?;
            t.rewind()?;
            Ok(t)
        };
        let file = match &magic[..n] {
            [0x1f, 0x8b, ..] => decompress(Box::new(flate2::read::MultiGzDecoder::new(file)))
                .map_err(open_err(path))?,
            [0x28, 0xb5, 0x2f, 0xfd] => {
                let d = zstd::Decoder::new(file).map_err(open_err(path))?;
                decompress(Box::new(d)).map_err(open_err(path))?
            }
            _ => file,
        };
        let mut members = HashMap::new();
        let mut ar = tar::Archive::new(&file);
        let scan = (|| -> io::Result<()> {
            for entry in ar.entries_with_seek()? {
                let entry = entry?;
                let kind = entry.header().entry_type();
                if kind.is_file() {
                    let name = entry.path_bytes();
                    let name = name.strip_prefix(b"./").unwrap_or(&name).to_vec();
                    members.insert(name, (entry.raw_file_position(), entry.size()));
                }
            }
            Ok(())
        })();
        scan.map_err(|source| Error::Read {
            path: path.to_owned(),
            member: "(the archive's table of contents)".into(),
            cause: source,
        })?;
        Ok(Source::Archive {
            path: path.to_owned(),
            file,
            members,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Source::Dir(p) => p,
            Source::Archive { path, .. } => path,
        }
    }

    /// A member of the layout and its size, `None` when it does not exist; `digest` names
    /// the blob it is, for errors.
    ///
    /// In a directory the member, symlinks followed (a blob may link into a shared store, its
    /// digest vouches for it), must be a regular file: it is pinned by an `O_PATH` handle,
    /// checked with `fstat`, and only then opened for reading through `/proc/self/fd`. A
    /// device, fifo or socket is never opened, so it can neither block the open, nor stream
    /// without end, nor do what opening a device does.
    fn member(&self, name: &str, digest: Option<&str>) -> Result<Option<Member<'_>>, Error> {
        match self {
            Source::Dir(dir) => {
                let read_err = |e: Errno| Error::Read {
                    path: dir.clone(),
                    member: name.to_owned(),
                    cause: e.into(),
                };
                let pinned = match fs::open(
                    dir.join(name),
                    OFlags::PATH | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(None),
                    Err(e) => return Err(read_err(e)),
                };
                let st = fs::fstat(&pinned).map_err(read_err)?;
                let kind = FileType::from_raw_mode(st.st_mode);
                if kind != FileType::RegularFile {
                    return Err(Error::NotRegular {
                        path: dir.clone(),
                        member: name.to_owned(),
                        digest: digest.map(str::to_owned),
                        what: kind_name(kind),
                    });
                }
                let fd = fs::openat(
                    rustix::procfs::proc_self_fd().map_err(read_err)?,
                    pinned.as_raw_fd().to_string(),
                    OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(read_err)?;
                Ok(Some((
                    Box::new(io::BufReader::with_capacity(1 << 18, File::from(fd))),
                    st.st_size as u64,
                )))
            }
            // Only regular file members are indexed, with the size their header gives.
            Source::Archive { file, members, .. } => {
                Ok(members.get(name.as_bytes()).map(|&(pos, size)| {
                    let r: Box<dyn Read + '_> = Box::new(io::BufReader::with_capacity(
                        1 << 18,
                        At {
                            file,
                            pos,
                            end: pos + size,
                        },
                    ));
                    (r, size)
                }))
            }
        }
    }

    /// The content of a blob, which must be as large as its descriptor says (checked before
    /// a byte is read) and is read no further than that. Unverified: the caller hashes what
    /// it reads and [`Source::verify`]s it at the end.
    pub(crate) fn blob(&self, d: &Descriptor) -> Result<Box<dyn Read + '_>, Error> {
        let hex = spec::sha256_hex(&d.digest).ok_or_else(|| Error::BadDigest {
            path: self.path().to_owned(),
            digest: d.digest.clone(),
        })?;
        let member = format!("blobs/sha256/{hex}");
        match self.member(&member, Some(&d.digest))? {
            Some((_, size)) if size != d.size => Err(Error::SizeMismatch {
                path: self.path().to_owned(),
                digest: d.digest.clone(),
                member,
                expected: d.size,
                actual: size,
            }),
            Some((r, _)) => Ok(Box::new(r.take(d.size))),
            None => Err(Error::MissingBlob {
                path: self.path().to_owned(),
                digest: d.digest.clone(),
            }),
        }
    }

    fn read_err(&self, member: &str) -> impl FnOnce(io::Error) -> Error + '_ {
        let member = member.to_owned();
        move |source| Error::Read {
            path: self.path().to_owned(),
            member,
            cause: source,
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self, member: &str, bytes: &[u8]) -> Result<T, Error> {
        serde_json::from_slice(bytes).map_err(|source| Error::Json {
            path: self.path().to_owned(),
            member: member.to_owned(),
            cause: source,
        })
    }

    /// A layout file that has no digest (`oci-layout`, `index.json`).
    fn top(&self, name: &'static str) -> Result<Vec<u8>, Error> {
        let (r, _) = self.member(name, None)?.ok_or_else(|| Error::NotLayout {
            path: self.path().to_owned(),
            member: name,
        })?;
        let mut buf = Vec::new();
        r.take(MAX_JSON)
            .read_to_end(&mut buf)
            .map_err(self.read_err(name))?;
        Ok(buf)
    }

    /// A JSON blob, read whole, checked against its descriptor's digest and size, parsed.
    fn json_blob<T: serde::de::DeserializeOwned>(&self, d: &Descriptor) -> Result<T, Error> {
        let member = format!("blob {}", d.digest);
        let (mut r, state) = Hashing::new(self.blob(d)?.take(MAX_JSON));
        let mut buf = Vec::new();
        r.read_to_end(&mut buf).map_err(self.read_err(&member))?;
        self.verify(d, &state)?;
        self.json(&member, &buf)
    }

    pub(crate) fn verify(&self, d: &Descriptor, state: &HashState) -> Result<(), Error> {
        let (actual, size) = finish(state);
        if actual != d.digest || size != d.size {
            return Err(Error::DigestMismatch {
                path: self.path().to_owned(),
                digest: d.digest.clone(),
                actual,
                expected_size: d.size,
                actual_size: size,
            });
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayout {
    image_layout_version: String,
}

/// Resolve a reference to its manifest and config, both verified against their digests.
pub fn resolve(r: &ImageRef) -> Result<Image, Error> {
    let src = Source::open(&r.path)?;
    let path = || src.path().to_owned();
    let layout: OciLayout = src.json("oci-layout", &src.top("oci-layout")?)?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(Error::LayoutVersion {
            path: path(),
            version: layout.image_layout_version,
        });
    }
    let index: Index = src.json("index.json", &src.top("index.json")?)?;
    let arch = spec::host_arch();
    let mut d = spec::choose(&index, r.tag.as_deref(), "linux", arch)
        .map_err(|c| choice_err(c, path(), r.tag.as_deref(), "index.json", arch))?
        .clone();
    let mut depth = 0;
    while d.is_index() {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(Error::TooDeep {
                path: path(),
                digest: d.digest,
                depth: MAX_DEPTH,
            });
        }
        let nested: Index = src.json_blob(&d)?;
        let all: Vec<&Descriptor> = nested.manifests.iter().collect();
        d = spec::for_platform(&all, "linux", arch)
            .map_err(|c| choice_err(c, path(), None, &d.digest, arch))?
            .clone();
    }
    if !d.is_manifest() {
        return Err(Error::MediaType {
            path: path(),
            what: "manifest",
            digest: d.digest,
            media_type: d.media_type,
        });
    }
    let manifest: Manifest = src.json_blob(&d)?;
    let c = &manifest.config;
    if c.media_type != "application/vnd.oci.image.config.v1+json"
        && c.media_type != "application/vnd.docker.container.image.v1+json"
    {
        return Err(Error::MediaType {
            path: path(),
            what: "config",
            digest: c.digest.clone(),
            media_type: c.media_type.clone(),
        });
    }
    let config: ImageConfig = src.json_blob(c)?;
    for l in &manifest.layers {
        if spec::layer_compression(&l.media_type).is_none() {
            return Err(Error::MediaType {
                path: path(),
                what: "layer",
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
            });
        }
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::LayerCount {
            path: path(),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    Ok(Image {
        reference: r.clone(),
        manifest_digest: d.digest,
        manifest,
        config,
        source: src,
    })
}

/// What a file that is not a regular file is, for [`Error::NotRegular`].
fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "a directory",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Fifo => "a fifo",
        FileType::Socket => "a socket",
        FileType::Symlink => "a symlink",
        _ => "of an unknown file type",
    }
}

fn choice_err(c: Choice, path: PathBuf, tag: Option<&str>, digest: &str, arch: &str) -> Error {
    match c {
        Choice::UnknownTag(available) => Error::UnknownTag {
            path,
            tag: tag.unwrap_or_default().to_owned(),
            available,
        },
        Choice::Ambiguous(count, available) => Error::Ambiguous {
            path,
            count,
            available,
        },
        Choice::NoPlatform(available) => Error::NoPlatform {
            path,
            digest: digest.to_owned(),
            want: format!("linux/{arch}"),
            available,
        },
    }
}
