"""The dbt profile of one home: dbt-duckdb pointed at that home's build file.

Written into the home (not read from the environment), so concurrent runs on different homes in
one process each build their own file, and nothing mutates os.environ to steer a subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

from asset_pipeline.usage.reports import build_path


def write_profile(home: Path) -> Path:
    """``<home>/analytics/dbt/profiles.yml`` for the `dbt_usage` profile; returns its folder."""
    folder = Path(home) / "analytics" / "dbt"
    folder.mkdir(parents=True, exist_ok=True)
    # JSON is YAML: the path is quoted correctly whatever characters it holds.
    profile = {"dbt_usage": {"target": "home", "outputs": {"home": {
        "type": "duckdb", "path": str(build_path(home)), "threads": 2}}}}
    path = folder / "profiles.yml"
    text = json.dumps(profile, indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return folder
