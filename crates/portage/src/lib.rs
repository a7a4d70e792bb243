//! The Portage backend.

pub mod venv;
