"""Runs side by side, the way Dagster starts them: separate processes on one home, with the
interleavings we fear forced by failpoints (a barrier that releases writers together at their
commit, or a gate that holds one process at a point while another runs to the end). Every test
counts exact rows afterwards and checks every version's blob.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from asset_pipeline import Catalog, Settings, integrity
from asset_pipeline.failpoints import arrivals
from asset_pipeline.identity import asset_id_for
from asset_pipeline.lifecycle.actions import blob_report
from asset_pipeline.samples import render_image
from asset_pipeline.sidecar import SIDECAR_SUFFIX

from .conftest import REPO

BIN = Path(sys.executable).parent
TODAY = datetime.now(UTC).date().isoformat()


def _write(root: Path, rel: str, data: bytes, project: str, name: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    meta = {"model": "m", "prompt": f"{name} prompt", "seed": 1, "created_by": "u", "project": project, "name": name}
    path.with_name(path.name + SIDECAR_SUFFIX).write_text(json.dumps(meta))


def write_inbox(root: Path, run: int, shared: int = 6, same: int = 2, own: int = 4) -> None:
    """`shared` assets that every run writes with content of its own (their version numbers
    collide), `same` assets every run writes with identical bytes (one version in the end), and
    `own` assets only this run has."""
    for i in range(shared):
        _write(root, f"shared/{i}.png", render_image(1000 * run + i, (24, 24)), "team", f"shared/{i}")
    for i in range(same):
        _write(root, f"same/{i}.png", render_image(50_000 + i, (24, 24)), "team", f"same/{i}")
    for i in range(own):
        _write(root, f"own/{i}.png", render_image(90_000 + 100 * run + i, (24, 24)), "team", f"own-{run}/{i}")


def expected(runs: int, shared: int = 6, same: int = 2, own: int = 4) -> dict[str, int]:
    return {"assets": shared + same + runs * own, "versions": runs * shared + same + runs * own}


def barrier_env(folder: Path, points: str, parties: int = 0) -> dict[str, str]:
    return {"ASSET_PIPELINE_PAUSE_AT": points, "ASSET_PIPELINE_BARRIER": str(folder),
            "ASSET_PIPELINE_BARRIER_PARTIES": str(parties)}


def spawn(args: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(args, env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def python(code: str, env: dict[str, str]) -> subprocess.Popen:
    return spawn([sys.executable, "-c", code], env)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def wait_for(predicate, timeout: float = 120, what: str = "condition",
             alive: tuple[subprocess.Popen, ...] = ()) -> None:
    """Poll `predicate`; fail at once (with its stderr) if a process in `alive` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in alive:
            if p.poll() is not None:
                raise AssertionError(f"process exited ({p.returncode}) before {what}: {p.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_catalog(cat: Catalog, assets: int, versions: int) -> None:
    """Exact counts, unique keys, gapless version numbers, every version's blob present."""
    assert cat.sql("select count(*) n from assets").to_pylist() == [{"n": assets}]
    assert cat.sql("select count(*) n from asset_versions").to_pylist() == [{"n": versions}]
    assert integrity.duplicate_ids(cat.tables).passed, integrity.duplicate_ids(cat.tables).problems
    gaps = cat.sql("""select asset_id from asset_versions group by asset_id
                      having max(version) <> count(*) or min(version) <> 1""")
    assert gaps.num_rows == 0
    lagging = cat.sql("""select a.id from assets a join (select asset_id, max(version) v from asset_versions
                         group by asset_id) m on m.asset_id = a.id where a.current_version <> m.v""")
    assert lagging.num_rows == 0
    assert integrity.missing_blobs(cat.tables, cat.home.store).passed
    assert integrity.rehash_sample(cat.tables, cat.home.store, sample=10_000).passed


def shared_versions(cat: Catalog) -> set[tuple[int, ...]]:
    rows = cat.sql("""select asset_id, list(version order by version) vs from asset_versions v
                      join assets a on a.id = v.asset_id where a.name like 'shared/%' group by asset_id""")
    return {tuple(r["vs"]) for r in rows.to_pylist()}


@pytest.mark.parametrize("existing", [False, True], ids=["fresh-home", "existing-home"])
def test_three_cli_ingests_at_once_lose_and_duplicate_nothing(tmp_path: Path, existing: bool) -> None:
    home = tmp_path / "home"
    home.mkdir()  # the CLI refuses a home that does not exist; an empty folder has no tables or instance yet
    runs = 3
    if existing:  # a home with tables, versions and a Dagster instance already
        write_inbox(tmp_path / "inbox-0", 0)
        assert Catalog(settings=Settings.from_env(home=home, inbox=str(tmp_path / "inbox-0"))).ingest().new_versions
    for r in range(1, runs + 1):
        write_inbox(tmp_path / f"inbox-{r}", r)
    # All three create the Dagster instance at once (a fresh home has none), then plan their
    # versions from the same history and commit together.
    env = {"ASSET_PIPELINE_HOME": str(home),
           **barrier_env(tmp_path / "barrier", "dagster-instance,before-commit", parties=runs)}
    procs = [spawn([str(BIN / "asset-pipeline"), "ingest", str(tmp_path / f"inbox-{r}")], env)
             for r in range(1, runs + 1)]
    results = [finish(p) for p in procs]
    for rc, out, err in results:
        assert rc == 0, out + err
    reported = sum(int(re.search(r"ingested (\d+) versions", out).group(1)) for _, out, _ in results)
    total = expected(runs + existing)
    base = expected(1)["versions"] if existing else 0
    assert reported == total["versions"] - base  # each version reported by exactly one run
    cat = Catalog(home)
    assert_catalog(cat, **total)
    assert shared_versions(cat) == {tuple(range(1, runs + existing + 1))}


def test_three_dagster_materialize_runs_at_once(tmp_path: Path) -> None:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    home, dagster_home = tmp_path / "home", tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))).dispose()  # storage exists
    for r in range(1, 4):
        write_inbox(tmp_path / f"inbox-{r}", r)
    procs = [spawn([str(BIN / "dagster"), "asset", "materialize", "-m", "asset_pipeline.definitions",
                    "--select", "group:ingest"],
                   {"ASSET_PIPELINE_HOME": str(home), "ASSET_PIPELINE_INBOX": str(tmp_path / f"inbox-{r}"),
                    "DAGSTER_HOME": str(dagster_home), **barrier_env(tmp_path / "barrier", "before-commit", 3)})
             for r in range(1, 4)]
    for p in procs:
        rc, out, err = finish(p)
        assert rc == 0, out + err
    cat = Catalog(home)
    assert_catalog(cat, **expected(3))
    assert shared_versions(cat) == {(1, 2, 3)}
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)


def test_an_older_run_updating_the_assets_rows_last_does_not_turn_them_back(tmp_path: Path) -> None:
    """Run 1 commits version 1 of the shared assets and is held before it writes their `assets`
    rows; run 2 commits version 2 and writes its rows; then run 1 writes. The assets must still
    say version 2 (seen once in a full suite as `current_version` behind the newest version)."""
    home, barrier = tmp_path / "home", tmp_path / "barrier"
    write_inbox(tmp_path / "inbox-1", 1)
    write_inbox(tmp_path / "inbox-2", 2)
    code = "from asset_pipeline import Catalog, Settings\n" \
           "s = Catalog(settings=Settings.from_env(home={home!r}, inbox={inbox!r})).ingest()\n" \
           "print('new', s.new_versions)"
    first = python(code.format(home=str(home), inbox=str(tmp_path / "inbox-1")),
                   barrier_env(barrier, "before-assets-merge"))
    wait_for(lambda: arrivals(barrier, "before-assets-merge") == 1, what="run 1 to reach its assets merge",
             alive=(first,))
    rc, out, err = finish(python(code.format(home=str(home), inbox=str(tmp_path / "inbox-2")), {}))
    assert rc == 0, err
    (barrier / "before-assets-merge.go").touch()
    rc, out, err = finish(first)
    assert rc == 0, err
    cat = Catalog(home)
    assert_catalog(cat, **expected(2))
    current = cat.sql("select current_version v, count(*) n from assets where name like 'shared/%' group by 1")
    assert current.to_pylist() == [{"v": 2, "n": 6}]


def test_two_first_ingests_of_the_same_outputs_into_a_new_home(tmp_path: Path) -> None:
    """No tables yet; both plan version 1 of the same assets and commit at the same moment."""
    home = tmp_path / "home"
    write_inbox(tmp_path / "a", 1)
    write_inbox(tmp_path / "b", 1)  # the same bytes under the same names
    code = "from asset_pipeline import Catalog, Settings\n" \
           "s = Catalog(settings=Settings.from_env(home={home!r}, inbox={inbox!r})).ingest()\n" \
           "print('new', s.new_versions, 'unchanged', s.unchanged)"
    env = barrier_env(tmp_path / "barrier", "before-commit", parties=2)
    procs = [python(code.format(home=str(home), inbox=str(tmp_path / n)), env) for n in ("a", "b")]
    outs = []
    for p in procs:
        rc, out, err = finish(p)
        assert rc == 0, err
        outs.append(out)
    news = sorted(int(re.search(r"new (\d+)", o).group(1)) for o in outs)
    assert news == [0, expected(1)["versions"]]  # one run committed them, the other found them there
    assert_catalog(Catalog(home), **expected(1))
    # a re-run changes nothing
    assert Catalog(settings=Settings.from_env(home=home, inbox=str(tmp_path / "a"))).ingest().new_versions == 0


LOSING_CODE = "from asset_pipeline import Catalog, Settings\n" \
              "s = Catalog(settings=Settings.from_env(home={home!r}, inbox={inbox!r}, commit_retries=1)).ingest()\n" \
              "print('new', s.new_versions)"


def test_a_commit_that_keeps_losing_fails_instead_of_passing_for_unchanged(tmp_path: Path) -> None:
    """Both runs have read the table they merge their versions into (the barrier sits after
    that read): Delta rejects one of the two commits, and with no attempt left it fails whole."""
    home = tmp_path / "home"
    write_inbox(tmp_path / "a", 1)
    write_inbox(tmp_path / "b", 2)  # other content for the shared assets: both want their version 1
    env = barrier_env(tmp_path / "barrier", "merge-asset_versions", parties=2)
    procs = {n: python(LOSING_CODE.format(home=str(home), inbox=str(tmp_path / n)), env) for n in ("a", "b")}
    results = {n: finish(p) for n, p in procs.items()}
    failed = [n for n, (rc, _, _) in results.items() if rc != 0]
    assert len(failed) == 1, results
    assert "CommitConflict" in results[failed[0]][2] and "re-run" in results[failed[0]][2]
    won = "b" if failed == ["a"] else "a"
    assert int(re.search(r"new (\d+)", results[won][1]).group(1)) == expected(1)["versions"]
    cat = Catalog(home)
    assert_catalog(cat, **expected(1))
    # the loser's re-run commits its inputs as the next versions
    rerun = Catalog(settings=Settings.from_env(home=home, inbox=str(tmp_path / failed[0]))).ingest()
    assert rerun.new_versions == 6 + 4  # shared (new content) + its own; `same` were already there
    assert_catalog(Catalog(home), **expected(2))


def test_a_run_that_loses_part_of_its_commit_fails_and_keeps_what_landed_consistent(tmp_path: Path) -> None:
    """Run a planned its versions and is held before its commit; run b commits the same version
    numbers of the shared assets. Run a's merge then lands only its own assets' versions and it
    has no attempt left for the rest: it fails, and the versions that did land have their
    `assets` rows (before the fix they had none until a re-run)."""
    home, barrier = tmp_path / "home", tmp_path / "barrier"
    write_inbox(tmp_path / "a", 1)
    write_inbox(tmp_path / "b", 2)
    loser = python(LOSING_CODE.format(home=str(home), inbox=str(tmp_path / "a")),
                   barrier_env(barrier, "before-commit"))
    wait_for(lambda: arrivals(barrier, "before-commit") == 1, what="run a to plan its commit", alive=(loser,))
    rc, out, err = finish(python(LOSING_CODE.format(home=str(home), inbox=str(tmp_path / "b")), {}))
    assert rc == 0 and f"new {expected(1)['versions']}" in out, err
    (barrier / "before-commit.go").touch()
    rc, out, err = finish(loser)
    assert rc != 0 and "CommitConflict: versions of 8 inputs could not be committed" in err, (rc, out, err)
    own = {"assets": 4, "versions": 4}  # run a's own assets landed; its shared and `same` inputs did not
    assert_catalog(Catalog(home), assets=expected(1)["assets"] + own["assets"],
                   versions=expected(1)["versions"] + own["versions"])
    rerun = Catalog(settings=Settings.from_env(home=home, inbox=str(tmp_path / "a"))).ingest()
    assert (rerun.new_versions, rerun.unchanged) == (6, 4 + 2)  # its shared content; own and `same` were there
    assert_catalog(Catalog(home), **expected(2))


def test_two_ingests_in_one_process_keep_their_own_context(tmp_path: Path, monkeypatch) -> None:
    """Thread workers of two ingests in one process (a notebook, an in-process executor) must not
    share state: each home gets exactly its own blobs."""
    # both workers have started (each pool initialised) before either examines its first input
    for k, v in barrier_env(tmp_path / "barrier", "examine-item", parties=2).items():
        monkeypatch.setenv(k, v)
    cats = []
    for name in ("x", "y"):
        write_inbox(tmp_path / f"inbox-{name}", 1 if name == "x" else 2)
        cats.append(Catalog(settings=Settings.from_env(home=tmp_path / name, inbox=str(tmp_path / f"inbox-{name}"),
                                                       durable=False, workers=1)))
    errors: list[BaseException] = []

    def run(cat: Catalog) -> None:
        try:
            cat.ingest()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in cats]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for cat in cats:
        assert_catalog(cat, **expected(1))
        assert set(cat.home.store.iter_hashes()) == integrity.version_hashes(cat.tables)


# --- garbage collection beside ingests ------------------------------------------------------------

def _gc_setup(cat: Catalog, settings: Settings, name: str = "images/icon") -> str:
    """Soft-delete an asset and drop a copy of its bytes into the inbox under a new name: the next
    ingest deduplicates against a blob that the next sweep wants to collect."""
    asset_id = asset_id_for("research", name)
    sha = cat.asset(asset_id)["current_sha256"]
    data = cat.get(asset_id).read()
    cat.delete(asset_id)
    _write(Path(settings.inbox), "copies/icon.png", data, "research", "copies/icon")
    return sha


def _sweep_code(home: Path) -> str:
    return ("from datetime import timedelta\n"
            "from asset_pipeline import Catalog, Settings\n"
            "from asset_pipeline.lifecycle.actions import sweep\n"
            f"c = Catalog(settings=Settings.from_env(home={str(home)!r}))\n"
            "lc = c.lifecycle(); lc.blob_grace = timedelta(0)\n"
            f"s = sweep(lc, (), 0, {TODAY!r}, 'sweep')\n"
            "print('hard_deleted', s.hard_deleted, 'freed', s.bytes_freed)\n")


INGEST_CODE = "from asset_pipeline import Catalog, Settings\n" \
              "s = Catalog(settings=Settings.from_env(home={home!r})).ingest()\nprint('new', s.new_versions)"


def test_sweep_collects_a_blob_while_an_ingest_that_deduplicated_against_it_commits(ingested: Catalog,
                                                                                       settings, tmp_path) -> None:
    """Ingest checks the blob exists → sweep hides, re-checks (no reference yet) and purges it →
    ingest commits. The ingest's check after its commit finds the blob gone and stores it again."""
    sha = _gc_setup(ingested, settings)
    barrier = tmp_path / "barrier"
    ingest = python(INGEST_CODE.format(home=str(settings.home)), barrier_env(barrier, "before-commit"))
    wait_for(lambda: arrivals(barrier, "before-commit") == 1, what="the ingest to reach its commit", alive=(ingest,))
    swept = python(_sweep_code(settings.home), {})
    rc, out, err = finish(swept)
    assert rc == 0 and "hard_deleted 1" in out, err
    assert not ingested.home.store.exists(sha)  # collected: nothing referenced it when it looked
    (barrier / "before-commit.go").touch()
    rc, out, err = finish(ingest)
    assert rc == 0, err
    assert ingested.home.store.exists(sha)
    copy = asset_id_for("research", "copies/icon")
    assert Catalog(settings=settings).get(copy).read()
    assert blob_report(Catalog(settings=settings).lifecycle())["missing"] == []
    assert integrity.missing_blobs(ingested.tables, ingested.home.store).passed


def test_sweep_restores_a_hidden_blob_that_an_ingest_referenced_meanwhile(ingested: Catalog, settings,
                                                                          tmp_path) -> None:
    """Ingest checks the blob exists → sweep hides it → ingest commits (and finds it hidden) →
    sweep re-reads the references and keeps it."""
    sha = _gc_setup(ingested, settings)
    barrier = tmp_path / "barrier"
    ingest = python(INGEST_CODE.format(home=str(settings.home)), barrier_env(barrier, "before-commit"))
    wait_for(lambda: arrivals(barrier, "before-commit") == 1, what="the ingest to reach its commit", alive=(ingest,))
    swept = python(_sweep_code(settings.home), barrier_env(barrier, "gc-hidden"))
    wait_for(lambda: arrivals(barrier, "gc-hidden") == 1, what="the sweep to hide blobs", alive=(swept,))
    assert not ingested.home.store.exists(sha)
    (barrier / "before-commit.go").touch()
    rc, out, err = finish(ingest)
    assert rc == 0 and "new 1" in out, err
    (barrier / "gc-hidden.go").touch()
    rc, out, err = finish(swept)
    assert rc == 0, err
    cat = Catalog(settings=settings)
    assert cat.home.store.exists(sha) and not list(cat.home.store.hidden_hashes())
    freed = cat.sql("select count(*) n from lifecycle_actions where action like 'blob_freed%' and sha256 = ?", [sha])
    assert freed.to_pylist() == [{"n": 0}]
    assert integrity.missing_blobs(cat.tables, cat.home.store).passed


ROUNDS = 8
_ROUND_WAIT = "import time\nfrom pathlib import Path\n" \
              "def wait(p):\n    while not Path(p).exists(): time.sleep(0.01)\n"


def test_ingests_and_sweeps_side_by_side_many_rounds(tmp_path: Path) -> None:
    """Each round deletes and collects an asset while another process ingests a copy of its bytes
    under a new name, both released at once; whoever wins each race, no version loses its blob."""
    home = tmp_path / "home"
    base = tmp_path / "base"
    for i in range(ROUNDS):
        _write(base, f"d/{i}.png", render_image(7_000 + i, (32, 32)), "base", f"d/{i}")
    data = {i: (base / f"d/{i}.png").read_bytes() for i in range(ROUNDS)}
    cat = Catalog(settings=Settings.from_env(home=home, inbox=str(base), durable=False))
    assert cat.ingest().new_versions == ROUNDS
    for i in range(ROUNDS):
        _write(tmp_path / f"round-{i}", "copy.png", data[i], "copies", f"copy/{i}")
        _write(tmp_path / f"round-{i}", "fresh.png", render_image(8_000 + i, (32, 32)), "copies", f"fresh/{i}")
    sync = tmp_path / "sync"
    sync.mkdir()
    ingester = python(_ROUND_WAIT + (
        "from asset_pipeline import Catalog, Settings\n"
        f"for i in range({ROUNDS}):\n"
        f"    wait({str(sync)!r} + f'/start-{{i}}')\n"
        f"    Catalog(settings=Settings.from_env(home={str(home)!r}, inbox={str(tmp_path)!r} + f'/round-{{i}}',"
        " durable=False)).ingest()\n"
        f"    Path({str(sync)!r} + f'/ingested-{{i}}').touch()\n"), {})
    sweeper = python(_ROUND_WAIT + (
        "from datetime import timedelta\n"
        "from asset_pipeline import Catalog, Settings\n"
        "from asset_pipeline.identity import asset_id_for\n"
        "from asset_pipeline.lifecycle.actions import sweep\n"
        "from asset_pipeline.lifecycle.policies import GuardRails\n"
        f"c = Catalog(settings=Settings.from_env(home={str(home)!r}, durable=False))\n"
        f"for i in range({ROUNDS}):\n"
        f"    wait({str(sync)!r} + f'/start-{{i}}')\n"
        "    c.delete(asset_id_for('base', f'd/{i}'))\n"
        "    lc = c.lifecycle(); lc.blob_grace = timedelta(0)\n"
        # each round hard-deletes 1 asset of a few: above the default share (issue 10's guard)
        f"    sweep(lc, (), 0, {TODAY!r}, f'sweep-{{i}}', rails=GuardRails(allow_mass_delete=True))\n"
        f"    Path({str(sync)!r} + f'/swept-{{i}}').touch()\n"), {})
    try:
        for i in range(ROUNDS):
            (sync / f"start-{i}").touch()
            wait_for(lambda i=i: (sync / f"ingested-{i}").exists() and (sync / f"swept-{i}").exists()
                     or ingester.poll() is not None or sweeper.poll() is not None, what=f"round {i}")
            assert ingester.poll() is None or ingester.returncode == 0
            assert sweeper.poll() is None or sweeper.returncode == 0
            now = Catalog(settings=Settings.from_env(home=home, durable=False))
            assert integrity.missing_blobs(now.tables, now.home.store).passed, f"round {i}"
    finally:
        for p in (ingester, sweeper):
            rc, out, err = finish(p)
            assert rc == 0, err
    final = Catalog(settings=Settings.from_env(home=home, durable=False))
    assert_catalog(final, assets=3 * ROUNDS, versions=3 * ROUNDS)
    purged = final.sql("select count(distinct asset_id) n from lifecycle_actions where action = 'hard_delete'")
    assert purged.to_pylist() == [{"n": ROUNDS}]
    for i in range(ROUNDS):  # the copies kept the bytes of the assets that were collected
        assert final.get(asset_id_for("copies", f"copy/{i}")).read() == data[i]
    assert blob_report(final.lifecycle()) == {"orphans": [], "missing": []}


def test_one_sweep_at_a_time_through_dagster(ingested: Catalog, settings, tmp_path: Path) -> None:
    """A second lifecycle run waits for the first one's lock (a range backfill is one run)."""
    import yaml

    settings.retention_file.write_text(yaml.safe_dump({"blob_grace_hours": 0, "policies": [
        {"name": "audio", "action": "archive", "select": {"type": "audio"}}]}))
    code = ("import dagster as dg\n"
            "from asset_pipeline import Settings\n"
            "from asset_pipeline.definitions import build_definitions\n"
            f"defs = build_definitions(Settings.from_env(home={str(settings.home)!r}, durable=False))\n"
            "with dg.instance_for_test() as i:\n"
            "    r = defs.resolve_job_def('lifecycle_job').execute_in_process(instance=i, partition_key='2026-11-20')\n"
            "    assert r.success\n")
    barrier = tmp_path / "barrier"
    first = python(code, barrier_env(barrier, "sweep-locked"))
    wait_for(lambda: arrivals(barrier, "sweep-locked") == 1, what="the first sweep to take the lock", alive=(first,))
    second = python(code, barrier_env(barrier, "sweep-locked"))
    time.sleep(6)  # long enough for the second run to start and reach the lock
    assert arrivals(barrier, "sweep-locked") == 1 and second.poll() is None
    (barrier / "sweep-locked.go").touch()
    for p in (first, second):
        rc, out, err = finish(p)
        assert rc == 0, err
    cat = Catalog(settings=settings)
    archived = cat.sql("select count(*) n from lifecycle_actions where action = 'archive'").to_pylist()
    assert archived == [{"n": 1}]  # the second sweep found nothing left to do
    assert blob_report(cat.lifecycle()) == {"orphans": [], "missing": []}


# --- usage writers and analysts ---------------------------------------------------------------------

def test_usage_recorded_from_several_processes_during_an_ingest(ingested: Catalog, settings, tmp_path) -> None:
    write_inbox(Path(settings.inbox) / "more", 1)
    sunset = asset_id_for("research", "images/sunset")
    writer = ("from asset_pipeline import Catalog, Settings\n"
              f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}))\n"
              "for i in range(150):\n"
              f"    c.record_usage({sunset!r}, 'view', 'user-{{n}}', at='2026-11-20T10:00:00Z')\n"
              "    if i % 50 == 49: c.flush()\n")
    barrier = tmp_path / "barrier"
    env = barrier_env(barrier, "start", parties=4)
    start = "from asset_pipeline.failpoints import failpoint; failpoint('start')\n"
    procs = [python(start + writer.format(n=n), env) for n in range(3)]
    procs.append(python(start + INGEST_CODE.format(home=str(settings.home)), env))
    for p in procs:
        rc, out, err = finish(p)
        assert rc == 0, err
    cat = Catalog(settings=settings)
    counts = cat.sql("select count(*) n, count(distinct event_id) ids, count(distinct user_id) users "
                     "from usage_events").to_pylist()
    assert counts == [{"n": 450, "ids": 450, "users": 3}]
    assert cat.sql("select count(*) n from assets").to_pylist() == [{"n": 13 + expected(1)["assets"]}]


def _cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "asset-pipeline"), *args], env={**os.environ, "ASSET_PIPELINE_HOME": str(home)},
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("read_only", [False, True], ids=["read-write-session", "read-only-session"])
def test_an_analyst_session_never_blocks_ingest_or_reports_and_never_sees_stale_tables(
        ingested: Catalog, settings, read_only: bool) -> None:
    sunset = asset_id_for("research", "images/sunset")
    ingested.record_usage(sunset, "download", "ann", at="2026-11-20T10:00:00Z")
    ingested.flush()
    first = _cli(["report", "--day", "2026-11-20"], settings.home)
    assert first.returncode == 0, first.stdout + first.stderr
    analyst = duckdb.connect(str(settings.home / "analytics.duckdb"), read_only=read_only)
    try:
        assert analyst.sql("select count(*) from assets").fetchall() == [(13,)]
        assert analyst.sql("select sum(events) from daily_usage").fetchall() == [(1,)]
        # while the session stays open: more content, more usage, a new report, plain SQL
        write_inbox(Path(settings.inbox) / "more", 1)
        ingest = _cli(["ingest"], settings.home)
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        ingested.record_usage(sunset, "download", "bob", at="2026-11-20T11:00:00Z")
        ingested.flush()
        again = _cli(["report", "--day", "2026-11-20"], settings.home)
        assert again.returncode == 0, again.stdout + again.stderr
        sql = _cli(["sql", "select sum(events) n from daily_usage"], settings.home)
        assert sql.returncode == 0 and re.search(r"^2\s*$", sql.stdout, re.M), sql.stdout + sql.stderr
        # the open session: tables are read at query time; its reports stay the snapshot it opened
        total = 13 + expected(1)["assets"]
        assert analyst.sql("select count(*) from assets").fetchall() == [(total,)]
        versions = 14 + expected(1)["versions"]
        assert analyst.sql("select count(*) from pipeline.asset_versions").fetchall() == [(versions,)]
        assert analyst.sql("select sum(events) from daily_usage").fetchall() == [(1,)]
    finally:
        analyst.close()
    fresh = duckdb.connect(str(settings.home / "analytics.duckdb"), read_only=True)
    try:  # a new plain session: the new report, and the tables as they are now
        assert fresh.sql("select sum(events) from daily_usage").fetchall() == [(2,)]
        assert fresh.sql("select count(*) from assets").fetchall() == [(13 + expected(1)["assets"],)]
    finally:
        fresh.close()


def test_killing_an_ingest_leaves_no_worker_processes(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    for i in range(300):  # enough inputs for the process pool
        _write(inbox, f"p/{i}.png", render_image(i, (8, 8)), "p", f"p/{i}")
    barrier = tmp_path / "barrier"
    proc = spawn([sys.executable, "-c", INGEST_CODE.format(home=str(tmp_path / "home")).replace(
        "Settings.from_env(home=", f"Settings.from_env(inbox={str(inbox)!r}, workers=2, home=")],
        barrier_env(barrier, "examine-item"), start_new_session=True)
    wait_for(lambda: arrivals(barrier, "examine-item") >= 2, what="both workers to be busy", alive=(proc,))
    group = os.getpgid(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)

    def members() -> list[int]:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(int(stat.parent.name))
        return found

    wait_for(lambda: not members(), timeout=10, what=f"the ingest's workers to exit (left: {members()})")
