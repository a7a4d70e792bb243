use crate::control::{self, Stanza};
use crate::map;
use crate::plan::{self, Deb, Hashes};
use std::collections::BTreeMap;

const MAP: &str = r#"suite = "bookworm"

[ignore]
debconf = "maintainer scripts are not run"

[atom."sys-libs/glibc"]
debian = ["libc6"]
source = true

[atom."sys-apps/kmod"]
debian = ["kmod", "libkmod2"]
description = "Linux kernel module tools"
license = "GPL-2"

[atom."sys-kernel/gentoo-kernel-bin"]
debian = ["linux-image-6.1.0-41-amd64"]
description = "Linux kernel, Debian's build"
license = "GPL-2"
slot = "6.1.192"
"#;

fn stanza(package: &str, version: &str, depends: &str, provides: &str) -> Stanza {
    Stanza {
        package: package.into(),
        version: version.into(),
        architecture: "amd64".into(),
        depends: control::relations(depends),
        provides: control::relations(provides).into_iter().flatten().collect(),
        filename: format!("pool/main/x/{package}_{version}_amd64.deb"),
        size: 10,
        sha256: "00".into(),
    }
}

fn debs(extra: &[Stanza]) -> BTreeMap<String, Deb> {
    let mut v = vec![
        stanza("libc6", "2.36-9+deb12u10", "libgcc-s1", ""),
        stanza("kmod", "30+20221128-1", "libc6 (>= 2.34), libkmod2 (= 30+20221128-1), debconf | debconf-2.0", ""),
        stanza("libkmod2", "30+20221128-1", "libc6:any (>= 2.33)", ""),
        stanza(
            "linux-image-6.1.0-41-amd64",
            "6.1.192-3",
            "kmod, linux-base (>= 4.3~) | fake-base, initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool",
            "",
        ),
    ];
    v.extend_from_slice(extra);
    v.into_iter()
        .map(|s| {
            let mut s = s;
            let url = if s.package.starts_with("linux-image") {
                s.filename = format!(
                    "pool/updates/main/l/linux-signed-amd64/{}_{}_amd64.deb",
                    s.package, s.version
                );
                format!(
                    "http://deb.debian.org/debian-security/{}",
                    s.filename.replace('+', "%2b")
                )
            } else {
                format!(
                    "http://deb.debian.org/debian/{}",
                    s.filename.replace('+', "%2b")
                )
            };
            (s.package.clone(), Deb { stanza: s, url })
        })
        .collect()
}

#[test]
fn the_mapping_parses_and_names_what_is_wrong_with_file_and_line() {
    let m = map::parse("m.toml", MAP).unwrap();
    assert_eq!(m.atoms.len(), 3);
    assert_eq!(m.owner("libkmod2").unwrap().key, "sys-apps/kmod");
    assert_eq!(m.generated().count(), 2);

    let e = map::parse(
        "m.toml",
        "suite = \"bookworm\"\n[atom.\">=sys-apps/kmod-30\"]\ndebian = [\"kmod\"]\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.to_string().contains("without version"), "{e}");

    let twice = "suite = \"b\"\n[atom.\"a/b\"]\ndebian = [\"x1\"]\nsource = true\n[atom.\"a/c\"]\ndebian = [\"x1\"]\nsource = true\n";
    let e = map::parse("m.toml", twice).unwrap_err();
    assert!(e.to_string().starts_with("m.toml:5: "), "{e}");
    assert!(e.to_string().contains("`x1` is already `a/b`'s"), "{e}");

    let e = map::parse(
        "m.toml",
        "suite = \"b\"\n\n[atom.\"a/b\"]\ndebian = [\"x1\"]\nsurce = true\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("surce"), "{e}");
    assert_eq!(e.line, 5, "{e}");

    let e = map::parse(
        "m.toml",
        "suite = \"b\"\n[atom.\"a/b\"]\ndebian = [\"x1\"]\nsource = true\nslot = \"2 2\"\n",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "m.toml:2: [atom.\"a/b\"]: slot `2 2` is not a slot name"
    );

    let e = map::parse(
        "m.toml",
        "suite = \"b\"\n[atom.\"a/b\"]\ndebian = [\"x1\"]\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("needs `description` and `license`"),
        "{e}"
    );

    let e = map::parse(
        "m.toml",
        "suite = \"b\"\n[atom.\"a/b\"]\ndebian = [\"Bad_Name\"]\nsource = true\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("`Bad_Name` is not a Debian package name"),
        "{e}"
    );

    // an [ignore] entry is named with its own line, quoted key or not
    let e = map::parse(
        "m.toml",
        "suite = \"b\"\n[ignore]\nok = \"why\"\n\"Bad.Name\" = \"why\"\n",
    )
    .unwrap_err();
    assert_eq!(e.line, 4, "{e}");
    assert!(
        e.to_string()
            .contains("`Bad.Name` must be a Debian package name"),
        "{e}"
    );
}

#[test]
fn dependencies_resolve_to_atoms_through_virtuals_and_ignores() {
    let mut m = map::parse("m.toml", MAP).unwrap();
    // linux-image's `linux-base | fake-base` and `initramfs-tools | linux-initramfs-tool`
    m.atoms.push(map::Atom {
        key: "sys-kernel/dracut".into(),
        debian: vec!["dracut-core".into()],
        source: false,
        description: "initramfs generator".into(),
        license: "GPL-2".into(),
        version: None,
        slot: "0".into(),
        line: 99,
    });
    m.ignore
        .insert("linux-base".into(), "its scripts are Debian's".into());
    let d = debs(&[stanza(
        "dracut-core",
        "059-4",
        "libc6",
        "linux-initramfs-tool",
    )]);
    let p = plan::plan(&m, &d).unwrap();
    let kmod = p.iter().find(|s| s.key == "sys-apps/kmod").unwrap();
    assert_eq!(kmod.version, "30");
    // libkmod2 is kmod's own; debconf is ignored
    assert_eq!(kmod.rdepend, vec!["sys-libs/glibc"]);
    let k = p
        .iter()
        .find(|s| s.key == "sys-kernel/gentoo-kernel-bin")
        .unwrap();
    assert_eq!(k.version, "6.1.192");
    assert_eq!(k.rdepend, vec!["sys-apps/kmod", "sys-kernel/dracut"]);
    assert_eq!(
        k.ebuild_path(),
        "sys-kernel/gentoo-kernel-bin/gentoo-kernel-bin-6.1.192.ebuild"
    );

    let text = plan::ebuild(k, "bookworm");
    assert!(text.starts_with(plan::HEADER), "{text}");
    assert!(text.contains("inherit keel-deb\n"), "{text}");
    assert!(
        text.contains("\tmirror://debian-security/pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-41-amd64_6.1.192-3_amd64.deb\n"),
        "{text}"
    );
    assert!(
        text.contains("RDEPEND=\"\n\tsys-apps/kmod\n\tsys-kernel/dracut\n\"\n"),
        "{text}"
    );
    assert!(text.contains("\nSLOT=\"6.1.192\"\n"), "{text}");
    assert!(plan::ebuild(kmod, "bookworm").contains("\nSLOT=\"0\"\n"));

    let mut h = BTreeMap::new();
    for (f, n) in [
        ("kmod_30+20221128-1_amd64.deb", 1),
        ("libkmod2_30+20221128-1_amd64.deb", 2),
    ] {
        h.insert(
            f.to_owned(),
            Hashes {
                size: n,
                blake2b: "b".repeat(128),
                sha512: "5".repeat(128),
            },
        );
    }
    let manifest = plan::manifest(kmod, &h);
    assert_eq!(manifest.lines().count(), 2, "{manifest}");
    assert!(
        manifest.starts_with("DIST kmod_30+20221128-1_amd64.deb 1 BLAKE2B bbbb"),
        "{manifest}"
    );
}

#[test]
fn a_dependency_no_atom_maps_is_an_error() {
    let m = map::parse("m.toml", MAP).unwrap();
    // linux-base and initramfs-tools are neither mapped nor ignored
    let e = plan::plan(&m, &debs(&[])).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.problems.len(), 2, "{text}");
    assert!(
        text.contains("`sys-kernel/gentoo-kernel-bin`: Debian package `linux-image-6.1.0-41-amd64` depends on `linux-base | fake-base`, which no atom maps"),
        "{text}"
    );
    assert!(text.contains("line 15: "), "{text}");

    // a mapped package apt does not know
    let mut d = debs(&[]);
    d.remove("libkmod2");
    let e = plan::plan(&m, &d).unwrap_err();
    assert!(
        e.to_string()
            .contains("apt has no package `libkmod2` in bookworm"),
        "{e}"
    );

    // an archive without a mirror entry
    let mut d = debs(&[
        stanza("linux-base", "4.9", "", ""),
        stanza("initramfs-tools", "0.142", "", ""),
    ]);
    d.get_mut("kmod").unwrap().url = "http://example.org/other/pool/main/k/kmod.deb".into();
    let mut m2 = m.clone();
    m2.ignore.insert("linux-base".into(), "x".into());
    m2.ignore.insert("initramfs-tools".into(), "x".into());
    let e = plan::plan(&m2, &d).unwrap_err();
    assert!(
        e.to_string()
            .contains("not from an archive named debian or debian-security"),
        "{e}"
    );
}

#[test]
fn control_stanzas_and_versions() {
    let text = "Package: busybox-static\nVersion: 1:1.35.0-4+b3\nArchitecture: amd64\nProvides: busybox\nDepends: libc6 (>= 2.34),\n foo:any | bar [amd64]\nFilename: pool/main/b/busybox/busybox-static_1.35.0-4+b3_amd64.deb\nSize: 123\nSHA256: ab\nDescription: x\n multi\n\nVersion: 1\n";
    let s = control::parse(text);
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].depends,
        vec![vec!["libc6".to_owned()], vec!["foo".into(), "bar".into()]]
    );
    assert_eq!(s[0].provides, vec!["busybox"]);
    assert_eq!(s[0].size, 123);
    for (d, g) in [
        ("1:1.35.0-4+b3", Some("1.35.0")),
        ("252.38-1~deb12u1", Some("252.38")),
        ("20230311+deb12u1", Some("20230311")),
        ("2.36-9+deb12u10", Some("2.36")),
        ("059-4", Some("059")),
        ("v1-1", None),
    ] {
        assert_eq!(control::gentoo_version(d).as_deref(), g, "{d}");
    }
}

/// Regeneration replaces older generated versions and refuses, before writing anything, an
/// ebuild written by hand where a stand-in is generated.
#[test]
fn a_hand_written_ebuild_where_a_stand_in_is_generated_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let m = map::parse("m.toml", MAP).unwrap();
    let mut d = debs(&[]);
    d.remove("linux-image-6.1.0-41-amd64");
    let mut m2 = m.clone();
    m2.atoms.retain(|a| a.key != "sys-kernel/gentoo-kernel-bin");
    let s = &plan::plan(&m2, &d).unwrap()[0];
    let dir = t.path().join("sys-apps/kmod");
    std::fs::create_dir_all(&dir).unwrap();
    let none = Default::default();
    assert!(
        crate::regen::generated_elsewhere(t.path(), &m2, s, false, &none)
            .unwrap()
            .is_empty()
    );
    std::fs::write(
        dir.join("kmod-29.ebuild"),
        format!("{}\nEAPI=8\n", plan::HEADER),
    )
    .unwrap();
    std::fs::write(dir.join("kmod-30.ebuild"), "current\n").unwrap();
    let old = crate::regen::generated_elsewhere(t.path(), &m2, s, false, &none).unwrap();
    assert_eq!(old, vec![dir.join("kmod-29.ebuild")]);
    std::fs::write(dir.join("kmod-31.ebuild"), "# by hand\nEAPI=8\n").unwrap();
    let e = crate::regen::generated_elsewhere(t.path(), &m2, s, false, &none)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kmod-31.ebuild: written by hand") && e.contains("nothing was written"),
        "{e}"
    );
    // Masked by exactly its version in profiles/package.mask, it stays beside the generated
    // one; a mask of another version, a range or a wildcard does not count.
    let masks = map::exact_masks(
        "# kept for the tests\n=sys-apps/kmod-31 # source-built\n>=sys-apps/kmod-32\n=sys-apps/kmod-3*\n",
    );
    assert_eq!(masks.iter().collect::<Vec<_>>(), ["sys-apps/kmod-31"]);
    assert_eq!(
        crate::regen::generated_elsewhere(t.path(), &m2, s, false, &masks).unwrap(),
        vec![dir.join("kmod-29.ebuild")]
    );
    let other = map::exact_masks("=sys-apps/kmod-30\n");
    assert!(crate::regen::generated_elsewhere(t.path(), &m2, s, false, &other).is_err());
    // --all (on a copy): the hand-written one goes too
    let mut old = crate::regen::generated_elsewhere(t.path(), &m2, s, true, &none).unwrap();
    old.sort();
    assert_eq!(
        old,
        vec![dir.join("kmod-29.ebuild"), dir.join("kmod-31.ebuild")]
    );
    // --all needs what an ebuild needs of the atoms written by hand
    let e = m.clone().all_generated().unwrap_err().to_string();
    assert!(
        e.starts_with("m.toml:6: ") && e.contains("sys-libs/glibc"),
        "{e}"
    );
}
