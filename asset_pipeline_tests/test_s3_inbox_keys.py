"""S3 inbox keys against a real S3 server (moto on 127.0.0.1): the key checked is the key read, a
bad key becomes an error row, and no key can stop the rest of the batch."""

import json
from pathlib import Path

from asset_pipeline import Catalog, Settings
from asset_pipeline.inbox import UNSAFE_KEY_PREFIX, list_s3
from asset_pipeline.samples import render_image

META = json.dumps({"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1"}).encode()


def _catalog(tmp_path: Path, bucket: str, s3_client) -> Catalog:
    settings = Settings.from_env(home=tmp_path / "home", inbox=f"s3://{bucket}/inbox", durable=False)
    return Catalog(settings=settings, s3_client=s3_client)


def _keys(s3_client, bucket: str) -> set[str]:
    return {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix="inbox").get("Contents", [])}


def test_a_dot_segment_key_is_refused_and_the_batch_goes_on(s3_client, bucket, tmp_path: Path) -> None:
    """`inbox/./dot.png` used to be fetched as `inbox/dot.png` (404), failing every ingest."""
    dot, good = render_image(1, (16, 16)), render_image(2, (16, 16))
    s3_client.put_object(Bucket=bucket, Key="inbox/./dot.png", Body=dot)
    s3_client.put_object(Bucket=bucket, Key="inbox/./dot.png.meta.json", Body=META)
    s3_client.put_object(Bucket=bucket, Key="inbox/good.png", Body=good)
    s3_client.put_object(Bucket=bucket, Key="inbox/good.png.meta.json", Body=META)
    assert any(rel.startswith(UNSAFE_KEY_PREFIX) for rel in list_s3(s3_client, bucket, "inbox"))  # the sensor sees it
    cat = _catalog(tmp_path, bucket, s3_client)
    summary = cat.ingest()
    assert (summary.new_versions, summary.rejected) == (1, 2)
    assert cat.sql("select name from assets").to_pylist() == [{"name": "good"}]
    rows = {r["reason"].split("'")[1]: r for r in cat.sql("select * from ingest_errors").to_pylist()}
    assert set(rows) == {"inbox/./dot.png", "inbox/./dot.png.meta.json"}
    for row in rows.values():
        assert row["field"] == "key" and "has a '.' segment" in row["reason"] and "\n" not in row["reason"]
    assert Path(rows["inbox/./dot.png"]["quarantine_path"]).read_bytes() == dot  # nothing lost
    assert Path(rows["inbox/./dot.png.meta.json"]["quarantine_path"]).read_bytes() == META
    assert _keys(s3_client, bucket) == {"inbox/good.png", "inbox/good.png.meta.json"}
    assert cat.ingest().rejected == 0  # and the next run is clean


def test_unsafe_keys_become_error_rows_not_silence(s3_client, bucket, tmp_path: Path) -> None:
    bad = {"inbox/../escape.png": "'..' segment", "inbox/a//b.png": "empty segment",
           "inbox/back\\slash.png": "backslash", "inbox/" + "n" * 300 + ".png": "longer than 255 bytes"}
    for key in bad:
        s3_client.put_object(Bucket=bucket, Key=key, Body=render_image(3, (8, 8)))
    cat = _catalog(tmp_path, bucket, s3_client)
    summary = cat.ingest()
    assert summary.rejected == len(bad)
    reasons = [r["reason"] for r in cat.sql("select reason from ingest_errors").to_pylist()]
    for key, words in bad.items():
        assert any(repr(key) in r and words in r for r in reasons), key
    home = cat.home.settings.home
    assert not (home.parent / "escape.png").exists() and not list(tmp_path.rglob("escape.png"))
    assert _keys(s3_client, bucket) == set()  # each went to the local quarantine, none is lost
    assert len([p for p in cat.home.settings.quarantine_dir.path.rglob("*") if p.is_file()]) == len(bad)


def test_a_key_with_no_possible_local_copy_stays_in_s3_with_an_error_row(s3_client, bucket, tmp_path: Path) -> None:
    """`x.png` and `x.png/y.png` can both exist in S3, not as files: the second is reported and left
    where it is, the first is ingested."""
    s3_client.put_object(Bucket=bucket, Key="inbox/x.png", Body=render_image(4, (8, 8)))
    s3_client.put_object(Bucket=bucket, Key="inbox/x.png.meta.json", Body=META)
    s3_client.put_object(Bucket=bucket, Key="inbox/x.png/y.png", Body=render_image(5, (8, 8)))
    s3_client.put_object(Bucket=bucket, Key="inbox/x.png/y.png.meta.json", Body=META)
    cat = _catalog(tmp_path, bucket, s3_client)
    summary = cat.ingest()
    assert (summary.new_versions, summary.rejected) == (1, 1)
    row = cat.sql("select * from ingest_errors").to_pylist()[0]
    assert row["source_path"] == "x.png/y.png" and row["field"] == "key"
    assert "could not be read" in row["reason"] and "left in the S3 inbox" in row["reason"]
    assert row["quarantine_path"] is None
    assert {"inbox/x.png/y.png", "inbox/x.png/y.png.meta.json"} <= _keys(s3_client, bucket)  # not lost
