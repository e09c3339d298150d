"""`asset-pipeline` console script: samples, ingest, embeddings and reports through Dagster; SQL,
search, content, versions, lifecycle and collections over the home in $ASSET_PIPELINE_HOME.

Quiet by default: each command prints what it did, with numbers; `-v` adds Dagster's and dbt's
own output and the traceback of an unexpected error. A user error is one line on stderr and exit
status 2; an unexpected one is one line and status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any, NoReturn

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

QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
VERBOSE_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


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
    from asset_pipeline.dagster_defs.build import build_definitions
    from asset_pipeline.heap import frozen_heap

    defs = build_definitions(settings, progress=progress, jobs=[job_name])  # imports only what the job runs
    config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, **(run_config or {})}
    with dagster_instance(settings) as instance, frozen_heap():  # Dagster's objects are not garbage
        return defs.resolve_job_def(job_name).execute_in_process(run_config=config, instance=instance,
                                                                  raise_on_error=False, tags=tags)


def _run(args: argparse.Namespace, settings: Settings, job_name: str, run_config: dict | None = None,
         **kwargs: Any):
    """`run_job`, quiet unless -v: Dagster's console log off and the dbt progress that dagster-dbt
    echoes to stdout kept off the screen (the command prints its own summary and any failure)."""
    config = {**(VERBOSE_LOGS if args.verbose else QUIET_LOGS), **(run_config or {})}
    if args.verbose:
        return run_job(settings, job_name, run_config=config, **kwargs)
    with contextlib.redirect_stdout(io.StringIO()):
        return run_job(settings, job_name, run_config=config, **kwargs)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _metadata(result) -> dict[str, dict]:
    return {e.materialization.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def _print_failure(result) -> int:
    """One line per failed step: the project's own error, not Dagster's wrappers around it."""
    steps = [e for e in result.all_events if e.is_step_failure]
    for event in steps:
        error = event.step_failure_data.error
        while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
            error = error.cause
        message = re.sub(rf"^[\w.]*\b{re.escape(error.cls_name or '')}: ", "", error.message.strip())
        print(f"error: {event.step_key}: {_one_line(message)}", file=sys.stderr)
    if not steps:
        failure = next((e for e in result.all_events if e.is_failure), None)
        print(f"error: {_one_line(failure.message if failure else 'the run failed')}", file=sys.stderr)
    return 1


def _print_ingest(result) -> int:
    metadata = _metadata(result)
    if not result.success:
        return _print_failure(result)
    v, a = metadata.get("asset_versions", {}), metadata.get("assets", {})
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    kept = a.get("inbox_mode") == "keep"
    stored, copied = v.get("bytes_stored", 0), a.get("bytes_copied", 0)
    inbox = (f"inbox kept: read {a.get('hashed', 0)} of {a.get('inputs', 0)} inputs (the rest from the hash cache)"
             if kept else f"inbox consumed: {a.get('consumed', 0)} inputs removed after the commit, "
                          f"{human_bytes(stored - copied)} stored by link, {human_bytes(copied)} by copy")
    print(f"ingested {v.get('new_versions', 0)} versions ({a.get('new_assets', 0)} new assets) from "
          f"{a.get('inputs', 0)} inputs: {v.get('unchanged', 0)} unchanged, {v.get('deduplicated', 0)} "
          f"deduplicated, {a.get('rejected', 0)} rejected ({'left in the inbox' if kept else 'quarantined'}); "
          f"stored {human_bytes(stored)} of {human_bytes(v.get('bytes_in', 0))}; {inbox}")
    print("checks: " + ", ".join(f"{k} {'passed' if ok else 'FAILED'}" for k, ok in checks.items())
          + f"; run {result.run_id}")
    return 0 if all(checks.values()) else 1


def _print_embed(result) -> int:
    if not result.success:
        return _print_failure(result)
    meta = _metadata(result)
    e, n = meta.get("clip_embeddings", {}), meta.get("near_duplicates", {})
    print(f"embedded {e.get('rows_embedded', 0)} versions with {e.get('model')} [{e.get('model_source')}] on "
          f"{e.get('device')}; table {e.get('lancedb_table')} has {e.get('table_rows', 0)} rows; "
          f"{n.get('pairs', 0)} near-duplicate pairs")
    return 0


def _dbt_tests(result) -> tuple[int, int]:
    """(passed, run) over every dbt test of the run: the model tests Dagster shows as asset checks,
    and the source tests it logs as observations of the source tables."""
    outcomes: dict[str, bool] = {}
    for check in result.get_asset_check_evaluations():
        uid = check.metadata.get("unique_id")
        outcomes[uid.value if uid else check.asset_check_key.to_user_string()] = check.passed
    for event in result.get_asset_observation_events():
        meta = event.asset_observation_data.asset_observation.metadata
        uid, status = meta.get("unique_id"), meta.get("status")
        if uid and str(uid.value).startswith("test.") and status is not None:
            outcomes[uid.value] = status.value == "pass"
    return sum(outcomes.values()), len(outcomes)


def _print_usage(args: argparse.Namespace, settings: Settings, day_from: str, day_to: str | None = None) -> int:
    """Usage intake (log files), then the reports for a day or a range, through Dagster."""
    intake = _run(args, settings, "usage_intake_job")
    if not intake.success:
        return _print_failure(intake)
    events = _metadata(intake).get("usage_events", {})
    tags = ({"dagster/partition": day_from} if not day_to or day_to == day_from else
            {"dagster/asset_partition_range_start": day_from, "dagster/asset_partition_range_end": day_to})
    result = _run(args, settings, "usage_job", tags=tags)
    if not result.success:
        return _print_failure(result)
    meta = _metadata(result)
    passed, ran = _dbt_tests(result)
    print(f"usage: {events.get('events', 0)} events from {events.get('files', 0)} log files "
          f"({events.get('bad_rows', 0)} bad rows); reports for {day_from}{'…' + day_to if day_to else ''}: "
          f"{meta.get('daily_usage', {}).get('events', 0)} events that day; dbt tests {passed}/{ran} passed")
    return 0 if passed == ran else 1


def _yesterday() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC).date() - timedelta(days=1)).isoformat()


def _day(value: str) -> str:
    """argparse type: an ISO date, as the partition key it names."""
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


# --- commands ----------------------------------------------------------------------------------
def _catalog(args: argparse.Namespace):
    from asset_pipeline.catalog import Catalog

    return Catalog(user=getattr(args, "user", None))


def cmd_init(args: argparse.Namespace) -> int:
    from asset_pipeline.catalog import Catalog

    settings = Settings.from_env()
    existed = settings.home.exists()
    Catalog(settings=settings)  # creates the home and its tables
    if not settings.inbox_is_s3:
        Path(settings.inbox).mkdir(parents=True, exist_ok=True)
    if os.environ.get("DAGSTER_HOME") or not settings.home.is_s3:
        # The Dagster instance's SQLite storage too: `dagster asset materialize` creates it without
        # the CLI's lock, so two first runs at once (one through each) could both try to.
        with dagster_instance(settings):
            pass
    print(f"{'home already exists' if existed else 'created home'} at {settings.home}; inbox: {settings.inbox}")
    print("next: put generator outputs (X + X.meta.json) in the inbox, then: asset-pipeline ingest")
    return 0


def cmd_make_samples(args: argparse.Namespace) -> int:
    from asset_pipeline.samples import make_samples

    counts = make_samples(args.dir)
    print(f"wrote {counts['inputs']} sample inputs ({counts['rejected']} deliberately bad) to {args.dir}")
    return 0


def _inbox_for(args: argparse.Namespace, settings: Settings) -> Settings:
    """The folder to ingest, checked: a missing folder or a file is a mistake, not an empty inbox."""
    from asset_pipeline.errors import InvalidRequest

    if args.dir:
        folder = Path(args.dir)
        if folder.is_file():
            raise InvalidRequest(f"{args.dir} is a file; ingest takes a folder of generator outputs "
                                 "(each X with its X.meta.json)")
        if not folder.is_dir():
            raise InvalidRequest(f"no folder {args.dir}")
        return Settings.from_env(inbox=str(folder.absolute()))
    if not settings.inbox_is_s3 and not Path(settings.inbox).is_dir():
        raise InvalidRequest(f"the inbox {settings.inbox} does not exist: put generator outputs there, or give a "
                             "folder: asset-pipeline ingest DIR")
    return settings


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _inbox_for(args, Settings.from_env())
    config = {"ops": {"ingest": {"config": {"verify": True}}}} if args.verify else None
    return _print_ingest(_run(args, settings, "ingest_job", config, progress=sys.stderr.isatty()))


def _embedder_config(model: str) -> dict:
    return {"resources": {"embedder": {"config": {"model": model}}}}


def cmd_embed(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    return _print_embed(_run(args, settings, "embed_job", _embedder_config(args.model) if args.model else None))


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Samples into ``<home>/inbox`` (when it is empty), then every asset through Dagster."""
    from asset_pipeline.embeddings.choice import choose_model
    from asset_pipeline.embeddings.model import DEFAULT_MODEL, ENV_VAR, TINY_TEST
    from asset_pipeline.samples import make_samples

    settings = Settings.from_env()
    inbox = Path(settings.inbox)
    if settings.inbox_is_s3 or (inbox.exists() and any(inbox.iterdir())):
        print(f"inbox {settings.inbox} is not empty: ingesting what is there")
    else:
        counts = make_samples(inbox)
        print(f"wrote {counts['inputs']} sample generator outputs to {inbox}")
    status = _print_ingest(_run(args, settings, "ingest_job", progress=sys.stderr.isatty()))
    if status:
        return status
    choice = choose_model(settings.lancedb_dir)
    run_config = None
    if choice.source == "default":  # nothing configured or recorded: the real default needs a download
        run_config = _embedder_config(TINY_TEST)
        print(f"no embedding model configured: using {TINY_TEST} (random weights, a smoke test); for real "
              f"embeddings set {ENV_VAR}, e.g. {DEFAULT_MODEL}")
    status = _print_embed(_run(args, settings, "embed_job", run_config))
    if status:
        return status
    status = _print_usage(args, settings, _yesterday())
    if status:
        return status
    instance_dir = os.environ.get("DAGSTER_HOME") or str(settings.home / "dagster")
    print("next: asset-pipeline sql \"select project, type, count(*) from assets group by all\"")
    print("      asset-pipeline search --query rocket")
    print(f"      DAGSTER_HOME={instance_dir} dagster dev   # the Dagster UI on these runs")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from asset_pipeline.errors import InvalidRequest

    day_from = args.day or _yesterday()
    if args.to and args.to < day_from:
        raise InvalidRequest(f"--to {args.to} is before --day {day_from}")
    return _print_usage(args, Settings.from_env(), day_from, args.to)


def cmd_search(args: argparse.Namespace) -> int:
    filters = {k: v for k, v in (("project", args.project), ("type", args.type), ("tags", args.tag)) if v}
    hits = _catalog(args).search(text=args.text, image=args.image, query=args.query, filters=filters or None,
                                 k=args.k, model=args.model, user=args.visible_to)
    for h in hits:
        print(f"{h['score']:8.4f}  {h['asset_id']}  v{h['version']}  {h['type']:<6} {h['project']}/{h['name']}  "
              f"{(h['prompt'] or '')[:60]}")
    print(f"{len(hits)} hits; model: {hits.model} ({hits.model_source})")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    table = _catalog(args).sql(args.query)
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
    from asset_pipeline.output_file import OutputError, check_target, write_file

    if args.output:  # refused before anything is fetched (or a download recorded)
        check_target(Path(args.output), args.force, devices=args.original)
    cat = _catalog(args)
    if args.output and not args.original:  # a copy that declares itself AI-generated (issue 14)
        check_target(Path(args.output + ".xmp"), args.force)  # the XMP sidecar some formats get
        try:
            r = cat.export(args.asset_id, args.output, args.version)
        except OSError as exc:  # e.g. no permission to write in the folder
            raise OutputError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
        credentials = f"signed C2PA manifest ({r.c2pa_state})" if r.signed else "no C2PA signing key configured"
        print(f"wrote v{r.version} of {r.asset_id} (original sha256 {r.sha256}) to {r.path}: XMP "
              f"{'embedded' if r.xmp == 'embedded' else 'in ' + r.xmp} (trainedAlgorithmicMedia), {credentials}")
        return 0
    content = cat.get(args.asset_id, args.version)
    if args.output:
        size = write_file(Path(args.output), content.iter_chunks(), args.force)
        print(f"wrote {size} bytes (v{content.version}, {content.sha256}) to {args.output}")
    else:
        print(json.dumps(content.metadata, default=str, indent=2))
    return 0


def cmd_recall(args: argparse.Namespace) -> int:
    """Through Dagster's recall_job, so the run and what it took show in the UI."""
    config = {"model": args.model, "reason": args.reason, "dry_run": args.dry_run,
              **({"by": args.by} if args.by else {})}
    result = _run(args, Settings.from_env(), "recall_job", {"ops": {"recalls": {"config": config}}})
    if not result.success:
        return _print_failure(result)
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
    for v in _catalog(args).list_versions(args.asset_id):
        print(f"v{v['version']}  {v['created_at']}  {v['sha256'][:12]}  {v['size_bytes']:>10}  "
              f"{v['change_description']}")
    return 0


def cmd_create_version(args: argparse.Namespace) -> int:
    row = _catalog(args).create_version(args.asset_id, args.file, args.message, created_by=args.user)
    print(f"{row['asset_id']} is at v{row['version']} ({row['sha256'][:12]}, {row['change_description']})")
    return 0


def cmd_revert(args: argparse.Namespace) -> int:
    row = _catalog(args).revert(args.asset_id, args.version, created_by=args.user)
    print(f"{row['asset_id']} is at v{row['version']}: {row['change_description']} ({row['sha256'][:12]})")
    return 0


def _lifecycle_command(action: str, done: str):
    def command(args: argparse.Namespace) -> int:
        cat = _catalog(args)
        asset = cat.asset(args.asset_id)
        getattr(cat, action)(asset["id"])
        status = cat.asset(asset["id"])["status"]
        print(f"{done} {asset['id']} ({asset['project']}/{asset['name']}); status: {status}")
        return 0

    command.__doc__ = f"{action} one asset"
    return command


def cmd_collection_create(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    cid = cat.create_collection(args.name, owner=args.owner or cat.user, description=args.description)
    print(cid)
    return 0


def cmd_collection_add(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    added = cat.add_to_collection(args.collection_id, args.asset_id, user=cat.user)
    print(f"{'added' if added else 'already in'} {args.collection_id}: {args.asset_id}")
    return 0


def cmd_collection_remove(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    removed = cat.remove_from_collection(args.collection_id, args.asset_id, user=cat.user)
    print(f"{'removed from' if removed else 'was not in'} {args.collection_id}: {args.asset_id}")
    return 0


def cmd_collection_share(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    cat.share(args.collection_id, args.user_id, args.permission, by=cat.user)
    print(f"{args.user_id} has {args.permission} on {args.collection_id}")
    return 0


def cmd_collection_unshare(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    revoked = cat.unshare(args.collection_id, args.user_id, by=cat.user)
    print(f"{args.user_id} {'no longer has' if revoked else 'had no'} share on {args.collection_id}")
    return 0


def cmd_collection_list(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    if args.collection_id:
        rows = cat.collection_assets(args.collection_id, user=cat.user)
        for r in rows:
            print(f"{r['id']}  {r['type']:<6} {r['project']}/{r['name']}  added by {r['added_by']}")
        print(f"({len(rows)} assets)")
    else:
        rows = cat.collections_for(cat.user)
        for r in rows:
            print(f"{r['id']}  {r['permission']:<5}  {r['name']}  (owner {r['owner']})")
        print(f"({len(rows)} collections visible to {cat.user})")
    return 0


# --- argument parsing --------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage block stays in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asset-pipeline")
    except PackageNotFoundError:
        return "0+unknown"


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="also show Dagster's and dbt's output, and tracebacks")
    parser = _Parser(prog="asset-pipeline", description=__doc__, parents=[common],
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"asset-pipeline {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, fn, help: str, needs_home: bool = True, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common], **kw)
        p.set_defaults(fn=fn, needs_home=needs_home)
        return p

    def asset_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("asset_id", metavar="ASSET", help="asset id (a_…) or project/name, e.g. research/images/hero")

    def user_arg(p: argparse.ArgumentParser, what: str = "acting user") -> None:
        p.add_argument("--user", help=f"{what} (default: your login name)")

    p = command("init", cmd_init, "create the home in $ASSET_PIPELINE_HOME (default ./data) with an empty inbox",
                needs_home=False)
    p = command("make-samples", cmd_make_samples, "write a sample inbox of generator outputs to DIR",
                needs_home=False)
    p.add_argument("dir", metavar="DIR", help="folder to write the samples into (created if missing)")
    command("quickstart", cmd_quickstart, "write samples to <home>/inbox and run ingest, embeddings and yesterday's "
            "usage reports through Dagster", needs_home=False)
    p = command("ingest", cmd_ingest, "ingest a folder (default: the configured inbox) through Dagster")
    p.add_argument("dir", nargs="?", metavar="DIR", help="folder of generator outputs (default: <home>/inbox or "
                   "$ASSET_PIPELINE_INBOX)")
    p.add_argument("--verify", action="store_true", help="a kept inbox (ASSET_PIPELINE_INBOX_MODE=keep): re-hash "
                   "every input instead of trusting the hash cache")
    p = command("embed", cmd_embed, "embed new versions (open_clip → LanceDB) through Dagster")
    p.add_argument("--model", help="MODEL:PRETRAINED or tiny-test (default: $ASSET_PIPELINE_CLIP_MODEL, else the "
                   "model the home's embeddings were built with, else ViT-B-32:laion2b_s34b_b79k)")
    p = command("search", cmd_search, "search by text, image and/or a full-text query over prompts")
    p.add_argument("--text", help="words to match against images, video frames and prompts (CLIP)")
    p.add_argument("--image", help="an image file, asset id or project/name to find similar images to")
    p.add_argument("--query", help="full-text query over prompts (with --text or --image: hybrid search)")
    p.add_argument("--project", help="only assets of this project")
    p.add_argument("--type", help="only this type: image, video or prompt")
    p.add_argument("--tag", action="append", help="only assets with this tag (repeat for any of several)")
    p.add_argument("-k", type=int, default=10, help="number of hits (default 10)")
    p.add_argument("--model", help="embedding model (default: the one the home's embeddings were built with)")
    p.add_argument("--visible-to", metavar="USER", help="only assets USER may see (their own and shared collections)")
    p = command("report", cmd_report, "ingest usage log files, then build the usage reports for a day or a range")
    p.add_argument("--day", type=_day, help="YYYY-MM-DD (default: yesterday, UTC)")
    p.add_argument("--to", type=_day, help="last day of a range, YYYY-MM-DD (a backfill, one dbt build)")
    p = command("sql", cmd_sql, "run DuckDB SQL over the tables and the usage reports")
    p.add_argument("query", metavar="SQL", help="a query, e.g. \"select project, count(*) from assets group by all\"")
    p.add_argument("--json", action="store_true", help="print rows as JSON instead of a table")
    p = command("get", cmd_get, "print an asset's metadata, or write its content with -o FILE (a download)")
    asset_arg(p)
    p.add_argument("--version", type=int, help="version number (default: the current one)")
    p.add_argument("-o", "--output", metavar="FILE", help="write a copy to FILE that declares itself AI-generated "
                   "(XMP; a C2PA manifest when a signing key is configured)")
    p.add_argument("--original", action="store_true", help="with -o: the stored bytes unchanged instead")
    p.add_argument("--force", action="store_true", help="with -o: replace FILE if it exists (never through a link)")
    user_arg(p, "user the download is recorded for")
    p = command("recall", cmd_recall, "soft-delete everything a model (or LoRA) produced, through Dagster")
    p.add_argument("--model", required=True, help="the model or adapter name, as in the sidecars")
    p.add_argument("--reason", required=True, help="why (recorded with the recall)")
    p.add_argument("--by", help="who recalls (default: your login name)")
    p.add_argument("--dry-run", action="store_true", help="list what it would take; change nothing")
    p = command("versions", cmd_versions, "list an asset's versions, oldest first")
    asset_arg(p)
    p = command("create-version", cmd_create_version, "store FILE as the next version of an asset")
    asset_arg(p)
    p.add_argument("file", metavar="FILE", help="the new content (its format is detected from the bytes)")
    p.add_argument("-m", "--message", required=True, help="change description, e.g. \"fixed the sky\"")
    user_arg(p, "who made the change")
    p = command("revert", cmd_revert, "make an old version current again, as a new version")
    asset_arg(p)
    p.add_argument("version", type=int, metavar="VERSION", help="the version whose content becomes current")
    user_arg(p, "who reverted")
    for name, action, done, text in (
            ("archive", "archive", "archived", "move an asset's blobs to the archive store"),
            ("restore", "restore", "restored", "bring an archived asset back"),
            ("delete", "delete", "deleted", "soft-delete an asset (undeletable during the grace period)"),
            ("undelete", "undelete", "undeleted", "undo a soft delete within the grace period")):
        p = command(name, _lifecycle_command(action, done), text)
        asset_arg(p)
        user_arg(p, "who acts (recorded in lifecycle_actions)")

    p = command("collection", None, "collections: create, add, remove, share, unshare, list",
                aliases=["collections"])
    csub = p.add_subparsers(dest="collection_command", required=True, metavar="ACTION", parser_class=_Parser)

    def action(name: str, fn, help: str) -> argparse.ArgumentParser:
        a = csub.add_parser(name, help=help, description=help, parents=[common])
        a.set_defaults(fn=fn, needs_home=True)
        user_arg(a)
        return a

    a = action("create", cmd_collection_create, "create a collection; prints its id")
    a.add_argument("name", metavar="NAME", help="collection name, e.g. \"launch banners\"")
    a.add_argument("--owner", help="owner, who is admin (default: --user)")
    a.add_argument("--description", default="", help="what the collection is for")
    for name, fn, help in (("add", cmd_collection_add, "add an asset (needs edit)"),
                           ("remove", cmd_collection_remove, "remove an asset (needs edit)")):
        a = action(name, fn, help)
        a.add_argument("collection_id", metavar="COLLECTION", help="collection id (c_…)")
        asset_arg(a)
    a = action("share", cmd_collection_share, "grant a user view, edit or admin (needs admin)")
    a.add_argument("collection_id", metavar="COLLECTION", help="collection id (c_…)")
    a.add_argument("user_id", metavar="USER", help="who gets access")
    a.add_argument("permission", choices=("view", "edit", "admin"), help="view, edit or admin")
    a = action("unshare", cmd_collection_unshare, "revoke a user's share (needs admin)")
    a.add_argument("collection_id", metavar="COLLECTION", help="collection id (c_…)")
    a.add_argument("user_id", metavar="USER", help="whose share to revoke")
    a = action("list", cmd_collection_list, "collections you can see, or the assets of one")
    a.add_argument("collection_id", nargs="?", metavar="COLLECTION", help="list this collection's assets instead")
    return parser


@contextlib.contextmanager
def _user_errors(verbose: bool) -> Iterator[list[int]]:
    """Map exceptions to one line on stderr and an exit status (in `status[0]`)."""
    from asset_pipeline.errors import AssetPipelineError

    status = [0]
    try:
        yield status
    except AssetPipelineError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        status[0] = 2
    except (FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        status[0] = 2
    except KeyboardInterrupt:
        status[0] = 130
    except BrokenPipeError:  # `| head`: the reader left
        sys.stderr.close()
        status[0] = 0
    except Exception as exc:
        if verbose:
            raise
        print(f"error: unexpected {type(exc).__name__}: {_one_line(exc)} (run again with -v for the traceback)",
              file=sys.stderr)
        status[0] = 1


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    with _user_errors(args.verbose) as status:
        if args.needs_home:
            from asset_pipeline.home import require_home

            require_home(Settings.from_env())
        status[0] = args.fn(args)
    return status[0]


def entry() -> NoReturn:
    """The `asset-pipeline` command: `main`, then the process ends without the collector's last
    pass over all it holds. At exit CPython collects every object still alive, and after a run
    that is mostly Dagster's (modules, definitions, the instance): a quarter of a second of an
    empty ingest's 1.5 s. Frozen objects are left to the end of the process, as they would be by
    any exit: files and connections are closed by the code that opened them, `atexit`
    handlers still run, and the interpreter still flushes stdout and stderr itself (or finds
    none: a launcher may start the command with no stdout). Tests call `main` in their own
    process, which lives on."""
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
