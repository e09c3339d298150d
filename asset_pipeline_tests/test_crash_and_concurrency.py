"""Kill an ingest at each dangerous point; a re-run must converge with nothing lost or doubled."""

from pathlib import Path

import pytest

from asset_pipeline import Catalog, integrity
from asset_pipeline.samples import make_samples

from .conftest import run_python

INGEST = "from asset_pipeline import Catalog, Settings; Catalog(settings=Settings.from_env(home={home!r}, " \
         "inbox={inbox!r})).ingest()"


def _assert_consistent(cat: Catalog, counts: dict) -> None:
    assert integrity.missing_blobs(cat.tables, cat.home.store).passed
    assert integrity.duplicate_ids(cat.tables).passed
    assert integrity.rehash_sample(cat.tables, cat.home.store, sample=100).passed
    assert cat.sql("select count(*) from asset_versions").column(0)[0].as_py() == counts["versions"]
    assert cat.sql("select count(*) from assets").column(0)[0].as_py() == counts["assets"]
    assert cat.sql("select count(*) from ingest_errors").column(0)[0].as_py() == counts["rejected"]
    lagging = cat.sql("""select a.id from assets a join (select asset_id, max(version) v from asset_versions
                         group by asset_id) m on m.asset_id = a.id where a.current_version <> m.v""")
    assert lagging.num_rows == 0
    tmp = cat.home.settings.objects_dir / ".tmp"
    for blob in cat.home.store.iter_hashes():
        assert cat.home.store.path(blob).parent.parent.parent == cat.home.settings.objects_dir
    assert all(p.parent == tmp for p in tmp.iterdir())


@pytest.mark.parametrize("point", ["blob-write", "before-commit", "between-tables"])
def test_killed_ingest_converges_on_rerun(tmp_path: Path, point: str) -> None:
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    counts = make_samples(inbox)
    proc = run_python(INGEST.format(home=str(home), inbox=str(inbox)), env={"ASSET_PIPELINE_CRASH_AT": point})
    assert proc.returncode == 137, proc.stderr
    cat = Catalog(home)
    if point != "blob-write":  # versions never point at a missing blob, even mid-way
        assert integrity.missing_blobs(cat.tables, cat.home.store).passed
    proc = run_python(INGEST.format(home=str(home), inbox=str(inbox)))
    assert proc.returncode == 0, proc.stderr
    _assert_consistent(Catalog(home), counts)
    # and a third run changes nothing
    proc = run_python(INGEST.format(home=str(home), inbox=str(inbox)))
    assert proc.returncode == 0, proc.stderr
    _assert_consistent(Catalog(home), counts)


def test_two_ingests_at_once_lose_no_rows(tmp_path: Path) -> None:
    import subprocess
    import sys

    home = tmp_path / "home"
    a, b = make_samples(tmp_path / "inbox-a"), make_samples(tmp_path / "inbox-b")
    # Same sample content in both inboxes, filed under different projects in inbox b, so both
    # ingests write the same tables (and the same blobs) at the same time.
    import json

    from asset_pipeline.samples import EMBEDDED_SAMPLES

    for rel in EMBEDDED_SAMPLES:  # samples that carry their project inside get a sidecar naming it
        side = tmp_path / "inbox-b" / f"{rel}.meta.json"
        if not side.exists():
            side.write_text(json.dumps({"project": "research"}))  # only the project; the rest stays embedded
    for side in (tmp_path / "inbox-b").rglob("*.meta.json"):
        try:
            doc = json.loads(side.read_text())
        except json.JSONDecodeError:
            continue
        doc["project"] = "team-b-" + doc["project"]
        doc.pop("asset_id", None)
        side.write_text(json.dumps(doc))
    procs = [subprocess.Popen([sys.executable, "-c", INGEST.format(home=str(home), inbox=str(tmp_path / name))],
                              stderr=subprocess.PIPE, text=True) for name in ("inbox-a", "inbox-b")]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read()
    cat = Catalog(home)
    assert cat.sql("select count(*) from asset_versions").column(0)[0].as_py() == a["versions"] + b["versions"]
    assert cat.sql("select count(*) from assets").column(0)[0].as_py() == a["assets"] + b["assets"]
    assert cat.sql("select count(*) from ingest_errors").column(0)[0].as_py() == a["rejected"] + b["rejected"]
    assert integrity.duplicate_ids(cat.tables).passed
    assert integrity.missing_blobs(cat.tables, cat.home.store).passed
