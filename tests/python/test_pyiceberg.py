"""PyIceberg against a running Loch server.

The Rust test suite starts the server (SQLite or PostgreSQL, file:// or s3:// warehouse) and
runs this file with LOCH_URI, LOCH_WAREHOUSE and, when authentication is on, LOCH_CREDENTIAL.
"""

import os
import uuid

import pyarrow as pa
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import (
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import GreaterThanOrEqual
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "category", StringType(), required=False),
    NestedField(3, "value", DoubleType(), required=False),
)
SPEC = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="category"))


@pytest.fixture
def catalog():
    props = {"uri": os.environ["LOCH_URI"], "warehouse": os.environ.get("LOCH_WAREHOUSE", "local")}
    if os.environ.get("LOCH_CREDENTIAL"):
        props["credential"] = os.environ["LOCH_CREDENTIAL"]
    return load_catalog("loch", type="rest", **props)


@pytest.fixture
def namespace(catalog):
    name = f"py_{uuid.uuid4().hex[:8]}"
    catalog.create_namespace(name, {"owner": "pytest"})
    return name


def rows(arrow_schema, ids, category, note=None):
    data = [{"id": i, "category": category, "value": i / 2} for i in ids]
    if note is not None:
        for row in data:
            row["note"] = note
    return pa.Table.from_pylist(data, schema=arrow_schema)


def contents(table):
    return sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])


def test_table_lifecycle(catalog, namespace):
    assert (namespace,) in catalog.list_namespaces()
    assert catalog.load_namespace_properties(namespace)["owner"] == "pytest"
    ident = f"{namespace}.orders"
    table = catalog.create_table(ident, schema=SCHEMA, partition_spec=SPEC)
    arrow_schema = table.schema().as_arrow()

    # Three appends, read back exactly those rows.
    batches = [rows(arrow_schema, range(0, 5), "a"), rows(arrow_schema, range(10, 15), "b"), rows(arrow_schema, range(20, 25), "a")]
    for batch in batches:
        table.append(batch)
    expected = sorted(pa.concat_tables(batches).to_pylist(), key=lambda r: r["id"])
    assert contents(catalog.load_table(ident)) == expected
    assert len(table.snapshots()) == 3

    # Add a column and append again.
    with table.update_schema() as update:
        update.add_column("note", StringType())
    table = catalog.load_table(ident)
    assert table.schema().find_field("note")
    table.append(rows(table.schema().as_arrow(), [30, 31], "c", note="new"))
    got = contents(catalog.load_table(ident))
    assert [r["id"] for r in got] == list(range(0, 5)) + list(range(10, 15)) + list(range(20, 25)) + [30, 31]
    assert all(r["note"] is None for r in got if r["id"] < 30)
    assert all(r["note"] == "new" for r in got if r["id"] >= 30)

    # Delete rows by filter.
    table.delete("id >= 10 and id < 15")
    got = contents(catalog.load_table(ident))
    assert [r["id"] for r in got] == list(range(0, 5)) + list(range(20, 25)) + [30, 31]

    # Overwrite a part, then everything.
    table = catalog.load_table(ident)
    table.overwrite(rows(table.schema().as_arrow(), [40], "d", note="x"), overwrite_filter=GreaterThanOrEqual("id", 30))
    assert [r["id"] for r in contents(catalog.load_table(ident))] == list(range(0, 5)) + list(range(20, 25)) + [40]
    table = catalog.load_table(ident)
    replacement = rows(table.schema().as_arrow(), [100, 101], "z", note="final")
    table.overwrite(replacement)
    assert contents(catalog.load_table(ident)) == sorted(replacement.to_pylist(), key=lambda r: r["id"])

    # Rename.
    renamed = f"{namespace}.orders_renamed"
    catalog.rename_table(ident, renamed)
    assert not catalog.table_exists(ident)
    table = catalog.load_table(renamed)
    assert [r["id"] for r in contents(table)] == [100, 101]

    # Drop with purge: data, manifests and metadata files are gone.
    files = [f for f in table.inspect.files().column("file_path").to_pylist()]
    files += table.inspect.manifests().column("path").to_pylist()
    files += [table.metadata_location] + [entry.metadata_file for entry in table.metadata.metadata_log]
    files += [s.manifest_list for s in table.snapshots()]
    assert files and all(table.io.new_input(f).exists() for f in files)
    catalog.purge_table(renamed)
    assert not catalog.table_exists(renamed)
    left = [f for f in files if table.io.new_input(f).exists()]
    assert left == []


def test_expected_exceptions(catalog, namespace):
    with pytest.raises(NoSuchTableError):
        catalog.load_table(f"{namespace}.missing")
    with pytest.raises(NoSuchNamespaceError):
        catalog.list_tables(f"{namespace}_missing")
    with pytest.raises(NoSuchNamespaceError):
        catalog.create_table(f"{namespace}_missing.t", schema=SCHEMA)
    catalog.create_table(f"{namespace}.t", schema=SCHEMA)
    with pytest.raises(TableAlreadyExistsError):
        catalog.create_table(f"{namespace}.t", schema=SCHEMA)
    with pytest.raises(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace)
    with pytest.raises(NamespaceNotEmptyError):
        catalog.drop_namespace(namespace)
    with pytest.raises(NoSuchTableError):
        catalog.drop_table(f"{namespace}.missing")
    catalog.drop_table(f"{namespace}.t")
    catalog.drop_namespace(namespace)
    with pytest.raises(NoSuchNamespaceError):
        catalog.load_namespace_properties(namespace)


def test_create_table_transaction(catalog, namespace):
    ident = f"{namespace}.ctas"
    tx = catalog.create_table_transaction(ident, schema=SCHEMA, partition_spec=SPEC, properties={"k": "v"})
    tx.append(rows(SCHEMA.as_arrow(), [1, 2, 3], "a"))
    tx.commit_transaction()
    table = catalog.load_table(ident)
    assert [r["id"] for r in contents(table)] == [1, 2, 3]
    assert table.properties["k"] == "v"
    assert table.spec().fields[0].name == "category"


def test_namespace_properties_and_nesting(catalog, namespace):
    catalog.update_namespace_properties(namespace, removals={"owner"}, updates={"team": "data"})
    assert catalog.load_namespace_properties(namespace) == {"team": "data"}
    catalog.create_namespace((namespace, "child"))
    assert catalog.list_namespaces(namespace) == [(namespace, "child")]
    catalog.create_table((namespace, "child", "t"), schema=SCHEMA)
    assert catalog.list_tables((namespace, "child")) == [(namespace, "child", "t")]
