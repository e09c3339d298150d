"""Collections and sharing: every permission edge, enforced, and a denied call changes nothing."""

import dagster as dg
import pytest
from deltalake import DeltaTable

from asset_pipeline import AssetNotFound, Catalog, CollectionNotFound, PermissionDenied
from asset_pipeline.definitions import build_definitions
from asset_pipeline.errors import AssetUnavailable
from asset_pipeline.identity import asset_id_for

from .conftest import materialization_metadata

SUNSET = asset_id_for("research", "images/sunset")
FOREST = asset_id_for("research", "images/forest")
ICON = asset_id_for("research", "images/icon")
ODD_OWNER = "O'Brien; DROP TABLE assets; --"
ODD_USER = "Zoë 🎨 \"quoted\" user"


@pytest.fixture
def shared(ingested: Catalog) -> tuple[Catalog, str]:
    cid = ingested.create_collection("Launch «banners» & 'hero' shots", ODD_OWNER, "for the launch")
    ingested.add_to_collection(cid, SUNSET, ODD_OWNER)
    ingested.add_to_collection(cid, FOREST, ODD_OWNER)
    ingested.share(cid, "viewer", "view", by=ODD_OWNER)
    ingested.share(cid, "editor", "edit", by=ODD_OWNER)
    ingested.share(cid, ODD_USER, "admin", by=ODD_OWNER)
    return ingested, cid


def _versions(cat: Catalog) -> dict[str, int]:
    return {t: DeltaTable(cat.tables.uri(t)).version()
            for t in ("collections", "collection_assets", "collection_shares")}


def _ids(assets: list[dict]) -> set[str]:
    return {a["id"] for a in assets}


def test_owner_is_admin_and_names_with_odd_characters_are_data(shared) -> None:
    cat, cid = shared
    assert _ids(cat.collection_assets(cid, ODD_OWNER)) == {SUNSET, FOREST}
    mine = cat.collections_for(ODD_OWNER)
    assert [(c["id"], c["name"], c["permission"]) for c in mine] == [
        (cid, "Launch «banners» & 'hero' shots", "admin")]
    assert cat.sql("select count(*) n from assets").to_pylist() == [{"n": 13}]  # nothing was dropped


def test_view_can_list_and_get_but_not_change(shared) -> None:
    cat, cid = shared
    before = _versions(cat)
    assert _ids(cat.collection_assets(cid, "viewer")) == {SUNSET, FOREST}
    assert cat.get(SUNSET, user_id="viewer", collection_id=cid).read()
    for call in (lambda: cat.add_to_collection(cid, ICON, "viewer"),
                 lambda: cat.remove_from_collection(cid, SUNSET, "viewer"),
                 lambda: cat.share(cid, "mallory", "view", by="viewer"),
                 lambda: cat.unshare(cid, "editor", by="viewer"),
                 lambda: cat.delete_collection(cid, "viewer")):
        with pytest.raises(PermissionDenied, match="'viewer'.*has view"):
            call()
    assert _versions(cat) == before  # a denied action changes nothing


def test_edit_can_add_and_remove_but_not_share_or_delete(shared) -> None:
    cat, cid = shared
    assert cat.add_to_collection(cid, ICON, "editor") is True
    assert cat.add_to_collection(cid, ICON, "editor") is False  # already there
    assert cat.remove_from_collection(cid, SUNSET, "editor") is True
    assert cat.remove_from_collection(cid, SUNSET, "editor") is False
    assert _ids(cat.collection_assets(cid, "viewer")) == {FOREST, ICON}
    before = _versions(cat)
    with pytest.raises(PermissionDenied, match="needs admin, has edit"):
        cat.share(cid, "mallory", "view", by="editor")
    with pytest.raises(PermissionDenied):
        cat.delete_collection(cid, "editor")
    assert _versions(cat) == before


def test_admin_share_can_share_unshare_and_delete(shared) -> None:
    cat, cid = shared
    cat.share(cid, "newcomer", "edit", by=ODD_USER)
    assert [c["permission"] for c in cat.collections_for("newcomer")] == ["edit"]
    cat.share(cid, "newcomer", "view", by=ODD_USER)  # changing a share replaces it
    assert [c["permission"] for c in cat.collections_for("newcomer")] == ["view"]
    assert cat.unshare(cid, "newcomer", by=ODD_USER) is True
    cat.delete_collection(cid, ODD_USER)
    with pytest.raises(CollectionNotFound, match=cid):
        cat.collection_assets(cid, ODD_OWNER)
    assert cat.collections_for("viewer") == []
    assert cat.sql("select count(*) n from collection_shares").to_pylist() == [{"n": 0}]


def test_no_share_and_revoked_share_are_denied(shared) -> None:
    cat, cid = shared
    with pytest.raises(PermissionDenied, match="'stranger' cannot list .* has no access"):
        cat.collection_assets(cid, "stranger")
    with pytest.raises(PermissionDenied):
        cat.get(SUNSET, user_id="stranger", collection_id=cid)
    assert cat.collections_for("stranger") == []
    cat.unshare(cid, "viewer", by=ODD_OWNER)
    with pytest.raises(PermissionDenied, match="has no access"):
        cat.collection_assets(cid, "viewer")
    assert cat.collections_for("viewer") == []


def test_deleted_asset_in_a_collection_is_left_out_and_cannot_be_added(shared) -> None:
    cat, cid = shared
    DeltaTable(cat.tables.uri("assets")).update({"status": "'deleted'"}, predicate=f"id = '{FOREST}'")
    assert _ids(cat.collection_assets(cid, "viewer")) == {SUNSET}
    DeltaTable(cat.tables.uri("assets")).update({"status": "'deleted'"}, predicate=f"id = '{ICON}'")
    with pytest.raises(AssetUnavailable, match="deleted"):
        cat.add_to_collection(cid, ICON, "editor")


def test_ids_that_do_not_exist(shared) -> None:
    cat, cid = shared
    with pytest.raises(CollectionNotFound, match="no collection with id 'c_nope'"):
        cat.collection_assets("c_nope", ODD_OWNER)
    with pytest.raises(CollectionNotFound):
        cat.share("c_nope", "x", "view", by=ODD_OWNER)
    with pytest.raises(AssetNotFound, match="no asset with id 'a_nope'"):
        cat.add_to_collection(cid, "a_nope", "editor")
    with pytest.raises(PermissionDenied, match="not in collection"):
        cat.get(ICON, user_id="viewer", collection_id=cid)
    with pytest.raises(ValueError, match="permission must be one of"):
        cat.share(cid, "x", "owner", by=ODD_OWNER)
    assert issubclass(PermissionDenied, PermissionError)


def test_usage_through_a_collection_records_user_and_collection(shared) -> None:
    cat, cid = shared
    cat.get(SUNSET, user_id=ODD_USER, collection_id=cid).read()
    rows = cat.sql("select user_id, collection_id, action from usage_events").to_pylist()
    assert rows == [{"user_id": ODD_USER, "collection_id": cid, "action": "download"}]


def test_search_is_filtered_to_what_the_user_may_see(shared, monkeypatch) -> None:
    from asset_pipeline.embeddings.job import embed_pending
    from asset_pipeline.embeddings.model import TINY_TEST, load_model, parse_model
    from asset_pipeline.embeddings.vectors import VectorStore

    cat, cid = shared
    monkeypatch.setenv("ASSET_PIPELINE_CLIP_MODEL", TINY_TEST)
    embed_pending(cat.tables, cat.home.store, VectorStore(cat.home.settings.lancedb_dir),
                  load_model(parse_model(TINY_TEST)), num_workers=0)
    assert {h["asset_id"] for h in cat.search(text="anything", k=50, user="viewer")} == {SUNSET, FOREST}
    assert cat.search(text="anything", user="stranger") == []
    alices = {h["asset_id"] for h in cat.search(text="anything", k=50, user="alice")}  # her own work
    assert len(alices) == 9 and asset_id_for("marketing", "marketing/sunset") not in alices
    assert len({h["asset_id"] for h in cat.search(text="anything", k=50)}) > 2  # no user: no filter


def test_collection_stats_asset(shared, settings) -> None:
    cat, cid = shared
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        # the definitions' own asset, with the resources it is bound to
        result = dg.materialize([defs.resolve_assets_def("collection_stats")], instance=instance)
        assert result.success
        meta = materialization_metadata(result)["collection_stats"]
    assert meta["collections"] == 1
    stats = cat.sql("select live_assets, bytes, shares from collection_stats").to_pylist()
    sizes = cat.sql(f"select sum(size_bytes) b from assets where id in ('{SUNSET}', '{FOREST}')").to_pylist()
    assert stats == [{"live_assets": 2, "bytes": sizes[0]["b"], "shares": 3}]
