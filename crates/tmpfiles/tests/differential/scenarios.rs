//! Scenarios for the differential suite: each is a small root made by its own setup, a
//! configuration, and whether `--boot` is given; systemd-tmpfiles and Keel each run on a
//! fresh copy, and the trees and exit statuses must agree, or differ exactly as a
//! deliberate difference of docs/tmpfiles.md says.
//!
//! Written from tmpfiles.d(5), line type by line type and modifier by modifier, and from
//! issue 16's eight reproducers (the `issue16_*` cases).
//!
//! **Host safety.** systemd-tmpfiles 252 resolves some paths on the build host, not in
//! the root: `Z T A H` glob through symlinks, `w` follows its last component, `C` reads its
//! source, and missing parents are created with `mkdir -p`. A scenario therefore gives
//! symlinks relative targets, except issue 16's reproducers, whose absolute links
//! systemd refuses before it writes anything (checked when they were written).

use super::{dir, fifo, file, link, Node};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

pub type Tree = BTreeMap<String, Node>;

/// The user that owns "home" directories in the scenarios: `keelsvc` in the roots.
pub const U: u32 = 4242;

/// What the two runs must show.
pub enum Expect {
    /// The same tree and the same exit status.
    Agree,
    /// A deliberate difference; `doc` is quoted from docs/tmpfiles.md's list.
    Differ {
        doc: &'static str,
        /// Exit statuses: systemd's, Keel's.
        codes: (i32, i32),
        keel: KeelTree,
    },
}

/// Keel's tree in a deliberate difference.
pub enum KeelTree {
    /// The same as systemd's (only the exit statuses differ).
    Same,
    /// As the setup left it: Keel refused the line.
    Untouched,
    /// A check of Keel's tree.
    Check(fn(&Tree) -> bool),
}

pub struct Case {
    pub name: &'static str,
    pub setup: fn(&Path),
    pub conf: &'static str,
    pub boot: bool,
    pub expect: Expect,
    /// Text Keel's report must hold (a message naming file, line and path).
    pub says: Option<&'static str>,
}

fn case(name: &'static str, conf: &'static str, setup: fn(&Path)) -> Case {
    Case {
        name,
        setup,
        conf,
        boot: true,
        expect: Expect::Agree,
        says: None,
    }
}

impl Case {
    fn without_boot(mut self) -> Case {
        self.boot = false;
        self
    }
    fn says(mut self, text: &'static str) -> Case {
        self.says = Some(text);
        self
    }
    fn differs(mut self, doc: &'static str, codes: (i32, i32), keel: KeelTree) -> Case {
        self.expect = Expect::Differ { doc, codes, keel };
        self
    }
}

fn own(r: &Path, p: &str, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(r.join(p), Some(uid), Some(gid)).unwrap();
}

fn chmod(r: &Path, p: &str, mode: u32) {
    std::fs::set_permissions(r.join(p), std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chardev(r: &Path, p: &str, major: u32, minor: u32) {
    std::fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        r.join(p),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o644),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
}

fn nothing(_: &Path) {}

/// `/home/u` owned by U, as in issue 16.
fn home(r: &Path) {
    dir(r, "home/u");
    own(r, "home/u", U, U);
}

/// Issue 16, item 1: a user's symlink to `/etc`, a root-owned symlink in a user's
/// directory, and root-owned files behind them.
fn issue16_links(r: &Path) {
    home(r);
    link(r, "home/u/link", "/etc");
    own(r, "home/u/link", U, U);
    file(r, "etc/shadow", "secret\n", 0o600);
    dir(r, "home/u/d2");
    own(r, "home/u/d2", U, U);
    link(r, "home/u/d2/l2", "/etc");
}

/// A user's relative symlink out of its home to the root-owned `/etc`.
fn user_rel_link(r: &Path) {
    home(r);
    link(r, "home/u/link", "../../etc");
    own(r, "home/u/link", U, U);
    file(r, "etc/shadow", "secret\n", 0o600);
}

fn ab(r: &Path) {
    dir(r, "a/b");
}

fn unchanged_shadow(t: &Tree) -> bool {
    t["etc/shadow"].mode == 0o600 && t["etc/shadow"].uid == 0
}

pub fn cases() -> Vec<Case> {
    vec![
        // ---- Issue 16, item 1: unsafe transitions through symlinks (security). ----
        case(
            "issue16_1_z_through_user_link",
            "z /home/u/link/shadow 0666 keelsvc keelgrp -\n",
            issue16_links,
        )
        .says("case.conf:1: /home/u/link/shadow: detected unsafe path transition /home/u/link (owned by 4242) → / (owned by 0)"),
        case(
            "issue16_1_f_plus_through_user_link",
            "f+ /home/u/link/passwd 0644 - - - pwned\n",
            issue16_links,
        )
        .says("case.conf:1: /home/u/link/passwd: detected unsafe path transition /home/u/link (owned by 4242) → / (owned by 0)"),
        case(
            "issue16_1_w_through_root_link_in_user_dir",
            "w /home/u/d2/l2/group - - - - pwned\n",
            issue16_links,
        )
        .says("case.conf:1: /home/u/d2/l2/group: detected unsafe path transition /home/u/d2 (owned by 4242) → /home/u/d2/l2 (owned by 0)"),
        case(
            "issue16_1_d_through_user_link",
            "d /home/u/link/newdir 0755 keelsvc keelgrp -\n",
            issue16_links,
        )
        .says("case.conf:1: /home/u/link/newdir: detected unsafe path transition"),
        case(
            "issue16_1_all_four",
            "z /home/u/link/shadow 0666 keelsvc keelgrp -\nf+ /home/u/link/passwd 0644 - - - pwned\nw /home/u/d2/l2/group - - - - pwned\nd /home/u/link/newdir 0755 keelsvc keelgrp -\n",
            issue16_links,
        ),
        case("issue16_1_link_owned_as_its_dir", "d /tmp/d/s/y 0755 - - -\n", |r| {
            dir(r, "tmp/d");
            dir(r, "srv/x");
            link(r, "tmp/d/s", "/srv/x");
            own(r, "tmp/d", 4501, 4501);
            own(r, "tmp/d/s", 4501, 4501);
        })
        .says("/tmp/d/s (owned by 4501) → / (owned by 0)"),
        case("issue16_1_relative_link_owned_as_its_dir", "d /tmp/d/s/y 0755 - - -\n", |r| {
            dir(r, "tmp/d");
            dir(r, "root");
            link(r, "tmp/d/s", "../../root");
            own(r, "tmp/d", 4501, 4501);
            own(r, "tmp/d/s", 4501, 4501);
        })
        .says("/tmp/d/s (owned by 4501) → /tmp (owned by 0)"),
        // The same rule for every type that resolves a path, with a relative link.
        case("unsafe_rel_z", "z /home/u/link/shadow 0666\n", user_rel_link),
        case("unsafe_rel_f", "f /home/u/link/new 0644\n", user_rel_link),
        case("unsafe_rel_d", "d /home/u/link/new 0755\n", user_rel_link),
        case("unsafe_rel_p", "p /home/u/link/new 0644\n", user_rel_link),
        case("unsafe_rel_c", "c /home/u/link/new 0644 - - - 1:3\n", user_rel_link),
        case("unsafe_rel_L", "L /home/u/link/new - - - - x\n", user_rel_link),
        case("unsafe_rel_C", "C /home/u/link/new - - - - /etc/shadow\n", user_rel_link),
        case("unsafe_rel_e", "e /home/u/link 0700\n", user_rel_link),
        case("unsafe_rel_t", "t /home/u/link/shadow - - - - user.k=v\n", user_rel_link),
        case("unsafe_rel_a", "a /home/u/link/shadow - - - - u:4242:rw\n", user_rel_link),
        case("unsafe_rel_w", "w /home/u/link/shadow - - - - pwned\n", user_rel_link),
        case("unsafe_rel_glob_z", "z /home/u/link/sha* 0666\n", user_rel_link),
        case("unsafe_rel_dash_is_a_note", "z- /home/u/link/shadow 0666\n", user_rel_link),
        // The last component: a root-owned entry in a user's directory (z t a e look at it).
        case("unsafe_last_component_z", "z /home/u/rootfile 0666\n", |r| {
            home(r);
            file(r, "home/u/rootfile", "r\n", 0o600);
        }),
        case("unsafe_last_component_t", "t /home/u/rootfile - - - - user.k=v\n", |r| {
            home(r);
            file(r, "home/u/rootfile", "r\n", 0o600);
        }),
        case("unsafe_last_component_e", "e /home/u/rootdir 0777\n", |r| {
            home(r);
            dir(r, "home/u/rootdir");
        }),
        // f and d only resolve the parent safely, as systemd (which then chowns).
        case("last_component_f_chowns", "f /home/u/rootfile 0600 keelsvc keelsvc\n", |r| {
            home(r);
            file(r, "home/u/rootfile", "r\n", 0o644);
        }),
        case("last_component_d_chowns", "d /home/u/rootdir 0700 keelsvc keelsvc\n", |r| {
            home(r);
            dir(r, "home/u/rootdir");
        }),
        // A missing directory made inside a user's directory is root's: the next step is unsafe.
        case("unsafe_made_parent", "d /home/u/new/sub 0755\n", home),
        // Safe: a user's link to the user's own directory; root's link to a user's directory.
        case("safe_user_link_to_own_dir", "d /home/u/ln/x 0700 keelsvc keelsvc\n", |r| {
            home(r);
            dir(r, "home/u/sub");
            own(r, "home/u/sub", U, U);
            link(r, "home/u/ln", "sub");
            own(r, "home/u/ln", U, U);
        }),
        case("safe_root_link_to_user_dir", "f /srv/ln/x 0600 keelsvc - - data\n", |r| {
            home(r);
            link(r, "srv/ln", "../home/u");
        }),
        case("safe_dotdot_in_link_target", "f /srv/ln/x 0600 - - - data\n", |r| {
            dir(r, "srv/real/sub");
            link(r, "srv/ln", "real/sub/../sub/.");
        }),
        // The recursive types: systemd 252 globs and opens them on the host, unchecked.
        case("unsafe_rel_Z", "Z /home/u/link/shadow 0666\n", user_rel_link).differs(
            "`Z T A H` lines check the path to their top",
            (0, 73),
            KeelTree::Untouched,
        ),
        case("unsafe_rel_A", "A /home/u/link/shadow - - - - u:4242:rw\n", user_rel_link).differs(
            "`Z T A H` lines check the path to their top",
            (0, 73),
            KeelTree::Untouched,
        ),
        // w follows its last component: systemd 252 follows it on the host, unchecked.
        case("unsafe_w_last_link", "w /home/u/wl - - - - pwned\n", |r| {
            home(r);
            file(r, "etc/target", "old\n", 0o644);
            link(r, "home/u/wl", "../../etc/target");
            own(r, "home/u/wl", U, U);
        })
        .differs(
            "`w` checks the link it follows",
            (0, 73),
            KeelTree::Untouched,
        ),
        // C reads its source: systemd 252 reads it on the host path, unchecked.
        case("unsafe_C_source", "C /srv/copy - - - - /home/u/link/shadow\n", user_rel_link).differs(
            "`C` resolves its source inside the root",
            (0, 73),
            KeelTree::Check(|t| !t.contains_key("srv/copy") && unchanged_shadow(t)),
        ),
        // ---- Issue 16, item 2: set-id bits survive a change of owner. ----
        case("issue16_2_f_keeps_setuid", "f /tmp/xxx - 2 2\n", |r| {
            file(r, "tmp/xxx", "x\n", 0o4755);
            own(r, "tmp/xxx", 1, 1);
            chmod(r, "tmp/xxx", 0o4755);
        }),
        case("issue16_2_z_keeps_setuid", "z /tmp/xxx - 2 2\n", |r| {
            file(r, "tmp/xxx", "x\n", 0o4755);
            own(r, "tmp/xxx", 1, 1);
            chmod(r, "tmp/xxx", 0o4755);
        }),
        case("setgid_dir_chgrp", "d /tmp/sg - - 4343\n", |r| {
            dir(r, "tmp/sg");
            chmod(r, "tmp/sg", 0o2775);
        }),
        case("setuid_only_create_mode_chown", "f /tmp/x :0700 4242 -\n", |r| {
            file(r, "tmp/x", "x\n", 0o6755);
            chmod(r, "tmp/x", 0o6755);
        }),
        case("setuid_mode_and_owner", "z /tmp/x 4750 4242 4343\n", |r| {
            file(r, "tmp/x", "x\n", 0o644);
        }),
        // ---- Issue 16, item 3: w on a FIFO does not block. ----
        case("issue16_3_w_fifo", "w /fifo - - - - hello\n", |r| fifo(r, "fifo"))
            .says("case.conf:1: /fifo: failed to open for writing: No such device or address"),
        case("issue16_3_w_plus_fifo", "w+ /fifo - - - - hello\n", |r| fifo(r, "fifo"))
            .says("No such device or address"),
        case("w_dash_fifo", "w- /fifo - - - - hello\n", |r| fifo(r, "fifo")),
        case("f_plus_fifo", "f+ /fifo 0644 - - - hello\n", |r| fifo(r, "fifo")),
        // ---- Issue 16, item 4: `?` (current systemd; 252 refuses the modifier). ----
        case("issue16_4_L_optional_missing", "L? /tmp/link - - - - /def\n", |r| dir(r, "tmp"))
            .differs("`?` on `L`", (65, 0), KeelTree::Same),
        case("L_optional_present", "L? /tmp/link - - - - /abc\n", |r| {
            dir(r, "tmp");
            file(r, "abc", "a\n", 0o644);
        })
        .differs(
            "`?` on `L`",
            (65, 0),
            KeelTree::Check(|t| t["tmp/link"].target.as_deref() == Some(Path::new("/abc"))),
        ),
        case("L_optional_relative", "L? /tmp/l1 - - - - ../abc\nL? /tmp/l2 - - - - ../nope\n", |r| {
            dir(r, "tmp");
            file(r, "abc", "a\n", 0o644);
        })
        .differs(
            "`?` on `L`",
            (65, 0),
            KeelTree::Check(|t| t.contains_key("tmp/l1") && !t.contains_key("tmp/l2")),
        ),
        // ---- Issue 16, item 5: C from a dangling symlink (current systemd's meaning). ----
        case("issue16_5_C_dangling_source", "C /tmp/dst - - - - /tmp/src\n", |r| {
            link(r, "tmp/src", "missing");
        })
        .differs("copied as a link", (73, 0), KeelTree::Same),
        // ---- Issue 16, item 6: p on an existing regular file. ----
        case("issue16_6_p_on_file", "p /tmp/p/f1 0666 - - - -\n", |r| {
            file(r, "tmp/p/f1", "f\n", 0o644);
        })
        .says("case.conf:1: /tmp/p/f1: already exists and is not a FIFO"),
        case("c_on_file", "c /tmp/c 0666 - - - 1:3\n", |r| file(r, "tmp/c", "f\n", 0o644)),
        // ---- Issue 16, item 7: paths with `..` are refused. ----
        case("issue16_7_dotdot_z", "z /..\nz /a/..\nZ /a/b/../..\n", ab)
            .says("case.conf:3: /a/b/../..: path is not normalized"),
        case("dotdot_d", "d /a/../x\n", ab).says("case.conf:1: /a/../x: path is not normalized"),
        case("dotdot_d_last", "d /a/b/..\n", ab),
        case("dotdot_f", "f /a/b/../f\n", ab),
        case("dotdot_w", "w /a/.. - - - - x\n", ab),
        case("dotdot_L", "L /a/../l - - - - x\n", ab),
        case("dotdot_p_c", "p /a/../p\nc /a/../c - - - - 1:3\n", ab),
        case("dotdot_C", "C /a/b/../c - - - - /a\n", ab),
        case("dotdot_dash", "d- /a/../b\n", ab),
        case("dotdot_e", "e /a/b/.. 0700\n", ab).differs(
            "Paths with `..` are refused",
            (0, 73),
            KeelTree::Untouched,
        ),
        case("dotdot_Z_mode", "Z /a/b/.. 0700\n", ab).differs(
            "Paths with `..` are refused",
            (0, 73),
            KeelTree::Untouched,
        ),
        case("dot_and_slashes_are_fine", "d /a//b/./c/\nf /a/./f 0600\n", ab),
        // ---- Issue 16, item 8: C+ into a non-empty directory (current systemd's merge). ----
        case("issue16_8_C_plus_merges", "C+ /tmp/dst - - - - /src\n", |r| {
            file(r, "src/new", "n\n", 0o644);
            file(r, "src/keep", "from source\n", 0o644);
            file(r, "tmp/dst/keep", "kept\n", 0o644);
        })
        .differs(
            "`C+` merges",
            (0, 0),
            KeelTree::Check(|t| {
                t.contains_key("tmp/dst/new") && t["tmp/dst/keep"].content.as_deref() == Some(b"kept\n")
            }),
        ),
        // ---- f, f+ ----
        case("f_new_content_mode_owner", "f /n/f 0640 keelsvc keelgrp - hello\\n\n", nothing),
        case("f_existing_kept_perms_changed", "f /n/f 0600 keelsvc - - ignored\n", |r| {
            file(r, "n/f", "old\n", 0o644)
        }),
        case("f_existing_dir", "f /n/d 0600\n", |r| dir(r, "n/d")),
        case("f_existing_symlink", "f /n/l 0600 - - - x\n", |r| {
            file(r, "n/t", "t\n", 0o644);
            link(r, "n/l", "t");
        }),
        case("f_existing_fifo", "f /n/p 0600\n", |r| fifo(r, "n/p")),
        case("f_replace_dir", "f= /n/d 0600 - - - new\n", |r| file(r, "n/d/inner", "i\n", 0o644)),
        case("f_replace_symlink", "f= /n/l 0600 - - - new\n", |r| link(r, "n/l", "t")),
        case("f_plus_truncates", "f+ /n/f 0600 - - - new\n", |r| file(r, "n/f", "old old\n", 0o644)),
        case("f_plus_empty_keeps_perms", "f+ /n/f\n", |r| file(r, "n/f", "old\n", 0o640)),
        case("f_plus_symlink", "f+ /n/l 0600 - - - x\n", |r| {
            file(r, "n/t", "t\n", 0o644);
            link(r, "n/l", "t");
        }),
        case("F_legacy", "F /n/f 0600 - - - new\n", |r| file(r, "n/f", "old\n", 0o644)),
        case("f_base64", "f~ /n/f - - - - aGVsbG8=\n", nothing),
        case("f_bad_base64", "d /n/before\nf~ /n/f - - - - ***\nd /n/after\n", nothing).differs(
            "argument that is not base64 (`~`)",
            (1, 65),
            KeelTree::Check(|t| t.contains_key("n/before") && t.contains_key("n/after")),
        ),
        case("f_mask_mode_existing", "f /n/f ~0777\n", |r| file(r, "n/f", "x\n", 0o640)),
        case("f_only_create_owner_existing", "f /n/f 0600 :keelsvc :keelgrp\n", |r| {
            file(r, "n/f", "x\n", 0o644)
        }),
        case("f_only_create_owner_new", "f /n/f 0600 :keelsvc :keelgrp\n", nothing),
        case("f_dash_failure", "f- /n/d 0600\nf /n/ok 0600\n", |r| dir(r, "n/d")),
        case("f_credential_skipped", "f^ /n/f - - - - cred\n", nothing),
        case("f_wrong_parent_type", "f /n/file/x 0600\n", |r| file(r, "n/file", "x\n", 0o644)),
        case("f_replace_parent", "f= /n/file/x 0600\n", |r| file(r, "n/file", "x\n", 0o644)),
        // ---- w, w+ ----
        case("w_existing", "w /n/f - - - - new\n", |r| file(r, "n/f", "old old old\n", 0o644)),
        case("w_missing", "w /n/f - - - - new\n", nothing),
        case("w_plus_appends", "w+ /n/f - - - - more\n", |r| file(r, "n/f", "old\n", 0o644)),
        case("w_mode_owner", "w /n/f 0600 keelsvc - - new\n", |r| file(r, "n/f", "old\n", 0o644)),
        case("w_dir", "w /n/d - - - - x\n", |r| dir(r, "n/d")),
        case("w_dash_dir", "w- /n/d - - - - x\n", |r| dir(r, "n/d")),
        case("w_root_link", "w /n/l - - - - via\n", |r| {
            file(r, "n/t", "t\n", 0o644);
            link(r, "n/l", "t");
        }),
        case("w_glob", "w /n/*.log - - - - g\nw /n/[ab].txt - - - - h\n", |r| {
            for f in ["a.log", "b.log", "a.txt", "c.txt", ".h.log"] {
                file(r, &format!("n/{f}"), "0\n", 0o644);
            }
        }),
        case("w_brace", "w /n/{a,c}.txt - - - - b\n", |r| {
            file(r, "n/a.txt", "0\n", 0o644);
            file(r, "n/b.txt", "0\n", 0o644);
        }),
        case("w_base64", "w~ /n/f - - - - d29ybGQ=\n", |r| file(r, "n/f", "x\n", 0o644)),
        // ---- d, D, v, q, Q ----
        case("d_new_nested", "d /n/a/b/c 0701 keelsvc keelgrp\n", nothing),
        case("d_existing_mode_owner", "d /n/d 0700 keeldev keelgrp\n", |r| dir(r, "n/d")),
        case("d_existing_file", "d /n/f 0700\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("d_existing_symlink_to_dir", "d /n/l 0700\n", |r| {
            dir(r, "n/t");
            link(r, "n/l", "t");
        }),
        case("d_replace_file", "d= /n/f 0700\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("d_replace_symlink", "d= /n/l 0700\n", |r| {
            dir(r, "n/t");
            link(r, "n/l", "t");
        }),
        case("d_only_create_mode_existing", "d /n/d :0700\n", |r| dir(r, "n/d")),
        case("d_mask_mode_existing", "d /n/d ~0777\n", |r| {
            dir(r, "n/d");
            chmod(r, "n/d", 0o750);
        }),
        case("d_age_ignored", "d /n/d 0700 - - 1s\n", |r| file(r, "n/d/old", "x\n", 0o644)),
        case("D_keeps_content_on_create", "D /n/d 0700\n", |r| file(r, "n/d/x", "x\n", 0o644)),
        case("v_q_Q", "v /n/v 0700\nq /n/q 0710 keelsvc\nQ /n/Q 0711 - keelgrp\n", nothing),
        case("d_dash_failure", "d- /n/f/x\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("d_parent_of_later_line", "f /n/p/c 0600\nd /n/p 0700 keelsvc\n", nothing),
        // ---- e ----
        case("e_existing", "e /n/d 0700 keelsvc\n", |r| dir(r, "n/d")),
        case("e_missing", "e /n/d 0700\n", nothing),
        case("e_file", "e /n/f 0700\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("e_follows_root_link", "e /n/l 0700\n", |r| {
            dir(r, "n/t");
            link(r, "n/l", "t");
        }),
        case("e_glob", "e /n/d* 0700\n", |r| {
            dir(r, "n/d1");
            dir(r, "n/d2");
            file(r, "n/d3", "x\n", 0o644);
        }),
        // ---- p, p+ ----
        case("p_new", "p /n/p 0620 keelsvc keelgrp\n", nothing),
        case("p_existing_chown", "p /n/p 0600 keelsvc\n", |r| fifo(r, "n/p")),
        case("p_plus_replaces_file", "p+ /n/f 0600\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("p_plus_replaces_dir", "p+ /n/d 0600\n", |r| file(r, "n/d/x", "x\n", 0o644)),
        case("p_on_dir", "p /n/d 0600\n", |r| dir(r, "n/d")),
        // ---- L, L+ ----
        case("L_new", "L /n/l - - - - target\n", nothing),
        case("L_existing_same", "L /n/l - - - - t\n", |r| link(r, "n/l", "t")),
        case("L_existing_other", "L /n/l - - - - t\n", |r| link(r, "n/l", "other")),
        case("L_plus_other", "L+ /n/l - - - - t\n", |r| link(r, "n/l", "other")),
        case("L_plus_dir", "L+ /n/d - - - - t\n", |r| file(r, "n/d/x", "x\n", 0o644)),
        case("L_plus_file", "L+ /n/f - - - - t\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("L_on_file", "L /n/f - - - - t\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("L_replace_file", "L= /n/f - - - - t\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("L_factory_default", "L /n/l\n", nothing),
        case("L_owner_on_link", "L /n/l - keelsvc - - t\n", nothing),
        // ---- c, c+, b, b+ ----
        case("c_new", "c /n/c 0640 - keelgrp - 1:3\nb /n/b 0600 - - - 7:9\n", nothing),
        case("c_existing_same", "c /n/c 0600 keelsvc - - 1:3\n", |r| chardev(r, "n/c", 1, 3)),
        case("c_existing_other_numbers", "c /n/c 0600 - - - 1:5\n", |r| chardev(r, "n/c", 1, 3)),
        case("c_plus_replaces_file", "c+ /n/f 0600 - - - 1:3\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("b_plus_replaces_chardev", "b+ /n/c 0600 - - - 7:1\n", |r| chardev(r, "n/c", 1, 3)),
        case("c_on_dir", "c /n/d 0600 - - - 1:3\n", |r| dir(r, "n/d")),
        // ---- C, C+ ----
        case("C_file", "C /n/f - - - - /src/f\n", |r| file(r, "src/f", "s\n", 0o640)),
        case("C_tree_owner_mode", "C /n/t 0700 keelsvc - - /src\n", |r| {
            file(r, "src/a", "a\n", 0o600);
            file(r, "src/sub/b", "b\n", 0o644);
            link(r, "src/l", "a");
        }),
        case("C_into_empty_dir", "C /n/d - - - - /src\n", |r| {
            file(r, "src/a", "a\n", 0o600);
            dir(r, "n/d");
        }),
        case("C_into_full_dir_skips", "C /n/d - - - - /src\n", |r| {
            file(r, "src/a", "a\n", 0o600);
            file(r, "n/d/keep", "k\n", 0o644);
        }),
        case("C_missing_source", "C /n/x - - - - /nope\n", nothing),
        case("C_onto_other_type", "C /n/f - - - - /src\n", |r| {
            file(r, "src/a", "a\n", 0o600);
            file(r, "n/f", "x\n", 0o644);
        }),
        case("C_factory_default", "C /n/x\n", |r| {
            file(r, "usr/share/factory/n/x/y", "y\n", 0o644);
        }),
        case("C_fifo_source", "C /n/p - - - - /src/p\n", |r| fifo(r, "src/p")),
        // ---- x X r R: nothing under --create ----
        case("x_X_r_R", "x /n/a\nX /n/b\nr /n/c\nR /n/d\nr! /n/e\n", |r| {
            for f in ["a", "b", "c", "e"] {
                file(r, &format!("n/{f}"), "x\n", 0o644);
            }
            file(r, "n/d/x", "x\n", 0o644);
        }),
        // ---- z, Z, m ----
        case("z_mode_owner", "z /n/f 0600 keelsvc keelgrp\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("z_missing", "z /n/f 0600\n", nothing),
        case("z_only_create_mode", "z /n/f :0600 :keelsvc\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("z_symlink_chown", "z /n/l 0600 keelsvc\n", |r| {
            file(r, "n/t", "t\n", 0o644);
            link(r, "n/l", "t");
        }),
        case("z_glob", "z /n/*.conf 0600 - keelgrp\nz /n/?.txt 0640\n", |r| {
            for f in ["a.conf", "b.conf", "a.txt", "ab.txt", ".h.conf"] {
                file(r, &format!("n/{f}"), "x\n", 0o644);
            }
        }),
        case("Z_tree", "Z /n/t 0750 keeldev keelgrp\n", |r| {
            file(r, "n/t/a", "a\n", 0o644);
            file(r, "n/t/sub/b", "b\n", 0o600);
            link(r, "n/t/l", "a");
        }),
        case("Z_mask_mode", "Z /n/t ~0775\n", |r| {
            file(r, "n/t/a", "a\n", 0o644);
            file(r, "n/t/x", "x\n", 0o755);
        }),
        case("m_legacy", "m /n/f 0604\n", |r| file(r, "n/f", "x\n", 0o644)),
        case("z_device_chown", "z /n/c 0600 keelsvc\n", |r| chardev(r, "n/c", 1, 3)),
        // ---- t, T ----
        case("t_file_and_symlink", "t /n/f - - - - user.a=1 user.b=\"two words\"\nt /n/l - - - - user.c=3\n", |r| {
            file(r, "n/f", "x\n", 0o644);
            link(r, "n/l", "f");
        }),
        case("T_tree", "T /n/t - - - - user.t=yes\n", |r| {
            file(r, "n/t/a", "a\n", 0o644);
            file(r, "n/t/sub/b", "b\n", 0o644);
        }),
        case("T_tree_with_symlink", "T /n/t - - - - user.t=yes\n", |r| {
            file(r, "n/t/a", "a\n", 0o644);
            link(r, "n/t/l", "a");
            file(r, "n/t/sub/b", "b\n", 0o644);
        }),
        case("H_tree_with_symlink", "H /n/t - - - - +d\n", |r| {
            file(r, "n/t/a", "a\n", 0o644);
            link(r, "n/t/l", "a");
        }),
        case("t_missing", "t /n/none - - - - user.a=1\n", nothing),
        // ---- h, H (attributes are not compared; the status is) ----
        case("h_H", "h /n/f - - - - +d\nH /n/t - - - - -d\n", |r| {
            file(r, "n/f", "x\n", 0o644);
            file(r, "n/t/a", "a\n", 0o644);
        }),
        case("h_on_fifo", "h /n/p - - - - +d\n", |r| fifo(r, "n/p")),
        // ---- a, A ----
        case("a_plus_existing", "a+ /n/f - - - - u:4242:rw\n", |r| file(r, "n/f", "x\n", 0o640)),
        case("A_tree_default", "A /n/t - - - - d:u:4242:rwx,u:4242:r\n", |r| {
            file(r, "n/t/a", "a\n", 0o644);
            dir(r, "n/t/sub");
        }),
        // ---- modifiers and --boot ----
        case("boot_only_lines_with_boot", "d! /n/b 0700\nf! /n/f - - - - x\nd /n/always\n", nothing),
        case("boot_only_lines_without_boot", "d! /n/b 0700\nf! /n/f - - - - x\nd /n/always\n", nothing)
            .without_boot(),
        case("plain_lines_without_boot", "f /n/f 0600 keelsvc - - x\nz /n/g 0600\n", |r| {
            file(r, "n/g", "g\n", 0o644)
        })
        .without_boot(),
        case("dash_modifier_notes", "c- /n/d 0600 - - - 1:3\nd- /n/f/x\nL- /n/l - - - - t\n", |r| {
            dir(r, "n/d");
            file(r, "n/f", "x\n", 0o644);
        }),
        case("combined_modifiers", "f+!- /n/f 0600 - - - x\nd=! /n/g\n", |r| {
            file(r, "n/g", "x\n", 0o644)
        }),
        case("combined_modifiers_without_boot", "f+!- /n/f 0600 - - - x\nd=! /n/g\n", |r| {
            file(r, "n/g", "x\n", 0o644)
        })
        .without_boot(),
        case("purge_modifier", "d$ /n/d 0700\n", nothing).differs(
            "`$` and `?` (systemd >= 256 / 257) parse",
            (65, 0),
            KeelTree::Check(|t| t.contains_key("n/d")),
        ),
        // ---- several lines for one path ----
        case("dup_first_wins", "d /n/d 0700\nd /n/d 0755 keelsvc\n", nothing),
        case("d_then_z", "d /n/d 0700\nz /n/d - keelsvc\n", nothing),
        case("w_plus_twice", "f /n/f\nw+ /n/f - - - - a\nw+ /n/f - - - - b\n", nothing),
        case("f_then_w", "f /n/f 0600 - - - first\nw /n/f - - - - second\n", nothing),
    ]
}
