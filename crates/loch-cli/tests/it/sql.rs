//! The SQL terminal against a real `loch serve`: statement tests in sqllogictest format
//! (`tests/slt/*.slt`, one fresh server per file), run through the engine `loch sql` uses.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_schema::DataType;
use async_trait::async_trait;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use loch_sql::{HttpBackend, SqlEngine, SqlError, parse_script};
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::Serve;

/// One engine session, as sqllogictest drives a database.
struct LochDb {
    engine: SqlEngine,
    /// The server's address, for the harness's own `WAIT OPTIMIZING [ns.]t` statement.
    url: String,
}

impl LochDb {
    /// `WAIT OPTIMIZING ns.t` (the harness's statement, not Loch's): waits until no
    /// optimizing process of the table runs, and fails if the newest one did not succeed.
    async fn wait_optimizing(&self, table: &str) -> Result<(), SqlError> {
        let (namespace, name) = table
            .split_once('.')
            .ok_or_else(|| SqlError::invalid(format!("WAIT OPTIMIZING needs ns.table, not {table}")))?;
        let path = format!("{}/api/v1/tables/local/{namespace}/{name}/optimizing/processes", self.url);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let processes: Vec<serde_json::Value> = reqwest::get(&path)
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| SqlError::invalid(format!("{path}: {e}")))?
                .json()
                .await
                .map_err(|e| SqlError::invalid(format!("{path}: {e}")))?;
            if processes.iter().all(|p| p["status"] != "running") {
                return match processes.iter().max_by_key(|p| p["id"].as_i64()) {
                    Some(p) if p["status"] != "success" => Err(SqlError::invalid(format!("the last process: {p}"))),
                    _ => Ok(()),
                };
            }
            if std::time::Instant::now() > deadline {
                return Err(SqlError::invalid(format!("{table} is still optimizing after 120 s")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for LochDb {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        if let Some(table) = sql.trim().strip_prefix("WAIT OPTIMIZING ") {
            self.wait_optimizing(table.trim()).await?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let mut statements = parse_script(sql)?;
        let Some(last) = statements.pop() else { return Ok(DBOutput::StatementComplete(0)) };
        for statement in &statements {
            self.engine.execute(statement, None).await?;
        }
        let output = self.engine.execute(&last, None).await?;
        if output.schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = output
            .schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64 => DefaultColumnType::Integer,
                DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(_, _) => {
                    DefaultColumnType::FloatingPoint
                }
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
                _ => DefaultColumnType::Any,
            })
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &output.batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(
                    formatters
                        .iter()
                        .map(|f| {
                            let text = f.value(row).to_string();
                            if text.is_empty() { "(empty)".to_string() } else { text }
                        })
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "loch"
    }
}

fn slt_dir() -> PathBuf {
    loch_testkit::workspace_root().join("crates/loch-cli/tests/slt")
}

/// Runs one `.slt` file against a fresh `loch serve`.
fn run_slt(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), loch_testkit::free_port());
    let url = server.url.clone();
    let path = slt_dir().join(name);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let result = runtime.block_on(async move {
        let mut runner = sqllogictest::Runner::new(move || {
            let url = url.clone();
            async move {
                let backend = Arc::new(HttpBackend::new(&url, None)?);
                Ok(LochDb { engine: SqlEngine::new(backend, "local"), url })
            }
        });
        runner.run_file_async(&path).await
    });
    if let Err(e) = result {
        panic!("{name}: {}\n--- server log ---\n{}", e.display(true), server.proc.log_tail());
    }
    server.stop("TERM");
}

#[test]
fn slt_catalog_and_ddl() {
    run_slt("ddl.slt");
}

#[test]
fn slt_iceberg_reads_and_writes() {
    run_slt("iceberg.slt");
}

#[test]
fn slt_keyed_tables() {
    run_slt("keyed.slt");
}

#[test]
fn slt_optimize_and_maintain() {
    run_slt("optimize.slt");
}

/// A tmux session on its own socket, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    fn start(socket: &str, program: &[&str], home: &std::path::Path) -> Option<Self> {
        if std::process::Command::new("tmux").arg("-V").output().is_err() {
            loch_testkit::unavailable("tmux", "it is not installed");
            return None;
        }
        let tmux = Self { socket: socket.to_string() };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "t", "-x", "150", "-y", "60"])
            .env("HOME", home)
            .args(program)
            .status()
            .unwrap();
        assert!(status.success());
        let status = tmux.command().args(["set-option", "-t", "t", "remain-on-exit", "on"]).status().unwrap();
        assert!(status.success());
        Some(tmux)
    }

    /// Types `text` and presses Enter.
    fn line(&self, text: &str) {
        // tmux reads a `;` ending an argument as its own command separator.
        let text = match text.strip_suffix(';') {
            Some(rest) => format!("{rest}\\;"),
            None => text.to_string(),
        };
        let status = self.command().args(["send-keys", "-t", "t", "-l", &text]).status().unwrap();
        assert!(status.success());
        let status = self.command().args(["send-keys", "-t", "t", "Enter"]).status().unwrap();
        assert!(status.success());
    }

    fn screen(&self) -> String {
        let output = self.command().args(["capture-pane", "-p", "-t", "t", "-S", "-200"]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the screen shows `text`; the screen.
    fn wait_for(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(std::time::Instant::now() < deadline, "the terminal never showed {text:?}:\n{screen}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn pane_dead(&self) -> bool {
        let output = self.command().args(["display-message", "-p", "-t", "t", "#{pane_dead}"]).output().unwrap();
        String::from_utf8_lossy(&output.stdout).trim() == "1"
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

#[test]
fn loch_sql_in_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), loch_testkit::free_port());
    let home = tempfile::tempdir().unwrap();
    let socket = loch_testkit::unique_name("loch-sql");
    let program = [crate::common::LOCH, "sql", "--ams", &server.url];
    let Some(tmux) = Tmux::start(&socket, &program, home.path()) else { return };
    tmux.wait_for("loch:local.default>");
    tmux.line("CREATE NAMESPACE demo;");
    tmux.wait_for("OK");
    tmux.line("\\c local");
    // A statement over three lines: the prompt waits for the `;`.
    tmux.line("CREATE TABLE demo.pets (id INT NOT NULL,");
    tmux.wait_for("      ->");
    tmux.line("  name STRING)");
    tmux.line("  PARTITIONED BY (bucket(4, id));");
    tmux.line("INSERT INTO demo.pets VALUES (1, 'cat'), (2, 'dog'), (3, NULL);");
    tmux.wait_for("inserted 3 rows");
    tmux.line("SELECT id, name FROM demo.pets");
    tmux.line("ORDER BY id;");
    let screen = tmux.wait_for("| 3  |      |");
    for row in ["| id | name |", "| 1  | cat  |", "| 2  | dog  |", "3 rows"] {
        assert!(screen.contains(row), "no {row:?} in:\n{screen}");
    }
    tmux.line("SELEC * FROM demo.pets;");
    let screen = tmux.wait_for("ERROR: syntax error");
    let error = screen.lines().find(|l| l.starts_with("ERROR:")).unwrap();
    assert!(error.contains("Line: 1, Column"), "the error gives no position: {error}");
    // The session goes on after an error; helpers work.
    tmux.line("USE demo;");
    tmux.wait_for("loch:local.demo>");
    tmux.line("\\d");
    tmux.wait_for("| pets  |");
    tmux.line("\\d pets");
    tmux.wait_for("| name        | STRING    | YES");
    tmux.line("\\q");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !tmux.pane_dead() {
        assert!(std::time::Instant::now() < deadline, "loch sql did not exit on \\q:\n{}", tmux.screen());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(home.path().join(".loch_sql_history").exists(), "no history was saved");
    server.stop("TERM");
}

#[test]
fn loch_sql_runs_scripts_and_prints_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), loch_testkit::free_port());
    let run = |args: &[&str]| {
        let output = std::process::Command::new(crate::common::LOCH)
            .args(["sql", "--ams", &server.url])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let script = dir.path().join("setup.sql");
    std::fs::write(
        &script,
        "CREATE NAMESPACE s;\n-- a comment; with a semicolon\nCREATE TABLE s.t (id INT, note STRING);\nINSERT INTO s.t VALUES (1, 'a;b'), (2, 'c');\n",
    )
    .unwrap();
    let (ok, _, err) = run(&["-f", script.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["-e", "SELECT * FROM s.t ORDER BY id", "--format", "csv"]);
    assert!(ok, "{err}");
    assert_eq!(out, "id,note\n1,a;b\n2,c\n");
    let (ok, out, err) = run(&["-n", "s", "-e", "SELECT id FROM t WHERE note = 'c'", "--format", "json"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), r#"{"id":2}"#);
    // Errors: one line, non-zero exit.
    let (ok, _, err) = run(&["-e", "SELECT * FROM s.missing"]);
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let output = std::process::Command::new(crate::common::LOCH)
        .args(["sql", "--ams", "not a url", "-e", "SELECT 1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a URL"));
    server.stop("TERM");
}

/// `loch sql -e SQL --format json`: the rows as JSON objects.
fn sql_rows(server: &Serve, sql: &str) -> Vec<serde_json::Value> {
    let output = std::process::Command::new(crate::common::LOCH)
        .args(["sql", "--ams", &server.url, "--format", "json", "-e", sql])
        .output()
        .unwrap();
    assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn sql_ok(server: &Serve, sql: &str) {
    let output = std::process::Command::new(crate::common::LOCH)
        .args(["sql", "--ams", &server.url, "-e", sql])
        .output()
        .unwrap();
    assert!(output.status.success(), "{sql}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Rows as `tables.py rows` prints them, and `loch sql`'s JSON rows, on one footing: every
/// column present (NULL as null), numbers as f64.
fn normalized(rows: &[serde_json::Value]) -> Vec<std::collections::BTreeMap<String, String>> {
    let columns = ["id", "category", "value", "note"];
    rows.iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| {
                    let v = &row[*c];
                    let text = match v {
                        serde_json::Value::Null => "null".to_string(),
                        serde_json::Value::Number(n) => format!("{}", n.as_f64().unwrap()),
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (c.to_string(), text)
                })
                .collect()
        })
        .collect()
}

#[test]
fn pyiceberg_and_loch_sql_read_what_the_other_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), loch_testkit::free_port());
    let Some(tables) = crate::common::Tables::new(&server) else { return };
    let both_read = |table: &str, what: &str| {
        let py = tables.run(&["rows", table]);
        let py = normalized(py.as_array().unwrap());
        let loch = normalized(&sql_rows(&server, &format!("SELECT * FROM {table} ORDER BY id")));
        assert_eq!(loch, py, "{what}: loch sql and PyIceberg read {table} differently");
        py.len()
    };

    // What loch sql writes, PyIceberg reads: appends, overwrite, deletes, updates.
    sql_ok(&server, "CREATE NAMESPACE interop");
    sql_ok(
        &server,
        "CREATE TABLE interop.bysql (id BIGINT NOT NULL, category STRING, value DOUBLE, note STRING) PARTITIONED BY (category)",
    );
    sql_ok(
        &server,
        "INSERT INTO interop.bysql SELECT value AS id, 'c' || CAST(value % 3 AS VARCHAR), value * 0.5, 'row ' || CAST(value AS VARCHAR) FROM range(0, 300)",
    );
    assert_eq!(both_read("interop.bysql", "after INSERT"), 300);
    sql_ok(&server, "INSERT INTO interop.bysql VALUES (1000, 'c1', NULL, NULL), (1001, NULL, 2.5, 'no category')");
    assert_eq!(both_read("interop.bysql", "after INSERT with NULLs"), 302);
    sql_ok(&server, "INSERT OVERWRITE interop.bysql VALUES (2000, 'c2', 1.0, 'replaced c2')");
    assert_eq!(both_read("interop.bysql", "after INSERT OVERWRITE"), 203);
    sql_ok(&server, "DELETE FROM interop.bysql WHERE id % 7 = 0 OR category IS NULL");
    let n = both_read("interop.bysql", "after DELETE");
    sql_ok(&server, "UPDATE interop.bysql SET note = 'updated', value = value + 1 WHERE category = 'c1'");
    assert_eq!(both_read("interop.bysql", "after UPDATE"), n);
    let updated = sql_rows(&server, "SELECT count(*) AS n FROM interop.bysql WHERE note = 'updated'");
    assert!(updated[0]["n"].as_u64().unwrap() > 50, "{updated:?}");

    // What PyIceberg writes, loch sql reads: appends, an overwrite, a delete.
    tables.run(&["append", "interop.bypy", "--appends", "3", "--rows", "200", "--partitions", "4"]);
    assert_eq!(both_read("interop.bypy", "after PyIceberg appends"), 600);
    tables.run(&["delete", "interop.bypy", "id < 150"]);
    assert_eq!(both_read("interop.bypy", "after PyIceberg delete"), 450);
    tables.run(&["overwrite", "interop.bypy", "--rows", "50"]);
    assert_eq!(both_read("interop.bypy", "after PyIceberg overwrite"), 50);
    // And loch sql changes PyIceberg's table, which PyIceberg then reads.
    sql_ok(&server, "DELETE FROM interop.bypy WHERE id >= 40");
    sql_ok(&server, "UPDATE interop.bypy SET category = 'moved' WHERE id < 5");
    assert_eq!(both_read("interop.bypy", "after loch sql changed PyIceberg's table"), 40);
    server.stop("TERM");
}

/// `OPTIMIZE t` and `OPTIMIZE t FULL` plan processes that the server's own optimizer threads
/// run: the rows stay, the files shrink (and the deletes go with a full one).
/// `EXPIRE SNAPSHOTS t RETAIN 1` leaves one snapshot and the same rows.
#[test]
fn optimize_and_expire_from_loch_sql_keep_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), loch_testkit::free_port());
    sql_ok(&server, "CREATE NAMESPACE m");
    // A minor trigger interval of millennia: only the statement below plans the minor.
    sql_ok(
        &server,
        "CREATE TABLE m.t (id BIGINT NOT NULL, category STRING, value DOUBLE) PARTITIONED BY (category) \
         TBLPROPERTIES ('self-optimizing.minor.trigger.interval' = '99999999999999')",
    );
    for i in 0..4 {
        let base = i * 100;
        sql_ok(
            &server,
            &format!(
                "INSERT INTO m.t SELECT value + {base}, 'c' || CAST(value % 2 AS VARCHAR), value * 0.5 FROM range(0, 50)"
            ),
        );
    }
    let rows = || sql_rows(&server, "SELECT * FROM m.t ORDER BY id");
    let count = |sql: &str| sql_rows(&server, sql)[0]["n"].as_u64().unwrap();
    let files = |content: &str| count(&format!("SELECT count(*) AS n FROM m.t$files WHERE content = '{content}'"));
    let finished = |id: i64| {
        let path = format!("/api/v1/tables/local/m/t/optimizing/processes/{id}");
        let process =
            server.wait_for("the process to end", &path, Duration::from_secs(60), |p| p["status"] != "running");
        assert_eq!(process["status"], "success", "{process}");
    };
    let before = rows();
    assert_eq!(before.len(), 200);
    assert_eq!(files("DATA"), 8);

    let planned = sql_rows(&server, "OPTIMIZE m.t");
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert_eq!(planned[0]["type"], "minor", "{planned:?}");
    assert_eq!(planned[0]["tasks"], 2, "one task per partition: {planned:?}");
    finished(planned[0]["process_id"].as_i64().unwrap());
    assert_eq!(files("DATA"), 2, "one file per partition after the minor");
    assert_eq!(rows(), before, "the minor kept the rows");
    assert!(sql_rows(&server, "OPTIMIZE m.t").is_empty(), "nothing is left worth a minor");

    sql_ok(&server, "DELETE FROM m.t WHERE id % 5 = 0");
    let after_delete = rows();
    assert_eq!(after_delete.len(), 160);
    assert!(files("POSITION_DELETES") > 0);
    let planned = sql_rows(&server, "OPTIMIZE m.t FULL");
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert_eq!(planned[0]["type"], "full", "{planned:?}");
    finished(planned[0]["process_id"].as_i64().unwrap());
    assert_eq!(files("POSITION_DELETES"), 0, "the full rewrite applied the deletes");
    assert_eq!(rows(), after_delete, "the full kept the rows");

    assert!(count("SELECT count(*) AS n FROM m.t$snapshots") >= 7);
    let expired = sql_rows(&server, "EXPIRE SNAPSHOTS m.t RETAIN 1");
    assert!(expired[0]["summary"].as_str().unwrap().contains("snapshots expired"), "{expired:?}");
    assert_eq!(count("SELECT count(*) AS n FROM m.t$snapshots"), 1);
    assert_eq!(rows(), after_delete, "expiry kept the rows");

    // A keyed table: OPTIMIZE folds its change store into its base store (one commit's change
    // files, fewer than the minor trigger's file count).
    sql_ok(
        &server,
        "CREATE TABLE m.k (id BIGINT, name STRING, PRIMARY KEY (id)) \
         TBLPROPERTIES ('self-optimizing.minor.trigger.interval' = '99999999999999', \
         'self-optimizing.minor.trigger.file-count' = '100000')",
    );
    sql_ok(&server, "INSERT INTO m.k SELECT value, 'v' || CAST(value AS VARCHAR) FROM range(0, 60)");
    let keyed_rows = || sql_rows(&server, "SELECT * FROM m.k ORDER BY id");
    let before = keyed_rows();
    assert_eq!(before.len(), 60);
    let planned = sql_rows(&server, "OPTIMIZE m.k");
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert_eq!(planned[0]["type"], "minor", "{planned:?}");
    let id = planned[0]["process_id"].as_i64().unwrap();
    let path = format!("/api/v1/tables/local/m/k/optimizing/processes/{id}");
    let process =
        server.wait_for("the keyed process to end", &path, Duration::from_secs(60), |p| p["status"] != "running");
    assert_eq!(process["status"], "success", "{process}");
    assert!(process["stores"]["changeInputFiles"].as_i64().unwrap() > 0, "{process}");
    assert_eq!(keyed_rows(), before, "folding kept the rows");

    // INSERT OVERWRITE over folded base files and changes not folded yet, then changes after
    // it, folded by the next process: the rows stay what the statements say.
    let fold = |what: &str| {
        let planned = sql_rows(&server, "OPTIMIZE m.k");
        assert_eq!(planned.len(), 1, "{what}: {planned:?}");
        let id = planned[0]["process_id"].as_i64().unwrap();
        let path = format!("/api/v1/tables/local/m/k/optimizing/processes/{id}");
        let process = server.wait_for(what, &path, Duration::from_secs(60), |p| p["status"] != "running");
        assert_eq!(process["status"], "success", "{process}");
    };
    sql_ok(&server, "UPDATE m.k SET name = 'u' WHERE id % 10 = 0");
    sql_ok(&server, "INSERT OVERWRITE m.k SELECT id, upper(name) FROM m.k WHERE id < 30");
    let overwritten = keyed_rows();
    let expected: Vec<(i64, String)> =
        (0..30).map(|i| (i, if i % 10 == 0 { "U".to_string() } else { format!("V{i}") })).collect();
    let pairs = |rows: &[serde_json::Value]| -> Vec<(i64, String)> {
        rows.iter().map(|r| (r["id"].as_i64().unwrap(), r["name"].as_str().unwrap().to_string())).collect()
    };
    assert_eq!(pairs(&overwritten), expected, "the overwrite replaced the table");
    sql_ok(&server, "INSERT INTO m.k VALUES (100, 'new')");
    sql_ok(&server, "DELETE FROM m.k WHERE id = 5");
    sql_ok(&server, "UPDATE m.k SET name = 'three' WHERE id = 3");
    let before = keyed_rows();
    let mut expected: Vec<(i64, String)> = expected.into_iter().filter(|(id, _)| *id != 5).collect();
    expected[3].1 = "three".into();
    expected.push((100, "new".into()));
    assert_eq!(pairs(&before), expected, "the changes after the overwrite apply on top of it");
    fold("the fold after the overwrite");
    assert_eq!(keyed_rows(), before, "folding after the overwrite kept the rows");

    for (sql, error) in [
        ("OPTIMIZE m.nope", "m.nope"),
        ("EXPIRE SNAPSHOTS m.t RETAIN 0", "at least 1"),
        ("OPTIMIZE m.t__change", "m.t__change"),
    ] {
        let output = std::process::Command::new(crate::common::LOCH)
            .args(["sql", "--ams", &server.url, "-e", sql])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(error), "{sql}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{sql}: one line: {stderr}");
    }
    server.stop("TERM");
}

/// Time travel on a keyed table reads both stores as of one moment: at each moment between
/// statements (upserts, a fold into the base store, deletes, an overwrite) the table read
/// `FOR SYSTEM_TIME AS OF` that moment is the table read then; a base snapshot id reads the
/// change store as of its commit.
#[test]
fn keyed_time_travel_reads_both_stores_as_of_one_moment() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), loch_testkit::free_port());
    sql_ok(&server, "CREATE NAMESPACE m");
    sql_ok(
        &server,
        "CREATE TABLE m.k (id BIGINT, name STRING, PRIMARY KEY (id)) \
         TBLPROPERTIES ('self-optimizing.minor.trigger.interval' = '99999999999999', \
         'self-optimizing.minor.trigger.file-count' = '100000')",
    );
    let rows = || sql_rows(&server, "SELECT * FROM m.k ORDER BY id");
    let mut moments: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    let mark = |moments: &mut Vec<_>| {
        std::thread::sleep(Duration::from_millis(40));
        let now = sql_rows(&server, "SELECT CAST(now() AS VARCHAR) AS t")[0]["t"].as_str().unwrap().to_string();
        moments.push((now, rows()));
        std::thread::sleep(Duration::from_millis(40));
    };
    sql_ok(&server, "INSERT INTO m.k SELECT value, 'v' || CAST(value AS VARCHAR) FROM range(0, 20)");
    mark(&mut moments);
    sql_ok(&server, "UPDATE m.k SET name = 'u' WHERE id % 3 = 0");
    mark(&mut moments);
    let planned = sql_rows(&server, "OPTIMIZE m.k");
    assert_eq!(planned.len(), 1, "{planned:?}");
    let id = planned[0]["process_id"].as_i64().unwrap();
    let path = format!("/api/v1/tables/local/m/k/optimizing/processes/{id}");
    let process = server.wait_for("the fold", &path, Duration::from_secs(60), |p| p["status"] != "running");
    assert_eq!(process["status"], "success", "{process}");
    mark(&mut moments);
    let base_snapshot = sql_rows(&server, "SELECT snapshot_id FROM m.k$snapshots ORDER BY committed_at DESC LIMIT 1")
        [0]["snapshot_id"]
        .as_i64()
        .unwrap();
    sql_ok(&server, "DELETE FROM m.k WHERE id < 5");
    mark(&mut moments);
    sql_ok(&server, "INSERT OVERWRITE m.k SELECT id, upper(name) FROM m.k WHERE id > 15");
    mark(&mut moments);
    assert_eq!(moments[4].1.len(), 4, "{:?}", moments[4].1);
    for (i, (at, expected)) in moments.iter().enumerate() {
        let read = sql_rows(&server, &format!("SELECT * FROM m.k FOR SYSTEM_TIME AS OF '{at}' ORDER BY id"));
        assert_eq!(&read, expected, "moment {i} ({at})");
    }
    let read = sql_rows(&server, &format!("SELECT * FROM m.k FOR SYSTEM_VERSION AS OF {base_snapshot} ORDER BY id"));
    assert_eq!(read, moments[2].1, "the fold's base snapshot with the change store as of its commit");
    assert_ne!(moments[0].1, moments[1].1);
    assert_ne!(moments[3].1, moments[4].1);
    server.stop("TERM");
}

/// A write whose commit loses a race (here an append landing while an `UPDATE` computes) runs
/// again on the new state instead of failing, and the rows are those of both statements.
#[test]
fn a_write_that_loses_a_commit_race_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), loch_testkit::free_port());
    sql_ok(&server, "CREATE NAMESPACE m");
    sql_ok(&server, "CREATE TABLE m.t (id BIGINT, n INT) TBLPROPERTIES ('self-optimizing.enabled' = 'false')");
    sql_ok(&server, "INSERT INTO m.t SELECT value, 0 FROM range(0, 20)");
    // The scalar subquery keeps the UPDATE busy for seconds between reading and committing.
    let update = std::process::Command::new(crate::common::LOCH)
        .args([
            "sql",
            "--ams",
            &server.url,
            "-e",
            "UPDATE m.t SET n = n + 1 WHERE id < 10 AND (SELECT sum(value % 7) FROM range(0, 600000000)) > 0",
        ])
        .env("RUST_LOG", "loch_sql=debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    sql_ok(&server, "INSERT INTO m.t VALUES (100, 0)");
    let output = update.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("lost a race"), "the append landed while the UPDATE computed: {stderr}");
    let rows = sql_rows(&server, "SELECT id, n FROM m.t ORDER BY id");
    let got: Vec<(i64, i64)> = rows.iter().map(|r| (r["id"].as_i64().unwrap(), r["n"].as_i64().unwrap())).collect();
    let mut expected: Vec<(i64, i64)> = (0..20).map(|i| (i, i64::from(i < 10))).collect();
    expected.push((100, 0));
    assert_eq!(got, expected);
    server.stop("TERM");
}
