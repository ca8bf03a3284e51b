//! Snapshot expiry through the catalog on real files, over simulated time: 50 snapshots with a
//! branch, a tag and an aged-out tag keep exactly the snapshots Iceberg's rules keep, every file
//! a kept snapshot reaches stays, every file only expired ones reached goes, the table reads the
//! same, and a running optimizing process's base survives so that its commit still succeeds.

use std::collections::{BTreeSet, HashSet};

use iceberg::TableUpdate;
use iceberg::spec::{SnapshotReference, SnapshotRetention};
use loch_catalog::{TableChange, TableName};
use loch_meta::NewProcess;
use loch_optimizing::maintenance::expire::{delete_expired, expire_snapshots};
use loch_optimizing::status::ProcessStatus;
use loch_table::snapshot::{RewriteFiles, SnapshotAction};
use loch_testkit::data::{reached_by, rows, scan_all, scan_snapshot, write_data_files};

use crate::common::{Env, batch};

fn exists(path: &str) -> bool {
    std::path::Path::new(path.strip_prefix("file://").unwrap_or(path)).exists()
}

/// Ids of the snapshots from `head` back to the first, newest first.
fn ancestry(metadata: &iceberg::spec::TableMetadata, head: i64) -> Vec<i64> {
    let mut chain = Vec::new();
    let mut next = Some(head);
    while let Some(id) = next {
        chain.push(id);
        next = metadata.snapshot_by_id(id).and_then(|s| s.parent_snapshot_id());
    }
    chain
}

#[tokio::test]
async fn fifty_snapshots_with_refs_keep_exactly_what_iceberg_s_rules_keep() {
    let keep_ms = 3_600_000;
    let env = Env::new(false, &[("snapshot.keep.duration", "1h"), ("snapshot.keep.min-count", "2")]).await;
    for i in 0..50 {
        env.append([i], "a").await;
        // Distinct timestamps, so that "older than" is unambiguous.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let t = env.table().await;
    let metadata = t.table.metadata_ref();
    let head = metadata.current_snapshot_id().unwrap();
    let main = ancestry(&metadata, head); // newest first: main[0] is #50, main[49] is #1
    let nth = |n: usize| main[50 - n]; // #n, 1-based
    let ts = |id: i64| metadata.snapshot_by_id(id).unwrap().timestamp_ms();

    // A branch at #20 keeping its 3 newest, a tag at #10, and a tag at #5 aged out after 1 ms.
    let branch =
        SnapshotRetention::Branch { min_snapshots_to_keep: Some(3), max_snapshot_age_ms: None, max_ref_age_ms: None };
    let refs = vec![
        ("audit", SnapshotReference::new(nth(20), branch)),
        ("release", SnapshotReference::new(nth(10), SnapshotRetention::Tag { max_ref_age_ms: None })),
        ("stale", SnapshotReference::new(nth(5), SnapshotRetention::Tag { max_ref_age_ms: Some(1) })),
    ];
    let updates = refs
        .into_iter()
        .map(|(name, reference)| TableUpdate::SetSnapshotRef { ref_name: name.into(), reference })
        .collect();
    let ident = TableName::new(vec!["db".into()], "t");
    env.catalogs
        .commit_table(&t.catalog, TableChange { ident: ident.clone(), requirements: vec![], updates })
        .await
        .unwrap();

    // A running optimizing process planned from #30.
    let store = env.catalogs.store().clone();
    let process = NewProcess {
        table_id: env.table_id,
        kind: "optimizing".into(),
        process_type: "minor".into(),
        status: ProcessStatus::Running.as_str().into(),
        group_name: "default".into(),
        target_snapshot_id: Some(nth(30)),
        summary: "{}".into(),
    };
    store.start_process(&process).await.unwrap();

    let t = env.table().await;
    let before = t.table.metadata_ref();
    let rows = rows(&scan_all(&t.table).await.unwrap());
    let mut reach_all = BTreeSet::new();
    for s in before.snapshots() {
        reach_all.extend(reached_by(&t.table, s.snapshot_id()).await.unwrap());
    }

    // Simulated time: an hour after #40, so #1–#39 are past the keep duration.
    let now = ts(nth(40)) + keep_ms;
    let (summary, expired) = expire_snapshots(&env.catalogs, &store, env.table_id, now, false).await.unwrap();
    let expired = expired.expect("snapshots expire");
    let mut summary = summary;
    delete_expired(&expired, &mut summary, None).await.unwrap();

    // The oracle, rule by rule: main keeps its 2 newest and everything at or after the cutoff,
    // which the process moves back to #30; the branch keeps #20 and its 2 parents; the tag
    // keeps #10; the aged-out tag is removed and keeps nothing.
    let cutoff = ts(nth(30)).min(now - keep_ms);
    let mut expected: HashSet<i64> = main.iter().copied().filter(|id| ts(*id) >= cutoff).collect();
    expected.extend(&main[..2]);
    expected.extend([nth(20), nth(19), nth(18), nth(10)]);
    let t = env.table().await;
    let kept: HashSet<i64> = t.table.metadata().snapshots().map(|s| s.snapshot_id()).collect();
    assert_eq!(kept, expected);
    assert_eq!(summary.snapshots_expired, 50 - expected.len());
    assert_eq!(summary.refs_removed, vec!["stale".to_string()]);
    assert!(t.table.metadata().snapshot_for_ref("stale").is_none());

    let mut reach_kept = BTreeSet::new();
    for id in &kept {
        reach_kept.extend(reached_by(&t.table, *id).await.unwrap());
    }
    assert!(reach_kept.iter().all(|f| exists(f)), "every file a kept snapshot reaches is there");
    let gone: Vec<&String> = reach_all.difference(&reach_kept).collect();
    assert!(!gone.is_empty());
    assert!(gone.iter().all(|f| !exists(f)), "every file only expired snapshots reached is gone");
    assert_eq!(loch_testkit::data::rows(&scan_all(&t.table).await.unwrap()), rows, "the table reads the same");
    assert_eq!(scan_snapshot(&t.table, nth(10)).await.unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 10);

    // The process's commit, planned from #30, still validates and succeeds: it compacts the
    // files of #1 and #2, live since before #30.
    let first_two = [iceberg::spec::Datum::long(0), iceberg::spec::Datum::long(1)];
    let merged = write_data_files(&t.table, &batch(&t.table, [0, 1], "a")).await.unwrap();
    let mut rewrite = RewriteFiles::new(nth(30)).set_property("snapshot.producer", "OPTIMIZE");
    for f in env.live_files().await {
        if f.file.lower_bounds().get(&1).is_some_and(|b| first_two.contains(b)) {
            rewrite = rewrite.rewrite_data_file(f);
        }
    }
    for f in merged {
        rewrite = rewrite.add_data_file(f);
    }
    env.commit(rewrite.prepare(&env.table().await.table).await.unwrap()).await;
    assert_eq!(env.file_counts().await.0, 49, "two files became one");
    assert_eq!(scan_all(&env.table().await.table).await.unwrap().iter().map(|b| b.num_rows()).sum::<usize>(), 50);
}

/// A position delete whose data file a rewrite replaced dangles and is removed; an equality
/// delete that still applies stays; the rows are the same before and after, and a dry run only
/// counts.
#[tokio::test]
async fn dangling_delete_files_are_removed_and_rows_stay() {
    use iceberg::spec::Struct;
    use loch_optimizing::maintenance::dangling::{PRODUCER, clean_dangling_deletes};
    use loch_table::position_delete::write_position_deletes;
    use loch_testkit::local::write_equality_deletes;

    let env = Env::new(false, &[]).await;
    let a = env.append(0..10, "a").await.remove(0);
    env.append(10..20, "a").await;
    let t = env.table().await;
    let pos = write_position_deletes(t.table.file_io(), a.file_path(), &[1, 2], Struct::empty(), 0).await.unwrap();
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [15], "a"), None).await.unwrap();
    env.delete(vec![pos, eq]).await;

    // Rewrite `a` with its deletes applied, leaving the position delete behind.
    let t = env.table().await;
    let head = t.table.metadata().current_snapshot_id().unwrap();
    let live = env.live_files().await;
    let old_a = live.iter().find(|f| f.path() == a.file_path()).unwrap().clone();
    let kept: Vec<i64> = (0..10).filter(|i| *i != 1 && *i != 2).collect();
    let mut rewrite = RewriteFiles::new(head).rewrite_data_file(old_a);
    for f in write_data_files(&t.table, &batch(&t.table, kept, "a")).await.unwrap() {
        rewrite = rewrite.add_data_file(f);
    }
    env.commit(rewrite.prepare(&t.table).await.unwrap()).await;
    let before = env.rows().await;
    assert_eq!(before.len(), 17);
    assert_eq!(env.file_counts().await, (2, 1, 1));

    let dry = clean_dangling_deletes(&env.catalogs, env.table_id, true).await.unwrap();
    assert_eq!(dry.content_files, 1);
    assert_eq!(env.file_counts().await, (2, 1, 1), "a dry run changes nothing");
    let run = clean_dangling_deletes(&env.catalogs, env.table_id, false).await.unwrap();
    assert_eq!((run.content_files, run.paths.len()), (1, 1));
    assert_eq!(env.file_counts().await, (2, 0, 1), "the position delete is gone, the equality delete stays");
    assert_eq!(env.rows().await, before, "the same rows");
    let t = env.table().await;
    let summary = &t.table.metadata().current_snapshot().unwrap().summary().additional_properties;
    assert_eq!(summary.get("snapshot.producer").map(String::as_str), Some(PRODUCER));
    let again = clean_dangling_deletes(&env.catalogs, env.table_id, false).await.unwrap();
    assert_eq!(again.content_files, 0, "nothing dangles any more");
}

/// Automatic tags: after today's trigger time (midnight UTC) the first snapshot committed
/// after it is tagged with yesterday's name, once; the tag reads that snapshot's rows; a dry run
/// only names it; hourly tags name the previous hour; nothing is due before the trigger.
#[tokio::test]
async fn a_daily_tag_marks_the_first_snapshot_after_the_trigger() {
    use chrono::{Duration as Span, Utc};
    use loch_optimizing::maintenance::tags::{TagProperties, auto_create_tags, due_tag};

    let props = [("tag.auto-create.enabled", "true"), ("tag.auto-create.trigger.max-delay.minutes", "0")];
    let env = Env::new(false, &props).await;
    env.append(0..3, "a").await;
    let first = env.table().await.table.metadata().current_snapshot_id().unwrap();
    env.append(3..6, "a").await;
    let now = loch_meta::now_ms();
    let yesterday = (Utc::now() - Span::days(1)).format("tag-%Y%m%d").to_string();

    let dry = auto_create_tags(&env.catalogs, env.table_id, now, true).await.unwrap();
    assert_eq!(dry.tag_created.as_deref(), Some(yesterday.as_str()));
    assert!(env.table().await.table.metadata().snapshot_for_ref(&yesterday).is_none(), "a dry run tags nothing");
    let run = auto_create_tags(&env.catalogs, env.table_id, now, false).await.unwrap();
    assert_eq!(run.tag_created.as_deref(), Some(yesterday.as_str()));
    let t = env.table().await;
    assert_eq!(t.table.metadata().snapshot_for_ref(&yesterday).unwrap().snapshot_id(), first);
    assert_eq!(rows(&scan_snapshot(&t.table, first).await.unwrap()).len(), 3);
    let again = auto_create_tags(&env.catalogs, env.table_id, now, false).await.unwrap();
    assert_eq!(again.tag_created, None, "one tag per period");

    let metadata = t.table.metadata();
    let parse = |pairs: &[(&str, &str)]| TagProperties::parse(&pairs.iter().copied().collect()).unwrap();
    let hourly =
        parse(&[("tag.auto-create.trigger.period", "hourly"), ("tag.auto-create.trigger.max-delay.minutes", "0")]);
    let previous_hour = (Utc::now() - Span::hours(1)).format("tag-%Y%m%d%H").to_string();
    assert_eq!(due_tag(metadata, &hourly, now).unwrap(), Some((previous_hour, first)));
    let late = parse(&[("tag.auto-create.trigger.offset.minutes", "1500")]);
    assert_eq!(due_tag(metadata, &late, now).unwrap(), None, "before the trigger time nothing is due");
    assert!(TagProperties::parse(&[("tag.auto-create.tag-format", "'x")].into_iter().collect()).is_err());
}
