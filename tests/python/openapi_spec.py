"""The Iceberg REST catalog OpenAPI document, fetched from PyPI and verified.

Iceberg publishes `open-api/rest-catalog-open-api.yaml` only in its Git repository; the one
registry package that ships it is the sdist of `pysail` (LakeSail, Apache-2.0), at
`crates/sail-catalog-iceberg/spec/iceberg-rest-catalog.yaml`. That copy is apache/iceberg
533a75c (October 2025, after 1.10.0): the 1.10 spec plus the optional `Snapshot.added-rows`,
renamed 409 examples, and `prefix` marked optional (a Sail patch; the fuzz runner removes the
parameter anyway). The sdist is downloaded with pip (hash-pinned), the one file is extracted, its
SHA-256 checked, and it is cached as `iceberg-rest-catalog-<sha256[:12]>.yaml` in the cache
directory (argument, else LOCH_SPEC_CACHE, else $LOCH_TOOLS_DIR/openapi, else
~/.cache/loch-tools/openapi); a cached file with the right hash is used without any download.

    python openapi_spec.py [CACHE_DIR]      # prints the path of the verified yaml
"""

import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "pysail"
VERSION = "0.7.2"
SDIST_SHA256 = "59a1bb8f39941dceed2ab975388e93e52ea81dcb88d3f276c76625ffd2a2e165"
MEMBER = f"{PACKAGE}-{VERSION}/crates/sail-catalog-iceberg/spec/iceberg-rest-catalog.yaml"
SPEC_SHA256 = "ea3df2231c99d507e45894502c35bfd75157499c436f23cfb3567b3b7e6b7890"


class SpecError(Exception):
    pass


def default_cache_dir():
    if os.environ.get("LOCH_SPEC_CACHE"):
        return Path(os.environ["LOCH_SPEC_CACHE"])
    if os.environ.get("LOCH_TOOLS_DIR"):  # set by dev/test
        return Path(os.environ["LOCH_TOOLS_DIR"]) / "openapi"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "loch-tools" / "openapi"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def iceberg_rest_spec(cache_dir=None, python=sys.executable):
    """Path of the verified Iceberg REST catalog yaml, downloading it on a cache miss."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache_dir / f"iceberg-rest-catalog-{SPEC_SHA256[:12]}.yaml"
    if target.is_file() and sha256(target.read_bytes()) == SPEC_SHA256:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loch-spec-") as tmp:
        requirement = Path(tmp) / "requirements.txt"
        requirement.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{SDIST_SHA256}\n")
        command = [
            python, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
            "--require-hashes", "-r", str(requirement), "-d", tmp,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise SpecError(f"pip download {PACKAGE}=={VERSION} took more than 300 s") from None
        sdist = Path(tmp) / f"{PACKAGE}-{VERSION}.tar.gz"
        if done.returncode != 0 or not sdist.is_file():
            raise SpecError(f"pip download {PACKAGE}=={VERSION} failed (rc {done.returncode}):\n{done.stdout}{done.stderr}")
        if sha256(sdist.read_bytes()) != SDIST_SHA256:
            raise SpecError(f"{sdist.name}: SHA-256 is not {SDIST_SHA256}")
        with tarfile.open(sdist, "r:gz") as archive:
            try:
                member = archive.extractfile(MEMBER)
            except KeyError:
                member = None
            if member is None:
                raise SpecError(f"{sdist.name} has no {MEMBER}")
            data = member.read()
    digest = sha256(data)
    if digest != SPEC_SHA256:
        raise SpecError(f"{MEMBER}: SHA-256 {digest}, expected {SPEC_SHA256}")
    partial = target.with_name(f"{target.name}.{os.getpid()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)
    return target


if __name__ == "__main__":
    try:
        print(iceberg_rest_spec(sys.argv[1] if len(sys.argv) > 1 else None))
    except SpecError as error:
        sys.exit(f"openapi_spec: {error}")
