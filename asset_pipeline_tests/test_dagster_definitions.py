"""What a Dagster user sees of the project's definitions: row counts and columns on every table,
owners and code references, blocking checks that run alone, partitions that start near the home's
creation, unpartitioned snapshots, descriptions, declarative automation of derived tables."""

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml

from asset_pipeline import Catalog
from asset_pipeline.dagster_defs.build import build_definitions
from asset_pipeline.dagster_defs.partitions import LOOKBACK, partitions_start
from asset_pipeline.embeddings.model import TINY_TEST
from asset_pipeline.errors import ConfigError
from asset_pipeline.identity import asset_id_for
from asset_pipeline.samples import make_samples
from asset_pipeline.settings import Settings
from asset_pipeline.store import LocalObjectStore

from .conftest import REPO, materialization_metadata

BIN = Path(sys.executable).parent
# Asset -> the table (Delta, or the published report / LanceDB table) whose rows it counts.
TABLE_ASSETS = ("assets", "asset_versions", "ingest_errors", "usage_events", "lifecycle_actions", "near_duplicates",
                "collection_stats", "models", "daily_usage", "popular_assets", "asset_usage_stats",
                "storage_by_project")
SNAPSHOTS = ("asset_usage_stats", "storage_by_project", "asset_usage_refresh", "table_upkeep")
DAILY = ("daily_usage", "popular_assets", "lifecycle_actions")


def _today() -> date:
    return datetime.now(UTC).date()


def _run(defs: dg.Definitions, job: str, instance: dg.DagsterInstance, **kwargs) -> dict[str, dict]:
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, **kwargs)
    assert result.success, job
    return materialization_metadata(result)


def test_every_table_asset_shows_its_row_count_and_columns(ingested: Catalog, settings: Settings) -> None:
    yesterday = (_today() - timedelta(days=1)).isoformat()
    sunset = asset_id_for("research", "images/sunset")
    for user in ("ann", "bob"):
        ingested.record_usage(sunset, "download", user, at=datetime.fromisoformat(yesterday).replace(tzinfo=UTC))
    ingested.flush()
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    seen: dict[str, dict] = {}
    with dg.instance_for_test() as instance:
        seen |= _run(defs, "ingest_job", instance)  # nothing new: the tables' counts as they are
        seen |= _run(defs, "embed_job", instance,
                     run_config={"resources": {"embedder": {"config": {"model": TINY_TEST}}}})
        seen |= _run(defs, "usage_intake_job", instance)
        seen |= _run(defs, "usage_job", instance, partition_key=yesterday)
        seen |= _run(defs, "lifecycle_job", instance, partition_key=yesterday)
        seen |= _run(defs, "provenance_job", instance)
        seen |= materialization_metadata(dg.materialize(
            [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and "collection_stats" in
             {k.to_user_string() for k in a.keys}], instance=instance, resources=defs.resources))
    for name in TABLE_ASSETS:
        counted = ingested.sql(f"select count(*) n from {name}").to_pylist()[0]["n"]
        assert seen[name]["dagster/row_count"] == counted, name
        declared = graph.get(dg.AssetKey(name)).metadata.get("dagster/column_schema")
        shown = seen[name]["dagster/column_schema"]
        columns = [c.name for c in shown.columns]
        assert columns and set(columns) <= {c["column_name"] for c in ingested.sql(f"describe {name}").to_pylist()}
        if name not in ("daily_usage", "popular_assets", "asset_usage_stats", "storage_by_project"):
            assert declared is not None and [c.name for c in declared.columns] == columns, name
    assert seen["asset_versions"]["dagster/row_count"] == 14 and seen["usage_events"]["dagster/row_count"] == 2
    assert seen["clip_embeddings"]["dagster/row_count"] == 11  # the LanceDB table


def test_owners_code_references_descriptions(settings: Settings) -> None:
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:asset-pipeline"], key
        if key.to_user_string() != "inbox":  # an external spec: no code of ours materializes it
            refs = node.metadata["dagster/code_references"].code_references
            assert any(getattr(r, "file_path", "").endswith(".py") for r in refs), key
        assert node.description, key
    owned = build_definitions(Settings.from_env(home=settings.home.uri, owners=("media-team@example.com",)))
    assert {tuple(owned.resolve_asset_graph().get(k).owners)
            for k in owned.resolve_asset_graph().get_all_asset_keys()} == {("media-team@example.com",)}
    with pytest.raises(ConfigError, match="owner 'media team' must be an email or team:NAME"):
        Settings.from_env(home=settings.home.uri, owners=("media team",))
    for job in defs.resolve_all_job_defs():
        assert job.name == "__ASSET_JOB" or job.description, job.name
    for sensor in defs.sensors:
        assert sensor.description, sensor.name
    for schedule in defs.schedules:
        assert schedule.description, schedule.name


@pytest.fixture
def default_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The partitions' start as a deployment that does not choose one gets it."""
    monkeypatch.delenv("ASSET_PIPELINE_PARTITIONS_START")


def test_snapshots_are_not_partitioned_and_partitions_start_near_the_home(
        home_dir, default_start: None, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env(home=home_dir)
    today = _today()
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    for name in SNAPSHOTS:
        assert graph.get(dg.AssetKey(name)).partitions_def is None, name
    for name in DAILY:
        daily = graph.get(dg.AssetKey(name)).partitions_def
        # A home without tables yet: a month before today (not hundreds of empty days).
        assert daily.start.date() == today - LOOKBACK, name
        assert len(daily.get_partition_keys()) == LOOKBACK.days, name
    assert defs.resolve_job_def("usage_job").partitions_def == daily
    chosen = build_definitions(Settings.from_env(home=settings.home.uri, partitions_start="2026-01-05"))
    assert chosen.resolve_job_def("lifecycle_job").partitions_def.start.date() == date(2026, 1, 5)
    monkeypatch.setenv("ASSET_PIPELINE_PARTITIONS_START", "2026-13-01")
    with pytest.raises(ConfigError, match=r"partitions start must be a date \(YYYY-MM-DD\), got '2026-13-01' "
                                          r"\(ASSET_PIPELINE_PARTITIONS_START\)"):
        Settings.from_env(home=settings.home.uri)


def test_partitions_start_a_month_before_the_home_was_created(home_dir, default_start: None, tmp_path) -> None:
    settings = Settings.from_env(home=home_dir)
    make_samples(settings.inbox)
    long_ago = date(2001, 1, 1)
    today = _today()
    fresh = Settings.from_env(home=str(tmp_path / "fresh"))
    assert partitions_start(fresh, today=long_ago) == long_ago - LOOKBACK  # no home yet: from "today"
    Catalog(settings=settings).ingest()
    # Once the home has tables, their creation day (today, for this home) decides, whatever the clock says.
    assert partitions_start(settings, today=long_ago) == today - LOOKBACK
    assert build_definitions(settings).resolve_job_def("usage_job").partitions_def.start.date() == today - LOOKBACK


def test_blob_check_is_blocking_and_runs_alone(ingested: Catalog, settings: Settings) -> None:
    defs = build_definitions(settings)
    key = dg.AssetCheckKey(dg.AssetKey("lifecycle_actions"), "blob_references")
    spec = defs.resolve_asset_graph().get_check_spec(key)
    assert spec.blocking
    home = settings.home.path
    store = LocalObjectStore(home)
    blob = store.path(next(store.iter_hashes()))
    blob.chmod(0o644)
    blob.unlink()  # a version without its blob
    with dg.instance_for_test() as instance:
        # What the UI's "Execute" on the check does: a run of the check alone.
        job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=set(),
                                                                      asset_check_selection={key})
        result = job.execute_in_process(instance=instance, raise_on_error=False)
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.check_name == "blob_references" and not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR and not result.success  # a missing blob blocks
        assert evaluation.metadata["missing"].value == 1
        assert not result.get_asset_materialization_events()  # the check alone: no sweep ran


def test_derived_tables_follow_the_catalog_by_declarative_automation(settings: Settings,
                                                                     sample_counts: dict[str, int]) -> None:
    defs = build_definitions(settings)
    sensor = next(s for s in defs.sensors if s.name == "derived_tables_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    derived = {dg.AssetKey(n) for n in ("collection_stats", "models", "storage_attribution")}
    with dg.instance_for_test() as instance:
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # before any ingest: nothing to follow
        _run(defs, "ingest_job", instance)
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert {k for k in derived if after.get_num_requested(k)} == derived and after.total_requested == 3
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=after.cursor)
        assert again.total_requested == 0  # requested once per change, not on every tick


def _dagster(args: list[str], settings: Settings) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASSET_PIPELINE_HOME": str(settings.home.path),
           "DAGSTER_HOME": str(settings.home.path / "dagster")}
    return subprocess.run([str(BIN / "dagster"), *args], env=env, capture_output=True, text=True, timeout=300)


def test_one_module_holds_everything_and_the_workspace_splits_it(ingested: Catalog, settings: Settings) -> None:
    """`-m asset_pipeline.definitions` is the whole project (a daily group by its partition works
    from it); workspace.yaml's two locations hold every asset exactly once between them."""
    (settings.home.path / "dagster").mkdir()
    listed = {}
    for module in ("asset_pipeline.definitions", "asset_pipeline.core_definitions", "asset_pipeline.usage_definitions"):
        out = _dagster(["asset", "list", "-m", module], settings)
        assert out.returncode == 0, out.stderr[-2000:]
        listed[module] = out.stdout.split()
    core, usage = listed["asset_pipeline.core_definitions"], listed["asset_pipeline.usage_definitions"]
    assert sorted(core + usage) == sorted(listed["asset_pipeline.definitions"]) and not set(core) & set(usage)
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert [e["python_module"]["module_name"] for e in workspace] == ["asset_pipeline.core_definitions",
                                                                      "asset_pipeline.usage_definitions"]
    for group in ("usage", "lifecycle"):
        run = _dagster(["asset", "materialize", "-m", "asset_pipeline.definitions", "--select", f"group:{group}",
                        "--partition", (_today() - timedelta(days=1)).isoformat()], settings)
        assert run.returncode == 0 and "RUN_SUCCESS" in run.stderr, run.stderr[-2000:]
