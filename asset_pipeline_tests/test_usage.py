"""Usage events, the dbt reports as daily partitions through dagster-dbt, and the per-asset stats."""

import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from asset_pipeline import AssetNotFound, Catalog
from asset_pipeline.definitions import build_definitions
from asset_pipeline.identity import asset_id_for
from asset_pipeline.usage.events import InvalidEvent

from .conftest import materialization_metadata

DAY = "2026-11-20"
SUNSET = asset_id_for("research", "images/sunset")
FOREST = asset_id_for("research", "images/forest")
ICON = asset_id_for("research", "images/icon")


def _at(day: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)


@pytest.fixture
def with_events(ingested: Catalog) -> Catalog:
    """Known usage: on DAY 3 downloads of sunset (2 users), 1 view of forest; the day before, 1
    download of icon; the day after, 1 transform of sunset."""
    for user in ("ann", "bob", "ann"):
        ingested.record_usage(SUNSET, "download", user, at=_at(DAY))
    ingested.record_usage(FOREST, "view", "bob", context={"page": "gallery"}, at=_at(DAY, 18))
    before = (date.fromisoformat(DAY) - timedelta(days=1)).isoformat()
    after = (date.fromisoformat(DAY) + timedelta(days=1)).isoformat()
    ingested.record_usage(ICON, "download", "cid", at=_at(before))
    ingested.record_usage(SUNSET, "transform", "dan", at=_at(after))
    assert ingested.flush() == 6
    return ingested


def test_events_land_in_their_day_partition_in_one_commit(with_events: Catalog) -> None:
    dt = DeltaTable(with_events.tables.uri("usage_events"))
    assert {p["day"] for p in dt.partitions()} == {"2026-11-19", "2026-11-20", "2026-11-21"}
    assert dt.version() == 1  # created empty, then one commit for all six events
    rows = with_events.sql("select day, count(*) n from usage_events group by day order by day").to_pylist()
    assert [(r["day"].isoformat(), r["n"]) for r in rows] == [("2026-11-19", 1), ("2026-11-20", 4),
                                                             ("2026-11-21", 1)]
    ctx = with_events.sql("select context from usage_events where action = 'view'").column(0)[0].as_py()
    assert json.loads(ctx) == {"page": "gallery"}


def test_bad_events_are_refused_with_the_field(ingested: Catalog) -> None:
    with pytest.raises(InvalidEvent, match="'action' must be one of") as info:
        ingested.record_usage(SUNSET, "like", "ann")
    assert info.value.field == "action"
    with pytest.raises(InvalidEvent, match="user_id"):
        ingested.record_usage(SUNSET, "view", "")
    with pytest.raises(AssetNotFound, match="no asset with id 'a_missing'"):
        ingested.record_usage("a_missing", "view", "ann")
    assert ingested.flush() == 0


def test_a_download_is_recorded_only_when_the_bytes_are_delivered(ingested: Catalog) -> None:
    def downloads() -> list[dict]:
        return ingested.sql("select asset_id, action, user_id, version from usage_events").to_pylist()

    content = ingested.get(SUNSET, user_id="eve")
    assert content.metadata["name"] == "images/sunset" and downloads() == []  # metadata only: no download
    chunks = content.iter_chunks(size=100)
    next(chunks)
    chunks.close()  # a copy that stopped half-way delivered nothing whole
    assert downloads() == []
    with ingested.get(SUNSET, user_id="eve").open() as stream:
        stream.read(10)
    assert downloads() == []  # a stream closed early is not a download either
    assert content.read()
    assert downloads() == [{"asset_id": SUNSET, "action": "download", "user_id": "eve", "version": 1}]
    assert content.read() and len(downloads()) == 1  # one handle, one download
    with ingested.get("research/images/sunset", user_id="eve").open() as stream:
        while stream.read(1000):
            pass
    assert len(downloads()) == 2


def test_buffered_events_are_written_at_exit(settings, sample_counts, tmp_path: Path) -> None:
    from .conftest import run_python

    Catalog(settings=settings).ingest()
    proc = run_python(f"from asset_pipeline import Catalog, Settings\n"
                      f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}))\n"
                      f"c.record_usage({SUNSET!r}, 'view', 'zed')\n")
    assert proc.returncode == 0, proc.stderr
    assert Catalog(settings=settings).sql("select user_id from usage_events").to_pylist() == [{"user_id": "zed"}]


def _run_usage(defs, instance, partition: str | None = None, start: str | None = None, end: str | None = None):
    job = defs.resolve_job_def("usage_job")
    tags = ({"dagster/partition": partition} if partition else
            {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end})
    return job.execute_in_process(instance=instance, tags=tags)


def test_partition_run_reports_exact_counts_and_dbt_tests_pass(with_events: Catalog, settings) -> None:
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = _run_usage(defs, instance, partition=DAY)
        assert result.success
        meta = materialization_metadata(result)
        assert meta["daily_usage"]["events"] == 4
        assert "download" in meta["daily_usage"]["by_action"]
        assert SUNSET in meta["popular_assets"]["top"]
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        assert {c.asset_key.to_user_string() for c in checks} >= {"daily_usage", "popular_assets", "asset_usage_stats"}
    daily = with_events.sql(f"select action, events, distinct_assets, distinct_users from daily_usage "
                            f"where day = '{DAY}' order by action").to_pylist()
    assert daily == [{"action": "download", "events": 3, "distinct_assets": 1, "distinct_users": 2},
                     {"action": "view", "events": 1, "distinct_assets": 1, "distinct_users": 1}]
    popular = with_events.sql(f"select asset_id, downloads, rank from popular_assets where day = '{DAY}' "
                              "order by rank").to_pylist()
    assert popular[:2] == [{"asset_id": SUNSET, "downloads": 3, "rank": 1},
                           {"asset_id": ICON, "downloads": 1, "rank": 2}]
    stats = {r["asset_id"]: r for r in with_events.sql("select * from asset_usage_stats").to_pylist()}
    # A snapshot, not a partition: everything to date, the transform on the day after included.
    assert stats[SUNSET]["downloads"] == 3 and stats[SUNSET]["transforms"] == 1
    storage = {(r["project"], r["type"]): r for r in with_events.sql("select * from storage_by_project").to_pylist()}
    research = storage[("research", "image")]
    assert research["logical_bytes"] - research["stored_bytes"] == research["bytes_saved_by_dedup"] > 0
    # the refresh copied the stats into `assets`
    sunset = with_events.asset(SUNSET)
    assert sunset["download_count"] == 3 and sunset["last_accessed"] == _at("2026-11-21")  # the transform


def test_a_partition_run_is_repeatable(with_events: Catalog, settings) -> None:
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        assert _run_usage(defs, instance, partition=DAY).success
        assert _run_usage(defs, instance, partition=DAY).success
    assert with_events.sql(f"select sum(events) n from daily_usage where day = '{DAY}'").to_pylist() == [{"n": 4}]


def test_backfill_over_a_range_and_the_schedule_builds_yesterday(with_events: Catalog, settings) -> None:
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = _run_usage(defs, instance, start="2026-11-19", end="2026-11-21")
        assert result.success
        days = with_events.sql("select distinct day from daily_usage order by day").to_pylist()
        assert [d["day"].isoformat() for d in days] == ["2026-11-19", "2026-11-20", "2026-11-21"]
        per_day = with_events.sql("select distinct day from popular_assets order by day").to_pylist()
        assert [d["day"].isoformat() for d in per_day] == ["2026-11-19", "2026-11-20", "2026-11-21"]
        materialized = instance.get_materialized_partitions(dg.AssetKey("daily_usage"))
        assert {"2026-11-19", "2026-11-20", "2026-11-21"} <= materialized

        schedule = defs.resolve_schedule_def("usage_daily")
        tick = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as ctx:
            requests = list(schedule.evaluate_tick(ctx).run_requests)
        assert [r.partition_key for r in requests] == ["2026-11-24"]


def test_malformed_event_file_is_reported_and_good_rows_land(ingested: Catalog, settings) -> None:
    inbox = settings.home.path / "usage_inbox"
    inbox.mkdir(parents=True)
    lines = [
        json.dumps({"asset_id": SUNSET, "action": "view", "user_id": "ann", "at": "2026-11-20T10:00:00Z"}),
        "{ this is not json",
        json.dumps({"asset_id": SUNSET, "action": "explode", "user_id": "ann"}),
        json.dumps({"asset_id": "a_nope", "action": "view", "user_id": "ann"}),
        json.dumps({"asset_id": FOREST, "action": "download", "user_id": "bob", "at": "2026-11-21T10:00:00Z"}),
    ]
    (inbox / "app-2026-11-21.jsonl").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.Table.from_pylist([{"asset_id": ICON, "action": "embed", "user_id": "svc",
                                          "at": "2026-11-22T00:00:00Z"}]), inbox / "batch.parquet")
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, definitions=defs,
                                     resources={"pipeline": defs.resources["pipeline"]}) as ctx:
            request = defs.resolve_sensor_def("usage_inbox_sensor")(ctx)
        assert isinstance(request, dg.RunRequest) and request.run_key.startswith("usage-")
        result = defs.resolve_job_def("usage_intake_job").execute_in_process(instance=instance)
        meta = materialization_metadata(result)["usage_events"]
    assert (meta["files"], meta["events"], meta["bad_rows"], meta["unknown_assets"]) == (2, 3, 3, 1)
    errors = ingested.sql("select source, line, field from usage_errors order by line").to_pylist()
    assert errors == [{"source": "app-2026-11-21.jsonl", "line": 2, "field": "row"},
                      {"source": "app-2026-11-21.jsonl", "line": 3, "field": "action"},
                      {"source": "app-2026-11-21.jsonl", "line": 4, "field": "asset_id"}]
    assert ingested.sql("select count(*) n from usage_events").to_pylist() == [{"n": 3}]
    assert not list(inbox.glob("*.jsonl")) and len(list((inbox / ".done").glob("app-2026-11-21.*.jsonl"))) == 1


def _log(inbox: Path, name: str, rows: list[dict]) -> None:
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_rotated_log_with_the_same_name_loses_nothing_and_a_redelivered_one_adds_nothing(
        ingested: Catalog, settings) -> None:
    from asset_pipeline.usage.intake import ingest_usage_files

    inbox = settings.home.path / "usage_inbox"
    monday = [{"asset_id": SUNSET, "action": "view", "user_id": u, "at": "2026-11-20T10:00:00Z"} for u in "abc"]
    tuesday = [{"asset_id": FOREST, "action": "download", "user_id": u, "at": "2026-11-21T10:00:00Z"} for u in "abc"]
    _log(inbox, "app.jsonl", monday)
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == 3
    _log(inbox, "app.jsonl", tuesday)  # rotated: the same name, other rows on the same lines
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == 3
    _log(inbox, "app.jsonl", monday)  # the first file delivered again
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == 0
    _log(inbox, "app-export.jsonl", monday + [monday[0]])  # re-exported with one more (identical) row
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == 1
    assert ingested.sql("select count(*) n from usage_events").to_pylist() == [{"n": 7}]
    assert len(list((inbox / ".done").glob("app.*.jsonl"))) == 2  # both days' files kept, none overwritten


def test_two_intakes_of_the_same_files_at_once_add_each_event_once(ingested: Catalog, settings,
                                                                    tmp_path: Path) -> None:
    from .conftest import run_python  # noqa: F401 - same interpreter settings as the other tests

    inbox = settings.home.path / "usage_inbox"
    _log(inbox, "app.jsonl", [{"asset_id": SUNSET, "action": "view", "user_id": f"u{i}",
                               "at": "2026-11-20T10:00:00Z"} for i in range(50)])
    code = ("from asset_pipeline import Catalog, Settings\n"
            "from asset_pipeline.usage.intake import ingest_usage_files\n"
            f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}))\n"
            "s = ingest_usage_files(c.tables, c.home.settings.usage_inbox)\n"
            "print(s.events, s.left)\n")
    env = {**os.environ, "ASSET_PIPELINE_PAUSE_AT": "usage-merge",
           "ASSET_PIPELINE_BARRIER": str(tmp_path / "barrier"), "ASSET_PIPELINE_BARRIER_PARTIES": "2"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sorted(o.strip() for o, _ in outs) == ["0 []", "50 []"]  # the log retired once, reported by neither
    assert ingested.sql("select count(*) n, count(distinct event_id) d from usage_events").to_pylist() == \
        [{"n": 50, "d": 50}]


def _views(user: str, n: int, day: str = "2026-11-20") -> list[dict]:
    return [{"asset_id": SUNSET, "action": "view", "user_id": f"{user}{i}", "at": f"{day}T10:00:00Z"}
            for i in range(n)]


@pytest.mark.parametrize("change", ["rotated", "appended"])
def test_a_log_that_changes_after_it_was_read_is_not_retired_unread(ingested: Catalog, settings, tmp_path: Path,
                                                                     change: str) -> None:
    """An intake has read app.jsonl and committed its rows; before it moves the file to `.done`,
    the application rotates a new app.jsonl in under the same name (a new file) or appends lines
    to it. Before the fix the intake moved whatever had that name: the new rows went to `.done`
    unread and were never counted. Now only the file it read moves; the new one stays in the inbox
    and the next intake counts exactly the rows not yet counted."""
    from asset_pipeline.failpoints import arrivals
    from asset_pipeline.usage.intake import ingest_usage_files

    from .test_concurrency import barrier_env, finish, python, wait_for

    inbox = settings.home.path / "usage_inbox"
    _log(inbox, "app.jsonl", _views("mon", 3))
    barrier = tmp_path / "barrier"
    code = ("from asset_pipeline import Catalog, Settings\n"
            "from asset_pipeline.usage.intake import ingest_usage_files\n"
            f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}, durable=False))\n"
            "print(ingest_usage_files(c.tables, c.home.settings.usage_inbox).events)\n")
    intake = python(code, barrier_env(barrier, "usage-before-done"))
    wait_for(lambda: arrivals(barrier, "usage-before-done") == 1, what="the intake to commit its rows",
             alive=(intake,))
    if change == "rotated":  # the old file renamed away by the application, a new one in its place
        os.rename(inbox / "app.jsonl", tmp_path / "app.jsonl.1")
        _log(inbox, "app.jsonl", _views("tue", 4, "2026-11-21"))
    else:
        with open(inbox / "app.jsonl", "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in _views("late", 2)))
    (barrier / "usage-before-done.go").touch()
    rc, out, err = finish(intake)
    assert rc == 0 and out.strip() == "3", err
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == (4 if change == "rotated" else 2)
    assert ingested.sql("select count(*) n from usage_events").to_pylist() == [{"n": 7 if change == "rotated" else 5}]
    assert not list(inbox.glob("*.jsonl"))  # all retired now
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).files == []


def test_lines_appended_while_the_log_is_read_are_not_retired_unread(ingested: Catalog, settings,
                                                                    monkeypatch) -> None:
    """Lines appended at the moment the intake takes the file's stamp. Before the fix the stamp
    was taken after the read, so it described lines never read: the file looked unchanged and
    went to `.done` with them. Now the stamp is taken before the read and the size is what was
    read: appended lines are either read or keep the file in the inbox."""
    import asset_pipeline.usage.intake as intake

    inbox = settings.home.path / "usage_inbox"
    _log(inbox, "app.jsonl", _views("mon", 3))
    real_fstat, appended = os.fstat, []

    def fstat_after_an_append(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith("/app.jsonl") and not appended:
            appended.append(1)
            with open(inbox / "app.jsonl", "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in _views("late", 2)))
        return real_fstat(fd)

    monkeypatch.setattr(intake.os, "fstat", fstat_after_an_append)
    intake.ingest_usage_files(ingested.tables, settings.usage_inbox)
    monkeypatch.setattr(intake.os, "fstat", real_fstat)
    assert appended
    intake.ingest_usage_files(ingested.tables, settings.usage_inbox)
    assert ingested.sql("select count(*) n from usage_events").to_pylist() == [{"n": 5}]
    assert not list(inbox.glob("*.jsonl"))


@pytest.mark.parametrize("point", ["usage-claimed", "usage-checked"])
def test_lines_appended_around_the_claim_stay_to_be_read(ingested: Catalog, settings, tmp_path: Path,
                                                          point: str) -> None:
    """The intake is held right after it claimed the log (renamed it inside the inbox), or after
    it checked the claim, and lines are appended to the claim then. Either way they stay in the
    inbox and the next intake counts them; their rows name the log as the application wrote it,
    never the claim."""
    from asset_pipeline.failpoints import arrivals
    from asset_pipeline.usage.intake import ingest_usage_files

    from .test_concurrency import barrier_env, finish, python, wait_for

    inbox = settings.home.path / "usage_inbox"
    _log(inbox, "app.jsonl", _views("mon", 3))
    barrier = tmp_path / "barrier"
    intake = python("from asset_pipeline import Catalog, Settings\n"
                    "from asset_pipeline.usage.intake import ingest_usage_files\n"
                    f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}, durable=False))\n"
                    "print(ingest_usage_files(c.tables, c.home.settings.usage_inbox).events)\n",
                    barrier_env(barrier, point))
    wait_for(lambda: arrivals(barrier, point) == 1, what="the intake to claim the log", alive=(intake,))
    [claim] = inbox.glob("app.claim-*.jsonl")
    with open(claim, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in _views("late", 2)))
    (barrier / f"{point}.go").touch()
    rc, out, err = finish(intake)
    assert rc == 0 and out.strip() == "3", err
    assert len(list(inbox.glob("app.claim-*.jsonl"))) == 1  # still to be read
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == 2
    assert not list(inbox.glob("*.jsonl"))
    sources = ingested.sql("select distinct source from usage_events").column(0).to_pylist()
    assert sources == ["app.jsonl"]


def test_an_intake_whose_listed_file_another_intake_retired_finishes(ingested: Catalog, settings,
                                                                     tmp_path: Path) -> None:
    """Intake 1 listed app.jsonl and is held; intake 2 counts and retires it. Intake 1 then finds
    the file gone: it reads nothing and succeeds (it failed with FileNotFoundError before)."""
    from asset_pipeline.failpoints import arrivals
    from asset_pipeline.usage.intake import ingest_usage_files

    from .test_concurrency import barrier_env, finish, python, wait_for

    _log(settings.home.path / "usage_inbox", "app.jsonl", _views("mon", 3))
    barrier = tmp_path / "barrier"
    intake = python("from asset_pipeline import Catalog, Settings\n"
                    "from asset_pipeline.usage.intake import ingest_usage_files\n"
                    f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}, durable=False))\n"
                    "s = ingest_usage_files(c.tables, c.home.settings.usage_inbox)\n"
                    "print(s.files, s.events)\n", barrier_env(barrier, "usage-listed"))
    wait_for(lambda: arrivals(barrier, "usage-listed") == 1, what="the intake to list the inbox", alive=(intake,))
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == 3
    (barrier / "usage-listed.go").touch()
    rc, out, err = finish(intake)
    assert rc == 0 and out.strip() == "[] 0", err[-2000:]
    assert ingested.sql("select count(*) n from usage_events").to_pylist() == [{"n": 3}]


def test_a_log_whose_name_is_not_utf8_is_read_and_named_with_its_bytes_escaped(ingested: Catalog,
                                                                             settings) -> None:
    """Listing the usage inbox raised UnicodeDecodeError on such a name (pyarrow's listing), so one
    log copied from an old Latin-1 system stopped every intake. Now it is read like any log; its
    rows and its `.done` copy name it with the bad bytes escaped; the sensor's tick hashes it too."""
    import dagster as dg

    from asset_pipeline.usage.intake import ingest_usage_files

    inbox = settings.home.path / "usage_inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    with open(os.path.join(os.fsencode(inbox), b"caf\xe9.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in _views("mon", 3)))
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance, dg.build_sensor_context(
            instance=instance, definitions=defs, resources={"pipeline": defs.resources["pipeline"]}) as ctx:
        assert defs.resolve_sensor_def("usage_inbox_sensor")(ctx).run_key.startswith("usage-")
    summary = ingest_usage_files(ingested.tables, settings.usage_inbox)
    assert (summary.files, summary.events) == (["caf\\xe9.jsonl"], 3)
    assert ingested.sql("select distinct source from usage_events").column(0).to_pylist() == ["caf\\xe9.jsonl"]
    assert os.listdir(inbox) == [".done"]
    assert [p.name.split(".")[0] for p in (inbox / ".done").iterdir()] == ["caf\\xe9"]


@pytest.mark.parametrize("name", [b"\xe9" * 64 + b".jsonl", b"a" * 240 + b".jsonl"], ids=["escaped", "utf-8"])
def test_a_log_whose_claim_or_done_name_would_be_too_long_does_not_stop_the_intake(ingested: Catalog, settings,
                                                                                   name: bytes) -> None:
    """A log name that fits the disk but whose claim (`.claim-<hex>`) or `.done` (`.<hash>`) name
    would not — a 240-byte name, or a Latin-1 one shown four times longer — made every intake
    raise ENAMETOOLONG after its commit, and the logs after it were never retired. Now those names
    are cut short with a digest."""
    from asset_pipeline.usage.intake import ingest_usage_files

    inbox = settings.home.path / "usage_inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    with open(os.path.join(os.fsencode(inbox), name), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in _views("mon", 3)))
    _log(inbox, "zz.jsonl", _views("tue", 2))
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == 5
    assert os.listdir(inbox) == [".done"]
    assert all(len(p.name.encode()) <= 255 for p in (inbox / ".done").iterdir())


def test_a_retire_that_stays_leaves_an_earlier_done_copy_in_place(ingested: Catalog, settings,
                                                                 tmp_path: Path) -> None:
    """The same log is delivered twice; the second intake is held after checking its claim and
    lines are appended to it. Its move landed on the first delivery's `.done` copy (the same
    name: the same bytes) and then took it back into the inbox: the first copy was gone. Now the
    claim is linked into `.done` without replacing anything."""
    from asset_pipeline.failpoints import arrivals
    from asset_pipeline.usage.intake import ingest_usage_files

    from .test_concurrency import barrier_env, finish, python, wait_for

    inbox = settings.home.path / "usage_inbox"
    _log(inbox, "app.jsonl", _views("mon", 3))
    ingest_usage_files(ingested.tables, settings.usage_inbox)
    [first] = (inbox / ".done").iterdir()
    _log(inbox, "app.jsonl", _views("mon", 3))  # delivered again
    barrier = tmp_path / "barrier"
    intake = python("from asset_pipeline import Catalog, Settings\n"
                    "from asset_pipeline.usage.intake import ingest_usage_files\n"
                    f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}, durable=False))\n"
                    "ingest_usage_files(c.tables, c.home.settings.usage_inbox)\n",
                    barrier_env(barrier, "usage-checked"))
    wait_for(lambda: arrivals(barrier, "usage-checked") == 1, what="the intake to check its claim", alive=(intake,))
    [claim] = inbox.glob("app.claim-*.jsonl")
    with open(claim, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in _views("late", 2)))
    (barrier / "usage-checked.go").touch()
    assert finish(intake)[0] == 0
    assert first.exists() and first.read_text() == "".join(json.dumps(r) + "\n" for r in _views("mon", 3))
    assert ingest_usage_files(ingested.tables, settings.usage_inbox).events == 2
    assert os.listdir(inbox) == [".done"]


def test_a_log_written_by_another_user_is_retired() -> None:
    """The application writes its logs as its own user (mode 0644) into a usage inbox the intake's
    user may write to. A rename moves them (it needs the folder's write permission only); a hard
    link of a file one neither owns nor may write is refused under fs.protected_hardlinks, so a
    retire by link left every such log in the inbox, re-read on every run. The intake's retire
    runs here in a child process as another user."""
    import shutil
    import tempfile

    from asset_pipeline.location import Location
    from asset_pipeline.usage.intake import read_identified, retire

    app, intake = 54321, 54322
    base = Path(tempfile.mkdtemp(prefix="usage-users-"))  # pytest's own folders are root's alone (0700)
    os.chmod(base, 0o755)
    inbox = base / "usage_inbox"
    inbox.mkdir()
    os.chown(inbox, intake, intake)
    log = inbox / "app.jsonl"
    log.write_text('{"a": 1}\n')
    os.chown(log, app, app)
    os.chmod(log, 0o644)
    _, read_as = read_identified(Location(str(log)))
    dest = Location(str(inbox / ".done" / "app.0123456789abcdef.jsonl"))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the intake's user
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(intake)
            os.setuid(intake)
            out = repr(retire(Location(str(log)), dest, read_as))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            out = f"{type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    try:
        assert out == "True", out
        assert dest.path.read_text() == '{"a": 1}\n' and os.listdir(inbox) == [".done"]
    finally:
        shutil.rmtree(base)


def test_a_log_that_cannot_be_moved_is_reported_and_stays(ingested: Catalog, settings) -> None:
    """A log whose rows are committed but that cannot be moved to `.done` (here a folder holds its
    `.done` name) stays to be read again, adding nothing, and the intake says so in its summary
    (and the Dagster run's metadata) instead of only in a log line."""
    import hashlib

    from asset_pipeline.usage.intake import ingest_usage_files

    inbox = settings.home.path / "usage_inbox"
    _log(inbox, "app.jsonl", _views("mon", 3))
    digest = hashlib.sha256((inbox / "app.jsonl").read_bytes()).hexdigest()[:16]
    (inbox / ".done" / f"app.{digest}.jsonl" / "in-the-way").mkdir(parents=True)
    for events in (3, 0):
        summary = ingest_usage_files(ingested.tables, settings.usage_inbox)
        assert summary.events == events
        [left] = summary.left
        assert left.startswith("app.jsonl: ") and "Is a directory" in left, left
    assert len(list(inbox.glob("app.claim-*.jsonl"))) == 1


def test_the_dbt_resource_knows_the_version_of_the_dbt_it_runs() -> None:
    """The usage builds skip dagster-dbt's `dbt --version` subprocess and take the version from
    the installed dbt-core: it must be the version of the dbt executable they actually run."""
    import re

    from asset_pipeline.usage.dbt_project import dbt_project, local_dbt

    dbt = local_dbt(dbt_project())
    printed = subprocess.run([dbt.dbt_executable, "--version"], capture_output=True, text=True, check=True).stdout
    assert str(dbt._cli_version) == re.search(r"(\d+\.\d+\.\d+)", printed).group(1)
    assert dbt._initialize_dbt_core_adapter(["build"]) is None  # no adapter set up in this process
