use super::*;

/// Arguments as one string, an argument a line: exact, and readable in a diff.
fn check(m: &Machine, expect: &str) {
    assert_eq!(m.args().join("\n"), expect.trim());
}

fn base() -> Machine {
    Machine {
        name: None,
        accel: Accel::Tcg,
        memory_mb: 2048,
        cpus: 2,
        boot: Boot::Kernel {
            kernel: "/w/vmlinuz".into(),
            initrd: Some("/w/initrd.img".into()),
            cmdline: "root=/dev/vda ro console=ttyS0".into(),
        },
        drives: Vec::new(),
        shares: Vec::new(),
        console: Console::Log {
            path: "/w/console.log".into(),
            echo: false,
        },
        report: None,
        run_as: None,
        reboot: false,
    }
}

#[test]
fn a_boot_check_machine() {
    let m = Machine {
        drives: vec![
            Drive {
                path: "/out/debian-base.squashfs".into(),
                mode: DriveMode::ReadOnly,
            },
            Drive {
                path: "/w/var.img".into(),
                mode: DriveMode::Writable,
            },
        ],
        report: Some("/w/report.txt".into()),
        ..base()
    };
    check(
        &m,
        "
-accel
tcg
-cpu
max
-m
2048
-smp
2
-no-reboot
-display
none
-nic
none
-device
virtio-rng-pci
-kernel
/w/vmlinuz
-initrd
/w/initrd.img
-append
root=/dev/vda ro console=ttyS0
-drive
file=/out/debian-base.squashfs,if=virtio,format=raw,readonly=on
-drive
file=/w/var.img,if=virtio,format=raw
-monitor
none
-serial
stdio
-serial
file:/w/report.txt
",
    );
}

#[test]
fn a_build_vm() {
    let m = Machine {
        name: Some(Name {
            guest: "keel-vm-p-1a2b3c".into(),
            process: "keel-vm".into(),
        }),
        accel: Accel::Kvm,
        run_as: Some(RunAs {
            uid: 4242,
            gid: 4243,
            run_with: true,
        }),
        drives: vec![
            Drive {
                path: "/b/vm/images/root,1.ext4".into(),
                mode: DriveMode::Snapshot,
            },
            Drive {
                path: "/b/vm/p/build.ext4".into(),
                mode: DriveMode::Writable,
            },
        ],
        shares: vec![
            Share {
                tag: "tools".into(),
                path: "/b/vm/p/tools".into(),
                writable: false,
            },
            Share {
                tag: "out".into(),
                path: "/home/u/my,out".into(),
                writable: true,
            },
        ],
        console: Console::Log {
            path: "/b/vm/p/console.log".into(),
            echo: true,
        },
        report: Some("/b/vm/p/report".into()),
        ..base()
    };
    check(
        &m,
        "
-name
keel-vm-p-1a2b3c,process=keel-vm
-run-with
user=4242:4243
-accel
kvm
-cpu
host
-m
2048
-smp
2
-no-reboot
-display
none
-nic
none
-device
virtio-rng-pci
-kernel
/w/vmlinuz
-initrd
/w/initrd.img
-append
root=/dev/vda ro console=ttyS0
-drive
file=/b/vm/images/root,,1.ext4,if=virtio,format=raw,snapshot=on
-drive
file=/b/vm/p/build.ext4,if=virtio,format=raw
-virtfs
local,path=/b/vm/p/tools,mount_tag=tools,security_model=none,multidevs=remap,readonly=on
-virtfs
local,path=/home/u/my,,out,mount_tag=out,security_model=none,multidevs=remap
-monitor
none
-serial
stdio
-serial
file:/b/vm/p/report
",
    );
}

#[test]
fn on_the_terminal_without_initrd_with_the_old_run_as_spelling() {
    let m = Machine {
        boot: Boot::Kernel {
            kernel: "/k".into(),
            initrd: None,
            cmdline: "console=ttyS0 panic=-1".into(),
        },
        console: Console::Terminal,
        run_as: Some(RunAs {
            uid: 1000,
            gid: 100,
            run_with: false,
        }),
        ..base()
    };
    check(
        &m,
        "
-runas
1000:100
-accel
tcg
-cpu
max
-m
2048
-smp
2
-no-reboot
-display
none
-nic
none
-device
virtio-rng-pci
-kernel
/k
-append
console=ttyS0 panic=-1
-serial
mon:stdio
",
    );
}

#[test]
fn a_firmware_machine() {
    let m = Machine {
        boot: Boot::Firmware {
            code: OVMF_CODE.into(),
            vars: "/w/vars,1.fd".into(),
            smbios: vec!["type=3,asset=keel-check".into()],
        },
        drives: vec![Drive {
            path: "/out/v.raw".into(),
            mode: DriveMode::Writable,
        }],
        ..base()
    };
    check(
        &m,
        r"
-accel
tcg
-cpu
max
-m
2048
-smp
2
-no-reboot
-display
none
-nic
none
-device
virtio-rng-pci
-drive
if=pflash,format=raw,unit=0,file=/usr/share/OVMF/OVMF_CODE_4M.fd,readonly=on
-drive
if=pflash,format=raw,unit=1,file=/w/vars,,1.fd
-smbios
type=3,asset=keel-check
-drive
file=/out/v.raw,if=virtio,format=raw
-monitor
none
-serial
stdio
",
    );
}
