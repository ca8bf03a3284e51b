//! Self-optimizing table properties (`self-optimizing.*`, Amoro's names and defaults) and
//! optimizer-group properties, parsed once into typed structs.
//!
//! A table's effective properties are its catalog's `table.*` defaults overlaid by its own.

use std::collections::{BTreeMap, HashMap};

use crate::error::{OptimizingError, Result};

/// Properties of one table that steer its self-optimizing.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizingProperties {
    /// `self-optimizing.enabled` (true).
    pub enabled: bool,
    /// `self-optimizing.group` (`default`).
    pub group: String,
    /// `self-optimizing.quota` (0.5): > 1 is a thread count, otherwise a share of the group.
    pub quota: f64,
    /// `self-optimizing.execute.num-retries` (5).
    pub execute_retries: u32,
    /// `self-optimizing.target-size` (128 MiB).
    pub target_size: u64,
    /// `self-optimizing.max-task-size-bytes` (128 MiB).
    pub max_task_size: u64,
    /// `self-optimizing.max-file-count` (10000): most input files in one process.
    pub max_file_count: usize,
    /// `self-optimizing.fragment-ratio` (8).
    pub fragment_ratio: u64,
    /// `self-optimizing.min-target-size-ratio` (0.75).
    pub min_target_size_ratio: f64,
    /// `self-optimizing.minor.trigger.file-count` (12).
    pub minor_trigger_file_count: usize,
    /// `self-optimizing.minor.trigger.interval` in ms (3600000).
    pub minor_trigger_interval_ms: i64,
    /// `self-optimizing.major.trigger.duplicate-ratio` (0.1).
    pub major_duplicate_ratio: f64,
    /// `self-optimizing.full.trigger.interval` in ms (-1: off).
    pub full_trigger_interval_ms: i64,
    /// `self-optimizing.full.rewrite-all-files` (true).
    pub full_rewrite_all_files: bool,
    /// `self-optimizing.min-plan-interval` in ms (60000).
    pub min_plan_interval_ms: i64,
    /// `read.split.open-file-cost` (4 MiB), the per-file cost in planning.
    pub open_file_cost: u64,
    /// `self-optimizing.rewrite.use-parquet-row-group-merge.enabled` (false): tasks copy large
    /// row groups undecoded (checked here so a bad value blocks planning; the executor decides).
    pub row_group_merge: bool,
    /// `self-optimizing.rewrite.use-parquet-row-group-merge.min-avg-row-group-size-bytes` (8 MiB).
    pub row_group_merge_min_avg_size: u64,
}

impl Default for OptimizingProperties {
    fn default() -> Self {
        Self {
            enabled: true,
            group: "default".into(),
            quota: 0.5,
            execute_retries: 5,
            target_size: 128 << 20,
            max_task_size: 128 << 20,
            max_file_count: 10_000,
            fragment_ratio: 8,
            min_target_size_ratio: 0.75,
            minor_trigger_file_count: 12,
            minor_trigger_interval_ms: 3_600_000,
            major_duplicate_ratio: 0.1,
            full_trigger_interval_ms: -1,
            full_rewrite_all_files: true,
            min_plan_interval_ms: 60_000,
            open_file_cost: 4 << 20,
            row_group_merge: false,
            row_group_merge_min_avg_size: 8 << 20,
        }
    }
}

impl OptimizingProperties {
    /// Effective properties of a table: catalog `table.*` defaults, then the table's own.
    pub fn resolve(catalog: &BTreeMap<String, String>, table: &HashMap<String, String>) -> Result<Self> {
        Self::parse(&merge(catalog, table))
    }

    /// Parses properties; invalid values are errors (they would otherwise silently misbehave).
    pub fn parse(props: &HashMap<&str, &str>) -> Result<Self> {
        let d = Self::default();
        let p = Props(props);
        let parsed = Self {
            enabled: p.bool("self-optimizing.enabled", d.enabled)?,
            group: p.get("self-optimizing.group").map_or(d.group, str::to_string),
            quota: p.num("self-optimizing.quota", d.quota)?,
            execute_retries: p.num("self-optimizing.execute.num-retries", d.execute_retries)?,
            target_size: p.num("self-optimizing.target-size", d.target_size)?,
            max_task_size: p.num("self-optimizing.max-task-size-bytes", d.max_task_size)?,
            max_file_count: p.num("self-optimizing.max-file-count", d.max_file_count)?,
            fragment_ratio: p.num("self-optimizing.fragment-ratio", d.fragment_ratio)?,
            min_target_size_ratio: p.num("self-optimizing.min-target-size-ratio", d.min_target_size_ratio)?,
            minor_trigger_file_count: p.num("self-optimizing.minor.trigger.file-count", d.minor_trigger_file_count)?,
            minor_trigger_interval_ms: p.num("self-optimizing.minor.trigger.interval", d.minor_trigger_interval_ms)?,
            major_duplicate_ratio: p.num("self-optimizing.major.trigger.duplicate-ratio", d.major_duplicate_ratio)?,
            full_trigger_interval_ms: p.num("self-optimizing.full.trigger.interval", d.full_trigger_interval_ms)?,
            full_rewrite_all_files: p.bool("self-optimizing.full.rewrite-all-files", d.full_rewrite_all_files)?,
            min_plan_interval_ms: p.num("self-optimizing.min-plan-interval", d.min_plan_interval_ms)?,
            open_file_cost: p.num("read.split.open-file-cost", d.open_file_cost)?,
            row_group_merge: p
                .bool("self-optimizing.rewrite.use-parquet-row-group-merge.enabled", d.row_group_merge)?,
            row_group_merge_min_avg_size: p.num(
                "self-optimizing.rewrite.use-parquet-row-group-merge.min-avg-row-group-size-bytes",
                d.row_group_merge_min_avg_size,
            )?,
        };
        if parsed.fragment_ratio == 0 || parsed.target_size == 0 || parsed.quota <= 0.0 {
            return Err(OptimizingError::InvalidProperty(
                "self-optimizing.fragment-ratio, target-size and quota must be positive".into(),
            ));
        }
        Ok(parsed)
    }

    /// Files up to this size are fragments.
    pub fn fragment_size(&self) -> u64 {
        self.target_size / self.fragment_ratio
    }

    /// Files up to this size (and above a fragment) are undersized segments.
    pub fn min_target_size(&self) -> u64 {
        (self.target_size as f64 * self.min_target_size_ratio) as u64
    }

    /// Size of a task's bin.
    pub fn bin_size(&self) -> u64 {
        self.target_size.max(self.max_task_size)
    }

    /// Most optimizer threads the table may hold in a group of `group_threads`.
    pub fn quota_threads(&self, group_threads: usize) -> usize {
        if self.quota > 1.0 {
            self.quota as usize
        } else {
            ((self.quota * group_threads as f64).ceil() as usize).max(1)
        }
    }
}

/// Properties of an optimizer group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupProperties {
    /// `scheduling-policy`: `quota` (default) or `balanced`.
    pub policy: SchedulingPolicy,
    /// `max-input-file-size-per-thread` (512 MiB): bounds one plan's input with the group's threads.
    pub max_input_per_thread: u64,
}

/// How a group picks the next table to plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulingPolicy {
    /// Least quota occupation (execution time over the last hour / quota) first.
    Quota,
    /// Least recently optimized first.
    Balanced,
}

impl GroupProperties {
    /// Parses group properties.
    pub fn parse(props: &BTreeMap<String, String>) -> Result<Self> {
        let map: HashMap<&str, &str> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let p = Props(&map);
        let policy = match p.get("scheduling-policy").unwrap_or("quota") {
            "quota" => SchedulingPolicy::Quota,
            "balanced" => SchedulingPolicy::Balanced,
            other => {
                return Err(OptimizingError::InvalidProperty(format!(
                    "scheduling-policy must be quota or balanced, not {other:?}"
                )));
            }
        };
        Ok(Self { policy, max_input_per_thread: p.num("max-input-file-size-per-thread", 512u64 << 20)? })
    }
}

/// A table's effective properties: its catalog's `table.*` defaults, then its own.
pub(crate) fn merge<'a>(
    catalog: &'a BTreeMap<String, String>,
    table: &'a HashMap<String, String>,
) -> HashMap<&'a str, &'a str> {
    let mut merged: HashMap<&str, &str> =
        catalog.iter().filter_map(|(k, v)| Some((k.strip_prefix("table.")?, v.as_str()))).collect();
    merged.extend(table.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    merged
}

/// Typed reads of a property map; a value that does not parse is an error naming the key.
pub(crate) struct Props<'a>(pub &'a HashMap<&'a str, &'a str>);

impl Props<'_> {
    /// The raw value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).copied()
    }

    /// A duration with a unit (see [`crate::maintenance::duration`]).
    pub fn duration(&self, key: &str, default: std::time::Duration) -> Result<std::time::Duration> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => crate::maintenance::duration::parse_duration(v).ok_or_else(|| {
                OptimizingError::InvalidProperty(format!(
                    "{key}={v:?} is not a duration (a number with ms, s, min, h or d)"
                ))
            }),
        }
    }

    /// A duration whose bare number counts `unit`s (Amoro's `...-minutes`, `...-ms` properties);
    /// an explicit unit overrides it (`30s`).
    pub fn duration_in(
        &self,
        key: &str,
        unit: std::time::Duration,
        default: std::time::Duration,
    ) -> Result<std::time::Duration> {
        match self.get(key) {
            Some(v) if !v.trim().is_empty() && v.trim().bytes().all(|b| b.is_ascii_digit()) => {
                let n: u32 = v
                    .trim()
                    .parse()
                    .map_err(|_| OptimizingError::InvalidProperty(format!("{key}={v:?} is out of range")))?;
                unit.checked_mul(n)
                    .ok_or_else(|| OptimizingError::InvalidProperty(format!("{key}={v:?} is out of range")))
            }
            _ => self.duration(key, default),
        }
    }

    /// A number.
    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                v.trim().parse().map_err(|_| OptimizingError::InvalidProperty(format!("{key}={v:?} is not a number")))
            }
        }
    }

    /// `true` or `false` (any case).
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(OptimizingError::InvalidProperty(format!("{key}={v:?} is not true or false"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amoro_defaults() {
        let p = OptimizingProperties::resolve(&BTreeMap::new(), &HashMap::new()).unwrap();
        assert_eq!(p, OptimizingProperties::default());
        assert_eq!(p.fragment_size(), 16 << 20);
        assert_eq!(p.min_target_size(), 96 << 20);
        assert_eq!(p.quota_threads(4), 2);
        assert_eq!(p.quota_threads(1), 1);
    }

    #[test]
    fn table_overrides_catalog_defaults() {
        let catalog = BTreeMap::from([
            ("table.self-optimizing.group".to_string(), "g1".to_string()),
            ("table.self-optimizing.quota".to_string(), "3".to_string()),
            ("warehouse".to_string(), "file:///w".to_string()),
        ]);
        let table = HashMap::from([("self-optimizing.group".to_string(), "g2".to_string())]);
        let p = OptimizingProperties::resolve(&catalog, &table).unwrap();
        assert_eq!(p.group, "g2");
        assert_eq!(p.quota_threads(10), 3);
    }

    #[test]
    fn invalid_values_are_errors() {
        let bad = HashMap::from([("self-optimizing.target-size", "big")]);
        assert!(OptimizingProperties::parse(&bad).is_err());
        let bad = HashMap::from([("self-optimizing.enabled", "yes")]);
        assert!(OptimizingProperties::parse(&bad).is_err());
        assert!(GroupProperties::parse(&BTreeMap::from([("scheduling-policy".into(), "fifo".into())])).is_err());
    }
}
