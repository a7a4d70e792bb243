//! `qemu::run` on a real QEMU, with a guest small enough to write here: a multiboot image
//! (the "a.out kludge" header, no ELF) of a few instructions that write a console text to
//! the first serial port and a report to the second, then reset the machine (which
//! `-no-reboot` turns into QEMU's end) or spin forever. Each run takes about a second.

use qemu::{Accel, Boot, Console, Error, Machine};
use std::path::Path;
use std::time::{Duration, Instant};

/// A scratch directory when QEMU is here; without it the test is skipped locally and
/// fails under `KEEL_TEST_STRICT=1` (what `cargo xtask test` sets).
fn scratch() -> Option<tempfile::TempDir> {
    let here = exec::Cmd::new(qemu::QEMU).arg("--version").output().is_ok()
        && exec::Cmd::new("setpriv").arg("--version").output().is_ok();
    if !here {
        assert!(
            std::env::var_os("KEEL_TEST_STRICT").is_none(),
            "qemu-system-x86_64 and setpriv are needed"
        );
        eprintln!("SKIPPED: qemu-system-x86_64 or setpriv is not installed");
    }
    here.then(|| tempfile::tempdir().unwrap())
}

enum End {
    /// Reset the machine through the keyboard controller: QEMU ends (`-no-reboot`).
    Reset,
    /// Spin forever.
    Spin,
}

/// A multiboot image loaded at 1 MiB: the header, then 32-bit code.
fn guest(console: &str, report: &str, end: End) -> Vec<u8> {
    const MAGIC: u32 = 0x1BAD_B002;
    const AOUT_KLUDGE: u32 = 1 << 16;
    const LOAD: u32 = 0x10_0000;
    let mut img = Vec::new();
    for word in [
        MAGIC,
        AOUT_KLUDGE,
        0u32.wrapping_sub(MAGIC.wrapping_add(AOUT_KLUDGE)),
        LOAD,      // header_addr
        LOAD,      // load_addr
        0,         // load_end_addr: the whole file
        0,         // bss_end_addr: none
        LOAD + 32, // entry_addr: right after this header
    ] {
        img.extend(word.to_le_bytes());
    }
    for (port, text) in [(0x3f8u16, console), (0x2f8, report)] {
        img.extend([0x66, 0xBA]); // mov dx, port
        img.extend(port.to_le_bytes());
        for b in text.bytes() {
            img.extend([0xB0, b, 0xEE]); // mov al, b; out dx, al
        }
    }
    if let End::Reset = end {
        img.extend([0xB0, 0xFE, 0xE6, 0x64]); // mov al, 0xfe; out 0x64, al
    }
    img.extend([0xEB, 0xFE]); // jmp $
    img
}

/// A machine booting [`guest`] with these arguments, its files in `dir`.
fn machine(dir: &Path, console: &str, report: &str, end: End) -> Machine {
    let kernel = dir.join("guest.bin");
    std::fs::write(&kernel, guest(console, report, end)).unwrap();
    Machine {
        name: None,
        accel: Accel::Tcg,
        memory_mb: 64,
        cpus: 1,
        boot: Boot::Kernel {
            kernel,
            initrd: None,
            cmdline: String::new(),
        },
        drives: Vec::new(),
        shares: Vec::new(),
        console: Console::Log {
            path: dir.join("logs/console.log"),
            echo: false,
        },
        report: Some(dir.join("logs/report")),
        run_as: None,
        reboot: false,
    }
}

#[test]
fn a_guest_that_reports_and_powers_off() {
    let Some(dir) = scratch() else { return };
    let m = machine(
        dir.path(),
        "hello from the guest\n",
        "KEEL-REPORT-BEGIN\n@@ start\n0.5\n@@ exit\n3\nKEEL-REPORT-END\n",
        End::Reset,
    );
    // what an earlier run left is replaced
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::write(
        dir.path().join("logs/report"),
        "KEEL-REPORT-BEGIN\n@@ old\n",
    )
    .unwrap();
    let run = qemu::run::run(&m, Some(Duration::from_secs(120))).unwrap();
    assert!(run.status.success(), "{:?}", run.status);
    assert!(run.report.complete, "{:?}", run.report);
    assert_eq!(run.report.get("exit"), "3");
    assert_eq!(run.report.get("start"), "0.5");
    assert_eq!(run.report.sections.len(), 2, "{:?}", run.report);
    let start = run.arrived("start").expect("seen arriving");
    assert!(start > 0.0 && start <= run.secs, "{start} {}", run.secs);
    let console = std::fs::read_to_string(&run.console).unwrap();
    assert!(
        console.starts_with("$ setpriv --pdeathsig KILL -- qemu-system-x86_64 ")
            && console.contains("hello from the guest"),
        "{console}"
    );
    assert_eq!(
        console.lines().next(),
        Some(format!("$ {}", run.cmdline).as_str())
    );
    // The machine ended without what the caller needed: no panic here.
    let e = run.unreported("the test machine", "a verdict").to_string();
    assert!(
        e.starts_with("the test machine stopped without a verdict: `setpriv ")
            && e.contains(&run.console.display().to_string())
            && e.contains("| hello from the guest"),
        "{e}"
    );
}

#[test]
fn a_kernel_panic_on_the_console_is_named() {
    let Some(dir) = scratch() else { return };
    let m = machine(
        dir.path(),
        "[    1.000000] Kernel panic - not syncing: VFS: Unable to mount root fs\n",
        "",
        End::Reset,
    );
    let run = qemu::run::run(&m, Some(Duration::from_secs(120))).unwrap();
    assert_eq!(run.report, qemu::Report::default());
    assert!(run.arrivals.is_empty());
    let e = run.unreported("the VM `x`", "an exit code").to_string();
    assert!(
        e.starts_with("the VM `x` stopped after a kernel panic without an exit code: `"),
        "{e}"
    );
}

#[test]
fn a_guest_that_never_ends_is_stopped_at_the_limit() {
    let Some(dir) = scratch() else { return };
    let m = machine(dir.path(), "spinning\n", "", End::Spin);
    let t = Instant::now();
    let e = qemu::run::run(&m, Some(Duration::from_secs(2))).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let console = dir.path().join("logs/console.log");
    match &e {
        Error::Deadline { limit, at } => assert_eq!((*limit, &at.console), (2, &console)),
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.starts_with("the machine did not finish within 2 s (QEMU stopped): `setpriv --pdeathsig KILL -- qemu-system-x86_64 ")
            && msg.contains(&format!("; console log {}:\n", console.display()))
            && msg.contains("| spinning"),
        "{msg}"
    );
    // no QEMU of this machine is left
    let kernel = dir.path().join("guest.bin").display().to_string();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(p.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c);
            assert!(
                !(c.contains(&kernel) && c.starts_with("qemu")),
                "left running: {c}"
            );
        }
    }
}

#[test]
fn qemu_failing_names_its_command_line_and_console_log() {
    let Some(dir) = scratch() else { return };
    let mut m = machine(dir.path(), "", "", End::Reset);
    m.drives.push(qemu::Drive {
        path: dir.path().join("no-such-disk.img"),
        mode: qemu::DriveMode::Writable,
    });
    let e = qemu::run::run(&m, Some(Duration::from_secs(60))).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Exec(_)), "{e:?}");
    assert!(
        msg.contains("`setpriv --pdeathsig KILL -- qemu-system-x86_64 ")
            && msg.contains("no-such-disk.img")
            && msg.contains(&dir.path().join("logs/console.log").display().to_string()),
        "{msg}"
    );
    // the console log has what QEMU said
    let console = std::fs::read_to_string(dir.path().join("logs/console.log")).unwrap();
    assert!(console.contains("no-such-disk.img"), "{console}");

    // and a console on the terminal is not for run
    m.console = Console::Terminal;
    assert!(matches!(qemu::run::run(&m, None), Err(Error::Invalid(_))));
}
