"""User mistakes through the Python API: a clear error naming the argument, never a raw TypeError or a
LanceDB parse error, and nothing recorded."""

from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest

from asset_pipeline import Catalog, CollectionNotFound
from asset_pipeline.embeddings.search import SearchError
from asset_pipeline.errors import AssetNotFound
from asset_pipeline.identity import asset_id_for
from asset_pipeline.usage.events import InvalidEvent

SUNSET = asset_id_for("research", "images/sunset")


@pytest.mark.parametrize("filters, words", [
    ({"project": 1.5}, "filter 'project' must be a name or a non-empty list of names, got 1.5"),
    ({"created_after": 0}, "filter 'created_after' must be a date, a datetime or an ISO 8601 string, got int 0"),
    ({"created_before": "last tuesday"}, "filter 'created_before' is not an ISO 8601 date or time"),
    ({"type": "imgae"}, "filter 'type' has ['imgae'], not one of image, video"),
    ({"status": ["gone"]}, "filter 'status' has ['gone']"),
    ({"tags": [None]}, "filter 'tags' must be a name"),
    ({"asset_id": []}, "filter 'asset_id' must be a name or a non-empty list"),
    ({"project": ["research", "nul\x00inside"]}, "filter 'project' has a name with a NUL character"),
    (["project"], "filters must be a dict"),
])
def test_search_filters_of_the_wrong_type_say_so(ingested: Catalog, filters, words: str) -> None:
    with pytest.raises(SearchError) as info:
        ingested.search(query="rocket", filters=filters)
    assert words in str(info.value)


def test_good_filter_values_of_every_accepted_type_pass(ingested: Catalog) -> None:
    from asset_pipeline.errors import NoEmbeddings

    for value in ("2026-11-01", "2026-11-01T09:00:00Z", date(2026, 11, 1), datetime(2026, 11, 1, tzinfo=UTC)):
        with pytest.raises(NoEmbeddings):  # the filters pass; then: nothing is embedded yet
            ingested.search(query="rocket", filters={"created_after": value, "type": ["image", "prompt"],
                                                     "project": ("research",)})


@pytest.mark.parametrize("at, words", [
    ("9999-12-31T00:00:00Z", "'at' is in the future: 9999-12-31"),
    (datetime.now(UTC) + timedelta(days=3), "'at' is in the future"),
    (1e20, "'at' is not a possible Unix time"),
    ("1900-01-01", "'at' is before 1970"),
])
def test_record_usage_refuses_impossible_times(ingested: Catalog, at, words: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        ingested.record_usage(SUNSET, "view", "ann", at=at)
    assert info.value.field == "at" and words in str(info.value)
    assert ingested.flush() == 0


def test_record_usage_refuses_a_collection_that_does_not_exist(ingested: Catalog) -> None:
    with pytest.raises(CollectionNotFound, match="no collection with id 'c_nope': usage was not recorded"):
        ingested.record_usage(SUNSET, "view", "ann", collection_id="c_nope")
    with pytest.raises(InvalidEvent, match="'collection_id' must be a non-empty string"):
        ingested.record_usage(SUNSET, "view", "ann", collection_id=5)
    assert ingested.flush() == 0
    cid = ingested.create_collection("banners", owner="ann")
    ingested.record_usage(SUNSET, "view", "ann", collection_id=cid, at=datetime.now(UTC) - timedelta(hours=1))
    assert ingested.flush() == 1
    assert ingested.sql("select collection_id from usage_events").to_pylist() == [{"collection_id": cid}]


HOSTILE_TEXT = ["it's", "''; drop table assets; --", "back\\slash", "line\nbreak", "Zoë 🎨 \"quoted\"", "?", ""]


def test_values_written_into_sql_text_read_back_exactly(tmp_path) -> None:
    """Run ids, file names and search filters are written into DuckDB and LanceDB SQL as
    literals: whatever their characters, each reads back as itself and ends nowhere early."""
    import duckdb
    import lancedb
    import pyarrow as pa

    from asset_pipeline.sql_literals import literal, literal_list, string_literal

    con = duckdb.connect()
    values = [*HOSTILE_TEXT, 7, -2.5, True, None, date(2026, 11, 24), datetime(2026, 11, 24, 13, 5, 1)]
    assert con.sql(f"select {', '.join(literal(v) for v in values)}").fetchall() == [tuple(values)]
    assert con.sql(f"select {string_literal(HOSTILE_TEXT[1])}").fetchone() == (HOSTILE_TEXT[1],)
    with pytest.raises(ValueError, match="no SQL literal for the number nan"):
        literal(float("nan"))
    five_am_at_plus_5 = datetime(2026, 11, 24, 5, 0, tzinfo=timezone(timedelta(hours=5)))
    assert con.sql(f"select {literal(five_am_at_plus_5)}").fetchone() == (datetime(2026, 11, 24, 0, 0),)  # UTC
    assert con.sql(f"select {literal(np.int64(5))} + 1, {literal(np.float32(2.5))}").fetchone() == (6, 2.5)
    table = lancedb.connect(tmp_path / "db").create_table("t", pa.table({"asset_id": HOSTILE_TEXT + ["other"]}))
    picked = table.search().where(f"asset_id IN ({literal_list(HOSTILE_TEXT[:3])})").to_arrow()
    assert sorted(picked["asset_id"].to_pylist()) == sorted(HOSTILE_TEXT[:3])


@pytest.mark.parametrize("written", ["as literals", "as one split literal", "as a bound list"])
def test_a_keyed_read_finds_exactly_its_keys(tmp_path, monkeypatch, written: str) -> None:
    """Short key lists are written into the query (no pandas for DuckDB to load), long lists of
    strings as one literal the query splits (by a character none of them holds: here a key holds
    the first one), and only what no separator can split is bound: either way every key reads
    back as itself, and none but the keys match."""
    import pyarrow as pa

    from asset_pipeline import sql_literals
    from asset_pipeline import tables as tables_module
    from asset_pipeline.tables import SCHEMAS, Tables

    if written != "as literals":
        monkeypatch.setattr(tables_module, "LITERAL_LIST_MAX", 0)
    if written == "as a bound list":  # every separator occurs in a key
        monkeypatch.setattr(sql_literals, "_SEPARATORS", "\x1f")
    tables = Tables(tmp_path / "tables")
    ids = [*HOSTILE_TEXT, "plain", "other", "nul\x00inside", "unit\x1fseparator", "unit"]
    rows = {f.name: pa.nulls(len(ids), f.type) for f in SCHEMAS["assets"]}
    tables.append("assets", pa.table({**rows, "id": ids, "name": [f"n{i}" for i in range(len(ids))]}))
    wanted = [*HOSTILE_TEXT, "plain", "absent", "unit\x1fseparator"]
    got = tables.read_keyed("assets", "id", wanted, columns=["id", "name"])
    assert sorted(got["id"].to_pylist()) == sorted([*HOSTILE_TEXT, "plain", "unit\x1fseparator"])
    # A NUL can be in no literal: such a list is bound whatever its length (a parse error before).
    with_nul = tables.read_keyed("assets", "id", ["nul\x00inside", "plain", "nul"], columns=["id"])
    assert sorted(with_nul["id"].to_pylist()) == ["nul\x00inside", "plain"]
    also = tables.read_keyed("assets", "id", wanted, where="name = ?", params=["n1"], columns=["id"])
    assert also["id"].to_pylist() == [ids[1]]
    assert tables.read_keyed("assets", "id", [], columns=["id"]).num_rows == 0


def test_a_long_keyed_read_loads_no_pandas(tmp_path) -> None:
    """A re-scan reads the version rows of every listed path (thousands); binding that list made
    DuckDB import pandas (0.2-0.3 s, ~40 MiB a run). Read in a fresh interpreter."""
    import subprocess
    import sys

    import pyarrow as pa

    from asset_pipeline.tables import LITERAL_LIST_MAX, SCHEMAS, Tables

    ids = [f"a_{i:06d}" for i in range(LITERAL_LIST_MAX * 2)]
    rows = {f.name: pa.nulls(len(ids), f.type) for f in SCHEMAS["assets"]}
    Tables(tmp_path / "tables").append("assets", pa.table({**rows, "id": ids}))
    script = f"""
import sys
from asset_pipeline.tables import Tables
ids = {ids[::2]!r}
got = Tables({str(tmp_path / "tables")!r}).read_keyed("assets", "id", ids + ["absent"], columns=["id"])
assert sorted(got["id"].to_pylist()) == ids, got.num_rows
print("pandas" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_asset_id_with_a_nul_is_not_found_like_any_other(ingested: Catalog) -> None:
    """An id is looked up by a keyed read; one holding a NUL (from a URL or a notebook) is simply
    not there — not a DuckDB parse error."""
    with pytest.raises(AssetNotFound, match="a_\\\\x00"):
        ingested.get("a_\x00")


def test_a_home_and_a_scratch_folder_whose_paths_hold_a_quote(tmp_path, monkeypatch) -> None:
    """File paths reach DuckDB as literals (the Delta files behind every view, the reports'
    Parquet files): a quote in a folder's name must not end them early."""
    import tempfile

    import duckdb

    from asset_pipeline import Settings
    from asset_pipeline.samples import make_samples
    from asset_pipeline.usage.reports import publish, reports_dir

    settings = Settings.from_env(home=tmp_path / "it's home", durable=False)
    make_samples(settings.inbox)
    cat = Catalog(settings=settings)
    cat.ingest()
    assert cat.sql("select count(*) n from assets").to_pylist() == [{"n": 13}]
    scratch = tmp_path / "o'scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    build = tmp_path / "build.duckdb"
    with duckdb.connect(str(build)) as con:
        con.execute("create table daily_usage as select 42 as events")
    assert publish(cat.home.root, build) == ["daily_usage"]
    assert (reports_dir(cat.home.root) / "daily_usage.parquet").path.is_file()
    assert cat.sql("select events from daily_usage").to_pylist() == [{"events": 42}]
