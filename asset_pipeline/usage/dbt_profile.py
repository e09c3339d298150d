"""The dbt profile of one report build: dbt-duckdb pointed at that build's DuckDB file.

Written for each build (not read from the environment), so concurrent builds of different homes
in one process each use their own file, and nothing mutates os.environ to steer a subprocess.
For a home on S3 the profile also carries the S3 secret, so that dbt's DuckDB session can read
the `delta_scan` views over the tables; it lives in the build's private temp folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from asset_pipeline.location import S3Access


def write_profile(folder: Path, database: Path, s3: S3Access | None = None) -> Path:
    """``<folder>/profiles.yml`` for the `dbt_usage` profile; returns `folder`."""
    output: dict = {"type": "duckdb", "path": str(database), "threads": 2}
    if s3 is not None:
        output["extensions"] = ["httpfs", "delta"]  # installed from their PyPI packages beforehand
        secret: dict = {"type": "s3", "url_style": "path"}
        opts = s3.delta_options()
        if "AWS_ACCESS_KEY_ID" in opts:
            secret |= {"key_id": opts["AWS_ACCESS_KEY_ID"], "secret": opts["AWS_SECRET_ACCESS_KEY"]}
        if "AWS_SESSION_TOKEN" in opts:
            secret["session_token"] = opts["AWS_SESSION_TOKEN"]
        if s3.region:
            secret["region"] = s3.region
        if s3.endpoint_url:
            scheme, _, host = s3.endpoint_url.partition("://")
            secret |= {"endpoint": host.rstrip("/"), "use_ssl": scheme != "http"}
        output["secrets"] = [secret]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "profiles.yml"
    # JSON is YAML: every value is quoted correctly whatever characters it holds.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold credentials
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps({"dbt_usage": {"target": "home", "outputs": {"home": output}}}, indent=2) + "\n")
    return folder
