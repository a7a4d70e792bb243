//! The stages that work on the finished root tree: overlay, tmpfiles, fixups, image.
//!
//! Each tree stage starts from a fresh copy of the previous stage's tree (`cp -a
//! --reflink=auto`, which keeps owners, modes, times, xattrs and hard links), works on it
//! under `<stage>.new`, and renames it into place only when done; so a stage never runs on
//! a tree that a previous run already changed, and a killed stage leaves nothing that
//! looks finished.

use crate::{io, Error, Paths, MUTABLE_PREFIXES};
use exec::Cmd;
use std::fs;
use std::path::{Path, PathBuf};
use variant::Resolved;

/// Copy `from` to `<to>.new`, run `f` on it, then move it to `to`.
pub fn fresh_copy(
    from: &Path,
    to: &Path,
    log: &Path,
    f: impl FnOnce(&Path) -> Result<(), Error>,
) -> Result<(), Error> {
    let partial = to.with_extension("new");
    for d in [to, partial.as_path()] {
        if d.symlink_metadata().is_ok() {
            fs::remove_dir_all(d).map_err(io(d))?;
        }
    }
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    Cmd::new("cp")
        .args(["-a", "--reflink=auto", "--no-target-directory"])
        .arg(from)
        .arg(&partial)
        .log(log)
        .run()?;
    f(&partial)?;
    fs::rename(&partial, to).map_err(io(to))
}

/// overlay: the shared overlay, then each ancestor's, then the variant's; then `/usr`'s
/// mtime := the build time.
pub fn overlay(resolved: &Resolved, tree: &Path, build_time: i64, log: &Path) -> Result<(), Error> {
    let sources: Vec<PathBuf> = resolved
        .layers_of("overlay")
        .map(|l| l.path.clone())
        .collect();
    let mut text = String::new();
    if !sources.is_empty() {
        let stats =
            overlay::sync(&sources, tree).map_err(|e| Error::Tree(format!("overlay: {e}")))?;
        text.push_str(&format!(
            "overlay sync {:?} -> {}: {stats:?}\n",
            sources,
            tree.display()
        ));
    }
    if tree.join("usr").symlink_metadata().is_ok() {
        overlay::set_mtime(
            tree,
            Path::new("/usr"),
            overlay::Mtime::from_secs(build_time),
        )
        .map_err(|e| Error::Tree(format!("overlay: {e}")))?;
        text.push_str(&format!("/usr mtime := {build_time}\n"));
    }
    append_log(log, &text)
}

/// The mutable prefixes of a variant: the defaults and its writable paths under /etc.
pub fn mutable_prefixes(resolved: &Resolved) -> Vec<String> {
    let mut p: Vec<String> = MUTABLE_PREFIXES.iter().map(|s| s.to_string()).collect();
    p.extend(resolved.settings.etc_writable.iter().cloned());
    p
}

/// fixups: `/etc/ld.so.cache`, no `.updated` stamps, the customize hook, then the final
/// times (see [`finalize`]).
pub fn fixups(resolved: &Resolved, paths: &Paths, tree: &Path, log: &Path) -> Result<(), Error> {
    let line = image::fixups::ld_so_cache(tree, log)?;
    let removed = image::fixups::remove_updated_stamps(tree)?;
    append_log(
        log,
        &format!("ld.so.cache by `{line}`\nremoved: {removed:?}\n"),
    )?;
    if let Some(hook) = &resolved.settings.customize_hook {
        append_log(log, &format!("customize hook {}\n", hook.display()))?;
        image::fixups::run_hook(
            hook,
            &[("KEEL_ROOT", tree), ("KEEL_OUTPUT", &paths.output)],
            hook.parent().unwrap_or(tree),
            log,
        )?;
    }
    Ok(())
}

/// The last touch of the last tree stage: `/usr`'s mtime := build time (entries added under
/// `/usr` since the overlay stage moved it), and with SOURCE_DATE_EPOCH every later mtime
/// clamped to it.
pub fn finalize(tree: &Path, build_time: i64, clamp: Option<i64>, log: &Path) -> Result<(), Error> {
    if tree.join("usr").symlink_metadata().is_ok() {
        overlay::set_mtime(
            tree,
            Path::new("/usr"),
            overlay::Mtime::from_secs(build_time),
        )
        .map_err(|e| Error::Tree(format!("finalize: {e}")))?;
    }
    if let Some(epoch) = clamp {
        let n = image::make::clamp_mtimes(tree, epoch)?;
        append_log(
            log,
            &format!("clamped {n} mtimes to SOURCE_DATE_EPOCH={epoch}\n"),
        )?;
    }
    Ok(())
}

pub fn append_log(log: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    if let Some(parent) = log.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(log))?;
    f.write_all(text.as_bytes()).map_err(io(log))
}

/// tmpfiles: the variant's tmpfiles.d layers written into `/etc/tmpfiles.d` (added files,
/// edited copies of packaged files, dropped files), build-time creation of every entry
/// outside the mutable prefixes with `systemd-tmpfiles --create --boot` semantics, and the
/// check that nothing is shipped where a `v`/`q`/`Q` entry below a mutable prefix must
/// create a subvolume at boot (systemd-tmpfiles ignores such a path when it exists). An
/// empty directory there is removed; anything else is an error.
pub fn tmpfiles(
    project: &Path,
    resolved: &Resolved,
    tree: &Path,
    prefixes: &[String],
    log: &Path,
) -> Result<(), Error> {
    let terr = |e: &dyn std::fmt::Display| Error::Tree(format!("tmpfiles: {e}"));
    let root = tmpfiles::apply::open_root(tree).map_err(|e| terr(&e))?;
    let layers: Vec<PathBuf> = resolved
        .layers_of("tmpfiles.d")
        .map(|l| l.path.clone())
        .collect();
    let written = tmpfiles::build::write_layers(&root, project, &layers).map_err(|e| terr(&e))?;
    let mut text = String::new();
    for w in &written {
        text.push_str(&format!("{w:?}\n"));
    }
    let host = tmpfiles::apply::host_facts();
    let subvolumes = subvolume_entries(&root, &host).map_err(|e| terr(&e))?;
    let fd = image::walk::open_root(tree)?;
    // Paths strictly below a mutable prefix are made at boot on the writable filesystem; a
    // prefix itself is a mount point the image must have.
    let below_prefix = |p: &str| {
        prefixes.iter().any(|pre| {
            p.strip_prefix(pre.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        })
    };
    for (source, path) in subvolumes.iter().filter(|(_, p)| below_prefix(p)) {
        match remove_if_empty_dir(&fd, tree, path)? {
            Shipped::Nothing => {}
            Shipped::EmptyDir => text.push_str(&format!("removed empty {path}: {source} makes it a subvolume at boot\n")),
            Shipped::Something(what) => {
                return Err(Error::Tree(format!(
                    "tmpfiles: the image ships {what} at {path}, where `{source}` must create a subvolume at boot (systemd-tmpfiles ignores a path that exists); mask it (INSTALL_MASK) or move the entry"
                )))
            }
        }
    }
    let report =
        tmpfiles::build::create_at_build_time(&root, prefixes, &host).map_err(|e| terr(&e))?;
    text.push_str(&format!(
        "applied {} entries outside {prefixes:?}\n",
        report.apply.applied
    ));
    for d in &report.apply.diagnostics {
        text.push_str(&format!(
            "{}{d}\n",
            if d.error { "error: " } else { "notice: " }
        ));
    }
    for n in &report.apply.notes {
        text.push_str(&format!("notice: {n}\n"));
    }
    for r in &report.runtime {
        text.push_str(&format!(
            "warning: cannot work on the read-only root at run time: {r}\n"
        ));
    }
    append_log(log, &text)?;
    if !report.apply.failures.is_empty() {
        let list: Vec<String> = report
            .apply
            .failures
            .iter()
            .map(|f| format!("  {f}"))
            .collect();
        return Err(Error::Tree(format!(
            "tmpfiles: entries in the immutable root could not be created:\n{}",
            list.join("\n")
        )));
    }
    Ok(())
}

/// `v`, `q` and `Q` entries of the root's effective configuration: (where, path).
fn subvolume_entries(
    root: &tmpfiles::root::Root,
    host: &tmpfiles::spec::Host,
) -> Result<Vec<(String, String)>, tmpfiles::apply::Error> {
    let files: Vec<(String, Vec<String>)> = tmpfiles::apply::load_config(root)?
        .into_iter()
        .map(|f| (f.path, tmpfiles::config::lines(&f.content)))
        .collect();
    let (spec, users) = tmpfiles::apply::root_context(root, host);
    let opts = tmpfiles::plan::Options {
        boot: true,
        ..Default::default()
    };
    let plan = tmpfiles::plan::plan(&files, &spec, &users, &opts);
    Ok(plan
        .items
        .iter()
        .filter(|i| matches!(i.kind, 'v' | 'q' | 'Q'))
        .map(|i| (i.source.to_string(), i.path.clone()))
        .collect())
}

enum Shipped {
    Nothing,
    EmptyDir,
    Something(&'static str),
}

/// Look at `path` inside the root without following symlinks; remove it when it is an
/// empty directory.
fn remove_if_empty_dir(
    root: &rustix::fd::OwnedFd,
    tree: &Path,
    path: &str,
) -> Result<Shipped, Error> {
    use rustix::fs::{statat, unlinkat, AtFlags, FileType};
    let rel = Path::new(path.trim_start_matches('/'));
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Ok(Shipped::Nothing);
    };
    let shown = tree.join(rel);
    let dir = match image::walk::open_beneath(root, parent, &shown) {
        Ok(d) => d,
        // The parent does not exist (or is a symlink, which the boot resolves elsewhere).
        Err(_) => return Ok(Shipped::Nothing),
    };
    let st = match statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(rustix::io::Errno::NOENT) => return Ok(Shipped::Nothing),
        Err(e) => return Err(image::Error::errno(&shown)(e).into()),
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => match unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            Ok(()) => Ok(Shipped::EmptyDir),
            Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::EXIST) => {
                Ok(Shipped::Something("a non-empty directory"))
            }
            Err(e) => Err(image::Error::errno(&shown)(e).into()),
        },
        FileType::Symlink => Ok(Shipped::Something("a symlink")),
        _ => Ok(Shipped::Something("a file")),
    }
}
