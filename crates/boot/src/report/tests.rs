use super::*;

#[test]
fn denial_lines_parse() {
    let line = r#"audit: type=1400 audit(1700000000.123:45): avc:  denied  { checkpoint_restore } for  pid=301 comm="agetty" capability=40  scontext=system_u:system_r:getty_t:s0 tcontext=system_u:system_r:getty_t:s0 tclass=capability2 permissive=0"#;
    let d = Denial::parse(line).unwrap();
    assert_eq!(d.perms, ["checkpoint_restore"]);
    assert_eq!(d.comm, "agetty");
    assert_eq!(d.scontext, "system_u:system_r:getty_t:s0");
    assert_eq!(d.tclass, "capability2");
    assert!(!d.permissive);
    assert_eq!(
        d.to_string(),
        "{ checkpoint_restore } comm=agetty system_u:system_r:getty_t:s0 -> system_u:system_r:getty_t:s0 :capability2"
    );
    assert_eq!(Denial::parse("kernel: random line"), None);
}

/// A report recorded from a real boot of debian-base under QEMU (`keel boot --variant
/// debian-base --check`), kept verbatim.
const DEBIAN_BASE: &str = include_str!("debian-base.report");

fn base_expect() -> Expect {
    Expect {
        selinux: None,
        root_fstype: "squashfs".into(),
        var_log_absent_at_build: true,
        disk: None,
    }
}

fn failed(r: &Report, e: &Expect) -> Vec<&'static str> {
    verdicts(r, e)
        .into_iter()
        .filter(|v| !v.ok)
        .map(|v| v.name)
        .collect()
}

/// Edit one section of the recorded report.
fn with(section: &str, text: &str) -> Report {
    let mut r = Report::parse(DEBIAN_BASE);
    r.sections.insert(section.into(), format!("{text}\n"));
    r
}

#[test]
fn recorded_debian_base_boot_passes() {
    let r = Report::parse(DEBIAN_BASE);
    assert!(r.complete);
    assert_eq!(r.get("root-mount"), "squashfs ro,relatime,errors=continue");
    assert!(
        failed(&r, &base_expect()).is_empty(),
        "{:?}",
        verdicts(&r, &base_expect())
    );
}

#[test]
fn each_assertion_fails_on_its_own_evidence() {
    let e = base_expect();
    let cases: &[(&str, &str, &str)] = &[
        ("system-state", "degraded", "boot-clean"),
        ("failed-units", "systemd-tmpfiles-setup.service loaded failed failed", "boot-clean"),
        ("unit-results", "systemd-tmpfiles-setup.service ActiveState=failed LoadState=loaded Result=exit-code\nldconfig.service ActiveState=inactive LoadState=masked Result=success", "boot-clean"),
        ("root-mount", "squashfs rw,relatime", "root-read-only"),
        ("var-log", "inode 259\nfstype btrfs", "var-log-subvolume"),
        ("sandbox", "exit 1\nResult=exit-code", "sandboxed-service"),
        ("syslog", "_TRANSPORT=syslog\nMESSAGE=keel-check-syslog-1", "journal-metadata"),
        ("containers", "container c1 state=running label= current=unconfined", "containers"),
        ("selinux-enforce", "1", "selinux"),
        ("avc", "audit: type=1400 audit(1.2:3): avc:  denied  { read } for  pid=1 comm=\"x\" scontext=system_u:system_r:init_t:s0 tcontext=system_u:object_r:etc_t:s0 tclass=file permissive=0", "avc-denials"),
    ];
    for (section, text, name) in cases {
        let r = with(section, text);
        let r = if *section == "selinux-enforce" {
            let mut r = r;
            r.sections
                .insert("lsm".into(), "capability,selinux\n".into());
            r
        } else {
            r
        };
        assert_eq!(failed(&r, &e), [*name], "{section}: {text}");
    }
    let mut cut = Report::parse(&DEBIAN_BASE.replace("KEEL-REPORT-END", ""));
    assert_eq!(failed(&cut, &e), ["check-completed"]);
    cut.sections.clear();
    assert!(failed(&cut, &e).len() > 5);
    let e2 = Expect {
        var_log_absent_at_build: false,
        ..base_expect()
    };
    assert_eq!(
        failed(&Report::parse(DEBIAN_BASE), &e2),
        ["var-log-subvolume"]
    );
}

#[test]
fn selinux_expectations() {
    let e = Expect {
        selinux: Some((true, "default".into())),
        ..base_expect()
    };
    let mut r = Report::parse(DEBIAN_BASE);
    for (k, v) in [
        ("lsm", "lockdown,capability,selinux"),
        ("selinux-enforce", "1"),
        ("selinux-mls", "1"),
        ("getenforce", "Enforcing"),
        ("sestatus", "SELinux status:                 enabled\nLoaded policy name:             default\nPolicy MLS status:              enabled"),
        ("var-log", "inode 256\nfstype btrfs\nlabel system_u:object_r:var_log_t:s0\nexpected system_u:object_r:var_log_t:s0"),
        ("containers", "container c1 state=running label=system_u:system_r:container_t:s0:c1,c2 current=system_u:system_r:container_t:s0:c1,c2\ncontainer c2 state=running label=system_u:system_r:container_t:s0:c3,c4 current=system_u:system_r:container_t:s0:c3,c4"),
    ] {
        r.sections.insert(k.into(), format!("{v}\n"));
    }
    r.sections.insert(
        "syslog".into(),
        format!(
            "{}_SELINUX_CONTEXT=system_u:system_r:initrc_t:s0\n",
            r.get("syslog").to_owned() + "\n"
        ),
    );
    assert!(failed(&r, &e).is_empty(), "{:?}", verdicts(&r, &e));
    let mut same = r.clone();
    same.sections.insert("containers".into(), "container c1 state=running label=system_u:system_r:container_t:s0:c1,c2 current=system_u:system_r:container_t:s0:c1,c2\ncontainer c2 state=running label=system_u:system_r:container_t:s0:c1,c2 current=system_u:system_r:container_t:s0:c1,c2\n".into());
    assert_eq!(failed(&same, &e), ["containers"]);
    let mut mls = r.clone();
    mls.sections.insert("selinux-mls".into(), "0\n".into());
    assert_eq!(failed(&mls, &e), ["selinux"]);
    let mut permissive = r.clone();
    permissive.sections.insert("avc".into(), "avc:  denied  { read } for  pid=1 comm=\"crun\" scontext=system_u:system_r:container_engine_t:s0 tcontext=system_u:object_r:proc_t:s0 tclass=file permissive=1\n".into());
    assert_eq!(failed(&permissive, &e), ["avc-denials"]);
    let mut label = r.clone();
    label.sections.insert("var-log".into(), "inode 256\nfstype btrfs\nlabel system_u:object_r:unlabeled_t:s0\nexpected system_u:object_r:var_log_t:s0\n".into());
    assert_eq!(failed(&label, &e), ["var-log-subvolume"]);
}

/// A report recorded from a real boot of debian-selinux (enforcing, MCS) before the
/// policy for the /var/log subvolume and the container engine existed: exactly those
/// assertions fail, for the reasons the running system gave.
const DEBIAN_SELINUX: &str = include_str!("debian-selinux.report");

#[test]
fn recorded_debian_selinux_boot_names_what_is_missing() {
    let e = Expect {
        selinux: Some((true, "default".into())),
        ..base_expect()
    };
    let r = Report::parse(DEBIAN_SELINUX);
    assert_eq!(
        failed(&r, &e),
        ["var-log-subvolume", "containers", "avc-denials"]
    );
    let v = verdicts(&r, &e);
    let detail = |n: &str| v.iter().find(|v| v.name == n).unwrap().detail.clone();
    assert!(detail("var-log-subvolume").contains("unlabeled_t"));
    assert!(detail("containers").contains("OCI permission denied"));
    // 7 denials, of which agetty's checkpoint_restore is accepted (ACCEPTED_DENIALS)
    assert!(detail("avc-denials").starts_with("6 denial(s) not accepted"));
    assert!(!detail("avc-denials").contains("checkpoint_restore"));
    assert!(detail("selinux").starts_with("Enforcing, policy `default` with MCS"));
}

/// A report recorded from a real boot of debian-selinux's disk image under QEMU with OVMF
/// (`keel boot --variant debian-selinux --disk --check`), kept verbatim.
const DEBIAN_SELINUX_DISK: &str = include_str!("debian-selinux-disk.report");

fn disk_expect() -> Expect {
    Expect {
        selinux: Some((true, "default".into())),
        disk: Some(DiskExpect {
            roothash: "3f4b5c2c4fa5b2ad1e4e2fb6c2ba2d1a9f0fd3caaa5ba6f2bb8ae6bcb8d62b07".into(),
            entry: "debian-selinux_1796499696.efi".into(),
            root_device: "/dev/mapper/keel-root".into(),
        }),
        ..base_expect()
    }
}

/// The recorded disk boot's root hash (from its `cmdline` section).
fn recorded_roothash(r: &Report) -> String {
    r.get("cmdline")
        .split_whitespace()
        .find_map(|w| w.strip_prefix("roothash="))
        .unwrap()
        .to_owned()
}

#[test]
fn recorded_disk_boot_passes_every_assertion_and_the_disk_ones() {
    let r = Report::parse(DEBIAN_SELINUX_DISK);
    let mut e = disk_expect();
    e.disk.as_mut().unwrap().roothash = recorded_roothash(&r);
    let v = verdicts(&r, &e);
    assert_eq!(v.len(), ASSERTIONS.len() + DISK_ASSERTIONS.len());
    assert!(failed(&r, &e).is_empty(), "{v:?}");
    // Without a disk to expect, the disk assertions are not run.
    let plain = Expect { disk: None, ..e };
    assert_eq!(verdicts(&r, &plain).len(), ASSERTIONS.len());
}

#[test]
fn each_disk_assertion_fails_on_its_own_evidence() {
    let edit = |section: &str, from: &str, to: &str| {
        let mut r = Report::parse(DEBIAN_SELINUX_DISK);
        let text = r.get(section).replace(from, to);
        r.sections.insert(section.into(), format!("{text}\n"));
        r
    };
    let base = Report::parse(DEBIAN_SELINUX_DISK);
    let mut e = disk_expect();
    e.disk.as_mut().unwrap().roothash = recorded_roothash(&base);
    // Another entry booted, or not systemd-boot at all.
    let r = edit("efi-loader", "debian-selinux_1796499696.efi", "other_1.efi");
    assert_eq!(failed(&r, &e), ["systemd-boot"]);
    let r = edit("efi-loader", "systemd-boot 252", "GRUB 2");
    assert_eq!(failed(&r, &e), ["systemd-boot"]);
    // Not verified, another hash, another device.
    let r = edit("verity", "status verified", "status corrupted");
    assert_eq!(failed(&r, &e), ["verity-root"]);
    let mut other = e.clone();
    other.disk.as_mut().unwrap().roothash = "00".repeat(32);
    assert_eq!(failed(&base, &other), ["verity-root"]);
    let mut r = Report::parse(DEBIAN_SELINUX_DISK);
    r.sections
        .insert("root-device".into(), "/dev/vda2\n".into());
    assert_eq!(failed(&r, &e), ["verity-root"]);
    // Slot B written to, or gone.
    let r = edit(
        "partitions",
        "583c867a-272e-4d07-93a8-fe27dac0debb zero-first-mib=yes",
        "583c867a-272e-4d07-93a8-fe27dac0debb zero-first-mib=no",
    );
    assert_eq!(failed(&r, &e), ["slot-b-untouched"]);
    let r = edit("partitions", "label=_empty", "label=debian-selinux_2");
    assert_eq!(failed(&r, &e), ["slot-b-untouched"]);
}
