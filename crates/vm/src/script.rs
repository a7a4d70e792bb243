//! The run script: what the VM's PID 1 (`init.sh`, in the root disk) runs for one `keel
//! vm` invocation. Pure: the host writes the text into the tools share.

use exec::shell_quote;

/// A host directory shared into the VM over virtio-9p (what QEMU is told), and where the
/// run script mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub share: qemu::Share,
    /// Where it is mounted in the VM.
    pub guest: String,
}

/// Everything the run script needs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Mounted in this order (the tools share is mounted by `init.sh` itself).
    pub shares: Vec<Share>,
    /// The build disk's device and mount point.
    pub build_device: String,
    pub build_mount: String,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    /// The program (`/keel/tools/keel`) and its arguments.
    pub command: Vec<String>,
}

/// The report sections (the report protocol of crate `qemu`, on the second serial port):
/// `start`, the guest's uptime when the command starts (written by the run script), and
/// `exit`, the run script's exit code (written by PID 1, `init.sh`, which also writes the
/// begin and end markers).
pub const START: &str = "start";
pub const EXIT: &str = "exit";

/// Exit code of the run script when the VM could not be set up (a share or disk that
/// would not mount, a missing working directory): `keel vm` says so instead of blaming
/// the command.
pub const SETUP_FAILED: i32 = 125;

pub fn run_script(spec: &RunSpec) -> String {
    let mut s = String::from(
        "# written by keel vm for one run (docs/vm.md); run by /keel/init\n\
         fail() { echo \"keel vm: $*\"; exit 125; }\n\
         m9() { mkdir -p \"$2\" && mount -t 9p -o \"trans=virtio,version=9p2000.L,msize=512000,$3\" \"$1\" \"$2\" || fail \"cannot mount share $1 on $2\"; }\n",
    );
    for sh in &spec.shares {
        let opts = if sh.share.writable {
            "rw"
        } else {
            "ro,cache=loose"
        };
        s.push_str(&format!(
            "m9 {} {} {opts}\n",
            shell_quote(&sh.share.tag),
            shell_quote(&sh.guest)
        ));
    }
    let (dev, mnt) = (
        shell_quote(&spec.build_device),
        shell_quote(&spec.build_mount),
    );
    s.push_str(&format!(
        "mkdir -p {mnt} && mount -t ext4 {dev} {mnt} || fail \"cannot mount the build disk {}\"\n",
        spec.build_device
    ));
    for (k, v) in &spec.env {
        s.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    let cwd = shell_quote(&spec.cwd);
    s.push_str(&format!("cd {cwd} || fail \"no directory {}\"\n", spec.cwd));
    let cmd: Vec<String> = spec.command.iter().map(|a| shell_quote(a)).collect();
    let cmd = cmd.join(" ");
    s.push_str("read up _ </proc/uptime\n");
    s.push_str(&format!(
        "printf '@@ {START}\\n%s\\n' \"$up\" >/dev/ttyS1\n"
    ));
    s.push_str(&format!(
        "echo \"keel vm: running {} (uptime $up s)\"\n",
        cmd.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace('`', "\\`")
    ));
    s.push_str(&format!("{cmd}\n"));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RunSpec {
        RunSpec {
            shares: vec![
                Share {
                    share: qemu::Share {
                        tag: "src".into(),
                        path: "/p".into(),
                        writable: false,
                    },
                    guest: "/keel/src".into(),
                },
                Share {
                    share: qemu::Share {
                        tag: "out".into(),
                        path: "/p/build".into(),
                        writable: true,
                    },
                    guest: "/keel/out".into(),
                },
            ],
            build_device: "/dev/vdb".into(),
            build_mount: "/keel/build".into(),
            env: vec![("SOURCE_DATE_EPOCH".into(), "1700000000".into())],
            cwd: "/keel/src/sub dir".into(),
            command: vec![
                "/keel/tools/keel".into(),
                "build".into(),
                "--variant".into(),
                "it's $x".into(),
            ],
        }
    }

    #[test]
    fn script_mounts_in_order_and_quotes_everything() {
        let s = run_script(&spec());
        let src = s.find("m9 src /keel/src ro,cache=loose").unwrap();
        let out = s.find("m9 out /keel/out rw").unwrap();
        let disk = s.find("mount -t ext4 /dev/vdb /keel/build").unwrap();
        let cmd = s
            .find("/keel/tools/keel build --variant 'it'\\''s $x'\n")
            .unwrap();
        assert!(src < out && out < disk && disk < cmd, "{s}");
        assert!(s.contains("export SOURCE_DATE_EPOCH=1700000000\n"));
        assert!(s.contains("cd '/keel/src/sub dir' ||"));
        // the start is reported just before the command
        let start = s
            .find("printf '@@ start\\n%s\\n' \"$up\" >/dev/ttyS1\n")
            .unwrap();
        assert!(disk < start && start < cmd, "{s}");
        // the command is the last line: its exit code is the script's
        assert!(s.ends_with("'it'\\''s $x'\n"));
    }

    #[test]
    fn script_is_valid_shell() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("run");
        std::fs::write(&f, run_script(&spec())).unwrap();
        exec::Cmd::new("sh").arg("-n").arg(&f).run().unwrap();
    }
}
