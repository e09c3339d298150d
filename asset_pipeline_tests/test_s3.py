"""The S3 backend and the S3 inbox against a real S3-compatible server (moto) on 127.0.0.1."""

import hashlib
import io
import json
import tempfile
import urllib.request
from pathlib import Path

import pytest

from asset_pipeline import Catalog, Settings
from asset_pipeline.samples import make_samples
from asset_pipeline.store import S3ObjectStore, key_for


def test_put_get_exists_size_delete(s3_client, bucket, tmp_path: Path) -> None:
    store = S3ObjectStore(s3_client, bucket, "team/store")
    src = tmp_path / "f.bin"
    src.write_bytes(b"payload" * 1000)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert store.put_file(src, sha) is True
    assert store.put_file(src, sha) is False  # dedup: existing key skipped
    head = s3_client.head_object(Bucket=bucket, Key=f"team/store/{key_for(sha)}")
    assert head["ContentLength"] == 7000
    assert store.exists(sha) and store.size(sha) == 7000
    assert store.read_bytes(sha) == src.read_bytes()
    assert list(store.iter_hashes()) == [sha]
    assert store.delete(sha) and not store.exists(sha)
    with pytest.raises(FileNotFoundError):
        store.open(sha)


def test_large_files_use_multipart_and_stream_back(s3_client, bucket, tmp_path: Path) -> None:
    store = S3ObjectStore(s3_client, bucket, "", multipart_threshold_bytes=5 * 1024 * 1024)
    src = tmp_path / "model.safetensors"
    with open(src, "wb") as f:
        for i in range(24):
            f.write(bytes([i]) * (1024 * 1024))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert store.put_file(src, sha)
    etag = s3_client.head_object(Bucket=bucket, Key=key_for(sha))["ETag"]
    assert "-" in etag  # a multipart upload's ETag carries its part count
    digest = hashlib.sha256()
    with store.open(sha) as body:
        while chunk := body.read(1024 * 1024):
            digest.update(chunk)
    assert digest.hexdigest() == sha


def test_put_stream_and_presigned_url(s3_client, bucket) -> None:
    store = S3ObjectStore(s3_client, bucket, "p", presign_expiry_s=120)
    sha, size, written = store.put_stream(io.BytesIO(b"abc" * 10))
    assert written and size == 30
    url = store.url(sha)
    assert "Expires=" in url or "X-Amz-Expires=120" in url
    with urllib.request.urlopen(url, timeout=10) as resp:  # loopback only
        assert resp.read() == b"abc" * 10


def test_ingest_from_an_s3_inbox_into_an_s3_store(s3_client, bucket, tmp_path: Path) -> None:
    local = tmp_path / "samples"
    counts = make_samples(local)
    for path in local.rglob("*"):
        if path.is_file():
            s3_client.upload_file(str(path), bucket, f"inbox/{path.relative_to(local).as_posix()}")
    settings = Settings.from_env(home=tmp_path / "home", inbox=f"s3://{bucket}/inbox", store=f"s3://{bucket}/cas",
                                 durable=False)
    cat = Catalog(settings=settings, s3_client=s3_client)
    summary = cat.ingest()
    assert (summary.new_versions, summary.rejected, summary.deduplicated) == \
        (counts["versions"], counts["rejected"], counts["deduplicated"])
    assert len(list(cat.home.store.iter_hashes())) == counts["blobs"]
    # rejected inputs moved to the local quarantine and out of the S3 inbox; the spool is gone
    left = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix="inbox/")["Contents"]}
    assert "inbox/bad/empty.png" not in left and "inbox/images/sunset.png" in left
    assert len(list(settings.quarantine_dir.path.rglob("*.png"))) == 3
    assert not list(Path(tempfile.gettempdir()).glob("asset-pipeline-spool-*"))  # per-run scratch is gone
    sunset = cat.sql("select id from assets where name = 'images/sunset'").column(0)[0].as_py()
    assert cat.get(sunset).read() == (local / "images/sunset.png").read_bytes()
    with urllib.request.urlopen(cat.url(sunset), timeout=10) as resp:
        assert resp.read() == (local / "images/sunset.png").read_bytes()
    # a second run over the same S3 inbox writes nothing new
    again = cat.ingest()
    assert again.new_versions == 0 and again.bytes_stored == 0


def test_s3_keys_that_could_escape_are_refused_never_used_as_paths(s3_client, bucket, tmp_path: Path) -> None:
    s3_client.put_object(Bucket=bucket, Key="inbox/../../evil.png", Body=b"x")
    s3_client.put_object(Bucket=bucket, Key="inbox/../../evil.png.meta.json", Body=json.dumps({}).encode())
    settings = Settings.from_env(home=tmp_path / "home", inbox=f"s3://{bucket}/inbox", durable=False)
    summary = Catalog(settings=settings, s3_client=s3_client).ingest()
    assert (summary.inputs, summary.rejected) == (2, 2)  # error rows (test_s3_inbox_keys.py), not silence
    assert not (tmp_path / "evil.png").exists() and not list(tmp_path.rglob("evil.png"))


def test_sensor_watches_an_s3_prefix(s3_client, s3_env, bucket, tmp_path: Path) -> None:
    import dagster as dg

    from asset_pipeline.definitions import build_definitions

    settings = Settings.from_env(home=tmp_path / "home", inbox=f"s3://{bucket}/drop", durable=False)
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("inbox_sensor")

    def tick(cursor):
        with dg.instance_for_test() as instance, dg.build_sensor_context(
                instance=instance, cursor=cursor, resources={"pipeline": defs.resources["pipeline"]}) as ctx:
            return sensor(ctx)

    assert tick(None).run_requests == []
    s3_client.put_object(Bucket=bucket, Key="drop/a.png", Body=b"x")
    s3_client.put_object(Bucket=bucket, Key="drop/a.png.meta.json", Body=b"{}")
    first = tick(None)
    assert [r.run_config["ops"]["ingest"]["config"]["paths"] for r in first.run_requests] == [["a.png"]]
    assert tick(first.cursor).run_requests == []
