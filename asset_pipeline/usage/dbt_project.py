"""Locating the dbt_usage project and making sure its manifest exists (dagster-dbt needs it to
build the asset graph)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from asset_pipeline.errors import AssetPipelineError

DBT_ENV = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}


def project_dir() -> Path:
    """$ASSET_PIPELINE_DBT_PROJECT, else `dbt_usage/` at the repository root."""
    configured = os.environ.get("ASSET_PIPELINE_DBT_PROJECT")
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "dbt_usage"
    if not (path / "dbt_project.yml").is_file():
        raise AssetPipelineError(f"no dbt project at {path}; set ASSET_PIPELINE_DBT_PROJECT to the dbt_usage folder")
    return path


def dbt_executable() -> str:
    """The `dbt` installed beside this Python (the venv need not be activated)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def ensure_manifest(path: Path) -> Path:
    """`dbt parse` when the manifest is missing or older than a model (offline, a few seconds)."""
    manifest = path / "target" / "manifest.json"
    sources = [p for p in path.rglob("*") if p.suffix in (".sql", ".yml") and "target" not in p.parts]
    if manifest.exists() and all(p.stat().st_mtime <= manifest.stat().st_mtime for p in sources):
        return manifest
    proc = subprocess.run(
        [dbt_executable(), "parse", "--profiles-dir", str(path), "--project-dir", str(path), "--quiet"],
        env={**os.environ, **DBT_ENV}, capture_output=True, text=True, cwd=path)
    if proc.returncode != 0:
        raise AssetPipelineError(f"dbt parse failed in {path}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return manifest
