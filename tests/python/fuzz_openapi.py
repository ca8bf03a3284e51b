"""Schema-driven fuzzing of a running Loch server with schemathesis, both OpenAPI documents.

    fuzz_openapi.py [--url http://HOST:PORT] [--catalog NAME] [--credential ID:SECRET]
                    [--spec-cache DIR] [--max-examples N] [--phases examples,fuzzing]
                    [--timeout SECONDS] [--workers N] [--seed N] [--report-dir DIR]
                    [--only iceberg|management]

Options default to the environment: LOCH_URL (server origin; else derived from LOCH_URI, the REST
base), LOCH_WAREHOUSE (catalog, default `local`), LOCH_CREDENTIAL, LOCH_SPEC_CACHE,
LOCH_FUZZ_MAX_EXAMPLES, LOCH_FUZZ_PHASES, LOCH_FUZZ_TIMEOUT, LOCH_FUZZ_REPORT_DIR.

1. The Iceberg REST spec comes from PyPI (openapi_spec.py: pysail sdist, SHA-256 checked,
   cached). `{prefix}` is baked into its paths as `catalogs/<catalog>` (schemathesis would send a
   path parameter holding `/` percent-encoded), and it runs against `<url>/api/iceberg/rest`
   with the check `not_a_server_error`.
2. The management API's own document, `<url>/api/v1/openapi.json`, with `not_a_server_error`
   and `status_code_conformance` (every status returned must be documented).

Before fuzzing, the runner makes a namespace `fuzz` with a table `t` (and `doomed`, for the
DELETE operations) and a view `v` (and `doomed_v`), and binds the path parameters to those names
part of the time, so that many requests reach real objects rather than 404. The Iceberg run goes
first: fuzzing the management API may delete or rewrite catalogs. Use a throwaway server.

Exit status: 0 when nothing was found, 1 when an operation answered 5xx, returned an undocumented
status (management API) or failed at the network level (timeout, reset), 2 when the run could not
be made (spec download, server unreachable, schemathesis usage error, time budget exceeded).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openapi_spec import SpecError, iceberg_rest_spec  # noqa: E402

NAMESPACE = "fuzz"
TABLE, DOOMED_TABLE = "t", "doomed"
VIEW, DOOMED_VIEW = "v", "doomed_v"
# Share of generated path parameters that name the seeded objects instead of random strings.
SEEDED_PROBABILITY = 0.6


def parse_args():
    env = os.environ.get
    default_url = env("LOCH_URL")
    if not default_url and env("LOCH_URI"):
        parts = urllib.parse.urlsplit(env("LOCH_URI"))
        default_url = f"{parts.scheme}://{parts.netloc}"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=default_url, help="server origin, http://HOST:PORT (LOCH_URL)")
    p.add_argument("--catalog", default=env("LOCH_WAREHOUSE", "local"), help="catalog name (LOCH_WAREHOUSE)")
    p.add_argument("--credential", default=env("LOCH_CREDENTIAL"), help="OAuth2 client ID:SECRET (LOCH_CREDENTIAL)")
    p.add_argument("--spec-cache", default=env("LOCH_SPEC_CACHE"), help="cache directory of the Iceberg spec (LOCH_SPEC_CACHE)")
    p.add_argument("--max-examples", type=int, default=int(env("LOCH_FUZZ_MAX_EXAMPLES", "25")), help="cases per Iceberg REST operation")
    p.add_argument(
        "--management-max-examples", type=int, default=int(env("LOCH_FUZZ_MANAGEMENT_MAX_EXAMPLES", "100")),
        help="cases per management operation (a cheaper, smaller API)",
    )
    p.add_argument("--phases", default=env("LOCH_FUZZ_PHASES", "examples,fuzzing"), help="schemathesis phases")
    p.add_argument("--timeout", type=float, default=float(env("LOCH_FUZZ_TIMEOUT", "300")), help="budget of the whole run, seconds")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--request-timeout", type=float, default=20.0, help="seconds; a slower answer is reported")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--report-dir", default=env("LOCH_FUZZ_REPORT_DIR"), help="keep schemathesis' logs and reports here")
    p.add_argument("--only", choices=["iceberg", "management"], default=None)
    args = p.parse_args()
    if not args.url:
        p.error("--url (or LOCH_URL / LOCH_URI) is required")
    args.url = args.url.rstrip("/")
    return args


class Setup(Exception):
    """The run cannot be made (exit status 2)."""


def http(method, url, body=None, token=None, form=False, timeout=30):
    headers = {}
    data = None
    if body is not None:
        if form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for_server(url, deadline):
    last = None
    while time.monotonic() < deadline:
        try:
            status, _ = http("GET", f"{url}/health", timeout=5)
            if status == 200:
                return
            last = f"status {status}"
        except OSError as error:
            last = error
        time.sleep(0.5)
    raise Setup(f"{url}/health did not answer 200: {last}")


def get_token(rest, credential):
    client_id, sep, secret = credential.partition(":")
    if not sep:
        raise Setup("the credential must be CLIENT_ID:SECRET")
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": "catalog"}
    status, body = http("POST", f"{rest}/v1/oauth/tokens", form, form=True)
    if status != 200:
        raise Setup(f"POST {rest}/v1/oauth/tokens answered {status}: {body[:300]!r}")
    return json.loads(body)["access_token"]


def seed(rest, catalog, token):
    """The namespace, tables and views the path parameters are bound to (existing ones are kept)."""
    base = f"{rest}/v1/catalogs/{urllib.parse.quote(catalog, safe='')}"
    schema = {
        "type": "struct",
        "schema-id": 0,
        "fields": [
            {"id": 1, "name": "id", "type": "long", "required": True},
            {"id": 2, "name": "category", "type": "string", "required": False},
        ],
    }
    requests = [("namespaces", {"namespace": [NAMESPACE], "properties": {"owner": "fuzz"}})]
    for name in (TABLE, DOOMED_TABLE):
        spec = {"spec-id": 0, "fields": [{"source-id": 2, "field-id": 1000, "name": "category", "transform": "identity"}]}
        requests.append((f"namespaces/{NAMESPACE}/tables", {"name": name, "schema": schema, "partition-spec": spec}))
    for name in (VIEW, DOOMED_VIEW):
        view = {
            "name": name,
            "schema": {"type": "struct", "schema-id": 0, "fields": [{"id": 1, "name": "id", "type": "long", "required": False}]},
            "view-version": {
                "version-id": 1,
                "schema-id": 0,
                "timestamp-ms": int(time.time() * 1000),
                "summary": {"engine-name": "fuzz"},
                "representations": [{"type": "sql", "sql": f"SELECT id FROM {NAMESPACE}.{TABLE}", "dialect": "spark"}],
                "default-namespace": [NAMESPACE],
            },
            "properties": {},
        }
        requests.append((f"namespaces/{NAMESPACE}/views", view))
    for path, body in requests:
        status, answer = http("POST", f"{base}/{path}", body, token=token)
        if status not in (200, 409):
            raise Setup(f"seeding: POST {base}/{path} answered {status}: {answer[:500]!r}")
    # Give the table snapshots (so that commits, scans and the management API's file statistics
    # have something to work on), when PyIceberg is at hand.
    try:
        import pyarrow as pa
        from pyiceberg.catalog import load_catalog
    except ImportError:
        return f"{NAMESPACE}.{TABLE} (no snapshots: PyIceberg missing)"
    props = {"uri": rest, "warehouse": catalog}
    if token:
        props["token"] = token
    try:
        table = load_catalog("fuzz", type="rest", **props).load_table(f"{NAMESPACE}.{TABLE}")
        if not table.snapshots():
            arrow_schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("category", pa.string())])
            for k in range(2):
                rows = [{"id": k * 10 + i, "category": f"c{i % 2}"} for i in range(10)]
                table.append(pa.Table.from_pylist(rows, schema=arrow_schema))
        snapshots = f"{len(table.snapshots())} snapshots"
    except Exception as error:  # a table the fuzzing left in a state PyIceberg cannot write
        snapshots = f"no snapshots added: {type(error).__name__}: {str(error)[:300]}"
    return f"{NAMESPACE}.{TABLE} ({snapshots}), {NAMESPACE}.{DOOMED_TABLE}, views {NAMESPACE}.{VIEW}, {NAMESPACE}.{DOOMED_VIEW}"


def iceberg_document(spec_path, catalog, out):
    """The Iceberg spec as JSON with `{prefix}` replaced by `catalogs/<catalog>`."""
    raw = yaml.safe_load(spec_path.read_text())
    prefix = f"catalogs/{catalog}"

    def is_prefix(param):
        return (param.get("name") == "prefix" and param.get("in") == "path") or param.get("$ref", "").endswith("/parameters/prefix")

    paths = {}
    for key, item in raw["paths"].items():
        for obj in [item, *(v for v in item.values() if isinstance(v, dict))]:
            if isinstance(obj.get("parameters"), list):
                obj["parameters"] = [p for p in obj["parameters"] if not is_prefix(p)]
        paths[key.replace("{prefix}", prefix)] = item
    raw["paths"] = paths
    raw.pop("servers", None)
    out.write_text(json.dumps(raw, default=str))
    return len(paths)


def toml_string(value):
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def write_config(path, args, token, bindings, delete_bindings):
    lines = [
        'suppress-health-check = ["all"]',
        f"workers = {args.workers}",
        f"request-timeout = {args.request_timeout}",
    ]
    if token:
        lines.append(f"headers = {{ Authorization = {toml_string('Bearer ' + token)} }}")
    lines += ["", "[cache]", "enabled = false", "", "[generation]", 'database = "none"', ""]
    for name, values in bindings.items():
        lines.append(f"[dictionaries.{name}]")
        lines.append("values = [" + ", ".join(toml_string(v) for v in values) + "]")
        lines.append("")
    lines.append("[parameters]")
    for name in bindings:
        lines.append(f'"path.{name}" = {{ dictionary = {toml_string(name)}, probability = {SEEDED_PROBABILITY} }}')
    lines.append("")
    # DELETE requests name their own victims, so that the seeded objects last the whole run.
    for name, values in delete_bindings.items():
        lines.append(f"[dictionaries.delete_{name}]")
        lines.append("values = [" + ", ".join(toml_string(v) for v in values) + "]")
        lines.append("")
    if delete_bindings:
        lines += ["[[operations]]", 'include-method = "DELETE"', "[operations.parameters]"]
        for name in delete_bindings:
            lines.append(f'"path.{name}" = {{ dictionary = {toml_string("delete_" + name)}, probability = {SEEDED_PROBABILITY} }}')
        lines.append("")
    path.write_text("\n".join(lines))


def run_schemathesis(label, location, extra, checks, max_examples, args, work, config, deadline, share=1.0):
    """Run schemathesis for at most `share` of the time left."""
    budget = (deadline - time.monotonic()) * share
    if budget < 10:
        raise Setup(f"{label}: no time left in the budget of {args.timeout:.0f} s")
    junit = work / f"{label}.junit.xml"
    report = work / f"{label}.json"
    log = work / f"{label}.log"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(config),
        "run", location, *extra,
        "--checks", ",".join(checks),
        "--phases", args.phases,
        "--max-examples", str(max_examples),
        "--report", "junit,json", "--report-dir", str(work),
        "--report-junit-path", str(junit), "--report-json-path", str(report),
        "--output-truncate", "false",
    ]
    if args.seed is not None:
        command += ["--seed", str(args.seed)]
    started = time.monotonic()
    with open(log, "w") as out:
        child = subprocess.Popen(command, cwd=work, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = child.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            rc = None
    elapsed = time.monotonic() - started
    output = log.read_text(errors="replace")
    return {"label": label, "rc": rc, "elapsed": elapsed, "junit": junit, "json": report, "log": log, "output": output}


def junit_findings(path):
    """(operation, kind, text) for every failure and error in a schemathesis JUnit report."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):  # absent, or cut short by the time budget
        return []
    found = []
    for case in root.iter("testcase"):
        for kind in ("failure", "error"):
            for element in case.findall(kind):
                text = (element.text or element.get("message") or "").strip()
                found.append((case.get("name"), kind, text))
    return found


def summarize(result):
    """Print one run's outcome; returns 'clean', 'findings' or 'broken'."""
    label, rc = result["label"], result["rc"]
    stats = {}
    if result["json"].is_file():
        try:
            stats = json.loads(result["json"].read_text())
        except ValueError:
            stats = {}
    cases = stats.get("test_cases", {})
    ops = stats.get("operations", {})
    seed = stats.get("seed")
    print(
        f"== {label}: {ops.get('tested', '?')}/{ops.get('selected', '?')} operations, "
        f"{cases.get('generated', '?')} cases, {result['elapsed']:.1f} s, schemathesis rc {rc}, seed {seed}"
    )
    findings = junit_findings(result["junit"])
    for operation, kind, text in findings:
        print(f"-- {operation} [{kind}]")
        for line in text.splitlines():
            print(f"   {line}" if line else "")
    if rc is None:
        print(f"!! {label}: schemathesis did not finish within the time budget; its output ends with:")
        print("\n".join(result["output"].splitlines()[-40:]))
        return "broken"
    if rc == 0 and not findings:
        return "clean"
    if rc == 1 and (findings or stats.get("failures") or stats.get("errors")):
        if not findings:
            print(json.dumps({"failures": stats.get("failures"), "errors": stats.get("errors")}, indent=1))
        return "findings"
    print(f"!! {label}: schemathesis exited with {rc}; its output ends with:")
    print("\n".join(result["output"].splitlines()[-40:]))
    return "broken"


def main():
    sys.stdout.reconfigure(line_buffering=True)
    args = parse_args()
    started = time.monotonic()
    deadline = started + args.timeout
    rest = f"{args.url}/api/iceberg/rest"
    keep = Path(args.report_dir) if args.report_dir else None
    work = Path(tempfile.mkdtemp(prefix="loch-fuzz-"))
    outcomes = []
    try:
        wait_for_server(args.url, min(deadline, time.monotonic() + 30))
        token = get_token(rest, args.credential) if args.credential else None
        print(f"fuzz_openapi: {args.url}, catalog {args.catalog}, phases {args.phases}, "
              f"{args.max_examples} examples per operation, budget {args.timeout:.0f} s"
              + (", authenticated" if token else ""))
        print(f"fuzz_openapi: seeded {seed(rest, args.catalog, token)}")

        if args.only in (None, "iceberg"):
            spec = iceberg_rest_spec(args.spec_cache)
            document = work / "iceberg-rest-catalog.json"
            operations = iceberg_document(spec, args.catalog, document)
            config = work / "iceberg.toml"
            write_config(
                config, args, token,
                {"namespace": [NAMESPACE], "table": [TABLE], "view": [VIEW]},
                {"table": [DOOMED_TABLE], "view": [DOOMED_VIEW]},
            )
            print(f"fuzz_openapi: Iceberg REST spec {spec} ({operations} paths)")
            result = run_schemathesis(
                "iceberg", str(document), ["--url", rest], ["not_a_server_error"], args.max_examples, args, work, config, deadline,
                share=0.7 if args.only is None else 1.0,  # keep time for the management API
            )
            outcomes.append(summarize(result))

        if args.only in (None, "management"):
            if args.only is None:  # the Iceberg run may have dropped them
                print(f"fuzz_openapi: seeded again {seed(rest, args.catalog, token)}")
            config = work / "management.toml"
            write_config(
                config, args, token,
                {"catalog": [args.catalog], "namespace": [NAMESPACE], "table": [TABLE], "name": [args.catalog, "default"]},
                {},
            )
            result = run_schemathesis(
                "management", f"{args.url}/api/v1/openapi.json", ["--wait-for-schema", "30"],
                ["not_a_server_error", "status_code_conformance"], args.management_max_examples, args, work, config, deadline,
            )
            outcomes.append(summarize(result))
    except (Setup, SpecError, OSError) as error:
        print(f"fuzz_openapi: cannot run: {error}", file=sys.stderr)
        # Findings already printed stand (a server that crashed fails the seeding that follows).
        return 1 if "findings" in outcomes else 2
    finally:
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            for item in work.iterdir():
                if item.is_file():
                    shutil.copy2(item, keep / item.name)
        shutil.rmtree(work, ignore_errors=True)

    total = time.monotonic() - started
    if "broken" in outcomes:
        print(f"fuzz_openapi: INCOMPLETE after {total:.1f} s")
        return 2
    if "findings" in outcomes:
        print(f"fuzz_openapi: FAILED after {total:.1f} s: server errors, undocumented statuses or network failures above")
        return 1
    print(f"fuzz_openapi: no server errors or undocumented statuses, {total:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # a bug here must not read as a finding (exit status 1)
        import traceback

        traceback.print_exc()
        sys.exit(2)
