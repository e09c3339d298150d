"""Writers that read state, decide, and write while another process commits in between (the class
of test_concurrency's assets rows turned back to an older version): one process is held by a
failpoint after its read and before its write while another reaches its own write or the lock
that serialises the two (the ``lock-<name>`` failpoint marks a process about to wait), then the
held one is released. The newer state must be what remains."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from asset_pipeline import Catalog
from asset_pipeline.failpoints import arrivals
from asset_pipeline.identity import asset_id_for
from asset_pipeline.lifecycle.actions import hard_delete_record

from .test_concurrency import barrier_env, finish, python, wait_for

SUNSET = asset_id_for("research", "images/sunset")
FOREST = asset_id_for("research", "images/forest")
ICON = asset_id_for("research", "images/icon")
CHIME = asset_id_for("research", "audio/chime")
PORTRAIT = asset_id_for("research", "images/portrait")
ACT_NOW = {"preview_new_policies": False, "allow_mass_delete": True, "allow_short_grace_period": True}


def _catalog(settings) -> str:
    return ("from asset_pipeline import Catalog, Settings\n"
            f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}, durable=False))\n")


def _sweep_code(settings, day: str) -> str:
    return (_catalog(settings)
            + "from datetime import timedelta\n"
              "from asset_pipeline.lifecycle.actions import sweep\n"
              "from asset_pipeline.lifecycle.policies import load_config\n"
              "r = load_config(c.home.settings.retention_file)\n"
              "lc = c.lifecycle(); lc.blob_grace = timedelta(hours=r.blob_grace_hours)\n"
              "with c.home.lock('lifecycle'):  # as the Dagster sweep does\n"
              f"    s = sweep(lc, r.policies, r.grace_period_days, {day!r}, 'sweep', rails=r.guard_rails)\n"
              "print('archived', s.archived, 'hard_deleted', s.hard_deleted)\n")


def _flock_holder(lock_file: Path) -> int | None:
    """The pid holding a flock on `lock_file`, from /proc/locks (None when it is free)."""
    inode = os.stat(lock_file).st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()  # "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF"; waiters carry "->"
        if len(fields) > 5 and fields[1] == "FLOCK" and int(fields[5].rsplit(":", 1)[1]) == inode:
            return int(fields[4])
    return None


def _blocked_or_done(proc, barrier: Path, lock_file: Path) -> bool:
    """`proc` ran to its end, or it reached the lock (its ``lock-<name>`` failpoint) while another
    process holds that lock — then it waits for the held process, whatever the timing."""
    if proc.poll() is not None:
        return True
    if arrivals(barrier, f"lock-{lock_file.stem}") == 0 or not lock_file.exists():
        return False
    return _flock_holder(lock_file) not in (None, proc.pid)


def test_a_sweep_that_selected_an_asset_does_not_undo_a_delete_made_meanwhile(ingested: Catalog, settings,
                                                                              tmp_path: Path) -> None:
    """The sweep selects the (active, audio) chime for archiving and is held before it writes the
    status; a user soft-deletes the chime meanwhile. Before the fix the delete checked and wrote
    without the lifecycle lock, and the sweep then wrote 'archived' over 'deleted' (deleted_at
    cleared): the delete was silently undone. Now the delete waits for the sweep and deletes the
    archived asset (its bytes brought back hot, as for any delete of an archived asset)."""
    settings.retention_file.write_text(yaml.safe_dump({**ACT_NOW, "policies": [
        {"name": "audio", "action": "archive", "select": {"type": "audio"}}]}))
    barrier = tmp_path / "barrier"
    day = datetime.now(UTC).date().isoformat()
    sweeper = python(_sweep_code(settings, day), barrier_env(barrier, "lifecycle-status"))
    wait_for(lambda: arrivals(barrier, "lifecycle-status") == 1, what="the sweep to reach its status write",
             alive=(sweeper,))
    deleter = python(_catalog(settings) + f"c.delete({CHIME!r})\n", barrier_env(barrier, "lock-lifecycle", 1))
    lock = Path(settings.home.path) / "locks" / "lifecycle.lock"
    wait_for(lambda: _blocked_or_done(deleter, barrier, lock), what="the delete to finish or wait for the sweep")
    (barrier / "lifecycle-status.go").touch()
    rc, out, err = finish(sweeper)
    assert rc == 0 and "archived 1" in out, err
    rc, _, err = finish(deleter)
    assert rc == 0, err
    row = Catalog(settings=settings).sql("select status, deleted_at from assets where id = ?", [CHIME]).to_pylist()[0]
    assert row["status"] == "deleted" and row["deleted_at"] is not None, row
    cat = Catalog(settings=settings)
    assert all(cat.home.store.exists(v["sha256"]) for v in cat.list_versions(CHIME))  # undeletable: bytes hot


def test_an_undelete_and_a_hard_delete_at_once_leave_no_live_asset_without_its_bytes(ingested: Catalog, settings,
                                                                                     tmp_path: Path) -> None:
    """The icon was deleted just under the grace period ago: the sweep of the current day (as of its
    end) expires it while an undelete is still allowed (until now). The undelete checked there was
    no hard delete and is held before it writes 'active'; a sweep starts. Before the fix the sweep
    hard-deleted the icon and freed its blob, then the undelete wrote 'active': a live asset with
    no bytes. Now the sweep waits for the undelete's lock, then finds the icon live."""
    settings.retention_file.write_text(yaml.safe_dump({**ACT_NOW, "grace_period_days": 30, "blob_grace_hours": 0}))
    cat = Catalog(settings=settings)
    sha = cat.asset(ICON)["current_sha256"]
    cat.delete(ICON)
    deleted_at = datetime.now(UTC) - timedelta(days=30) + timedelta(minutes=10)  # undeletable for 10 more minutes
    cat.tables.merge("assets", [{"id": ICON, "deleted_at": deleted_at}], keys=("id",), columns=("deleted_at",),
                     insert=False)
    day = (datetime.now(UTC) + timedelta(minutes=15)).date().isoformat()  # its sweep: as of that day's end
    barrier = tmp_path / "barrier"
    undelete = python(_catalog(settings) + f"c.undelete({ICON!r})\n", barrier_env(barrier, "lifecycle-status"))
    wait_for(lambda: arrivals(barrier, "lifecycle-status") == 1, what="the undelete to reach its status write",
             alive=(undelete,))
    sweeper = python(_sweep_code(settings, day), barrier_env(barrier, "lock-lifecycle", 1))
    lock = Path(settings.home.path) / "locks" / "lifecycle.lock"
    wait_for(lambda: _blocked_or_done(sweeper, barrier, lock), what="the sweep to finish or wait for the undelete")
    (barrier / "lifecycle-status.go").touch()
    rc, out, err = finish(undelete)
    assert rc == 0, err
    rc, swept, err = finish(sweeper)
    assert rc == 0 and "hard_deleted 0" in swept, err
    cat = Catalog(settings=settings)
    status = cat.asset(ICON)["status"]
    purged = hard_delete_record(cat.tables, ICON)
    assert (status, purged, cat.home.store.exists(sha)) == ("active", None, True)


def test_an_older_usage_refresh_writing_last_does_not_turn_download_counts_back(ingested: Catalog, settings,
                                                                                tmp_path: Path) -> None:
    """Report run 1 publishes stats (1 download) and is held before it copies them into `assets`;
    a second download is recorded and report run 2 publishes and copies 2; then run 1 writes 1."""
    day = "2026-11-20"
    ingested.record_usage(SUNSET, "download", "ann", at=f"{day}T10:00:00Z")
    ingested.flush()
    report = _catalog(settings) + "from asset_pipeline.cli import main\n" \
        f"import sys; sys.exit(main(['report', '--day', {day!r}]))\n"
    env = {"ASSET_PIPELINE_HOME": str(settings.home)}
    barrier = tmp_path / "barrier"
    first = python(report, {**env, **barrier_env(barrier, "usage-refresh-merge")})
    wait_for(lambda: arrivals(barrier, "usage-refresh-merge") == 1, timeout=300,
             what="report run 1 to reach its usage refresh", alive=(first,))
    ingested.record_usage(SUNSET, "download", "bob", at=f"{day}T11:00:00Z")
    ingested.flush()
    rc, out, err = finish(python(report, env))
    assert rc == 0, out + err
    assert Catalog(settings=settings).asset(SUNSET)["download_count"] == 2
    (barrier / "usage-refresh-merge.go").touch()
    rc, out, err = finish(first)
    assert rc == 0, out + err
    row = Catalog(settings=settings).sql("select download_count, last_accessed from assets where id = ?",
                                         [SUNSET]).to_pylist()[0]
    assert row["download_count"] == 2, row
    assert row["last_accessed"] == datetime(2026, 11, 20, 11, tzinfo=UTC), row


def test_an_older_collection_stats_run_replacing_last_does_not_leave_stale_counts(ingested: Catalog, settings,
                                                                                   tmp_path: Path) -> None:
    """Stats run 1 counts the collection (1 asset) and is held before it replaces the table; an
    asset is added and stats run 2 starts. Before the fix run 2 wrote 2 and run 1 then replaced
    it with its 1, until some later run. Now run 2 waits for run 1 and counts after it."""
    cid = ingested.create_collection("launch", "owner")
    ingested.add_to_collection(cid, SUNSET, "owner")
    code = ("import dagster as dg\n"
            "from asset_pipeline import Settings\n"
            "from asset_pipeline.definitions import build_definitions\n"
            f"defs = build_definitions(Settings.from_env(home={str(settings.home)!r}, durable=False))\n"
            "with dg.instance_for_test() as i:\n"
            "    assert dg.materialize([defs.resolve_assets_def('collection_stats')], instance=i).success\n")
    barrier = tmp_path / "barrier"
    first = python(code, barrier_env(barrier, "replace-collection_stats"))
    wait_for(lambda: arrivals(barrier, "replace-collection_stats") == 1, what="stats run 1 to reach its replace",
             alive=(first,))
    ingested.add_to_collection(cid, FOREST, "owner")
    second = python(code, barrier_env(barrier, "lock-collection_stats", 1))
    lock = Path(settings.home.path) / "locks" / "collection_stats.lock"
    wait_for(lambda: _blocked_or_done(second, barrier, lock), what="stats run 2 to finish or wait for run 1")
    (barrier / "replace-collection_stats.go").touch()
    for proc in (first, second):
        rc, out, err = finish(proc)
        assert rc == 0, err
    assert Catalog(settings=settings).sql("select assets from collection_stats").to_pylist() == [{"assets": 2}]


def test_an_undo_of_a_recall_while_a_user_restores_its_assets_finishes(ingested: Catalog, settings,
                                                                        tmp_path: Path) -> None:
    """A recall took the forest and the portrait. The undo is held just before it undeletes its
    first asset, and a user undeletes both meanwhile. Before the fix the undo had read 'deleted'
    before the hold and its undelete then failed ('… is active, not deleted'), stopping the undo
    halfway; now each asset is checked under the lifecycle lock, and one already restored is
    left as it is."""
    taken = ingested.recall(model="sd_xl_base_1.0", reason="licence revoked", by="legal")
    assert sorted(taken.asset_ids) == sorted([FOREST, PORTRAIT])
    barrier = tmp_path / "barrier"
    undo = python(_catalog(settings) + f"print('restored', sorted(c.undo_recall({taken.recall_id!r})))\n",
                  barrier_env(barrier, "undo-recall-asset"))
    wait_for(lambda: arrivals(barrier, "undo-recall-asset") == 1, what="the undo to reach its first asset",
             alive=(undo,))
    for asset in (FOREST, PORTRAIT):
        ingested.undelete(asset)
    (barrier / "undo-recall-asset.go").touch()
    rc, out, err = finish(undo)
    assert rc == 0 and "restored []" in out, err[-2000:]
    assert {Catalog(settings=settings).asset(a)["status"] for a in (FOREST, PORTRAIT)} == {"active"}


def test_a_delete_waits_for_a_sweep_and_says_so(ingested: Catalog, settings, tmp_path: Path) -> None:
    """A user's delete while a sweep holds the lifecycle lock waits for it — and says so at once on
    stderr, so the command does not look hung — then deletes."""
    err_file = tmp_path / "stderr"
    cli = str(Path(sys.executable).parent / "asset-pipeline")
    with ingested.home.lock("lifecycle"), err_file.open("w") as err:  # as a sweep holds it
        env = {**os.environ, "ASSET_PIPELINE_HOME": str(settings.home)}
        deleter = subprocess.Popen([cli, "delete", CHIME], env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        wait_for(lambda: "lifecycle lock: waiting for another process" in err_file.read_text(),
                 what="the delete to say it waits", alive=(deleter,))
        assert ingested.asset(CHIME)["status"] == "active"  # nothing done while it waits
    out, _ = deleter.communicate(timeout=120)
    assert deleter.returncode == 0, err_file.read_text()
    assert Catalog(settings=settings).asset(CHIME)["status"] == "deleted"
    assert len(err_file.read_text().strip().splitlines()) == 1, err_file.read_text()  # one line, nothing else


def _owner_acts_while_an_add_is_held(settings, tmp_path: Path, asset: str, owner_call: str):
    """A collection Alice owns and shares with Bob (edit); Bob's add of `asset` is held after its
    permission check, then Alice's `owner_call` (code with ``{cid}``) starts and either finishes or
    waits for the add's lock; then the add is released. Returns (collection id, the add's process,
    the owner's process, whether the owner's call was still waiting when the add was released)."""
    cat = Catalog(settings=settings)
    cid = cat.create_collection("moodboard", owner="alice")
    cat.share(cid, "bob", "edit", by="alice")
    barrier = tmp_path / "barrier"
    adder = python(_catalog(settings) + f"print(c.add_to_collection({cid!r}, {asset!r}, user='bob'))\n",
                   barrier_env(barrier, "collection-allowed"))
    wait_for(lambda: arrivals(barrier, "collection-allowed") == 1, what="the add to pass its check", alive=(adder,))
    owner = python(_catalog(settings) + owner_call.format(cid=repr(cid)) + "\n",
                   barrier_env(barrier, "lock-collections", 1))
    lock = Path(settings.home.path) / "locks" / "collections.lock"
    wait_for(lambda: _blocked_or_done(owner, barrier, lock), what="the owner's call to finish or wait for the add")
    waited = owner.poll() is None
    (barrier / "collection-allowed.go").touch()
    return cid, adder, owner, waited


def test_an_add_allowed_before_a_collection_is_deleted_leaves_no_orphan_membership(ingested: Catalog, settings,
                                                                                   tmp_path: Path) -> None:
    """Bob (an editor) adds the sunset and is held after his permission check; the owner deletes
    the collection meanwhile. Before the fix the delete removed the collection and its rows, then
    the add wrote a membership row into a collection that no longer exists (an orphan that
    `collection_assets` shows to SQL). Now the delete waits for the add, then removes it too."""
    _, adder, deleter, _ = _owner_acts_while_an_add_is_held(settings, tmp_path, SUNSET,
                                                             "c.delete_collection({cid}, user='alice')")
    rc, out, err = finish(adder)
    assert rc == 0 and out.strip() == "True", err
    rc, _, err = finish(deleter)
    assert rc == 0, err
    left = Catalog(settings=settings).sql("select collection_id, asset_id from collection_assets").to_pylist()
    assert left == []


def test_an_unshare_waits_for_an_add_its_user_was_allowed(ingested: Catalog, settings, tmp_path: Path) -> None:
    """Bob's add passed its check and is held; the owner unshares Bob. The unshare must not commit
    while the add it would have refused can still land after it: it waits for the add to finish."""
    cid, adder, unsharer, waited = _owner_acts_while_an_add_is_held(settings, tmp_path, FOREST,
                                                                    "c.unshare({cid}, 'bob', by='alice')")
    assert finish(adder)[0] == 0 and finish(unsharer)[0] == 0
    assert waited, "the unshare committed while an add it would refuse was still to land"
    cat = Catalog(settings=settings)
    assert cat.collections.permission(cid, "bob") is None
    assert [a["id"] for a in cat.collection_assets(cid, user="alice")] == [FOREST]
