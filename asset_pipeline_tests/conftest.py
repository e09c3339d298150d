"""Shared fixtures: a fresh home per test, the sample inbox, and a real S3 server on loopback."""

from __future__ import annotations

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

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("ASSET_PIPELINE_HOME", "ASSET_PIPELINE_INBOX", "ASSET_PIPELINE_STORE", "ASSET_PIPELINE_CRASH_AT",
                "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DAGSTER_DISABLE_TELEMETRY", "1")


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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server as its own process on 127.0.0.1: a real HTTP endpoint (an in-process
    server thread would stall whenever deltalake or LanceDB hold the GIL while they wait on it)."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


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
