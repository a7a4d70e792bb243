//! Local policy modules and booleans, installed into the image's policy store.
//!
//! A policy layer (`policy/` of the project, then `variants/<v>/policy/` along the chain)
//! holds:
//! - `NAME.te` (with optional `NAME.if`, `NAME.fc`): a refpolicy-style module, compiled
//!   against the policy headers of the image (`/usr/share/selinux/<type>/include`, which
//!   sec-policy/selinux-base installs), so it is checked against the target policy;
//! - `NAME.cil`: a CIL module, installed as it is;
//! - `booleans`: `name = on|off` per line (`1|0`, `true|false` too), `#` comments.
//!
//! A later layer's module of the same NAME replaces the earlier one (whichever its
//! kind); a later layer's boolean line wins. All modules go into the store in one
//! `semodule -p ROOT -s TYPE -X 400 -i ...` (priority 400, above the distribution's 100);
//! booleans go to the store's `booleans.local`, which every store rebuild applies, and are
//! then read back from the built policy (`seinfo -b`), so a misspelt boolean (which
//! libsemanage ignores silently) fails naming its file and line.

use crate::{check_policy_type, Error};
use exec::Cmd;
use rootdir::PathError;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Te,
    Cil,
}

/// What [`install_modules`] installed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Module name and the source file it came from.
    pub modules: Vec<(String, PathBuf)>,
    /// Boolean, value, and where it was set.
    pub booleans: Vec<(String, bool, String)>,
}

/// Parse a layer's `booleans` file: (name, value, line).
pub fn read_booleans(path: &Path) -> Result<Vec<(String, bool, usize)>, Error> {
    let text = fs::read_to_string(path).map_err(PathError::at(path))?;
    parse_booleans(path, &text)
}

/// The most a layer's `booleans` file may hold (1 MiB).
const MAX_BOOLEANS: u64 = 1 << 20;

/// Parse the text of a `booleans` file (`path` for messages).
fn parse_booleans(path: &Path, text: &str) -> Result<Vec<(String, bool, usize)>, Error> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| Error::Booleans {
            path: path.to_owned(),
            line: i + 1,
            message,
        };
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| err(format!("expected `name = on|off`, found `{line}`")))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(format!("invalid boolean name `{name}`")));
        }
        let v = match value.trim() {
            "on" | "1" | "true" => true,
            "off" | "0" | "false" => false,
            v => return Err(err(format!("invalid value `{v}` for `{name}` (on or off)"))),
        };
        out.push((name.to_owned(), v, i + 1));
    }
    Ok(out)
}

/// Compile and install the modules of `layers` (in order; directories inside `project`)
/// into the policy store of `root`, and set the layers' booleans there. The layers are
/// read beneath `project` (crate `rootdir`): a file linked out of the project is an error
/// naming the link, never read.
pub fn install_modules(
    root: &Path,
    policy_type: &str,
    project: &Path,
    layers: &[PathBuf],
    log: &Path,
) -> Result<Installed, Error> {
    check_policy_type(policy_type)?;
    let tree = rootdir::Root::open(project)?;
    let mut modules: BTreeMap<String, (Kind, PathBuf)> = BTreeMap::new();
    let mut booleans: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for layer in layers {
        let rel = layer.strip_prefix(project).map_err(|_| Error::Invalid {
            path: layer.clone(),
            message: format!("a policy layer outside the project {}", project.display()),
        })?;
        if !tree.is_dir(rel) {
            continue;
        }
        let mut here: BTreeMap<String, PathBuf> = BTreeMap::new();
        for name in tree.names(rel)? {
            let p = layer.join(&name);
            if name == "booleans" {
                let text = tree.read(&rel.join(&name), MAX_BOOLEANS, "a booleans file")?;
                let text = String::from_utf8(text).map_err(|_| Error::Invalid {
                    path: p.clone(),
                    message: "not UTF-8 text".into(),
                })?;
                for (b, v, line) in parse_booleans(&p, &text)? {
                    booleans.insert(b, (v, format!("{}:{line}", p.display())));
                }
                continue;
            }
            let (stem, kind) = match name.rsplit_once('.') {
                Some((s, "te")) => (s, Kind::Te),
                Some((s, "cil")) => (s, Kind::Cil),
                _ => continue,
            };
            if !stem
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(Error::Invalid {
                    path: p.clone(),
                    message: format!("invalid module name `{stem}`"),
                });
            }
            if let Some(other) = here.insert(stem.to_owned(), p.clone()) {
                return Err(Error::Invalid {
                    path: p,
                    message: format!(
                        "module `{stem}` is defined twice in this layer (also {})",
                        other.display()
                    ),
                });
            }
            // The tools read it by path: a regular file inside the project, checked here.
            drop(tree.open_file(&rel.join(&name))?);
            modules.insert(stem.to_owned(), (kind, p));
        }
    }

    let store = crate::beneath(root, &format!("var/lib/selinux/{policy_type}/active"))?;
    if !store.is_dir() {
        return Err(Error::Invalid {
            path: store,
            message: format!("no {policy_type} policy store in the image (sec-policy/selinux-base-policy creates it)"),
        });
    }

    let tmp = tempfile::tempdir().map_err(PathError::at(root))?;
    let build = tmp.path();
    let mut packages = Vec::new();
    let te: Vec<(&String, &PathBuf)> = modules
        .iter()
        .filter(|(_, (k, _))| *k == Kind::Te)
        .map(|(n, (_, p))| (n, p))
        .collect();
    if !te.is_empty() {
        let headers = crate::beneath(root, &format!("usr/share/selinux/{policy_type}/include"))?;
        let makefile = headers.join("Makefile");
        if !makefile.is_file() {
            return Err(Error::Invalid {
                path: makefile,
                message: "no policy headers in the image to compile local modules against (sec-policy/selinux-base installs them)".into(),
            });
        }
        // every module's files in one directory, so their interfaces see each other
        for (name, te_path) in &te {
            for ext in ["te", "if", "fc"] {
                let src = te_path.with_extension(ext);
                if src.is_file() {
                    let dst = build.join(format!("{name}.{ext}"));
                    fs::copy(&src, &dst).map_err(PathError::at(&src))?;
                }
            }
        }
        for (name, te_path) in &te {
            Cmd::new("make")
                .arg("-f")
                .arg(&makefile)
                .arg(format!("NAME={policy_type}"))
                .arg(format!("HEADERDIR={}", headers.display()))
                .arg(format!("{name}.pp"))
                .cwd(build)
                .log(log)
                .run()
                .map_err(|source| Error::Module {
                    module: (*name).clone(),
                    path: (*te_path).clone(),
                    cause: source,
                })?;
            packages.push(build.join(format!("{name}.pp")));
        }
    }
    for (kind, p) in modules.values() {
        if *kind == Kind::Cil {
            packages.push(p.clone());
        }
    }

    if !booleans.is_empty() {
        let local = store.join("booleans.local");
        let mut merged: BTreeMap<String, bool> = BTreeMap::new();
        if let Ok(text) = fs::read_to_string(&local) {
            for l in text.lines() {
                if let Some((n, v)) = l.split_once('=') {
                    merged.insert(n.trim().to_owned(), v.trim() == "1");
                }
            }
        }
        for (n, (v, _)) in &booleans {
            merged.insert(n.clone(), *v);
        }
        let text: String = merged
            .iter()
            .map(|(n, v)| format!("{n}={}\n", u8::from(*v)))
            .collect();
        crate::write_atomic(&local, text.as_bytes(), 0o644)?;
    }

    if !packages.is_empty() || !booleans.is_empty() {
        let mut cmd = Cmd::new("semodule")
            .arg("-p")
            .arg(root)
            .args(["-s", policy_type, "-n"]);
        if packages.is_empty() {
            cmd = cmd.arg("-B");
        } else {
            cmd = cmd.args(["-X", "400"]);
            for p in &packages {
                cmd = cmd.arg("-i").arg(p);
            }
        }
        cmd.log(log).run()?;
    }

    if !booleans.is_empty() {
        let policy = crate::label::binary_policy(root, policy_type)?;
        let out = Cmd::new("seinfo")
            .arg("-b")
            .arg("-x")
            .arg(&policy)
            .log(log)
            .output()?;
        let mut have: BTreeMap<&str, bool> = BTreeMap::new();
        for l in out.stdout.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if let ["bool", name, state] = w.as_slice() {
                have.insert(name, state.trim_end_matches(';') == "true");
            }
        }
        for (n, (v, at)) in &booleans {
            match have.get(n.as_str()) {
                None => {
                    return Err(Error::Invalid {
                        path: PathBuf::from(at),
                        message: format!(
                            "boolean `{n}` is not defined by the {policy_type} policy"
                        ),
                    })
                }
                Some(s) if s != v => {
                    return Err(Error::Invalid {
                        path: PathBuf::from(at),
                        message: format!("boolean `{n}` is {s} in the built policy, not {v}"),
                    })
                }
                _ => {}
            }
        }
    }

    Ok(Installed {
        modules: modules.into_iter().map(|(n, (_, p))| (n, p)).collect(),
        booleans: booleans
            .into_iter()
            .map(|(n, (v, at))| (n, v, at))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("booleans");
        fs::write(
            &p,
            "# why\nsystemd_tmpfiles_manage_all = on  # tmpfiles\nx=0\n",
        )
        .unwrap();
        assert_eq!(
            read_booleans(&p).unwrap(),
            vec![
                ("systemd_tmpfiles_manage_all".into(), true, 2),
                ("x".into(), false, 3)
            ]
        );
        fs::write(&p, "a = maybe\n").unwrap();
        let e = read_booleans(&p).unwrap_err().to_string();
        assert!(
            e.ends_with("booleans:1: invalid value `maybe` for `a` (on or off)"),
            "{e}"
        );
    }

    /// Issue 17: a module or booleans file linked out of the project is refused naming the
    /// link (before any tool reads it); a FIFO does not block.
    #[test]
    fn layer_files_linked_out_of_the_project_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let project = d.path().join("p");
        let layer = project.join("policy");
        fs::create_dir_all(&layer).unwrap();
        fs::write(d.path().join("secret"), "SECRET\n").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), layer.join("x.te")).unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let log = d.path().join("log");
        let run = || install_modules(&root, "mcs", &project, std::slice::from_ref(&layer), &log);
        let e = run().unwrap_err().to_string();
        assert!(e.contains("/policy/x.te is a symlink to"), "{e}");
        assert!(!e.contains("SECRET"), "{e}");
        fs::remove_file(layer.join("x.te")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            layer.join("booleans"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = run().unwrap_err().to_string();
        assert!(e.contains("booleans: a FIFO, not a regular file"), "{e}");
        // A layer outside the project is a clear error too.
        let e = install_modules(&root, "mcs", &project, &[d.path().join("elsewhere")], &log)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a policy layer outside the project"), "{e}");
    }
}
