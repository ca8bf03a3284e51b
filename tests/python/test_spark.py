"""Spark 3.5 + Iceberg 1.10.2 against a running Loch server, end to end.

The Rust test suite starts `loch serve` with a fresh file:// warehouse, one embedded optimizer
thread and a fast table refresh:

    LOCH_CATALOG_DEFAULT__WAREHOUSE=file:///fresh/dir LOCH_OPTIMIZER_LOCAL__THREADS=1 \
    LOCH_REFRESH__TABLES_INTERVAL=1s loch serve --data-dir DIR --bind 127.0.0.1:PORT

and runs this file with LOCH_URI (http://127.0.0.1:PORT/api/iceberg/rest), LOCH_WAREHOUSE
(default `local`), LOCH_MANAGEMENT (http://127.0.0.1:PORT) and, with authentication on,
LOCH_CREDENTIAL (id:secret). Spark writes a partitioned v2 table with merge-on-read DELETE,
UPDATE and MERGE plus schema evolution, Loch compacts it, Spark reads the same rows; a v3 table
with deletion vectors must be reported as blocked instead of failing optimizing over and over.

Needs pyspark 3.5, py4j and PyPI's snowpark-connect-deps-iceberg==1.0.2 (the Iceberg runtime
jar) plus Java 17; skipped when pyspark or the jar is missing, unless LOCH_TEST_REQUIRE_ALL=1.
"""

import datetime
import json
import os
import time
import uuid

import pytest

import spark_env

_MISSING = spark_env.missing_requirements()
if _MISSING:
    _REASON = f"SPARK END-TO-END TEST NOT RUN: {_MISSING}"
    if os.environ.get("LOCH_TEST_REQUIRE_ALL") == "1":
        pytest.fail(_REASON + " (LOCH_TEST_REQUIRE_ALL=1)", pytrace=False)
    pytest.skip(_REASON, allow_module_level=True)

COMPACTION_TIMEOUT_S = 120
BLOCKED_TIMEOUT_S = 60
QUIET_PERIOD_S = 10
OPTIMIZE_NOW = {
    "self-optimizing.enabled": "true",
    "self-optimizing.minor.trigger.file-count": "2",
    "self-optimizing.min-plan-interval": "1000",
}
MOR = {
    "write.delete.mode": "merge-on-read",
    "write.update.mode": "merge-on-read",
    "write.merge.mode": "merge-on-read",
    # Loch leaves the table alone while Spark builds it; the tests switch optimizing on.
    "self-optimizing.enabled": "false",
}
CATEGORIES = ("north", "south", "east")
BASE_TS = datetime.datetime(2024, 1, 1)


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loch():
    return spark_env.Loch()


@pytest.fixture(scope="module")
def spark(loch):
    session = loch.spark_session()
    yield session
    loch.stop_spark(session)


@pytest.fixture(scope="module")
def namespace(spark):
    name = f"spark_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE NAMESPACE loch.{name}")
    return name


# -- helpers ----------------------------------------------------------------------------------------


def tblproperties(props):
    return ", ".join(f"'{k}'='{v}'" for k, v in props.items())


def lit(value):
    """A Spark SQL literal for a Python value (doubles with a D suffix, exact for our values)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}L"
    if isinstance(value, float):
        return f"{value!r}D"
    if isinstance(value, datetime.datetime):
        return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S}'"
    return "'" + str(value).replace("'", "''") + "'"


def values_clause(rows, columns):
    return ", ".join("(" + ", ".join(lit(row[c]) for c in columns) + ")" for row in rows)


def read_rows(spark, table, columns):
    """The table's rows as sorted tuples; timestamps as UTC strings (the session time zone)."""
    select = ", ".join(f"CAST({c} AS STRING) AS {c}" if c == "ts" else c for c in columns)
    return [tuple(r) for r in spark.sql(f"SELECT {select} FROM {table} ORDER BY id").collect()]


def expected_rows(model, columns):
    out = []
    for row_id in sorted(model):
        row = model[row_id]
        out.append(tuple(f"{row[c]:%Y-%m-%d %H:%M:%S}" if c == "ts" else row[c] for c in columns))
    return out


def assert_rows(spark, table, model, columns, stage):
    actual = read_rows(spark, table, columns)
    expected = expected_rows(model, columns)
    if actual != expected:
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        pytest.fail(
            f"{table} after {stage}: {len(actual)} rows, expected {len(expected)}\n"
            f"  expected but not read: {missing[:10]}\n  read but not expected: {extra[:10]}"
        )


def file_counts(spark, table):
    """{(content, file_format): count} of the current snapshot's live files."""
    rows = spark.sql(f"SELECT content, file_format, count(*) AS n FROM {table}.files GROUP BY content, file_format").collect()
    return {(r["content"], r["file_format"]): r["n"] for r in rows}


def count_content(counts, content):
    return sum(n for (c, _), n in counts.items() if c == content)


def snapshots(spark, table):
    rows = spark.sql(f"SELECT snapshot_id, operation, summary FROM {table}.snapshots ORDER BY committed_at").collect()
    return [(r["snapshot_id"], r["operation"], dict(r["summary"] or {})) for r in rows]


def management_view(loch, namespace, table):
    status, state = loch.optimizing(namespace, table)
    pstatus, processes = loch.processes(namespace, table)
    return (
        f"GET .../optimizing -> {status}: {json.dumps(state, indent=1)}\n"
        f"GET .../optimizing/processes -> {pstatus}: {json.dumps(processes[:5] if isinstance(processes, list) else processes, indent=1)}"
    )


def table_processes(loch, namespace, table):
    status, processes = loch.processes(namespace, table)
    assert status == 200, f"GET {loch.optimizing_url(namespace, table, '/processes')} -> {status}: {processes}"
    assert isinstance(processes, list), f"processes is not a JSON list: {processes}"
    return processes


def make_row(i, **overrides):
    row = {
        "id": i,
        "category": CATEGORIES[i % 3],
        "value": i * 1.25,
        "ts": BASE_TS + datetime.timedelta(hours=3 * i, minutes=17 * i, seconds=i),
        "qty": i * 10,
    }
    row.update(overrides)
    return row


def wait_until_settled(loch, namespace, table, timeout_s=60):
    """Until no optimizing process of the table is running (two polls in a row)."""
    deadline = time.monotonic() + timeout_s
    quiet = 0
    while quiet < 2:
        status, state = loch.optimizing(namespace, table)
        assert status == 200, (status, state)
        running = [p for p in table_processes(loch, namespace, table) if p.get("status") == "running"]
        quiet = quiet + 1 if not running and state.get("processId") is None else 0
        if time.monotonic() > deadline:
            pytest.fail(f"optimizing of {table} still running after {timeout_s}s\n" + management_view(loch, namespace, table))
        time.sleep(0.5)


# -- v2: merge-on-read DML and schema evolution written by Spark --------------------------------------

V2_COLUMNS = ("id", "category", "value", "ts", "qty")
V2_EVOLVED = ("id", "category", "amount", "ts", "qty", "note")


@pytest.fixture(scope="module")
def mor_table(spark, namespace):
    """A partitioned v2 table built by Spark; returns (qualified name, model {id: row})."""
    name = f"loch.{namespace}.events"
    spark.sql(
        f"CREATE TABLE {name} (id bigint, category string, value double, ts timestamp, qty int) USING iceberg "
        f"PARTITIONED BY (category) TBLPROPERTIES ('format-version'='2', {tblproperties(MOR)})"
    )
    model = {}

    # Four INSERTs over three partitions: twelve small data files.
    for batch in range(4):
        rows = [make_row(i) for i in range(batch * 12 + 1, batch * 12 + 13)]
        spark.sql(f"INSERT INTO {name} VALUES {values_clause(rows, V2_COLUMNS)}")
        model.update({r["id"]: r for r in rows})
    assert_rows(spark, name, model, V2_COLUMNS, "4 inserts")
    assert count_content(file_counts(spark, name), 0) == 12

    # Merge-on-read DELETE.
    spark.sql(f"DELETE FROM {name} WHERE id % 5 = 0")
    model = {k: v for k, v in model.items() if k % 5 != 0}
    assert_rows(spark, name, model, V2_COLUMNS, "DELETE")

    # Merge-on-read UPDATE.
    spark.sql(f"UPDATE {name} SET value = value * 10, qty = qty + 1 WHERE category = 'south' AND id > 20")
    for row in model.values():
        if row["category"] == "south" and row["id"] > 20:
            row["value"] *= 10
            row["qty"] += 1
    assert_rows(spark, name, model, V2_COLUMNS, "UPDATE")

    # MERGE INTO: matched update, matched delete, not matched insert (5 was deleted above).
    source = [
        dict(make_row(3, value=-3.5, qty=333), op="update"),
        dict(make_row(22, value=-22.5, qty=2222), op="update"),
        dict(make_row(7), op="delete"),
        dict(make_row(41), op="delete"),
        dict(make_row(5, value=55.5, qty=555), op="insert"),
        dict(make_row(100, category="north", value=100.75, qty=1000), op="insert"),
        dict(make_row(101, category="east", value=101.75, qty=1010), op="insert"),
    ]
    spark.sql(
        f"""MERGE INTO {name} t
        USING (SELECT * FROM VALUES {values_clause(source, V2_COLUMNS + ("op",))}
               AS s(id, category, value, ts, qty, op)) s
        ON t.id = s.id
        WHEN MATCHED AND s.op = 'delete' THEN DELETE
        WHEN MATCHED THEN UPDATE SET t.value = s.value, t.qty = s.qty
        WHEN NOT MATCHED THEN INSERT (id, category, value, ts, qty) VALUES (s.id, s.category, s.value, s.ts, s.qty)"""
    )
    for src in source:
        if src["id"] in model and src["op"] == "delete":
            del model[src["id"]]
        elif src["id"] in model:
            model[src["id"]].update(value=src["value"], qty=src["qty"])
        else:
            model[src["id"]] = {c: src[c] for c in V2_COLUMNS}
    assert_rows(spark, name, model, V2_COLUMNS, "MERGE INTO")

    # Schema evolution: add a column, rename one, widen int -> bigint.
    spark.sql(f"ALTER TABLE {name} ADD COLUMN note string")
    spark.sql(f"ALTER TABLE {name} RENAME COLUMN value TO amount")
    spark.sql(f"ALTER TABLE {name} ALTER COLUMN qty TYPE bigint")
    for row in model.values():
        row["amount"] = row.pop("value")
        row["note"] = None
    assert_rows(spark, name, model, V2_EVOLVED, "schema evolution")
    schema = {f.name: f.dataType.simpleString() for f in spark.table(name).schema.fields}
    assert schema == {
        "id": "bigint",
        "category": "string",
        "amount": "double",
        "ts": "timestamp",
        "qty": "bigint",
        "note": "string",
    }, schema

    # Rows that need the new column and the wider type, then MoR DML across old and new files.
    new_rows = [make_row(i, amount=i * 0.5, qty=5_000_000_000 + i, note=f"new {i}") for i in range(200, 206)]
    for row in new_rows:
        del row["value"]
    spark.sql(f"INSERT INTO {name} VALUES {values_clause(new_rows, V2_EVOLVED)}")
    model.update({r["id"]: r for r in new_rows})
    spark.sql(f"UPDATE {name} SET note = 'touched', qty = qty + 3000000000 WHERE id IN (1, 2, 201)")
    for row_id in (1, 2, 201):
        model[row_id]["note"] = "touched"
        model[row_id]["qty"] += 3_000_000_000
    spark.sql(f"DELETE FROM {name} WHERE note = 'new 203' OR id = 4")
    del model[203], model[4]
    assert_rows(spark, name, model, V2_EVOLVED, "inserts, UPDATE and DELETE after schema evolution")
    return name, model


def test_merge_on_read_dml_and_schema_evolution(spark, mor_table):
    name, model = mor_table
    assert_rows(spark, name, model, V2_EVOLVED, "all DML")

    counts = file_counts(spark, name)
    position_deletes = count_content(counts, 1)
    assert position_deletes > 0, f"no position delete files: Spark did not write merge-on-read deletes? {counts}"
    assert count_content(counts, 2) == 0, f"unexpected equality delete files: {counts}"
    assert all(fmt == "PARQUET" for (_, fmt) in counts), counts
    # Merge-on-read: the original twelve data files are all still live (deletes did not rewrite them).
    assert count_content(counts, 0) > 12, counts
    rows = spark.sql(f"SELECT count(*) AS n FROM {name}.position_deletes").collect()
    assert rows[0]["n"] > 0, "position_deletes metadata table is empty"

    history = snapshots(spark, name)
    operations = [op for _, op, _ in history]
    assert "delete" in operations and "overwrite" in operations, operations
    assert "replace" not in operations, f"something rewrote the table while optimizing was disabled: {operations}"
    current = history[-1][2]
    assert int(current["total-position-deletes"]) > 0, current


# -- Loch compacts what Spark wrote ---------------------------------------------------------------------


def test_loch_compacts_merge_on_read_table(spark, loch, namespace, mor_table):
    name, model = mor_table
    table = name.rsplit(".", 1)[1]
    before = file_counts(spark, name)
    snapshot_before = snapshots(spark, name)[-1][0]
    partitions = len({row["category"] for row in model.values()})

    assert table_processes(loch, namespace, table) == [], (
        "Loch optimized a table with self-optimizing.enabled=false\n" + management_view(loch, namespace, table)
    )

    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({tblproperties(OPTIMIZE_NOW)})")
    deadline = time.monotonic() + COMPACTION_TIMEOUT_S
    process = None
    while process is None:
        processes = table_processes(loch, namespace, table)
        failed = [p for p in processes if p.get("status") == "failed"]
        if failed:
            pytest.fail(
                f"optimizing of {name} failed: {failed[0].get('failMessage')}\n" + management_view(loch, namespace, table)
            )
        done = [p for p in processes if p.get("status") == "success"]
        if done:
            process = done[-1]  # newest first: the oldest success is the first compaction
            break
        if time.monotonic() > deadline:
            pytest.fail(
                f"no successful optimizing process for {name} within {COMPACTION_TIMEOUT_S}s\n"
                + management_view(loch, namespace, table)
            )
        time.sleep(1)

    assert process["committedSnapshotId"], process
    # Stop Loch here so that what follows reads a settled table and Spark's later DML cannot
    # race an optimizing commit (a rewrite that lands first fails Spark's delete validation).
    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('self-optimizing.enabled'='false')")
    wait_until_settled(loch, namespace, table)
    assert process["targetSnapshotId"] == snapshot_before, (process, snapshot_before)
    assert process["inputFiles"] > process["outputFiles"] > 0, process
    status, tasks = loch.get_json(loch.optimizing_url(namespace, table, f"/processes/{process['id']}/tasks"))
    assert status == 200 and tasks, (status, tasks)
    assert all(t.get("retries", 0) == 0 and t.get("status") == "success" for t in tasks), tasks

    # The optimize snapshot, as Spark sees it and as the REST catalog serves it.
    spark.sql(f"REFRESH TABLE {name}")
    ordered = snapshots(spark, name)
    history = {sid: (op, summary) for sid, op, summary in ordered}
    assert process["committedSnapshotId"] in history, (process, list(history))
    op, summary = history[process["committedSnapshotId"]]
    assert op == "replace" and summary.get("snapshot.producer") == "OPTIMIZE", (op, summary)
    status, loaded = loch.load_table(namespace, table)
    assert status == 200, (status, loaded)
    served = {s["snapshot-id"]: s for s in loaded["metadata"]["snapshots"]}[process["committedSnapshotId"]]
    assert served["summary"].get("snapshot.producer") == "OPTIMIZE", served
    assert served["parent-snapshot-id"] == snapshot_before, served
    # One rewrite was enough: every partition is down to one file without deletes, nothing followed.
    assert ordered[-1][0] == process["committedSnapshotId"] == loaded["metadata"]["current-snapshot-id"], (
        [(sid, op) for sid, op, _ in ordered[-4:]],
        management_view(loch, namespace, table),
    )

    # Same rows, far fewer files: every input was a small fragment, so minor optimizing rewrote
    # each partition into one file with its position deletes applied.
    assert_rows(spark, name, model, V2_EVOLVED, "Loch's optimizing")
    after = file_counts(spark, name)
    assert count_content(after, 0) < count_content(before, 0), (before, after)
    assert partitions <= count_content(after, 0), after
    assert count_content(after, 1) == 0 and count_content(after, 2) == 0, (
        f"delete files left after minor optimizing: before {before}, after {after}\n" + management_view(loch, namespace, table)
    )
    state_status, state = loch.optimizing(namespace, table)
    assert state_status == 200 and state.get("lastMinorAt"), state

    # Time travel to before the rewrite still reads the same rows (old files were kept).
    time_travel = f"{name} VERSION AS OF {snapshot_before}"
    assert read_rows(spark, time_travel, V2_EVOLVED) == expected_rows(model, V2_EVOLVED)

    # Spark keeps writing merge-on-read on top of Loch's snapshot (sequence numbers must hold).
    spark.sql(f"DELETE FROM {name} WHERE id IN (8, 202)")
    spark.sql(f"UPDATE {name} SET note = 'after optimize' WHERE id = 9")
    late = make_row(300, amount=3.0, note="late")
    del late["value"]
    spark.sql(f"INSERT INTO {name} VALUES {values_clause([late], V2_EVOLVED)}")
    del model[8], model[202]
    model[9]["note"] = "after optimize"
    model[300] = late
    assert_rows(spark, name, model, V2_EVOLVED, "Spark DML after Loch's optimizing")


# -- v3 deletion vectors: reported as blocked, not failed over and over ------------------------------------

DV_COLUMNS = ("id", "category", "value", "ts", "qty")


def test_v3_deletion_vectors_are_blocked(spark, loch, namespace):
    table = "dv_events"
    name = f"loch.{namespace}.{table}"
    spark.sql(
        f"CREATE TABLE {name} (id bigint, category string, value double, ts timestamp, qty int) USING iceberg "
        f"PARTITIONED BY (category) TBLPROPERTIES ('format-version'='3', {tblproperties(MOR)})"
    )
    model = {}
    for batch in range(3):
        rows = [make_row(i) for i in range(batch * 10 + 1, batch * 10 + 11)]
        spark.sql(f"INSERT INTO {name} VALUES {values_clause(rows, DV_COLUMNS)}")
        model.update({r["id"]: r for r in rows})
    spark.sql(f"DELETE FROM {name} WHERE id % 3 = 0")
    model = {k: v for k, v in model.items() if k % 3 != 0}
    spark.sql(f"UPDATE {name} SET qty = -1 WHERE id IN (1, 11)")
    model[1]["qty"] = model[11]["qty"] = -1
    assert_rows(spark, name, model, DV_COLUMNS, "DELETE/UPDATE on a v3 table")

    deletes = spark.sql(
        f"SELECT file_format, referenced_data_file, content_offset, content_size_in_bytes FROM {name}.files WHERE content = 1"
    ).collect()
    assert deletes, f"no delete files in the v3 table: {file_counts(spark, name)}"
    assert {r["file_format"] for r in deletes} == {"PUFFIN"}, [r.asDict() for r in deletes]
    assert all(r["referenced_data_file"] and r["content_offset"] is not None for r in deletes), [r.asDict() for r in deletes]
    files_before = file_counts(spark, name)
    assert table_processes(loch, namespace, table) == []

    spark.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ({tblproperties(OPTIMIZE_NOW)})")
    deadline = time.monotonic() + BLOCKED_TIMEOUT_S
    while True:
        status, state = loch.optimizing(namespace, table)
        assert status == 200, (status, state)
        failed = [p for p in table_processes(loch, namespace, table) if p.get("status") == "failed"]
        if failed:
            pytest.fail(
                f"Loch tried to optimize a table with deletion vectors and failed instead of reporting it "
                f"blocked: {failed[0].get('failMessage')}\n" + management_view(loch, namespace, table)
            )
        if state.get("blocked"):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"{name} not reported blocked within {BLOCKED_TIMEOUT_S}s\n" + management_view(loch, namespace, table))
        time.sleep(1)
    assert "deletion vector" in str(state["blocked"]).lower(), state

    # Blocked stays blocked: no process fails or retries, the table is untouched.
    quiet_until = time.monotonic() + QUIET_PERIOD_S
    while time.monotonic() < quiet_until:
        processes = table_processes(loch, namespace, table)
        bad = [p for p in processes if p.get("status") in ("failed", "canceled")]
        assert not bad, "optimizing failed on a blocked table\n" + management_view(loch, namespace, table)
        for p in processes:
            _, tasks = loch.get_json(loch.optimizing_url(namespace, table, f"/processes/{p['id']}/tasks"))
            assert all(t.get("retries", 0) == 0 for t in tasks or []), tasks
        time.sleep(1)
    status, state = loch.optimizing(namespace, table)
    assert status == 200 and state.get("blocked"), f"no longer blocked: {state}"
    assert file_counts(spark, name) == files_before
    assert not [op for _, op, _ in snapshots(spark, name) if op == "replace"]
    assert_rows(spark, name, model, DV_COLUMNS, "the blocked period")
