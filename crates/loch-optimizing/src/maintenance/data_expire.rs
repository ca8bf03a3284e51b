//! Data expiration (Amoro's `expire-data`): rows whose time column (`data-expire.field`) is
//! older than `data-expire.retention-time` leave the table, counted back from the last commit
//! of a writer other than Loch (`LAST_COMMIT_TIME`, so a table nobody writes to keeps its data)
//! or from now (`CURRENT_TIME`).
//!
//! Column bounds decide most files without reading them: a file whose every value expired goes
//! whole, a file whose smallest value is young stays. At `file` level a file straddling the
//! line is read and its expired rows get position deletes, so no expired row stays visible; at
//! `partition` level (the default) a partition goes only when every data file in it expired,
//! and nothing else changes. Delete files left applying to nothing go in the same snapshot
//! (`operation=delete`, `snapshot.producer=DATA_EXPIRATION`). Null times never expire.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type, TimestampMicrosecondType, TimestampNanosecondType};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use chrono::{NaiveDate, NaiveDateTime};
use futures::TryStreamExt;
use iceberg::spec::{DataContentType, Datum, Operation, PrimitiveLiteral, PrimitiveType, TableMetadataRef, Type};
use loch_catalog::{CatalogService, TableChange};
use loch_table::position_delete::write_position_deletes;
use loch_table::scan::{LiveFile, live_files, read_task, whole_file_task};
use loch_table::snapshot::{RewriteFiles, SnapshotAction};

use crate::committer::discard_written;
use crate::error::{OptimizingError, Result};
use crate::maintenance::MaintenanceSummary;
use crate::maintenance::dangling::dangling;
use crate::maintenance::expire::OWN_PRODUCERS;
use crate::properties::{Props, merge};
use crate::table::ManagedTable;

/// Snapshot producer of the expiration commit.
pub const PRODUCER: &str = "DATA_EXPIRATION";

const DAY_MS: i64 = 86_400_000;

/// What goes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Whole partitions, once every data file in one expired.
    Partition,
    /// Files, and the expired rows of files straddling the line.
    File,
}

/// What the retention counts back from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// The newest snapshot a writer other than Loch committed.
    LastCommitTime,
    /// The time of the run.
    CurrentTime,
}

/// A table's data-expiration properties (Amoro's names and defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataExpireProperties {
    /// `data-expire.enabled` (false), and `gc.enabled`.
    pub enabled: bool,
    /// `data-expire.level` (partition).
    pub level: Level,
    /// `data-expire.field`: the time column (required when enabled).
    pub field: String,
    /// `data-expire.retention-time` (required when enabled, above zero).
    pub retention: Duration,
    /// `data-expire.datetime-string-pattern` (`yyyy-MM-dd`), for string columns; read in UTC.
    pub string_pattern: String,
    /// `data-expire.datetime-number-format` (`TIMESTAMP_MS`, or `TIMESTAMP_S`), for long
    /// columns; `data-expire.numeric-time-unit` (`ms`, `s`) is read as well.
    pub seconds: bool,
    /// `data-expire.base-on-rule` (`LAST_COMMIT_TIME`).
    pub base: Base,
}

impl DataExpireProperties {
    /// Parses the properties; a missing field or retention on an enabled table is an error.
    pub fn parse(props: &HashMap<&str, &str>) -> Result<Self> {
        let p = Props(props);
        let bad = |key: &str, value: &str, expected: &str| {
            OptimizingError::InvalidProperty(format!("{key}={value:?} is not {expected}"))
        };
        let enabled = p.bool("gc.enabled", true)? && p.bool("data-expire.enabled", false)?;
        let level = match p.get("data-expire.level") {
            None => Level::Partition,
            Some(v) if v.eq_ignore_ascii_case("partition") => Level::Partition,
            Some(v) if v.eq_ignore_ascii_case("file") => Level::File,
            Some(v) => return Err(bad("data-expire.level", v, "partition or file")),
        };
        let seconds = match (p.get("data-expire.datetime-number-format"), p.get("data-expire.numeric-time-unit")) {
            (Some(v), _) | (None, Some(v))
                if ["TIMESTAMP_S", "s", "seconds"].iter().any(|s| v.eq_ignore_ascii_case(s)) =>
            {
                true
            }
            (Some(v), _) | (None, Some(v))
                if ["TIMESTAMP_MS", "ms", "milliseconds"].iter().any(|s| v.eq_ignore_ascii_case(s)) =>
            {
                false
            }
            (None, None) => false,
            (Some(v), _) => return Err(bad("data-expire.datetime-number-format", v, "TIMESTAMP_MS or TIMESTAMP_S")),
            (None, Some(v)) => return Err(bad("data-expire.numeric-time-unit", v, "ms or s")),
        };
        let base = match p.get("data-expire.base-on-rule") {
            None => Base::LastCommitTime,
            Some(v) if v.eq_ignore_ascii_case("LAST_COMMIT_TIME") => Base::LastCommitTime,
            Some(v) if v.eq_ignore_ascii_case("CURRENT_TIME") => Base::CurrentTime,
            Some(v) => return Err(bad("data-expire.base-on-rule", v, "LAST_COMMIT_TIME or CURRENT_TIME")),
        };
        let string_pattern = p.get("data-expire.datetime-string-pattern").unwrap_or("yyyy-MM-dd").to_string();
        StringTimes::new(&string_pattern)?;
        let field = p.get("data-expire.field").unwrap_or_default().trim().to_string();
        let retention = p.duration("data-expire.retention-time", Duration::ZERO)?;
        if enabled && field.is_empty() {
            return Err(OptimizingError::InvalidProperty(
                "data-expire.field must name the time column when data-expire.enabled is true".into(),
            ));
        }
        if enabled && retention.is_zero() {
            return Err(OptimizingError::InvalidProperty(
                "data-expire.retention-time must be a duration above zero (e.g. 7d) when data-expire.enabled is true"
                    .into(),
            ));
        }
        Ok(Self { enabled, level, field, retention, string_pattern, seconds, base })
    }
}

/// Strings holding times in a Java date pattern (`yyyy-MM-dd`, `yyyy-MM-dd HH:mm:ss`, ...).
#[derive(Debug, Clone)]
struct StringTimes {
    /// The pattern in chrono's syntax.
    format: String,
    /// The pattern names a day, not an instant: a value stands for the whole day.
    date_only: bool,
    /// Ordering the strings orders the times (fields from years down, fixed widths), so column
    /// bounds can be trusted.
    ordered: bool,
    /// Minutes and seconds a pattern leaves out, added to each value before parsing (chrono
    /// needs them).
    missing: String,
}

impl StringTimes {
    fn new(pattern: &str) -> Result<Self> {
        let invalid = |why: &str| {
            OptimizingError::InvalidProperty(format!("data-expire.datetime-string-pattern={pattern:?}: {why}"))
        };
        let mut format = String::new();
        let mut letters = String::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        let literal = |format: &mut String, c: char| {
            if c == '%' {
                format.push_str("%%");
            } else {
                format.push(c);
            }
        };
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                let end = chars[i + 1..].iter().position(|&q| q == '\'').ok_or_else(|| invalid("unclosed quote"))?;
                chars[i + 1..i + 1 + end].iter().for_each(|&q| literal(&mut format, q));
                i += end + 2;
                continue;
            }
            let run = chars[i..].iter().take_while(|&&r| r == c).count();
            if c.is_ascii_alphabetic() {
                let spec = match (c, run) {
                    ('y', 4) => "%Y",
                    ('M', 2) => "%m",
                    ('d', 2) => "%d",
                    ('H', 2) => "%H",
                    ('m', 2) => "%M",
                    ('s', 2) => "%S",
                    ('S', 3) => "%3f",
                    _ => return Err(invalid("use yyyy, MM, dd, HH, mm, ss, SSS and 'quoted text'")),
                };
                letters.push(c);
                format.push_str(spec);
            } else {
                (0..run).for_each(|_| literal(&mut format, c));
            }
            i += run;
        }
        if !letters.starts_with("yMd") {
            return Err(invalid("a pattern needs yyyy, MM and dd, in that order"));
        }
        let ordered = "yMdHmsS".starts_with(&letters);
        let mut missing = String::new();
        for (letter, spec) in [('m', "%M"), ('s', "%S")] {
            if letters.contains('H') && !letters.contains(letter) {
                format.push_str(&format!("|{spec}"));
                missing.push_str("|00");
            }
        }
        Ok(Self { format, date_only: letters == "yMd", ordered, missing })
    }

    /// The value's time: its day's start (date patterns) or its instant, ms since the epoch, UTC.
    /// Only values written exactly as the pattern writes them count (`2024-9-01` is no
    /// `yyyy-MM-dd` time: it would break the order column bounds rely on).
    fn parse(&self, value: &str) -> Option<i64> {
        if self.date_only {
            let date = NaiveDate::parse_from_str(value, &self.format).ok()?;
            (date.format(&self.format).to_string() == value).then_some(())?;
            Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
        } else {
            let value = format!("{value}{}", self.missing);
            let at = NaiveDateTime::parse_from_str(&value, &self.format).ok()?;
            (at.format(&self.format).to_string() == value).then_some(())?;
            Some(at.and_utc().timestamp_millis())
        }
    }
}

/// The line: which values of the column expired.
#[derive(Debug, Clone)]
enum Cutoff {
    /// Integer values below `bound` expired (µs, ns, ms or s since the epoch, or days when
    /// `days`, whose bounds are ints).
    Below { bound: i64, days: bool },
    /// Strings whose time lies before `expire_ms` expired (for dates: the whole day).
    Strings { times: StringTimes, expire_ms: i64 },
}

impl Cutoff {
    /// The cutoff for a column of type `ty`, rows older than `expire_ms` expiring.
    fn new(ty: &PrimitiveType, props: &DataExpireProperties, expire_ms: i64) -> Result<Self> {
        let scaled =
            |factor: i64| expire_ms.checked_mul(factor).unwrap_or(if expire_ms < 0 { i64::MIN } else { i64::MAX });
        Ok(match ty {
            PrimitiveType::Timestamp | PrimitiveType::Timestamptz => {
                Cutoff::Below { bound: scaled(1_000), days: false }
            }
            PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs => {
                Cutoff::Below { bound: scaled(1_000_000), days: false }
            }
            // v s expired when v * 1000 < expire_ms, i.e. v < ceil(expire_ms / 1000).
            PrimitiveType::Long if props.seconds => {
                Cutoff::Below { bound: expire_ms.saturating_add(999).div_euclid(1_000), days: false }
            }
            PrimitiveType::Long => Cutoff::Below { bound: expire_ms, days: false },
            // A day expired when all of it lies before the line.
            PrimitiveType::Date => Cutoff::Below { bound: expire_ms.div_euclid(DAY_MS), days: true },
            PrimitiveType::String => Cutoff::Strings { times: StringTimes::new(&props.string_pattern)?, expire_ms },
            other => {
                return Err(OptimizingError::InvalidProperty(format!(
                    "data-expire.field {:?} has type {other}; expected timestamp, timestamptz, long, string or date",
                    props.field
                )));
            }
        })
    }

    fn int_expired(&self, v: i64) -> bool {
        matches!(self, Cutoff::Below { bound, .. } if v < *bound)
    }

    /// `Some(expired)` for a string whose time parses.
    fn string_expired(&self, v: &str) -> Option<bool> {
        let Cutoff::Strings { times, expire_ms } = self else { return None };
        let at = times.parse(v)?;
        Some(if times.date_only { at.saturating_add(DAY_MS) <= *expire_ms } else { at < *expire_ms })
    }

    /// Whether a column bound expired; `None` when the bound cannot be read as a time (or the
    /// strings' order is not the times' order).
    fn bound_expired(&self, bound: &Datum) -> Option<bool> {
        match (self, bound.literal()) {
            // A bound of another width (a column promoted since the file was written) is no time.
            (Cutoff::Below { days: false, .. }, PrimitiveLiteral::Long(v)) => Some(self.int_expired(*v)),
            (Cutoff::Below { days: true, .. }, PrimitiveLiteral::Int(v)) => Some(self.int_expired(i64::from(*v))),
            (Cutoff::Strings { times, .. }, PrimitiveLiteral::String(s)) if times.ordered => self.string_expired(s),
            _ => None,
        }
    }

    /// Positions of the expired values of `column` (an Arrow array of the field), numbered from
    /// `first`.
    fn expired_positions(&self, column: &ArrayRef, first: i64, out: &mut Vec<i64>) -> Result<()> {
        let unsupported =
            || OptimizingError::Corrupt(format!("the time column reads as {}, not a time", column.data_type()));
        let mut push = |i: usize, expired: bool| {
            if expired && column.is_valid(i) {
                out.push(first + i as i64);
            }
        };
        match column.data_type() {
            DataType::Timestamp(TimeUnit::Microsecond, _) => {
                let values = column.as_primitive::<TimestampMicrosecondType>();
                (0..values.len()).for_each(|i| push(i, self.int_expired(values.value(i))));
            }
            DataType::Timestamp(TimeUnit::Nanosecond, _) => {
                let values = column.as_primitive::<TimestampNanosecondType>();
                (0..values.len()).for_each(|i| push(i, self.int_expired(values.value(i))));
            }
            DataType::Int64 => {
                let values = column.as_primitive::<Int64Type>();
                (0..values.len()).for_each(|i| push(i, self.int_expired(values.value(i))));
            }
            DataType::Date32 => {
                let values = column.as_primitive::<Date32Type>();
                (0..values.len()).for_each(|i| push(i, self.int_expired(i64::from(values.value(i)))));
            }
            DataType::Utf8 => {
                let values = column.as_string::<i32>();
                (0..values.len()).for_each(|i| push(i, self.string_expired(values.value(i)) == Some(true)));
            }
            DataType::LargeUtf8 => {
                let values = column.as_string::<i64>();
                (0..values.len()).for_each(|i| push(i, self.string_expired(values.value(i)) == Some(true)));
            }
            DataType::Utf8View => {
                let values = column.as_string_view();
                (0..values.len()).for_each(|i| push(i, self.string_expired(values.value(i)) == Some(true)));
            }
            _ => return Err(unsupported()),
        }
        Ok(())
    }
}

/// How much of a data file expired.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expiry {
    /// Every row.
    All,
    /// No row.
    Nothing,
    /// These rows (positions, ascending), some but not all.
    Rows(Vec<i64>),
}

/// What the bounds say of a file; `None` when only reading it can tell.
fn by_bounds(file: &LiveFile, field_id: i32, cutoff: &Cutoff) -> Option<Expiry> {
    let f = &file.file;
    let nulls = f.null_value_counts().get(&field_id).copied();
    if nulls == Some(f.record_count()) {
        return Some(Expiry::Nothing);
    }
    if let Some(false) = f.lower_bounds().get(&field_id).and_then(|b| cutoff.bound_expired(b)) {
        return Some(Expiry::Nothing);
    }
    // A string column may hold values that are no time (never expiring) anywhere between its
    // bounds: only reading its rows can tell that all of them expired.
    let strings = matches!(cutoff, Cutoff::Strings { .. });
    if nulls == Some(0)
        && !strings
        && f.upper_bounds().get(&field_id).and_then(|b| cutoff.bound_expired(b)) == Some(true)
    {
        return Some(Expiry::All);
    }
    None
}

/// Reads the time column of `file` and finds its expired rows.
async fn by_rows(table: &ManagedTable, file: &LiveFile, field_id: i32, cutoff: &Cutoff) -> Result<Expiry> {
    let metadata = table.table.metadata();
    let task = whole_file_task(file, metadata, metadata.current_schema().clone(), vec![field_id]);
    let batches = read_task(table.table.file_io(), task).await?;
    let mut positions = Vec::new();
    let mut rows: i64 = 0;
    for batch in batches {
        if batch.num_columns() != 1 {
            return Err(OptimizingError::Corrupt(format!("reading the time column of {} failed", file.path())));
        }
        cutoff.expired_positions(batch.column(0), rows, &mut positions)?;
        rows += batch.num_rows() as i64;
    }
    Ok(match positions.len() {
        0 => Expiry::Nothing,
        n if n as i64 == rows => Expiry::All,
        _ => Expiry::Rows(positions),
    })
}

/// The time the retention counts back from; `None` when no writer but Loch ever committed.
fn base_ms(metadata: &TableMetadataRef, base: Base, now_ms: i64) -> Option<i64> {
    match base {
        Base::CurrentTime => Some(now_ms),
        Base::LastCommitTime => metadata
            .snapshots()
            .filter(|s| {
                let producer = s.summary().additional_properties.get("snapshot.producer");
                !producer.is_some_and(|p| OWN_PRODUCERS.contains(&p.as_str()))
            })
            .map(|s| s.timestamp_ms())
            .max(),
    }
}

/// Expires the data of table `table_id` as its properties say, at time `now_ms`; with
/// `dry_run`, reports what would go and changes nothing. Planning (which may read files) runs
/// without the table's commit lock; the commit validates against what landed meanwhile.
pub async fn expire_data(
    catalogs: &CatalogService,
    table_id: i64,
    now_ms: i64,
    dry_run: bool,
) -> Result<MaintenanceSummary> {
    let table = ManagedTable::load(catalogs, table_id)
        .await?
        .ok_or_else(|| OptimizingError::NotFound(format!("table {table_id}")))?;
    let metadata = table.table.metadata_ref();
    let props = DataExpireProperties::parse(&merge(&table.catalog.record.properties, metadata.properties()))?;
    let mut summary = MaintenanceSummary { dry_run, ..MaintenanceSummary::default() };
    if !props.enabled {
        summary.skipped = Some("data expiration is off (data-expire.enabled is false or gc.enabled is false)".into());
        return Ok(summary);
    }
    // A store alone cannot expire rows: a change store's delete rows are data files.
    if loch_table::mixed::properties::store_of(metadata.properties()).is_some() {
        summary.skipped =
            Some("this is a store of a Mixed-Iceberg (primary-key) table; its data cannot expire alone".into());
        return Ok(summary);
    }
    let schema = metadata.current_schema();
    let field = schema.field_by_name(&props.field).ok_or_else(|| {
        OptimizingError::InvalidProperty(format!("data-expire.field {:?} is not a column of the table", props.field))
    })?;
    let Type::Primitive(ty) = field.field_type.as_ref() else {
        return Err(OptimizingError::InvalidProperty(format!(
            "data-expire.field {:?} is not a time column",
            props.field
        )));
    };
    let Some(base) = base_ms(&metadata, props.base, now_ms) else {
        summary.skipped = Some("no writer has committed yet; LAST_COMMIT_TIME has nothing to count from".into());
        return Ok(summary);
    };
    let retention = i64::try_from(props.retention.as_millis()).unwrap_or(i64::MAX);
    let expire_ms = base.saturating_sub(retention);
    summary.older_than_ms = expire_ms;
    let cutoff = Cutoff::new(ty, &props, expire_ms)?;
    let Some(head) = metadata.current_snapshot().cloned() else { return Ok(summary) };
    let files: Vec<LiveFile> =
        live_files(table.table.file_io().clone(), metadata.clone(), head.clone()).try_collect().await?;

    // Each data file's expiry, by bounds where they tell.
    let mut expiries: Vec<(usize, Expiry)> = Vec::new();
    for (i, file) in files.iter().enumerate().filter(|(_, f)| f.content() == DataContentType::Data) {
        let expiry = match by_bounds(file, field.id, &cutoff) {
            Some(expiry) => expiry,
            None => by_rows(&table, file, field.id, &cutoff).await?,
        };
        expiries.push((i, expiry));
    }
    let (removed, straddling): (HashSet<usize>, Vec<(usize, Vec<i64>)>) = match props.level {
        Level::File => {
            let removed = expiries.iter().filter(|(_, e)| *e == Expiry::All).map(|(i, _)| *i).collect();
            let straddling = expiries
                .into_iter()
                .filter_map(|(i, e)| match e {
                    Expiry::Rows(positions) => Some((i, positions)),
                    _ => None,
                })
                .collect();
            (removed, straddling)
        }
        Level::Partition => {
            let mut partitions: BTreeMap<String, (bool, Vec<usize>)> = BTreeMap::new();
            for (i, expiry) in &expiries {
                let file = &files[*i];
                let key = format!("{}/{:?}", file.spec_id, file.file.partition());
                let entry = partitions.entry(key).or_insert((true, Vec::new()));
                entry.0 &= *expiry == Expiry::All;
                entry.1.push(*i);
            }
            let removed = partitions.into_values().filter(|(all, _)| *all).flat_map(|(_, files)| files).collect();
            (removed, Vec::new())
        }
    };
    if removed.is_empty() && straddling.is_empty() {
        return Ok(summary);
    }
    let remaining: Vec<LiveFile> =
        files.iter().enumerate().filter(|(i, _)| !removed.contains(i)).map(|(_, f)| f.clone()).collect();
    let dangling_deletes: Vec<LiveFile> = dangling(&remaining).into_iter().cloned().collect();
    let mut removed: Vec<usize> = removed.into_iter().collect();
    removed.sort_unstable();
    let removed_data: Vec<&LiveFile> = removed.iter().map(|&i| &files[i]).collect();
    summary.rows_expired = removed_data.iter().map(|f| f.file.record_count()).sum::<u64>()
        + straddling.iter().map(|(_, p)| p.len() as u64).sum::<u64>();
    summary.content_files = removed_data.len() + dangling_deletes.len();
    let gone = || removed_data.iter().copied().chain(&dangling_deletes);
    summary.bytes = gone().map(|f| f.file.file_size_in_bytes()).sum();
    summary.paths = gone().take(1_000).map(|f| f.path().to_string()).collect();
    if dry_run {
        return Ok(summary);
    }

    let mut rewrite = RewriteFiles::new(head.snapshot_id())
        .with_operation(Operation::Delete)
        .set_property("snapshot.producer", PRODUCER);
    for file in removed_data {
        rewrite = rewrite.rewrite_data_file(file.clone());
    }
    for file in dangling_deletes {
        rewrite = rewrite.remove_delete_file(file);
    }
    let io = table.table.file_io();
    let mut written = Vec::new();
    for (i, positions) in &straddling {
        let data = &files[*i];
        let file =
            write_position_deletes(io, data.path(), positions, data.file.partition().clone(), data.spec_id).await?;
        written.push(file.file_path().to_string());
        rewrite = rewrite.add_delete_file_in_spec(file, data.spec_id);
    }
    let (lock, current) = ManagedTable::load_locked(catalogs, table_id).await?;
    let pending = match rewrite.prepare(&current.table).await {
        Ok(pending) => pending,
        Err(e) => {
            for path in &written {
                let _ = io.delete(path).await;
            }
            return Err(e.into());
        }
    };
    let change =
        TableChange { ident: current.name.clone(), requirements: pending.requirements, updates: pending.updates };
    if let Err(e) = catalogs.commit_table_locked(&lock, &current.catalog, change).await {
        written.extend(pending.written_files);
        discard_written(io, &written, &e).await;
        return Err(e.into());
    }
    tracing::info!(
        table = %table.display_name(),
        rows = summary.rows_expired,
        files = summary.content_files,
        straddling = straddling.len(),
        "data expired"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<DataExpireProperties> {
        DataExpireProperties::parse(&pairs.iter().copied().collect())
    }

    #[test]
    fn properties_follow_amoro_and_refuse_what_cannot_work() {
        let p = parse(&[]).unwrap();
        assert!(!p.enabled);
        assert_eq!((p.level, p.base, p.seconds), (Level::Partition, Base::LastCommitTime, false));
        assert_eq!(p.string_pattern, "yyyy-MM-dd");
        let on = [("data-expire.enabled", "true"), ("data-expire.field", "ts"), ("data-expire.retention-time", "7d")];
        let p = parse(&on).unwrap();
        assert!(p.enabled);
        assert_eq!(p.retention, Duration::from_secs(7 * 86_400));
        let error = parse(&on[..2]).unwrap_err().to_string();
        assert!(error.contains("data-expire.retention-time"), "{error}");
        let error = parse(&[on[0], on[2]]).unwrap_err().to_string();
        assert!(error.contains("data-expire.field"), "{error}");
        assert!(parse(&[("data-expire.level", "row")]).is_err());
        assert!(parse(&[("data-expire.base-on-rule", "YESTERDAY")]).is_err());
        assert!(parse(&[("data-expire.datetime-number-format", "TIMESTAMP_S")]).unwrap().seconds);
        assert!(parse(&[("data-expire.numeric-time-unit", "s")]).unwrap().seconds);
        assert!(parse(&[("data-expire.datetime-string-pattern", "yyyy-MM-dd EEE")]).is_err());
        assert!(!parse(&[("gc.enabled", "false"), on[0], on[1], on[2]]).unwrap().enabled);
    }

    #[test]
    fn string_patterns_read_as_java_writes_them() {
        let day = StringTimes::new("yyyy-MM-dd").unwrap();
        assert!(day.date_only && day.ordered);
        assert_eq!(day.parse("1970-01-02"), Some(DAY_MS));
        assert_eq!(day.parse("1970-01-0"), None, "a truncated bound is no time");
        let second = StringTimes::new("yyyy-MM-dd HH:mm:ss").unwrap();
        assert_eq!(second.parse("1970-01-01 00:01:00"), Some(60_000));
        let quoted = StringTimes::new("yyyyMMdd'T'HH").unwrap();
        assert_eq!(quoted.parse("19700101T01"), Some(3_600_000));
        assert!(!StringTimes::new("dd/MM/yyyy").is_ok_and(|t| t.ordered), "needs years first");
        assert_eq!(day.parse("1970-1-02"), None, "unpadded values would break the order");
        assert_eq!(day.parse("1970-01-02 trailing"), None);
    }

    #[test]
    fn cutoffs_expire_only_wholly_older_values() {
        let props = parse(&[]).unwrap();
        let expire_ms = 10 * DAY_MS + 1_500;
        let ts = Cutoff::new(&PrimitiveType::Timestamp, &props, expire_ms).unwrap();
        assert!(ts.int_expired(expire_ms * 1_000 - 1) && !ts.int_expired(expire_ms * 1_000));
        let ms = Cutoff::new(&PrimitiveType::Long, &props, expire_ms).unwrap();
        assert!(ms.int_expired(expire_ms - 1) && !ms.int_expired(expire_ms));
        let seconds = DataExpireProperties { seconds: true, ..props.clone() };
        let s = Cutoff::new(&PrimitiveType::Long, &seconds, expire_ms).unwrap();
        assert!(s.int_expired(expire_ms / 1_000), "10d+1s began before the line");
        assert!(!s.int_expired(expire_ms / 1_000 + 1));
        let date = Cutoff::new(&PrimitiveType::Date, &props, expire_ms).unwrap();
        assert!(date.int_expired(9) && !date.int_expired(10), "day 10 is partly after the line");
        let string = Cutoff::new(&PrimitiveType::String, &props, expire_ms).unwrap();
        assert_eq!(string.string_expired("1970-01-10"), Some(true));
        assert_eq!(string.string_expired("1970-01-11"), Some(false));
        assert_eq!(string.string_expired("someday"), None);
        assert!(Cutoff::new(&PrimitiveType::Int, &props, expire_ms).is_err());
    }
}
