//! The manifest cache decodes local manifests itself, many at once where their headers agree:
//! its entries must match iceberg's own `load_manifest`, inherited snapshot ids and sequence
//! numbers included.

use loch_table::scan::manifests;
use loch_table::snapshot::{MergeManifests, OverwriteFiles, SnapshotAction};
use loch_testkit::local::write_equality_deletes;

use super::{batch, live, table};

#[tokio::test]
async fn cached_manifests_match_icebergs_decoding_with_inherited_fields() {
    let (mut t, _dir) = table().await;
    for i in 0..4 {
        t.append(&batch(&t.table, i * 10..i * 10 + 10)).await.unwrap();
    }
    // Existing entries (a merged manifest) and deleted ones (an overwrite).
    let pending = MergeManifests::through(3).min_count(2).prepare(&t.table).await.unwrap().unwrap();
    t.commit(pending).await.unwrap();
    let first = live(&t.table).await.into_iter().find(|f| f.data_sequence_number == 1).unwrap();
    t.commit(OverwriteFiles::new().delete_file(first.path()).prepare(&t.table).await.unwrap()).await.unwrap();
    // A delete manifest: another header than the data manifests'.
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [15, 25]), None).await.unwrap();
    t.add_deletes(vec![eq]).await.unwrap();
    t.append(&batch(&t.table, 100..105)).await.unwrap();

    let io = t.table.file_io();
    // Another storage fingerprint: none of the manifests the commits read are cached for it.
    let fresh = loch_table::io::file_io([("loch.test.cache".to_string(), "manifest-batch".to_string())]);
    let mut all = Vec::new();
    for snapshot in t.table.metadata().snapshots() {
        all.extend(manifests(io, &t.table.metadata_ref(), snapshot).await.unwrap());
    }
    // Nothing is cached for `fresh`: all are read and decoded together, some more than once.
    let together = loch_table::manifest_cache::load_many(&fresh, &all).await.unwrap();
    assert_eq!(together.len(), all.len());
    let mut seen = 0;
    for (manifest, ours) in all.iter().zip(together) {
        let theirs = manifest.load_manifest(io).await.unwrap();
        assert_eq!(ours.entries(), theirs.entries(), "{}", manifest.manifest_path);
        assert_eq!(ours.metadata(), theirs.metadata());
        assert!(ours.entries().iter().all(|e| e.snapshot_id().is_some() && e.sequence_number().is_some()));
        seen += ours.entries().len();
        let one = loch_table::manifest_cache::load(io, manifest).await.unwrap();
        assert_eq!(one.entries(), theirs.entries());
    }
    assert!(seen >= 20, "{seen} entries compared");
}
