//! Portage atoms and Keel's package set files. Pure: no I/O; callers pass file contents.

pub mod atom;
pub mod sets;

pub use atom::{Atom, AtomError, ParseOptions};
pub use sets::{merge, parse_set_file, Line, LineKind, Merged, SetError, SetKind, Warning};
