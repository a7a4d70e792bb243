//! The JSON documents of an OCI image layout, the media types Keel reads, and the choice of
//! a manifest. Pure: no I/O.

use serde::Deserialize;
use std::collections::BTreeMap;

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression of a layer media type; `None` for a media type that is not a layer Keel
/// can read.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    Some(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
        _ => return None,
    })
}

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// The `org.opencontainers.image.ref.name` annotation.
    pub fn tag(&self) -> Option<&str> {
        self.annotations
            .get(ANNOTATION_REF_NAME)
            .map(String::as_str)
    }

    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    pub fn is_manifest(&self) -> bool {
        self.media_type == OCI_MANIFEST || self.media_type == DOCKER_MANIFEST
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// `index.json`, or a nested image index.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// The image configuration blob (the parts Keel keeps).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
}

/// `config` of the image configuration: how a container of it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// Why no manifest could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// No descriptor carries the tag; the tags there are.
    UnknownTag(Vec<String>),
    /// No tag given and not exactly one descriptor; the tags there are.
    Ambiguous(usize, Vec<String>),
    /// Several descriptors match and none is for the platform; the platforms there are.
    NoPlatform(Vec<String>),
}

/// The tags of an index, sorted, each once.
pub fn tags(index: &Index) -> Vec<String> {
    let mut t: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.tag().map(str::to_owned))
        .collect();
    t.sort();
    t.dedup();
    t
}

/// Choose the descriptor of `index` that `tag` names; without a tag, the only one. Several
/// descriptors with the tag (a multi-platform image saved flat) are told apart by
/// `os`/`arch`.
pub fn choose<'a>(
    index: &'a Index,
    tag: Option<&str>,
    os: &str,
    arch: &str,
) -> Result<&'a Descriptor, Choice> {
    let candidates: Vec<&Descriptor> = match tag {
        Some(t) => index
            .manifests
            .iter()
            .filter(|d| d.tag() == Some(t))
            .collect(),
        None => index.manifests.iter().collect(),
    };
    match candidates.len() {
        0 if tag.is_some() => Err(Choice::UnknownTag(tags(index))),
        1 => Ok(candidates[0]),
        n if tag.is_none() => Err(Choice::Ambiguous(n, tags(index))),
        _ => for_platform(&candidates, os, arch),
    }
}

/// The one descriptor (of a nested image index) for `os`/`arch`.
pub fn for_platform<'a>(
    candidates: &[&'a Descriptor],
    os: &str,
    arch: &str,
) -> Result<&'a Descriptor, Choice> {
    candidates
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .copied()
        .ok_or_else(|| {
            Choice::NoPlatform(
                candidates
                    .iter()
                    .map(|d| {
                        d.platform
                            .as_ref()
                            .map_or_else(|| "(no platform)".to_owned(), Platform::to_string)
                    })
                    .collect(),
            )
        })
}

/// The OCI architecture name of the machine this runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// The hex part of a `sha256:` digest (64 lowercase hex digits); `None` otherwise.
pub fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(tag: Option<&str>, platform: Option<(&str, &str)>, digest: char) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{}", digest.to_string().repeat(64)),
            size: 1,
            annotations: tag
                .map(|t| [(ANNOTATION_REF_NAME.to_owned(), t.to_owned())].into())
                .unwrap_or_default(),
            platform: platform.map(|(os, a)| Platform {
                os: os.into(),
                architecture: a.into(),
                variant: None,
            }),
        }
    }

    fn index(m: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: None,
            manifests: m,
        }
    }

    #[test]
    fn a_tag_picks_its_manifest() {
        let i = index(vec![desc(Some("a"), None, '1'), desc(Some("b"), None, '2')]);
        assert_eq!(
            choose(&i, Some("b"), "linux", "amd64").unwrap().digest,
            format!("sha256:{}", "2".repeat(64))
        );
    }

    #[test]
    fn an_unknown_tag_lists_the_tags() {
        let i = index(vec![desc(Some("b"), None, '1'), desc(Some("a"), None, '2')]);
        assert_eq!(
            choose(&i, Some("c"), "linux", "amd64"),
            Err(Choice::UnknownTag(vec!["a".into(), "b".into()]))
        );
    }

    #[test]
    fn no_tag_takes_the_only_manifest() {
        let i = index(vec![desc(Some("x"), None, '1')]);
        assert!(choose(&i, None, "linux", "amd64").is_ok());
        let i = index(vec![desc(None, None, '1')]);
        assert!(choose(&i, None, "linux", "amd64").is_ok());
    }

    #[test]
    fn no_tag_and_several_manifests_is_ambiguous() {
        let i = index(vec![desc(Some("a"), None, '1'), desc(None, None, '2')]);
        assert_eq!(
            choose(&i, None, "linux", "amd64"),
            Err(Choice::Ambiguous(2, vec!["a".into()]))
        );
        assert_eq!(
            choose(&index(vec![]), None, "linux", "amd64"),
            Err(Choice::Ambiguous(0, vec![]))
        );
    }

    #[test]
    fn one_tag_on_several_platforms_picks_the_host_one() {
        let i = index(vec![
            desc(Some("t"), Some(("linux", "arm64")), '1'),
            desc(Some("t"), Some(("linux", "amd64")), '2'),
        ]);
        assert_eq!(
            choose(&i, Some("t"), "linux", "amd64").unwrap().digest,
            format!("sha256:{}", "2".repeat(64))
        );
        assert_eq!(
            choose(&i, Some("t"), "linux", "s390x"),
            Err(Choice::NoPlatform(vec![
                "linux/arm64".into(),
                "linux/amd64".into()
            ]))
        );
    }

    #[test]
    fn layer_media_types() {
        use Compression::*;
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar", Some(None)),
            ("application/vnd.oci.image.layer.v1.tar+gzip", Some(Gzip)),
            ("application/vnd.oci.image.layer.v1.tar+zstd", Some(Zstd)),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Some(Gzip),
            ),
            ("application/vnd.oci.image.layer.v1.tar+bzip2", Option::None),
            ("application/vnd.oci.image.config.v1+json", Option::None),
        ] {
            assert_eq!(layer_compression(mt), c, "{mt}");
        }
    }

    #[test]
    fn digests() {
        let good = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(sha256_hex(&good), Some(&good[7..]));
        assert_eq!(sha256_hex(&format!("sha256:{}", "AB".repeat(32))), None);
        assert_eq!(sha256_hex(&format!("sha512:{}", "ab".repeat(32))), None);
        assert_eq!(sha256_hex("sha256:../../etc/passwd"), None);
    }

    #[test]
    fn config_keeps_env_and_workdir() {
        let c: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin"],
            "WorkingDir":"/w","Entrypoint":["/bin/sh"],"User":"0:0"},
            "rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        assert_eq!(c.config.env.unwrap(), ["PATH=/usr/bin"]);
        assert_eq!(c.config.working_dir.as_deref(), Some("/w"));
        assert_eq!(c.config.user.as_deref(), Some("0:0"));
    }
}
