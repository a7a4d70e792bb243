//! OCI images: resolve a tagged image in an OCI image layout directory or an archive of one
//! (`podman save --format oci-archive`, `skopeo copy ... oci-archive:`), verify its blobs,
//! and unpack its layers into a root directory with OCI whiteouts honoured.
//!
//! [`resolve`] reads `index.json`, chooses the manifest (by the
//! `org.opencontainers.image.ref.name` tag; the only one without a tag; a nested image index
//! is followed to the host's platform), and checks every blob it reads against its sha256
//! digest and size. [`unpack`] applies the layers in order into a temporary directory next to
//! DEST and renames it to DEST at the end; each layer's compressed digest and uncompressed
//! `diff_id` are verified as it streams.
//!
//! **Architecture invariant:** a layer is untrusted input and nothing it says is resolved as
//! a path. The tree being built is opened once; every write is a (directory handle, single
//! name) pair reached by `openat(O_NOFOLLOW | O_DIRECTORY)` one component at a time, so a
//! symlink placed by a layer is never followed, entry names and hard link targets with `..`
//! or a leading `/` are refused, and nothing outside the tree is ever written. A half-built
//! tree never sits at DEST: on any error the temporary tree is removed.

mod layout;
mod names;
mod reference;
mod spec;
mod unpack;

use std::io;
use std::path::{Path, PathBuf};

pub use layout::{resolve, Image};
pub use names::Unsafe;
pub use reference::ImageRef;
pub use spec::{host_arch, Descriptor, ImageConfig, Index, Manifest, Platform, RootFs, RunConfig};
pub use unpack::{unpack, UnpackStats};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong; each variant names the image (or DEST), and the blob digest
/// or the layer entry concerned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image `{}`: {cause}", path.display())]
    Open { path: PathBuf, cause: io::Error },
    #[error("image `{}` is not an OCI image layout: it has no `{member}`", path.display())]
    NotLayout { path: PathBuf, member: &'static str },
    #[error("image `{}`: cannot read `{member}`: {cause}", path.display())]
    Read {
        path: PathBuf,
        member: String,
        cause: io::Error,
    },
    #[error("image `{}`: `{member}` is not valid: {cause}", path.display())]
    Json {
        path: PathBuf,
        member: String,
        cause: serde_json::Error,
    },
    #[error("image `{}`: unsupported image layout version `{version}` in `oci-layout`", path.display())]
    LayoutVersion { path: PathBuf, version: String },
    #[error("image `{}` has no manifest tagged `{tag}`; its tags: {}", path.display(), list(available))]
    UnknownTag {
        path: PathBuf,
        tag: String,
        available: Vec<String>,
    },
    #[error("image `{}` holds {count} manifests, name one as PATH:TAG; its tags: {}", path.display(), list(available))]
    Ambiguous {
        path: PathBuf,
        count: usize,
        available: Vec<String>,
    },
    #[error("image `{}`: index {digest} has no manifest for {want}; it has: {}", path.display(), list(available))]
    NoPlatform {
        path: PathBuf,
        digest: String,
        want: String,
        available: Vec<String>,
    },
    #[error("image `{}`: nested image indexes deeper than {depth} at {digest}", path.display())]
    TooDeep {
        path: PathBuf,
        digest: String,
        depth: usize,
    },
    #[error("image `{}`: unsupported digest `{digest}` (only sha256)", path.display())]
    BadDigest { path: PathBuf, digest: String },
    #[error("image `{}`: blob {digest} is missing", path.display())]
    MissingBlob { path: PathBuf, digest: String },
    /// A layout file or blob that is a device, fifo, socket or directory (after symlinks):
    /// never opened for reading, so it can neither block nor stream without end.
    #[error("image `{}`: {}`{member}` is {what}, not a regular file", path.display(), blob_of(digest))]
    NotRegular {
        path: PathBuf,
        member: String,
        /// The blob's digest; `None` for `oci-layout` and `index.json`.
        digest: Option<String>,
        what: &'static str,
    },
    /// A blob whose size is not its descriptor's, found before a byte of it is read.
    #[error("image `{}`: blob {digest} (`{member}`) is {actual} bytes, the descriptor says {expected}", path.display())]
    SizeMismatch {
        path: PathBuf,
        digest: String,
        member: String,
        expected: u64,
        actual: u64,
    },
    #[error("image `{}`: blob {digest} is corrupt: its content is {actual_size} bytes with digest {actual}, the descriptor says {expected_size} bytes", path.display())]
    DigestMismatch {
        path: PathBuf,
        digest: String,
        actual: String,
        expected_size: u64,
        actual_size: u64,
    },
    #[error("image `{}`: layer {digest} uncompresses to {actual}, the config's diff_id is {expected}", path.display())]
    DiffIdMismatch {
        path: PathBuf,
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("image `{}`: {what} {digest} has unsupported media type `{media_type}`", path.display())]
    MediaType {
        path: PathBuf,
        what: &'static str,
        digest: String,
        media_type: String,
    },
    #[error("image `{}`: the manifest lists {layers} layers but the config has {diff_ids} diff_ids", path.display())]
    LayerCount {
        path: PathBuf,
        layers: usize,
        diff_ids: usize,
    },
    #[error("destination `{}`: {cause}", path.display())]
    Dest { path: PathBuf, cause: io::Error },
    #[error("destination `{}` exists and is not an empty directory", path.display())]
    DestNotEmpty { path: PathBuf },
    #[error("image `{}`: layer {digest}: cannot read the layer: {cause}", path.display())]
    Layer {
        path: PathBuf,
        digest: String,
        cause: io::Error,
    },
    #[error("layer {digest}: entry `{entry}` refused: {reason}")]
    Unsafe {
        digest: String,
        entry: String,
        reason: String,
    },
    #[error("layer {digest}: entry `{entry}`: unsupported {what}")]
    Unsupported {
        digest: String,
        entry: String,
        what: String,
    },
    #[error("layer {digest}: entry `{entry}`: cannot {op}: {cause}")]
    Entry {
        digest: String,
        entry: String,
        op: String,
        cause: io::Error,
    },
}

fn blob_of(digest: &Option<String>) -> String {
    digest
        .as_ref()
        .map(|d| format!("blob {d} at "))
        .unwrap_or_default()
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".to_owned()
    } else {
        v.join(", ")
    }
}

/// Resolve `reference` (`PATH` or `PATH:TAG`) and unpack the image into `dest`.
pub fn unpack_ref(reference: &str, dest: &Path) -> Result<(Image, UnpackStats)> {
    let img = resolve(&ImageRef::parse(reference))?;
    let stats = unpack(&img, dest)?;
    Ok((img, stats))
}
