//! tmpfiles.d(5) for Keel.
//!
//! - [`entry`], [`escape`], [`acl`], [`spec`], [`config`], [`plan`], [`edit`]: the pure model. Parse
//!   and write lines, decide which files apply and in which order, turn lines into the
//!   operations systemd-tmpfiles would run, and apply edits to packaged files. No I/O.
//! - [`root`] and [`apply`]: the only code that touches a filesystem. A root is a
//!   directory handle; every path is resolved inside it as under chroot (an absolute
//!   symlink restarts at the root, `..` never climbs above it), with `O_NOFOLLOW` on every
//!   step, so nothing outside the root is ever read, written or followed.
//!
//! **Invariant:** the model knows nothing about files; the apply side never resolves a
//! path by joining strings onto the root path.

pub mod acl;
pub mod config;
pub mod entry;
pub mod escape;
pub mod plan;
pub mod spec;

pub use entry::{parse_line, Entry};
pub mod apply;
pub mod build;
pub mod edit;
pub mod root;
