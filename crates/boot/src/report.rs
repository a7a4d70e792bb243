//! The assertions on what the running system reported. Pure: a report in, verdicts out.
//!
//! The boot check in the image (`/usr/libexec/keel/boot-check`, run by
//! `keel-check.service`) writes its report to the second serial port in the one report
//! protocol of crate `qemu` (`qemu::report`): one section per fact (`@@ name` on a line
//! of its own, then what the system printed) between the begin and end markers. It
//! reports; the judging happens here, so a check is changed in one place and tested on
//! recorded reports.

use qemu::Report;
use std::collections::BTreeMap;
use std::fmt;

/// What the variant promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// `Some((enforcing, policy name))` for an SELinux variant.
    pub selinux: Option<(bool, String)>,
    /// Root filesystem type (`squashfs`, `erofs`).
    pub root_fstype: String,
    /// The /var disk was made without `/var/log`, so whatever is there at run time was
    /// made at boot.
    pub var_log_absent_at_build: bool,
    /// Booted from the disk image (crate `disk`): what the disk assertions expect.
    pub disk: Option<DiskExpect>,
}

/// What a boot of the disk image must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskExpect {
    /// The build's root hash (`build/V/V.roothash`).
    pub roothash: String,
    /// The unified kernel image systemd-boot must have booted (`V_<version>.efi`).
    pub entry: String,
    /// The device the initramfs makes of the verity root.
    pub root_device: String,
}

/// An AVC denial accepted by the boot test, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Source type, target type, class, permission.
    pub scontext: &'static str,
    pub tcontext: &'static str,
    pub tclass: &'static str,
    pub perm: &'static str,
    pub reason: &'static str,
}

/// The denials a clean boot of Keel's Debian variants may show, each with its reason.
/// Everything else fails the check.
pub const ACCEPTED_DENIALS: &[Accepted] = &[
    // agetty (util-linux 2.38) probes CAP_CHECKPOINT_RESTORE (capability 40, Linux 5.9);
    // refpolicy 2.20221101 knows the permission but grants it to no login domain. A tty
    // login needs no checkpoint/restore: agetty works without it, and granting it would
    // give getty_t a capability it never uses. Reported, not fixed.
    Accepted {
        scontext: "getty_t",
        tcontext: "getty_t",
        tclass: "capability2",
        perm: "checkpoint_restore",
        reason: "agetty probes CAP_CHECKPOINT_RESTORE, which a tty login does not need",
    },
];

/// One AVC denial, reduced to what identifies it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Denial {
    pub perms: Vec<String>,
    pub comm: String,
    pub scontext: String,
    pub tcontext: String,
    pub tclass: String,
    pub permissive: bool,
}

impl Denial {
    /// Parse an `avc:  denied  { perm ... } for ... scontext=... tcontext=... tclass=...` line.
    pub fn parse(line: &str) -> Option<Denial> {
        let rest = line.split_once("avc:  denied  {")?.1;
        let (perms, rest) = rest.split_once('}')?;
        let kv = |k: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(|v| v.trim_matches('"').to_owned())
        };
        Some(Denial {
            perms: perms.split_whitespace().map(str::to_owned).collect(),
            comm: kv("comm=").unwrap_or_default(),
            scontext: kv("scontext=")?,
            tcontext: kv("tcontext=")?,
            tclass: kv("tclass=")?,
            permissive: kv("permissive=").as_deref() == Some("1"),
        })
    }

    fn type_of(ctx: &str) -> &str {
        ctx.split(':').nth(2).unwrap_or(ctx)
    }

    /// The accepted entry that covers every permission of this denial.
    pub fn accepted(&self) -> Option<&'static Accepted> {
        ACCEPTED_DENIALS.iter().find(|a| {
            a.scontext == Self::type_of(&self.scontext)
                && a.tcontext == Self::type_of(&self.tcontext)
                && a.tclass == self.tclass
                && self.perms.iter().all(|p| p == a.perm)
        })
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{ {} }} comm={} {} -> {} :{}{}",
            self.perms.join(" "),
            self.comm,
            self.scontext,
            self.tcontext,
            self.tclass,
            if self.permissive { " (permissive)" } else { "" }
        )
    }
}

/// The verdict of one assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

type Assertion = fn(&Report, &Expect) -> Result<String, String>;

/// Every assertion of the boot check, by name, in the order they are reported.
pub const ASSERTIONS: &[(&str, Assertion)] = &[
    ("check-completed", check_completed),
    ("selinux", selinux),
    ("boot-clean", boot_clean),
    ("root-read-only", root_read_only),
    ("var-log-subvolume", var_log_subvolume),
    ("sandboxed-service", sandboxed_service),
    ("journal-metadata", journal_metadata),
    ("containers", containers),
    ("avc-denials", avc_denials),
];

/// The assertions a boot of the disk image adds.
pub const DISK_ASSERTIONS: &[(&str, Assertion)] = &[
    ("systemd-boot", systemd_boot),
    ("verity-root", verity_root),
    ("slot-b-untouched", slot_b_untouched),
];

/// Run every assertion (and the disk's, for a boot of the disk image).
pub fn verdicts(r: &Report, e: &Expect) -> Vec<Verdict> {
    let disk = if e.disk.is_some() {
        DISK_ASSERTIONS
    } else {
        &[]
    };
    ASSERTIONS
        .iter()
        .chain(disk)
        .map(|(name, f)| match f(r, e) {
            Ok(detail) => Verdict {
                name,
                ok: true,
                detail,
            },
            Err(detail) => Verdict {
                name,
                ok: false,
                detail,
            },
        })
        .collect()
}

fn check_completed(r: &Report, _: &Expect) -> Result<String, String> {
    if r.complete {
        Ok(format!("uptime at end of boot {}s", r.get("uptime")))
    } else {
        Err(format!("the report ends before {}", qemu::report::END))
    }
}

fn selinux(r: &Report, e: &Expect) -> Result<String, String> {
    let enforce = r.get("selinux-enforce");
    match &e.selinux {
        None => {
            if r.get("lsm").split(',').any(|l| l == "selinux") && enforce != "absent" {
                Err(format!(
                    "SELinux is active (enforce={enforce}) on a variant without it"
                ))
            } else {
                Ok(format!("not enabled (lsm: {})", r.get("lsm")))
            }
        }
        Some((enforcing, policy)) => {
            let want = if *enforcing { "1" } else { "0" };
            let getenforce = r.get("getenforce");
            let sestatus = r.get("sestatus");
            let status = |k: &str| {
                sestatus
                    .lines()
                    .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
                    .unwrap_or_default()
            };
            let name = status("Loaded policy name:");
            let mls = status("Policy MLS status:");
            let mut errs = Vec::new();
            if enforce != want {
                errs.push(format!(
                    "/sys/fs/selinux/enforce is `{enforce}`, want {want}"
                ));
            }
            let want_g = if *enforcing {
                "Enforcing"
            } else {
                "Permissive"
            };
            if getenforce != want_g {
                errs.push(format!("getenforce says `{getenforce}`, want {want_g}"));
            }
            if &name != policy {
                errs.push(format!("loaded policy `{name}`, want `{policy}`"));
            }
            // MCS is the MLS machinery with one sensitivity: MLS enabled in the policy.
            if r.get("selinux-mls") != "1" || mls != "enabled" {
                errs.push(format!(
                    "the policy is not MCS (mls={}, sestatus: `{mls}`)",
                    r.get("selinux-mls")
                ));
            }
            if errs.is_empty() {
                Ok(format!(
                    "{getenforce}, policy `{name}` with MCS (MLS status {mls})"
                ))
            } else {
                Err(errs.join("; "))
            }
        }
    }
}

fn boot_clean(r: &Report, _: &Expect) -> Result<String, String> {
    let mut errs = Vec::new();
    let state = r.get("system-state");
    if state != "running" {
        errs.push(format!("systemctl is-system-running: `{state}`"));
    }
    let failed = r.get("failed-units");
    if !failed.is_empty() {
        errs.push(format!("failed units:\n{failed}"));
    }
    let want = [
        (
            "systemd-tmpfiles-setup.service",
            "ActiveState=active LoadState=loaded Result=success",
        ),
        (
            "ldconfig.service",
            "ActiveState=inactive LoadState=masked Result=success",
        ),
    ];
    for (unit, w) in want {
        let got = r.field("unit-results", unit).unwrap_or("missing");
        if got != w {
            errs.push(format!("{unit}: `{got}`, want `{w}`"));
        }
    }
    if errs.is_empty() {
        Ok(format!(
            "running, no failed unit; {}",
            r.get("unit-results").replace('\n', "; ")
        ))
    } else {
        Err(errs.join("; "))
    }
}

fn root_read_only(r: &Report, e: &Expect) -> Result<String, String> {
    let line = r.get("root-mount");
    let mut it = line.split_whitespace();
    let (fstype, opts) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
    if fstype == e.root_fstype && opts.split(',').any(|o| o == "ro") {
        Ok(format!(
            "/ is {fstype} ({opts}); /var: {}",
            r.get("var-mount")
        ))
    } else {
        Err(format!("/ is `{line}`, want {} mounted ro", e.root_fstype))
    }
}

/// The firmware ran systemd-boot, and systemd-boot the build's unified kernel image
/// (systemd-boot's `LoaderInfo` and `LoaderEntrySelected` EFI variables).
fn systemd_boot(r: &Report, e: &Expect) -> Result<String, String> {
    let Some(d) = &e.disk else {
        return Ok("not a disk boot".into());
    };
    let info = r.field("efi-loader", "LoaderInfo").unwrap_or("");
    let entry = r.field("efi-loader", "LoaderEntrySelected").unwrap_or("");
    let mut errs = Vec::new();
    if !info.starts_with("systemd-boot ") {
        errs.push(format!("LoaderInfo is `{info}`, not systemd-boot"));
    }
    if entry != d.entry {
        errs.push(format!("booted entry `{entry}`, want `{}`", d.entry));
    }
    if errs.is_empty() {
        Ok(format!("{info} booted {entry}"))
    } else {
        Err(errs.join("; "))
    }
}

/// `/` is the dm-verity device the initramfs made, with the build's root hash, verified.
fn verity_root(r: &Report, e: &Expect) -> Result<String, String> {
    let Some(d) = &e.disk else {
        return Ok("not a disk boot".into());
    };
    let mut errs = Vec::new();
    let dev = r.get("root-device");
    if dev != d.root_device {
        errs.push(format!("/ is on `{dev}`, want {}", d.root_device));
    }
    let status = r.field("verity", "status").unwrap_or("");
    if status != "verified" {
        errs.push(format!("verity status `{status}`, want verified"));
    }
    let hash = r.field("verity", "root-hash").unwrap_or("");
    if hash != d.roothash {
        errs.push(format!(
            "root hash `{hash}`, want the build's {}",
            d.roothash
        ));
    }
    let data = r.field("verity", "data-device").unwrap_or("");
    if errs.is_empty() {
        Ok(format!(
            "/ on {dev}: dm-verity over {data} with the build's root hash, {status}"
        ))
    } else {
        Err(errs.join("; "))
    }
}

/// Slot B (a root partition and a verity partition labelled `_empty`) is as the build left
/// it: its first MiB all zeros.
fn slot_b_untouched(r: &Report, _: &Expect) -> Result<String, String> {
    let empty: Vec<&str> = r
        .get("partitions")
        .lines()
        .filter(|l| l.split_whitespace().any(|w| w == "label=_empty"))
        .collect();
    let untouched = empty
        .iter()
        .filter(|l| l.split_whitespace().any(|w| w == "zero-first-mib=yes"))
        .count();
    if empty.len() == 2 && untouched == 2 {
        let names: Vec<&str> = empty
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        Ok(format!(
            "{} labelled _empty, all zeros",
            names.join(" and ")
        ))
    } else {
        Err(format!(
            "want two partitions labelled _empty, all zeros; found:\n{}",
            empty.join("\n")
        ))
    }
}

fn var_log_subvolume(r: &Report, e: &Expect) -> Result<String, String> {
    let mut errs = Vec::new();
    let inode = r.field("var-log", "inode").unwrap_or("");
    let fstype = r.field("var-log", "fstype").unwrap_or("");
    // The root directory of every btrfs subvolume is inode 256.
    if fstype != "btrfs" || inode != "256" {
        errs.push(format!(
            "/var/log is not a btrfs subvolume (fstype {fstype}, inode {inode})"
        ));
    }
    if !e.var_log_absent_at_build {
        errs.push("the /var disk already held /var/log: not made at boot".into());
    }
    let label = r.field("var-log", "label").unwrap_or("");
    let expected = r.field("var-log", "expected").unwrap_or("");
    if e.selinux.is_some() && (label != expected || label.is_empty() || label == "none") {
        errs.push(format!(
            "/var/log is labelled `{label}`, the policy says `{expected}`"
        ));
    }
    if errs.is_empty() {
        Ok(format!(
            "btrfs subvolume (inode 256), absent from the /var disk at build, label {label}"
        ))
    } else {
        Err(errs.join("; "))
    }
}

fn sandboxed_service(r: &Report, _: &Expect) -> Result<String, String> {
    let s = r.get("sandbox");
    if s.lines().any(|l| l == "exit 0") && s.lines().any(|l| l == "Result=success") {
        Ok("PrivateTmp=yes ProtectSystem=strict PrivateDevices=yes: ran, Result=success".into())
    } else {
        Err(format!(
            "keel-check-sandbox.service: {}",
            s.replace('\n', "; ")
        ))
    }
}

fn journal_metadata(r: &Report, e: &Expect) -> Result<String, String> {
    let s = r.get("syslog");
    let has = |k: &str| s.lines().find(|l| l.starts_with(k));
    let mut errs = Vec::new();
    if !s.contains("MESSAGE=keel-check-syslog-") {
        errs.push("the syslog message is not in the journal".to_owned());
    }
    if has("_TRANSPORT=syslog").is_none() {
        errs.push("no _TRANSPORT=syslog".into());
    }
    if has("_CMDLINE=").is_none() {
        errs.push("no _CMDLINE".into());
    }
    if e.selinux.is_some() && has("_SELINUX_CONTEXT=").is_none() {
        errs.push("no _SELINUX_CONTEXT".into());
    }
    if errs.is_empty() {
        Ok(s.lines()
            .filter(|l| l.starts_with("_CMDLINE=") || l.starts_with("_SELINUX_CONTEXT="))
            .collect::<Vec<_>>()
            .join(" "))
    } else {
        Err(format!("{}\n{s}", errs.join("; ")))
    }
}

fn containers(r: &Report, e: &Expect) -> Result<String, String> {
    let s = r.get("containers");
    let rows: Vec<BTreeMap<&str, &str>> = s
        .lines()
        .filter_map(|l| l.strip_prefix("container "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|w| w.split_once('='))
                .collect()
        })
        .collect();
    let mut errs = Vec::new();
    if rows.len() != 2 {
        errs.push(format!("{} containers reported, want 2", rows.len()));
    }
    for row in &rows {
        if row.get("state") != Some(&"running") {
            errs.push(format!("a container is not running: {row:?}"));
        }
    }
    let mut cats = Vec::new();
    if e.selinux.is_some() {
        for row in &rows {
            let label = row.get("label").copied().unwrap_or("");
            let current = row.get("current").copied().unwrap_or("");
            let parts: Vec<&str> = label.splitn(5, ':').collect();
            if parts.len() != 5 || parts[2] != "container_t" || parts[3] != "s0" {
                errs.push(format!(
                    "process label `{label}` is not container_t:s0:<categories>"
                ));
                continue;
            }
            if current != label {
                errs.push(format!(
                    "the process runs as `{current}`, podman says `{label}`"
                ));
            }
            cats.push(parts[4].to_owned());
        }
        if cats.len() == 2 && cats[0] == cats[1] {
            errs.push(format!("both containers have categories {}", cats[0]));
        }
    }
    if errs.is_empty() {
        Ok(if cats.is_empty() {
            "2 containers running".to_owned()
        } else {
            format!(
                "2 containers running as container_t in categories {} and {}",
                cats[0], cats[1]
            )
        })
    } else {
        Err(format!("{}\n{s}", errs.join("; ")))
    }
}

fn avc_denials(r: &Report, _: &Expect) -> Result<String, String> {
    let mut denials: Vec<Denial> = r.get("avc").lines().filter_map(Denial::parse).collect();
    denials.sort();
    denials.dedup();
    let mut errs = Vec::new();
    let mut accepted = Vec::new();
    for d in &denials {
        if d.permissive {
            errs.push(format!(
                "{d}: a permissive domain (the engine must run enforcing)"
            ));
        } else if let Some(a) = d.accepted() {
            accepted.push(format!("{d} (accepted: {})", a.reason));
        } else {
            errs.push(d.to_string());
        }
    }
    if errs.is_empty() {
        Ok(if accepted.is_empty() {
            "none".into()
        } else {
            accepted.join("\n")
        })
    } else {
        Err(format!(
            "{} denial(s) not accepted:\n{}",
            errs.len(),
            errs.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests;
