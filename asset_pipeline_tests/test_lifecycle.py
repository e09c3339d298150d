"""Retention policies, archive/restore, soft/hard delete with refcounts, audit, crash safety."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from deltalake import DeltaTable

from asset_pipeline import AssetUnavailable, Catalog, Settings
from asset_pipeline.definitions import build_definitions
from asset_pipeline.identity import asset_id_for
from asset_pipeline.lifecycle.actions import LifecycleError, blob_report, sweep
from asset_pipeline.lifecycle.policies import PolicyError, parse_config

from .conftest import materialization_metadata, run_python

SUNSET = asset_id_for("research", "images/sunset")
COPY = asset_id_for("research", "images/sunset-copy")
MARKETING = asset_id_for("marketing", "marketing/sunset")
FOREST = asset_id_for("research", "images/forest")
ICON = asset_id_for("research", "images/icon")
CHIME = asset_id_for("research", "audio/chime")
DAY = "2026-11-10"
# These tests exercise the actions themselves; the guard rails that stand in front of them (a new
# policy's preview, the mass-delete share, the minimum grace period) are switched off explicitly,
# as a configuration would, and tested in test_retention_guard_rails.py.
ACT_NOW = {"preview_new_policies": False, "allow_mass_delete": True, "allow_short_grace_period": True}


def _statuses(cat: Catalog) -> dict[str, str]:
    return {r["id"]: r["status"] for r in cat.sql("select id, status from assets").to_pylist()}


def _write_policies(settings: Settings, doc: dict) -> None:
    settings.retention_file.write_text(yaml.safe_dump(doc))


def _sweep(cat: Catalog, doc: dict, day: str = DAY, run_id: str = "test", dry_run: bool | None = None):
    config = parse_config({**ACT_NOW, **doc})
    lifecycle = cat.lifecycle()
    lifecycle.blob_grace = timedelta(hours=config.blob_grace_hours)
    return sweep(lifecycle, config.policies, config.grace_period_days, day, run_id,
                 config.dry_run if dry_run is None else dry_run, config.guard_rails)


@pytest.mark.parametrize("doc, message", [
    ({"policies": [{"name": "x", "action": "shred", "select": {"type": "image"}}]}, "policy 'x': 'action'"),
    ({"policies": [{"name": "x", "action": "archive", "select": {}}]}, "policy 'x': 'select' needs"),
    ({"policies": [{"name": "x", "action": "archive", "select": {"colour": "red"}}]}, "unknown select key"),
    ({"policies": [{"name": "x", "action": "archive", "select": {"type": "hologram"}}]}, "select.type"),
    ({"policies": [{"name": "x", "action": "delete", "select": {"older_than_days": -1}}]}, "older_than_days"),
    ({"policies": [{"name": "x", "action": "delete", "select": {"project": "p"}}] * 2}, "duplicate name"),
    ({"grace_period_days": "soon"}, "grace_period_days"),
])
def test_invalid_policies_fail_with_a_clear_message(doc, message) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_config(doc)


def test_invalid_policies_fail_the_sweep_before_anything_is_touched(ingested: Catalog, settings) -> None:
    _write_policies(settings, {"policies": [
        {"name": "good", "action": "delete", "select": {"project": "research"}},
        {"name": "bad", "action": "delete", "select": {"unused_for_days": "ninety"}}]})
    before = DeltaTable(ingested.tables.uri("assets")).version()
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("lifecycle_job").execute_in_process(
            instance=instance, partition_key=DAY, raise_on_error=False)
    assert not result.success
    assert DeltaTable(ingested.tables.uri("assets")).version() == before
    assert set(_statuses(ingested).values()) == {"active"}


def test_each_policy_kind_selects_exactly(ingested: Catalog) -> None:
    DeltaTable(ingested.tables.uri("assets")).update(
        {"last_accessed": "'2026-11-09T12:00:00Z'::timestamp"}, predicate=f"id = '{SUNSET}'")
    summary = _sweep(ingested, {"grace_period_days": 30, "policies": [
        {"name": "old-audio", "action": "archive", "select": {"type": "audio", "older_than_days": 5}},
        {"name": "duplicates", "action": "delete", "select": {"tags": ["duplicate"]}},
        {"name": "unused-research-images", "action": "archive",
         "select": {"project": "research", "type": "image", "unused_for_days": 3}},
    ]})
    status = _statuses(ingested)
    unused_images = {asset_id_for("research", n) for n in
                     ("images/forest", "images/icon", "images/portrait", "images/city", "images/hero")}
    assert summary.selected == {"old-audio": 1, "duplicates": 1, "unused-research-images": len(unused_images)}
    assert status[CHIME] == "archived" and status[COPY] == "deleted" and status[SUNSET] == "active"
    assert {i for i, s in status.items() if s == "archived"} == unused_images | {CHIME}
    assert status[MARKETING] == "active"  # another project
    audit = ingested.sql("select policy, count(distinct asset_id) n from lifecycle_actions "
                         "where partition_key = ? group by 1 order by 1", [DAY]).to_pylist()
    assert audit == [{"policy": "duplicates", "n": 1}, {"policy": "old-audio", "n": 1},
                     {"policy": "unused-research-images", "n": len(unused_images)}]


def test_dry_run_touches_nothing(ingested: Catalog, settings) -> None:
    before = {t: DeltaTable(ingested.tables.uri(t)).version() for t in ("assets", "asset_versions")}
    blobs = sorted(ingested.home.store.iter_hashes())
    summary = _sweep(ingested, {"dry_run": True, "grace_period_days": 0, "policies": [
        {"name": "everything", "action": "archive", "select": {"older_than_days": 0}}]})
    assert summary.selected["everything"] == 13 and summary.archived == 0
    assert {t: DeltaTable(ingested.tables.uri(t)).version() for t in before} == before
    assert sorted(ingested.home.store.iter_hashes()) == blobs
    assert not list(ingested.lifecycle().archive_store.iter_hashes())
    rows = ingested.sql("select distinct dry_run from lifecycle_actions").to_pylist()
    assert rows == [{"dry_run": True}]


def test_archive_get_says_so_restore_gives_identical_bytes(ingested: Catalog, settings) -> None:
    _write_policies(settings, {"blob_grace_hours": 0})
    original = ingested.get(FOREST).read()
    sha = ingested.asset(FOREST)["current_sha256"]
    ingested.archive(FOREST)
    assert not ingested.home.store.exists(sha) and ingested.lifecycle().archive_store.exists(sha)
    with pytest.raises(AssetUnavailable, match=r"archived; restore it with Catalog.restore"):
        ingested.get(FOREST)
    ingested.restore(FOREST)
    assert ingested.get(FOREST).read() == original
    assert not ingested.lifecycle().archive_store.exists(sha)  # nobody archived needs it any more
    actions = ingested.sql("select action from lifecycle_actions where asset_id = ? order by acted_at", [FOREST])
    assert [r["action"] for r in actions.to_pylist()] == ["archive", "restore"]
    with pytest.raises(LifecycleError, match="not archived"):
        ingested.restore(FOREST)


def test_soft_delete_hides_from_search_and_undelete_brings_it_back(ingested: Catalog, monkeypatch) -> None:
    from asset_pipeline.embeddings.job import embed_pending
    from asset_pipeline.embeddings.model import TINY_TEST, load_model, parse_model
    from asset_pipeline.embeddings.vectors import VectorStore

    monkeypatch.setenv("ASSET_PIPELINE_CLIP_MODEL", TINY_TEST)
    embed_pending(ingested.tables, ingested.home.store, VectorStore(ingested.home.settings.lancedb_dir),
                  load_model(parse_model(TINY_TEST)), num_workers=0)
    assert FOREST in {h["asset_id"] for h in ingested.search(text="forest", k=50)}
    ingested.delete(FOREST)
    assert FOREST not in {h["asset_id"] for h in ingested.search(text="forest", k=50)}
    with pytest.raises(AssetUnavailable, match="was deleted on .*; undelete it"):
        ingested.get(FOREST)
    ingested.undelete(FOREST)
    assert FOREST in {h["asset_id"] for h in ingested.search(text="forest", k=50)}
    assert ingested.get(FOREST).read()


def test_hard_delete_after_grace_frees_the_blob(ingested: Catalog) -> None:
    sha = ingested.asset(ICON)["current_sha256"]
    ingested.delete(ICON)
    kept = _sweep(ingested, {"grace_period_days": 30}, day=datetime.now(UTC).date().isoformat())
    assert kept.hard_deleted == 0 and ingested.home.store.exists(sha)  # still within grace
    today = datetime.now(UTC).date().isoformat()
    summary = _sweep(ingested, {"grace_period_days": 0, "blob_grace_hours": 0}, day=today)
    assert summary.hard_deleted == 1 and summary.bytes_freed == ingested.asset(ICON)["size_bytes"]
    assert not ingested.home.store.exists(sha)
    with pytest.raises(LifecycleError, match="hard-deleted"):
        ingested.undelete(ICON)
    freed = ingested.sql("select sum(bytes) b from lifecycle_actions where action = 'hard_delete'").to_pylist()
    assert freed == [{"b": ingested.asset(ICON)["size_bytes"]}]
    assert blob_report(ingested.lifecycle()) == {"orphans": [], "missing": []}


def test_a_blob_shared_by_two_assets_survives_deleting_one(ingested: Catalog, settings) -> None:
    _write_policies(settings, {"blob_grace_hours": 0})
    sha = ingested.asset(SUNSET)["current_sha256"]
    assert ingested.asset(COPY)["current_sha256"] == sha == ingested.asset(MARKETING)["current_sha256"]
    ingested.delete(COPY)
    summary = _sweep(ingested, {"grace_period_days": 0}, day=datetime.now(UTC).date().isoformat())
    assert summary.hard_deleted == 1 and summary.bytes_freed == 0
    assert ingested.home.store.exists(sha) and ingested.get(SUNSET).read()
    ingested.archive(MARKETING)  # archived copy made, hot copy kept: sunset still needs it
    assert ingested.home.store.exists(sha) and ingested.lifecycle().archive_store.exists(sha)
    assert ingested.get(SUNSET).read()


def test_a_partition_is_idempotent(ingested: Catalog) -> None:
    doc = {"policies": [{"name": "audio", "action": "archive", "select": {"type": "audio"}}]}
    first = _sweep(ingested, doc)
    rows = ingested.sql("select count(*) n from lifecycle_actions").to_pylist()
    second = _sweep(ingested, doc)
    assert (first.archived, second.archived, second.audit_rows) == (1, 0, 0)
    assert ingested.sql("select count(*) n from lifecycle_actions").to_pylist() == rows


@pytest.mark.parametrize("point", ["lifecycle-status", "lifecycle-reconcile"])
def test_killed_sweep_completes_on_rerun_and_loses_nothing(ingested: Catalog, settings, point) -> None:
    contents = {i: ingested.get(i).read() for i in (FOREST, CHIME, SUNSET)}
    _write_policies(settings, {**ACT_NOW, "grace_period_days": 0, "blob_grace_hours": 0, "policies": [
        {"name": "archive-media", "action": "archive",
         "select": {"type": ["image", "audio"], "project": "research"}}]})
    code = ("from asset_pipeline import Catalog, Settings\n"
            "from asset_pipeline.lifecycle.actions import sweep\n"
            "from asset_pipeline.lifecycle.policies import load_config\n"
            f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}))\n"
            "r = load_config(c.home.settings.retention_file)\n"
            f"sweep(c.lifecycle(), r.policies, r.grace_period_days, {DAY!r}, 'run-x', rails=r.guard_rails)\n")
    crashed = run_python(code, env={"ASSET_PIPELINE_CRASH_AT": point})
    assert crashed.returncode == 137, crashed.stderr
    again = run_python(code)
    assert again.returncode == 0, again.stderr
    cat = Catalog(settings=settings)
    assert blob_report(cat.lifecycle()) == {"orphans": [], "missing": []}
    for asset_id, data in contents.items():
        cat.restore(asset_id)
        assert cat.get(asset_id).read() == data


def test_archive_and_restore_against_s3(s3_client, bucket, settings, sample_counts) -> None:
    s3_settings = Settings.from_env(home=settings.home, archive=f"s3://{bucket}/cold", durable=False)
    cat = Catalog(settings=s3_settings, s3_client=s3_client)
    cat.ingest()
    settings.retention_file.write_text(yaml.safe_dump({"archive_storage_class": "GLACIER_IR", "blob_grace_hours": 0}))
    original = cat.get(CHIME).read()
    sha = cat.asset(CHIME)["current_sha256"]
    cat.archive(CHIME)
    head = s3_client.head_object(Bucket=bucket, Key=f"cold/objects/{sha[:2]}/{sha[2:4]}/{sha}")
    assert head["StorageClass"] == "GLACIER_IR" and not cat.home.store.exists(sha)
    cat.restore(CHIME)
    assert cat.get(CHIME).read() == original
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket, Prefix="cold/")


def test_lifecycle_job_through_dagster_with_its_check(ingested: Catalog, settings) -> None:
    _write_policies(settings, {**ACT_NOW, "policies": [
        {"name": "audio", "action": "archive", "select": {"type": "audio"}}]})
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("lifecycle_job").execute_in_process(instance=instance, partition_key=DAY)
        assert result.success
        meta = materialization_metadata(result)
        assert meta["lifecycle_actions"]["archived"] == 1 and meta["lifecycle_actions"]["bytes_moved_to_archive"] > 0
        assert meta["table_upkeep"]["tables"] >= 3
        assert [(c.check_name, c.passed) for c in result.get_asset_check_evaluations()] == [("blob_references", True)]
        # an orphan blob (bytes no version references) fails the check once it is older than the
        # grace window (a younger one may belong to an ingest that has not committed yet)
        orphan, _, _ = ingested.home.store.put_stream(__import__("io").BytesIO(b"nobody references me"))
        again = defs.resolve_job_def("lifecycle_job").execute_in_process(instance=instance, partition_key=DAY)
        assert [(c.check_name, c.passed) for c in again.get_asset_check_evaluations()] == [("blob_references", True)]
        # (A blob's age counts from when it was put under its key: the later of mtime and ctime,
        # since an inbox file hard-linked into the store keeps the generator's mtime. ctime cannot
        # be set back, so the grace window is made short instead.)
        _write_policies(settings, {"blob_grace_hours": 0.0001,
                                   "policies": [{"name": "audio", "action": "archive", "select": {"type": "audio"}}]})
        time.sleep(0.5)
        again = defs.resolve_job_def("lifecycle_job").execute_in_process(instance=instance, partition_key=DAY)
        assert [(c.check_name, c.passed) for c in again.get_asset_check_evaluations()] == [("blob_references", False)]
        assert materialization_metadata(again)["lifecycle_actions"]["archived"] == 0  # idempotent
        # An orphan is a warning (later sweeps collect it): upkeep still runs. A missing blob blocks
        # (test_dagster_definitions).
        (evaluation,) = again.get_asset_check_evaluations()
        assert evaluation.severity == dg.AssetCheckSeverity.WARN and "table_upkeep" in materialization_metadata(again)
        schedule = defs.resolve_schedule_def("lifecycle_daily")
        with dg.build_schedule_context(instance=instance,
                                       scheduled_execution_time=datetime(2026, 11, 25, 3, tzinfo=UTC)) as ctx:
            assert [r.partition_key for r in schedule.evaluate_tick(ctx).run_requests] == ["2026-11-24"]


def test_upkeep_compacts_small_files(ingested: Catalog, settings) -> None:
    from asset_pipeline.lifecycle.upkeep import upkeep

    for i in range(5):
        ingested.record_usage(SUNSET, "view", f"u{i}", at="2026-11-20T00:00:00Z")
        ingested.flush()
    assert len(ingested.tables.files("usage_events")) == 5
    reports = {r.table: r for r in upkeep(ingested.tables, Path(settings.lancedb_dir), retention_hours=0)}
    assert reports["usage_events"].files_after == 1
    assert ingested.sql("select count(*) n from usage_events").to_pylist() == [{"n": 5}]
