//! Orphan cleaning's floor: whatever a table's `clean-orphan-file.min-existing-time-minutes`
//! says, a file younger than the server's floor stays.

use std::time::Duration;

use loch_optimizing::maintenance::orphans::clean_orphan_files;

use crate::common::Env;

#[tokio::test]
async fn the_server_s_floor_keeps_young_files_whatever_the_table_says() {
    let env =
        Env::new(false, &[("clean-orphan-file.enabled", "true"), ("clean-orphan-file.min-existing-time-minutes", "0")])
            .await;
    env.append([1, 2], "a").await;
    let t = env.table().await;
    let stray = format!("{}/data/stray.parquet", t.table.metadata().location());
    t.table.file_io().new_output(&stray).unwrap().write(bytes::Bytes::from_static(b"stray")).await.unwrap();
    let later = loch_meta::now_ms() + 60_000;

    let floored =
        clean_orphan_files(&env.catalogs, env.table_id, later, Duration::from_secs(3600), false).await.unwrap();
    assert_eq!(floored.content_files, 0, "{floored:?}");
    assert!(t.table.file_io().exists(&stray).await.unwrap());

    let rows = env.rows().await;
    let cleaned = clean_orphan_files(&env.catalogs, env.table_id, later, Duration::ZERO, false).await.unwrap();
    assert_eq!((cleaned.content_files, cleaned.paths.len()), (1, 1), "{cleaned:?}");
    assert!(!t.table.file_io().exists(&stray).await.unwrap());
    assert_eq!(env.rows().await, rows, "the table reads the same");
}
