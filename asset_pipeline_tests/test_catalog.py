import io

import pytest

from asset_pipeline import AssetNotFound, Catalog, InputRejected
from asset_pipeline.identity import asset_id_for
from asset_pipeline.samples import render_image


def test_get_returns_content_and_metadata(ingested: Catalog, settings) -> None:
    sunset = asset_id_for("research", "images/sunset")
    content = ingested.get(sunset)
    original = (settings.home / "inbox" / "images/sunset.png").read_bytes()
    assert content.read() == original
    assert b"".join(content.iter_chunks(1000)) == original
    assert content.metadata["width"] == 512 and content.metadata["prompt"].startswith("a sunset")
    assert content.metadata["project"] == "research" and content.version == 1


def test_get_by_version(ingested: Catalog) -> None:
    hero = asset_id_for("research", "images/hero")
    v1, v2 = ingested.get(hero, version=1), ingested.get(hero)
    assert v2.version == 2 and v1.read() != v2.read()
    assert v1.metadata["prompt"] == "hero banner with a red rocket"


def test_unknown_ids_and_versions_say_what_is_missing(ingested: Catalog) -> None:
    with pytest.raises(AssetNotFound, match="no asset with id 'nope'"):
        ingested.get("nope")
    hero = asset_id_for("research", "images/hero")
    with pytest.raises(AssetNotFound, match="has no version 9"):
        ingested.get(hero, version=9)


def test_create_version_and_revert(ingested: Catalog) -> None:
    icon = asset_id_for("research", "images/icon")
    new = render_image(77, (64, 64))
    row = ingested.create_version(icon, io.BytesIO(new), "recoloured", created_by="carol", prompt="a blue plane")
    assert (row["version"], row["created_by"], row["prompt"]) == (2, "carol", "a blue plane")
    assert ingested.get(icon).read() == new
    again = ingested.create_version(icon, new, "same bytes again")
    assert again["version"] == 2  # identical content is not a new version
    reverted = ingested.revert(icon, 1)
    assert reverted["version"] == 3 and reverted["change_description"] == "revert to v1"
    assert ingested.get(icon).read() == ingested.get(icon, version=1).read()
    assert [v["version"] for v in ingested.list_versions(icon)] == [1, 2, 3]


def test_create_version_rejects_bad_content(ingested: Catalog, tmp_path) -> None:
    icon = asset_id_for("research", "images/icon")
    with pytest.raises(InputRejected, match="unknown format"):
        ingested.create_version(icon, b"\x00\x00 not media", "broken")
    assert len(ingested.list_versions(icon)) == 1


def test_sql_sees_every_table_as_a_view(ingested: Catalog) -> None:
    out = ingested.sql("""select a.project, count(distinct v.sha256) blobs, count(*) versions
                          from assets a join asset_versions v on v.asset_id = a.id group by 1 order by 1""")
    assert out.to_pylist() == [{"project": "marketing", "blobs": 1, "versions": 1},
                               {"project": "research", "blobs": 12, "versions": 13}]
    assert ingested.sql("select count(*) n from ingest_errors").to_pylist() == [{"n": 4}]
    assert ingested.sql("select count(*) n from assets where ? = any(tags)", ["landscape"]).to_pylist() == [{"n": 2}]


def test_empty_home_has_empty_views(catalog: Catalog) -> None:
    assert catalog.sql("select count(*) n from assets").to_pylist() == [{"n": 0}]


def test_every_public_error_is_importable_from_errors_and_the_package() -> None:
    import importlib
    import inspect
    import pkgutil

    import asset_pipeline
    from asset_pipeline import errors

    defined = {}
    for info in pkgutil.walk_packages(asset_pipeline.__path__, "asset_pipeline."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, errors.AssetPipelineError):
                defined[name] = cls
    assert len(defined) >= 15
    for name, cls in defined.items():
        assert getattr(errors, name, None) is cls, f"{name} is not in asset_pipeline.errors"
        assert getattr(asset_pipeline, name, None) is cls and name in asset_pipeline.__all__, name


def test_sql_results_show_as_a_dataframe(ingested: Catalog) -> None:
    result = ingested.sql("select project, count(*) n, max(width) w from assets group by all order by project")
    frame = result.to_pandas()
    assert list(frame.columns) == ["project", "n", "w"] and int(frame["n"].sum()) == 13
    page = result._repr_html_()  # what Jupyter renders
    assert page.startswith("<div>") and "<table" in page and "<td>research</td>" in page
    assert result.to_pylist()[0]["project"] == "marketing" and result.num_rows == 2
    assert result.column(1).to_pylist() == frame["n"].tolist()


def test_assets_are_found_by_project_and_name(ingested: Catalog) -> None:
    sunset = asset_id_for("research", "images/sunset")
    assert ingested.find("research", "images/sunset")["id"] == sunset
    assert ingested.get("research/images/sunset").read() == ingested.get(sunset).read()
    assert [v["version"] for v in ingested.list_versions("research/images/hero")] == [1, 2]
    with pytest.raises(AssetNotFound, match="no asset named 'images/nope' in project 'research'"):
        ingested.find("research", "images/nope")
    with pytest.raises(AssetNotFound, match="no asset with id or project/name 'research/images/nope'"):
        ingested.get("research/images/nope")


def test_an_implied_home_must_exist(tmp_path, monkeypatch) -> None:
    from asset_pipeline import HomeNotFound

    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(tmp_path / "typo"))
    with pytest.raises(HomeNotFound, match="asset-pipeline init"):
        Catalog()
    assert not (tmp_path / "typo").exists()
    Catalog(tmp_path / "typo")  # an explicit path is created
    assert (tmp_path / "typo" / "tables").is_dir() and Catalog().sql("select count(*) n from assets").num_rows == 1
