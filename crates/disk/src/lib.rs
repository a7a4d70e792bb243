//! The bootable disk of an image (docs/disk.md): `build/V/V.raw`.
//!
//! A GPT disk, its partitions typed by the Discoverable Partitions Specification:
//! - the ESP: systemd-boot (installed by `bootctl`) and one unified kernel image per version
//!   (`EFI/Linux/V_<version>.efi`: systemd's stub, the image's kernel and initramfs, its
//!   os-release, and a command line that carries the root hash);
//! - root slot A: the image itself, block for block, and its dm-verity hash partition;
//! - root slot B: an empty pair of the same sizes, labelled `_empty`;
//! - free space, where the image makes `/var` on first boot (its `repart.d`).
//!
//! The root hash reaches the kernel only through the unified image's command line
//! (`roothash=`). The slot's partitions are found by their UUIDs, the root hash's first and
//! last 128 bits (systemd-repart's convention), so the hash names its slot.
//!
//! Real tools make every format: `veritysetup format` the hash tree, `objcopy` the unified
//! image, `bootctl install` the boot loader, `mkfs.fat` and `mcopy` the ESP, `systemd-repart`
//! the partition table and the partitions. Everything random is derived from the image:
//! the verity salt and UUID, the ESP's volume (mkfs.fat `--invariant`), repart's seed; every
//! time is the build's epoch. Two builds of the same image are the same disk, byte for byte.
//!
//! Debian 12's systemd-repart (252) can compute verity itself (`Verity=`), but with a
//! random salt, so the disk would differ on every build; and it formats a vfat ESP only by
//! mounting it, which needs a `vfat` driver the build host may not have. So the hash tree
//! comes from veritysetup (the same libcryptsetup that repart calls), the ESP from
//! mkfs.fat and mtools, and repart copies both in (`CopyBlocks=`) with the UUIDs set.

use exec::Cmd;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use variant::Disk;

/// systemd's UEFI stub: the unified kernel image is this with the kernel, initramfs,
/// os-release and command line added as sections.
pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// The programs [`make`] runs (and systemd's stub it reads): what a test of the disk needs.
pub const TOOLS: &[&str] = &[
    "unsquashfs",
    "veritysetup",
    "objcopy",
    "bootctl",
    "mkfs.fat",
    "mcopy",
    "systemd-repart",
    "unshare",
    "faketime",
    "fallocate",
    STUB,
];
/// The root device the image's initramfs makes from `roothash=` (keel-verity).
pub const ROOT_DEVICE: &str = "/dev/mapper/keel-root";
/// The label of a slot's partitions before anything is written to them (systemd-sysupdate's
/// convention).
pub const EMPTY_LABEL: &str = "_empty";
const MIB: u64 = 1 << 20;
/// The largest os-release read from an image.
const OS_RELEASE_LIMIT: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] rootdir::PathError),
    #[error(transparent)]
    Tree(#[from] rootdir::Error),
    #[error(transparent)]
    Exec(#[from] exec::Error),
    #[error(transparent)]
    Boot(#[from] boot::Error),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    let at = rootdir::PathError::at(path);
    move |e| Error::Io(at(e))
}

/// What to make the disk of.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The variant: names the disk, its entries and its partitions.
    pub name: String,
    /// The image (squashfs or erofs): root slot A, block for block.
    pub image: PathBuf,
    pub disk: Disk,
    /// Where the disk goes (`<out>/<name>.raw`, `<out>/<name>.roothash`).
    pub out: PathBuf,
    /// Scratch (replaced).
    pub work: PathBuf,
    /// The build's time: the version, and every file time on the ESP.
    pub epoch: u64,
    /// Kernel arguments after the root's (console, SELinux).
    pub cmdline: Vec<String>,
    pub log: PathBuf,
}

/// What [`make`] made (also in `<out>/<name>.disk.json`, which `keel boot --disk` reads).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Made {
    pub raw: PathBuf,
    pub roothash: String,
    pub version: String,
    /// The unified kernel image's file name under `EFI/Linux/` (systemd-boot's entry id).
    pub entry: String,
    /// The unified image's whole command line.
    pub cmdline: String,
}

pub fn raw_path(out: &Path, name: &str) -> PathBuf {
    out.join(format!("{name}.raw"))
}

/// `<name>.roothash` beside `<name>.raw` (the name systemd's tools look for).
pub fn roothash_path(out: &Path, name: &str) -> PathBuf {
    out.join(format!("{name}.roothash"))
}

/// `<name>.disk.json` beside `<name>.raw`: [`Made`].
pub fn made_path(out: &Path, name: &str) -> PathBuf {
    out.join(format!("{name}.disk.json"))
}

/// What the last [`make`] of `<out>/<name>.raw` made.
pub fn read_made(out: &Path, name: &str) -> Result<Made, Error> {
    let p = made_path(out, name);
    let f = fs::File::open(&p).map_err(io(&p))?;
    let bytes = rootdir::read_capped(f, &p, 1 << 20, "a disk record")?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", p.display())))
}

/// The version of a build made at `epoch`: a number that grows with every build.
pub fn version_of(epoch: u64) -> String {
    epoch.to_string()
}

/// The unified kernel image's name for `version` (also its systemd-boot entry id).
pub fn entry_of(name: &str, version: &str) -> String {
    format!("{name}_{version}.efi")
}

/// The size of a dm-verity hash partition for a data partition of `data` bytes (SHA-256,
/// 4 KiB blocks: 128 hashes per block, each level 1/128 of the one below, plus the
/// superblock), in whole MiB with one to spare.
pub fn verity_size(data: u64) -> u64 {
    let mut blocks = data.div_ceil(4096);
    let mut total = 1; // superblock
    while blocks > 1 {
        blocks = blocks.div_ceil(128);
        total += blocks;
    }
    (total * 4096).div_ceil(MIB) * MIB + MIB
}

/// A UUID (text) from the first 16 bytes of `digest`, made a version 4 UUID as systemd
/// does with the ids it derives.
pub fn uuid_from(digest: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    hyphenate(&hex(&b))
}

/// `0123...` (32 hex digits) as `01234567-89ab-cdef-0123-456789abcdef`.
pub fn hyphenate(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn hex(b: &[u8]) -> String {
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// The partition UUIDs of a slot with root hash `roothash`: data, hash.
pub fn slot_uuids(roothash: &str) -> (String, String) {
    (hyphenate(&roothash[..32]), hyphenate(&roothash[32..64]))
}

/// Make `<out>/<name>.raw` and `<out>/<name>.roothash` from the image. Nothing is at the
/// final paths unless the whole disk is made.
pub fn make(spec: &Spec) -> Result<Made, Error> {
    let d = &spec.disk;
    let fstype = boot::disk::fstype_of(&spec.image)?;
    let image_len = fs::metadata(&spec.image).map_err(io(&spec.image))?.len();
    if image_len % 4096 != 0 {
        return Err(Error::Invalid(format!(
            "{}: {image_len} bytes, not a whole number of 4 KiB blocks (dm-verity's block)",
            spec.image.display()
        )));
    }
    if image_len > d.root.bytes {
        return Err(Error::Invalid(format!(
            "{}: [disk] root-size ({}) is smaller than the image {} ({})",
            d.root.at,
            human(d.root.bytes),
            spec.image.display(),
            human(image_len)
        )));
    }
    let raw = raw_path(&spec.out, &spec.name);
    let roothash_file = roothash_path(&spec.out, &spec.name);
    let made_file = made_path(&spec.out, &spec.name);
    for p in [&raw, &roothash_file, &made_file] {
        match fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(p)(e)),
            _ => {}
        }
    }
    let work = &spec.work;
    if work.symlink_metadata().is_ok() {
        fs::remove_dir_all(work).map_err(io(work))?;
    }
    fs::create_dir_all(work).map_err(io(work))?;
    let log = &spec.log;

    // The kernel, the initramfs and os-release, out of the image.
    let tree_dir = work.join("image");
    boot::disk::extract(
        &spec.image,
        &tree_dir,
        &["boot", "etc/os-release", "usr/lib/os-release"],
        log,
    )?;
    let tree = rootdir::Root::open(&tree_dir)?;
    let (kernel_rel, initrd_rel) = boot::disk::kernel_of(&tree).map_err(|e| {
        Error::Invalid(format!(
            "{}: [disk] needs a kernel and an initramfs in the image: {e}",
            d.at
        ))
    })?;
    let (kernel, initrd) = (work.join("vmlinuz"), work.join("initrd.img"));
    boot::disk::copy_out(&tree, &kernel_rel, &kernel)?;
    boot::disk::copy_out(&tree, &initrd_rel, &initrd)?;
    let text = read_os_release(&tree)?;
    // The version the image was made with (fixups: [`in_image`]), else the build's time.
    let version = image_version(&text).unwrap_or_else(|| version_of(spec.epoch));
    let os_release = with_image_version(&text, &spec.name, &version);
    let os_release_file = work.join("os-release");
    fs::write(&os_release_file, os_release).map_err(io(&os_release_file))?;

    // The hash tree; its salt and UUID come from the image.
    let image_hash = Sha256::digest(fs::read(&spec.image).map_err(io(&spec.image))?);
    let verity = work.join("root.verity");
    let roothash_out = work.join("roothash");
    Cmd::new("veritysetup")
        .arg("format")
        .arg(format!("--salt={}", hex(&image_hash)))
        .arg(format!(
            "--uuid={}",
            uuid_from(&Sha256::digest(
                [b"keel-verity:" as &[u8], &image_hash].concat()
            ))
        ))
        .args(["--data-block-size=4096", "--hash-block-size=4096"])
        .arg(format!("--root-hash-file={}", roothash_out.display()))
        .arg(&spec.image)
        .arg(&verity)
        .log(log)
        .run()?;
    let roothash = fs::read_to_string(&roothash_out)
        .map_err(io(&roothash_out))?
        .trim()
        .to_owned();
    if roothash.len() != 64 || !roothash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "{}: veritysetup wrote `{roothash}`, not a SHA-256 root hash",
            roothash_out.display()
        )));
    }
    let verity_part = verity_size(d.root.bytes);

    // The unified kernel image.
    let cmdline = [
        format!("roothash={roothash}"),
        format!("root={ROOT_DEVICE}"),
        format!("rootfstype={fstype}"),
        "ro".into(),
        // The initramfs opened the root (keel-verity); systemd's generator would try again.
        "systemd.verity=no".into(),
    ]
    .into_iter()
    .chain(spec.cmdline.iter().cloned())
    .collect::<Vec<_>>()
    .join(" ");
    let cmdline_file = work.join("cmdline");
    fs::write(&cmdline_file, format!("{cmdline}\n")).map_err(io(&cmdline_file))?;
    let uki = work.join("uki.efi");
    unified_image(
        &os_release_file,
        &cmdline_file,
        &kernel,
        &initrd,
        &uki,
        spec.epoch,
        log,
    )?;

    // The ESP: bootctl's files, the unified image, every time the build's.
    let entry = entry_of(&spec.name, &version);
    let esp_dir = work.join("esp");
    install_boot_loader(&esp_dir, work, log)?;
    let linux = esp_dir.join("EFI/Linux");
    fs::create_dir_all(&linux).map_err(io(&linux))?;
    fs::copy(&uki, linux.join(&entry)).map_err(io(&uki))?;
    let staged = tree_bytes(&esp_dir)?;
    let uki_len = fs::metadata(&uki).map_err(io(&uki))?.len();
    // Room for the next version's unified image beside this one, and FAT's own.
    let need = staged + uki_len + (staged + uki_len) / 10 + 2 * MIB;
    if need > d.esp.bytes {
        return Err(Error::Invalid(format!(
            "{}: [disk] esp-size ({}) is too small: the boot loader and this version's unified kernel image take {}, and an update adds another {} ({} in all with FAT's overhead)",
            d.esp.at,
            human(d.esp.bytes),
            human(staged),
            human(uki_len),
            human(need)
        )));
    }
    set_times(&esp_dir, spec.epoch)?;
    let esp_img = work.join("esp.img");
    make_esp(&esp_dir, &esp_img, d.esp.bytes, spec.epoch, log)?;

    // The partition table and the partitions.
    let defs = work.join("repart.d");
    fs::create_dir_all(&defs).map_err(io(&defs))?;
    let (data_uuid, hash_uuid) = slot_uuids(&roothash);
    let slot = format!("{}_{version}", spec.name);
    let files = [
        (
            "00-esp.conf",
            partition("esp", "ESP", None, Some(&esp_img), d.esp.bytes),
        ),
        (
            "10-root-a.conf",
            partition(
                "root",
                &slot,
                Some(&data_uuid),
                Some(&spec.image),
                d.root.bytes,
            ),
        ),
        (
            "11-root-a-verity.conf",
            partition(
                "root-verity",
                &format!("{slot}_verity"),
                Some(&hash_uuid),
                Some(&verity),
                verity_part,
            ),
        ),
        (
            "20-root-b.conf",
            partition("root", EMPTY_LABEL, None, None, d.root.bytes),
        ),
        (
            "21-root-b-verity.conf",
            partition("root-verity", EMPTY_LABEL, None, None, verity_part),
        ),
    ];
    for (name, text) in &files {
        let p = defs.join(name);
        fs::write(&p, text).map_err(io(&p))?;
    }
    // GPT at both ends, the partitions, the space for /var.
    let size = 4 * MIB + d.esp.bytes + 2 * (d.root.bytes + verity_part) + d.var.bytes;
    let seed = uuid_from(&Sha256::digest(format!("keel-disk:{roothash}")));
    fs::create_dir_all(&spec.out).map_err(io(&spec.out))?;
    let partial = raw.with_extension("raw.partial");
    let _ = fs::remove_file(&partial);
    let repart = Cmd::new("systemd-repart")
        .args(["--empty=create", "--dry-run=no", "--no-pager"])
        .arg(format!("--size={size}"))
        .arg(format!("--seed={seed}"))
        .arg(format!("--definitions={}", defs.display()))
        .arg(&partial)
        .log(log)
        .run();
    // repart writes every block it copies, the ESP's unused ones too: make the zeros holes
    // again (the bytes stay the same).
    let sparse = repart.and_then(|()| {
        Cmd::new("fallocate")
            .arg("--dig-holes")
            .arg(&partial)
            .log(log)
            .run()
    });
    if let Err(e) = sparse {
        let _ = fs::remove_file(&partial);
        return Err(e.into());
    }
    update_set(spec, &version, &roothash, &verity, &uki)?;
    fs::rename(&partial, &raw).map_err(io(&raw))?;
    let tmp = roothash_file.with_extension("roothash.partial");
    fs::write(&tmp, format!("{roothash}\n")).map_err(io(&tmp))?;
    fs::rename(&tmp, &roothash_file).map_err(io(&roothash_file))?;
    fs::remove_dir_all(&tree_dir).map_err(io(&tree_dir))?;
    let made = Made {
        raw,
        roothash,
        version,
        entry,
        cmdline,
    };
    let tmp = made_file.with_extension("json.partial");
    let json = serde_json::to_string_pretty(&made)
        .map_err(|e| Error::Invalid(format!("{}: {e}", made_file.display())))?;
    fs::write(&tmp, json + "\n").map_err(io(&tmp))?;
    fs::rename(&tmp, &made_file).map_err(io(&made_file))?;
    Ok(made)
}

/// `<out>/update/`: what an installed disk updates to this version from (systemd-sysupdate,
/// [`transfers`]): `<name>_<version>_<uuid>.root` (the image) and `.verity` (its hash tree),
/// named with the partition UUIDs the slot must get (the root hash's halves),
/// `<name>_<version>.efi` (the unified kernel image) and `SHA256SUMS`. Served as it is by
/// any HTTP server, or merged with earlier versions' sets.
pub fn update_dir(out: &Path) -> PathBuf {
    out.join("update")
}

fn update_set(
    spec: &Spec,
    version: &str,
    roothash: &str,
    verity: &Path,
    uki: &Path,
) -> Result<(), Error> {
    let dir = update_dir(&spec.out);
    let partial = spec.out.join("update.partial");
    for d in [&dir, &partial] {
        if d.symlink_metadata().is_ok() {
            fs::remove_dir_all(d).map_err(io(d))?;
        }
    }
    fs::create_dir_all(&partial).map_err(io(&partial))?;
    let (data_uuid, hash_uuid) = slot_uuids(roothash);
    let name = &spec.name;
    let files = [
        (
            format!("{name}_{version}_{data_uuid}.root"),
            spec.image.as_path(),
        ),
        (format!("{name}_{version}_{hash_uuid}.verity"), verity),
        (format!("{name}_{version}.efi"), uki),
    ];
    let mut sums = String::new();
    for (file, from) in &files {
        let to = partial.join(file);
        Cmd::new("cp")
            .args(["--reflink=auto", "--no-preserve=all"])
            .arg(from)
            .arg(&to)
            .log(&spec.log)
            .run()?;
        let digest = Sha256::digest(fs::read(&to).map_err(io(&to))?);
        let _ = writeln!(sums, "{}  {file}", hex(&digest));
    }
    let sums_file = partial.join("SHA256SUMS");
    fs::write(&sums_file, sums).map_err(io(&sums_file))?;
    fs::rename(&partial, &dir).map_err(io(&dir))
}

/// A repart.d definition of a partition of exactly `size` bytes, its blocks copied from
/// `copy` (none: left empty).
fn partition(
    kind: &str,
    label: &str,
    uuid: Option<&str>,
    copy: Option<&Path>,
    size: u64,
) -> String {
    let mut s = format!("[Partition]\nType={kind}\nLabel={label}\n");
    if let Some(u) = uuid {
        let _ = writeln!(s, "UUID={u}");
    }
    if let Some(c) = copy {
        let _ = writeln!(s, "CopyBlocks={}", c.display());
    }
    let _ = writeln!(s, "SizeMinBytes={size}\nSizeMaxBytes={size}");
    s
}

/// The image's os-release (`usr/lib/os-release`, else `etc/os-release`), as text (empty
/// when it has none).
fn read_os_release(tree: &rootdir::Root) -> Result<String, Error> {
    for rel in ["usr/lib/os-release", "etc/os-release"] {
        match tree.open_file(Path::new(rel)) {
            Ok(f) => {
                let p = tree.display(Path::new(rel));
                let bytes = rootdir::read_capped(f, &p, OS_RELEASE_LIMIT, "os-release")?;
                return Ok(String::from_utf8_lossy(&bytes).into_owned());
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(String::new())
}

/// os-release `text` with `IMAGE_ID` and `IMAGE_VERSION` set: what systemd-boot shows for
/// the entry, what `%A` is to systemd-sysupdate, and what an update matches.
pub fn with_image_version(text: &str, name: &str, version: &str) -> String {
    let mut out: String = text
        .lines()
        .filter(|l| !l.starts_with("IMAGE_ID=") && !l.starts_with("IMAGE_VERSION="))
        .map(|l| format!("{l}\n"))
        .collect();
    let _ = write!(out, "IMAGE_ID={name}\nIMAGE_VERSION={version}\n");
    out
}

/// `IMAGE_VERSION=` of os-release `text`.
pub fn image_version(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// `IMAGE_ID=<name>` and `IMAGE_VERSION=<version>` in the tree's `usr/lib/os-release`
/// (the version the disk stage names its slot and unified kernel image after, and `%A` to
/// systemd-sysupdate), through the tree's handle. A link there is replaced by the file.
pub fn set_image_version(root: &rootdir::Root, name: &str, version: &str) -> Result<(), Error> {
    let text = read_os_release(root)?;
    write_in(
        root,
        Path::new("usr/lib/os-release"),
        with_image_version(&text, name, version).as_bytes(),
    )
}

/// A version systemd-sysupdate and file names take: 1 to 64 of `[A-Za-z0-9._+~-]`,
/// starting with a letter or digit.
pub fn valid_version(v: &str) -> bool {
    (1..=64).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+~-".contains(c))
}

/// What the disk needs inside the image besides its version ([`set_image_version`]),
/// written into the tree `root` before the image is made (the `fixups` stage, for a
/// variant with `[disk]`):
/// with an update URL (nothing otherwise):
/// - `/efi`, where systemd's gpt-auto generator mounts the ESP (the image's `/boot` is not
///   empty), for systemd-sysupdate to install unified kernel images. Only then: Debian 12's
///   policy has no file context for `/efi` (it would be `default_t`, which the generator
///   may not read).
/// - `usr/lib/sysupdate.d/`: the transfers of the root, its verity partition and the
///   unified kernel image, matching the disk's partition labels and the update set's file
///   names ([`transfers`]).
pub fn in_image(root: &rootdir::Root, name: &str, update_url: Option<&str>) -> Result<(), Error> {
    if let Some(url) = update_url {
        root.create_dir_all(Path::new("efi"), 0o755)?;
        for (file, text) in transfers(name, url) {
            write_in(
                root,
                &Path::new("usr/lib/sysupdate.d").join(file),
                text.as_bytes(),
            )?;
        }
    }
    Ok(())
}

/// Write `data` to `rel` in the tree, atomically, through the handle of its directory.
fn write_in(root: &rootdir::Root, rel: &Path, data: &[u8]) -> Result<(), Error> {
    let (Some(parent), Some(file)) = (rel.parent(), rel.file_name()) else {
        return Err(Error::Invalid(format!(
            "{}: not a file path",
            rel.display()
        )));
    };
    let dir = root.create_dir_all(parent, 0o755)?;
    let at = PathBuf::from(rootdir::fd_path(
        std::os::fd::AsFd::as_fd(&dir),
        file.as_encoded_bytes(),
    ));
    rootdir::write_atomic(&at, data, 0o644).map_err(|e| io(&root.display(rel))(e))
}

/// systemd-sysupdate's transfers for the disk of `name` (sysupdate.d(5)), updating from
/// `url`: the root and verity partitions of the free slot, their UUIDs taken from the file
/// names (the root hash's halves, as [`make`] sets them), and the unified kernel image
/// with three tries (systemd-boot's boot counting: one that never boots to the end is
/// given up for the previous version). The running version is protected.
pub fn transfers(name: &str, url: &str) -> Vec<(&'static str, String)> {
    let url = if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    };
    let partition = |kind: &str, suffix: &str, label: &str| {
        format!(
            "# Keel (docs/disk.md): the {kind} partition of the free slot.\n\
             [Transfer]\nProtectVersion=%A\n\n\
             [Source]\nType=url-file\nPath={url}\nMatchPattern={name}_@v_@u.{suffix}\n\n\
             [Target]\nType=partition\nPath=auto\nMatchPattern={label}\n\
             MatchPartitionType={kind}\nPartitionFlags=0\nReadOnly=1\n"
        )
    };
    vec![
        (
            "10-root.transfer",
            partition("root", "root", &format!("{name}_@v")),
        ),
        (
            "20-root-verity.transfer",
            partition("root-verity", "verity", &format!("{name}_@v_verity")),
        ),
        (
            "30-uki.transfer",
            format!(
                "# Keel (docs/disk.md): the unified kernel image, with three tries.\n\
                 [Transfer]\nProtectVersion=%A\n\n\
                 [Source]\nType=url-file\nPath={url}\nMatchPattern={name}_@v.efi\n\n\
                 [Target]\nType=regular-file\nPath=/EFI/Linux\nPathRelativeTo=boot\n\
                 MatchPattern={name}_@v+@l-@d.efi {name}_@v+@l.efi {name}_@v.efi\n\
                 Mode=0644\nTriesLeft=3\nTriesDone=0\nInstancesMax=2\n"
            ),
        ),
    ]
}

/// systemd's stub with the image's parts as PE sections (what `ukify` does, with objcopy:
/// Debian 12 has no ukify). The kernel goes at 32 MiB of the image's address space and the
/// initramfs at the next MiB after it, above the stub's own sections.
fn unified_image(
    os_release: &Path,
    cmdline: &Path,
    kernel: &Path,
    initrd: &Path,
    out: &Path,
    epoch: u64,
    log: &Path,
) -> Result<(), Error> {
    let kernel_len = fs::metadata(kernel).map_err(io(kernel))?.len();
    let linux_at: u64 = 0x200_0000;
    let initrd_at = (linux_at + kernel_len).div_ceil(MIB) * MIB;
    let section = |name: &str, file: &Path, at: u64| {
        [
            "--add-section".to_owned(),
            format!("{name}={}", file.display()),
            "--change-section-vma".to_owned(),
            format!("{name}={at:#x}"),
        ]
    };
    let partial = out.with_extension("efi.partial");
    // objcopy stamps the PE header with the clock (binutils 2.40 ignores
    // SOURCE_DATE_EPOCH there): it runs at the build's time, under faketime.
    Cmd::new("faketime")
        .arg(utc(epoch))
        .env("TZ", "UTC")
        .arg("objcopy")
        .args(section(".osrel", os_release, 0x20000))
        .args(section(".cmdline", cmdline, 0x30000))
        .args(section(".linux", kernel, linux_at))
        .args(section(".initrd", initrd, initrd_at))
        .arg(STUB)
        .arg(&partial)
        .log(log)
        .run()?;
    fs::rename(&partial, out).map_err(io(out))
}

/// `bootctl install` into `esp` (made): systemd-boot as the removable-media loader and as
/// its own, `loader.conf`, no EFI variables touched. bootctl wants the root of a
/// filesystem: it installs into a tmpfs mounted in a mount namespace of its own, and the
/// files are copied out. The random seed it writes is dropped (every machine must make its
/// own; systemd-boot does at first boot), and `loader.conf` boots the newest entry at once.
fn install_boot_loader(esp: &Path, work: &Path, log: &Path) -> Result<(), Error> {
    let mnt = work.join("esp-mount");
    fs::create_dir_all(&mnt).map_err(io(&mnt))?;
    fs::create_dir_all(esp).map_err(io(esp))?;
    Cmd::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
        .arg(
            r#"mount -t tmpfs keel-esp "$1"
bootctl install --esp-path="$1" --no-variables --make-machine-id-directory=no --entry-token=literal:keel
cp -a "$1/." "$2/""#,
        )
        .args(["sh"])
        .arg(&mnt)
        .arg(esp)
        .env("SYSTEMD_RELAX_ESP_CHECKS", "1")
        .log(log)
        .run()?;
    fs::remove_dir(&mnt).map_err(io(&mnt))?;
    let seed = esp.join("loader/random-seed");
    match fs::remove_file(&seed) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&seed)(e)),
        _ => {}
    }
    let conf = esp.join("loader/loader.conf");
    fs::write(
        &conf,
        "# Keel (docs/disk.md): the newest version boots at once; a key held at start shows the menu.\ntimeout 0\neditor no\n",
    )
    .map_err(io(&conf))
}

/// The bytes of the regular files under `dir`.
fn tree_bytes(dir: &Path) -> Result<u64, Error> {
    let mut n = 0;
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        let m = e.metadata().map_err(io(&e.path()))?;
        if m.is_dir() {
            n += tree_bytes(&e.path())?;
        } else {
            n += m.len();
        }
    }
    Ok(n)
}

/// Every file and directory under `dir` (and itself) gets `epoch` as its times.
fn set_times(dir: &Path, epoch: u64) -> Result<(), Error> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    let times = fs::FileTimes::new().set_accessed(t).set_modified(t);
    for e in fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.symlink_metadata().map_err(io(&p))?.is_dir() {
            set_times(&p, epoch)?;
        } else {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(io(&p))?;
            f.set_times(times).map_err(io(&p))?;
        }
    }
    let f = fs::File::open(dir).map_err(io(dir))?;
    f.set_times(times).map_err(io(dir))
}

/// A FAT filesystem of `size` bytes in `img` with the files of `dir`: `mkfs.fat
/// --invariant` (no random volume id, no clock), `mcopy` keeping the files' times.
fn make_esp(dir: &Path, img: &Path, size: u64, epoch: u64, log: &Path) -> Result<(), Error> {
    let f = fs::File::create(img).map_err(io(img))?;
    f.set_len(size).map_err(io(img))?;
    drop(f);
    let mut mkfs = Cmd::new("mkfs.fat").args(["-n", "ESP", "--invariant"]);
    if size >= 64 * MIB {
        // FAT32, what the UEFI specification asks of a fixed disk's ESP.
        mkfs = mkfs.args(["-F", "32"]);
    }
    mkfs.arg(img)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .log(log)
        .run()?;
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    names.sort();
    Cmd::new("mcopy")
        .args(["-s", "-p", "-m", "-Q", "-i"])
        .arg(img)
        .args(&names)
        .arg("::/")
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .log(log)
        .run()?;
    Ok(())
}

/// `epoch` as `YYYY-MM-DD hh:mm:ss` in UTC (what faketime takes).
pub fn utc(epoch: u64) -> String {
    let (days, secs) = (epoch / 86400, epoch % 86400);
    // Howard Hinnant's days-to-civil, for days since 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `1.5 GiB`, `300 MiB`, `12 KiB`, `10 bytes`.
pub fn human(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (u, name) in UNITS {
        if n >= u {
            let v = n as f64 / u as f64;
            return if v.fract() == 0.0 {
                format!("{v:.0} {name}")
            } else {
                format!("{v:.1} {name}")
            };
        }
    }
    format!("{n} bytes")
}

#[cfg(test)]
mod tests;
