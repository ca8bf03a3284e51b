"""Input and peer of `compaction-e2e-bench`: the same rows as N small appends, written by
PyIceberg into Loch and by pyarrow into a Delta table, then delta-rs `optimize.compact()`.

    e2e_compaction.py iceberg --uri URI --table NS.NAME --files N --rows R [--add-files]
    e2e_compaction.py delta --path DIR --files N --rows R --threads T [--deletes JSON]

`iceberg` creates NS.NAME through Loch's REST catalog with self-optimizing off and zstd level 3,
then appends N batches of R rows each (one commit each, as a streaming writer leaves them); it
prints {"rows": n, "seconds": s}. With --add-files the N files are written by pyarrow with
PyIceberg's settings (zstd level 3) and added in one commit (`add_files`): the same files to
compact, without the ~1 s per append that 2,000 growing commits cost PyIceberg.
`delta` writes the same N batches as pyarrow files (zstd level 3, as the Iceberg side's files),
converts DIR into a Delta table of them, then times
`optimize.compact(target_size=128 MiB, max_concurrent_tasks=T)` with zstd level 3; it prints
{"rows": n, "wall": s, "cpu": s, "files_out": n} (CPU of this process, from getrusage).
"""

import argparse
import json
import os
import resource
import sys
import time

import pyarrow as pa


def batch(index, rows):
    """Batch `index` of the input: mixed column types, as an events table holds them."""
    start = index * rows
    ids = pa.array(range(start, start + rows), pa.int64())
    ts = pa.array([1_700_000_000_000_000 + i * 1_000 for i in range(start, start + rows)], pa.timestamp("us", tz="UTC"))
    user = pa.array([f"user-{i % 5_000:05d}" for i in range(start, start + rows)], pa.string())
    event = pa.array([("click", "view", "purchase", "scroll")[i % 4] for i in range(start, start + rows)], pa.string())
    amount = pa.array([None if i % 10 == 0 else (i % 1_000) * 0.25 for i in range(start, start + rows)], pa.float64())
    qty = pa.array([i % 97 for i in range(start, start + rows)], pa.int32())
    flag = pa.array([i % 3 == 0 for i in range(start, start + rows)], pa.bool_())
    day = pa.array([19_000 + i // 100_000 for i in range(start, start + rows)], pa.date32())
    names = ["id", "ts", "user", "event", "amount", "qty", "flag", "day"]
    return pa.Table.from_arrays([ids, ts, user, event, amount, qty, flag, day], names=names)


def iceberg(args):
    from pyiceberg.catalog import load_catalog
    from pyiceberg.exceptions import NamespaceAlreadyExistsError

    catalog = load_catalog("loch", type="rest", uri=args.uri, warehouse="local")
    namespace, _ = args.table.split(".")
    try:
        catalog.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    properties = {
        "self-optimizing.enabled": "false",
        "write.parquet.compression-codec": "zstd",
        "write.parquet.compression-level": "3",
    }
    table = catalog.create_table(args.table, schema=batch(0, 1).schema, properties=properties)
    started = time.monotonic()
    if args.add_files:
        import pyarrow.parquet as pq

        paths = []
        for i in range(args.files):
            path = f"{table.location()}/data/input-{i:05d}.parquet"
            local = path.removeprefix("file://")
            os.makedirs(os.path.dirname(local), exist_ok=True)
            pq.write_table(batch(i, args.rows), local, compression="zstd", compression_level=3)
            paths.append(path)
        table.add_files(paths)
    else:
        for i in range(args.files):
            table.append(batch(i, args.rows))
            if i % 100 == 99:
                print(f"{args.table}: {i + 1} appends", file=sys.stderr)
    print(json.dumps({"rows": args.files * args.rows, "seconds": time.monotonic() - started}))


def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def delta(args):
    import pyarrow.parquet as pq
    from deltalake import DeltaTable, WriterProperties, convert_to_deltalake

    # The same kind of files Loch compacts: pyarrow-written, zstd level 3 (write_deltalake's
    # own writer would use snappy, which is cheaper to read).
    os.makedirs(args.path, exist_ok=True)
    deletes = json.loads(args.deletes) if args.deletes else None
    for i in range(args.files):
        path = os.path.join(args.path, f"input-{i:05d}.parquet")
        rows = batch(i, args.rows)
        if deletes:
            # The live rows of the Iceberg side, whose equality and position deletes remove
            # these: delta-rs compacts as many files holding the same live rows.
            start = i * args.rows
            pos = i % deletes["file_every"] == 0
            keep = [
                not (n % deletes["eq_every"] == 0 or (pos and (n - start) % deletes["pos_every"] == 1))
                for n in range(start, start + args.rows)
            ]
            rows = rows.filter(pa.array(keep))
        pq.write_table(rows, path, compression="zstd", compression_level=3)
    convert_to_deltalake(args.path)
    table = DeltaTable(args.path)
    properties = WriterProperties(compression="ZSTD", compression_level=3)
    wall, used = time.monotonic(), cpu()
    metrics = table.optimize.compact(
        target_size=128 << 20, max_concurrent_tasks=args.threads, writer_properties=properties
    )
    wall, used = time.monotonic() - wall, cpu() - used
    rows = DeltaTable(args.path).to_pyarrow_dataset().count_rows()
    out = {"rows": rows, "wall": wall, "cpu": used, "files_out": metrics["numFilesAdded"]}
    print(json.dumps(out))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    ice = sub.add_parser("iceberg")
    ice.add_argument("--uri", required=True)
    ice.add_argument("--table", required=True)
    ice.add_argument("--add-files", action="store_true")
    dlt = sub.add_parser("delta")
    dlt.add_argument("--path", required=True)
    dlt.add_argument("--threads", type=int, default=2)
    dlt.add_argument("--deletes", help='JSON {"eq_every", "file_every", "pos_every"}: rows to leave out')
    for p in (ice, dlt):
        p.add_argument("--files", type=int, required=True)
        p.add_argument("--rows", type=int, required=True)
    args = parser.parse_args()
    {"iceberg": iceberg, "delta": delta}[args.mode](args)


if __name__ == "__main__":
    main()
