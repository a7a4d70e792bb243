//! Labelling a tree with the target policy's file_contexts.

use crate::fc::FileContexts;
use crate::{check_policy_type, Error};
use exec::Cmd;
use rootdir::Entry;
use rootdir::PathError;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const XATTR: &str = "security.selinux";

/// What [`label`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The binary policy the contexts were validated against.
    pub policy: PathBuf,
    /// The file_contexts used.
    pub file_contexts: PathBuf,
    /// Paths visited (the root included).
    pub paths: u64,
    /// Labels written.
    pub set: u64,
    /// Paths that already had their label.
    pub unchanged: u64,
    /// Paths no spec labels (no match, or `<<none>>`), left as they are.
    pub unlabelled: Vec<String>,
}

/// The binary policy of a policy type in a root: the highest `policy.NN`.
pub fn binary_policy(root: &Path, policy_type: &str) -> Result<PathBuf, Error> {
    let dir = crate::beneath(root, &format!("etc/selinux/{policy_type}/policy"))?;
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir(&dir).map_err(PathError::at(&dir))? {
        let e = e.map_err(PathError::at(&dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(v) = name
            .strip_prefix("policy.")
            .and_then(|v| v.parse::<u32>().ok())
        {
            if best.as_ref().is_none_or(|(b, _)| v > *b) {
                best = Some((v, e.path()));
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| Error::Invalid {
        path: dir,
        message: "no binary policy (policy.NN): is the policy store built (sec-policy/selinux-base-policy)?".into(),
    })
}

/// Label every path under `root` with the file_contexts of `/etc/selinux/<type>` in the
/// root, after validating all its contexts against the root's binary policy
/// (`setfiles -c`). Symlinks are labelled themselves, never followed.
pub fn label(root: &Path, policy_type: &str, log: &Path) -> Result<Report, Error> {
    check_policy_type(policy_type)?;
    let policy = binary_policy(root, policy_type)?;
    let fc_path = crate::beneath(
        root,
        &format!("etc/selinux/{policy_type}/contexts/files/file_contexts"),
    )?;
    let fcs = FileContexts::load(&fc_path)?;
    validate(&policy, &fcs, log)?;
    label_with(root, &fcs, policy, fc_path)
}

/// Validate every context the file_contexts files hold against `policy` with the real
/// libsepol (`setfiles -c POLICY FILE`, which checks each file's contexts and exits
/// non-zero on one the policy does not define).
pub fn validate(policy: &Path, fcs: &FileContexts, log: &Path) -> Result<(), Error> {
    // one run: setfiles loads FILE and its .homedirs and .local, as the lookup does
    for f in fcs.files.iter().take(1) {
        let r = Cmd::new("setfiles")
            .arg("-c")
            .arg(policy)
            .arg(f)
            .log(log)
            .run();
        if let Err(e) = r {
            let detail = match &e {
                exec::Error::Failed(f) => f
                    .tail
                    .lines()
                    .filter(|l| {
                        l.contains("invalid context")
                            || l.contains("not defined")
                            || l.contains("Multiple")
                    })
                    .map(|l| {
                        // name the file and line that hold an invalid context
                        let place = l
                            .split("invalid context ")
                            .nth(1)
                            .and_then(|c| fcs.where_context(c.trim()))
                            .map(|(f, n)| format!(" ({}:{n})", f.display()))
                            .unwrap_or_default();
                        format!("  {l}{place}")
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => return Err(e.into()),
            };
            return Err(Error::InvalidContexts {
                fc: f.clone(),
                policy: policy.to_owned(),
                detail: if detail.is_empty() {
                    e.to_string()
                } else {
                    detail
                },
            });
        }
    }
    Ok(())
}

/// Label `root` with already loaded (and validated) file contexts.
pub fn label_with(
    root: &Path,
    fcs: &FileContexts,
    policy: PathBuf,
    fc_path: PathBuf,
) -> Result<Report, Error> {
    let mut report = Report {
        policy,
        file_contexts: fc_path,
        ..Report::default()
    };
    rootdir::walk(root, &mut |e| apply(fcs, &mut report, e))?;
    Ok(report)
}

fn apply(fcs: &FileContexts, report: &mut Report, e: &Entry) -> Result<(), Error> {
    report.paths += 1;
    let path = e.path.as_os_str().as_bytes();
    let Some(ctx) = fcs
        .lookup(path, e.stat.st_mode)
        .and_then(|s| s.context.as_deref())
    else {
        report
            .unlabelled
            .push(String::from_utf8_lossy(path).into_owned());
        return Ok(());
    };
    // libselinux stores the context with its terminating NUL
    let mut value = ctx.as_bytes().to_vec();
    value.push(0);
    let mut buf = [0u8; 512];
    if let Ok(n) = e.get_xattr(XATTR, &mut buf) {
        let cur = &buf[..n];
        if cur == value.as_slice() || cur == ctx.as_bytes() {
            report.unchanged += 1;
            return Ok(());
        }
    }
    e.set_xattr(XATTR, &value).map_err(|err| Error::Invalid {
        path: e.shown(),
        message: format!("cannot set {XATTR} to {ctx}: {err}"),
    })?;
    report.set += 1;
    Ok(())
}
