//! `runnel storage format`: Kafka's explicit way to give a node's log directories their
//! identity before the first start (`kafka-storage format --cluster-id ID --config FILE`).
//!
//! Formatting writes `meta.properties` (version 1, `node.id`, `cluster.id`, a new
//! `directory.id`; [`crate::meta_properties`]) in every log directory that has none, each
//! under the directory's lock, so a running broker's directories are never touched. As
//! Kafka's `Formatter` does: a directory already formatted for another cluster or node is an
//! error; one already formatted for this cluster and node is an error too unless
//! `ignore_formatted` (`--ignore-formatted`), when it is left as it is; when every directory
//! is already formatted there is nothing to do.
//!
//! Formatting is optional: a first `runnel server` on empty directories picks a cluster id
//! itself. Its use is to give several nodes the same cluster id, or a known one.
//!
//! Departure from Kafka: Kafka formats a directory without `meta.properties` whatever it
//! holds. Here a directory that holds anything besides the lock file is refused, because the
//! server refuses to adopt data without `meta.properties` (`server.rs`), and formatting over
//! it would be the way around that check (`runnel metadata rebuild` is the way for a
//! directory that lost its metadata).

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::data_dir::{DataDirError, DataDirLock, LOCK_FILE};
use crate::meta_properties::{self, MetaPropertiesError, META_PROPERTIES};
use crate::BrokerConfig;

#[derive(Debug, Error)]
pub enum FormatError {
    #[error("cluster id {0:?} is not a UUID in Kafka's form (22 characters of base64url, as `runnel storage random-uuid` prints)")]
    InvalidClusterId(String),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    MetaProperties(#[from] MetaPropertiesError),
    #[error(
        "log directory {dir} is already formatted. Use --ignore-formatted to ignore this \
         directory and format the others"
    )]
    AlreadyFormatted { dir: String },
    #[error(
        "log directory {dir} holds {entry:?} but no {META_PROPERTIES}: refusing to give data \
         a new identity (start it with its own {META_PROPERTIES}, or run `runnel metadata \
         rebuild`, or move the data away)"
    )]
    HoldsData { dir: String, entry: String },
    #[error("read log directory {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
}

/// What formatting did to each log directory.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FormatReport {
    /// Directories given a `meta.properties` now.
    pub formatted: Vec<PathBuf>,
    /// Directories already formatted for this cluster and node, left as they were.
    pub already_formatted: Vec<PathBuf>,
}

/// Formats `config`'s log directories for `cluster_id` and `config.node_id` (see the module
/// doc).
pub fn format(
    config: &BrokerConfig,
    cluster_id: &str,
    ignore_formatted: bool,
) -> Result<FormatReport, FormatError> {
    if meta_properties::uuid_from_base64url(cluster_id).is_none() {
        return Err(FormatError::InvalidClusterId(cluster_id.to_string()));
    }
    let dirs = config.log_dirs();
    let mut locks = Vec::with_capacity(dirs.len());
    let mut report = FormatReport::default();
    let mut empty = Vec::new();
    // Every directory is checked before any is written: an error leaves all as they were.
    for dir in &dirs {
        locks.push(DataDirLock::acquire(dir)?);
        match meta_properties::load(dir, config.node_id)? {
            Some(found) if found != cluster_id => {
                return Err(MetaPropertiesError::Invalid {
                    path: dir.join(META_PROPERTIES).display().to_string(),
                    reason: format!("cluster.id {found} is not the cluster {cluster_id}"),
                }
                .into())
            }
            Some(_) if !ignore_formatted => {
                return Err(FormatError::AlreadyFormatted {
                    dir: dir.display().to_string(),
                })
            }
            Some(_) => report.already_formatted.push(dir.clone()),
            None => {
                if let Some(entry) = first_entry(dir)? {
                    return Err(FormatError::HoldsData {
                        dir: dir.display().to_string(),
                        entry,
                    });
                }
                empty.push(dir.clone());
            }
        }
    }
    for dir in empty {
        meta_properties::ensure_directory_id(&dir, config.node_id, cluster_id)?;
        tracing::info!(dir = %dir.display(), cluster_id, node_id = config.node_id,
            "formatted the log directory");
        report.formatted.push(dir);
    }
    Ok(report)
}

/// The name of an entry of `dir` other than the lock file, if any.
fn first_entry(dir: &Path) -> Result<Option<String>, FormatError> {
    let io = |source| FormatError::Io {
        dir: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        if name != LOCK_FILE {
            return Ok(Some(name.to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// A new cluster id, as `kafka-storage random-uuid` prints one: never starting with '-' (as
/// Kafka's `Uuid.randomUuid`, so that it is not read as a command-line flag).
pub fn random_cluster_id() -> String {
    loop {
        let id = meta_properties::base64url(uuid::Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(dirs: &[&Path]) -> BrokerConfig {
        BrokerConfig {
            data_dir: dirs[0].to_path_buf(),
            extra_log_dirs: dirs[1..].iter().map(|d| d.to_path_buf()).collect(),
            ..BrokerConfig::default()
        }
    }

    #[test]
    fn every_log_dir_is_formatted_once_for_one_cluster() {
        let root = tempfile::tempdir().expect("tempdir");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        let config = config_of(&[&a, &b]);
        let id = random_cluster_id();
        let report = format(&config, &id, false).expect("format");
        assert_eq!(report.formatted, vec![a.clone(), b.clone()]);
        for dir in [&a, &b] {
            assert_eq!(
                meta_properties::load(dir, config.node_id).expect("load"),
                Some(id.clone())
            );
        }
        assert!(matches!(
            format(&config, &id, false),
            Err(FormatError::AlreadyFormatted { .. })
        ));
        let again = format(&config, &id, true).expect("ignore formatted");
        assert_eq!(again.already_formatted, vec![a, b]);
        assert!(again.formatted.is_empty());
    }

    #[test]
    fn another_cluster_a_bad_id_and_data_are_refused_before_anything_is_written() {
        let root = tempfile::tempdir().expect("tempdir");
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        format(&config_of(&[&a]), &random_cluster_id(), false).expect("format a");
        let error = format(&config_of(&[&b, &a]), &random_cluster_id(), true)
            .expect_err("a is of another cluster");
        assert!(error.to_string().contains("is not the cluster"), "{error}");
        assert!(!b.join(META_PROPERTIES).exists(), "b was left as it was");

        assert!(matches!(
            format(&config_of(&[&b]), "not-a-uuid", false),
            Err(FormatError::InvalidClusterId(_))
        ));

        std::fs::create_dir_all(b.join("orders-0")).expect("a partition directory");
        let error = format(&config_of(&[&b]), &random_cluster_id(), false).expect_err("data");
        assert!(
            matches!(&error, FormatError::HoldsData { entry, .. } if entry == "orders-0"),
            "{error}"
        );
    }
}
