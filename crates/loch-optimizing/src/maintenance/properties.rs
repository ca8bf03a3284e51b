//! Maintenance table properties, Amoro's names and defaults (plus Iceberg's `gc.enabled` and
//! `history.expire.*`), parsed once into types. A value that does not parse is an error that
//! names the property; the run reports it instead of guessing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::error::Result;
use crate::properties::{Props, merge};

/// How a table's snapshots expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireProperties {
    /// `table-expire.enabled` (true), and `gc.enabled` (true): both must hold.
    pub enabled: bool,
    /// Snapshots younger than this stay: the longer of `snapshot.keep.duration` (720min) and
    /// Iceberg's `history.expire.max-snapshot-age-ms` when set.
    pub keep: Duration,
    /// The newest snapshots of each branch that stay regardless of age: the larger of
    /// `snapshot.keep.min-count` (1) and Iceberg's `history.expire.min-snapshots-to-keep` when set.
    pub min_count: usize,
}

/// How a table's orphan files are cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanProperties {
    /// `clean-orphan-file.enabled` (false), and `gc.enabled`.
    pub enabled: bool,
    /// `clean-orphan-file.min-existing-time-minutes` (2880): younger files may belong to a
    /// commit in flight and stay. A bare number is minutes; a unit may be given (`30s`).
    pub min_existing: Duration,
}

/// A table's maintenance properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceProperties {
    /// Iceberg's `gc.enabled` (true): false turns off every action that deletes files.
    pub gc_enabled: bool,
    /// Snapshot expiry.
    pub expire: ExpireProperties,
    /// `clean-dangling-delete-files.enabled` (true), and `gc.enabled`.
    pub clean_dangling_deletes: bool,
    /// Orphan file cleaning.
    pub orphans: OrphanProperties,
    /// Data expiration is on and counts from the last commit (`data-expire.enabled` with
    /// `data-expire.base-on-rule` `LAST_COMMIT_TIME`): expiry then keeps the newest snapshot a
    /// writer other than Loch committed, the time data expiration counts from.
    pub data_expire_from_last_commit: bool,
}

impl MaintenanceProperties {
    /// Effective properties of a table: catalog `table.*` defaults, then the table's own.
    pub fn resolve(catalog: &BTreeMap<String, String>, table: &HashMap<String, String>) -> Result<Self> {
        Self::parse(&merge(catalog, table))
    }

    /// Parses properties.
    pub fn parse(props: &HashMap<&str, &str>) -> Result<Self> {
        let p = Props(props);
        let gc_enabled = p.bool("gc.enabled", true)?;
        let keep = p.duration("snapshot.keep.duration", Duration::from_secs(720 * 60))?;
        let iceberg_age = p.num::<u64>("history.expire.max-snapshot-age-ms", 0)?;
        let min_count = p.num::<usize>("snapshot.keep.min-count", 1)?;
        let iceberg_min = p.num::<usize>("history.expire.min-snapshots-to-keep", 1)?;
        let data_expire = p.bool("data-expire.enabled", false)?;
        let base = p.get("data-expire.base-on-rule").unwrap_or("LAST_COMMIT_TIME");
        Ok(Self {
            data_expire_from_last_commit: data_expire && base.eq_ignore_ascii_case("LAST_COMMIT_TIME"),
            clean_dangling_deletes: gc_enabled && p.bool("clean-dangling-delete-files.enabled", true)?,
            orphans: OrphanProperties {
                enabled: gc_enabled && p.bool("clean-orphan-file.enabled", false)?,
                min_existing: p.duration_in(
                    "clean-orphan-file.min-existing-time-minutes",
                    Duration::from_secs(60),
                    Duration::from_secs(2880 * 60),
                )?,
            },
            gc_enabled,
            expire: ExpireProperties {
                enabled: gc_enabled && p.bool("table-expire.enabled", true)?,
                keep: keep.max(Duration::from_millis(iceberg_age)),
                min_count: min_count.max(iceberg_min).max(1),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<MaintenanceProperties> {
        MaintenanceProperties::parse(&pairs.iter().copied().collect())
    }

    #[test]
    fn defaults_are_amoro_s() {
        let p = parse(&[]).unwrap();
        assert!(p.gc_enabled && p.expire.enabled);
        assert_eq!(p.expire.keep, Duration::from_secs(12 * 3600));
        assert_eq!(p.expire.min_count, 1);
        assert!(!p.orphans.enabled);
        assert_eq!(p.orphans.min_existing, Duration::from_secs(2880 * 60));
    }

    #[test]
    fn orphan_age_is_minutes_unless_a_unit_says_otherwise() {
        let p = parse(&[("clean-orphan-file.enabled", "true"), ("clean-orphan-file.min-existing-time-minutes", "90")]);
        let p = p.unwrap();
        assert!(p.orphans.enabled);
        assert_eq!(p.orphans.min_existing, Duration::from_secs(90 * 60));
        let p = parse(&[("clean-orphan-file.min-existing-time-minutes", "30s")]).unwrap();
        assert_eq!(p.orphans.min_existing, Duration::from_secs(30));
        let off = parse(&[("clean-orphan-file.enabled", "true"), ("gc.enabled", "false")]).unwrap();
        assert!(!off.orphans.enabled, "gc.enabled=false turns orphan cleaning off");
        assert!(parse(&[("clean-orphan-file.min-existing-time-minutes", "soon")]).is_err());
    }

    #[test]
    fn iceberg_s_history_settings_only_keep_more_and_gc_turns_expiry_off() {
        let p = parse(&[
            ("snapshot.keep.duration", "1h"),
            ("history.expire.max-snapshot-age-ms", "7200000"),
            ("snapshot.keep.min-count", "3"),
            ("history.expire.min-snapshots-to-keep", "2"),
        ])
        .unwrap();
        assert_eq!((p.expire.keep, p.expire.min_count), (Duration::from_secs(7200), 3));
        assert!(!parse(&[("gc.enabled", "false")]).unwrap().expire.enabled);
        assert!(!parse(&[("table-expire.enabled", "FALSE")]).unwrap().expire.enabled);
    }

    #[test]
    fn the_last_commit_is_kept_only_for_data_expiration_from_it() {
        assert!(!parse(&[]).unwrap().data_expire_from_last_commit);
        assert!(parse(&[("data-expire.enabled", "true")]).unwrap().data_expire_from_last_commit);
        let now = parse(&[("data-expire.enabled", "true"), ("data-expire.base-on-rule", "CURRENT_TIME")]).unwrap();
        assert!(!now.data_expire_from_last_commit);
    }

    #[test]
    fn a_bad_value_names_its_property() {
        let error = parse(&[("snapshot.keep.duration", "abc")]).unwrap_err().to_string();
        assert!(error.contains("snapshot.keep.duration=\"abc\" is not a duration"), "{error}");
        assert!(parse(&[("snapshot.keep.min-count", "-1")]).is_err());
    }
}
