//! Self-optimizing as users run it: `loch serve` with its embedded optimizer threads and
//! `loch optimizer` worker processes, tables written by PyIceberg, optimizers and servers killed.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Serve, Tables, http};

/// The management API path of a table's optimizing processes.
fn processes(table: &str) -> String {
    format!("/api/v1/tables/local/ns/{table}/optimizing/processes")
}

/// The table's optimizing state (status, last optimizing times, current process).
fn state(table: &str) -> String {
    format!("/api/v1/tables/local/ns/{table}/optimizing")
}

/// True when the newest process has `status`.
fn newest_is(list: &Value, status: &str) -> bool {
    list.as_array().and_then(|l| l.first()).is_some_and(|p| p["status"] == status)
}

/// Waits until the newest process of `table` runs a task that a thread has acknowledged; returns
/// the process and that task.
fn wait_acked(server: &Serve, table: &str) -> (Value, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = server.get(&processes(table));
        if let Some(process) = list.as_array().and_then(|l| l.first()).filter(|p| p["status"] == "running") {
            let tasks = server.get(&format!("{}/{}/tasks", processes(table), process["id"]));
            if let Some(task) = tasks.as_array().and_then(|t| t.iter().find(|t| t["status"] == "acked")) {
                return (process.clone(), task.clone());
            }
        }
        assert!(Instant::now() < deadline, "no task was acknowledged: {list}\n{}", server.proc.log_tail());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Table `ns.t` given 12 appends of 20 rows, planned without delay; what `append` printed.
fn twelve_fragments(tables: &Tables, extra: &[&str]) -> Value {
    let mut args =
        vec!["append", "ns.t", "--appends", "12", "--rows", "20", "--prop", "self-optimizing.min-plan-interval=0"];
    args.extend(extra);
    tables.run(&args)
}

#[test]
fn serve_with_defaults_optimizes_sixty_small_appends() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(&dir.path().join("data"), loch_testkit::free_port());
    let Some(tables) = Tables::new(&server) else { return };

    let written = tables.run(&["append", "ns.events", "--appends", "60", "--rows", "50"]);
    let appended = Instant::now();
    // Defaults: minor optimizing once 12 fragments pile up, at most once a minute per table.
    let deadline = appended + Duration::from_secs(180);
    let optimized = loop {
        let digest = tables.run(&["digest", "ns.events"]);
        if digest["data_files"] == 1 {
            break digest;
        }
        assert!(Instant::now() < deadline, "not optimized within 3 minutes: {digest}\n{}", server.proc.log_tail());
        std::thread::sleep(Duration::from_secs(2));
    };
    eprintln!("optimized {:.0?} after the last append", appended.elapsed());
    assert_eq!(optimized["rows"], 3000);
    assert_eq!(optimized["sha256"], written["sha256"], "PyIceberg reads exactly the rows written");
    assert_eq!(optimized["delete_files"], 0);
    assert_eq!(optimized["summary"]["snapshot.producer"], "OPTIMIZE", "{optimized}");
    assert_eq!(optimized["summary"]["operation"], "replace");

    let list = server.get(&processes("events"));
    let list = list.as_array().unwrap();
    assert!(list.iter().all(|p| p["status"] == "success" && p["type"] == "minor"), "{list:?}");
    let state =
        server.wait_for("the table to be idle", &state("events"), Duration::from_secs(30), |s| s["status"] == "idle");
    assert!(state["lastMinorAt"].is_i64());
    server.stop("TERM");
}

#[test]
fn a_killed_optimizer_s_task_moves_to_another_worker() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start_with(
        &dir.path().join("data"),
        loch_testkit::free_port(),
        &[("LOCH_OPTIMIZER_LOCAL__THREADS", "0"), ("LOCH_OPTIMIZER_HEART__BEAT__TIMEOUT", "4s")],
    );
    let Some(tables) = Tables::new(&server) else { return };
    let written = twelve_fragments(&tables, &[]);

    // The first worker holds its task until it is killed.
    let doomed = server.optimizer(1, &[("LOCH_OPTIMIZER_TEST_TASK_DELAY_MS", "600000")]);
    let (process, task) = wait_acked(&server, "t");
    let optimizers = server.get("/api/v1/optimizer-groups/default/optimizers");
    assert_eq!(optimizers.as_array().unwrap().len(), 1, "{optimizers}");
    assert_eq!(optimizers[0]["kind"], "external");
    assert_eq!(task["optimizer"], optimizers[0]["id"]);
    doomed.kill();
    let killed = Instant::now();

    let rescuer = server.optimizer(1, &[]);
    let done =
        server.wait_for("the process to commit", &processes("t"), Duration::from_secs(60), |l| newest_is(l, "success"));
    assert!(killed.elapsed() >= Duration::from_secs(3), "the task moved before the heartbeat timeout");
    assert_eq!(done[0]["id"], process["id"], "the same process committed");
    let tasks = server.get(&format!("{}/{}/tasks", processes("t"), process["id"]));
    assert_eq!(tasks[0]["status"], "success");
    assert_eq!(tasks[0]["attempt"], 2, "{tasks}");
    assert_ne!(tasks[0]["optimizer"], task["optimizer"], "another worker ran it");
    let optimizers = server.get("/api/v1/optimizer-groups/default/optimizers");
    assert_eq!(optimizers.as_array().unwrap().len(), 1, "the killed worker expired: {optimizers}");

    let digest = tables.run(&["digest", "ns.t"]);
    assert_eq!(
        (digest["rows"].clone(), digest["sha256"].clone()),
        (written["rows"].clone(), written["sha256"].clone())
    );
    assert_eq!(digest["data_files"], 1);
    rescuer.stop("TERM");
    server.stop("TERM");
}

#[test]
fn a_killed_server_resumes_its_process_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = loch_testkit::free_port();
    let server = Serve::start_with(
        &data,
        port,
        &[("LOCH_OPTIMIZER_LOCAL__THREADS", "1"), ("LOCH_OPTIMIZER_TEST_TASK_DELAY_MS", "600000")],
    );
    let Some(tables) = Tables::new(&server) else { return };
    let written = twelve_fragments(&tables, &["--prop", "self-optimizing.enabled=false"]);
    // Enabled once every fragment is there, so one process takes them all.
    tables.run(&["set-props", "ns.t", "self-optimizing.enabled=true"]);
    let (process, _) = wait_acked(&server, "t");
    assert_eq!(server.get(&state("t"))["status"], "minor");
    server.proc.kill();

    let server = Serve::start_with(&data, port, &[("LOCH_OPTIMIZER_LOCAL__THREADS", "1")]);
    let done =
        server.wait_for("the process to commit", &processes("t"), Duration::from_secs(60), |l| newest_is(l, "success"));
    assert_eq!(done.as_array().unwrap().len(), 1, "the process resumed rather than starting over: {done}");
    assert_eq!(done[0]["id"], process["id"]);
    let tasks = server.get(&format!("{}/{}/tasks", processes("t"), process["id"]));
    assert_eq!(tasks[0]["attempt"], 2, "{tasks}");
    server.wait_for("the table to be idle", &state("t"), Duration::from_secs(30), |s| s["status"] == "idle");

    let digest = tables.run(&["digest", "ns.t"]);
    assert_eq!(
        (digest["rows"].clone(), digest["sha256"].clone()),
        (written["rows"].clone(), written["sha256"].clone())
    );
    assert_eq!(digest["data_files"], 1);
    assert_eq!(digest["summary"]["snapshot.producer"], "OPTIMIZE");
    server.stop("TERM");
}

#[test]
fn the_quota_keeps_a_busy_table_from_starving_the_others() {
    let dir = tempfile::tempdir().unwrap();
    // One embedded thread plus two single-thread workers share the default group; every task
    // takes at least two seconds.
    let delay = ("LOCH_OPTIMIZER_TEST_TASK_DELAY_MS", "2000");
    let server = Serve::start_with(
        &dir.path().join("data"),
        loch_testkit::free_port(),
        &[("LOCH_OPTIMIZER_LOCAL__THREADS", "1"), delay],
    );
    let Some(tables) = Tables::new(&server) else { return };
    let off = ["--prop", "self-optimizing.enabled=false", "--prop", "self-optimizing.min-plan-interval=0"];
    // The busy table: 12 partitions of 12 fragments each, 12 tasks; a tenth of the group.
    let mut busy = vec!["append", "ns.busy", "--appends", "12", "--rows", "120", "--partitions", "12"];
    busy.extend(off);
    busy.extend(["--prop", "self-optimizing.quota=0.1"]);
    let busy_written = tables.run(&busy);
    let mut small_written = Vec::new();
    for (name, start) in [("ns.small1", "100000"), ("ns.small2", "200000")] {
        let mut small = vec!["append", name, "--appends", "12", "--rows", "20", "--start", start];
        small.extend(off);
        small_written.push(tables.run(&small));
    }
    let workers = [server.optimizer(1, &[delay]), server.optimizer(1, &[delay])];
    server.wait_for("three optimizer threads", "/api/v1/optimizer-groups/default", Duration::from_secs(30), |g| {
        g["threads"] == 3
    });

    // The busy table first, then the small ones.
    tables.run(&["set-props", "ns.busy,ns.small1,ns.small2", "self-optimizing.enabled=true"]);
    let mut finished = Vec::new();
    for table in ["busy", "small1", "small2"] {
        let done = server.wait_for("the process to commit", &processes(table), Duration::from_secs(120), |l| {
            newest_is(l, "success")
        });
        finished.push(done[0]["finishedAt"].as_i64().unwrap());
        if table == "busy" {
            assert_eq!(done[0]["tasks"], 12, "{done}");
        }
    }
    // Each process's plan time and each task's run, ms after the busy table's plan, to show how
    // the threads were shared when the order is wrong.
    let busy_started = server.get(&processes("busy"))[0]["createdAt"].as_i64().unwrap();
    let at = |v: &Value| v.as_i64().map_or("-".to_string(), |t| (t - busy_started).to_string());
    let mut schedule = String::new();
    for table in ["busy", "small1", "small2"] {
        let process = server.get(&processes(table))[0].clone();
        schedule +=
            &format!("\n{table}: planned {} finished {}; tasks", at(&process["createdAt"]), at(&process["finishedAt"]));
        for task in server.get(&format!("{}/{}/tasks", processes(table), process["id"])).as_array().unwrap() {
            let thread = format!("{}#{}", task["optimizer"].as_str().unwrap_or("-"), task["threadId"]);
            schedule += &format!(" [{thread} {}..{}]", at(&task["startedAt"]), at(&task["finishedAt"]));
        }
    }
    assert!(
        finished[1] < finished[0] && finished[2] < finished[0],
        "the small tables wait for the busy one:{schedule}\n{}",
        server.proc.log_tail()
    );

    let digest = tables.run(&["digest", "ns.busy"]);
    assert_eq!(digest["sha256"], busy_written["sha256"]);
    assert_eq!(digest["data_files"], 12);
    for (name, written) in ["ns.small1", "ns.small2"].iter().zip(&small_written) {
        let digest = tables.run(&["digest", name]);
        assert_eq!(digest["sha256"], written["sha256"]);
        assert_eq!(digest["data_files"], 1);
    }
    for worker in workers {
        worker.stop("TERM");
    }
    server.stop("TERM");
}

/// Self-optimizing and snapshot expiry in one `loch serve` (keep 5 s, expiry every 2 s): 60
/// PyIceberg appends are compacted into one file, and then the table's directory holds only
/// what its live snapshots reach plus metadata files — the appended files, their manifests and
/// manifest lists are gone — and PyIceberg reads the rows written.
#[test]
fn sixty_appends_compacted_and_expired_leave_only_live_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server =
        Serve::start_with(&data, loch_testkit::free_port(), &[("LOCH_MAINTENANCE_EXPIRE__SNAPSHOTS__INTERVAL", "2s")]);
    let Some(tables) = Tables::new(&server) else { return };
    let args = ["append", "ns.events", "--appends", "60", "--rows", "50", "--prop", "snapshot.keep.duration=5s"];
    let written = tables.run(&args);
    let deadline = Instant::now() + Duration::from_secs(180);
    while tables.run(&["digest", "ns.events"])["data_files"] != 1 {
        assert!(Instant::now() < deadline, "not optimized within 3 minutes\n{}", server.proc.log_tail());
        std::thread::sleep(Duration::from_secs(2));
    }

    let table_dir = data.join("warehouse/ns/events");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (on_disk, reachable) = loop {
        let (reachable, live, stray) = stray_files(&tables, "ns.events", &table_dir);
        let on_disk = files_under(&table_dir);
        if stray.is_empty() && reachable["snapshots"] == 1 {
            assert!(live.iter().all(|f| on_disk.contains(f)), "a live file is missing: {live:?}");
            break (on_disk, reachable);
        }
        assert!(
            Instant::now() < deadline,
            "files no live snapshot reaches are still there: {stray:?}\n{}",
            server.proc.log_tail()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let parquet = on_disk.iter().filter(|f| f.ends_with(".parquet")).count();
    assert_eq!(parquet, 1, "only the compacted file: {on_disk:?}");
    eprintln!("{} files left: {reachable}", on_disk.len());
    let digest = tables.run(&["digest", "ns.events"]);
    assert_eq!(
        (digest["rows"].clone(), digest["sha256"].clone()),
        (written["rows"].clone(), written["sha256"].clone())
    );
    let runs = server.get("/api/v1/tables/local/ns/events/maintenance/runs");
    let deleted: u64 = runs.as_array().unwrap().iter().filter_map(|r| r["summary"]["contentFiles"].as_u64()).sum();
    assert!(deleted >= 60, "the runs deleted the appended files: {runs}");
    server.stop("TERM");
}

/// What PyIceberg says table `name` reaches (its answer and the local paths), and the files
/// under `dir` that are neither reached nor metadata JSON.
fn stray_files(
    tables: &Tables,
    name: &str,
    dir: &std::path::Path,
) -> (Value, std::collections::BTreeSet<String>, Vec<String>) {
    // Expiry runs every 2 s here: a snapshot PyIceberg just loaded may lose its manifests
    // before it reads them (a reader of expired snapshots fails; it is not a stray file).
    let mut attempts = 0;
    let reachable = loop {
        match tables.try_run(&["reachable", name]) {
            Ok(reachable) => break reachable,
            Err(e) if e.contains("No such file or directory") && attempts < 10 => attempts += 1,
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let live: std::collections::BTreeSet<String> = reachable["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().trim_start_matches("file://").to_string())
        .collect();
    let stray = files_under(dir).into_iter().filter(|f| !f.ends_with(".metadata.json") && !live.contains(f)).collect();
    (reachable, live, stray)
}

/// Every file below `dir`, as absolute paths.
fn files_under(dir: &std::path::Path) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.display().to_string());
            }
        }
    }
    out
}

/// A `loch serve` killed (SIGKILL) while an expiry deletes files finishes the deletion when it
/// starts again: the run ends as a success, every file only the expired snapshots reached is
/// gone, and PyIceberg reads the table's rows.
#[test]
fn a_server_killed_while_expiry_deletes_finishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = loch_testkit::free_port();
    let quiet = [("LOCH_MAINTENANCE_EXPIRE__SNAPSHOTS__INTERVAL", "0s"), ("LOCH_OPTIMIZER_LOCAL__THREADS", "0")];
    let mut env = quiet.to_vec();
    env.push(("LOCH_MAINTENANCE_TEST_DELETE_PAUSE_MS", "600000"));
    let server = Serve::start_with(&data, port, &env);
    let Some(tables) = Tables::new(&server) else { return };
    tables.run(&["append", "ns.t", "--appends", "5", "--rows", "10", "--prop", "snapshot.keep.duration=0ms"]);
    let written = tables.run(&["overwrite", "ns.t", "--rows", "7"]);
    let table_dir = data.join("warehouse/ns/t");
    let parquet = |dir: &std::path::Path| files_under(dir).into_iter().filter(|f| f.ends_with(".parquet")).count();
    assert_eq!(parquet(&table_dir), 6);

    // The request hangs in the pause after the first batch (the appended data files).
    let url = format!("{}/api/v1/tables/local/ns/t/maintenance/expire-snapshots", server.url);
    std::thread::spawn(move || http::call(reqwest::Method::POST, &url, None));
    let deadline = Instant::now() + Duration::from_secs(30);
    while parquet(&table_dir) != 1 {
        assert!(Instant::now() < deadline, "the data files were not deleted\n{}", server.proc.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    let manifest_lists = |dir: &std::path::Path| files_under(dir).into_iter().filter(|f| f.contains("/snap-")).count();
    assert!(manifest_lists(&table_dir) > 1, "killed before the manifest lists went");
    server.proc.kill();

    let server = Serve::start_with(&data, port, &quiet);
    let runs = server.get("/api/v1/tables/local/ns/t/maintenance/runs");
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs[0]["status"], "success", "{runs}");
    let (_, _, stray) = stray_files(&tables, "ns.t", &table_dir);
    assert!(stray.is_empty(), "left behind: {stray:?}");
    assert_eq!(manifest_lists(&table_dir), 1);
    let digest = tables.run(&["digest", "ns.t"]);
    assert_eq!(
        (digest["rows"].clone(), digest["sha256"].clone()),
        (written["rows"].clone(), written["sha256"].clone())
    );
    server.stop("TERM");
}
