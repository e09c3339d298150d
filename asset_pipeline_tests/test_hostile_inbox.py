"""An inbox written by someone who means harm: links out of it, files swapped mid-ingest, sidecars
built to crash or confuse the parser, names that look alike. Nothing outside the inbox is read,
every refusal is an `ingest_errors` row naming the file, and one bad input never stops the batch."""

import hashlib
import json
import os
import time
import unicodedata
from pathlib import Path

import pytest

from asset_pipeline import Catalog, Settings
from asset_pipeline.examine import Examined, Rejection, examine, store_examined
from asset_pipeline.inbox import scan_local
from asset_pipeline.samples import render_image
from asset_pipeline.sidecar import SIDECAR_SUFFIX
from asset_pipeline.store import LocalObjectStore

META = {"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1"}
TABLES = ("assets", "asset_versions", "ingest_errors")


def _drop(inbox: Path, rel: str, data: bytes, **meta) -> Path:
    path = inbox / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    (inbox / (rel + SIDECAR_SUFFIX)).write_text(json.dumps({**META, **meta}))
    return path


def _age(path: Path) -> float:
    """Set atime well into the past, so that any read moves it (relatime updates atimes older than a day)."""
    old = time.time() - 5 * 86400
    os.utime(path, (old, old - 86400))
    return os.stat(path).st_atime


def _reads_move_atime(tmp_path: Path) -> bool:
    probe = tmp_path / "atime-probe"
    probe.write_bytes(b"probe")
    before = _age(probe)
    probe.read_bytes()
    return os.stat(probe).st_atime != before


def _all_rows_text(cat: Catalog) -> str:
    return "\n".join(json.dumps(cat.sql(f"select * from {t}").to_pylist(), default=str) for t in TABLES)


def test_a_link_out_of_the_inbox_is_neither_read_nor_stored(catalog: Catalog, settings, tmp_path: Path) -> None:
    inbox = Path(settings.inbox)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret_png = outside / "secret.png"
    secret_png.write_bytes(render_image(99, (48, 48)))
    secret_meta = outside / "secret.meta.json"
    secret_meta.write_text(json.dumps({**META, "prompt": "TOP-SECRET-PROMPT", "project": "TOP-SECRET-PROJECT"}))
    (outside / "folder").mkdir()
    folder_png = outside / "folder" / "inside.png"
    folder_png.write_bytes(render_image(98, (40, 40)))
    (outside / "folder" / ("inside.png" + SIDECAR_SUFFIX)).write_text(json.dumps({**META, "prompt": "FOLDER-SECRET"}))
    secret_hashes = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (secret_png, folder_png)]
    atimes = {p: _age(p) for p in (secret_png, secret_meta, folder_png)}

    inbox.mkdir(parents=True)
    (inbox / "stolen.png").symlink_to(secret_png)                      # a media file that is a link
    (inbox / ("stolen.png" + SIDECAR_SUFFIX)).write_text(json.dumps(META))
    real = render_image(97, (32, 32))
    (inbox / "real.png").write_bytes(real)                             # a real file with a linked sidecar
    (inbox / ("real.png" + SIDECAR_SUFFIX)).symlink_to(secret_meta)
    (inbox / "renders").symlink_to(outside / "folder", target_is_directory=True)  # a folder that is a link
    good = _drop(inbox, "good.png", render_image(96, (32, 32)))
    good_sha = hashlib.sha256(good.read_bytes()).hexdigest()  # the ingest consumes the inbox

    summary = catalog.ingest()
    assert (summary.new_versions, summary.rejected) == (1, 3)
    rows = {r["source_path"]: r for r in catalog.sql("select * from ingest_errors").to_pylist()}
    assert set(rows) == {"stolen.png", "real.png", "renders"}
    assert "'stolen.png' is a symbolic link" in rows["stolen.png"]["reason"]
    assert rows["real.png"]["field"] == "sidecar" and "'real.png.meta.json' is a symbolic link" \
        in rows["real.png"]["reason"]
    assert "'renders' is a symbolic link" in rows["renders"]["reason"]
    assert all("never followed" in r["reason"] for r in rows.values())

    stored = set(catalog.home.store.iter_hashes())
    assert good_sha in stored
    assert not stored & set(secret_hashes)
    assert hashlib.sha256(real).hexdigest() not in stored  # its sidecar was refused: nothing stored
    text = _all_rows_text(catalog)
    assert "TOP-SECRET-PROMPT" not in text and "TOP-SECRET-PROJECT" not in text and "FOLDER-SECRET" not in text
    # the links went to quarantine as links; their targets are where they were, unread
    assert Path(rows["stolen.png"]["quarantine_path"]).is_symlink()
    assert Path(rows["renders"]["quarantine_path"]).is_symlink() and folder_png.exists()
    assert not (inbox / "stolen.png").is_symlink() and not (inbox / "renders").exists()
    if _reads_move_atime(tmp_path):
        assert {p: os.stat(p).st_atime for p in atimes} == atimes, "a file outside the inbox was read"


def test_a_link_planted_after_the_listing_is_refused_not_followed(settings, tmp_path: Path) -> None:
    inbox = Path(settings.inbox)
    secret = tmp_path / "secret.png"
    secret.write_bytes(render_image(95, (32, 32)))
    _drop(inbox, "a/swap.png", render_image(94, (32, 32)))
    _drop(inbox, "b/c/deep.png", render_image(93, (32, 32)))
    items = {i.rel: i for i in scan_local(inbox)}
    (inbox / "a" / "swap.png").unlink()
    (inbox / "a" / "swap.png").symlink_to(secret)                      # the file becomes a link
    (inbox / "b" / "c").rename(inbox / "b" / "c-real")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "deep.png").write_bytes(secret.read_bytes())
    (tmp_path / "elsewhere" / ("deep.png" + SIDECAR_SUFFIX)).write_text(json.dumps(META))
    (inbox / "b" / "c").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a folder becomes a link
    before = _age(secret)
    swapped, deep = examine(items["a/swap.png"]), examine(items["b/c/deep.png"])
    assert isinstance(swapped, Rejection) and "'a/swap.png' is a symbolic link" in swapped.reason
    assert isinstance(deep, Rejection) and "'b/c' is a symbolic link" in deep.reason
    if _reads_move_atime(tmp_path):
        assert os.stat(secret).st_atime == before


def test_a_file_replaced_by_a_link_between_hashing_and_storing_is_not_copied(settings, tmp_path: Path) -> None:
    """The sidecar belongs to a file that is swapped for a link to a secret after it was hashed:
    the streamed copy (large files, S3 stores) must not read the secret, and nothing is stored."""
    inbox = Path(settings.inbox)
    secret = tmp_path / "secret.bin"
    secret.write_bytes(render_image(92, (64, 64)))
    path = _drop(inbox, "big.png", render_image(91, (64, 64)))
    examined = examine(scan_local(inbox)[0])
    assert isinstance(examined, Examined)
    path.unlink()
    path.symlink_to(secret)
    before = _age(secret)
    store = LocalObjectStore(tmp_path / "home")
    store_examined(examined, store, content=None)
    assert examined.intact is False and examined.written is False
    assert list(store.iter_hashes()) == []
    if _reads_move_atime(tmp_path):
        assert os.stat(secret).st_atime == before


def test_hostile_sidecars_are_refused_one_by_one(catalog: Catalog, settings) -> None:
    inbox = Path(settings.inbox)
    good = _drop(inbox, "good.png", render_image(90, (32, 32)))
    good_sha = hashlib.sha256(good.read_bytes()).hexdigest()  # the ingest consumes the inbox
    hostile = {
        "deep.png": ("[" * 100_000 + "]" * 100_000, "nested"),                     # crashes a naive parser
        "deeper.png": (json.dumps({**META, "parameters": json.loads("{\"a\":" * 40 + "1" + "}" * 40)}), "nested"),
        "huge.png": (json.dumps({**META, "prompt": "x" * (2 * 1024 * 1024)}), "larger than 1 MiB"),
        "twice.png": ('{"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1", '
                      '"project": "someone-elses"}', "repeats the key 'project'"),
        "nan.png": (json.dumps({**META, "parameters": {"cfg": float("nan")}}), "NaN"),
        "bidi.png": (json.dumps({**META, "name": "invoice\u202egnp.exe"}), "bidirectional"),
        "newline.png": (json.dumps({**META, "name": "two\nlines"}), "control characters"),
    }
    for i, (name, (raw, _)) in enumerate(hostile.items()):
        (inbox / name).write_bytes(render_image(80 + i, (16, 16)))
        (inbox / (name + SIDECAR_SUFFIX)).write_text(raw)
    summary = catalog.ingest()
    assert (summary.new_versions, summary.rejected) == (1, len(hostile))
    assert catalog.sql("select name from assets").to_pylist() == [{"name": "good"}]
    assert catalog.home.store.exists(good_sha)
    rows = {r["source_path"]: r for r in catalog.sql("select * from ingest_errors").to_pylist()}
    for name, (_, words) in hostile.items():
        assert words in rows[name]["reason"], (name, rows[name]["reason"])
        assert "\n" not in rows[name]["reason"]


def test_a_name_from_the_path_follows_the_sidecar_rules(catalog: Catalog, settings) -> None:
    inbox = Path(settings.inbox)
    _drop(inbox, "two\nlines.png", render_image(70, (16, 16)))
    _drop(inbox, "bell\x07.png", render_image(71, (16, 16)))
    _drop(inbox, "report\u202egnp.png", render_image(72, (16, 16)))
    _drop(inbox, "sidecar-name.png", render_image(73, (16, 16)), name="two\nlines")
    summary = catalog.ingest()
    assert (summary.new_versions, summary.rejected) == (0, 4)
    rows = {r["source_path"]: r for r in catalog.sql("select * from ingest_errors").to_pylist()}
    assert rows["two\nlines.png"]["field"] == rows["sidecar-name.png"]["field"] == "name"
    assert "control characters" in rows["two\nlines.png"]["reason"]
    assert "control characters" in rows["sidecar-name.png"]["reason"]
    assert "'two\\nlines'" in rows["two\nlines.png"]["reason"]  # named, escaped: the reason stays one line
    assert "control characters" in rows["bell\x07.png"]["reason"]
    assert "bidirectional" in rows["report\u202egnp.png"]["reason"]
    assert all("\n" not in r["reason"] for r in rows.values())


def test_names_that_differ_only_in_unicode_normalisation_are_one_asset(catalog: Catalog, settings) -> None:
    """macOS writes 'café' decomposed, Linux composed: one asset, not two look-alikes (a later
    output under either spelling becomes its next version)."""
    inbox = Path(settings.inbox)
    nfc, nfd = (unicodedata.normalize(form, "café") for form in ("NFC", "NFD"))
    team_nfc, team_nfd = (unicodedata.normalize(form, "équipe") for form in ("NFC", "NFD"))
    assert nfc != nfd and team_nfc != team_nfd
    _drop(inbox, f"{nfc}.png", render_image(60, (16, 16)), created_at="2026-11-01T00:00:00Z")
    _drop(inbox, f"{nfd}.png", render_image(61, (16, 16)), created_at="2026-11-02T00:00:00Z")
    _drop(inbox, "one.png", render_image(62, (16, 16)), project=team_nfc, name=nfd, created_at="2026-11-01T00:00:00Z")
    _drop(inbox, "two.png", render_image(63, (16, 16)), project=team_nfd, name=nfc, created_at="2026-11-02T00:00:00Z")
    summary = catalog.ingest()
    assert (summary.new_versions, summary.new_assets) == (4, 2)
    rows = catalog.sql("select name, project, current_version from assets order by project").to_pylist()
    assert rows == [{"name": nfc, "project": "p1", "current_version": 2},
                    {"name": nfc, "project": team_nfc, "current_version": 2}]


@pytest.mark.parametrize("size_mb", [12])
def test_a_huge_sidecar_is_refused_without_reading_it_all(settings, tmp_path: Path, size_mb: int) -> None:
    import tracemalloc

    inbox = Path(settings.inbox)
    _drop(inbox, "x.png", render_image(50, (16, 16)))
    with open(inbox / ("x.png" + SIDECAR_SUFFIX), "wb") as f:
        f.write(b'{"prompt": "' + b"y" * (size_mb * 1024 * 1024) + b'"}')
    item = scan_local(inbox)[0]
    tracemalloc.start()
    try:
        result = examine(item)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(result, Rejection) and "larger than 1 MiB" in result.reason
    assert peak < 4 * 1024 * 1024


def test_a_hostile_sidecar_next_to_embedded_metadata_is_refused_too(catalog: Catalog, settings) -> None:
    """A file that carries its own (A1111) metadata takes the merging path for its sidecar: the
    same plain-JSON rules hold there, and a sidecar built to crash the parser stops only itself."""
    import io

    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    inbox = Path(settings.inbox)
    _drop(inbox, "good.png", render_image(40, (16, 16)))
    hostile = {"deep.png": "[" * 100_000 + "]" * 100_000,
               "twice.png": '{"project": "p1", "project": "someone-elses"}',
               "nan.png": '{"parameters": {"cfg": NaN}}'}
    for i, (name, raw) in enumerate(hostile.items()):
        info = PngInfo()
        info.add_text("parameters", f"a red rocket\nSteps: 4, Seed: {i}, Model: sdxl-turbo")
        buf = io.BytesIO()
        Image.open(io.BytesIO(render_image(41 + i, (16, 16)))).save(buf, "PNG", pnginfo=info)
        (inbox / name).write_bytes(buf.getvalue())
        (inbox / (name + SIDECAR_SUFFIX)).write_text(raw)
    summary = catalog.ingest()
    assert (summary.new_versions, summary.rejected) == (1, 3)
    reasons = {r["source_path"]: r["reason"] for r in catalog.sql("select * from ingest_errors").to_pylist()}
    assert "nested" in reasons["deep.png"] and "repeats the key 'project'" in reasons["twice.png"]
    assert "NaN" in reasons["nan.png"]


def test_a_link_quarantined_into_an_s3_home_is_stored_as_its_target_path(s3_env, s3_client, bucket,
                                                                          tmp_path: Path) -> None:
    """On an S3 home the quarantine is an upload: a link must not be uploaded as its target's bytes."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET-BYTES")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "stolen.png").symlink_to(secret)
    (inbox / ("stolen.png" + SIDECAR_SUFFIX)).write_text(json.dumps(META))
    settings = Settings.from_env(home=f"s3://{bucket}/home", inbox=str(inbox), durable=False)
    cat = Catalog(settings=settings)
    assert cat.ingest().rejected == 1
    row = cat.sql("select * from ingest_errors").to_pylist()[0]
    assert "'stolen.png' is a symbolic link" in row["reason"]
    key = row["quarantine_path"].removeprefix(f"s3://{bucket}/")
    assert s3_client.get_object(Bucket=bucket, Key=key)["Body"].read() == os.fsencode(str(secret))
    stored = b"".join(s3_client.get_object(Bucket=bucket, Key=k)["Body"].read()
                      for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                      for k in (o["Key"] for o in page.get("Contents", [])) if "/tables/" not in k)
    assert b"TOP-SECRET-BYTES" not in stored
    assert not (inbox / "stolen.png").is_symlink() and secret.exists()


def _drop_bytes_name(inbox: Path, name: bytes, seed: int) -> bytes:
    """An input (and its sidecar) under a name that is not UTF-8; its path as bytes."""
    path = os.path.join(os.fsencode(inbox), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(render_image(seed, (16, 16)))
    with open(path + os.fsencode(SIDECAR_SUFFIX), "w") as f:
        f.write(json.dumps({"model": "m", "prompt": "p", "seed": seed, "created_by": "u", "project": "p1"}))
    return path


@pytest.mark.parametrize("mode", ["consume", "keep"])
def test_a_name_that_is_not_utf8_is_refused_by_name_and_the_run_goes_on(tmp_path: Path, mode: str) -> None:
    """File names are bytes on Linux; one that is not UTF-8 (a file copied from an old Latin-1
    system) made every ingest crash with UnicodeEncodeError, so one such file stopped the whole
    inbox. Now it is refused with a reason, under its name with the bad bytes escaped: consumed
    inboxes quarantine it (sidecar too), kept ones record it once and leave it; the other inputs
    are ingested."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    _drop(inbox, "good.png", render_image(1, (16, 16)))
    bad = _drop_bytes_name(inbox, b"caf\xe9.png", 2)
    in_folder = _drop_bytes_name(inbox, b"d\xfe/ok.png", 3)
    settings = Settings.from_env(home=home, inbox_mode=mode, durable=False)
    for attempt in range(2):
        summary = Catalog(settings=settings).ingest()
        assert summary.new_versions == (1 if attempt == 0 else 0)
        if mode == "keep" or attempt == 0:
            refused = sorted((e["source"], e["field"]) for e in summary.errors)
            assert refused == [("caf\\xe9.png", "key"), ("d\\xfe/ok.png", "key")], summary.errors
            assert all("is not valid UTF-8" in e["reason"] for e in summary.errors)
    rows = Catalog(settings=settings).sql("select source_path, quarantine_path from ingest_errors order by 1")
    assert [r["source_path"] for r in rows.to_pylist()] == ["caf\\xe9.png", "d\\xfe/ok.png"]  # recorded once
    if mode == "keep":
        assert os.path.exists(bad) and os.path.exists(in_folder)
        return
    assert not os.path.exists(bad) and not os.path.exists(bad + os.fsencode(SIDECAR_SUFFIX))
    assert not os.path.exists(in_folder)
    quarantined = sorted(p.name for p in (home / "quarantine").rglob("*") if p.is_file())
    assert quarantined == ["caf\\xe9.png", "caf\\xe9.png" + SIDECAR_SUFFIX, "ok.png", "ok.png" + SIDECAR_SUFFIX]


def test_the_inbox_sensor_requests_a_name_that_is_not_utf8_and_its_run_refuses_it(settings) -> None:
    """The sensor's tick crashed (hashing the run key) on such a name. Now the name travels in the
    run request as listed, and the run refuses and quarantines it."""
    import dagster as dg

    from asset_pipeline.definitions import build_definitions

    inbox = Path(settings.inbox)
    bad = _drop_bytes_name(inbox, b"caf\xe9.png", 2)
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def("inbox_sensor")
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(instance=instance, cursor=None, definitions=defs,
                                     resources={"pipeline": defs.resources["pipeline"]}) as ctx:
            tick = sensor(ctx)
        [request] = tick.run_requests
        result = defs.resolve_job_def("ingest_job").execute_in_process(instance=instance,
                                                                       run_config=request.run_config)
        assert result.success
    errors = Catalog(settings=settings).sql("select source_path, reason from ingest_errors").to_pylist()
    assert [e["source_path"] for e in errors] == ["caf\\xe9.png"] and "not valid UTF-8" in errors[0]["reason"]
    assert not os.path.exists(bad)


def test_a_name_whose_escaped_form_is_too_long_for_a_file_name_is_quarantined(tmp_path: Path) -> None:
    """64 bytes of 0xE9 + '.png' is a 68-byte name on disk; shown escaped it has 260 characters,
    more than a file name may have. Its quarantine rename failed with ENAMETOOLONG on every run
    (the good input beside it never consumed). Now the shown name is cut short with a digest."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    _drop(inbox, "good.png", render_image(1, (16, 16)))
    bad = _drop_bytes_name(inbox, b"\xe9" * 64 + b".png", 2)
    summary = Catalog(settings=Settings.from_env(home=home, durable=False)).ingest()
    assert (summary.new_versions, summary.rejected) == (1, 1)
    assert not os.path.exists(bad) and not (inbox / "good.png").exists()
    [shown] = [e["source"] for e in summary.errors]
    assert shown.startswith("\\xe9" * 20) and shown.endswith(".png") and len(shown.encode()) <= 255 - 10
    assert len([p for p in (home / "quarantine").rglob("*") if p.is_file()]) == 2  # the file and its sidecar


def test_a_kept_name_with_a_backslash_does_not_hide_a_latin1_name_that_shows_the_same(tmp_path: Path) -> None:
    """`caf\\xe9.png` (a real name with a backslash) and `caf<0xE9>.png` (not UTF-8) show the same.
    In a kept inbox the first is ingested and remembered; the second, dropped later, was taken
    for it ("unchanged") and never refused nor recorded. The cache now vouches only for inputs
    whose name is their path."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    _drop_bytes_name(inbox, b"caf\\xe9.png", 1)
    settings = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    assert Catalog(settings=settings).ingest().new_versions == 1
    _drop_bytes_name(inbox, b"caf\xe9.png", 2)
    rescan = Catalog(settings=settings).ingest()
    assert (rescan.unchanged, rescan.rejected) == (1, 1), rescan.errors
    rows = Catalog(settings=settings).sql("select source_path, field from ingest_errors").to_pylist()
    assert rows == [{"source_path": "caf\\xe9.png", "field": "key"}]


def test_a_sensor_request_for_a_local_name_with_a_backslash_ingests_it(tmp_path: Path) -> None:
    """A backslash is an ordinary character of a local file name: a full scan ingested `a\\b.png`,
    but a run for the paths a sensor requested dropped it silently (the S3 key check refused it)."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    _drop_bytes_name(inbox, b"a\\b.png", 1)
    summary = Catalog(settings=Settings.from_env(home=home, durable=False)).ingest(only=["a\\b.png"])
    assert (summary.new_versions, summary.rejected) == (1, 0)


def test_a_home_whose_path_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    """It crashed deep in deltalake with an unexplained UnicodeEncodeError."""
    from asset_pipeline.location import LocationError

    home = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"h\xf6me"))
    with pytest.raises(LocationError, match=r"h\\\\xf6me' is not valid UTF-8"):
        Settings.from_env(home=home, durable=False)


@pytest.mark.parametrize("rel", ["x" * 300 + ".png", "loop/a.png"], ids=["name-too-long", "link-loop"])
def test_a_requested_path_that_cannot_be_looked_up_is_skipped(tmp_path: Path, rel: str) -> None:
    """Paths requested by a run's config (a sensor's, or typed in the launchpad) that no file can
    have — a part over 255 bytes, or a way through a folder link that loops — are no inputs; the
    lookup's ENAMETOOLONG or ELOOP stopped the whole run before, the other paths unread."""
    from asset_pipeline.inbox import iter_local

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "good.png").write_bytes(b"x")
    os.symlink("loop", inbox / "loop")
    assert [i.rel for i in iter_local(inbox, only=[rel, "good.png"])] == ["good.png"]


def test_two_latin1_names_that_show_the_same_are_both_quarantined(tmp_path: Path) -> None:
    """`\\xe9<E9>.png` and `<E9>\\xe9.png` (each with a literal backslash) both show as
    `\\xe9\\xe9.png`. With the same size and mtime (copies, a tar extraction) they had one error id,
    one row and one quarantine path: the second move replaced the first input and its sidecar.
    The id now comes from the name on disk."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    when = 1_700_000_000_000_000_000
    paths = [_drop_bytes_name(inbox, name, 1) for name in (b"\\xe9\xe9.png", b"\xe9\\xe9.png")]
    for path in paths:
        for p in (path, path + os.fsencode(SIDECAR_SUFFIX)):
            os.utime(p, ns=(when, when))
    summary = Catalog(settings=Settings.from_env(home=home, durable=False)).ingest()
    assert summary.rejected == 2 and not any(os.path.exists(p) for p in paths)
    assert len([p for p in (home / "quarantine").rglob("*") if p.is_file()]) == 4  # both inputs, both sidecars
    assert Catalog(settings=Settings.from_env(home=home, durable=False)).sql(
        "select count(*) as n from ingest_errors").to_pylist() == [{"n": 2}]


def test_a_relative_home_under_a_folder_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path,
                                                                                monkeypatch) -> None:
    """The check read the text given, then made it absolute: a relative home (or `~/...` with such
    a $HOME) under a folder that is not UTF-8 passed, and `init` died in pyarrow."""
    from asset_pipeline.location import Location, LocationError

    cwd = os.path.join(os.fsencode(tmp_path), b"w\xff")
    os.mkdir(cwd)
    monkeypatch.chdir(cwd)
    with pytest.raises(LocationError, match="not valid UTF-8"):
        Location.parse("home")
