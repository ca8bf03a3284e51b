//! Data expiration on real files, for every time type (timestamp, timestamptz, long in ms and
//! in s, date, string), both levels and both base rules. Each table has three partitions: one
//! wholly expired (with a position delete that then dangles), one with a file straddling the
//! line, one with a null time beside an old one. The rows left are compared with an oracle
//! written from the rows themselves.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use iceberg::spec::{
    DataContentType, NestedField, Operation, PrimitiveType, Schema, Struct, Transform, Type, UnboundPartitionSpec,
};
use loch_optimizing::maintenance::data_expire::expire_data;
use loch_table::position_delete::write_position_deletes;
use loch_table::snapshot::{RowDelta, SnapshotAction};
use loch_testkit::data::{arrow_schema, rows, scan_all, write_data_files};

use crate::common::Env;

const DAY: i64 = 86_400_000;
const RETENTION_DAYS: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Timestamp,
    Timestamptz,
    LongMs,
    LongS,
    Date,
    String,
}

impl Kind {
    fn iceberg(self) -> PrimitiveType {
        match self {
            Kind::Timestamp => PrimitiveType::Timestamp,
            Kind::Timestamptz => PrimitiveType::Timestamptz,
            Kind::LongMs | Kind::LongS => PrimitiveType::Long,
            Kind::Date => PrimitiveType::Date,
            Kind::String => PrimitiveType::String,
        }
    }

    fn column(self, times: &[Option<i64>]) -> ArrayRef {
        match self {
            Kind::Timestamp => {
                Arc::new(TimestampMicrosecondArray::from_iter(times.iter().map(|t| t.map(|t| t * 1000))))
            }
            Kind::Timestamptz => Arc::new(
                TimestampMicrosecondArray::from_iter(times.iter().map(|t| t.map(|t| t * 1000))).with_timezone("+00:00"),
            ),
            Kind::LongMs => Arc::new(Int64Array::from_iter(times.iter().copied())),
            Kind::LongS => Arc::new(Int64Array::from_iter(times.iter().map(|t| t.map(|t| t / 1000)))),
            Kind::Date => Arc::new(Date32Array::from_iter(times.iter().map(|t| t.map(|t| (t / DAY) as i32)))),
            Kind::String => Arc::new(StringArray::from_iter(times.iter().map(|t| {
                t.map(|t| chrono::DateTime::from_timestamp_millis(t).unwrap().format("%Y-%m-%d").to_string())
            }))),
        }
    }
}

fn schema(kind: Kind) -> Schema {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::required(2, "p", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(3, "t", Type::Primitive(kind.iceberg())).into(),
        ])
        .build()
        .unwrap()
}

/// A row: id, partition, time (ms) or null.
type Row = (i64, i64, Option<i64>);

/// The files written, each in one partition; times are days before `t0`.
fn files(t0: i64) -> Vec<Vec<Row>> {
    let ago = |d: i64| Some(t0 - d * DAY);
    vec![
        // Partition 0: wholly expired, two files.
        vec![(1, 0, ago(30)), (2, 0, ago(25))],
        vec![(3, 0, ago(40))],
        // Partition 1: a file straddling the line, and a young one.
        vec![(4, 1, ago(20)), (5, 1, ago(2)), (6, 1, ago(15))],
        vec![(7, 1, ago(1))],
        // Partition 2: an old row beside a null time, and a young file.
        vec![(8, 2, None), (9, 2, ago(40))],
        vec![(10, 2, ago(3))],
    ]
}

async fn load(env: &Env, kind: Kind, t0: i64) {
    let t = env.table().await;
    let mut delta = RowDelta::new();
    let mut first_of_p0 = None;
    for rows in files(t0) {
        let batch = RecordBatch::try_new(
            arrow_schema(&t.table),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
                kind.column(&rows.iter().map(|r| r.2).collect::<Vec<_>>()),
            ],
        )
        .unwrap();
        let written = write_data_files(&t.table, &batch).await.unwrap();
        assert_eq!(written.len(), 1);
        if rows[0].1 == 0 && first_of_p0.is_none() {
            first_of_p0 = Some(written[0].clone());
        }
        for f in written {
            delta = delta.add_rows(f);
        }
    }
    env.commit(delta.prepare(&t.table).await.unwrap()).await;
    // A position delete on partition 0 (row 2), which dangles once partition 0 is gone.
    let target = first_of_p0.unwrap();
    let t = env.table().await;
    let file = write_position_deletes(t.table.file_io(), target.file_path(), &[1], target.partition().clone(), 0)
        .await
        .unwrap();
    env.delete(vec![file]).await;
}

/// The ids an oracle keeps: rows whose time is null or not older than `expire_ms` (file
/// level), or every row of a partition holding one such row (partition level). Row 2 was
/// deleted before.
fn oracle(kind: Kind, t0: i64, expire_ms: i64, file_level: bool) -> BTreeSet<i64> {
    // Dates and date strings stand for whole days: a day expires once all of it is older.
    let expired = |t: i64| match kind {
        Kind::Date | Kind::String => t.div_euclid(DAY) * DAY + DAY <= expire_ms,
        Kind::LongS => t / 1000 * 1000 < expire_ms,
        _ => t < expire_ms,
    };
    let all: Vec<Row> = files(t0).into_iter().flatten().filter(|r| r.0 != 2).collect();
    let young = |r: &Row| r.2.is_none_or(|t| !expired(t));
    if file_level {
        all.iter().filter(|r| young(r)).map(|r| r.0).collect()
    } else {
        let kept: BTreeSet<i64> = all.iter().filter(|r| young(r)).map(|r| r.1).collect();
        all.iter().filter(|r| kept.contains(&r.1)).map(|r| r.0).collect()
    }
}

async fn ids(env: &Env) -> BTreeSet<i64> {
    rows(&scan_all(&env.table().await.table).await.unwrap()).iter().map(|r| r["id"].parse().unwrap()).collect()
}

async fn case(root: &Env, kind: Kind, file_level: bool, current_time: bool) {
    let name = format!("{kind:?}_{}_{}", if file_level { "file" } else { "partition" }, current_time).to_lowercase();
    let level = if file_level { "file" } else { "partition" };
    let base = if current_time { "CURRENT_TIME" } else { "LAST_COMMIT_TIME" };
    let retention = format!("{RETENTION_DAYS}d");
    let mut props = vec![
        ("data-expire.enabled", "true"),
        ("data-expire.field", "t"),
        ("data-expire.level", level),
        ("data-expire.retention-time", retention.as_str()),
        ("data-expire.base-on-rule", base),
    ];
    if kind == Kind::LongS {
        props.push(("data-expire.datetime-number-format", "TIMESTAMP_S"));
    }
    let spec = UnboundPartitionSpec::builder().add_partition_field(2, "p", Transform::Identity).unwrap().build();
    let env = root.custom_table(&name, schema(kind), Some(spec), &props).await;
    let t0 = loch_meta::now_ms();
    load(&env, kind, t0).await;
    let before = ids(&env).await;
    assert_eq!(before.len(), 9, "{name}");
    let last_commit = env.table().await.table.metadata().current_snapshot().unwrap().timestamp_ms();

    // LAST_COMMIT_TIME counts from the last commit however late the run; CURRENT_TIME from now.
    let now = if current_time { t0 } else { t0 + 100 * DAY };
    let expire_ms = if current_time { now } else { last_commit } - RETENTION_DAYS * DAY;
    // Loch's own commits come measurably later than the writer's.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let dry = expire_data(&env.catalogs, env.table_id, now, true).await.unwrap();
    assert_eq!(ids(&env).await, before, "a dry run changes nothing ({name})");
    let summary = expire_data(&env.catalogs, env.table_id, now, false).await.unwrap();
    assert_eq!((summary.content_files, summary.rows_expired), (dry.content_files, dry.rows_expired), "{name}");
    assert_eq!(summary.older_than_ms, expire_ms, "{name}");
    let expected = oracle(kind, t0, expire_ms, file_level);
    assert_eq!(ids(&env).await, expected, "{name}: {summary:?}");
    assert!(expected.len() < before.len(), "{name}: the case expires something");

    // Partition 0 is gone with its dangling position delete; the commit is a delete by Loch.
    let live = env.live_files().await;
    let p0 = Struct::from_iter([Some(iceberg::spec::Literal::long(0))]);
    assert!(live.iter().all(|f| *f.file.partition() != p0), "{name}: partition 0 is gone with its delete file");
    let t = env.table().await;
    let head = t.table.metadata().current_snapshot().unwrap().clone();
    assert_eq!(head.summary().operation, Operation::Delete, "{name}");
    assert_eq!(
        head.summary().additional_properties.get("snapshot.producer").map(String::as_str),
        Some("DATA_EXPIRATION")
    );
    let position_deletes = live.iter().filter(|f| f.content() == DataContentType::PositionDeletes).count();
    assert_eq!(position_deletes, if file_level { 2 } else { 0 }, "{name}: straddling files get position deletes");

    // Again, later: LAST_COMMIT_TIME ignores Loch's own commit and changes nothing; CURRENT_TIME
    // now expires every timed row.
    let later = now + 100 * DAY;
    let second = expire_data(&env.catalogs, env.table_id, later, false).await.unwrap();
    if !current_time {
        assert_eq!(second.older_than_ms, expire_ms, "{name}: the base is still the writer's last commit");
    }
    let again = ids(&env).await;
    if current_time {
        let expected = if file_level { BTreeSet::from([8]) } else { BTreeSet::from([8, 9, 10]) };
        assert_eq!(again, expected, "{name}: only the null time outlives everything");
    } else {
        assert_eq!(again, expected, "{name}: Loch's own commit does not move the base");
    }
}

async fn every_case(kind: Kind) {
    let root = Env::new(false, &[]).await;
    for (file_level, current_time) in [(true, true), (true, false), (false, true), (false, false)] {
        case(&root, kind, file_level, current_time).await;
    }
}

#[tokio::test]
async fn data_expires_by_timestamp() {
    every_case(Kind::Timestamp).await;
}

#[tokio::test]
async fn data_expires_by_timestamptz() {
    every_case(Kind::Timestamptz).await;
}

#[tokio::test]
async fn data_expires_by_epoch_milliseconds() {
    every_case(Kind::LongMs).await;
}

#[tokio::test]
async fn data_expires_by_epoch_seconds() {
    every_case(Kind::LongS).await;
}

#[tokio::test]
async fn data_expires_by_date() {
    every_case(Kind::Date).await;
}

#[tokio::test]
async fn data_expires_by_date_string() {
    every_case(Kind::String).await;
}

/// A table nobody but Loch wrote to has no last commit to count from; a field that is no time
/// column is reported.
#[tokio::test]
async fn data_expiration_reports_what_it_cannot_do() {
    let props =
        [("data-expire.enabled", "true"), ("data-expire.field", "category"), ("data-expire.retention-time", "1d")];
    let env = Env::new(false, &props).await;
    let summary = expire_data(&env.catalogs, env.table_id, loch_meta::now_ms(), false).await.unwrap();
    assert!(summary.skipped.unwrap().contains("LAST_COMMIT_TIME"));
    let props = [("data-expire.enabled", "true"), ("data-expire.field", "value"), ("data-expire.retention-time", "1d")];
    let other = env.other_table("doubles", false, &props).await;
    other.append([1], "a").await;
    let error = expire_data(&other.catalogs, other.table_id, loch_meta::now_ms(), false).await.unwrap_err().to_string();
    assert!(error.contains("data-expire.field \"value\" has type double"), "{error}");
}

/// Strings that are no time in the pattern (empty, unpadded) never expire, even in a file whose
/// bounds look wholly expired: the rows are read, not the bounds trusted.
#[tokio::test]
async fn strings_that_are_no_time_never_expire() {
    let root = Env::new(false, &[]).await;
    let props = [
        ("data-expire.enabled", "true"),
        ("data-expire.field", "t"),
        ("data-expire.level", "file"),
        ("data-expire.retention-time", "10d"),
        ("data-expire.base-on-rule", "CURRENT_TIME"),
    ];
    let env = root.custom_table("dirty", schema(Kind::String), None, &props).await;
    let t = env.table().await;
    let batch = RecordBatch::try_new(
        arrow_schema(&t.table),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(Int64Array::from(vec![0, 0, 0])),
            Arc::new(StringArray::from(vec!["", "2000-01-01", "1999-1-05"])),
        ],
    )
    .unwrap();
    let mut delta = RowDelta::new();
    for f in write_data_files(&t.table, &batch).await.unwrap() {
        delta = delta.add_rows(f);
    }
    env.commit(delta.prepare(&t.table).await.unwrap()).await;
    let summary = expire_data(&env.catalogs, env.table_id, loch_meta::now_ms(), false).await.unwrap();
    assert_eq!(summary.rows_expired, 1, "{summary:?}");
    assert_eq!(ids(&env).await, BTreeSet::from([1, 3]));
}

/// A straddling file written under an older partition spec gets its position delete in that
/// spec (the delete manifest is written per spec), and its expired rows are gone.
#[tokio::test]
async fn a_file_of_an_older_partition_spec_gets_its_deletes_in_that_spec() {
    let root = Env::new(false, &[]).await;
    let props = [
        ("data-expire.enabled", "true"),
        ("data-expire.field", "t"),
        ("data-expire.level", "file"),
        ("data-expire.retention-time", "10d"),
        ("data-expire.base-on-rule", "CURRENT_TIME"),
    ];
    let spec = UnboundPartitionSpec::builder().add_partition_field(2, "p", Transform::Identity).unwrap().build();
    let env = root.custom_table("evolved", schema(Kind::LongMs), Some(spec), &props).await;
    let t0 = loch_meta::now_ms();
    let t = env.table().await;
    let batch = RecordBatch::try_new(
        arrow_schema(&t.table),
        vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(Int64Array::from(vec![0, 0])),
            Kind::LongMs.column(&[Some(t0 - 20 * DAY), Some(t0 - DAY)]),
        ],
    )
    .unwrap();
    let mut delta = RowDelta::new();
    for f in write_data_files(&t.table, &batch).await.unwrap() {
        delta = delta.add_rows(f);
    }
    env.commit(delta.prepare(&t.table).await.unwrap()).await;
    // The table is partitioned by p and id from now on: the old file keeps the one-field spec.
    let evolved = UnboundPartitionSpec::builder()
        .add_partition_field(2, "p", Transform::Identity)
        .unwrap()
        .add_partition_field(1, "id_bucket", Transform::Bucket(4))
        .unwrap()
        .build();
    let updates =
        vec![iceberg::TableUpdate::AddSpec { spec: evolved }, iceberg::TableUpdate::SetDefaultSpec { spec_id: -1 }];
    let name = loch_catalog::TableName::new(vec!["db".into()], "evolved");
    let change = loch_catalog::TableChange { ident: name, requirements: vec![], updates };
    env.catalogs.commit_table(&t.catalog, change).await.unwrap();

    let summary = expire_data(&env.catalogs, env.table_id, t0, false).await.unwrap();
    assert_eq!(summary.rows_expired, 1, "{summary:?}");
    assert_eq!(ids(&env).await, BTreeSet::from([2]));
    let live = env.live_files().await;
    let delete = live.iter().find(|f| f.content() == DataContentType::PositionDeletes).unwrap();
    let data = live.iter().find(|f| f.content() == DataContentType::Data).unwrap();
    assert_eq!((delete.spec_id, delete.file.partition()), (data.spec_id, data.file.partition()));
    assert_ne!(delete.spec_id, env.table().await.table.metadata().default_partition_spec_id());
}
