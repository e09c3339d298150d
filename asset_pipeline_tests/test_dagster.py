"""The Dagster wiring, exercised through Dagster's own APIs on real (temporary) instances."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from asset_pipeline import Catalog
from asset_pipeline.dagster_defs.resources import PipelineHome
from asset_pipeline.definitions import build_definitions
from asset_pipeline.samples import render_image
from asset_pipeline.sensing import plan_ingest_requests
from asset_pipeline.sidecar import SIDECAR_SUFFIX

from .conftest import REPO, materialization_metadata


def test_ingest_job_materializes_the_group_with_metadata_and_checks(settings, sample_counts) -> None:
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance)
        assert result.success
        meta = materialization_metadata(result)
        assert set(meta) == {"assets", "asset_versions", "ingest_errors"}
        assert meta["asset_versions"]["deduplicated"] == sample_counts["deduplicated"]
        assert meta["asset_versions"]["new_versions"] == sample_counts["versions"]
        assert meta["ingest_errors"]["rejected"] == sample_counts["rejected"]
        assert 0 < meta["asset_versions"]["dedup_ratio"] < 1
        assert "images/sunset" in meta["asset_versions"]["preview"] or "sunset" in meta["asset_versions"]["preview"]
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks == {"blobs_exist": True, "sample_rehashes": True, "no_duplicate_ids": True,
                          "replica_in_sync": True}
        # the instance recorded the materializations
        assert instance.get_latest_materialization_event(dg.AssetKey("assets")) is not None


def test_checks_fail_when_a_blob_goes_missing(settings, sample_counts) -> None:
    defs = build_definitions(settings)
    job = defs.resolve_job_def("ingest_job")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance).success
        cat = Catalog(settings=settings)
        victim = cat.sql("select current_sha256 from assets where name = 'images/forest'").column(0)[0].as_py()
        cat.home.store.delete(victim)
        # While the source is still in the inbox, a re-run puts the blob back (hash first, then copy).
        assert job.execute_in_process(instance=instance).success
        assert cat.home.store.exists(victim)
        cat.home.store.delete(victim)
        (Path(settings.inbox) / "images/forest.png").unlink()
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        # 12 blobs, a sample of 20: every blob is re-hashed, so the missing one fails that check too
        assert checks == {"blobs_exist": False, "sample_rehashes": False, "no_duplicate_ids": True,
                          "replica_in_sync": True}


def test_group_names_follow_the_contract() -> None:
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    for name in ("inbox", "assets", "asset_versions", "ingest_errors"):
        assert groups[name] == "ingest"


def _sensor_tick(defs: dg.Definitions, instance, cursor: str | None):
    sensor = defs.resolve_sensor_def("inbox_sensor")
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                 resources={"pipeline": defs.resources["pipeline"]}) as ctx:
        return sensor(ctx)


def test_sensor_requests_new_files_once_with_run_keys(settings) -> None:
    inbox = Path(settings.inbox)
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        empty = _sensor_tick(defs, instance, None)
        assert empty.run_requests == []
        (inbox / "a.png").parent.mkdir(parents=True, exist_ok=True)
        (inbox / "a.png").write_bytes(render_image(1, (16, 16)))
        pending = _sensor_tick(defs, instance, empty.cursor)
        assert pending.run_requests == []  # no sidecar yet: the generator is still writing
        (inbox / f"a.png{SIDECAR_SUFFIX}").write_text(json.dumps(
            {"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p"}))
        first = _sensor_tick(defs, instance, pending.cursor)
        assert len(first.run_requests) == 1
        request = first.run_requests[0]
        assert request.run_config["ops"]["ingest"]["config"]["paths"] == ["a.png"]
        assert request.run_key.startswith("inbox-")
        again = _sensor_tick(defs, instance, first.cursor)
        assert again.run_requests == []  # the same file never starts two runs
        time.sleep(0.01)
        (inbox / "b.png").write_bytes(render_image(2, (16, 16)))
        (inbox / f"b.png{SIDECAR_SUFFIX}").write_text(json.dumps(
            {"model": "m", "prompt": "p", "seed": 2, "created_by": "u", "project": "p"}))
        second = _sensor_tick(defs, instance, again.cursor)
        assert [r.run_config["ops"]["ingest"]["config"]["paths"] for r in second.run_requests] == [["b.png"]]
        # The requested run ingests just that file.
        result = defs.resolve_job_def("ingest_job").execute_in_process(
            instance=instance, run_config=second.run_requests[0].run_config)
        assert result.success
        assert Catalog(settings=settings).sql("select name from assets").to_pylist() == [{"name": "b"}]


def test_sensor_plan_waits_for_late_sidecars_and_releases_orphans() -> None:
    s = 1_000_000_000
    listing = {"old.png": (10, 100 * s), "new.png": (10, 200 * s), "new.png.meta.json": (5, 201 * s)}
    plan = plan_ingest_requests(listing, None, now_ns=210 * s, orphan_after_s=300)
    assert plan.batches == [["new.png"]]
    # old.png gets its sidecar later: it must still be picked up although newer files were seen
    listing["old.png.meta.json"] = (5, 220 * s)
    plan2 = plan_ingest_requests(listing, plan.cursor, now_ns=221 * s)
    assert plan2.batches == [["old.png"]]
    # a file that never gets a sidecar is released after the grace period (to be quarantined)
    listing["stray.bin"] = (3, 230 * s)
    assert plan_ingest_requests(listing, plan2.cursor, now_ns=231 * s).batches == []
    assert plan_ingest_requests(listing, plan2.cursor, now_ns=231 * s + 301 * s).batches == [["stray.bin"]]


def test_resource_builds_an_s3_home(s3_env, bucket, tmp_path: Path) -> None:
    from dagster_aws.s3 import S3Resource

    res = PipelineHome(home=str(tmp_path / "home"), inbox=str(tmp_path / "inbox"), store=f"s3://{bucket}/blobs",
                       s3=S3Resource(endpoint_url=s3_env, region_name="us-east-1"))
    home = res.open()
    assert type(home.store).__name__ == "S3ObjectStore" and home.store.bucket == bucket


@pytest.mark.parametrize("command", [  # the quick start runs in test_docs, on the README's own command
    ["dagster", "asset", "materialize", "-m", "asset_pipeline.definitions", "--select", "group:ingest"],
])
def test_command_lines_ingest_the_inbox(tmp_path: Path, command: list[str]) -> None:
    home = tmp_path / "data"
    bindir = Path(sys.executable).parent
    env = {**os.environ, "ASSET_PIPELINE_HOME": str(home), "DAGSTER_HOME": str(tmp_path / "dh")}
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    if command[0] == "dagster":
        subprocess.run([str(bindir / "asset-pipeline"), "make-samples", str(home / "inbox")], check=True, env=env)
    proc = subprocess.run([str(bindir / command[0]), *command[1:]], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cat = Catalog(home)
    assert cat.sql("select count(*) n from assets").to_pylist() == [{"n": 13}]
    assert cat.sql("select count(*) n from ingest_errors").to_pylist() == [{"n": 4}]
