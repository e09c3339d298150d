"""Retention is the one place the product destroys data: the guard rails that stop a careless
policy, and what `get` says once something is gone."""

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import yaml
from deltalake import DeltaTable

from asset_pipeline import AssetUnavailable, Catalog
from asset_pipeline.definitions import build_definitions
from asset_pipeline.identity import asset_id_for
from asset_pipeline.lifecycle.actions import LifecycleError, sweep
from asset_pipeline.lifecycle.guard import MassDeleteRefused
from asset_pipeline.lifecycle.policies import PolicyError, parse_config

ICON = asset_id_for("research", "images/icon")
FOREST = asset_id_for("research", "images/forest")
EVERYTHING = {"name": "everything", "action": "delete", "select": {"older_than_days": 0}}


def _day(offset: int = 0) -> str:
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


def _sweep(cat: Catalog, doc: dict, day: str, dry_run: bool | None = None):
    """One sweep as its own run (a run's own rows never count as a policy's preview)."""
    config = parse_config(doc)
    return sweep(cat.lifecycle(), config.policies, config.grace_period_days, day, f"test-{uuid.uuid4().hex[:8]}",
                 config.dry_run if dry_run is None else dry_run, config.guard_rails)


def _statuses(cat: Catalog) -> dict[str, str]:
    return {r["id"]: r["status"] for r in cat.sql("select id, status from assets").to_pylist()}


def _run_lifecycle(settings, doc: dict, day: str, instance):
    settings.retention_file.write_text(yaml.safe_dump(doc))
    job = build_definitions(settings).resolve_job_def("lifecycle_job")
    return job.execute_in_process(instance=instance, partition_key=day, raise_on_error=False)


def _failure(result) -> str:
    """The project's own error under Dagster's wrapper, as the CLI prints it."""
    messages = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                error = error.cause
            messages.append(error.message)
    return "\n".join(messages)


@pytest.mark.parametrize("grace", [0, 0.5])
def test_a_grace_period_below_one_day_is_refused_unless_allowed(grace) -> None:
    with pytest.raises(PolicyError, match=r"grace_period_days .* below the minimum of 1 day.*"
                                          "allow_short_grace_period: true"):
        parse_config({"grace_period_days": grace})
    assert parse_config({"grace_period_days": grace, "allow_short_grace_period": True}).grace_period_days == grace


def test_the_reported_accident_cannot_happen(ingested: Catalog, settings) -> None:
    """grace 0 + older_than_days 0 + dry_run omitted soft-deleted all 13 assets and hard-deleted
    every blob a day later. Now: the config is refused; fixed to a legal grace period, the new
    policy is previewed first, and then the sweep refuses to delete 13 of 13 assets."""
    blobs = sorted(ingested.home.store.iter_hashes())
    versions = DeltaTable(ingested.tables.uri("assets")).version()
    with dg.instance_for_test() as instance:
        first = _run_lifecycle(settings, {"grace_period_days": 0, "policies": [EVERYTHING]}, "2026-11-20", instance)
        assert not first.success and "below the minimum of 1 day" in _failure(first)
        doc = {"grace_period_days": 1, "policies": [EVERYTHING]}
        preview = _run_lifecycle(settings, doc, "2026-11-20", instance)
        assert preview.success
        meta = {e.materialization.asset_key.to_user_string(): e.materialization.metadata
                for e in preview.get_asset_materialization_events()}["lifecycle_actions"]
        assert meta["previewed_policies"].value == "everything" and meta["soft_deleted"].value == 0
        refused = _run_lifecycle(settings, doc, "2026-11-21", instance)
    assert not refused.success
    message = _failure(refused)
    assert "would delete 13 assets" in message and "100% of the 13 active assets" in message
    assert "'everything' 13" in message and "max_delete_share" in message and "allow_mass_delete: true" in message
    assert set(_statuses(ingested).values()) == {"active"}
    assert DeltaTable(ingested.tables.uri("assets")).version() == versions
    assert sorted(ingested.home.store.iter_hashes()) == blobs
    rows = ingested.sql("select distinct dry_run from lifecycle_actions").to_pylist()
    assert rows == [{"dry_run": True}]  # only the preview was recorded


def test_allow_mass_delete_lets_a_sweep_through(ingested: Catalog) -> None:
    doc = {"grace_period_days": 1, "allow_mass_delete": True, "policies": [EVERYTHING]}
    assert _sweep(ingested, doc, _day()).deleted == 0  # the preview
    summary = _sweep(ingested, doc, _day(1))
    assert summary.deleted == 13 and "would delete 13 assets" in summary.mass_delete
    assert set(_statuses(ingested).values()) == {"deleted"}


def test_the_share_counts_bytes_too(ingested: Catalog) -> None:
    """One asset of 13 (8%) is within a 10% share of assets, but not when it holds a third of the bytes."""
    chime = asset_id_for("research", "audio/chime")
    held = {r["id"]: int(r["b"]) for r in ingested.sql(
        "select asset_id id, sum(size_bytes) b from asset_versions group by all").to_pylist()}
    total = sum(held.values())
    assert held[chime] > 0.3 * total and held[ICON] < 0.1 * total
    base = {"grace_period_days": 30, "preview_new_policies": False}
    sfx = {"name": "sfx", "action": "delete", "select": {"tags": ["sfx"]}}
    with pytest.raises(MassDeleteRefused, match=rf"would delete 1 assets .* 8% of the 13 active assets, holding "
                                                rf"32.0 KB, {100 * held[chime] / total:.0f}% of"):
        _sweep(ingested, {**base, "policies": [sfx]}, _day())
    assert _statuses(ingested)[chime] == "active"
    icons = {"name": "icons", "action": "delete", "select": {"tags": ["icon"]}}
    assert _sweep(ingested, {**base, "policies": [icons]}, _day()).deleted == 1  # 1 asset, 5% of the bytes
    assert _sweep(ingested, {**base, "max_delete_share": 0.5, "policies": [sfx]}, _day()).deleted == 1


def test_hard_deletes_count_against_the_share(ingested: Catalog) -> None:
    ingested.delete(ICON)
    ingested.delete(FOREST)
    day = _day(40)  # past the 30-day grace period of both
    with pytest.raises(MassDeleteRefused, match=r"2 hard deletes past the grace period"):
        _sweep(ingested, {"grace_period_days": 30}, day)
    assert ingested.home.store.exists(ingested.asset(ICON)["current_sha256"])
    ingested.undelete(ICON)  # still possible: nothing happened
    summary = _sweep(ingested, {"grace_period_days": 30}, day)  # 1 of 12 active, a small icon
    assert summary.hard_deleted == 1


def test_a_dry_run_never_fails_but_says_what_a_real_run_would_meet(ingested: Catalog) -> None:
    summary = _sweep(ingested, {"grace_period_days": 1, "dry_run": True, "policies": [EVERYTHING]}, _day())
    assert summary.selected == {"everything": 13} and summary.deleted == 0
    assert "would delete 13 assets" in summary.mass_delete


def test_a_new_policy_is_previewed_before_it_acts(ingested: Catalog) -> None:
    doc = {"policies": [{"name": "audio", "action": "archive", "select": {"type": "audio"}}]}
    first = _sweep(ingested, doc, "2026-11-10")
    assert first.previewed == ["audio"] and first.archived == 0 and first.selected == {"audio": 1}
    assert "archived" not in _statuses(ingested).values()
    again = _sweep(ingested, doc, "2026-11-10")  # the same partition again: still a preview
    assert again.archived == 0
    second = _sweep(ingested, doc, "2026-11-11")
    assert second.previewed == [] and second.archived == 1
    rows = ingested.sql("select partition_key, dry_run from lifecycle_actions where policy = 'audio' "
                        "order by partition_key").to_pylist()
    assert rows == [{"partition_key": "2026-11-10", "dry_run": True}, {"partition_key": "2026-11-11", "dry_run": False}]
    direct = _sweep(ingested, {"preview_new_policies": False, "policies": [
        {"name": "video", "action": "archive", "select": {"type": "video"}}]}, "2026-11-11")
    assert direct.archived == 1


def test_after_a_hard_delete_get_says_what_happened_and_when(ingested: Catalog) -> None:
    ingested.delete(ICON)
    with pytest.raises(AssetUnavailable, match=r"was deleted on \d{4}-\d\d-\d\d .* undelete it before "
                                               r"\d{4}-\d\d-\d\d \d\d:\d\d UTC with Catalog.undelete"):
        ingested.get(ICON)
    _sweep(ingested, {"grace_period_days": 1}, _day(2))
    with pytest.raises(AssetUnavailable) as info:
        ingested.get(ICON)
    message = str(info.value)
    assert "hard-deleted on " + datetime.now(UTC).strftime("%Y-%m-%d") in message
    assert f"retention sweep {_day(2)}" in message and "cannot be undeleted" in message
    assert "within the grace period" not in message and "undelete it" not in message
    with pytest.raises(LifecycleError, match=r"hard-deleted on \d{4}-\d\d-\d\d \d\d:\d\d UTC \(retention sweep"):
        ingested.undelete(ICON)


@pytest.mark.parametrize("name", ["api", "grace_period", "refcount"])
def test_policy_names_the_audit_uses_itself_are_reserved(name) -> None:
    with pytest.raises(PolicyError, match="reserved"):
        parse_config({"policies": [{"name": name, "action": "archive", "select": {"type": "audio"}}]})


@pytest.mark.parametrize("doc, words", [
    ({"max_delete_share": 0}, "max_delete_share must be a fraction"),
    ({"max_delete_share": 1.5}, "max_delete_share must be a fraction"),
    ({"allow_mass_delete": "yes"}, "allow_mass_delete must be true or false"),
    ({"preview_new_policies": 1}, "preview_new_policies must be true or false"),
])
def test_guard_rail_settings_are_validated(doc, words) -> None:
    with pytest.raises(PolicyError, match=words):
        parse_config(doc)


def test_a_backfill_is_checked_over_all_its_days_before_any_changes(ingested: Catalog, settings) -> None:
    """Day by day, each day deletes one asset of 13 (8%); over the run they are 2 of 13 (15%): the
    run is refused before its first day changes anything."""
    table = DeltaTable(ingested.tables.uri("assets"))
    table.update({"created_at": "'2026-12-01T00:00:00Z'::timestamp"}, predicate="true")
    table.update({"created_at": "'2026-11-20T10:00:00Z'::timestamp"}, predicate=f"id = '{ICON}'")
    table.update({"created_at": "'2026-11-21T10:00:00Z'::timestamp"}, predicate=f"id = '{FOREST}'")
    settings.retention_file.write_text(yaml.safe_dump({"grace_period_days": 30, "preview_new_policies": False,
                                                       "policies": [EVERYTHING]}))
    job = build_definitions(settings).resolve_job_def("lifecycle_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False, tags={
            "dagster/asset_partition_range_start": "2026-11-20", "dagster/asset_partition_range_end": "2026-11-21"})
    assert not result.success
    message = _failure(result)
    assert "retention sweep 2026-11-20…2026-11-21" in message and "would delete 2 assets" in message
    assert set(_statuses(ingested).values()) == {"active"}
    for day in ("2026-11-20", "2026-11-21"):  # each day alone is within the share
        assert _sweep(ingested, {"grace_period_days": 30, "preview_new_policies": False, "policies": [EVERYTHING]},
                      day).deleted == 1


def test_a_new_prune_policy_is_previewed_too(ingested: Catalog) -> None:
    hero = asset_id_for("research", "images/hero")
    doc = {"policies": [{"name": "keep-1", "action": "prune_versions",
                         "select": {"keep_last_versions": 1, "project": "research"}}]}
    first = _sweep(ingested, doc, "2026-11-10")
    assert first.previewed == ["keep-1"]
    rows = ingested.sql("select version, dry_run from lifecycle_actions where action = 'prune_version'").to_pylist()
    assert rows == [{"version": 1, "dry_run": True}]
    assert ingested.get(hero, version=1).read()
    second = _sweep(ingested, doc, "2026-11-11")
    acted = ingested.sql("select count(*) n from lifecycle_actions where action = 'prune_version' and not dry_run")
    assert second.previewed == [] and acted.to_pylist() == [{"n": 1}]
