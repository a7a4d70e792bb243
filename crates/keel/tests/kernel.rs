//! Issue 18: the variant's kernel configuration fragments are checked (docs/kernel.md).
//!
//! gentoo-mini's `sys-kernel/gentoo-kernel` is a real Linux 6.1 from Debian's
//! `linux-source-6.1`, configured as Gentoo's `kernel-build.eclass` does it: the
//! distribution configuration, the user's `/etc/kernel/config.d` fragments merged by the
//! kernel's own `merge_config.sh`, `make olddefconfig`. Keel's hook then compares every
//! fragment line with the final `.config`. In a fresh project:
//! - a variant `bashrc` that defines `post_src_configure` (Keel's hook) is refused;
//! - a fragment line that is not a setting is refused before anything is built, naming
//!   the variant's file and line;
//! - a fragment option the kernel does not know fails the kernel package in its configure
//!   phase (before any compiling), naming the fragment's file and line, the option and
//!   what the kernel has instead; no destination root is left.
//!
//! Compiling the kernel is a benchmark (`cargo xtask bench kernel`), not a test.

mod common;

use common::{keel_cmd, project, text};
use std::fs;
use std::time::Duration;

#[test]
fn a_fragment_option_the_kernel_does_not_have_fails_the_build_naming_file_and_line() {
    let Some(p) = project() else { return };
    // Under `cargo xtask test` (strict) a missing distfile fails instead of passing unseen.
    if !portage::distfiles::KERNEL.present() {
        testutil::skip_or_fail(&format!(
            "{} is not installed (cargo xtask test installs it)",
            portage::distfiles::KERNEL.src
        ));
        return;
    }
    if !testutil::require("flex") {
        return;
    }
    let v = p.root.join("variants/kern");
    fs::create_dir_all(v.join("kernel/config.d")).unwrap();
    fs::write(v.join("variant.toml"), "inherits = \"base-quick\"\n").unwrap();
    fs::write(v.join("build.packages"), "sys-kernel/gentoo-kernel\n").unwrap();
    let fragment = v.join("kernel/config.d/50-kern.config");
    let build = || {
        text(&testutil::output_within(
            keel_cmd(&p, &["build", "--variant", "kern"]),
            Duration::from_secs(900),
            "keel build --variant kern",
        ))
    };

    // A bashrc of the variant's that defines the phase hook Keel's check needs: refused.
    fs::write(&fragment, "CONFIG_SQUASHFS=y\n").unwrap();
    fs::create_dir_all(v.join("portage")).unwrap();
    fs::write(v.join("portage/bashrc"), "post_src_configure() { :; }\n").unwrap();
    let (ok, _, err) = build();
    assert!(!ok);
    assert!(
        err.contains("the portage/bashrc of variant `kern` defines post_src_configure"),
        "{err}"
    );
    fs::remove_dir_all(v.join("portage")).unwrap();

    // Not a kernel configuration line: refused at once.
    fs::write(&fragment, "CONFIG_SQUASHFS=y\nSECURITY_SELINUX=y\n").unwrap();
    let (ok, _, err) = build();
    assert!(!ok);
    assert!(
        err.contains(
            "variants/kern/kernel/config.d/50-kern.config:2: `SECURITY_SELINUX=y` is not a kernel configuration line"
        ),
        "{err}"
    );
    assert!(
        !p.root.join("build/work/kern/logs/sysroot.log").exists(),
        "nothing is built for a malformed fragment:\n{err}"
    );

    // An option this kernel does not have, and one whose dependencies are not met
    // (CONFIG_HYPERV_VSOCKETS needs CONFIG_HYPERV, which the configuration leaves out).
    fs::write(
        &fragment,
        "# kern\nCONFIG_SQUASHFS=y\nCONFIG_KEEL_NO_SUCH_OPTION=y\nCONFIG_HYPERV_VSOCKETS=y\n",
    )
    .unwrap();
    let (ok, _, err) = build();
    assert!(!ok);
    assert!(
        err.contains(
            "variants/kern/kernel/config.d/50-kern.config:3: CONFIG_KEEL_NO_SUCH_OPTION=y: CONFIG_KEEL_NO_SUCH_OPTION is not in the kernel's final configuration"
        ),
        "{err}"
    );
    assert!(
        err.contains("variants/kern/kernel/config.d/50-kern.config:4: CONFIG_HYPERV_VSOCKETS=y: "),
        "{err}"
    );
    assert!(
        !err.contains("50-kern.config:2:"),
        "a met line is not reported:\n{err}"
    );
    assert!(err.contains("sysroot.log"), "{err}");
    let log = fs::read_to_string(p.root.join("build/work/kern/logs/sysroot.log")).unwrap();
    assert!(
        log.contains("(configure phase)") && !log.contains("  CC      "),
        "it fails after configuring, before compiling:\n{log}"
    );
    assert!(!p.root.join("build/work/kern/destroot").exists());
}

/// The plumbing command the hook runs: exit 0 when every fragment line is met, else 1 with
/// one line per mismatch on stderr; a missing file is an error naming it.
#[test]
fn check_config_exits_0_when_met_and_1_naming_each_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let frags = d.path().join("config.d");
    fs::create_dir(&frags).unwrap();
    fs::write(
        frags.join("50-a.config"),
        "CONFIG_A=y\n# CONFIG_B is not set\n",
    )
    .unwrap();
    let config = d.path().join(".config");
    let run = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_keel"))
            .args(["kernel", "check-config", "--fragments"])
            .arg(&frags)
            .arg(&config)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    fs::write(&config, "CONFIG_A=y\n# CONFIG_B is not set\n").unwrap();
    assert_eq!(run(), (Some(0), String::new()));
    fs::write(&config, "CONFIG_A=m\nCONFIG_B=y\n").unwrap();
    let (code, err) = run();
    assert_eq!(code, Some(1));
    let f = frags.join("50-a.config").display().to_string();
    assert_eq!(
        err.lines().collect::<Vec<_>>(),
        [
            format!("keel: kernel configuration: {f}:1: CONFIG_A=y: the kernel's final configuration has CONFIG_A=m (a dependency or another option decided it)"),
            format!("keel: kernel configuration: {f}:2: # CONFIG_B is not set: the kernel's final configuration has CONFIG_B=y (a dependency or another option decided it)"),
        ]
    );
    fs::remove_file(&config).unwrap();
    let (code, err) = run();
    assert_eq!(code, Some(1));
    assert!(err.contains(&config.display().to_string()), "{err}");
}
