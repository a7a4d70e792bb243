//! `PATH` or `PATH:TAG`, as skopeo's `oci:PATH:TAG` without the transport.

use std::fmt;
use std::path::{Path, PathBuf};

/// An image in an OCI image layout directory or an archive of one, with an optional tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The layout directory or the archive file.
    pub path: PathBuf,
    /// The `org.opencontainers.image.ref.name` to select; `None`: the only manifest.
    pub tag: Option<String>,
}

impl ImageRef {
    /// Parse `PATH` or `PATH:TAG`, asking the filesystem whether a path exists: a string
    /// that names an existing path as a whole is that path (no tag), even with a `:` in it.
    pub fn parse(s: &str) -> ImageRef {
        ImageRef::parse_with(s, |p| p.symlink_metadata().is_ok())
    }

    /// [`ImageRef::parse`] with the existence check given (pure).
    ///
    /// The split is at the last `:` when what follows it is a tag (no `/`, not empty) and
    /// what precedes it is not empty; a string naming an existing path wins over the split.
    pub fn parse_with(s: &str, exists: impl Fn(&Path) -> bool) -> ImageRef {
        let whole = || ImageRef {
            path: PathBuf::from(s),
            tag: None,
        };
        if exists(Path::new(s)) {
            return whole();
        }
        match s.rsplit_once(':') {
            Some((path, tag)) if !path.is_empty() && !tag.is_empty() && !tag.contains('/') => {
                ImageRef {
                    path: PathBuf::from(path),
                    tag: Some(tag.to_owned()),
                }
            }
            _ => whole(),
        }
    }
}

impl std::str::FromStr for ImageRef {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ImageRef::parse(s))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            Some(t) => write!(f, "{}:{t}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str, existing: &[&str], path: &str, tag: Option<&str>) {
        let r = ImageRef::parse_with(s, |p| existing.iter().any(|e| Path::new(e) == p));
        assert_eq!(r.path, PathBuf::from(path), "{s}");
        assert_eq!(r.tag.as_deref(), tag, "{s}");
    }

    #[test]
    fn plain_path_has_no_tag() {
        check("/images/stage3", &[], "/images/stage3", None);
        check("stage3.tar", &[], "stage3.tar", None);
    }

    #[test]
    fn last_colon_splits_the_tag() {
        check(
            "/images/stage3:latest",
            &[],
            "/images/stage3",
            Some("latest"),
        );
        check("a:b:c", &[], "a:b", Some("c"));
        check("img.tar:v1.2", &[], "img.tar", Some("v1.2"));
    }

    #[test]
    fn an_existing_path_wins_over_the_split() {
        check("/x/odd:name", &["/x/odd:name"], "/x/odd:name", None);
        check("/x/odd:name", &["/x/odd"], "/x/odd", Some("name"));
    }

    #[test]
    fn a_colon_inside_a_directory_name_is_not_a_tag() {
        check("/x/a:b/layout", &[], "/x/a:b/layout", None);
        check("/x/a:b/layout:t", &[], "/x/a:b/layout", Some("t"));
    }

    #[test]
    fn empty_sides_do_not_split() {
        check(":t", &[], ":t", None);
        check("path:", &[], "path:", None);
    }

    #[test]
    fn display_round_trips() {
        let r = ImageRef::parse_with("/l:t", |_| false);
        assert_eq!(r.to_string(), "/l:t");
        assert_eq!(ImageRef::parse_with(&r.to_string(), |_| false), r);
    }
}
