"""The README says what is refused and why, and exactly what permissions protect — and the
behaviour it describes is the behaviour there is."""

from pathlib import Path

import pytest

from asset_pipeline import Catalog, PermissionDenied
from asset_pipeline.identity import asset_id_for

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
SUNSET = asset_id_for("research", "images/sunset")


def _section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n#", start + len(title))
    return README[start:end if end > 0 else None]


def test_permissions_protect_collections_not_the_catalog_and_the_docs_say_so(ingested: Catalog) -> None:
    assert ingested.get(SUNSET, user_id="mallory").read()  # no collection: anyone gets the bytes
    assert ingested.sql("select count(*) n from assets").to_pylist() == [{"n": 13}]  # raw SQL sees everything
    cid = ingested.create_collection("private", owner="alice")
    ingested.add_to_collection(cid, SUNSET, user="alice")
    with pytest.raises(PermissionDenied):
        ingested.get(SUNSET, user_id="mallory", collection_id=cid)
    text = " ".join(README.split())
    section = " ".join(_section("**What permissions protect, and what they do not.**").split())
    assert section in text
    for words in ('cat.get(asset_id, user_id="mallory")` without `collection_id` returns the content to anyone',
                  "`cat.sql(...)`", "read every table, every row", "nothing authenticates them",
                  "They are not access control for the catalog"):
        assert words in section, words


@pytest.mark.parametrize("words", [
    "symbolic link", "O_NOFOLLOW", "ASSET_PIPELINE_MAX_IMAGE_PIXELS", "13000×13000", "decompression bomb",
    "ASSET_PIPELINE_ALLOW_TRAILING_BYTES", "demuxed", "safetensors library", "`.npy`", "repeated keys",
    "32 levels", "a newline in a file name", "bidirectional", "NFC", "S3 keys", "never normalised",
    "One bad key never stops the batch", "--force", "symbolic link", "record_usage",
])
def test_the_guarantees_list_what_is_refused_and_why(words: str) -> None:
    assert words in " ".join(_section("### Guarantees").split())


@pytest.mark.parametrize("words", ["allow_short_grace_period", "max_delete_share", "allow_mass_delete",
                                   "preview_new_policies", "Decision:", "hard-deleted"])
def test_the_retention_guard_rails_are_documented(words: str) -> None:
    assert words in " ".join(_section("### Lifecycle").split())
