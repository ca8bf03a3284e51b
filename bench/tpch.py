"""TPC-H for `tpch-bench`: tables written into Loch by PyIceberg, queries run by DuckDB.

    tpch.py load --uri URI --sf SF
    tpch.py queries --queries 1,3,5,6,10,12
    tpch.py duckdb --uri URI --queries 1,3,5,6,10,12 --runs N

`load` generates TPC-H at scale factor SF with DuckDB's tpch extension and writes each of its
eight tables as the Iceberg table `tpch.<name>` through Loch's REST catalog (PyIceberg, one
append each); it prints {"rows": {table: count}, "seconds": s}.
`queries` prints DuckDB's text of each query as {"1": "SELECT ...", ...}, so both engines run
the same SQL.
`duckdb` attaches Loch's REST catalog with DuckDB's iceberg extension (the connection made
once, as a client keeps it) and runs each query N times; it prints, per query, the seconds of
each run and the rows of the last one (values as strings, NULL as null).
The extensions come from the duckdb-ext wheels of bench/requirements.txt (no download).
"""

import argparse
import json
import os
import sys
import time

import duckdb
import duckdb_ext
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError

TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def connect(extensions):
    """A DuckDB connection with `extensions` loaded from the wheels' directory."""
    con = duckdb.connect()
    directory = os.path.join(list(duckdb_ext.__path__)[0], "extensions")
    con.execute("SET extension_directory = ?", [directory])
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    for extension in extensions:
        con.execute(f"LOAD {extension}")
    return con


def load(args):
    started = time.monotonic()
    con = connect(["tpch"])
    con.execute(f"CALL dbgen(sf = {float(args.sf)})")
    catalog = load_catalog("loch", type="rest", uri=args.uri, warehouse=args.warehouse)
    try:
        catalog.create_namespace("tpch")
    except NamespaceAlreadyExistsError:
        pass
    rows = {}
    for name in TABLES:
        # DuckDB's types (INTEGER, BIGINT, DECIMAL(15,2), DATE, VARCHAR) map one to one.
        data = con.execute(f"SELECT * FROM {name}").fetch_arrow_table()
        table = catalog.create_table(f"tpch.{name}", schema=data.schema)
        table.append(data)
        rows[name] = data.num_rows
        print(f"loaded tpch.{name}: {data.num_rows} rows", file=sys.stderr)
    print(json.dumps({"rows": rows, "seconds": time.monotonic() - started}))


def query_texts(numbers):
    con = connect(["tpch"])
    texts = dict(con.execute("SELECT query_nr, query FROM tpch_queries()").fetchall())
    return {str(n): texts[n] for n in numbers}


def queries(args):
    print(json.dumps(query_texts(parse_numbers(args.queries))))


def value(v):
    return None if v is None else str(v)


def run_duckdb(args):
    con = connect(["httpfs", "avro", "iceberg"])
    quoted = lambda s: "'" + s.replace("'", "''") + "'"
    con.execute(
        f"ATTACH {quoted(args.warehouse)} AS loch (TYPE iceberg, ENDPOINT {quoted(args.uri)}, AUTHORIZATION_TYPE 'none')"
    )
    con.execute("USE loch.tpch")
    out = {}
    for number, sql in query_texts(parse_numbers(args.queries)).items():
        seconds = []
        rows = []
        for _ in range(args.runs):
            started = time.monotonic()
            rows = con.execute(sql).fetchall()
            seconds.append(time.monotonic() - started)
        out[number] = {"seconds": seconds, "rows": [[value(v) for v in row] for row in rows]}
    print(json.dumps(out))


def parse_numbers(text):
    return [int(n) for n in text.split(",") if n.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("load")
    p.add_argument("--uri", required=True)
    p.add_argument("--warehouse", default="local")
    p.add_argument("--sf", default="1")
    p.set_defaults(run=load)
    p = sub.add_parser("queries")
    p.add_argument("--queries", default="1,3,5,6,10,12")
    p.set_defaults(run=queries)
    p = sub.add_parser("duckdb")
    p.add_argument("--uri", required=True)
    p.add_argument("--warehouse", default="local")
    p.add_argument("--queries", default="1,3,5,6,10,12")
    p.add_argument("--runs", type=int, default=3)
    p.set_defaults(run=run_duckdb)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
