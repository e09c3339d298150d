"""`asset-pipeline` console script: samples, ingest through Dagster, SQL, get and versions."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from asset_pipeline.progress import human_bytes
from asset_pipeline.settings import Settings

INSTANCE_YAML = """\
telemetry:
  enabled: false
# Runs launched through the queue (schedules, sensors, backfills, the UI) that carry the same
# asset_pipeline/exclusive tag never overlap: one retention sweep, one report build at a time.
concurrency:
  runs:
    tag_concurrency_limits:
      - key: asset_pipeline/exclusive
        value:
          applyLimitPerUniqueValue: true
        limit: 1
"""


def dagster_instance(settings: Settings):
    """$DAGSTER_HOME's instance, else a persistent one under ``<home>/dagster`` so that
    ``DAGSTER_HOME=<home>/dagster dagster dev`` shows the runs the CLI made."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from asset_pipeline.failpoints import failpoint
    from asset_pipeline.locks import file_lock

    failpoint("dagster-instance")
    if os.environ.get("DAGSTER_HOME"):
        home = Path(os.environ["DAGSTER_HOME"])
        with file_lock(home / ".asset-pipeline-instance.lock"):  # first use creates the SQLite storage
            return dg.DagsterInstance.get()
    if settings.home.is_s3:
        from asset_pipeline.errors import AssetPipelineError

        raise AssetPipelineError(f"the home {settings.home} is on S3, where no Dagster storage can live: set "
                                 "DAGSTER_HOME to a folder with a dagster.yaml (deploy/dagster-postgres.yaml for "
                                 "Postgres) so runs are recorded where the UI can show them")
    base = settings.home.path / "dagster"
    base.mkdir(parents=True, exist_ok=True)
    # Several CLI runs on a new home would otherwise race to create (and migrate) the same SQLite
    # storage; the first creates it under the lock, the others open what it made.
    with file_lock(base / ".instance.lock"):
        config = base / "dagster.yaml"
        if not config.exists():
            config.write_text(INSTANCE_YAML)
        return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(base)))


def run_job(settings: Settings, job_name: str, run_config: dict | None = None, progress: bool = False,
            tags: dict | None = None):
    """Execute a job of the project's Definitions in this process, on a real Dagster instance
    (`tags` selects partitions: dagster/partition or a dagster/asset_partition_range_*)."""
    from asset_pipeline.definitions import build_definitions

    defs = build_definitions(settings, progress=progress)
    config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, **(run_config or {})}
    with dagster_instance(settings) as instance:
        return defs.resolve_job_def(job_name).execute_in_process(run_config=config, instance=instance,
                                                                  raise_on_error=False, tags=tags)


def _metadata(result) -> dict[str, dict]:
    return {e.materialization.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def _print_ingest(result) -> int:
    metadata = _metadata(result)
    if not result.success:
        for event in result.all_events:
            if event.is_failure:
                print(f"error: {event.message}", file=sys.stderr)
        return 1
    v, a, s = metadata.get("asset_versions", {}), metadata.get("assets", {}), metadata.get("asset_versions", {})
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    print(f"ingested {v.get('new_versions', 0)} versions ({a.get('new_assets', 0)} new assets) from "
          f"{a.get('inputs', 0)} inputs: {v.get('unchanged', 0)} unchanged, {s.get('deduplicated', 0)} "
          f"deduplicated, {a.get('rejected', 0)} rejected (quarantined); stored "
          f"{human_bytes(s.get('bytes_stored', 0))} of {human_bytes(s.get('bytes_in', 0))}")
    print("checks: " + ", ".join(f"{k} {'passed' if ok else 'FAILED'}" for k, ok in checks.items()))
    print(f"run {result.run_id}")
    return 0 if all(checks.values()) else 1


def cmd_make_samples(args: argparse.Namespace) -> int:
    from asset_pipeline.samples import make_samples

    counts = make_samples(args.dir)
    print(f"wrote {counts['inputs']} sample inputs ({counts['rejected']} deliberately bad) to {args.dir}")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    overrides = {"inbox": str(Path(args.dir).absolute())} if args.dir else {}
    settings = Settings.from_env(**overrides)
    return _print_ingest(run_job(settings, "ingest_job", progress=sys.stderr.isatty()))


def _print_embed(result) -> int:
    if not result.success:
        for event in result.all_events:
            if event.is_failure and event.message:
                print(f"error: {event.message}", file=sys.stderr)
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
                    error = error.cause  # the project's error, not Dagster's wrapper
                print(error.message.strip(), file=sys.stderr)
        return 1
    meta = _metadata(result)
    e, n = meta.get("clip_embeddings", {}), meta.get("near_duplicates", {})
    print(f"embedded {e.get('rows_embedded', 0)} versions with {e.get('model')} on {e.get('device')} "
          f"({e.get('images_per_s', 0)} images/s); table {e.get('lancedb_table')} has {e.get('table_rows', 0)} rows, "
          f"ANN index: {e.get('ann_index')}; {n.get('pairs', 0)} near-duplicate pairs")
    return 0


def _quickstart_model() -> None:
    from asset_pipeline.embeddings.model import ENV_VAR, TINY_TEST

    if not os.environ.get(ENV_VAR):
        os.environ[ENV_VAR] = TINY_TEST
        print(f"{ENV_VAR} is not set: embedding with the tiny random-weight test model (results are "
              f"meaningless). Set it, e.g. {ENV_VAR}=ViT-B-32:laion2b_s34b_b79k, for real embeddings.")


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Samples into ``<home>/inbox`` (when it is empty), then every asset through Dagster."""
    from asset_pipeline.samples import make_samples

    settings = Settings.from_env()
    inbox = Path(settings.inbox)
    if settings.inbox_is_s3 or (inbox.exists() and any(inbox.iterdir())):
        print(f"inbox {settings.inbox} is not empty: ingesting what is there")
    else:
        counts = make_samples(inbox)
        print(f"wrote {counts['inputs']} sample generator outputs to {inbox}")
    status = _print_ingest(run_job(settings, "ingest_job", progress=sys.stderr.isatty()))
    if status:
        return status
    _quickstart_model()
    status = _print_embed(run_job(settings, "embed_job"))
    if status:
        return status
    return _print_usage(settings, _yesterday())


def _yesterday() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def _print_usage(settings: Settings, day_from: str, day_to: str | None = None) -> int:
    """Usage intake (log files), then the reports for a day or a range, through Dagster."""
    intake = run_job(settings, "usage_intake_job")
    events = _metadata(intake).get("usage_events", {})
    tags = ({"dagster/partition": day_from} if not day_to or day_to == day_from else
            {"dagster/asset_partition_range_start": day_from, "dagster/asset_partition_range_end": day_to})
    result = run_job(settings, "usage_job", tags=tags)
    if not intake.success or not result.success:
        return _print_embed(result if intake.success else intake)  # prints the failure
    meta = _metadata(result)
    checks = result.get_asset_check_evaluations()
    print(f"usage: {events.get('events', 0)} events from {events.get('files', 0)} log files "
          f"({events.get('bad_rows', 0)} bad rows); reports for {day_from}{'…' + day_to if day_to else ''}: "
          f"{meta.get('daily_usage', {}).get('events', 0)} events that day; dbt tests "
          f"{sum(c.passed for c in checks)}/{len(checks)} passed")
    return 0 if all(c.passed for c in checks) else 1


def cmd_report(args: argparse.Namespace) -> int:
    return _print_usage(Settings.from_env(), args.day or _yesterday(), args.to)


def cmd_embed(args: argparse.Namespace) -> int:
    return _print_embed(run_job(Settings.from_env(), "embed_job"))


def cmd_search(args: argparse.Namespace) -> int:
    from asset_pipeline.catalog import Catalog

    filters = {k: v for k, v in (("project", args.project), ("type", args.type), ("tags", args.tag)) if v}
    hits = Catalog().search(text=args.text, image=args.image, query=args.query, filters=filters or None, k=args.k)
    for h in hits:
        print(f"{h['score']:8.4f}  {h['asset_id']}  v{h['version']}  {h['type']:<6} {h['project']:<12} "
              f"{(h['prompt'] or '')[:60]}")
    if hits:
        print(f"model: {hits[0]['model']}")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from asset_pipeline.catalog import Catalog

    table = Catalog().sql(args.query)
    if args.json:
        print(json.dumps(table.to_pylist(), default=str, indent=2))
    else:
        print(_format(table))
    return 0


def _format(table) -> str:
    rows = table.to_pylist()
    cols = table.column_names
    cells = [[str(r[c]) for c in cols] for r in rows]
    widths = [min(60, max([len(c)] + [len(row[i]) for row in cells])) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v[:w].ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells]
                     + [f"({len(rows)} rows)"])


def cmd_get(args: argparse.Namespace) -> int:
    from asset_pipeline.catalog import Catalog

    if args.output and not args.original:  # a copy that declares itself AI-generated (issue 14)
        r = Catalog().export(args.asset_id, args.output, args.version)
        credentials = f"signed C2PA manifest ({r.c2pa_state})" if r.signed else "no C2PA signing key configured"
        print(f"wrote v{r.version} of {r.asset_id} (original sha256 {r.sha256}) to {r.path}: XMP "
              f"{'embedded' if r.xmp == 'embedded' else 'in ' + r.xmp} (trainedAlgorithmicMedia), {credentials}")
        return 0
    content = Catalog().get(args.asset_id, args.version)
    if args.output:
        with open(args.output, "wb") as out:
            for chunk in content.iter_chunks():
                out.write(chunk)
        print(f"wrote {content.metadata['size_bytes']} bytes (v{content.version}, {content.sha256}) to {args.output}")
    else:
        print(json.dumps(content.metadata, default=str, indent=2))
    return 0


def cmd_recall(args: argparse.Namespace) -> int:
    """Through Dagster's recall_job, so the run and what it took show in the UI."""
    config = {"model": args.model, "reason": args.reason, "dry_run": args.dry_run,
              **({"by": args.by} if args.by else {})}
    result = run_job(Settings.from_env(), "recall_job", {"ops": {"recalls": {"config": config}}})
    if not result.success:
        return _print_embed(result)  # prints the failure
    m = _metadata(result)["recalls"]
    verb = "would take" if m["dry_run"] else "took"
    print(f"recall {m['recall_id']} of model {m['model']!r}: {verb} {m['assets']} assets "
          f"({human_bytes(m['bytes'])}); {m['already_deleted']} were already deleted")
    print(m["taken"])
    if not m["dry_run"]:
        print(f"reversible with Catalog().undo_recall({m['recall_id']!r}) for {m['grace_period_days']:g} days, "
              "then hard-deleted by the lifecycle sweep")
    return 0


def cmd_versions(args: argparse.Namespace) -> int:
    from asset_pipeline.catalog import Catalog

    for v in Catalog().list_versions(args.asset_id):
        print(f"v{v['version']}  {v['created_at']}  {v['sha256'][:12]}  {v['size_bytes']:>10}  "
              f"{v['change_description']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="asset-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make-samples", help="write a sample inbox of generator outputs to DIR")
    p.add_argument("dir")
    p.set_defaults(fn=cmd_make_samples)
    p = sub.add_parser("ingest", help="ingest DIR (default: the configured inbox) through Dagster")
    p.add_argument("dir", nargs="?")
    p.set_defaults(fn=cmd_ingest)
    p = sub.add_parser("quickstart", help="write samples to <home>/inbox and materialize every asset")
    p.set_defaults(fn=cmd_quickstart)
    p = sub.add_parser("embed", help="run the embedding job (open_clip → LanceDB) through Dagster")
    p.set_defaults(fn=cmd_embed)
    p = sub.add_parser("search", help="search by text, image (path or asset id) and/or full-text query")
    p.add_argument("--text")
    p.add_argument("--image")
    p.add_argument("--query")
    p.add_argument("--project")
    p.add_argument("--type")
    p.add_argument("--tag", action="append")
    p.add_argument("-k", type=int, default=10)
    p.set_defaults(fn=cmd_search)
    p = sub.add_parser("report", help="ingest usage log files, then build the usage reports for a day or range")
    p.add_argument("--day", help="YYYY-MM-DD (default: yesterday)")
    p.add_argument("--to", help="last day of a range (a backfill)")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("sql", help="run DuckDB SQL over the tables")
    p.add_argument("query")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_sql)
    p = sub.add_parser("get", help="metadata of an asset, or its content with -o FILE")
    p.add_argument("asset_id")
    p.add_argument("--version", type=int)
    p.add_argument("-o", "--output", help="write an AI-generated-declaring copy (XMP; C2PA when a key is set)")
    p.add_argument("--original", action="store_true", help="with -o: the stored bytes unchanged instead")
    p.set_defaults(fn=cmd_get)
    p = sub.add_parser("recall", help="soft-delete everything a model (or LoRA) produced, through Dagster")
    p.add_argument("--model", required=True)
    p.add_argument("--reason", required=True)
    p.add_argument("--by")
    p.add_argument("--dry-run", action="store_true", help="list what it would take; change nothing")
    p.set_defaults(fn=cmd_recall)
    p = sub.add_parser("versions", help="list an asset's versions")
    p.add_argument("asset_id")
    p.set_defaults(fn=cmd_versions)
    args = parser.parse_args(argv)
    from asset_pipeline.errors import AssetPipelineError

    try:
        return args.fn(args)
    except AssetPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
