//! The targets: one per parser of untrusted or careless input. Each harness calls the
//! parser's public entry point, pushes the shapes of what it said, and checks what the
//! crate promises about it (a normal form that parses to the same thing, an error that
//! names its file and a line of the input, a confined unpack).

use crate::{fnv, mix, shape, shape_in, Harness, Target, MAX_INPUT};
use pkgsets::atom::{self, Atom, ParseOptions, Version};
use pkgsets::sets::{self, LineKind};
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};

/// Every target, in report order.
pub const ALL: &[Target] = &[
    ATOM,
    SET_FILE,
    VARIANT_TOML,
    TMPFILES,
    TMPFILES_EDIT,
    OCI_JSON,
    OCI_LAYER,
    OCI_ARCHIVE,
    IMAGE_MANIFEST,
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}

fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}

/// The files under `rel` (a directory of the project), recursively, in name order, that
/// `keep` accepts; files larger than [`MAX_INPUT`] are left out.
fn project_files(rel: &str, keep: fn(&Path) -> bool) -> Vec<Vec<u8>> {
    fn walk(dir: &Path, keep: fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => walk(&p, keep, out),
                Ok(m) if m.is_file() && m.len() <= MAX_INPUT as u64 && keep(&p) => out.push(p),
                _ => {}
            }
        }
    }
    let mut paths = Vec::new();
    walk(&crate::project_root().join(rel), keep, &mut paths);
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn ends_with(p: &Path, suffix: &str) -> bool {
    p.to_string_lossy().ends_with(suffix)
}

/// `message` starts with `file:N:` for a line N of the input.
fn check_names_line(message: &str, file: &str, lines: usize) {
    let rest = message
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("the message does not start with `{file}:`: {message}"));
    let n: usize = rest
        .split(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the message names no line: {message}"));
    assert!(
        (1..=lines.max(1)).contains(&n),
        "the message names line {n} of an input of {lines} lines: {message}"
    );
}

// ---------------------------------------------------------------------------------------
// Atoms

const OPTIONS: [ParseOptions; 4] = [
    ParseOptions {
        allow_blockers: false,
        allow_repo: true,
    },
    ParseOptions {
        allow_blockers: true,
        allow_repo: true,
    },
    ParseOptions {
        allow_blockers: false,
        allow_repo: false,
    },
    ParseOptions {
        allow_blockers: true,
        allow_repo: false,
    },
];

/// One atom under one set of options: the normal form parses to the same atom, the parts
/// stay within the limits, a message stays short.
fn check_atom(s: &str, opts: ParseOptions, shapes: &mut Vec<u64>) {
    match Atom::parse(s, opts) {
        Ok(a) => {
            let normal = a.to_string();
            let again = Atom::parse(&normal, opts).unwrap_or_else(|e| {
                panic!(
                    "the normal form `{normal}` of `{}` does not parse: {e}",
                    s.escape_debug()
                )
            });
            assert_eq!(
                again, a,
                "the normal form `{normal}` parses to another atom"
            );
            assert_eq!(again.to_string(), normal);
            assert!(a.category().len() <= atom::MAX_CATEGORY);
            assert!(a.package().len() <= atom::MAX_PACKAGE);
            assert!(normal.len() <= atom::MAX_ATOM);
            assert_eq!(a.key(), format!("{}/{}", a.category(), a.package()));
            if let Some(v) = a.version() {
                let written = v.to_string();
                assert_eq!(
                    Version::parse(&written).as_ref(),
                    Ok(v),
                    "version `{written}`"
                );
            }
            let parts = [
                a.blocker().is_some(),
                a.operator().is_some(),
                a.slot().is_some(),
                a.repo().is_some(),
                !a.use_deps().is_empty(),
                opts.allow_blockers,
                opts.allow_repo,
            ];
            shapes.push(fnv(parts.map(u8::from), 1));
        }
        Err(e) => {
            assert_eq!(e.atom, s);
            let m = e.to_string();
            assert!(
                m.len() <= 2 * atom::MAX_ATOM + 256,
                "a message of {} bytes",
                m.len()
            );
            shapes.push(mix(shape_in(&e.reason, s), u64::from(opts.allow_blockers)));
        }
    }
}

fn atom_harness() -> Harness {
    Box::new(|input, shapes| {
        let s = text(input);
        for opts in OPTIONS {
            check_atom(&s, opts, shapes);
        }
        match Version::parse(&s) {
            Ok(v) => {
                assert_eq!(v.to_string(), s, "a version is written as it was read");
                shapes.push(shape("version ok"));
            }
            Err(e) => shapes.push(mix(shape_in(&e.reason, &s), 2)),
        }
    })
}

fn atom_seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for file in project_files("crates/pkgsets/tests", |p| ends_with(p, "atoms.txt"))
        .into_iter()
        .chain(project_files("variants", |p| ends_with(p, ".packages")))
    {
        for line in text(&file).lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') && !line.contains('\\') {
                out.push(line.trim_start_matches('-').as_bytes().to_vec());
            }
        }
    }
    out.extend(
        [
            "!!>=dev-lang/python-3.11.2_rc1-r2:3.11/3.11t=::gentoo[-x(+)]",
            "=dev-libs/foo-1.2.3b_rc1_p2-r3*",
            "1.2.3b_alpha4_beta_pre1_rc_p7-r0",
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    out
}

pub const ATOM: Target = Target {
    name: "atom",
    about: "pkgsets `Atom::parse` under the four `ParseOptions`, and `Version::parse`",
    seeds: atom_seeds,
    dict: &[
        b"!",
        b"!!",
        b">=",
        b"<=",
        b"~",
        b"=",
        b"*",
        b"/",
        b"-",
        b"-r",
        b"-r0",
        b"_alpha",
        b"_beta",
        b"_pre",
        b"_rc",
        b"_p",
        b":",
        b":=",
        b":*",
        b"::",
        b"::gentoo",
        b"[",
        b"]",
        b"(+)",
        b"(-)",
        b"?",
        b",",
        b"sys-apps/",
        b"dev-lang/python",
        b"1.2.3",
        b".",
    ],
    max_len: 2 * atom::MAX_ATOM,
    harness: atom_harness,
};

// ---------------------------------------------------------------------------------------
// Set files

const SET_FILE_NAME: &str = "variants/fuzz/install.packages";

fn set_file_harness() -> Harness {
    Box::new(|input, shapes| {
        let s = text(input);
        let lines = s.lines().count();
        match sets::parse_set_file(SET_FILE_NAME, &s) {
            Err(e) => {
                let m = e.to_string();
                check_names_line(&m, SET_FILE_NAME, lines);
                assert!(
                    m.len() <= 2 * atom::MAX_ATOM + 512,
                    "a message of {} bytes",
                    m.len()
                );
                shapes.push(shape_in(&m, &s));
            }
            Ok(parsed) => {
                for l in &parsed {
                    assert!((1..=lines).contains(&l.loc.line), "line {}", l.loc.line);
                }
                shapes.push(shape("set ok"));
                // The first half as the parent, the rest as the child's own lines.
                let mid = parsed.len() / 2;
                match sets::merge(&[parsed[..mid].to_vec(), parsed[mid..].to_vec()]) {
                    Ok(m) => {
                        for e in &m.entries {
                            assert!(parsed.iter().any(|l| l.loc == e.loc
                                && matches!(&l.kind, LineKind::Add(a) if *a == e.atom)));
                        }
                        for w in &m.warnings {
                            check_names_line(&w.to_string(), SET_FILE_NAME, lines);
                        }
                        shapes.push(mix(shape("merge ok"), m.warnings.len().min(3) as u64));
                    }
                    Err(e) => {
                        let m = e.to_string();
                        check_names_line(&m, SET_FILE_NAME, lines);
                        shapes.push(shape_in(&m, &s));
                    }
                }
            }
        }
    })
}

fn set_file_seeds() -> Vec<Vec<u8>> {
    let mut out = project_files("variants", |p| ends_with(p, ".packages"));
    out.extend(project_files("tests/fixtures/variants", |p| {
        ends_with(p, ".packages")
    }));
    out.extend(
        [
            "# head\n\nsys-apps/systemd # inline\n  app-shells/bash  \n\t# indented comment\n",
            "sys-apps/systemd\nsys-fs/btrfs-progs\n>=app-containers/podman-4\n-sys-fs/btrfs-progs\nnet-misc/openssh\n",
            ">=dev-lang/python-3.11:3.11\ndev-lang/python:3.12\n-dev-lang/python\n- >=dev-lang/python-3.11:3.11\n",
            "sys-apps/a\nsys-apps/b\nsys-apps/a\n",
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    out
}

pub const SET_FILE: Target = Target {
    name: "set_file",
    about: "pkgsets `sets::parse_set_file`, then `sets::merge` of its two halves",
    seeds: set_file_seeds,
    dict: &[
        b"\n",
        b"#",
        b" #",
        b"-",
        b"- ",
        b"sys-apps/systemd",
        b">=dev-lang/python-3.11",
        b":3.11",
        b"::gentoo",
        b"[ssl]",
        b"\t",
    ],
    max_len: MAX_INPUT,
    harness: set_file_harness,
};

// ---------------------------------------------------------------------------------------
// variant.toml

const VARIANT_TOML_NAME: &str = "variants/fuzz/variant.toml";

fn variant_toml_harness() -> Harness {
    Box::new(|input, shapes| {
        let s = text(input);
        match variant::schema::parse(VARIANT_TOML_NAME, &s) {
            Ok(v) => {
                if let Some(i) = &v.inherits {
                    assert!(variant::schema::valid_name(i.get_ref()));
                }
                for p in v.etc_writable.iter().flatten() {
                    assert!(p.starts_with("/etc/"), "etc-writable `{p}`");
                }
                let parts = [
                    v.inherits.is_some(),
                    v.distribution.is_some(),
                    v.image.is_some(),
                    v.selinux.is_some(),
                    v.hooks.is_some(),
                    v.etc_writable.is_some(),
                ];
                shapes.push(fnv(parts.map(u8::from), 3));
            }
            Err(e) => {
                assert_eq!(e.file, VARIANT_TOML_NAME);
                // A toml error at the very end may name the line after the last one.
                let lines = s.lines().count() + 1;
                check_names_line(&e.to_string(), VARIANT_TOML_NAME, lines);
                shapes.push(shape_in(&e.message, &s));
            }
        }
    })
}

fn variant_toml_seeds() -> Vec<Vec<u8>> {
    let mut out = project_files("variants", |p| ends_with(p, "variant.toml"));
    out.extend(project_files("tests/fixtures/variants", |p| {
        ends_with(p, "variant.toml")
    }));
    out.push(
        br#"description = "x"
inherits = "base"
distribution = "gentoo"
profile = "default/linux/amd64/23.0/systemd"
chost = "x86_64-pc-linux-gnu"
python = false
etc-writable = ["/etc/hostname", "/etc/machine-id"]
[image]
format = "erofs"
pseudo-files = "pseudo.txt"
[selinux]
enabled = true
policy-type = "mcs"
mode = "enforcing"
[hooks]
customize = "c.sh"
post-build = "p.sh"
"#
        .to_vec(),
    );
    out.push(b"distribution = \"debian\"\nsuite = \"bookworm\"\n".to_vec());
    out
}

pub const VARIANT_TOML: Target = Target {
    name: "variant_toml",
    about: "variant `schema::parse` (toml, the strict schema, line numbers)",
    seeds: variant_toml_seeds,
    dict: &[
        b"[image]",
        b"[selinux]",
        b"[hooks]",
        b"[[",
        b"]]",
        b" = ",
        b"\"",
        b"'''",
        b"\"\"\"",
        b"inherits",
        b"etc-writable",
        b"distribution",
        b"\"debian\"",
        b"true",
        b"{",
        b"}",
        b"[",
        b"]",
        b"\\u0000",
        b"\\",
        b"1979-05-27T07:32:00Z",
        b"inf",
        b"nan",
        b"0x",
    ],
    max_len: MAX_INPUT,
    harness: variant_toml_harness,
};

// ---------------------------------------------------------------------------------------
// tmpfiles.d

const OS_RELEASE: &str = "NAME=Gentoo\nID=gentoo\nVERSION_ID=2.17\nIMAGE_ID=keel\n\
                          IMAGE_VERSION=1\nBUILD_ID=\"fuzz 1\"\nVARIANT_ID=base\n";
const MACHINE_ID: &str = "0123456789abcdef0123456789abcdef\n";
const PASSWD: &str = "root:x:0:0::/root:/bin/sh\nsystemd-journal:x:190:190::/:/sbin/nologin\n\
                      alice:x:1000:1000::/home/alice:/bin/sh\n";
const GROUP: &str = "root:x:0:\nwheel:x:10:alice\nsystemd-journal:x:190:\nalice:x:1000:\n";

fn tmpfiles_harness() -> Harness {
    use tmpfiles::entry::parse_line;
    use tmpfiles::plan::{plan, Options, Users};
    use tmpfiles::spec::{Host, Specifiers};
    let host = Host {
        boot_id: Some("fedcba9876543210fedcba9876543210".into()),
        hostname: Some("fuzz.example.org".into()),
        kernel_release: Some("6.1.0-keel".into()),
    };
    let spec = Specifiers::system(Some(OS_RELEASE), Some(MACHINE_ID), &host);
    let users = Users::new(PASSWD, GROUP);
    let boot = Options {
        boot: true,
        ..Options::default()
    };
    Box::new(move |input, shapes| {
        let lines = tmpfiles::config::lines(input);
        for l in &lines {
            match parse_line(l) {
                Ok(Some(e)) => {
                    let written = e.to_string();
                    let back = parse_line(&written).unwrap_or_else(|err| {
                        panic!("the written line `{written}` of `{l}` does not parse: {err}")
                    });
                    assert_eq!(
                        back.as_ref(),
                        Some(&e),
                        "the written line `{written}` of `{l}` parses to another entry"
                    );
                    shapes.push(fnv([e.kind as u8, u8::from(e.argument.is_some())], 4));
                }
                Ok(None) => {}
                Err(err) => shapes.push(shape_in(&err.0, l)),
            }
        }
        let file = "/usr/lib/tmpfiles.d/fuzz.conf".to_owned();
        let p = plan(&[(file.clone(), lines.clone())], &spec, &users, &boot);
        for d in &p.diagnostics {
            assert_eq!(d.source.file, file);
            assert!((1..=lines.len()).contains(&d.source.line), "{d}");
            let line = lines.get(d.source.line - 1).map_or("", String::as_str);
            shapes.push(mix(shape_in(&d.message, line), 5));
        }
        shapes.push(mix(p.items.len().min(8) as u64, 6));
        let cat = tmpfiles::config::render_cat([(file.as_str(), input)]);
        assert!(cat.starts_with("# /usr/lib/tmpfiles.d/fuzz.conf\n"));
    })
}

fn tmpfiles_seeds() -> Vec<Vec<u8>> {
    let mut out = project_files("tests/fixtures/gentoo-mini", |p| {
        ends_with(p, ".conf") && p.to_string_lossy().contains("/tmpfiles.d/")
    });
    out.extend(project_files("crates/tmpfiles/tests/corpus", |p| {
        ends_with(p, ".conf")
    }));
    out.push(
        b"d /run/user 0755 root root 10d -\nL+! /tmp/foo - - - - /dev/null\n\
          a+ /var/log/journal - - - - d:group:adm:r-x,group:wheel:r-x\n\
          f~ /etc/motd 0644 - - - SGVsbG8K\nw- /proc/sys/kernel/x - - - - 1\n\
          C /etc/skel - - - - /usr/share/skel\nh /var/log/journal - - - - +C\n\
          c /dev/fuzz 0600 - - - 1:3\nd /var/%m/%H/%%/%b 0700 :alice :wheel ~1w\n\
          e! \"/var/tmp/a b\" 1777 - - 30d\nv /var/lib/machines 0700 - - -\n\
          t /var/log - - - - user.x=1\n"
            .to_vec(),
    );
    out
}

const TMPFILES_DICT: &[&[u8]] = &[
    b"d ",
    b"D ",
    b"e ",
    b"v ",
    b"q ",
    b"Q ",
    b"f ",
    b"F ",
    b"w ",
    b"L ",
    b"C ",
    b"c ",
    b"b ",
    b"p ",
    b"x ",
    b"r ",
    b"R ",
    b"z ",
    b"Z ",
    b"t ",
    b"T ",
    b"h ",
    b"H ",
    b"a ",
    b"a+ ",
    b"A ",
    b"+",
    b"!",
    b"-",
    b"=",
    b"~",
    b"^",
    b" - ",
    b"0755",
    b"~0644",
    b":0600",
    b"root",
    b":root",
    b"10d",
    b"1w2d",
    b"~5s",
    b"cmA:1h",
    b"%m",
    b"%b",
    b"%H",
    b"%%",
    b"%",
    b"\\x41",
    b"\\n",
    b"\\",
    b"\"",
    b"'",
    b"u:alice:rwx",
    b"d:",
    b"default:",
    b"m::r",
    b"user.",
    b"1:3",
    b"*",
    b"?",
];

pub const TMPFILES: Target = Target {
    name: "tmpfiles",
    about: "tmpfiles `config::lines`, `entry::parse_line` (with the written line parsed back), `plan::plan` (specifiers, users, ACLs) and `config::render_cat`",
    seeds: tmpfiles_seeds,
    dict: TMPFILES_DICT,
    max_len: MAX_INPUT,
    harness: tmpfiles_harness,
};

const EDIT_NAME: &str = "tmpfiles.d/fuzz.conf.edit";

fn tmpfiles_edit_harness() -> Harness {
    use tmpfiles::edit::{apply_edits, parse_edits, Outcome};
    let bases: Vec<(String, String)> = project_files("tests/fixtures/gentoo-mini", |p| {
        ["var.conf", "provision.conf", "tmp.conf"]
            .iter()
            .any(|n| ends_with(p, &format!("/tmpfiles.d/{n}")))
    })
    .into_iter()
    .enumerate()
    .map(|(i, b)| {
        (
            format!("base{i}.conf"),
            String::from_utf8_lossy(&b).into_owned(),
        )
    })
    .collect();
    Box::new(move |input, shapes| {
        let s = text(input);
        let lines = s.lines().count();
        let edits = match parse_edits(EDIT_NAME, &s) {
            Ok(e) => e,
            Err(e) => {
                check_names_line(&e.to_string(), EDIT_NAME, lines);
                shapes.push(shape_in(&e.message, &s));
                return;
            }
        };
        shapes.push(mix(shape("edits ok"), edits.len().min(4) as u64));
        for (name, base) in &bases {
            match apply_edits(name, base, &edits) {
                Ok(Outcome::Masked) => shapes.push(shape("masked")),
                Ok(Outcome::Content(c)) => {
                    // Every line either was in the base or is a valid line.
                    for l in c.lines() {
                        if !base.lines().any(|b| b == l) {
                            assert!(
                                matches!(tmpfiles::entry::parse_line(l), Ok(Some(_))),
                                "the edited file has the invalid line `{l}`"
                            );
                        }
                    }
                    shapes.push(shape("edited"));
                }
                Err(e) => {
                    check_names_line(&e.to_string(), EDIT_NAME, lines);
                    shapes.push(mix(shape_in(&e.message, &s), 7));
                }
            }
        }
    })
}

fn tmpfiles_edit_seeds() -> Vec<Vec<u8>> {
    let mut out = project_files("tmpfiles.d", |p| ends_with(p, ".edit"));
    out.extend(project_files("variants", |p| ends_with(p, ".edit")));
    out.extend(
        [
            "set /var/log type=v\nset /var/tmp when-type=q mode=1777 age=30d\ndelete /var/cache\nadd d /var/lib/keel 0700 root root -\n",
            "drop\n",
            "set /tmp mode=- user=root group=- argument=- age=10d # comment\n",
            "set \"/var/lib/a b\" type=d!\n",
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    out
}

pub const TMPFILES_EDIT: Target = Target {
    name: "tmpfiles_edit",
    about: "tmpfiles `edit::parse_edits`, then `edit::apply_edits` on packaged files of the fixture repository",
    seeds: tmpfiles_edit_seeds,
    dict: &[
        b"set ", b"delete ", b"add ", b"drop", b"when-type=", b"type=", b"mode=", b"user=",
        b"group=", b"age=", b"argument=", b"/var/log", b"/var/tmp", b"/tmp", b"=-", b"#",
        b"\"", b"\\", b"d ", b"v", b"q", b"1777", b"30d",
    ],
    max_len: MAX_INPUT,
    harness: tmpfiles_edit_harness,
};

// ---------------------------------------------------------------------------------------
// OCI: an image layout made from the input, resolved and unpacked by the oci crate.

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const TAG: &str = "fuzz";

fn sha256(b: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(b))
}

fn descriptor(media_type: &str, blob: &[u8], tag: bool) -> serde_json::Value {
    let mut d = serde_json::json!({
        "mediaType": media_type,
        "digest": sha256(blob),
        "size": blob.len(),
    });
    if tag {
        d["annotations"] = serde_json::json!({ "org.opencontainers.image.ref.name": TAG });
    }
    d
}

fn config_doc(layers: &[&[u8]]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": oci::host_arch(),
        "os": "linux",
        "config": { "Env": ["PATH=/usr/bin"], "WorkingDir": "/", "User": "0:0" },
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| sha256(l)).collect::<Vec<_>>() },
    }))
    .unwrap_or_default()
}

fn manifest_doc(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": descriptor(MT_CONFIG, config, false),
        "layers": layers.iter().map(|l| descriptor(MT_LAYER, l, false)).collect::<Vec<_>>(),
    }))
    .unwrap_or_default()
}

fn index_doc(media_type: &str, target: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [descriptor(media_type, target, true)],
    }))
    .unwrap_or_default()
}

/// A nested index with the manifest for this platform and one for another.
fn nested_index_doc(manifest: &[u8]) -> Vec<u8> {
    let mut mine = descriptor(MT_MANIFEST, manifest, false);
    mine["platform"] = serde_json::json!({ "architecture": oci::host_arch(), "os": "linux" });
    let mut other = descriptor(MT_MANIFEST, b"{}", false);
    other["platform"] =
        serde_json::json!({ "architecture": "s390x", "os": "linux", "variant": "v1" });
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [other, mine],
    }))
    .unwrap_or_default()
}

/// A layer tar with one entry of each kind the unpacker handles.
fn seed_layers() -> Vec<Vec<u8>> {
    fn build(f: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> io::Result<()>) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let _ = f(&mut b);
        b.into_inner().unwrap_or_default()
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    }
    let plain = build(|b| {
        b.append_data(
            &mut header(tar::EntryType::Directory, 0o755, 0),
            "./",
            io::empty(),
        )?;
        b.append_data(
            &mut header(tar::EntryType::Directory, 0o755, 0),
            "etc/",
            io::empty(),
        )?;
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, 5),
            "etc/hostname",
            &b"keel\n"[..],
        )?;
        let mut l = header(tar::EntryType::Symlink, 0o777, 0);
        b.append_link(&mut l, "bin", "usr/bin")?;
        b.append_data(
            &mut header(tar::EntryType::Directory, 0o755, 0),
            "usr/bin/",
            io::empty(),
        )?;
        let mut h = header(tar::EntryType::Link, 0o644, 0);
        b.append_link(&mut h, "etc/hostname.link", "etc/hostname")?;
        b.append_data(
            &mut header(tar::EntryType::Fifo, 0o600, 0),
            "run.fifo",
            io::empty(),
        )?;
        let mut c = header(tar::EntryType::Char, 0o600, 0);
        c.set_device_major(1)?;
        c.set_device_minor(3)?;
        b.append_data(&mut c, "dev/null", io::empty())?;
        Ok(())
    });
    let whiteouts = build(|b| {
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, 0),
            "etc/.wh.hostname",
            io::empty(),
        )?;
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, 0),
            "usr/.wh..wh..opq",
            io::empty(),
        )?;
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, 0),
            ".wh..wh.plnk/1",
            io::empty(),
        )?;
        Ok(())
    });
    let pax = build(|b| {
        b.append_pax_extensions([
            ("path", &b"usr/share/a-very-long-name-from-pax"[..]),
            ("mtime", b"1700000000.5"),
            ("SCHILY.xattr.user.fuzz", b"value"),
            ("uid", b"1000"),
            ("gid", b"1000"),
        ])?;
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o4755, 3),
            "short",
            &b"abc"[..],
        )?;
        let long = format!("opt/{}/file", "n".repeat(120));
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o600, 1),
            long,
            &b"x"[..],
        )?;
        Ok(())
    });
    vec![plain, whiteouts, pax]
}

/// Recompute the checksum of every header a tar walk meets (a mutated header keeps its
/// old checksum, and the tar reader would stop there): header, then its data blocks.
pub fn fix_tar_checksums(buf: &mut [u8]) {
    let mut off = 0usize;
    while let Some(end) = off.checked_add(512).filter(|&e| e <= buf.len()) {
        let h = &mut buf[off..end];
        if h.iter().all(|&b| b == 0) {
            off = end;
            continue;
        }
        let size_field = &h[124..136];
        let size = if size_field[0] & 0x80 != 0 {
            size_field[4..].iter().fold(0u64, |a, &b| {
                a.saturating_mul(256).saturating_add(u64::from(b))
            })
        } else {
            let digits: Vec<u8> = size_field
                .iter()
                .copied()
                .skip_while(|b| *b == b' ')
                .take_while(|b| (b'0'..=b'7').contains(b))
                .collect();
            u64::from_str_radix(std::str::from_utf8(&digits).unwrap_or("0"), 8).unwrap_or(0)
        };
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        // The data blocks; a size past the end ends the walk.
        match usize::try_from(size.div_ceil(512).saturating_mul(512))
            .ok()
            .and_then(|skip| end.checked_add(skip))
        {
            Some(next) => off = next,
            None => break,
        }
    }
}

/// A scratch directory holding an image layout (`layout/`), the unpack destination
/// (`root`, made and removed by each execution) and a canary file that must survive.
struct Scratch {
    dir: tempfile::TempDir,
}

const CANARY: &[u8] = b"an unpack must not touch this";

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("keel-fuzz-oci.")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot make a scratch directory: {e}"));
        let s = Scratch { dir };
        let l = s.layout();
        std::fs::create_dir_all(l.join("blobs/sha256"))
            .and_then(|()| std::fs::write(l.join("oci-layout"), OCI_LAYOUT))
            .and_then(|()| std::fs::write(s.dir.path().join("canary"), CANARY))
            .unwrap_or_else(|e| panic!("cannot set up {}: {e}", s.dir.path().display()));
        s
    }
    fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }
    fn dest(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    /// Write a blob; its path, to remove it afterwards.
    fn blob(&self, bytes: &[u8]) -> PathBuf {
        let p = self
            .layout()
            .join("blobs/sha256")
            .join(&sha256(bytes)["sha256:".len()..]);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
        p
    }
    fn write(&self, name: &str, bytes: &[u8]) {
        let p = self.layout().join(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
    }

    /// Resolve `image` and unpack it into `root`; the outcome's shape. Then check that
    /// nothing but `root` appeared next to the layout, that the canary is intact, and
    /// clean up.
    fn resolve_and_unpack(
        &self,
        image: &Path,
        tag: Option<&str>,
        input: &str,
        shapes: &mut Vec<u64>,
    ) {
        let r = oci::ImageRef {
            path: image.to_owned(),
            tag: tag.map(str::to_owned),
        };
        match oci::resolve(&r) {
            Err(e) => shapes.push(mix(shape_in(&e.to_string(), input), 8)),
            Ok(img) => match oci::unpack(&img, &self.dest()) {
                Ok(stats) => {
                    let kinds = [
                        stats.files,
                        stats.dirs,
                        stats.symlinks,
                        stats.hardlinks,
                        stats.specials,
                        stats.whiteouts,
                        stats.opaque,
                    ];
                    shapes.push(fnv(kinds.map(|n| n.min(2) as u8), 9));
                }
                Err(e) => shapes.push(mix(shape_in(&e.to_string(), input), 10)),
            },
        }
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.retain(|n| n != "root" && n != "image.tar");
        assert_eq!(
            names,
            ["canary", "layout"],
            "the unpack left something beside its destination"
        );
        assert_eq!(
            std::fs::read(self.dir.path().join("canary"))
                .ok()
                .as_deref(),
            Some(CANARY),
            "the canary beside the destination changed"
        );
        let dest = self.dest();
        if dest.symlink_metadata().is_ok() {
            std::fs::remove_dir_all(&dest)
                .unwrap_or_else(|e| panic!("cannot remove {}: {e}", dest.display()));
        }
    }
}

fn oci_json_harness() -> Harness {
    let s = Scratch::new();
    let layer = seed_layers().swap_remove(0);
    let config = config_doc(&[&layer]);
    let manifest = manifest_doc(&config, &[&layer]);
    for b in [&layer, &config, &manifest] {
        s.blob(b);
    }
    Box::new(move |input, shapes| {
        let (which, doc) = input.split_first().unwrap_or((&0, &[]));
        // The documents as the oci crate's types read them.
        shapes.push(u64::from(serde_json::from_slice::<oci::Index>(doc).is_ok()));
        shapes.push(2 + u64::from(serde_json::from_slice::<oci::Manifest>(doc).is_ok()));
        shapes.push(4 + u64::from(serde_json::from_slice::<oci::ImageConfig>(doc).is_ok()));
        let mut written = Vec::new();
        let index = match which % 4 {
            0 => doc.to_vec(),
            1 => {
                written.push(s.blob(doc));
                index_doc(MT_MANIFEST, doc)
            }
            2 => {
                written.push(s.blob(doc));
                let m = manifest_doc(doc, &[&layer]);
                written.push(s.blob(&m));
                index_doc(MT_MANIFEST, &m)
            }
            _ => {
                written.push(s.blob(doc));
                index_doc(MT_INDEX, doc)
            }
        };
        s.write("index.json", &index);
        let tag = (which / 4 % 2 == 0).then_some(TAG);
        s.resolve_and_unpack(&s.layout(), tag, &text(input), shapes);
        for p in written {
            if ![&layer, &config, &manifest]
                .iter()
                .any(|b| p.ends_with(&sha256(b)[7..]))
            {
                let _ = std::fs::remove_file(p);
            }
        }
    })
}

fn oci_json_seeds() -> Vec<Vec<u8>> {
    let layer = seed_layers().swap_remove(0);
    let config = config_doc(&[&layer]);
    let manifest = manifest_doc(&config, &[&layer]);
    let with = |which: u8, doc: &[u8]| [&[which][..], doc].concat();
    vec![
        with(0, &index_doc(MT_MANIFEST, &manifest)),
        with(4, &index_doc(MT_MANIFEST, &manifest)),
        with(1, &manifest),
        with(2, &config),
        with(3, &nested_index_doc(&manifest)),
    ]
}

const JSON_DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"\"",
    b"null",
    b"true",
    b"0",
    b"-1",
    b"1e999",
    b"\"mediaType\"",
    b"\"digest\"",
    b"\"size\"",
    b"\"manifests\"",
    b"\"layers\"",
    b"\"config\"",
    b"\"schemaVersion\"",
    b"\"annotations\"",
    b"\"platform\"",
    b"\"rootfs\"",
    b"\"diff_ids\"",
    b"\"sha256:",
    b"sha256:../../",
    b"\"fuzz\"",
    b"application/vnd.oci.image.index.v1+json",
    b"application/vnd.oci.image.manifest.v1+json",
    b"application/vnd.oci.image.layer.v1.tar+gzip",
    b"application/vnd.oci.image.layer.v1.tar+zstd",
    b"\\u0000",
    b"\\ud800",
];

pub const OCI_JSON: Target = Target {
    name: "oci_json",
    about: "oci `Index`/`Manifest`/`ImageConfig` from JSON, then `oci::resolve` and `oci::unpack` of a layout whose index, manifest, config or nested index is the input (first byte: which; digests fixed up so it is reached)",
    seeds: oci_json_seeds,
    dict: JSON_DICT,
    max_len: MAX_INPUT,
    harness: oci_json_harness,
};

fn oci_layer_harness() -> Harness {
    let s = Scratch::new();
    Box::new(move |input, shapes| {
        let mut layer = input.to_vec();
        fix_tar_checksums(&mut layer);
        let config = config_doc(&[&layer]);
        let manifest = manifest_doc(&config, &[&layer]);
        let written = [s.blob(&layer), s.blob(&config), s.blob(&manifest)];
        s.write("index.json", &index_doc(MT_MANIFEST, &manifest));
        s.resolve_and_unpack(&s.layout(), Some(TAG), &text(input), shapes);
        for p in written {
            let _ = std::fs::remove_file(p);
        }
    })
}

const TAR_DICT: &[&[u8]] = &[
    b"ustar\x0000",
    b"ustar  \0",
    b"././@LongLink",
    b"././@PaxHeader",
    b".wh.",
    b".wh..wh..opq",
    b".wh..wh.plnk",
    b"../",
    b"..",
    b"/",
    b"./",
    b"path=",
    b"linkpath=",
    b"mtime=",
    b"uid=",
    b"size=",
    b"SCHILY.xattr.",
    b"security.capability",
    b"security.selinux",
    b"user.",
    b"GNU.sparse.",
    b"0000755\0",
    b"0000644\0",
    b"00000000000\0",
    b"77777777777\0",
    b"\x80",
    b"\xff\xff\xff\xff",
    b"0",
    b"1",
    b"2",
    b"3",
    b"4",
    b"5",
    b"6",
    b"7",
    b"L",
    b"K",
    b"x",
    b"g",
    b"S",
];

pub const OCI_LAYER: Target = Target {
    name: "oci_layer",
    about: "`oci::unpack` of a one-layer image whose uncompressed layer tar is the input (header checksums recomputed, digests and diff_id fixed up); checks nothing appears beside the destination",
    seeds: seed_layers,
    dict: TAR_DICT,
    max_len: MAX_INPUT,
    harness: oci_layer_harness,
};

/// An OCI archive (a tar of a layout) with one image.
fn archive_of(layer: &[u8]) -> Vec<u8> {
    let config = config_doc(&[layer]);
    let manifest = manifest_doc(&config, &[layer]);
    let index = index_doc(MT_MANIFEST, &manifest);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data)
    };
    let blob = |d: &[u8]| format!("blobs/sha256/{}", &sha256(d)[7..]);
    let _ = add("oci-layout", OCI_LAYOUT)
        .and_then(|()| add("index.json", &index))
        .and_then(|()| add(&blob(&manifest), &manifest))
        .and_then(|()| add(&blob(&config), &config))
        .and_then(|()| add(&format!("./{}", blob(layer)), layer));
    b.into_inner().unwrap_or_default()
}

fn oci_archive_harness() -> Harness {
    let s = Scratch::new();
    Box::new(move |input, shapes| {
        let mut archive = input.to_vec();
        fix_tar_checksums(&mut archive);
        let path = s.dir.path().join("image.tar");
        std::fs::write(&path, &archive)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        s.resolve_and_unpack(&path, Some(TAG), &text(input), shapes);
    })
}

fn oci_archive_seeds() -> Vec<Vec<u8>> {
    seed_layers().iter().map(|l| archive_of(l)).collect()
}

pub const OCI_ARCHIVE: Target = Target {
    name: "oci_archive",
    about: "`oci::resolve` and `oci::unpack` of an OCI archive (a tar of a layout) that is the input, header checksums recomputed",
    seeds: oci_archive_seeds,
    dict: TAR_DICT,
    max_len: MAX_INPUT,
    harness: oci_archive_harness,
};

// ---------------------------------------------------------------------------------------
// The manifest of a tree

/// Undo [`image::manifest::escape`].
fn unescape(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next()? {
            b'\\' => out.push(b'\\'),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'x' => {
                let hex = [it.next()?, it.next()?];
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// A file name from arbitrary bytes: no `/` or NUL, not empty, `.` or `..`, at most 255
/// bytes.
fn file_name(raw: &[u8]) -> Vec<u8> {
    let mut n: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'/' || b == 0 { b'_' } else { b })
        .take(255)
        .collect();
    if n.is_empty() || n == b"." || n == b".." {
        n.insert(0, b'_');
    }
    n
}

fn image_manifest_harness() -> Harness {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let scratch = tempfile::Builder::new()
        .prefix("keel-fuzz-manifest.")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot make a scratch directory: {e}"));
    Box::new(move |input, shapes| {
        // escape: no tab, newline or control character is left, and it can be undone.
        let e = image::manifest::escape(input);
        assert!(
            !e.chars().any(char::is_control),
            "escape left a control character: {e:?}"
        );
        assert_eq!(
            unescape(&e).as_deref(),
            Some(input),
            "escape of {input:?} is {e:?}"
        );

        // A tree from the input: one entry a line, its first byte the kind, the rest its
        // name (and a symlink's target after a 0x01 byte); a directory is entered.
        let root = scratch.path().join("t");
        std::fs::create_dir(&root)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", root.display()));
        let mut made: Vec<Vec<u8>> = vec![b"/".to_vec()];
        let mut dir = root.clone();
        let mut rel = Vec::new();
        let mut last_file: Option<PathBuf> = None;
        for line in input.split(|&b| b == b'\n').take(24) {
            let Some((&kind, rest)) = line.split_first() else {
                continue;
            };
            let (name, target) = match rest.iter().position(|&b| b == 1) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[..0]),
            };
            let name = file_name(name);
            let path = dir.join(OsStr::from_bytes(&name));
            let ok = match kind % 5 {
                0 => std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, rest))
                    .is_ok(),
                1 => std::fs::create_dir(&path).is_ok(),
                2 => {
                    let t = if target.is_empty() || target.contains(&0) {
                        b"t"
                    } else {
                        target
                    };
                    std::os::unix::fs::symlink(OsStr::from_bytes(t), &path).is_ok()
                }
                3 => rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    rustix::fs::FileType::Fifo,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    0,
                )
                .is_ok(),
                _ => last_file
                    .as_ref()
                    .is_some_and(|f| std::fs::hard_link(f, &path).is_ok()),
            };
            if !ok {
                continue;
            }
            let mut full = rel.clone();
            full.push(b'/');
            full.extend_from_slice(&name);
            made.push(full.clone());
            match kind % 5 {
                0 => last_file = Some(path),
                1 => {
                    dir = path;
                    rel = full;
                }
                _ => {}
            }
        }
        let m = image::manifest::of_tree(&root)
            .unwrap_or_else(|e| panic!("no manifest of a tree of {} entries: {e}", made.len()));
        let mut listed: Vec<Vec<u8>> = Vec::new();
        for line in m.lines() {
            // What `keel manifest --json` reads: the line parsed, and written back the same.
            let parsed = image::manifest::Line::parse(line)
                .unwrap_or_else(|e| panic!("manifest line `{line}` does not parse: {e}"));
            assert_eq!(parsed.to_string(), line);
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 7, "manifest line `{line}`");
            listed
                .push(unescape(fields[0]).unwrap_or_else(|| panic!("path field `{}`", fields[0])));
            // The kind of entry and which escapes its path and target needed.
            let escapes = ["\\x", "\\t", "\\n", "\\\\"]
                .map(|e| u8::from(fields[0].contains(e) || fields[4].contains(e)));
            shapes.push(fnv(fields[1].bytes().chain(escapes), 11));
        }
        made.sort();
        listed.sort();
        assert_eq!(
            listed, made,
            "the manifest lists other paths than the tree has"
        );
        shapes.push(made.len().min(8) as u64);
        std::fs::remove_dir_all(&root)
            .unwrap_or_else(|e| panic!("cannot remove {}: {e}", root.display()));
    })
}

fn image_manifest_seeds() -> Vec<Vec<u8>> {
    vec![
        b"\x00hello\n\x01etc\n\x00passwd\n\x02link\x01/outside/x\n\x03fifo\n\x04hard".to_vec(),
        b"\x00a\tb\n\x00c\\d\n\x00\xff\xfe\n\x00\xc3\xa9t\xc3\xa9\n\x02l\x01\x1b[31m".to_vec(),
        b"\x01d\n\x01d\n\x01d\n\x00f".to_vec(),
    ]
}

pub const IMAGE_MANIFEST: Target = Target {
    name: "image_manifest",
    about: "image `manifest::escape` (undone again) and `manifest::of_tree` of a tree whose file names, symlink targets and nesting come from the input",
    seeds: image_manifest_seeds,
    dict: &[b"\n\x00", b"\n\x01", b"\n\x02", b"\n\x03", b"\n\x04", b"\x01", b"\\", b"\t", b"\xff", b"\x7f", b"\xc2\x85", b"\xe2\x80\xa8"],
    max_len: 16 << 10,
    harness: image_manifest_harness,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_are_found_and_pass() {
        for t in ALL {
            let seeds = (t.seeds)();
            assert!(!seeds.is_empty(), "{}: no seeds", t.name);
            let mut h = (t.harness)();
            let mut shapes = Vec::new();
            for s in &seeds {
                shapes.clear();
                h(s, &mut shapes);
                assert!(
                    !shapes.is_empty(),
                    "{}: no shape for {}",
                    t.name,
                    crate::escaped(s, 200)
                );
            }
        }
    }

    #[test]
    fn checksums_are_fixed() {
        let mut l = seed_layers().swap_remove(0);
        l[0] = b'X';
        fix_tar_checksums(&mut l);
        let mut ar = tar::Archive::new(&l[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names[0], "X/");
    }

    /// Found by the fuzzer (target oci_archive, in a release build): a header whose size
    /// field says 2^64 - 1 made the walk's offset wrap around.
    #[test]
    fn checksum_fixing_survives_huge_sizes() {
        let mut l = seed_layers().swap_remove(0);
        l[124..136].copy_from_slice(b"\x80\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff");
        fix_tar_checksums(&mut l);
        l[124..136].copy_from_slice(b"77777777777\0");
        fix_tar_checksums(&mut l);
    }

    #[test]
    fn unescape_undoes_escape() {
        for b in [&b"a\tb\nc\\d"[..], b"\xff\x01", "é".as_bytes()] {
            assert_eq!(unescape(&image::manifest::escape(b)).as_deref(), Some(b));
        }
    }
}
