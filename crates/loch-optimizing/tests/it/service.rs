//! The optimizing service driven step by step as an optimizer would: refresh → poll → ack →
//! execute → complete → commit, with failures, retries, lost optimizers, timeouts, cancels,
//! restarts and quotas. Rows read before and after must be identical.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iceberg::spec::{DataContentType, DataFile, DataFileBuilder, DataFileFormat, Struct};
use loch_api::optimizer::{RegisterRequest, TaskAssignment};
use loch_optimizing::status::ProcessStatus;
use loch_optimizing::{OptimizingConfig, OptimizingError, OptimizingService, TableProcess};
use loch_table::position_delete::write_position_deletes;
use loch_table::snapshot::{RowDelta, SnapshotAction};
use loch_testkit::local::write_equality_deletes;

use crate::common::{Env, batch};

fn config() -> OptimizingConfig {
    OptimizingConfig {
        refresh_interval: Duration::from_secs(3600),
        heartbeat_timeout: Duration::from_secs(60),
        ack_timeout: Duration::from_secs(30),
        execute_timeout: None,
        poll_timeout: Duration::from_millis(300),
        history_keep: Duration::from_secs(3600),
        ..OptimizingConfig::default()
    }
}

async fn service(env: &Env, config: OptimizingConfig) -> Arc<OptimizingService> {
    OptimizingService::new(env.catalogs.clone(), config).await.unwrap()
}

async fn register(service: &OptimizingService, threads: u32, embedded: bool) -> String {
    let request = RegisterRequest { group: "default".into(), threads, memory_mb: 1024, properties: BTreeMap::new() };
    service.register(&request, embedded).await.unwrap().token
}

/// Twelve fragments, an equality delete and a position delete.
async fn fragmented(props: &[(&str, &str)]) -> Env {
    let env = Env::new(false, props).await;
    let mut first = None;
    for i in 0..12 {
        let files = env.append(i * 10..i * 10 + 10, "a").await;
        first.get_or_insert(files[0].file_path().to_string());
    }
    let t = env.table().await;
    let eq = write_equality_deletes(&t.table, vec![1], &batch(&t.table, [15, 95], "a"), None).await.unwrap();
    let pos = write_position_deletes(t.table.file_io(), first.as_deref().unwrap(), &[0, 1], Struct::empty(), 0)
        .await
        .unwrap();
    env.delete(vec![eq, pos]).await;
    env
}

async fn status(service: &OptimizingService, env: &Env) -> String {
    service.table_runtime(env.table_id).await.unwrap().runtime.status
}

async fn poll(service: &Arc<OptimizingService>, token: &str, thread: u32) -> TaskAssignment {
    service.poll(token, thread).await.unwrap().expect("a task")
}

/// Acknowledges, executes and completes a task.
async fn run(service: &Arc<OptimizingService>, token: &str, thread: u32, task: &TaskAssignment) {
    service.ack(token, thread, &task.key).await.unwrap();
    let output = loch_optimizer::executor::execute(&task.input).await.map_err(|e| e.to_string());
    service.complete(token, thread, &task.key, output).await.unwrap();
}

/// Waits until the table's newest process has ended.
async fn finished(service: &OptimizingService, env: &Env) -> TableProcess {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let process = service.processes(env.table_id, 1).await.unwrap().remove(0);
        if process.status != ProcessStatus::Running {
            return process;
        }
        assert!(Instant::now() < deadline, "process {} did not finish", process.id);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_table_with_deletes_is_optimized_through_the_service() {
    let env = fragmented(&[]).await;
    let before = env.rows().await;
    assert_eq!(before.len(), 120 - 4);
    let service = service(&env, config()).await;
    service.refresh_table(env.table_id).await.unwrap();
    assert_eq!(status(&service, &env).await, "pending");
    let token = register(&service, 1, false).await;
    let task = poll(&service, &token, 0).await;
    assert_eq!(status(&service, &env).await, "minor");
    run(&service, &token, 0, &task).await;
    let process = finished(&service, &env).await;
    assert_eq!(process.status, ProcessStatus::Success, "{:?}", process.fail_message);
    assert_eq!(env.rows().await, before, "same rows, same deletes applied");
    assert_eq!(env.file_counts().await, (1, 0, 0), "fragments merged, applied deletes gone");
    let runtime = service.table_runtime(env.table_id).await.unwrap().runtime;
    assert_eq!(runtime.status, "idle");
    assert!(runtime.last_minor_at.is_some());
    let tasks = service.tasks(env.table_id, process.id).await.unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!((tasks[0].status.as_str(), tasks[0].output_files), ("success", 1));
    assert_eq!(tasks[0].input_files, 14, "12 data files and both delete files");
    assert!(service.poll(&token, 0).await.unwrap().is_none(), "nothing left to do");
}

#[tokio::test]
async fn failed_tasks_are_retried_then_fail_the_process() {
    let env = fragmented(&[("self-optimizing.execute.num-retries", "1")]).await;
    let before = env.rows().await;
    let service = service(&env, config()).await;
    service.refresh_table(env.table_id).await.unwrap();
    let token = register(&service, 1, false).await;
    for attempt in 1..=2 {
        let task = poll(&service, &token, 0).await;
        assert_eq!(task.key.attempt, attempt);
        service.ack(&token, 0, &task.key).await.unwrap();
        service.complete(&token, 0, &task.key, Err(format!("disk full #{attempt}"))).await.unwrap();
    }
    let process = finished(&service, &env).await;
    assert_eq!(process.status, ProcessStatus::Failed);
    assert!(process.fail_message.as_deref().unwrap().contains("disk full #2"), "{:?}", process.fail_message);
    let tasks = service.tasks(env.table_id, process.id).await.unwrap();
    assert_eq!((tasks[0].status.as_str(), tasks[0].retries), ("canceled", 2));
    // Freed, and not tried again on the same files: blocked, with the reason, until it changes.
    let runtime = service.table_runtime(env.table_id).await.unwrap().runtime;
    assert_eq!(runtime.status, "idle");
    assert!(runtime.blocked.as_deref().unwrap_or_default().contains("disk full #2"), "{:?}", runtime.blocked);
    service.refresh_table(env.table_id).await.unwrap();
    assert_eq!(status(&service, &env).await, "idle", "no new plan for the same snapshot");
    assert!(service.poll(&token, 0).await.unwrap().is_none());
    env.append([1000], "a").await;
    service.refresh_table(env.table_id).await.unwrap();
    let runtime = service.table_runtime(env.table_id).await.unwrap().runtime;
    assert_eq!((runtime.status.as_str(), runtime.blocked), ("pending", None), "a new snapshot is worth a new try");
    assert_eq!(env.rows().await.len(), before.len() + 1);
}

/// A live file with `format` and `path` (never read: the evaluator refuses it first).
fn foreign_file(path: String, format: DataFileFormat, content: DataContentType) -> DataFile {
    DataFileBuilder::default()
        .content(content)
        .file_path(path)
        .file_format(format)
        .partition(Struct::empty())
        .partition_spec_id(0)
        .record_count(1)
        .file_size_in_bytes(100)
        .build()
        .unwrap()
}

#[tokio::test]
async fn tables_with_files_loch_cannot_rewrite_are_blocked_not_retried() {
    // A data file of another table: Loch reads only files a table owns.
    let env = fragmented(&[]).await;
    let other = env.other_table("other", false, &[]).await;
    let borrowed = other.append([5000], "b").await;
    let t = env.table().await;
    env.commit(RowDelta::new().add_rows(borrowed[0].clone()).prepare(&t.table).await.unwrap()).await;
    let service = service(&env, config()).await;
    service.refresh_table(env.table_id).await.unwrap();
    let runtime = service.table_runtime(env.table_id).await.unwrap().runtime;
    assert_eq!(runtime.status, "idle");
    let blocked = runtime.blocked.unwrap_or_default();
    assert!(blocked.contains("outside the table's location"), "{blocked}");
    let token = register(&service, 1, false).await;
    assert!(service.poll(&token, 0).await.unwrap().is_none(), "no process for a blocked table");
    assert!(service.processes(env.table_id, 10).await.unwrap().is_empty());

    // Deletion vectors (Puffin delete files) of format v3.
    let env = fragmented(&[]).await;
    let t = env.table().await;
    let dv = foreign_file(
        format!("{}/data/dv-1.puffin", t.table.metadata().location()),
        DataFileFormat::Puffin,
        DataContentType::PositionDeletes,
    );
    env.commit(RowDelta::new().add_deletes(dv).prepare(&t.table).await.unwrap()).await;
    let service = self::service(&env, config()).await;
    service.refresh_table(env.table_id).await.unwrap();
    let runtime = service.table_runtime(env.table_id).await.unwrap().runtime;
    assert_eq!(
        (runtime.status.as_str(), runtime.blocked.as_deref()),
        ("idle", Some("format v3 deletion vectors are not supported yet"))
    );
    service.refresh_table(env.table_id).await.unwrap();
    assert!(service.processes(env.table_id, 10).await.unwrap().is_empty(), "skipped, not retried");
}

/// The stores of a Mixed-Iceberg table (an Amoro table registered in Loch) are not plain
/// Iceberg tables: compacting a change store's delete rows as data would bring deleted rows
/// back, so a change store is only ever optimized through its base store, a base store naming
/// a key but without its change store is blocked with the reason, and data expiration skips
/// both. A base store without a key (Amoro's unkeyed table) is optimized as Iceberg.
#[tokio::test]
async fn stores_of_mixed_iceberg_tables_are_never_optimized_as_plain_tables() {
    let cases = [
        (vec![("mixed-format.table-store", "change")], None),
        (
            vec![("mixed-format.table-store", "base"), ("mixed-format.primary-key-fields", "id")],
            Some("change store is missing"),
        ),
    ];
    for (props, reason) in cases {
        let env = fragmented(&props).await;
        let service = service(&env, config()).await;
        service.refresh_table(env.table_id).await.unwrap();
        if let Some(reason) = reason {
            let blocked = service.table_runtime(env.table_id).await.unwrap().runtime.blocked.unwrap_or_default();
            assert!(blocked.contains(reason), "{blocked}");
        }
        let token = register(&service, 1, false).await;
        assert!(service.poll(&token, 0).await.unwrap().is_none(), "no process for {props:?}");
    }
    let unkeyed = fragmented(&[("mixed-format.table-store", "base")]).await;
    let before = unkeyed.rows().await;
    let service = service(&unkeyed, config()).await;
    service.refresh_table(unkeyed.table_id).await.unwrap();
    let token = register(&service, 1, false).await;
    let task = poll(&service, &token, 0).await;
    run(&service, &token, 0, &task).await;
    assert_eq!(finished(&service, &unkeyed).await.status, ProcessStatus::Success);
    assert_eq!(unkeyed.rows().await, before);

    let props = [
        ("mixed-format.table-store", "change"),
        ("data-expire.enabled", "true"),
        ("data-expire.field", "id"),
        ("data-expire.retention-time", "1d"),
        ("data-expire.base-on-rule", "CURRENT_TIME"),
    ];
    let env = fragmented(&props).await;
    let rows = env.rows().await;
    let summary =
        loch_optimizing::maintenance::data_expire::expire_data(&env.catalogs, env.table_id, i64::MAX / 2, false)
            .await
            .unwrap();
    assert!(summary.skipped.unwrap_or_default().contains("Mixed-Iceberg"));
    assert_eq!(env.rows().await, rows);
}

#[tokio::test]
async fn tasks_of_a_lost_optimizer_go_to_another() {
    let config = OptimizingConfig { heartbeat_timeout: Duration::from_millis(300), ..config() };
    let env = fragmented(&[]).await;
    let before = env.rows().await;
    let service = service(&env, config).await;
    service.refresh_table(env.table_id).await.unwrap();
    let lost = register(&service, 1, false).await;
    let task = poll(&service, &lost, 0).await;
    service.ack(&lost, 0, &task.key).await.unwrap();
    let other = register(&service, 1, false).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.touch(&other).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    service.keep().await.unwrap();
    assert!(matches!(service.touch(&lost).await, Err(OptimizingError::UnknownOptimizer)));
    let again = poll(&service, &other, 0).await;
    assert_eq!((again.key.task_id, again.key.attempt), (task.key.task_id, 2));
    // The lost optimizer's late result is refused; the new holder's is taken.
    let output = loch_optimizer::executor::execute(&task.input).await.unwrap();
    assert!(service.complete(&lost, 0, &task.key, Ok(output)).await.is_err());
    run(&service, &other, 0, &again).await;
    assert_eq!(finished(&service, &env).await.status, ProcessStatus::Success);
    assert_eq!(env.rows().await, before);
}

#[tokio::test]
async fn unacknowledged_and_overdue_tasks_go_back() {
    let config = OptimizingConfig {
        ack_timeout: Duration::from_millis(100),
        execute_timeout: Some(Duration::from_millis(100)),
        ..config()
    };
    let env = fragmented(&[]).await;
    let service = service(&env, config).await;
    service.refresh_table(env.table_id).await.unwrap();
    let token = register(&service, 2, false).await;
    let task = poll(&service, &token, 0).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    service.keep().await.unwrap();
    let again = poll(&service, &token, 1).await;
    assert_eq!(again.key.attempt, 2, "not acknowledged in time");
    assert!(service.ack(&token, 0, &task.key).await.is_err(), "the first hand-out is over");
    service.ack(&token, 1, &again.key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    service.keep().await.unwrap();
    let third = poll(&service, &token, 0).await;
    assert_eq!(third.key.attempt, 3, "execution timed out");
    run(&service, &token, 0, &third).await;
    assert_eq!(finished(&service, &env).await.status, ProcessStatus::Success);
}

#[tokio::test]
async fn a_thread_that_polls_again_gives_back_what_it_held() {
    let env = fragmented(&[]).await;
    let service = service(&env, config()).await;
    service.refresh_table(env.table_id).await.unwrap();
    let token = register(&service, 1, false).await;
    let task = poll(&service, &token, 0).await;
    service.ack(&token, 0, &task.key).await.unwrap();
    // The worker restarted its thread without completing: the next poll gets the task again.
    let again = poll(&service, &token, 0).await;
    assert_eq!((again.key.task_id, again.key.attempt), (task.key.task_id, 2));
}

#[tokio::test]
async fn a_canceled_process_frees_the_table() {
    let env = fragmented(&[]).await;
    let before = env.rows().await;
    let service = service(&env, config()).await;
    service.refresh_table(env.table_id).await.unwrap();
    let token = register(&service, 1, false).await;
    let task = poll(&service, &token, 0).await;
    let process = service.cancel_process(env.table_id, task.key.process_id).await.unwrap();
    assert_eq!(process.status, ProcessStatus::Closed);
    assert_eq!(process.fail_message.as_deref(), Some("canceled by request"));
    assert!(service.ack(&token, 0, &task.key).await.is_err(), "a canceled task cannot start");
    assert_eq!(service.tasks(env.table_id, process.id).await.unwrap()[0].status, "canceled");
    assert_eq!(status(&service, &env).await, "pending", "freed, and still fragmented");
    assert!(service.cancel_process(env.table_id, process.id).await.is_err(), "only running processes");
    assert_eq!(env.rows().await, before);
}

#[tokio::test]
async fn a_restarted_server_resumes_its_processes() {
    let env = fragmented(&[]).await;
    let before = env.rows().await;
    let first = service(&env, config()).await;
    first.refresh_table(env.table_id).await.unwrap();
    let embedded = register(&first, 1, true).await;
    let task = poll(&first, &embedded, 0).await;
    first.ack(&embedded, 0, &task.key).await.unwrap();
    drop(first); // The server dies with the task running on its own threads.

    let second = service(&env, config()).await;
    second.recover().await.unwrap();
    assert_eq!(status(&second, &env).await, "minor", "the process survives the restart");
    let token = register(&second, 1, true).await;
    let again = poll(&second, &token, 0).await;
    assert_eq!((again.key.task_id, again.key.attempt), (task.key.task_id, 2));
    run(&second, &token, 0, &again).await;
    assert_eq!(finished(&second, &env).await.status, ProcessStatus::Success);
    assert_eq!(status(&second, &env).await, "idle");
    assert_eq!(env.rows().await, before);
}

#[tokio::test]
async fn a_process_whose_tasks_finished_before_a_crash_is_committed_on_restart() {
    let env = fragmented(&[]).await;
    let before = env.rows().await;
    let first = service(&env, config()).await;
    first.refresh_table(env.table_id).await.unwrap();
    let token = register(&first, 1, false).await;
    let task = poll(&first, &token, 0).await;
    first.ack(&token, 0, &task.key).await.unwrap();
    let output = loch_optimizer::executor::execute(&task.input).await.unwrap();
    // The task's success is stored, then the server dies before committing.
    let store = env.catalogs.store();
    let held = store.get_task(task.key.process_id, task.key.task_id).await.unwrap().unwrap();
    let mut done = held.clone();
    done.status = "success".into();
    done.output = Some(serde_json::to_string(&output).unwrap());
    assert!(store.update_task(&done, "acked", held.attempt, None).await.unwrap());
    drop(first);

    let second = service(&env, config()).await;
    second.recover().await.unwrap();
    let process = finished(&second, &env).await;
    assert_eq!(process.status, ProcessStatus::Success, "{:?}", process.fail_message);
    assert_eq!(status(&second, &env).await, "idle");
    assert_eq!(env.rows().await, before);
    assert_eq!(env.file_counts().await, (1, 0, 0));
}

#[tokio::test]
async fn the_quota_keeps_one_table_from_taking_every_thread() {
    // Table `busy` has two partitions of fragments (two tasks); `small` has one. With two
    // threads and quota 0.5, each table may hold one thread.
    let busy = Env::new(true, &[]).await;
    for i in 0..24 {
        busy.append(i * 10..i * 10 + 10, if i % 2 == 0 { "a" } else { "b" }).await;
    }
    let small = busy.other_table("small", false, &[]).await;
    for i in 0..12 {
        small.append(i * 10..i * 10 + 10, "a").await;
    }
    let service = service(&busy, config()).await;
    service.refresh_table(busy.table_id).await.unwrap();
    let token = register(&service, 2, false).await;
    let first = poll(&service, &token, 0).await;
    assert_eq!(first.input.table, "local.db.t");
    service.refresh_table(small.table_id).await.unwrap();
    let second = poll(&service, &token, 1).await;
    assert_eq!(second.input.table, "local.db.small", "the busy table is at its quota");
    run(&service, &token, 1, &second).await;
    assert_eq!(finished(&service, &small).await.status, ProcessStatus::Success);
    // With no other table waiting, a free thread takes the busy table's second task after all.
    let third = poll(&service, &token, 1).await;
    assert_eq!(third.input.table, "local.db.t");
    run(&service, &token, 0, &first).await;
    run(&service, &token, 1, &third).await;
    assert_eq!(finished(&service, &busy).await.status, ProcessStatus::Success);
    assert_eq!(busy.file_counts().await, (2, 0, 0));
}
