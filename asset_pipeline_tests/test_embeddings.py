"""Embeddings with the tiny random-weight model: real open_clip code, real LanceDB."""

from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
import torch

from asset_pipeline import Catalog
from asset_pipeline.definitions import build_definitions
from asset_pipeline.embeddings.job import embed_pending, sync_status
from asset_pipeline.embeddings.model import TINY_TEST, ModelUnavailable, load_model, parse_model
from asset_pipeline.embeddings.search import SearchError, where_clause
from asset_pipeline.embeddings.vectors import VectorStore, schema
from asset_pipeline.identity import asset_id_for
from asset_pipeline.samples import render_image

from .conftest import materialization_metadata, run_python


@pytest.fixture
def offline_hub(monkeypatch) -> None:
    """No network here: make huggingface_hub fail at once instead of retrying for 45 s."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def tiny():
    return load_model(parse_model(TINY_TEST))


@pytest.fixture
def embedded(ingested: Catalog, tiny) -> Catalog:
    embed_pending(ingested.tables, ingested.home.store, VectorStore(ingested.home.settings.lancedb_dir), tiny,
                  batch_size=4, num_workers=2)
    return ingested


def _rows(cat: Catalog, model_id: str = TINY_TEST) -> list[dict]:
    table = VectorStore(cat.home.settings.lancedb_dir).open(model_id)
    return table.search().limit(None).to_arrow().to_pylist()


def test_vectors_have_the_model_dimension_and_unit_length(embedded: Catalog, tiny) -> None:
    rows = _rows(embedded)
    assert {r["type"] for r in rows} == {"image", "video", "prompt"}  # audio, models, npy are not embedded
    assert len(rows) == 11  # 9 image versions, 1 video, 1 prompt
    for r in rows:
        v = np.asarray(r["vector"])
        assert v.shape == (tiny.dim,) and abs(np.linalg.norm(v) - 1) < 1e-5
        assert r["model_id"] == TINY_TEST and r["status"] == "active" and r["project"] in ("research", "marketing")


def test_an_image_finds_itself_first(embedded: Catalog, originals) -> None:
    forest = asset_id_for("research", "images/forest")
    by_path = embedded.search(image=str(originals / "images/forest.png"), k=3)
    assert by_path[0]["asset_id"] == forest and by_path[0]["score"] == pytest.approx(1.0, abs=1e-5)
    by_id = embedded.search(image=forest, k=3)
    assert by_id[0]["asset_id"] == forest
    by_bytes = embedded.search(image=(originals / "images/forest.png").read_bytes(), k=1)
    assert by_bytes[0]["asset_id"] == forest
    assert by_path[0]["model"] == "tiny-test (test model, random weights)"  # labelled wherever it appears


def test_results_carry_the_contract_fields_and_filters_apply(embedded: Catalog) -> None:
    hits = embedded.search(text="a sunset over the sea", k=20)
    assert hits and all({"asset_id", "version", "score", "type", "prompt"} <= set(h) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert len({h["asset_id"] for h in hits}) == len(hits)  # one hit per asset
    assert {h["project"] for h in embedded.search(text="sunset", filters={"project": "marketing"})} == {"marketing"}
    assert {h["type"] for h in embedded.search(text="x", filters={"type": ["video", "prompt"]})} == \
        {"video", "prompt"}
    tagged = embedded.search(text="x", filters={"tags": ["night", "icon"]})
    assert {h["asset_id"] for h in tagged} == {asset_id_for("research", "images/city"),
                                              asset_id_for("research", "images/icon")}
    early = embedded.search(text="x", filters={"created_before": "2026-11-01T09:02:00+00:00"}, k=50)
    assert {h["asset_id"] for h in early} == {asset_id_for("research", n) for n in ("images/sunset", "images/forest")}
    with pytest.raises(SearchError, match="unknown search filter"):
        embedded.search(text="x", filters={"colour": "red"})


def test_full_text_and_hybrid_search(embedded: Catalog) -> None:
    fts = embedded.search(query="rocket")
    assert {h["asset_id"] for h in fts} == {asset_id_for("research", "images/hero"),
                                           asset_id_for("research", "prompts/rocket")}
    assert len(fts) == 2  # both versions of images/hero match, one hit per asset
    hybrid = embedded.search(text="a red rocket", query="rocket", k=5)
    assert hybrid and {h["asset_id"] for h in hybrid[:2]} == {h["asset_id"] for h in fts}


def test_archived_and_deleted_assets_are_excluded_unless_asked(embedded: Catalog) -> None:
    from deltalake import DeltaTable

    forest = asset_id_for("research", "images/forest")
    DeltaTable(embedded.tables.uri("assets")).update({"status": "'archived'"}, predicate=f"id = '{forest}'")
    # Before the embedding rows learn about it, the assets table already has the last word...
    assert forest not in {h["asset_id"] for h in embedded.search(text="forest", k=50)}
    assert forest in {h["asset_id"] for h in embedded.search(text="forest", k=50, include_inactive=True)}
    # ...and once the job syncs statuses onto the rows, status filters select it too.
    table = VectorStore(embedded.home.settings.lancedb_dir).open(TINY_TEST)
    assert sync_status(embedded.tables, table) == 1
    archived = embedded.search(text="forest", filters={"status": "archived"})
    assert [(h["asset_id"], h["status"]) for h in archived] == [(forest, "archived")]
    DeltaTable(embedded.tables.uri("assets")).update({"status": "'deleted'"}, predicate=f"id = '{forest}'")
    assert sync_status(embedded.tables, table) == 1
    assert forest not in {r["asset_id"] for r in _rows(embedded)}  # deleted: its vectors are gone
    assert where_clause(None) == "status = 'active'"


def test_inactive_assets_are_left_out_whether_few_or_many_are_inactive(embedded: Catalog) -> None:
    """Few inactive assets are dropped after the query by their live status (the index is not
    asked to filter a status column); many are filtered by the index itself. Either way a search
    returns exactly the active assets, as many as asked for."""
    from deltalake import DeltaTable

    from asset_pipeline.embeddings.search import PREFILTER_INACTIVE_SHARE

    embedded_ids = sorted({r["asset_id"] for r in _rows(embedded)})
    total = embedded.sql("select count(*) n from assets").to_pylist()[0]["n"]
    assets = DeltaTable(embedded.tables.uri("assets"))
    status = embedded.searcher.session.status
    table = VectorStore(embedded.home.settings.lancedb_dir).open(TINY_TEST)

    def archive(ids: list[str]) -> None:
        assets.update({"status": "'archived'"}, predicate=f"id in ({', '.join(repr(i) for i in ids)})")
        assets.update_incremental()

    few = embedded_ids[:1]
    archive(few)
    assert 0 < status.inactive_share() <= PREFILTER_INACTIVE_SHARE
    where = where_clause(None, default_status=False)
    assert where is None  # the index is asked for every row...
    hits = embedded.search(text="x", k=len(embedded_ids) - 1)  # ...and the hits still fill k with active assets
    assert sorted(h["asset_id"] for h in hits) == embedded_ids[1:]

    many = embedded_ids[: len(embedded_ids) // 2]
    archive(many)
    assert status.inactive_share() == pytest.approx(len(many) / total)
    assert status.inactive_share() > PREFILTER_INACTIVE_SHARE
    stale = embedded.search(text="x", k=len(embedded_ids))  # rows not yet told: live statuses decide
    assert sorted(h["asset_id"] for h in stale) == embedded_ids[len(many):]
    assert sync_status(embedded.tables, table) == len(many)
    synced = embedded.search(text="x", k=3)
    assert len(synced) == 3 and {h["asset_id"] for h in synced} <= set(embedded_ids[len(many):])
    assert {h["status"] for h in embedded.search(text="x", k=50, include_inactive=True)} == {"active", "archived"}


def test_incremental_runs_embed_only_new_versions(embedded: Catalog, tiny, settings) -> None:
    vs = VectorStore(embedded.home.settings.lancedb_dir)
    again = embed_pending(embedded.tables, embedded.home.store, vs, tiny)
    assert (again.pending, again.embedded) == (0, 0)
    icon = asset_id_for("research", "images/icon")
    embedded.create_version(icon, render_image(90, (64, 64)), "new colours")
    more = embed_pending(embedded.tables, embedded.home.store, vs, tiny)
    assert (more.pending, more.embedded, more.images) == (1, 1, 1)
    assert len(_rows(embedded)) == 12


def test_a_changed_model_re_embeds_into_its_own_table(embedded: Catalog, tiny, tmp_path: Path) -> None:
    # A local checkpoint loaded through open_clip's own pretrained-path code, with other weights.
    torch.manual_seed(123)
    other = load_model(parse_model(TINY_TEST)).model
    for p in other.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ckpt = tmp_path / "tiny-other.pt"
    torch.save(other.state_dict(), ckpt)
    spec = parse_model(f"asset-pipeline-tiny-test:{ckpt}")
    changed = load_model(spec)
    assert changed.model_id != TINY_TEST and changed.model_id.startswith("asset-pipeline-tiny-test:sha256-")
    vs = VectorStore(embedded.home.settings.lancedb_dir)
    summary = embed_pending(embedded.tables, embedded.home.store, vs, changed)
    assert summary.embedded == 11  # everything again, in the new model's table
    old, new = _rows(embedded), _rows(embedded, changed.model_id)
    assert len(old) == len(new) == 11
    assert {r["model_id"] for r in new} == {changed.model_id}
    a = next(r["vector"] for r in old if r["type"] == "prompt")
    b = next(r["vector"] for r in new if r["type"] == "prompt")
    assert not np.allclose(a, b)


def test_missing_weights_fail_with_instructions(offline_hub) -> None:
    with pytest.raises(ModelUnavailable, match="ASSET_PIPELINE_CLIP_MODEL"):
        load_model(parse_model("ViT-B-32:laion2b_s34b_b79k"))
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_model(parse_model("ViT-B-32:/nowhere/weights.pt"))
    with pytest.raises(ModelUnavailable, match="MODEL:PRETRAINED"):
        parse_model("ViT-B-32")


def test_crash_in_the_middle_of_a_batch_then_rerun_completes(ingested: Catalog, settings) -> None:
    code = ("from asset_pipeline import Catalog, Settings\n"
            "from asset_pipeline.embeddings.job import embed_pending, sync_status\n"
            "from asset_pipeline.embeddings.model import load_model, parse_model\n"
            "from asset_pipeline.embeddings.vectors import VectorStore\n"
            f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}))\n"
            "embed_pending(c.tables, c.home.store, VectorStore(c.home.settings.lancedb_dir),\n"
            "              load_model(parse_model('tiny-test')), batch_size=2, num_workers=0, append_rows=4)\n")
    crashed = run_python(code, env={"ASSET_PIPELINE_CRASH_AT": "embed-batch"})
    assert crashed.returncode == 137, crashed.stderr
    partial = _rows(ingested)
    assert len(partial) == 4  # the first appended batch, complete; nothing half-written
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    rows = _rows(ingested)
    assert len(rows) == 11 and len({(r["asset_id"], r["version"]) for r in rows}) == 11


def test_loading_the_test_model_leaves_nothing_in_the_temp_folder(tmp_path: Path) -> None:
    """Every process that loaded the tiny test model used to leave its config folder behind."""
    code = ("from asset_pipeline.embeddings.model import load_model, parse_model\n"
            "print(load_model(parse_model('tiny-test')).dim)\n")
    done = run_python(code, env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob("asset-pipeline-*"))  # (torch keeps its compile cache there: not ours)


def test_a_long_temp_folder_path_does_not_hang_the_loader(ingested: Catalog, settings, tmp_path: Path) -> None:
    """Loader workers hand batches back over Unix sockets under TMPDIR (at most 107 bytes a path);
    seen on a Celery worker whose TMPDIR was deep in a test folder: the embedding waited forever."""
    deep = tmp_path / ("d" * 60) / ("e" * 40)
    deep.mkdir(parents=True)
    code = ("from asset_pipeline import Catalog, Settings\n"
            "from asset_pipeline.embeddings.job import embed_pending\n"
            "from asset_pipeline.embeddings.model import load_model, parse_model\n"
            "from asset_pipeline.embeddings.vectors import VectorStore\n"
            f"c = Catalog(settings=Settings.from_env(home={str(settings.home)!r}))\n"
            "s = embed_pending(c.tables, c.home.store, VectorStore(c.home.settings.lancedb_dir),\n"
            "                  load_model(parse_model('tiny-test')), batch_size=2, num_workers=2)\n"
            "print(s.embedded)\n")
    done = run_python(code, env={"TMPDIR": str(deep)}, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "11" and len(_rows(ingested)) == 11


def test_ann_index_is_built_past_the_threshold_and_search_stays_exact_enough(tmp_path: Path) -> None:
    vs = VectorStore(tmp_path / "lancedb", ann_threshold=1000)
    table = vs.open_or_create("synthetic", 32)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((1200, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{"vector": v.tolist(), "asset_id": f"a_{i}", "version": 1, "sha256": "0" * 64, "name": f"n{i}",
             "type": "image", "project": f"p{i % 3}", "tags": ["t"], "prompt": f"prompt {i}", "status": "active",
             "created_at": None, "model_id": "synthetic", "embedded_at": None} for i, v in enumerate(vectors)]
    VectorStore.add(table, pa.Table.from_pylist(rows[:900], schema=schema(32)))
    assert vs.maintain(table).ann == "none (below threshold)"
    VectorStore.add(table, pa.Table.from_pylist(rows[900:], schema=schema(32)))
    assert vs.maintain(table).ann == "built"
    names = {i.name for i in table.list_indices()}
    assert {"vector_idx", "prompt_idx", "project_idx", "tags_idx", "status_idx"} <= names
    assert vs.maintain(table).ann == "current (0 rows not yet indexed)"
    from asset_pipeline.embeddings.search import run_search

    hits = run_search(table, vector=vectors[42], where="project = 'p0'", k=5)
    assert hits[0]["asset_id"] == "a_42" and all(h["project"] == "p0" for h in hits)



def test_many_versions_of_one_asset_never_crowd_out_the_others(tmp_path: Path) -> None:
    """The index is asked for a few rows more than k; when one asset's versions fill them all,
    it is asked again for more, so k different assets still come back."""
    from asset_pipeline.embeddings.search import run_search

    table = VectorStore(tmp_path / "lancedb").open_or_create("synthetic", 8)
    query = np.eye(8, dtype=np.float32)[0]
    rows = [{"vector": (query + 0.001 * v * np.eye(8, dtype=np.float32)[1]).tolist(), "asset_id": "a_many",
             "version": v, "status": "active", "model_id": "synthetic"} for v in range(1, 11)]
    rows += [{"vector": (query + 0.5 * (i + 1) * np.eye(8, dtype=np.float32)[2 + i]).tolist(),
              "asset_id": f"a_{i}", "version": 1, "status": "active", "model_id": "synthetic"} for i in range(4)]
    VectorStore.add(table, pa.Table.from_pylist(rows, schema=schema(8)))
    hits = run_search(table, vector=query, k=3)
    assert [(h["asset_id"], h["version"]) for h in hits] == [("a_many", 1), ("a_0", 1), ("a_1", 1)]

def test_embedding_job_through_dagster(ingested: Catalog, settings) -> None:
    defs = build_definitions(settings)
    job = defs.resolve_job_def("embed_job")
    assert job.tags["asset_pipeline/compute"] == "gpu"
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance,
                                        run_config={"resources": {"embedder": {"config": {"model": TINY_TEST}}}})
        assert result.success
        meta = materialization_metadata(result)
        emb = meta["clip_embeddings"]
        assert emb["rows_embedded"] == 11 and emb["device"] == "cpu" and emb["images_per_s"] > 0
        assert emb["model"] == "tiny-test (test model, random weights)" and emb["model_source"] == "configured"
        assert meta["near_duplicates"]["pairs"] >= 3
        # What the embed_after_ingest sensor starts (no run config) uses the model the home was built with.
        again = materialization_metadata(job.execute_in_process(instance=instance))
        assert again["clip_embeddings"]["model_source"] == "recorded in the home"
        assert again["clip_embeddings"]["rows_embedded"] == 0 and again["near_duplicates"]["pairs"] >= 3
    pairs = Catalog(settings=settings).sql("select * from near_duplicates where similarity > 0.9999").to_pylist()
    sunsets = {asset_id_for(p, n) for p, n in (("research", "images/sunset"), ("research", "images/sunset-copy"),
                                               ("marketing", "marketing/sunset"))}
    assert {frozenset((p["asset_a"], p["asset_b"])) for p in pairs} >= \
        {frozenset((a, b)) for a in sunsets for b in sunsets if a < b}


def test_missing_weights_fail_only_the_embedding_asset(settings, sample_counts, monkeypatch, offline_hub) -> None:
    monkeypatch.setenv("ASSET_PIPELINE_CLIP_MODEL", "ViT-B-32:laion2b_s34b_b79k")
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        failed = defs.resolve_job_def("embed_job").execute_in_process(instance=instance, raise_on_error=False)
        assert not failed.success
        failure = next(e for e in failed.all_events if e.is_step_failure)
        text = str(failure.step_failure_data.error.to_string())
        assert "ModelUnavailable" in text and "ASSET_PIPELINE_CLIP_MODEL" in text
    assert Catalog(settings=settings).sql("select count(*) n from assets").to_pylist() == [{"n": 13}]


def test_embed_sensor_follows_ingests_that_recorded_versions(settings, sample_counts) -> None:
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("embed_after_ingest")
    with dg.instance_for_test() as instance:
        ingest = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance)
        with dg.build_sensor_context(instance=instance, definitions=defs) as ctx:
            result = sensor(ctx)
        requests = list(result) if not isinstance(result, dg.RunRequest) else [result]
        assert [r.run_key for r in requests] == [f"embed-after-{ingest.run_id}"]
        assert defs.resolve_job_def("embed_job").tags["asset_pipeline/compute"] == "gpu"


def test_search_uses_the_model_the_home_was_embedded_with(embedded: Catalog, settings) -> None:
    import json

    record = json.loads((settings.lancedb_dir / "model.json").read_text())
    assert record["model"] == TINY_TEST and record["table"].startswith("clip_tiny_test_")
    hits = embedded.search(query="rocket")  # no model named anywhere: the home's own
    assert len(hits) == 2 and hits.model == "tiny-test (test model, random weights)"
    assert hits.model_source == "recorded in the home" and {h["model"] for h in hits} == {hits.model}


def test_search_without_embeddings_for_the_model_says_so(ingested: Catalog) -> None:
    from asset_pipeline import NoEmbeddings

    with pytest.raises(NoEmbeddings, match=r"no embeddings for model ViT-B-32:laion2b_s34b_b79k \(default\) in "
                                           r".*: run asset-pipeline embed"):
        ingested.search(query="rocket")


def test_hits_show_as_thumbnails_with_name_prompt_and_score(embedded: Catalog) -> None:
    import base64
    import html
    import io
    import re

    from PIL import Image

    hits = embedded.search(text="a sunset over the sea", k=4, filters={"type": ["image", "video", "prompt"]})
    page = hits._repr_html_()  # what Jupyter renders for the hits
    pictures = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    visual = [h for h in hits if h["type"] in ("image", "video")]
    assert len(pictures) == len(visual) >= 2
    for encoded in pictures:
        with Image.open(io.BytesIO(base64.b64decode(encoded))) as thumb:
            assert 0 < max(thumb.size) <= 160
    for h in hits:
        assert f"{h['project']}/{h['name']}" in page and f"score {h['score']:.4f}" in page
        assert html.escape(h["prompt"][:40]) in page
    assert "model: tiny-test (test model, random weights)" in page
    assert embedded.show(list(hits))._repr_html_() == page


def test_an_unavailable_model_fails_at_once_with_the_fix_in_one_line(tmp_path: Path) -> None:
    """No network (an unresolvable hub) and nothing cached: no minute of download retries."""
    import os
    import subprocess
    import sys
    import time

    Catalog(tmp_path / "home")
    env = {**os.environ, "ASSET_PIPELINE_HOME": str(tmp_path / "home"), "HF_ENDPOINT": "https://hub.invalid",
           "HF_HOME": str(tmp_path / "hf")}
    for var in ("ASSET_PIPELINE_CLIP_MODEL", "HF_HUB_OFFLINE", "DAGSTER_HOME"):
        env.pop(var, None)
    start = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "asset-pipeline"), "embed"], env=env,
                          capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: clip_embeddings: cannot load embedding model ViT-B-32:laion2b_s34b_b79k: "
                               "its weights are not in the local cache and hub.invalid cannot be reached")
    assert "Fix: ASSET_PIPELINE_CLIP_MODEL=ViT-B-32:/path/to/" in lines[0]
    assert elapsed < 25, f"took {elapsed:.0f} s"


def test_a_catalog_keeps_its_search_open_and_still_sees_new_rows(ingested: Catalog, tiny) -> None:
    """The table and statuses stay open between searches; rows embedded later (by another
    handle, as another process would) and status changes made by anyone are seen at once."""
    from deltalake import DeltaTable

    from asset_pipeline import NoEmbeddings

    with pytest.raises(NoEmbeddings):  # nothing embedded yet
        ingested.search(text="forest", k=5)
    embed_pending(ingested.tables, ingested.home.store, VectorStore(ingested.home.settings.lancedb_dir), tiny,
                  num_workers=0)
    forest = asset_id_for("research", "images/forest")
    hits = ingested.search(image=forest, k=3)
    assert hits[0]["asset_id"] == forest
    vector = np.asarray(next(r["vector"] for r in _rows(ingested) if r["asset_id"] == forest), dtype=np.float32)
    assert ingested.search(vector=vector, k=3)[0]["asset_id"] == forest  # an embedding you already have
    icon = asset_id_for("research", "images/icon")
    new = render_image(91, (64, 64))
    ingested.create_version(icon, new, "new colours")
    embed_pending(ingested.tables, ingested.home.store, VectorStore(ingested.home.settings.lancedb_dir), tiny,
                  num_workers=0)
    newest = next(r for r in _rows(ingested) if r["asset_id"] == icon and r["version"] == 2)
    hit = ingested.search(vector=np.asarray(newest["vector"], dtype=np.float32), k=1)[0]
    assert (hit["asset_id"], hit["version"]) == (icon, 2)
    DeltaTable(ingested.tables.uri("assets")).update({"status": "'archived'"}, predicate=f"id = '{forest}'")
    assert forest not in {h["asset_id"] for h in ingested.search(vector=vector, k=20)}


def test_a_checkpoint_is_hashed_once_until_it_changes(tmp_path: Path) -> None:
    from asset_pipeline.embeddings.model import checkpoint_digest

    ckpt = tmp_path / "clip.pt"
    ckpt.write_bytes(b"weights" * 1000)
    spec = parse_model(f"ViT-B-32:{ckpt}")
    first = spec.model_id
    before = checkpoint_digest.cache_info()
    assert parse_model(f"ViT-B-32:{ckpt}").model_id == first
    after = checkpoint_digest.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)  # not read again
    ckpt.write_bytes(b"other weights" * 1000)
    assert parse_model(f"ViT-B-32:{ckpt}").model_id != first  # rewritten: a new vector space
