"""The README's keyed-table example: create a primary-key table, upsert rows over the ingest
route with PyArrow, read the merged rows and the CDC stream back. No JVM anywhere.

    LOCH_URL=http://127.0.0.1:1630 python keyed_example.py

The test suite runs it against a fresh server; its last line is a JSON summary.
"""

import json
import os
import urllib.request

import pyarrow as pa

LOCH = os.environ.get("LOCH_URL", "http://127.0.0.1:1630")


def call(method, path, body=None, content_type="application/json"):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(LOCH + path, data=data, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request) as response:
        return response.read()


# A namespace (Iceberg REST) and a keyed table whose inserts replace a key's row.
call("POST", "/api/iceberg/rest/v1/catalogs/local/namespaces", {"namespace": ["shop"]})
call(
    "POST",
    "/api/v1/catalogs/local/namespaces/shop/tables",
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
        "properties": {"write.upsert.enabled": "true"},
    },
)


def ingest(rows):
    """Commits (id, status, op) rows as one transaction; op is +I, -U, +U or -D."""
    table = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "status": [r[1] for r in rows],
            "_op": [r[2] for r in rows],
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    answer = call(
        "POST", "/api/v1/tables/local/shop/orders/changes", sink.getvalue().to_pybytes(), "application/vnd.apache.arrow.stream"
    )
    return json.loads(answer)


first = ingest([(1, "new", "+I"), (2, "new", "+I")])
second = ingest([(1, "paid", "+I"), (2, "new", "-D")])

rows = pa.ipc.open_stream(call("GET", "/api/v1/tables/local/shop/orders/rows")).read_all()
print(rows.to_pylist())  # [{'id': 1, 'status': 'paid'}]

since_first = f"/api/v1/tables/local/shop/orders/changes?from={first['transaction_id']}"
changes = pa.ipc.open_stream(call("GET", since_first)).read_all()
print(changes.select(["id", "status", "_change_action"]).to_pylist())

print(json.dumps({"rows": rows.to_pylist(), "changes": changes.select(["id", "_change_action"]).to_pylist(),
                  "transactions": [first["transaction_id"], second["transaction_id"]]}))
