import json
from pathlib import Path

import pytest
from deltalake import DeltaTable

from asset_pipeline import Catalog
from asset_pipeline.identity import asset_id_for
from asset_pipeline.samples import make_samples, render_image
from asset_pipeline.sidecar import SIDECAR_SUFFIX


def _count(cat: Catalog, sql: str) -> int:
    return cat.sql(sql).column(0)[0].as_py()


def test_sample_inbox_ingests_with_the_expected_counts(catalog: Catalog, sample_counts: dict) -> None:
    summary = catalog.ingest()
    assert summary.new_versions == sample_counts["versions"]
    assert summary.new_assets == sample_counts["assets"]
    assert summary.rejected == sample_counts["rejected"]
    assert summary.deduplicated == sample_counts["deduplicated"]
    assert _count(catalog, "select count(*) from assets") == sample_counts["assets"]
    assert _count(catalog, "select count(*) from asset_versions") == sample_counts["versions"]
    assert len(list(catalog.home.store.iter_hashes())) == sample_counts["blobs"]
    types = {r["type"] for r in catalog.sql("select distinct type from assets").to_pylist()}
    assert types == {"image", "video", "audio", "embedding", "model", "prompt"}


def test_samples_are_the_same_bytes_every_time_they_are_made(tmp_path: Path) -> None:
    """Two sample inboxes (the quick start's, a second one to try concurrent runs) ingest as one
    set of versions only if they are byte for byte the same; the LoRA's safetensors header once
    listed its metadata in a hash map's order, which changed from call to call (half the time)."""
    def contents(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first = tmp_path / "0"
    make_samples(first)
    for n in range(1, 16):  # a chance of 2^-15 to pass with the order left to the hash map
        make_samples(tmp_path / str(n))
        assert contents(tmp_path / str(n)) == contents(first)


def test_same_bytes_in_two_projects_are_two_assets_and_one_blob(ingested: Catalog) -> None:
    rows = ingested.sql("""select project, name, current_sha256 from assets
                           where name in ('images/sunset', 'marketing/sunset', 'images/sunset-copy')
                           order by project, name""").to_pylist()
    assert [(r["project"], r["name"]) for r in rows] == [
        ("marketing", "marketing/sunset"), ("research", "images/sunset"), ("research", "images/sunset-copy")]
    assert len({r["current_sha256"] for r in rows}) == 1
    assert ingested.home.store.exists(rows[0]["current_sha256"])


def test_rerun_writes_nothing(ingested: Catalog) -> None:
    before = {t: DeltaTable(ingested.tables.uri(t)).version() for t in ("assets", "asset_versions", "ingest_errors")}
    blobs_before = sorted(ingested.home.store.iter_hashes())
    summary = ingested.ingest()
    assert (summary.new_versions, summary.rejected) == (0, 0)
    assert summary.unchanged == summary.inputs and summary.bytes_stored == 0
    after = {t: DeltaTable(ingested.tables.uri(t)).version() for t in before}
    assert after == before  # no Delta commit at all
    assert sorted(ingested.home.store.iter_hashes()) == blobs_before


def test_a_run_writes_a_handful_of_delta_files(ingested: Catalog) -> None:
    for table in ("assets", "asset_versions", "ingest_errors"):
        assert len(DeltaTable(ingested.tables.uri(table)).file_uris()) <= 2, table


def test_second_version_keeps_history(ingested: Catalog) -> None:
    hero = asset_id_for("research", "images/hero")
    versions = ingested.list_versions(hero)
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["previous_sha256"] == versions[0]["sha256"]
    assert versions[1]["change_description"] == "brighter colours"
    asset = ingested.asset(hero)
    assert (asset["current_version"], asset["current_sha256"]) == (2, versions[1]["sha256"])
    assert asset["prompt"] == "hero banner with a red rocket, brighter"


def test_rejected_inputs_are_recorded_and_quarantined_not_lost(ingested: Catalog, settings) -> None:
    errors = {r["source_path"]: r for r in ingested.sql("select * from ingest_errors").to_pylist()}
    assert set(errors) == {"bad/truncated.png", "bad/malformed-sidecar.png", "bad/empty.png", "bad/unknown.bin"}
    assert errors["bad/malformed-sidecar.png"]["field"] == "sidecar"
    assert "empty" in errors["bad/empty.png"]["reason"]
    assert "unknown format" in errors["bad/unknown.bin"]["reason"]
    assert "truncated" in errors["bad/truncated.png"]["reason"]
    for row in errors.values():
        moved = Path(row["quarantine_path"])
        assert moved.exists() and moved.is_relative_to(settings.quarantine_dir)
        assert not (Path(settings.inbox) / row["source_path"]).exists()
    assert Path(errors["bad/truncated.png"]["quarantine_path"] + SIDECAR_SUFFIX).exists()


def _drop(inbox: Path, rel: str, data: bytes, **meta) -> None:
    doc = {"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1", **meta}
    (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
    (inbox / rel).write_bytes(data)
    (inbox / (rel + SIDECAR_SUFFIX)).write_text(json.dumps(doc))


def test_names_from_sidecars_are_never_paths(catalog: Catalog, settings, tmp_path: Path) -> None:
    inbox = Path(settings.inbox)
    _drop(inbox, "x.png", render_image(5, (16, 16)), name="../../../../escape", project="../../p")
    summary = catalog.ingest()
    assert summary.new_assets == 1
    row = catalog.sql("select name, project from assets").to_pylist()[0]
    assert row == {"name": "../../../../escape", "project": "../../p"}
    assert not (tmp_path / "escape").exists() and not list(tmp_path.parent.glob("escape*"))


def test_unknown_asset_id_and_missing_sidecar_are_rejected(catalog: Catalog, settings) -> None:
    inbox = Path(settings.inbox)
    _drop(inbox, "a.png", render_image(6, (16, 16)), asset_id="a_doesnotexist")
    (inbox / "lonely.png").write_bytes(render_image(7, (16, 16)))
    (inbox / "ghost.png" f"{SIDECAR_SUFFIX}").write_text("{}")
    catalog.ingest()
    rows = catalog.sql("select * from ingest_errors").to_pylist()
    reasons = {r["source_path"]: (r["field"], r["reason"]) for r in rows}
    assert reasons["a.png"][0] == "asset_id" and "does not exist" in reasons["a.png"][1]
    assert reasons["lonely.png"][0] == "sidecar" and "lonely.png.meta.json" in reasons["lonely.png"][1]
    assert reasons["ghost.png.meta.json"][0] == "sidecar"


def test_sidecar_asset_id_makes_a_new_version(ingested: Catalog, settings) -> None:
    icon = asset_id_for("research", "images/icon")
    _drop(Path(settings.inbox), "later/icon-v2.png", render_image(40, (64, 64)), asset_id=icon, project="research",
          change_description="sharper")
    ingested.ingest()
    assert [v["change_description"] for v in ingested.list_versions(icon)] == ["initial version", "sharper"]


def test_status_and_usage_survive_a_new_version(ingested: Catalog, settings) -> None:
    from deltalake import DeltaTable

    icon = asset_id_for("research", "images/icon")
    DeltaTable(ingested.tables.uri("assets")).update({"download_count": "7"}, predicate=f"id = '{icon}'")
    _drop(Path(settings.inbox), "icon2.png", render_image(41, (64, 64)), asset_id=icon, project="research")
    ingested.ingest()
    asset = ingested.asset(icon)
    assert (asset["current_version"], asset["download_count"]) == (2, 7)


@pytest.mark.parametrize("whole_read_max", [16 * 1024 * 1024, 0], ids=["read-whole", "streamed"])
def test_process_pool_path_gives_the_same_result(catalog: Catalog, sample_counts: dict, monkeypatch,
                                                 whole_read_max: int) -> None:
    import asset_pipeline.examine as examine_module
    import asset_pipeline.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "PROCESS_POOL_MIN_ITEMS", 1)  # large inboxes use worker processes
    monkeypatch.setattr(examine_module, "WHOLE_READ_MAX", whole_read_max)  # 0: every file takes the big-file path
    summary = catalog.ingest()
    assert (summary.new_versions, summary.rejected, summary.deduplicated) == \
        (sample_counts["versions"], sample_counts["rejected"], sample_counts["deduplicated"])
    assert len(list(catalog.home.store.iter_hashes())) == sample_counts["blobs"]


@pytest.mark.parametrize("from_memory, through_fd, change", [
    (True, False, "rewrite"), (False, False, "rewrite"), (False, True, "rewrite"), (False, True, "unread-rewrite"),
    (False, True, "folder-replaced")],
    ids=["read-whole", "streamed", "adopted-through-its-descriptor", "adopted-with-the-path-check-blind",
         "adopted-after-its-folder-was-replaced"])
def test_an_input_that_changes_while_stored_stays_in_the_inbox(tmp_path: Path, monkeypatch, from_memory: bool,
                                                               through_fd: bool, change: str) -> None:
    """The file is rewritten (or its folder replaced by another holding a new file of that name)
    after it was hashed: it is reported not ready, and no blob is left under the old hash holding
    other bytes — when the blob is copied (from memory, or streamed: a copy of the new bytes is
    checked and removed) and when it is adopted (hard-linked for a consumed inbox) through the
    descriptor it was hashed through. Each safeguard is pinned on its own: a rewrite is caught by
    the descriptor's stamp (its ctime, with size and mtime put back) even with the path check
    blinded; a replaced folder leaves the old inode untouched, so only the path check can tell."""
    import hashlib
    import os

    import asset_pipeline.examine as examine_module
    from asset_pipeline.examine import Examined, store_examined
    from asset_pipeline.filestamp import FileStamp
    from asset_pipeline.inbox import InboxItem
    from asset_pipeline.sidecar import Sidecar
    from asset_pipeline.store import LocalObjectStore

    (tmp_path / "in").mkdir()
    src = tmp_path / "in" / "render.png"
    old = render_image(3, (32, 32))
    src.write_bytes(old)
    st = os.stat(src)
    item = InboxItem("render.png", src, None, st.st_size, st.st_mtime_ns)
    ex = Examined(item, Sidecar("m", "a cat", 1, "ana", "p"), None, hashlib.sha256(old).hexdigest(), len(old),
                  FileStamp.of(st), "a_1", "render", "p")
    fd = os.open(src, os.O_RDONLY) if through_fd else None
    if change == "rewrite":
        src.write_bytes(render_image(4, (48, 48)))  # the generator rewrites it meanwhile
    elif change == "unread-rewrite":  # same size, mtime put back: only the ctime tells
        src.write_bytes(old[:-1] + bytes([old[-1] ^ 1]))
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        os.rename(tmp_path / "in", tmp_path / "moved")
        (tmp_path / "in").mkdir()
        src.write_bytes(render_image(4, (48, 48)))
    if change == "unread-rewrite":
        monkeypatch.setattr(examine_module, "_unchanged", lambda ex: True)
    store = LocalObjectStore(tmp_path / "home")

    class CopyingStore:  # a store that cannot adopt (another filesystem, S3): the copy paths
        def __getattr__(self, name: str):
            if name == "adopt":
                raise AttributeError(name)
            return getattr(store, name)

    try:
        store_examined(ex, store if through_fd else CopyingStore(), old if from_memory else None,
                       give_inode=through_fd, fd=fd)
    finally:
        if fd is not None:
            os.close(fd)
    assert ex.intact is False and (not ex.written or not through_fd)
    assert not store.exists(ex.sha256) or store.read_bytes(ex.sha256) == old


def test_sidecars_naming_assets_are_checked_before_anything_is_stored(ingested: Catalog, settings,
                                                                      monkeypatch) -> None:
    """In worker processes too: a known id becomes a new version; an unknown id or a wrong project
    is rejected, and its bytes never reach the store."""
    import hashlib

    import asset_pipeline.ingest as ingest_module

    monkeypatch.setattr(ingest_module, "PROCESS_POOL_MIN_ITEMS", 1)
    icon = asset_id_for("research", "images/icon")
    inbox = Path(settings.inbox)
    good, unknown, wrong = render_image(50, (64, 64)), render_image(51, (64, 64)), render_image(52, (64, 64))
    _drop(inbox, "v/icon-v2.png", good, asset_id=icon, project="research")
    _drop(inbox, "v/unknown.png", unknown, asset_id="a_doesnotexist", project="research")
    _drop(inbox, "v/wrong.png", wrong, asset_id=icon, project="marketing")
    summary = ingested.ingest()
    assert (summary.new_versions, summary.rejected) == (1, 2)
    assert ingested.list_versions(icon)[-1]["sha256"] == hashlib.sha256(good).hexdigest()
    errors = {r["source_path"]: r["field"] for r in ingested.sql("select * from ingest_errors").to_pylist()}
    assert (errors["v/unknown.png"], errors["v/wrong.png"]) == ("asset_id", "project")
    for data in (unknown, wrong):
        assert not ingested.home.store.exists(hashlib.sha256(data).hexdigest())


def test_an_ingest_leaves_the_garbage_collector_as_it_found_it(catalog: Catalog, sample_counts: dict) -> None:
    """An ingest keeps the process's older objects out of the collector's full passes while it
    runs (gc.freeze) and gives them back after, also when it fails, so a notebook's garbage is
    collected again; inside a block already frozen (the CLI's run) it leaves the freeze to that
    block."""
    import gc

    from asset_pipeline.heap import frozen_heap

    seen = []
    catalog.ingest(progress=lambda *_: seen.append(gc.get_freeze_count()))
    assert seen and all(seen) and gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), frozen_heap():
        assert gc.get_freeze_count()
        raise RuntimeError("a step failed")
    assert gc.get_freeze_count() == 0
    with frozen_heap():
        outer = gc.get_freeze_count()
        with frozen_heap():
            pass
        assert gc.get_freeze_count() == outer
    assert gc.get_freeze_count() == 0
