"""Spark 3.5 + Iceberg 1.10 session and management-API helpers for test_spark.py.

The Iceberg runtime jar comes from PyPI's `snowpark-connect-deps-iceberg==1.0.2` (Iceberg's own
`iceberg-spark-runtime-3.5_2.12-1.10.2.jar`, unmodified); LOCH_SPARK_ICEBERG_JAR overrides it.
Everything here uses the standard library only (plus pyspark for the session).
"""

import importlib.util
import json
import os
import pathlib
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

JAR_NAME = "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"


def iceberg_jar():
    """Path of the Iceberg Spark runtime jar, or None when it is not installed."""
    override = os.environ.get("LOCH_SPARK_ICEBERG_JAR")
    if override:
        return override if os.path.isfile(override) else None
    spec = importlib.util.find_spec("snowpark_connect_deps_iceberg")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        jar = pathlib.Path(location) / "jars" / JAR_NAME
        if jar.is_file():
            return str(jar)
    return None


def missing_requirements():
    """A sentence naming what is missing to run Spark, or None."""
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install 'pyspark==3.5.*' 'py4j==0.10.9.7')"
    import pyspark

    if not pyspark.__version__.startswith("3.5."):
        return f"pyspark {pyspark.__version__} is installed, the Iceberg 1.10.2 runtime needs pyspark 3.5"
    if iceberg_jar() is None:
        return f"{JAR_NAME} not found (pip install --no-deps 'snowpark-connect-deps-iceberg==1.0.2')"
    return None


class Loch:
    """Where the server is, from LOCH_URI, LOCH_WAREHOUSE, LOCH_MANAGEMENT and LOCH_CREDENTIAL."""

    def __init__(self):
        self.uri = os.environ["LOCH_URI"].rstrip("/")
        self.warehouse = os.environ.get("LOCH_WAREHOUSE", "local")
        management = os.environ.get("LOCH_MANAGEMENT")
        if not management:
            # The REST catalog lives at {server}/api/iceberg/rest.
            suffix = "/api/iceberg/rest"
            assert self.uri.endswith(suffix), f"LOCH_MANAGEMENT unset and LOCH_URI {self.uri} does not end in {suffix}"
            management = self.uri[: -len(suffix)]
        self.management = management.rstrip("/")
        self.credential = os.environ.get("LOCH_CREDENTIAL") or None
        self._token = None
        self.scratch = None  # Spark's temporary directory, removed by stop_spark

    # -- HTTP -------------------------------------------------------------------------------------

    def token(self):
        if self.credential is None:
            return None
        if self._token is None:
            client_id, _, secret = self.credential.partition(":")
            body = urllib.parse.urlencode(
                {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": "catalog"}
            ).encode()
            request = urllib.request.Request(
                f"{self.uri}/v1/oauth/tokens",
                data=body,
                headers={"content-type": "application/x-www-form-urlencoded"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                self._token = json.load(response)["access_token"]
        return self._token

    def get_json(self, url):
        """GET url; returns (status, parsed JSON or raw text)."""
        headers = {"accept": "application/json"}
        if self.token():
            headers["authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def optimizing_url(self, namespace, table, suffix=""):
        parts = [self.warehouse, namespace, table]
        path = "/".join(urllib.parse.quote(p, safe="") for p in parts)
        return f"{self.management}/api/v1/tables/{path}/optimizing{suffix}"

    def optimizing(self, namespace, table):
        return self.get_json(self.optimizing_url(namespace, table))

    def processes(self, namespace, table):
        return self.get_json(self.optimizing_url(namespace, table, "/processes"))

    def load_table(self, namespace, table):
        """The REST load-table result (metadata with every snapshot)."""
        status, config = self.get_json(f"{self.uri}/v1/config?warehouse={urllib.parse.quote(self.warehouse)}")
        assert status == 200, f"GET /v1/config -> {status}: {config}"
        prefix = config.get("overrides", {}).get("prefix") or config.get("defaults", {}).get("prefix")
        base = f"{self.uri}/v1/{prefix}" if prefix else f"{self.uri}/v1"
        url = f"{base}/namespaces/{urllib.parse.quote(namespace)}/tables/{urllib.parse.quote(table)}"
        return self.get_json(url)

    # -- Spark ------------------------------------------------------------------------------------

    def spark_session(self, catalog="loch"):
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        scratch = self.scratch = tempfile.mkdtemp(prefix="loch-spark-")
        builder = (
            SparkSession.builder.master("local[2]")
            .appName("loch-spark-e2e")
            .config("spark.jars", iceberg_jar())
            .config("spark.driver.memory", "1g")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.catalogImplementation", "in-memory")
            .config("spark.sql.warehouse.dir", os.path.join(scratch, "spark-warehouse"))
            .config("spark.local.dir", os.path.join(scratch, "local"))
            .config("spark.driver.extraJavaOptions", f"-Djava.io.tmpdir={scratch} -XX:+UseSerialGC")
            .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
            .config(f"spark.sql.catalog.{catalog}", "org.apache.iceberg.spark.SparkCatalog")
            .config(f"spark.sql.catalog.{catalog}.type", "rest")
            .config(f"spark.sql.catalog.{catalog}.uri", self.uri)
            .config(f"spark.sql.catalog.{catalog}.warehouse", self.warehouse)
            # Every statement loads the table from Loch: the server commits optimizing snapshots
            # behind Spark's back and the test must see them.
            .config(f"spark.sql.catalog.{catalog}.cache-enabled", "false")
        )
        if self.credential:
            builder = builder.config(f"spark.sql.catalog.{catalog}.credential", self.credential)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("WARN")
        return spark

    def stop_spark(self, spark):
        spark.stop()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
