"""The embedding job fanned out: shards embedded by separate processes at once into one LanceDB
table (local and on S3), the index built once after, and overlapping runs kept apart."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from asset_pipeline import Catalog, Settings
from asset_pipeline.definitions import build_definitions
from asset_pipeline.embeddings.job import Shard
from asset_pipeline.embeddings.model import TINY_TEST
from asset_pipeline.failpoints import arrivals
from asset_pipeline.samples import make_samples

from .conftest import materialization_metadata
from .test_concurrency import barrier_env, finish, python, wait_for

EMBEDDABLE = 11  # the samples' image, video and prompt versions


def _rows(cat: Catalog) -> list[tuple[str, int]]:
    table = cat.home.vectors.open(TINY_TEST)
    return sorted((r["asset_id"], r["version"]) for r in table.search().select(["asset_id", "version"])
                  .limit(None).to_arrow().to_pylist())


def test_shards_split_the_versions_without_overlap() -> None:
    keys = [(f"a_{i}", v) for i in range(200) for v in (1, 2)]
    owners = [[k for k in keys if Shard(i, 3).holds(*k)] for i in range(3)]
    assert sorted(k for part in owners for k in part) == sorted(keys)
    assert all(len(part) > 100 for part in owners)  # roughly even
    with pytest.raises(ValueError, match="does not exist"):
        Shard(3, 3)


_EMBED = ("from asset_pipeline import Catalog, Settings\n"
          "from asset_pipeline.embeddings.job import Shard, embed_pending\n"
          "from asset_pipeline.embeddings.model import load_model, parse_model\n"
          "c = Catalog(settings=Settings.from_env(home={home!r}))\n"
          "s = embed_pending(c.tables, c.home.store, c.home.vectors, load_model(parse_model('tiny-test')),"
          " batch_size=4, num_workers=0, shard=Shard({i}, {n}), index=False)\n"
          "print('embedded', s.embedded)\n")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_two_workers_embed_their_shards_into_one_table_at_once(where: str, tmp_path: Path, request) -> None:
    if where == "s3":
        request.getfixturevalue("s3_env")
        home = f"s3://{request.getfixturevalue('bucket')}/home"
    else:
        home = str(tmp_path / "home")
    settings = Settings.from_env(home=home, inbox=str(tmp_path / "inbox"))
    make_samples(settings.inbox)
    Catalog(settings=settings).ingest()
    env = barrier_env(tmp_path / "barrier", "embed-append", parties=2)  # both append at the same moment
    procs = [python(_EMBED.format(home=home, i=i, n=2), env) for i in range(2)]
    outs = []
    for p in procs:
        rc, out, err = finish(p)
        assert rc == 0, err
        outs.append(int(out.split()[-1]))
    assert sum(outs) == EMBEDDABLE and all(outs)
    cat = Catalog(settings=settings)
    rows = _rows(cat)
    assert len(rows) == len(set(rows)) == EMBEDDABLE
    from asset_pipeline.embeddings.job import refresh_index

    updates, report = refresh_index(cat.tables, cat.home.vectors, TINY_TEST, 32)
    assert report.rows == EMBEDDABLE and report.fts


def test_the_fanned_out_job_through_dagster(settings, sample_counts, monkeypatch) -> None:
    monkeypatch.setenv("ASSET_PIPELINE_CLIP_MODEL", TINY_TEST)
    cat = Catalog(settings=settings)
    cat.ingest()
    defs = build_definitions(Settings.from_env(home=settings.home, embed_shards=2))
    job = defs.resolve_job_def("embed_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
        assert result.success
        steps = {e.step_key for e in result.all_events if e.is_step_success}
        assert {"clip_embeddings.embed_shard_0", "clip_embeddings.embed_shard_1",
                "clip_embeddings.index_embeddings"} <= steps
        meta = materialization_metadata(result)
        assert meta["clip_embeddings"]["table_rows"] == EMBEDDABLE and meta["clip_embeddings"]["shards"] == 2
        shard_rows = [e.event_specific_data.metadata["rows_embedded"].value for e in result.all_events
                      if e.is_successful_output and e.step_key.startswith("clip_embeddings.embed_shard_")]
        assert sorted(shard_rows) != [] and sum(shard_rows) == EMBEDDABLE
    assert len(set(_rows(cat))) == len(_rows(cat)) == EMBEDDABLE


def test_two_unsharded_embed_runs_at_once_add_each_row_once(settings, sample_counts, tmp_path: Path) -> None:
    """The same versions from two writers at once would both land in LanceDB; the runs take turns."""
    Catalog(settings=settings).ingest()
    code = ("import dagster as dg\n"
            "from asset_pipeline import Settings\n"
            "from asset_pipeline.definitions import build_definitions\n"
            f"defs = build_definitions(Settings.from_env(home={str(settings.home)!r}))\n"
            "with dg.instance_for_test() as i:\n"
            "    assert defs.resolve_job_def('embed_job').execute_in_process(instance=i).success\n")
    env = {"ASSET_PIPELINE_CLIP_MODEL": TINY_TEST, **barrier_env(tmp_path / "barrier", "embed-append")}
    first = python(code, env)
    wait_for(lambda: arrivals(tmp_path / "barrier", "embed-append") == 1, what="the first run to append",
             alive=(first,))
    second = python(code, env)
    time.sleep(8)
    assert arrivals(tmp_path / "barrier", "embed-append") == 1  # the second waits for the first's lock
    (tmp_path / "barrier" / "embed-append.go").touch()
    for p in (first, second):
        rc, _, err = finish(p)
        assert rc == 0, err
    rows = _rows(Catalog(settings=settings))
    assert len(rows) == len(set(rows)) == EMBEDDABLE
