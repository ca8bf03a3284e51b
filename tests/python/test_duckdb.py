"""DuckDB (its iceberg extension, from PyPI wheels, offline) against a running Loch server.

The Rust test suite starts the server and runs this file with LOCH_URI (the REST base,
`http://HOST:PORT/api/iceberg/rest`), LOCH_WAREHOUSE (the catalog name, default `local`) and,
when authentication is on, LOCH_CREDENTIAL (`client:secret`, handed to DuckDB as an OAuth2
client-credentials secret).

PyIceberg writes a table with appends, a copy-on-write delete and a position-delete file (PyIceberg
0.12 writes no merge-on-read deletes, so the delete file is made by hand and committed the way a
RowDelta would); DuckDB attaches Loch as an Iceberg REST catalog, lists it and reads the table.
DuckDB then writes a table of its own (its DELETE and UPDATE write position deletes) that PyIceberg
reads back.

DuckDB 1.4.4 limitations, not Loch's (so not exercised here): CREATE TABLE AS SELECT on a file://
warehouse fails in DuckDB's own mkdir of `file:///.../data` (CREATE TABLE then INSERT works), and
equality deletes on a long column fail in its reader (`Expected vector of type INT32, but found
INT64`). DuckDB sends the prefix from /v1/config percent-encoded (`catalogs%2Flocal`).
"""

import os
import uuid

import duckdb
import duckdb_ext
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestContent, ManifestWriterV2
from pyiceberg.schema import Schema
from pyiceberg.table.snapshots import Operation
from pyiceberg.table.update.snapshot import _FastAppendFiles
from pyiceberg.typedef import Record
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "category", StringType(), required=False),
    NestedField(3, "value", DoubleType(), required=False),
)
# Rows removed by the position-delete file: one in the file rewritten by the copy-on-write
# delete, three in an untouched appended file (its first, a middle and its last row).
POSITION_DELETED = {5, 10, 14, 19}


def uri():
    return os.environ["LOCH_URI"].rstrip("/")


def warehouse():
    return os.environ.get("LOCH_WAREHOUSE", "local")


@pytest.fixture(scope="module")
def catalog():
    props = {"uri": uri(), "warehouse": warehouse()}
    if os.environ.get("LOCH_CREDENTIAL"):
        props["credential"] = os.environ["LOCH_CREDENTIAL"]
    return load_catalog("loch", type="rest", **props)


def sql_string(value):
    return "'" + str(value).replace("'", "''") + "'"


@pytest.fixture
def duck():
    """A DuckDB connection with the iceberg extension loaded from the duckdb-ext wheels (no
    download) and Loch attached as `loch`."""
    con = duckdb.connect()
    extensions = os.path.join(list(duckdb_ext.__path__)[0], "extensions")
    con.execute("SET extension_directory = ?", [extensions])
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    for extension in ("httpfs", "avro", "iceberg"):
        con.execute(f"LOAD {extension}")
    options = [f"TYPE iceberg, ENDPOINT {sql_string(uri())}"]
    credential = os.environ.get("LOCH_CREDENTIAL")
    if credential:
        client_id, _, secret = credential.partition(":")
        con.execute(
            "CREATE SECRET loch_oauth (TYPE iceberg, "
            f"CLIENT_ID {sql_string(client_id)}, CLIENT_SECRET {sql_string(secret)}, "
            f"OAUTH2_SERVER_URI {sql_string(uri() + '/v1/oauth/tokens')})"
        )
        options.append("SECRET loch_oauth")
    else:
        options.append("AUTHORIZATION_TYPE 'none'")
    con.execute(f"ATTACH {sql_string(warehouse())} AS loch ({', '.join(options)})")
    yield con
    con.close()


class _DeleteManifestWriter(ManifestWriterV2):
    """A v2 manifest writer for delete files (PyIceberg only writes data manifests)."""

    def content(self):
        return ManifestContent.DELETES

    @property
    def _meta(self):
        return {**super()._meta, "content": "deletes"}


class _AddDeleteFiles(_FastAppendFiles):
    """A fast append whose new manifest holds delete files: a RowDelta without data files."""

    def new_manifest_writer(self, spec):
        return _DeleteManifestWriter(
            spec=spec,
            schema=self.schema(),
            output_file=self.new_manifest_output(),
            snapshot_id=self._snapshot_id,
            avro_compression=self._compression,
        )


def add_position_deletes(table, doomed_ids):
    """Commit one position-delete file removing the rows whose id is in `doomed_ids` (an
    unpartitioned table: one delete file may reference every data file)."""
    entries = []
    for path in table.inspect.files().column("file_path").to_pylist():
        with table.io.new_input(path).open() as f:
            ids = pq.read_table(f, columns=["id"]).column("id").to_pylist()
        entries += [(path, pos) for pos, id_ in enumerate(ids) if id_ in doomed_ids]
    entries.sort()
    assert len(entries) == len(doomed_ids), entries
    schema = pa.schema(
        [
            pa.field("file_path", pa.string(), nullable=False, metadata={"PARQUET:field_id": "2147483546"}),
            pa.field("pos", pa.int64(), nullable=False, metadata={"PARQUET:field_id": "2147483545"}),
        ]
    )
    data = pa.Table.from_pylist([{"file_path": p, "pos": n} for p, n in entries], schema=schema)
    location = table.location_provider().new_data_location(f"pos-deletes-{uuid.uuid4()}.parquet")
    with table.io.new_output(location).create() as f:
        pq.write_table(data, f)
    delete_file = DataFile.from_args(
        content=DataFileContent.POSITION_DELETES,
        file_path=location,
        file_format=FileFormat.PARQUET,
        partition=Record(),
        record_count=len(entries),
        file_size_in_bytes=len(table.io.new_input(location)),
    )
    delete_file.spec_id = table.metadata.default_spec_id
    with table.transaction() as tx:
        producer = _AddDeleteFiles(operation=Operation.DELETE, transaction=tx, io=table.io)
        producer.append_data_file(delete_file)
        producer.commit()


def row(i, tag):
    return {"id": i, "category": tag, "value": i / 2}


@pytest.fixture(scope="module")
def written(catalog):
    """A PyIceberg-written table with a copy-on-write delete and a position-delete file. Returns
    (namespace, table name, expected rows sorted by id, {snapshot id: row count})."""
    namespace = f"duck_{uuid.uuid4().hex[:8]}"
    catalog.create_namespace(namespace)
    table = catalog.create_table(f"{namespace}.events", schema=SCHEMA)
    arrow_schema = table.schema().as_arrow()
    expected = {}
    for k in range(3):
        batch = [row(i, f"c{k}") for i in range(k * 10, k * 10 + 10)]
        table.append(pa.Table.from_pylist(batch, schema=arrow_schema))
        expected.update((r["id"], r) for r in batch)
    table.delete("id < 3")  # copy-on-write: rewrites the first file
    for i in range(3):
        del expected[i]
    add_position_deletes(table, POSITION_DELETED)
    for i in POSITION_DELETED:
        del expected[i]

    table = catalog.load_table(f"{namespace}.events")
    assert [f["content"] for f in table.inspect.delete_files().to_pylist()] == [DataFileContent.POSITION_DELETES]
    rows = sorted(expected.values(), key=lambda r: r["id"])
    assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"]) == rows
    counts = {s.snapshot_id: table.scan(snapshot_id=s.snapshot_id).to_arrow().num_rows for s in table.snapshots()}
    assert sorted(counts.values()) == [10, 20, 23, 27, 30]
    return namespace, "events", rows, counts


def test_lists_and_reads_table_with_deletes(duck, written):
    namespace, name, rows, counts = written
    # Listing: namespaces as schemas, tables per namespace.
    schemas = duck.execute("SELECT schema_name FROM duckdb_schemas() WHERE database_name = 'loch'").fetchall()
    assert (namespace,) in schemas
    tables = {(r[0], r[1], r[2]) for r in duck.execute("SHOW ALL TABLES").fetchall()}
    assert ("loch", namespace, name) in tables
    listed = duck.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'loch' AND schema_name = ?", [namespace]
    ).fetchall()
    assert listed == [(name,)]

    # Reading: exactly the live rows, the position-deleted and copy-on-write-deleted ones absent.
    table = f"loch.{namespace}.{name}"
    got = duck.execute(f"SELECT id, category, value FROM {table} ORDER BY id").fetchall()
    assert got == [(r["id"], r["category"], r["value"]) for r in rows]
    c1 = [r["id"] for r in rows if r["category"] == "c1"]
    assert duck.execute(f"SELECT count(*), sum(id) FROM {table} WHERE category = 'c1'").fetchall() == [(len(c1), sum(c1))]
    # Every snapshot, by time travel: the deleted rows are there before their delete.
    for snapshot_id, count in counts.items():
        assert duck.execute(f"SELECT count(*) FROM {table} AT (VERSION => {snapshot_id})").fetchall() == [(count,)]


def test_duckdb_writes_merge_on_read_deletes(duck, catalog):
    namespace = f"duckw_{uuid.uuid4().hex[:8]}"
    table = f"loch.{namespace}.items"
    duck.execute(f"CREATE SCHEMA loch.{namespace}")
    duck.execute(f"CREATE TABLE {table} (id BIGINT, name VARCHAR)")
    duck.execute(f"INSERT INTO {table} SELECT i, 'a' || i FROM range(0, 10) r(i)")
    duck.execute(f"INSERT INTO {table} SELECT i, 'b' || i FROM range(10, 20) r(i)")
    duck.execute(f"DELETE FROM {table} WHERE id % 3 = 0")
    duck.execute(f"UPDATE {table} SET name = 'updated' WHERE id = 10")
    expected = [(i, "updated" if i == 10 else ("a" if i < 10 else "b") + str(i)) for i in range(20) if i % 3 != 0]

    assert duck.execute(f"SELECT id, name FROM {table} ORDER BY id").fetchall() == expected
    loaded = catalog.load_table(f"{namespace}.items")
    assert sorted((r["id"], r["name"]) for r in loaded.scan().to_arrow().to_pylist()) == expected
    assert DataFileContent.POSITION_DELETES in loaded.inspect.delete_files().column("content").to_pylist()
    operations = [s.summary.operation for s in loaded.snapshots()]
    assert operations == [Operation.APPEND, Operation.APPEND, Operation.DELETE, Operation.OVERWRITE]

    duck.execute(f"DROP TABLE {table}")
    assert not catalog.table_exists(f"{namespace}.items")


def test_duckdb_reads_both_stores_of_a_keyed_table(duck):
    """A keyed (Mixed-Iceberg) table created through the management API and written through the
    ingest route: DuckDB reads its base store `t` and its change store `t@change` as plain
    Iceberg tables through the REST catalog, change rows with Amoro's `_file_offset`."""
    import json
    import urllib.request

    root = uri().removesuffix("/api/iceberg/rest")

    def call(method, path, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(root + path, data=data, method=method, headers={"Content-Type": content_type})
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    ns = f"keyed_{uuid.uuid4().hex[:8]}"
    call("POST", f"/api/iceberg/rest/v1/catalogs/{warehouse()}/namespaces", {"namespace": [ns]})
    call(
        "POST",
        f"/api/v1/catalogs/{warehouse()}/namespaces/{ns}/tables",
        {
            "name": "orders",
            "format": "mixed-iceberg",
            "primary_key": ["id"],
            "schema": {
                "type": "struct",
                "schema-id": 0,
                "fields": [
                    {"id": 1, "name": "id", "required": True, "type": "long"},
                    {"id": 2, "name": "status", "required": False, "type": "string"},
                ],
            },
        },
    )
    rows = pa.table(
        {
            "id": pa.array([1, 2, 3, 2, 2], pa.int64()),
            "status": ["a", "b", "c", "b", "b2"],
            "_op": ["+I", "+I", "+I", "-U", "+U"],
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    answer = call(
        "POST",
        f"/api/v1/tables/{warehouse()}/{ns}/orders/changes",
        sink.getvalue().to_pybytes(),
        "application/vnd.apache.arrow.stream",
    )
    assert answer["rows"] == 5, answer
    tables = {r[0] for r in duck.execute(f"SHOW TABLES FROM loch.{ns}").fetchall()}
    assert {"orders", "orders@change"} <= tables, tables
    assert duck.execute(f"SELECT count(*) FROM loch.{ns}.orders").fetchone()[0] == 0
    change = duck.execute(f'SELECT id, status FROM loch.{ns}."orders@change" ORDER BY id, status').fetchall()
    assert change == [(1, "a"), (2, "b"), (2, "b"), (2, "b2"), (3, "c")], change
