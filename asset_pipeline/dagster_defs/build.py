"""Building the project's Definitions for some or all of its jobs, importing only what they need.

A run's fixed cost is mostly imports: dagster itself (about 0.5 s), then whatever the code location
imports. The ingest job must not pay for dbt (dagster-dbt and dbt-core: 1.4 s), dagster-aws
(0.7 s), LanceDB or torch, so each group's module is imported only when a job of that group is
built. The CLI builds just the job it runs; the code locations of `workspace.yaml`
(`asset_pipeline.core_definitions`, `asset_pipeline.usage_definitions`) build their groups, and
`asset_pipeline.definitions` all of them.

Where steps run is `dagster_defs/executors.py`'s choice (ASSET_PIPELINE_EXECUTOR): by default in the
run's own process, on Celery workers or in Kubernetes pods when a deployment says so.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from collections.abc import Collection
from types import ModuleType

import dagster as dg

from asset_pipeline.dagster_defs.executors import default_executor, job_executor
from asset_pipeline.dagster_defs.k8s import COORDINATOR_K8S_CONFIG, k8s_tags
from asset_pipeline.dagster_defs.partitions import daily_partitions
from asset_pipeline.settings import Settings

INGEST_JOB = "ingest_job"
EMBED_JOB = "embed_job"
USAGE_JOB = "usage_job"
USAGE_INTAKE_JOB = "usage_intake_job"
LIFECYCLE_JOB = "lifecycle_job"
PROVENANCE_JOB = "provenance_job"
RECALL_JOB = "recall_job"

# The module (under asset_pipeline.dagster_defs.assets) that defines each group's assets.
GROUP_MODULES = {
    "ingest": "ingest", "embeddings": "embeddings", "usage": "usage", "usage_intake": "usage_intake",
    "collections": "collections", "lifecycle": "lifecycle", "provenance": "provenance",
}
JOB_GROUPS = {
    INGEST_JOB: "ingest", EMBED_JOB: "embeddings", USAGE_JOB: "usage", USAGE_INTAKE_JOB: "usage_intake",
    LIFECYCLE_JOB: "lifecycle", PROVENANCE_JOB: "provenance", RECALL_JOB: "provenance",
}
ALL_GROUPS = tuple(GROUP_MODULES)
# Cheap tables derived from the catalog that follow it by declarative automation (eager) rather
# than by a job of their own. The embedding job keeps its asset sensor: it is a job with its own
# executor and GPU tags, which runs launched by an automation sensor would not carry.
DERIVED_TABLES = {"collections": ("collection_stats",), "provenance": ("models", "storage_attribution")}


def EXCLUSIVE(name: str) -> dict[str, str]:  # noqa: N802 - reads as a constant at the call site
    """Run tag that the instance's run queue limits to one run per value (see dagster.yaml)."""
    return {"asset_pipeline/exclusive": name}


def _module(group: str) -> ModuleType:
    return importlib.import_module(f"asset_pipeline.dagster_defs.assets.{GROUP_MODULES[group]}")


def _job(name: str, m: ModuleType, settings: Settings) -> dg.UnresolvedAssetJobDefinition:
    """The job `name`, given its group's module (already imported), on the executor `settings` choose."""
    groups = dg.AssetSelection.groups
    define_asset_job = functools.partial(dg.define_asset_job, executor_def=job_executor(name, settings))
    if name == INGEST_JOB:  # ingests may run side by side (Delta merges re-planned on conflict)
        return define_asset_job(name, selection=groups(m.GROUP),
                                description="Ingest the inbox into the store and the Delta tables.")
    if name == EMBED_JOB:
        # On Kubernetes each embedding step gets a GPU pod (its op tags); the run's own pod only
        # coordinates (these job tags), so a GPU node is held only while embedding.
        return define_asset_job(name, selection=groups(m.GROUP),
                                tags={**m.GPU_TAGS, **k8s_tags(COORDINATOR_K8S_CONFIG)},
                                description="Embed new versions with open_clip (batch; GPU when present).")
    if name == USAGE_JOB:
        return define_asset_job(name, selection=groups(m.GROUP),
                                tags=EXCLUSIVE("analytics"),
                                description="Usage reports (dbt) and per-asset stats for a day or a range.")
    if name == USAGE_INTAKE_JOB:
        return define_asset_job(name, selection=groups(m.GROUP),
                                description="Read usage logs from the usage inbox into the usage_events table.")
    if name == LIFECYCLE_JOB:
        return define_asset_job(name, selection=groups(m.GROUP),
                                tags=EXCLUSIVE("lifecycle"),
                                description="Retention sweep (archive, delete, hard delete) and upkeep.")
    if name == PROVENANCE_JOB:
        return define_asset_job(name, selection=dg.AssetSelection.assets("models", "storage_attribution"),
                                description="Model rows and storage attributed per project/creator.")
    if name == RECALL_JOB:
        return define_asset_job(name, selection=dg.AssetSelection.assets("recalls"),
                                tags=EXCLUSIVE("lifecycle"),  # changes statuses: never beside a sweep
                                description="Take down everything a model produced (config: model, reason, "
                                            "by, dry_run).")
    raise KeyError(f"unknown job {name!r}; known: {sorted(JOB_GROUPS)}")


def _owned(spec: dg.AssetSpec, owners: Collection[str]) -> dg.AssetSpec:
    return spec.replace_attributes(owners=list(owners))


def build_definitions(settings: Settings | None = None, progress: bool = False, clip_model: str | None = None,
                      groups: Collection[str] | None = None, jobs: Collection[str] | None = None) -> dg.Definitions:
    """Definitions of `groups` (default: all) with their jobs, schedules and sensors — or, with
    `jobs`, of just the groups those jobs run. Only the modules of those groups are imported."""
    from asset_pipeline.dagster_defs.resources import ClipEmbedder, PipelineHome

    settings = settings or Settings.from_env()
    wanted = set(groups or ALL_GROUPS) if jobs is None else {JOB_GROUPS[j] for j in jobs}
    unknown = wanted - set(GROUP_MODULES)
    if unknown:
        raise KeyError(f"unknown asset group(s) {sorted(unknown)}; known: {sorted(GROUP_MODULES)}")
    modules = {g: _module(g) for g in ALL_GROUPS if g in wanted}
    daily = daily_partitions(settings) if {"usage", "lifecycle"} & set(modules) else None
    job_names = [j for j, g in JOB_GROUPS.items() if g in modules and (jobs is None or j in jobs)]
    built = {j: _job(j, modules[JOB_GROUPS[j]], settings) for j in job_names}
    assets: list = []
    checks: list = []
    for group, m in modules.items():
        if group == "ingest":
            assets += [m.inbox, m.ingest]
        elif group == "embeddings":  # fanned out into `embed_shards` steps (one per shard)
            clip = m.build_clip_embeddings(settings.embed_shards)
            assets += [clip, m.build_near_duplicates(clip)]
        elif group in ("usage", "lifecycle"):  # daily partitions from the settings' start
            built_here = m.build_assets(daily)
            assets += [a for a in built_here if not isinstance(a, dg.AssetChecksDefinition)]
            checks += [a for a in built_here if isinstance(a, dg.AssetChecksDefinition)]
        else:
            assets += dg.load_assets_from_modules([m])
    schedules, sensors = [], []
    if USAGE_JOB in built:
        schedules.append(dg.build_schedule_from_partitioned_job(
            built[USAGE_JOB], hour_of_day=1, name="usage_daily",
            description="At 01:00 UTC: yesterday's usage reports and the snapshots to date."))
    if LIFECYCLE_JOB in built:
        schedules.append(dg.build_schedule_from_partitioned_job(
            built[LIFECYCLE_JOB], hour_of_day=3, name="lifecycle_daily",
            description="At 03:00 UTC (after the usage reports): yesterday's retention sweep, then table upkeep."))
    from asset_pipeline.dagster_defs import sensors as sensor_defs

    if INGEST_JOB in built:
        sensors.append(sensor_defs.build_inbox_sensor(built[INGEST_JOB]))
    if EMBED_JOB in built:
        sensors.append(sensor_defs.build_embed_sensor(built[EMBED_JOB]))
    if USAGE_INTAKE_JOB in built:
        sensors.append(sensor_defs.build_usage_inbox_sensor(built[USAGE_INTAKE_JOB]))
    derived = [key for group, keys in DERIVED_TABLES.items() if group in modules for key in keys]
    if derived:
        sensors.append(dg.AutomationConditionSensorDefinition(
            "derived_tables_automation", target=dg.AssetSelection.assets(*derived),
            default_status=dg.DefaultSensorStatus.STOPPED, minimum_interval_seconds=60,
            description="Declarative automation of the tables derived from the catalog ("
                        + ", ".join(derived) + "): each is recomputed once after an ingest materialized "
                        "`assets` / `asset_versions` (AutomationCondition.eager)."))
    resources: dict = {"pipeline": PipelineHome.from_settings(settings, progress=progress)}
    if "embeddings" in modules:
        resources["embedder"] = ClipEmbedder(model=clip_model)
    if "usage" in modules:
        resources["dbt"] = modules["usage"].dbt_resource()
    # Who to ask about an asset, and a link from each asset to the code that defines it.
    assets = [_owned(a, settings.owners) if isinstance(a, dg.AssetSpec)
              else a.map_asset_specs(lambda spec: _owned(spec, settings.owners)) for a in assets]
    with warnings.catch_warnings():  # beta in 1.13; a normal run prints no warnings
        warnings.simplefilter("ignore", dg.BetaWarning)
        assets = dg.with_source_code_references(assets)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=list(built.values()),
        schedules=schedules,
        sensors=sensors,
        resources=resources,
        executor=default_executor(settings),  # also for `dagster asset materialize`'s implicit job
    )
