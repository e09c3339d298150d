"""Shared fixtures: a fresh home per test, the sample inbox, and real servers on loopback — moto's
S3 server, Postgres and Redis, each its own process (see servers.py)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from asset_pipeline import Catalog, Settings
from asset_pipeline.home import Home
from asset_pipeline.samples import make_samples

from .servers import Postgres, moto_s3_server, postgres_cluster, redis_server

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("ASSET_PIPELINE_HOME", "ASSET_PIPELINE_INBOX", "ASSET_PIPELINE_STORE", "ASSET_PIPELINE_CRASH_AT",
                "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DAGSTER_DISABLE_TELEMETRY", "1")
    # Tests name fixed days of November 2026: their partitions must exist whenever the tests run
    # (the default start follows the home's creation). test_dagster_definitions checks the default.
    monkeypatch.setenv("ASSET_PIPELINE_PARTITIONS_START", "2026-11-01")


@pytest.fixture
def home_dir(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def settings(home_dir: Path) -> Settings:
    return Settings.from_env(home=home_dir, durable=False)


@pytest.fixture
def sample_counts(settings: Settings) -> dict[str, int]:
    counts = make_samples(settings.inbox)
    # An ingest consumes the inbox (the default): tests compare with this untouched copy.
    shutil.copytree(settings.inbox, settings.home.parent / "originals")
    return counts


@pytest.fixture
def originals(sample_counts: dict[str, int], settings: Settings) -> Path:
    """The sample inputs as they were written (the inbox itself is emptied by an ingest)."""
    return settings.home.parent / "originals"


@pytest.fixture
def home(settings: Settings) -> Home:
    return Home(settings)


@pytest.fixture
def catalog(settings: Settings) -> Catalog:
    return Catalog(settings=settings)


@pytest.fixture
def ingested(catalog: Catalog, sample_counts: dict[str, int]) -> Catalog:
    catalog.ingest()
    return catalog


def materialization_metadata(result) -> dict[str, dict]:
    """{asset key: {metadata key: value}} of a Dagster execution result."""
    return {e.materialization.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def run_python(code: str, env: dict[str, str] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (what a killed or concurrent process needs)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


# What a run's step loads only when its own group needs it: torch and open_clip (embedding), dbt
# (usage), LanceDB (search), Pillow (examining images), pandas (DuckDB imports it before binding
# any parameter: 0.3 s).
HEAVY_MODULES = ("pandas", "torch", "open_clip", "dbt", "dagster_dbt", "lancedb", "PIL")


def cli_in_new_interpreter(argv: list[str], env: dict[str, str]) -> tuple[str, list[str]]:
    """(stdout and stderr, which of HEAVY_MODULES were loaded) of `asset-pipeline *argv` run in a
    fresh interpreter; stdout starts with the exit status."""
    code = ("import sys\nfrom asset_pipeline.cli import main\n"
            f"status = main({argv!r})\n"
            "print('status', status)\n"
            f"print('loaded', sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY_MODULES!r})))\n")
    done = run_python(code, env=env)
    loaded = [line for line in done.stdout.splitlines() if line.startswith("loaded ")]
    return done.stdout + done.stderr, ast.literal_eval(loaded[0][len("loaded "):]) if loaded else ["(no report)"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`moto_server` on 127.0.0.1 as its own process: a real HTTP S3 endpoint that subprocesses
    (Celery workers, `dagster` commands) reach as they would reach S3 — not a patched boto3, and not
    a thread of the test process that a busy test could starve."""
    with moto_s3_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A throwaway Postgres cluster (Debian's postgresql) on 127.0.0.1 for the whole session."""
    with postgres_cluster() as server:
        yield server


@pytest.fixture
def dagster_pg(postgres: Postgres) -> Iterator[dict[str, str]]:
    """A fresh database for one test's Dagster instance; the DAGSTER_PG_* variables that
    deploy/dagster-postgres.yaml reads, to be given to subprocesses."""
    db = postgres.create_database()
    try:
        yield postgres.env(db)
    finally:
        postgres.drop_database(db)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """Debian's redis-server on 127.0.0.1, one per test (it starts in a fraction of a second)."""
    with redis_server(tmp_path / "redis") as url:
        yield url


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    return s3_server


@pytest.fixture
def s3_client(s3_env: str):
    import boto3

    return boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client) -> str:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name
