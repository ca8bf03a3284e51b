"""Table helper for Loch's process-level tests, run with the test venv's Python.

    tables.py append NS.TABLE --appends N [--rows R] [--partitions P] [--start S] [--prop KEY=VALUE ...]
    tables.py digest NS.TABLE [--ref NAME]
    tables.py set-props NS.TABLE[,NS.TABLE...] KEY=VALUE ...
    tables.py reachable NS.TABLE
    tables.py overwrite NS.TABLE --rows R
    tables.py rows NS.TABLE
    tables.py delete NS.TABLE FILTER

`append` creates the namespace and table if needed (partitioned by `category` when P > 1) and
commits N appends of R rows spread over P categories; ids continue from --start. It prints the
SHA-256 of the rows it wrote, computed as `digest` does, so a test can check a read against it.
`digest` prints the table's rows as a count and a SHA-256 of the sorted rows, its live data and
delete file counts, and the current snapshot's summary, as one JSON line; with --ref, those of the
snapshot a branch or tag names.
`overwrite` replaces every row with R new ones (ids from 0) and prints their SHA-256.
`reachable` prints every file the table's snapshots reach (manifest lists, manifests, live data
and delete files), its current metadata file, and its snapshot count, as one JSON line.
`rows` prints every row (sorted by id, values as PyIceberg reads them, JSON) as one line.
`delete` deletes the rows matching a PyIceberg row filter (e.g. "id < 10").
The catalog comes from LOCH_URI, LOCH_WAREHOUSE (default `local`) and LOCH_CREDENTIAL.
"""

import argparse
import hashlib
import json
import os
import sys

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import DoubleType, LongType, NestedField, StringType

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "category", StringType(), required=False),
    NestedField(3, "value", DoubleType(), required=False),
    NestedField(4, "note", StringType(), required=False),
)
PARTITIONED = PartitionSpec(PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="category"))


def catalog():
    props = {"uri": os.environ["LOCH_URI"], "warehouse": os.environ.get("LOCH_WAREHOUSE", "local")}
    if os.environ.get("LOCH_CREDENTIAL"):
        props["credential"] = os.environ["LOCH_CREDENTIAL"]
    return load_catalog("loch", type="rest", **props)


def parse_props(pairs):
    props = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"property {pair!r} is not KEY=VALUE")
        props[key] = value
    return props


def load_or_create(cat, name, partitions, props):
    namespace = name.rsplit(".", 1)[0]
    try:
        cat.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    try:
        return cat.load_table(name)
    except NoSuchTableError:
        spec = PARTITIONED if partitions > 1 else UNPARTITIONED_PARTITION_SPEC
        return cat.create_table(name, schema=SCHEMA, partition_spec=spec, properties=props)


def append(args):
    cat = catalog()
    table = load_or_create(cat, args.table, args.partitions, parse_props(args.prop))
    arrow_schema = table.schema().as_arrow()
    next_id = args.start
    written = []
    for _ in range(args.appends):
        rows = []
        for i in range(args.rows):
            rows.append(
                {
                    "id": next_id,
                    "category": f"c{i % args.partitions:03d}",
                    "value": next_id * 0.5,
                    "note": f"row {next_id} " + "x" * (next_id % 17),
                }
            )
            next_id += 1
        table.append(pa.Table.from_pylist(rows, schema=arrow_schema))
        written.extend(rows)
    print(json.dumps({"appends": args.appends, "next_id": next_id, "rows": len(written), "sha256": rows_sha256(written)}))


def in_order(rows):
    """Rows by id; rows of one id (a keyed table without upsert keeps every insert) by their
    JSON, not by where the scan met them, which changes with how optimizing laid out the files."""
    return sorted(rows, key=lambda r: (r["id"], json.dumps(r, sort_keys=True, default=str)))


def rows_sha256(rows):
    return hashlib.sha256(json.dumps(in_order(rows), sort_keys=True, default=str).encode()).hexdigest()


def digest(args):
    table = catalog().load_table(args.table)
    snapshot = table.current_snapshot()
    if args.ref:
        snapshot = table.snapshot_by_name(args.ref)
        if snapshot is None:
            sys.exit(f"no ref {args.ref!r}")
        rows = table.scan(snapshot_id=snapshot.snapshot_id).to_arrow().to_pylist()
    else:
        rows = table.scan().to_arrow().to_pylist()
    sha = rows_sha256(rows)
    data_files = delete_files = 0
    if snapshot is not None:
        for manifest in snapshot.manifests(table.io):
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                if entry.data_file.content.value == 0:
                    data_files += 1
                else:
                    delete_files += 1
    summary = dict(snapshot.summary.additional_properties) if snapshot is not None else {}
    if snapshot is not None:
        summary["operation"] = snapshot.summary.operation.value
    print(
        json.dumps(
            {"rows": len(rows), "sha256": sha, "data_files": data_files, "delete_files": delete_files, "summary": summary}
        )
    )


def overwrite(args):
    table = catalog().load_table(args.table)
    rows = [
        {"id": i, "category": "c000", "value": i * 0.5, "note": f"row {i} " + "x" * (i % 17)} for i in range(args.rows)
    ]
    table.overwrite(pa.Table.from_pylist(rows, schema=table.schema().as_arrow()))
    print(json.dumps({"rows": len(rows), "sha256": rows_sha256(rows)}))


def rows(args):
    table = catalog().load_table(args.table)
    found = in_order(table.scan().to_arrow().to_pylist())
    print(json.dumps(found, default=str))


def delete(args):
    table = catalog().load_table(args.table)
    table.delete(args.filter)
    print(json.dumps({"ok": True}))


def reachable(args):
    table = catalog().load_table(args.table)
    files = set()
    for snapshot in table.metadata.snapshots:
        files.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            files.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                files.add(entry.data_file.file_path)
    print(
        json.dumps(
            {"files": sorted(files), "metadata": table.metadata_location, "snapshots": len(table.metadata.snapshots)}
        )
    )


def set_props(args):
    cat = catalog()
    props = parse_props(args.pairs)
    for name in args.table.split(","):
        with cat.load_table(name).transaction() as tx:
            tx.set_properties(props)
    print(json.dumps({"ok": True}))


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("append")
    p.add_argument("table")
    p.add_argument("--appends", type=int, required=True)
    p.add_argument("--rows", type=int, default=100)
    p.add_argument("--partitions", type=int, default=1)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--prop", action="append")
    p.set_defaults(run=append)
    p = commands.add_parser("digest")
    p.add_argument("table")
    p.add_argument("--ref")
    p.set_defaults(run=digest)
    p = commands.add_parser("set-props")
    p.add_argument("table")
    p.add_argument("pairs", nargs="+")
    p.set_defaults(run=set_props)
    p = commands.add_parser("overwrite")
    p.add_argument("table")
    p.add_argument("--rows", type=int, default=100)
    p.set_defaults(run=overwrite)
    p = commands.add_parser("rows")
    p.add_argument("table")
    p.set_defaults(run=rows)
    p = commands.add_parser("delete")
    p.add_argument("table")
    p.add_argument("filter")
    p.set_defaults(run=delete)
    p = commands.add_parser("reachable")
    p.add_argument("table")
    p.set_defaults(run=reachable)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
