use super::*;
use variant::Size;

#[test]
fn verity_sizes() {
    // 1 GiB of data: 262144 blocks, 2048 + 16 + 1 hash blocks and the superblock: 8 MiB and
    // one to spare, rounded up.
    assert_eq!(verity_size(1 << 30), 10 * MIB);
    assert_eq!(verity_size(4096), 2 * MIB);
    for data in [1 << 20, 300 << 20, 5 << 30] {
        let blocks = data / 4096;
        assert!(verity_size(data) >= blocks / 127 * 4096 + 4096, "{data}");
    }
}

#[test]
fn uuids() {
    let h = "0123456789abcdef0123456789abcdeffedcba9876543210fedcba9876543210";
    assert_eq!(
        slot_uuids(h),
        (
            "01234567-89ab-cdef-0123-456789abcdef".to_owned(),
            "fedcba98-7654-3210-fedc-ba9876543210".to_owned()
        )
    );
    let u = uuid_from(&[0xff; 32]);
    assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
}

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00");
    assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
    assert_eq!(utc(1_798_761_599), "2026-12-31 23:59:59");
}

#[test]
fn sizes_for_people() {
    assert_eq!(human(1 << 30), "1 GiB");
    assert_eq!(human(3 << 29), "1.5 GiB");
    assert_eq!(human(300 << 20), "300 MiB");
    assert_eq!(human(10), "10 bytes");
}

/// What these tests run: the disk's tools, and mksquashfs for their small image.
fn tools() -> bool {
    TOOLS
        .iter()
        .chain(&["mksquashfs"])
        .all(|t| testutil::require(t))
}

fn disk_settings(at: &str, esp: u64, root: u64) -> Disk {
    Disk {
        esp: Size {
            bytes: esp,
            at: format!("{at}:4"),
        },
        root: Size {
            bytes: root,
            at: format!("{at}:5"),
        },
        var: Size {
            bytes: 64 * MIB,
            at: format!("{at}:3"),
        },
        var_format: variant::schema::VarFormat::Btrfs,
        update_url: None,
        at: format!("{at}:3"),
    }
}

/// Bytes that do not compress (an LCG's high bytes).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect()
}

/// A small squashfs image with a kernel and an initramfs (files of the right names: objcopy
/// does not look inside them), made by the real mksquashfs.
fn small_image(dir: &Path, with_kernel: bool) -> PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("boot")).unwrap();
    fs::create_dir_all(tree.join("usr/lib")).unwrap();
    fs::write(
        tree.join("usr/lib/os-release"),
        "NAME=\"Keel test\"\nID=keel\n",
    )
    .unwrap();
    if with_kernel {
        fs::write(tree.join("boot/vmlinuz-6.1.0-test"), noise(300_000)).unwrap();
        fs::write(tree.join("boot/initrd.img-6.1.0-test"), noise(100_000)).unwrap();
    }
    let img = dir.join("small.squashfs");
    Cmd::new("mksquashfs")
        .arg(&tree)
        .arg(&img)
        .args(["-noappend", "-quiet", "-no-progress", "-mkfs-time", "0"])
        .args(["-all-time", "0", "-all-root"])
        .run()
        .unwrap();
    img
}

fn spec(dir: &Path, image: &Path, disk: Disk, out: &str) -> Spec {
    Spec {
        name: "small".into(),
        image: image.to_owned(),
        disk,
        out: dir.join(out),
        work: dir.join(format!("{out}-work")),
        epoch: 1_700_000_000,
        cmdline: vec!["console=ttyS0".into()],
        log: dir.join(format!("{out}.log")),
    }
}

/// Two disks of the same image are the same bytes; the partition table is what
/// docs/disk.md says (read back with sfdisk's JSON); nothing random survives.
#[test]
fn a_disk_is_reproducible_and_laid_out_as_documented() {
    if !tools() || !testutil::require("sfdisk") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = small_image(t.path(), true);
    let d = disk_settings("variants/small/variant.toml", 64 * MIB, 16 * MIB);
    let a = make(&spec(t.path(), &img, d.clone(), "a")).unwrap();
    let b = make(&spec(t.path(), &img, d, "b")).unwrap();
    assert_eq!(a.roothash, b.roothash);
    assert_eq!(a.entry, "small_1700000000.efi");
    let (ra, rb) = (fs::read(&a.raw).unwrap(), fs::read(&b.raw).unwrap());
    assert!(ra == rb, "two disks of the same image differ");
    assert_eq!(
        fs::read_to_string(roothash_path(&t.path().join("a"), "small")).unwrap(),
        format!("{}\n", a.roothash)
    );
    assert!(a.cmdline.starts_with(&format!(
        "roothash={} root=/dev/mapper/keel-root rootfstype=squashfs ro systemd.verity=no console=ttyS0",
        a.roothash
    )));
    let o = Cmd::new("sfdisk")
        .arg("--json")
        .arg(&a.raw)
        .output()
        .unwrap();
    let (data, hash) = slot_uuids(&a.roothash);
    let j: String = o
        .stdout
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    // ESP, root A and its verity, root B and its verity, in that order.
    let types = [
        "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
    ];
    let mut at = 0;
    for ty in types {
        at += j[at..].find(ty).unwrap_or_else(|| panic!("{ty} in {j}")) + ty.len();
    }
    assert!(j.contains(&data) && j.contains(&hash), "{j}");
    assert!(j.contains("\"name\":\"small_1700000000\""), "{j}");
    assert_eq!(j.matches("\"name\":\"_empty\"").count(), 2, "{j}");
    // The ESP holds the boot loader and the unified image, and no random seed.
    let work = t.path().join("a-work");
    let o = Cmd::new("mdir")
        .args(["-/", "-b", "-i"])
        .arg(work.join("esp.img"))
        .arg("::/")
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap();
    let listing = o.stdout;
    for f in [
        "::/EFI/BOOT/BOOTX64.EFI",
        "::/EFI/systemd/systemd-bootx64.efi",
        "::/EFI/Linux/small_1700000000.efi",
        "::/loader/loader.conf",
    ] {
        assert!(listing.contains(f), "{f} not in\n{listing}");
    }
    assert!(!listing.contains("random-seed"), "{listing}");
    // The update set: the image and its hash tree named with the slot's UUIDs, the unified
    // image, and SHA256SUMS over them, as sha256sum writes it.
    let update = t.path().join("a/update");
    let mut names: Vec<String> = fs::read_dir(&update)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "SHA256SUMS".to_owned(),
            "small_1700000000.efi".to_owned(),
            format!("small_1700000000_{data}.root"),
            format!("small_1700000000_{hash}.verity"),
        ]
    );
    let o = Cmd::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .cwd(&update)
        .output()
        .unwrap();
    assert_eq!(o.stdout.matches(": OK").count(), 3, "{}", o.stdout);
    assert_eq!(
        fs::read(update.join(format!("small_1700000000_{data}.root"))).unwrap(),
        fs::read(&img).unwrap()
    );
    // The unified image's sections, as objdump reads them.
    let o = Cmd::new("objdump")
        .arg("-h")
        .arg(work.join("uki.efi"))
        .output()
        .unwrap();
    for s in [".osrel", ".cmdline", ".linux", ".initrd"] {
        assert!(o.stdout.contains(s), "{s} in {}", o.stdout);
    }
    let osrel = fs::read_to_string(work.join("os-release")).unwrap();
    assert!(
        osrel.ends_with("IMAGE_ID=small\nIMAGE_VERSION=1700000000\n")
            && osrel.matches("IMAGE_VERSION").count() == 1,
        "{osrel}"
    );
}

/// Bad input: each error names variant.toml and the line, and leaves no disk.
#[test]
fn bad_disk_settings_name_the_line_and_leave_nothing() {
    if !tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = small_image(t.path(), true);
    let toml = "variants/small/variant.toml";
    let cases: [(Disk, &Path, &str); 3] = [
        (
            disk_settings(toml, 64 * MIB, 4096),
            &img,
            "variants/small/variant.toml:5: [disk] root-size (4 KiB) is smaller than the image",
        ),
        (
            disk_settings(toml, 32 << 10, 16 * MIB),
            &img,
            "variants/small/variant.toml:4: [disk] esp-size (32 KiB) is too small",
        ),
        (
            disk_settings(toml, 64 * MIB, 16 * MIB),
            &small_image(&t.path().join("nokernel"), false),
            "variants/small/variant.toml:3: [disk] needs a kernel and an initramfs in the image",
        ),
    ];
    for (d, image, want) in cases {
        let s = spec(t.path(), image, d, "out");
        fs::create_dir_all(&s.out).unwrap();
        let e = make(&s).unwrap_err().to_string();
        assert!(e.starts_with(want), "{e}");
        assert!(
            fs::read_dir(&s.out).unwrap().next().is_none(),
            "left in {}",
            s.out.display()
        );
    }
}

/// What the disk puts in the image: the version in os-release (replacing a link to it), the
/// ESP's mount point, and transfers whose patterns match the disk's labels and the update
/// set's names; all through the tree's handle.
#[test]
fn the_image_gets_its_version_the_esp_mount_point_and_the_transfers() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    fs::create_dir_all(tree.join("usr/lib")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(
        tree.join("usr/lib/os-release"),
        "PRETTY_NAME=\"Debian\"\nID=debian\nIMAGE_VERSION=old\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("../usr/lib/os-release", tree.join("etc/os-release")).unwrap();
    let root = rootdir::Root::open(&tree).unwrap();
    set_image_version(&root, "v", "1700000000").unwrap();
    in_image(&root, "v", Some("http://127.0.0.1:8080")).unwrap();
    let text = fs::read_to_string(tree.join("etc/os-release")).unwrap();
    assert_eq!(
        text,
        "PRETTY_NAME=\"Debian\"\nID=debian\nIMAGE_ID=v\nIMAGE_VERSION=1700000000\n"
    );
    assert_eq!(image_version(&text).as_deref(), Some("1700000000"));
    assert!(tree.join("efi").is_dir());
    // Without an update URL: no /efi, no transfers.
    let bare = t.path().join("bare");
    fs::create_dir_all(&bare).unwrap();
    in_image(&rootdir::Root::open(&bare).unwrap(), "v", None).unwrap();
    assert!(fs::read_dir(&bare).unwrap().next().is_none());
    let root_t = fs::read_to_string(tree.join("usr/lib/sysupdate.d/10-root.transfer")).unwrap();
    for l in [
        "ProtectVersion=%A",
        "Path=http://127.0.0.1:8080/",
        "MatchPattern=v_@v_@u.root",
        "MatchPattern=v_@v\n",
        "MatchPartitionType=root\n",
    ] {
        assert!(root_t.contains(l), "{l} in {root_t}");
    }
    let uki = fs::read_to_string(tree.join("usr/lib/sysupdate.d/30-uki.transfer")).unwrap();
    assert!(
        uki.contains("MatchPattern=v_@v+@l-@d.efi v_@v+@l.efi v_@v.efi\n")
            && uki.contains("TriesLeft=3"),
        "{uki}"
    );
    // Without an update URL: no transfers. A link out of the tree is not followed.
    let t2 = tempfile::tempdir().unwrap();
    let victim = t2.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    let tree2 = t2.path().join("tree");
    fs::create_dir_all(tree2.join("usr")).unwrap();
    std::os::unix::fs::symlink(&victim, tree2.join("usr/lib")).unwrap();
    let root2 = rootdir::Root::open(&tree2).unwrap();
    let e = set_image_version(&root2, "v", "1").unwrap_err().to_string();
    assert!(e.contains("leads out of the tree"), "{e}");
    assert!(fs::read_dir(&victim).unwrap().next().is_none());
}

#[test]
fn versions() {
    for ok in ["1", "1790000002", "2026.12.1", "1.0~rc1", "v2_3+local"] {
        assert!(valid_version(ok), "{ok}");
    }
    for bad in ["", ".1", "-1", "1/2", "1 2", "1\n", &"9".repeat(65), "ü"] {
        assert!(!valid_version(bad), "{bad:?}");
    }
}
