//! gentoo-mini's stand-ins made of Debian packages' files (docs/gentoo-mini.md).
//!
//! Where building a package from source does not fit the test budget, gentoo-mini's
//! ebuild for it installs the files of the matching Debian packages, pinned in its Manifest
//! as real distfiles (as Gentoo's own `-bin` packages are made). Which Debian packages
//! each atom stands for is data: `metadata/keel-standins.toml` in the tree ([`map`]). The
//! ebuilds and Manifests are generated from it ([`plan`]), with apt's data about each
//! package ([`control`]); regenerating them is one command (`keel standins`, [`regen`]).
//!
//! **Invariant:** the mapping is the whole dependency closure: every Depends and
//! Pre-Depends of every Debian package a stand-in installs resolves to an atom of the
//! mapping or to a package ignored with a reason, else nothing is written
//! (`tests::a_dependency_no_atom_maps_is_an_error`).
//!
//! [`map`], [`control`] and [`plan`] are pure; [`regen`] runs apt and writes the tree.

pub mod control;
pub mod map;
pub mod plan;
pub mod regen;

#[cfg(test)]
mod tests;
