"""Kill an ingest at each dangerous point; a re-run must converge with nothing lost or doubled."""

from pathlib import Path

import pytest

from asset_pipeline import Catalog, integrity
from asset_pipeline.samples import make_samples

from .conftest import run_python

INGEST = "from asset_pipeline import Catalog, Settings; Catalog(settings=Settings.from_env(home={home!r}, " \
         "inbox={inbox!r}, inbox_mode={mode!r}, ingest_batch_files={batch})).ingest()"


def _assert_consistent(cat: Catalog, counts: dict, mode: str = "consume") -> None:
    """What a converged home looks like: exact counts, unique keys, current rows, every blob
    present and intact, no blob nobody references, no temp file left behind."""
    assert integrity.missing_blobs(cat.tables, cat.home.store).passed
    assert integrity.duplicate_ids(cat.tables).passed
    assert integrity.rehash_sample(cat.tables, cat.home.store, sample=100).passed
    assert cat.sql("select count(*) from asset_versions").column(0)[0].as_py() == counts["versions"]
    assert cat.sql("select count(*) from assets").column(0)[0].as_py() == counts["assets"]
    assert cat.sql("select count(*) from ingest_errors").column(0)[0].as_py() == counts["rejected"]
    lagging = cat.sql("""select a.id from assets a join (select asset_id, max(version) v from asset_versions
                         group by asset_id) m on m.asset_id = a.id where a.current_version <> m.v""")
    assert lagging.num_rows == 0
    assert set(cat.home.store.iter_hashes()) == integrity.version_hashes(cat.tables)  # no orphans, no gaps
    assert not list((cat.home.settings.objects_dir.path / ".tmp").iterdir())  # no half-written blob left
    quarantined = [p for p in cat.home.settings.quarantine_dir.path.rglob("*") if p.is_file()
                   and not p.name.endswith(".meta.json")]
    assert len(quarantined) == (counts["rejected"] if mode == "consume" else 0)  # each reject moved exactly once


def _inbox_files(inbox: Path) -> set[str]:
    return {str(p.relative_to(inbox)) for p in inbox.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode, point", [
    ("keep", "blob-write"), ("keep", "before-commit"), ("keep", "between-tables"),
    # a consumed inbox: killed between linking an input into the store and the commit, between the
    # commit and the inputs' removal, and between removing an input's file and its sidecar
    ("consume", "after-link"), ("consume", "before-commit"), ("consume", "between-tables"),
    ("consume", "before-quarantine"), ("consume", "before-consume"), ("consume", "between-unlinks"),
])
@pytest.mark.parametrize("batch", [2_500, 4], ids=["one-batch", "batches"])
def test_killed_ingest_converges_on_rerun(tmp_path: Path, mode: str, point: str, batch: int) -> None:
    """Nothing lost: every input ends as a version or a quarantined reject; nothing twice: exact
    counts. A consumed inbox is empty at the end; a kept one is as it was. In batches of 4, the
    first batch dies while committing as the next one is being examined and stored."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    counts = make_samples(inbox)
    before = _inbox_files(inbox)
    code = INGEST.format(home=str(home), inbox=str(inbox), mode=mode, batch=batch)
    proc = run_python(code, env={"ASSET_PIPELINE_CRASH_AT": point})
    assert proc.returncode == 137, proc.stderr
    cat = Catalog(home)
    if point != "blob-write":  # versions never point at a missing blob, even mid-way
        assert integrity.missing_blobs(cat.tables, cat.home.store).passed
    if point in ("after-link", "before-commit", "between-tables", "before-quarantine", "before-consume"):
        accepted = {f for f in before if not f.startswith("bad/")}
        assert accepted <= _inbox_files(inbox)  # no input left the inbox before its commit was done
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    _assert_consistent(Catalog(home), counts, mode)
    assert _inbox_files(inbox) == (set() if mode == "consume" else before)
    # and a third run changes nothing
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    _assert_consistent(Catalog(home), counts, mode)
