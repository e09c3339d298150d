"""The dbt_usage project as dagster-dbt sees it: a `DbtProject` whose sources ship inside the
package and whose build artifacts never land there.

The project lives in ``asset_pipeline/dbt_usage`` and is installed as package data, so a
non-editable wheel finds it next to this module (``dbt_usage/`` at the repository root is a link
to it, for running dbt by hand). Because the sources are already package data, there is no
separate `packaged_project_dir` copy to keep in sync.

dbt writes a manifest, partial-parse state and logs wherever its target path is. For the project
that is a per-user cache under the temp dir, keyed by the project's content (a changed model gets
a fresh parse; nothing is written into the repository or site-packages); each dbt build of the
usage job gets its own temporary target folder, removed when the build is done.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from dagster_dbt import DagsterDbtProjectPreparer, DbtCliResource, DbtProject
from dagster_shared.record import replace
from packaging.version import Version

from asset_pipeline.errors import AssetPipelineError

DBT_ENV = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
PACKAGED_PROJECT = Path(__file__).resolve().parents[1] / "dbt_usage"


def dbt_executable() -> str:
    """The `dbt` installed beside this Python (the venv need not be activated)."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


class LocalDbt(DbtCliResource):
    """dagster-dbt's resource for the dbt-core installed with this Python, without two costs of
    every `cli()` call that the project's builds never use (~5 s a build here, most of a daily
    usage run's overhead):
    - `dbt --version` in a subprocess (2.7 s), to learn the version of the dbt it will run: the
      dbt beside this Python is the installed dbt-core, whose version the package metadata says;
    - a dbt adapter set up in this process (2.3 s), which dagster-dbt only uses to fetch column
      metadata and row counts (`fetch_column_metadata`, `fetch_row_counts`) — the usage assets
      compute their own numbers and call neither."""

    @property
    def _cli_version(self) -> Version:
        return Version(version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None


def local_dbt(project: DbtProject | Path | str, profiles_dir: str | None = None) -> LocalDbt:
    """The resource for `project` with the dbt beside this Python."""
    return LocalDbt(project_dir=project, profiles_dir=profiles_dir, dbt_executable=dbt_executable())


def source_dir() -> Path:
    """$ASSET_PIPELINE_DBT_PROJECT, else the project shipped in the package."""
    configured = os.environ.get("ASSET_PIPELINE_DBT_PROJECT")
    path = Path(configured).resolve() if configured else PACKAGED_PROJECT
    if not (path / "dbt_project.yml").is_file():
        raise AssetPipelineError(f"no dbt project at {path}; set ASSET_PIPELINE_DBT_PROJECT to the dbt_usage folder")
    return path


def state_dir(project_dir: Path) -> Path:
    """Where dbt's artifacts for this exact project go: a temp-dir cache keyed by the project's
    location, its files and the dbt version."""
    digest = hashlib.sha256(f"{project_dir}\0dbt-core {version('dbt-core')}".encode())
    for path in sorted(p for p in project_dir.rglob("*") if p.is_file() and p.suffix in (".sql", ".yml", ".yaml")):
        digest.update(f"\0{path.relative_to(project_dir)}\0".encode())
        digest.update(path.read_bytes())
    owner = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"asset-pipeline-dbt-{owner}" / digest.hexdigest()[:16]


class Preparer(DagsterDbtProjectPreparer):
    """dagster-dbt's preparation (`dbt parse` into the project's target path), with the dbt beside
    this Python (``.venv/bin/dagster dev`` does not put the venv on PATH). The parse runs in a
    scratch folder that is renamed into place, so concurrent first runs never see half a manifest."""

    def prepare(self, project: DbtProject) -> None:
        if project.manifest_path.is_file():
            return  # the target path is keyed by the project's content: an existing manifest is current
        target = Path(project.target_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        try:
            local_dbt(project).cli(["parse", "--quiet"], target_path=scratch).wait()
            try:
                scratch.rename(target)
            except OSError:
                if not project.manifest_path.is_file():  # not a concurrent winner: a real failure
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def dbt_project() -> DbtProject:
    """The prepared project: its manifest exists (parsed on first use, and again in `dagster dev`
    whenever a model changed)."""
    path = source_dir()
    project = replace(DbtProject(project_dir=path, profiles_dir=path, target_path=state_dir(path)),
                      preparer=Preparer())
    project.prepare_if_dev()
    project.preparer.prepare(project)
    return project
