"""A local store with a cloud replica (ASSET_PIPELINE_REPLICA): every committed blob is copied to
S3 (moto's server here; the same code path serves any S3-compatible endpoint, Google Cloud
Storage's interoperability API included), and reads heal missing or corrupt local blobs from it."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from asset_pipeline import Catalog, Settings
from asset_pipeline.definitions import build_definitions
from asset_pipeline.identity import asset_id_for
from asset_pipeline.lifecycle.actions import sweep
from asset_pipeline.replica import ObjectCorrupt, ReplicatedStore, pending_blobs
from asset_pipeline.samples import make_samples, render_image

from .conftest import run_python

SUNSET = asset_id_for("research", "images/sunset")
CHIME = asset_id_for("research", "audio/chime")
ICON = asset_id_for("research", "images/icon")


@pytest.fixture
def replicated(s3_env, bucket, tmp_path: Path) -> Settings:
    settings = Settings.from_env(home=tmp_path / "home", replica=f"s3://{bucket}/backup", durable=False)
    make_samples(settings.inbox)
    return settings


def _replica_keys(s3_client, bucket: str) -> set[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="backup/objects/")
    return {o["Key"].rsplit("/", 1)[-1] for page in pages for o in page.get("Contents", [])}


def _flip_a_byte(path: Path) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.chmod(path, 0o444)


def test_every_committed_blob_is_replicated_and_the_check_says_so(replicated: Settings, s3_client, bucket) -> None:
    defs = build_definitions(replicated)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance)
        assert result.success
        checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
        assert checks["replica_in_sync"] is True
    cat = Catalog(settings=replicated)
    blobs = {r["sha256"] for r in cat.sql("select distinct sha256 from asset_versions").to_pylist()}
    assert _replica_keys(s3_client, bucket) == blobs
    assert cat.sql("select count(*) n from replica_log").to_pylist() == [{"n": len(blobs)}]
    # a gap (the replica lost an object) fails the check
    victim = sorted(blobs)[0]
    s3_client.delete_object(Bucket=bucket, Key=f"backup/objects/{victim[:2]}/{victim[2:4]}/{victim}")
    with dg.instance_for_test() as instance:
        again = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance, raise_on_error=False)
        assert {c.check_name: c.passed for c in again.get_asset_check_evaluations()}["replica_in_sync"] is False


def test_get_heals_a_missing_or_corrupt_local_blob_from_the_replica(replicated: Settings) -> None:
    cat = Catalog(settings=replicated)
    cat.ingest()
    store = cat.home.store
    assert isinstance(store, ReplicatedStore)
    original = {a: cat.get(a).read() for a in (SUNSET, CHIME)}
    sunset_sha = cat.asset(SUNSET)["current_sha256"]
    store.local.delete(sunset_sha)
    assert cat.get(SUNSET).read() == original[SUNSET]
    assert store.local.exists(sunset_sha)  # healed on disk, not only served
    chime_sha = cat.asset(CHIME)["current_sha256"]
    _flip_a_byte(store.local.path(chime_sha))
    assert cat.get(CHIME).read() == original[CHIME]
    assert hashlib.sha256(store.local.path(chime_sha).read_bytes()).hexdigest() == chime_sha


def test_a_large_corrupt_blob_is_caught_at_the_end_of_the_stream_and_healed(replicated: Settings) -> None:
    cat = Catalog(settings=replicated)
    cat.ingest()
    store = cat.home.store
    store.eager_verify_max = 0  # every blob counts as large: verified while it streams
    sha = cat.asset(SUNSET)["current_sha256"]
    good = cat.get(SUNSET).read()
    _flip_a_byte(store.local.path(sha))
    with pytest.raises(ObjectCorrupt, match="healed from the replica"):
        cat.get(SUNSET).read()
    assert cat.get(SUNSET).read() == good


def test_replication_killed_between_upload_and_log_resumes(replicated: Settings, s3_client, bucket) -> None:
    code = ("from asset_pipeline import Catalog, Settings\n"
            f"Catalog(settings=Settings.from_env(home={str(replicated.home)!r}, replica={replicated.replica!r},"
            " durable=False)).ingest()\n")
    crashed = run_python(code, env={"ASSET_PIPELINE_CRASH_AT": "replica-batch"})
    assert crashed.returncode == 137, crashed.stderr
    cat = Catalog(settings=replicated)
    blobs = {r["sha256"] for r in cat.sql("select distinct sha256 from asset_versions").to_pylist()}
    assert _replica_keys(s3_client, bucket) == blobs  # uploaded…
    assert len(pending_blobs(cat.tables)) == len(blobs)  # …but not logged
    summary = cat.ingest()  # nothing new to commit; replication picks up where it stopped
    assert summary.new_versions == 0
    assert (summary.replica.uploaded, summary.replica.already_there) == (0, len(blobs))
    assert pending_blobs(cat.tables) == []


def test_a_collected_blob_leaves_the_replica_too(replicated: Settings, s3_client, bucket) -> None:
    from datetime import UTC, datetime, timedelta

    from asset_pipeline.lifecycle.actions import sweep

    cat = Catalog(settings=replicated)
    cat.ingest()
    icon = asset_id_for("research", "images/icon")
    sha = cat.asset(icon)["current_sha256"]
    cat.delete(icon)
    lifecycle = cat.lifecycle()
    lifecycle.blob_grace = timedelta(0)
    sweep(lifecycle, (), 0, datetime.now(UTC).date().isoformat(), "sweep")
    assert not cat.home.store.exists(sha) and sha not in _replica_keys(s3_client, bucket)
    assert cat.sql("select count(*) n from replica_log where sha256 = ?", [sha]).to_pylist() == [{"n": 0}]


def test_a_replica_must_be_s3_and_copies_a_local_store(tmp_path: Path) -> None:
    from asset_pipeline.location import LocationError

    with pytest.raises(LocationError, match="must be an s3:// URI"):
        Settings.from_env(home=tmp_path / "h", replica=str(tmp_path / "elsewhere"))
    with pytest.raises(LocationError, match="copies a local store"):
        Settings.from_env(home="s3://bucket/home", replica="s3://bucket/replica")


def test_an_ingest_after_a_blob_was_collected_still_replicates(replicated: Settings, s3_client, bucket) -> None:
    """A sweep that collects a blob takes it out of the replica and its log; the hard-deleted
    asset's version rows stay. Replication must not take that blob for one still to upload:
    before the fix it could neither upload nor heal it, and every later ingest failed."""
    from .test_concurrency import _write

    cat = Catalog(settings=replicated)
    cat.ingest()
    sha = cat.asset(ICON)["current_sha256"]
    cat.delete(ICON)
    lifecycle = cat.lifecycle()
    lifecycle.blob_grace = timedelta(0)
    assert sweep(lifecycle, (), 0, datetime.now(UTC).date().isoformat(), "sweep").hard_deleted == 1
    assert not cat.home.store.exists(sha) and sha not in _replica_keys(s3_client, bucket)
    _write(Path(replicated.inbox), "new/one.png", render_image(4242, (24, 24)), "research", "new/one")
    summary = cat.ingest()
    assert summary.new_versions == 1
    assert pending_blobs(cat.tables) == []
    assert cat.asset(asset_id_for("research", "new/one"))["current_sha256"] in _replica_keys(s3_client, bucket)


def test_an_ingest_after_an_archive_collected_the_hot_copy_still_replicates(replicated: Settings, s3_client,
                                                                             bucket) -> None:
    """Archiving moves the bytes to the archive store and collects the hot copy, which leaves the
    replica with it (the replica backs up the hot store). The archived version is not one to
    upload: before, it was, and every later ingest failed to upload or heal it."""
    from .test_concurrency import _write

    cat = Catalog(settings=replicated)
    cat.ingest()
    sha = cat.asset(ICON)["current_sha256"]
    lifecycle = cat.lifecycle()
    lifecycle.blob_grace = timedelta(0)
    lifecycle.archive(ICON)
    lifecycle.reconcile_blobs()
    assert not cat.home.store.exists(sha) and cat.home.archive_store().exists(sha)
    assert sha not in _replica_keys(s3_client, bucket)
    _write(Path(replicated.inbox), "new/two.png", render_image(4343, (24, 24)), "research", "new/two")
    assert cat.ingest().new_versions == 1
    assert pending_blobs(cat.tables) == []
    cat.restore(ICON)  # back in the hot store: replicated again by the next ingest
    cat.ingest()
    assert sha in _replica_keys(s3_client, bucket)
