"""A home on S3 (moto's server on 127.0.0.1): every table, blob, index, quarantined input, usage
log, retention config and report lives under the prefix; nothing lands on the local disk but
per-run scratch. Plus the safety nets that only S3 needs: the conditional-PUT probe, leases,
conditional blob writes, aborted multipart uploads."""

from __future__ import annotations

import http.client
import http.server
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest
import yaml

from asset_pipeline import Catalog, Settings, integrity
from asset_pipeline.definitions import build_definitions
from asset_pipeline.identity import asset_id_for
from asset_pipeline.location import Location, LocationError
from asset_pipeline.locks import LockTimeout, UnsafeStore, s3_lease
from asset_pipeline.samples import make_samples
from asset_pipeline.store import S3ObjectStore

from .conftest import materialization_metadata
from .test_concurrency import barrier_env, expected, finish, python, write_inbox

SUNSET = asset_id_for("research", "images/sunset")


def _keys(s3_client, bucket: str, prefix: str) -> list[str]:
    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture
def s3_home(s3_env, bucket, tmp_path: Path) -> Settings:
    return Settings.from_env(home=f"s3://{bucket}/team/home", inbox=str(tmp_path / "inbox"))


@pytest.mark.parametrize("uri, message", [
    ("gs://bucket/home", "scheme 'gs' is not supported.*S3-interoperable endpoint"),
    ("ftp://host/home", "scheme 'ftp' is not supported"),
    ("s3:/bucket/home", "looks like a URI without '//'"),
    ("s3://", "not a valid S3 bucket name"),
    ("s3://Bad_Bucket/home", "not a valid S3 bucket name"),
    ("s3://bucket/../etc", "plain folder names"),
])
def test_a_home_uri_that_names_no_usable_place_is_a_clear_error(uri: str, message: str, tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LocationError, match=message):
        Settings.from_env(home=uri)
    assert not list(tmp_path.iterdir())  # never a local folder with a strange name


def test_everything_lives_under_the_s3_prefix(s3_home: Settings, s3_client, bucket, tmp_path: Path,
                                              monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    counts = make_samples(s3_home.inbox)
    cat = Catalog(settings=s3_home)
    summary = cat.ingest()
    assert (summary.new_versions, summary.rejected) == (counts["versions"], counts["rejected"])
    keys = _keys(s3_client, bucket, "team/home/")
    for part in ("tables/assets/_delta_log/", "tables/asset_versions/", "tables/ingest_errors/", "objects/",
                 "quarantine/"):
        assert any(k.startswith(f"team/home/{part}") for k in keys), part
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inbox"]  # no tables, spool or s3: folder here
    # reading back: SQL over the Delta tables on S3, content, versions
    assert cat.sql("select count(*) n from assets").to_pylist() == [{"n": counts["assets"]}]
    assert cat.get(SUNSET).read()[:8] == b"\x89PNG\r\n\x1a\n"
    assert integrity.missing_blobs(cat.tables, cat.home.store).passed
    # retention config and usage logs are read from the home too
    (s3_home.home / "retention.yaml").write_text(yaml.safe_dump({"grace_period_days": 3}))
    again = Catalog(settings=s3_home)
    assert cat.lifecycle() is not None and again.lifecycle_service.retention().grace_period_days == 3
    (s3_home.usage_inbox / "app.jsonl").write_text(json.dumps(
        {"asset_id": SUNSET, "action": "view", "user_id": "ann", "at": "2026-11-20T10:00:00Z"}) + "\n")
    from asset_pipeline.usage.intake import ingest_usage_files

    assert ingest_usage_files(cat.tables, s3_home.usage_inbox).events == 1
    assert [k for k in _keys(s3_client, bucket, "team/home/usage_inbox/") if "/.done/" in k]


def test_the_daily_jobs_run_on_an_s3_home_through_dagster(s3_home: Settings, s3_client, bucket,
                                                          monkeypatch) -> None:
    """Ingest → embed (LanceDB on S3) → usage report (dbt on a local copy, published to S3) →
    retention sweep (lease on S3), all through Dagster."""
    monkeypatch.setenv("ASSET_PIPELINE_CLIP_MODEL", "tiny-test")
    counts = make_samples(s3_home.inbox)
    cat = Catalog(settings=s3_home)
    defs = build_definitions(s3_home)
    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("ingest_job").execute_in_process(instance=instance).success
        embedded = defs.resolve_job_def("embed_job").execute_in_process(instance=instance)
        assert embedded.success
        assert materialization_metadata(embedded)["clip_embeddings"]["rows_embedded"] == 11
        cat.record_usage(SUNSET, "download", "ann", at="2026-11-20T10:00:00Z")
        cat.flush()
        usage = defs.resolve_job_def("usage_job").execute_in_process(instance=instance, partition_key="2026-11-20")
        assert usage.success
        assert all(c.passed for c in usage.get_asset_check_evaluations())
        (s3_home.home / "retention.yaml").write_text(yaml.safe_dump({
            "blob_grace_hours": 0, "preview_new_policies": False, "policies": [  # acts at once (issue 10)
                {"name": "audio", "action": "archive", "select": {"type": "audio"}}]}))
        swept = defs.resolve_job_def("lifecycle_job").execute_in_process(instance=instance,
                                                                         partition_key="2026-11-20")
        assert swept.success and materialization_metadata(swept)["lifecycle_actions"]["archived"] == 1
    keys = _keys(s3_client, bucket, "team/home/")
    assert any(k.startswith("team/home/lancedb/") for k in keys)
    assert "team/home/analytics.duckdb" in keys and "team/home/analytics/build.duckdb" in keys
    assert any(k.startswith("team/home/analytics/reports/daily_usage") for k in keys)
    assert any(k.startswith("team/home/archive/objects/") for k in keys)
    assert not any(k.startswith("team/home/locks/") for k in keys)  # leases released
    hits = Catalog(settings=s3_home).search(text="a sunset", k=3)
    assert hits and hits[0]["model"].startswith("tiny-test")
    assert Catalog(settings=s3_home).sql("select sum(events) n from daily_usage").to_pylist() == [{"n": 1}]
    assert cat.sql("select count(*) n from assets").to_pylist() == [{"n": counts["assets"]}]


def test_an_ingest_of_an_empty_inbox_on_s3_loads_only_what_its_step_uses(s3_home: Settings, tmp_path: Path) -> None:
    """As on a local home (test_cli): no step library and no pandas, though every DuckDB
    connection to an S3 home loads httpfs first."""
    from .conftest import cli_in_new_interpreter

    make_samples(Path(s3_home.inbox))
    Catalog(settings=s3_home).ingest()
    (tmp_path / "empty").mkdir()
    (tmp_path / "dh").mkdir()
    env = {"ASSET_PIPELINE_HOME": s3_home.home.uri, "DAGSTER_HOME": str(tmp_path / "dh")}
    output, loaded = cli_in_new_interpreter(["ingest", str(tmp_path / "empty")], env)
    assert "status 0" in output and "ingested 0 versions" in output and "blobs_exist passed" in output, output
    assert loaded == [], output


def test_two_ingests_into_an_s3_home_released_together(s3_home: Settings, s3_env, bucket, tmp_path: Path) -> None:
    for r in (1, 2):
        write_inbox(tmp_path / f"in-{r}", r)
    code = ("from asset_pipeline import Catalog, Settings\n"
            f"Catalog(settings=Settings.from_env(home={s3_home.home.uri!r}, inbox={{inbox!r}})).ingest()\n")
    env = barrier_env(tmp_path / "barrier", "before-commit", parties=2)
    procs = [python(code.format(inbox=str(tmp_path / f"in-{r}")), env) for r in (1, 2)]
    for p in procs:
        rc, _, err = finish(p)
        assert rc == 0, err
    cat = Catalog(settings=s3_home)
    total = expected(2)
    assert cat.sql("select count(*) n from asset_versions").to_pylist() == [{"n": total["versions"]}]
    assert cat.sql("select count(*) n from assets").to_pylist() == [{"n": total["assets"]}]
    assert integrity.duplicate_ids(cat.tables).passed and integrity.missing_blobs(cat.tables, cat.home.store).passed


def test_a_usage_log_replaced_on_s3_after_it_was_read_stays_to_be_read(s3_home: Settings, s3_client, bucket,
                                                                        tmp_path: Path) -> None:
    """An intake read app.jsonl and committed its rows; the application then writes a new
    app.jsonl (another object under the same key) before the intake retires the file. The delete
    is conditional on the ETag read, so the new object stays in the inbox and the next intake
    counts its rows (before, the copy-then-delete removed it unread)."""
    from asset_pipeline.failpoints import arrivals
    from asset_pipeline.usage.intake import ingest_usage_files

    from .test_concurrency import wait_for

    make_samples(tmp_path / "inbox")
    cat = Catalog(settings=s3_home)
    cat.ingest()
    log = s3_home.usage_inbox / "app.jsonl"

    def views(user: str, n: int) -> str:
        return "".join(json.dumps({"asset_id": SUNSET, "action": "view", "user_id": f"{user}{i}",
                                   "at": "2026-11-20T10:00:00Z"}) + "\n" for i in range(n))

    log.write_text(views("mon", 3))
    barrier = tmp_path / "barrier"
    intake = python("from asset_pipeline import Catalog, Settings\n"
                    "from asset_pipeline.usage.intake import ingest_usage_files\n"
                    f"c = Catalog(settings=Settings.from_env(home={s3_home.home.uri!r}))\n"
                    "print(ingest_usage_files(c.tables, c.home.settings.usage_inbox).events)\n",
                    barrier_env(barrier, "usage-before-done"))
    wait_for(lambda: arrivals(barrier, "usage-before-done") == 1, what="the intake to commit its rows",
             alive=(intake,))
    log.write_text(views("tue", 4))
    (barrier / "usage-before-done.go").touch()
    rc, out, err = finish(intake)
    assert rc == 0 and out.strip() == "3", err
    assert "team/home/usage_inbox/app.jsonl" in _keys(s3_client, bucket, "team/home/usage_inbox/")
    assert ingest_usage_files(cat.tables, s3_home.usage_inbox).events == 4
    assert cat.sql("select count(*) n from usage_events").to_pylist() == [{"n": 7}]
    assert [k for k in _keys(s3_client, bucket, "team/home/usage_inbox/") if "/.done/" not in k] == []


# --- an endpoint that ignores conditional writes ---------------------------------------------------

class _HeaderDroppingProxy(http.server.BaseHTTPRequestHandler):
    """Forwards every request to the real endpoint without its If-None-Match header — what a
    misconfigured proxy or a store without conditional writes amounts to."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("if-none-match", "host")}
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        conn.request(self.command, self.path, body=body or None, headers=headers)
        reply = conn.getresponse()
        data = reply.read()
        self.send_response(reply.status)
        for k, v in reply.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def dropping_endpoint(s3_server: str) -> Iterator[str]:
    target = urlparse(s3_server)
    handler = type("Proxy", (_HeaderDroppingProxy,), {"upstream": (target.hostname, target.port)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_an_endpoint_that_ignores_conditional_puts_is_refused(s3_env, bucket, dropping_endpoint, monkeypatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", dropping_endpoint)
    with pytest.raises(UnsafeStore, match="accepted a second PUT with If-None-Match"):
        Catalog(settings=Settings.from_env(home=f"s3://{bucket}/home"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_env)  # the real endpoint passes, once per home
    Catalog(settings=Settings.from_env(home=f"s3://{bucket}/home"))
    marker = [k for k in _keys(__import__("boto3").client("s3", endpoint_url=s3_env, region_name="us-east-1"),
                                bucket, "home/.asset-pipeline/")]
    assert len(marker) == 1 and "conditional-put-ok" in marker[0]


# --- leases, conditional blob writes, multipart uploads ----------------------------------------------

def test_a_lease_excludes_a_second_holder_and_expires_when_its_holder_dies(s3_client, bucket) -> None:
    with s3_lease(s3_client, bucket, "home/locks/x.lease", ttl_s=30):
        with pytest.raises(LockTimeout, match="held by another process"):
            with s3_lease(s3_client, bucket, "home/locks/x.lease", ttl_s=30, timeout_s=0.5):
                pass
    # a holder that died: its lease object stays until it expires, then the next taker removes it
    s3_client.put_object(Bucket=bucket, Key="home/locks/y.lease",
                         Body=json.dumps({"owner": "dead", "expires": time.time() - 1}).encode())
    with s3_lease(s3_client, bucket, "home/locks/y.lease", ttl_s=30, timeout_s=5):
        held = json.loads(s3_client.get_object(Bucket=bucket, Key="home/locks/y.lease")["Body"].read())
        assert held["owner"] != "dead"
    assert not _keys(s3_client, bucket, "home/locks/")


def test_racing_blob_writers_on_s3_count_one_write(s3_client, bucket, tmp_path: Path) -> None:
    data = os.urandom(1 << 16)
    path = tmp_path / "blob"
    path.write_bytes(data)
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    stores = [S3ObjectStore(s3_client, bucket, "home") for _ in range(4)]
    results: list[bool] = []
    start = threading.Barrier(4)

    def put(store: S3ObjectStore) -> None:
        start.wait()
        results.append(store.put_file(path, sha))

    threads = [threading.Thread(target=put, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    with pytest.raises(Exception, match="PreconditionFailed"):  # a blob is never overwritten
        s3_client.put_object(Bucket=bucket, Key=stores[0].key(sha), Body=b"other bytes")


def test_upkeep_aborts_multipart_uploads_a_killed_writer_left(s3_client, bucket) -> None:
    store = S3ObjectStore(s3_client, bucket, "home")
    key = store.key("ab" * 32)
    upload = s3_client.create_multipart_upload(Bucket=bucket, Key=key)
    s3_client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024)
    # (moto reports every upload as initiated in 2010, so the age cut-off cannot be shown here)
    assert store.abort_stale_uploads(timedelta(0)) == 1
    assert not s3_client.list_multipart_uploads(Bucket=bucket, Prefix="home/").get("Uploads")


def test_location_file_operations_on_s3(s3_env, bucket) -> None:
    from asset_pipeline.location import S3Access

    where = Location.parse(f"s3://{bucket}/a/b", S3Access(s3_env, "us-east-1"))
    (where / "x.txt").write_text("one")
    (where / ".hidden").write_text("no")
    assert [e.name for e in where.list()] == ["x.txt"]
    (where / "x.txt").move_to(where / "done" / "x.txt")
    assert not (where / "x.txt").is_file() and (where / "done" / "x.txt").read_text() == "one"
    with pytest.raises(FileNotFoundError):
        (where / "nothing").read_bytes()
    assert io.BytesIO((where / "done" / "x.txt").read_bytes()).read() == b"one"
