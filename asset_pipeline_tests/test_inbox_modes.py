"""What happens to the inbox: consumed (the default) or kept; the hash cache; batches."""

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from asset_pipeline import Catalog, Settings, integrity
from asset_pipeline.failpoints import arrivals
from asset_pipeline.filestamp import FileStamp
from asset_pipeline.hashcache import HashCache, Known, Refused
from asset_pipeline.identity import asset_id_for
from asset_pipeline.inbox import LISTING_SLICE, iter_local
from asset_pipeline.samples import make_samples, render_image
from asset_pipeline.sidecar import SIDECAR_SUFFIX

from .conftest import REPO


def _files(root: Path) -> dict[str, tuple[int, int, int]]:
    """{path: (inode, mtime_ns, ctime_ns)} of every file under `root`."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_ctime_ns)
            for p in root.rglob("*") if p.is_file()}


def _drop(inbox: Path, rel: str, data: bytes, **meta) -> None:
    doc = {"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1", **meta}
    (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
    (inbox / rel).write_bytes(data)
    (inbox / (rel + SIDECAR_SUFFIX)).write_text(json.dumps(doc))


def test_a_consumed_inbox_is_emptied_and_nothing_is_copied(tmp_path: Path) -> None:
    """Same filesystem: every accepted input is hard-linked into the store (no byte copied) and
    leaves the inbox with its sidecar after the commit; rejects go to quarantine with theirs."""
    home = tmp_path / "home"
    counts = make_samples(home / "inbox")
    cat = Catalog(settings=Settings.from_env(home=home, durable=False))
    s = cat.ingest()
    assert (s.new_versions, s.rejected) == (counts["versions"], counts["rejected"])
    assert s.bytes_copied == 0 and s.bytes_stored > 0
    assert s.consumed == counts["versions"] + counts["deduplicated"] - s.unchanged or s.consumed > 0
    assert _files(home / "inbox") == {}
    assert integrity.rehash_sample(cat.tables, cat.home.store, sample=100).passed
    assert integrity.missing_blobs(cat.tables, cat.home.store).passed
    for sha in cat.home.store.iter_hashes():  # the inbox name is gone: the store holds the only link
        assert cat.home.store.path(sha).stat().st_nlink == 1
    quarantined = [p for p in (home / "quarantine").rglob("*") if p.is_file()]
    assert len([p for p in quarantined if not p.name.endswith(SIDECAR_SUFFIX)]) == counts["rejected"]
    again = cat.ingest()
    assert (again.inputs, again.new_versions) == (0, 0)


@pytest.fixture
def other_filesystem(tmp_path: Path):
    """A folder on another filesystem than the home's (/dev/shm): moves there are copies."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second filesystem (/dev/shm)")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        yield Path(other)


def test_a_consumed_inbox_on_another_filesystem_is_copied_then_emptied(tmp_path: Path, other_filesystem: Path) -> None:
    inbox = other_filesystem / "inbox"
    counts = make_samples(inbox)
    os.symlink("/etc/hostname", inbox / "stolen.png")  # refused, and quarantined as the link it is
    cat = Catalog(settings=Settings.from_env(home=tmp_path / "home", inbox=str(inbox), durable=False))
    s = cat.ingest()
    assert (s.new_versions, s.rejected) == (counts["versions"], counts["rejected"] + 1)
    assert s.bytes_copied == s.bytes_stored > 0
    assert _files(inbox) == {} and not os.path.lexists(inbox / "stolen.png")
    [link] = (tmp_path / "home" / "quarantine").rglob("stolen.png")
    assert link.is_symlink() and os.readlink(link) == "/etc/hostname"
    assert integrity.rehash_sample(cat.tables, cat.home.store, sample=100).passed


def test_a_reject_copied_across_filesystems_replaces_a_link_at_its_quarantine_path(
        tmp_path: Path, other_filesystem: Path) -> None:
    """A reject's quarantine path depends only on what the inbox writer controls (path, size,
    mtime, sidecar stamp). A link refused first is quarantined as a link; a file then submitted
    with the same stamps lands on that same path — it replaces the link (kept with its mode and
    mtime), never writes through it into the file the link names."""
    inbox, victim = other_filesystem / "inbox", tmp_path / "victim.txt"
    victim.write_bytes(b"a file outside the inbox")
    stamp = 1_700_000_000_000_000_000

    def submit(make) -> None:
        inbox.mkdir(exist_ok=True)
        make(inbox / "x.png")
        os.utime(inbox / "x.png", ns=(stamp, stamp), follow_symlinks=False)
        sidecar = inbox / ("x.png" + SIDECAR_SUFFIX)
        sidecar.write_text(json.dumps({"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1"}))
        os.utime(sidecar, ns=(stamp, stamp))

    cat = Catalog(settings=Settings.from_env(home=tmp_path / "home", inbox=str(inbox), durable=False))
    submit(lambda p: os.symlink(victim, p))
    assert cat.ingest().rejected == 1
    [quarantined] = (tmp_path / "home" / "quarantine").rglob("x.png")
    assert quarantined.is_symlink()
    body = b"P" * len(str(victim))  # a file as long as the link, so every stamp matches
    submit(lambda p: (p.write_bytes(body), p.chmod(0o640)))
    assert cat.ingest().rejected == 1
    assert victim.read_bytes() == b"a file outside the inbox"
    assert not quarantined.is_symlink() and quarantined.read_bytes() == body
    assert (quarantined.stat().st_mode & 0o777, quarantined.stat().st_mtime_ns) == (0o640, stamp)
    assert _files(inbox) == {}


def test_a_reject_swapped_for_a_link_while_it_is_copied_to_quarantine_stays(
        tmp_path: Path, other_filesystem: Path) -> None:
    """Across filesystems the quarantine copies a reject, then removes it. The ingest is held
    between its look at the entry and the copy, and the file is swapped for a link: nothing is read
    through the link, the run still succeeds, and the link stays for the next run to refuse."""
    home, inbox, barrier = tmp_path / "home", other_filesystem / "inbox", tmp_path / "barrier"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"a file outside the inbox")
    _drop(inbox, "bad.png", b"not an image")
    proc = _ingest_held_at(home, barrier, "quarantine-copy", inbox=inbox)
    (inbox / "bad.png").unlink()
    os.symlink(victim, inbox / "bad.png")
    (barrier / "quarantine-copy.go").touch()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.split() == ["0"]
    assert victim.read_bytes() == b"a file outside the inbox"
    assert (inbox / "bad.png").is_symlink()
    quarantine = home / "quarantine"
    assert not any(p.name == "bad.png" for p in quarantine.rglob("*"))
    s = Catalog(settings=Settings.from_env(home=home, inbox=str(inbox), durable=False)).ingest()
    assert s.rejected == 1 and _files(inbox) == {} and not os.path.lexists(inbox / "bad.png")
    [link] = [p for p in quarantine.rglob("bad.png") if p.is_symlink()]
    assert os.readlink(link) == str(victim)


def test_a_kept_inbox_is_never_touched_and_rescans_read_nothing(tmp_path: Path) -> None:
    """Keep mode: no file moved, linked or rewritten (inode, mtime and ctime as they were); rejects
    are recorded but stay; a re-scan reads no input the hash cache knows and commits nothing;
    verify re-hashes every input (rejects included)."""
    home = tmp_path / "home"
    counts = make_samples(home / "inbox")
    before = _files(home / "inbox")
    settings = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    cat = Catalog(settings=settings)
    first = cat.ingest()
    assert (first.new_versions, first.rejected, first.consumed) == (counts["versions"], counts["rejected"], 0)
    assert _files(home / "inbox") == before
    errors = cat.sql("select source_path, quarantine_path from ingest_errors").to_pylist()
    assert len(errors) == counts["rejected"] and all(e["quarantine_path"] is None for e in errors)
    assert not (home / "quarantine").exists() or not any((home / "quarantine").rglob("*"))
    tables = ("assets", "asset_versions", "ingest_errors")
    versions = {t: DeltaTable(cat.tables.uri(t)).version() for t in tables}
    rescan = Catalog(settings=settings).ingest()
    accepted = rescan.inputs - rescan.rejected
    assert (rescan.new_versions, rescan.unchanged) == (0, accepted)
    assert (rescan.hashed, rescan.rejected) == (0, first.rejected)  # not even the rejects are read again
    assert sorted(e["source"] for e in rescan.errors) == sorted(e["source"] for e in first.errors)
    assert {t: DeltaTable(cat.tables.uri(t)).version() for t in tables} == versions  # no commit at all
    verified = Catalog(settings=settings).ingest(verify=True)
    assert verified.hashed == verified.inputs and verified.new_versions == 0
    assert _files(home / "inbox") == before


def test_a_kept_reject_is_read_again_only_when_it_or_the_checks_change(tmp_path: Path) -> None:
    """A watch folder's rejects are not re-read every scan, yet one is examined again as soon as
    anything that decided it may have changed: its sidecar rewritten in place to the same size with
    its mtime put back (ctime moved), the validation limits, or — never remembered — the tables
    (a sidecar naming an asset that did not exist yet)."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    _drop(inbox, "big.png", render_image(1, (64, 64)), project="p1")
    (inbox / "bad-seed.png").write_bytes(render_image(2, (16, 16)))
    bad = '{"model": "m", "prompt": "p", "seed": "x", "created_by": "u", "project": "p1"}'
    fixed = '{"model": "m", "prompt": "p", "seed": 7, "created_by": "u", "project": "p1"}'
    fixed += " " * (len(bad) - len(fixed))
    (inbox / ("bad-seed.png" + SIDECAR_SUFFIX)).write_text(bad)
    named = asset_id_for("p1", "later")
    _drop(inbox, "names-later.png", render_image(3, (16, 16)), project="p1", asset_id=named)
    strict = Settings.from_env(home=home, inbox_mode="keep", durable=False, max_image_pixels=1000)

    def scan(settings: Settings = strict) -> tuple[int, int, list[str]]:
        s = Catalog(settings=settings).ingest()
        return s.new_versions, s.hashed, sorted(e["source"] for e in s.errors)

    everything = ["bad-seed.png", "big.png", "names-later.png"]
    assert scan() == (0, 3, everything)
    assert scan() == (0, 1, everything)  # only the reject the tables decided is read again
    _drop(tmp_path / "other", "later.png", render_image(4, (16, 16)), project="p1")
    Catalog(settings=Settings.from_env(home=home, inbox=str(tmp_path / "other"), durable=False)).ingest()
    assert scan() == (1, 1, ["bad-seed.png", "big.png"])  # its asset exists now: accepted
    sidecar = inbox / ("bad-seed.png" + SIDECAR_SUFFIX)
    st = sidecar.stat()
    time.sleep(0.01)
    with open(sidecar, "r+") as f:  # in place, same size, then the old mtime put back
        f.write(fixed)
    os.utime(sidecar, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (sidecar.stat().st_size, sidecar.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert scan() == (1, 1, ["big.png"])
    assert scan() == (0, 0, ["big.png"])
    assert scan(Settings.from_env(home=home, inbox_mode="keep", durable=False)) == (1, 1, [])  # default limit
    errors = Catalog(settings=strict).sql("select source_path from ingest_errors order by 1").column(0).to_pylist()
    assert errors == everything  # each recorded once, however often it was refused


def test_a_reject_read_through_a_swapped_folder_does_not_hide_the_listed_file(tmp_path: Path, monkeypatch) -> None:
    """The listing stamps a/x.png (a good file); before it is examined, folder `a` is swapped for
    another one holding a bad x.png (renaming a folder moves no ctime of the files under it). The
    bad file is read and refused. Before the fix the reject was remembered under the good file's
    listed stamps: once the folder was swapped back, the good file was refused unread for good.
    Now a reject is remembered only when the file and sidecar read are the ones listed."""
    import asset_pipeline.home as home_mod

    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    _drop(inbox, "a/x.png", render_image(1, (16, 16)))
    _drop(inbox, ".other/x.png", b"not an image at all")
    real = home_mod.iter_local

    def listed_then_swapped(root, only=None):
        items = list(real(root, only))
        os.rename(inbox / "a", inbox / ".a-real")
        os.rename(inbox / ".other", inbox / "a")
        return iter(items)

    settings = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    monkeypatch.setattr(home_mod, "iter_local", listed_then_swapped)
    assert Catalog(settings=settings).ingest().rejected == 1
    monkeypatch.setattr(home_mod, "iter_local", real)
    os.rename(inbox / "a", inbox / ".other")
    os.rename(inbox / ".a-real", inbox / "a")
    rescan = Catalog(settings=settings).ingest()
    assert (rescan.new_versions, rescan.rejected, rescan.errors) == (1, 0, [])


def test_a_remembered_reject_does_not_outlive_a_later_acceptance(tmp_path: Path) -> None:
    """big.png is refused under a strict pixel limit, then accepted under the default one, then the
    strict limit is back (or a decoder downgraded again after an upgrade that admitted it). Its
    content is a version of its asset now, so a scan counts it unchanged, as a scan without the
    cache does; before the fix the old reject entry still refused it."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    _drop(inbox, "big.png", render_image(1, (64, 64)))
    strict = Settings.from_env(home=home, inbox_mode="keep", durable=False, max_image_pixels=1000)
    relaxed = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    assert Catalog(settings=strict).ingest().rejected == 1
    assert Catalog(settings=relaxed).ingest().new_versions == 1
    rescan = Catalog(settings=strict).ingest()
    assert (rescan.rejected, rescan.unchanged) == (0, 1), rescan.errors
    truth = Catalog(settings=strict).ingest(verify=True)
    assert (truth.rejected, truth.unchanged) == (0, 1)


def _package_copy(root: Path) -> Path:
    """`root`, holding a copy of the package's source (no bytecode): run it with PYTHONPATH=root
    and a working folder other than the repository's."""
    shutil.copytree(REPO / "asset_pipeline", root / "asset_pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _run_on_copy(root: Path, script: str) -> subprocess.CompletedProcess:
    """`script` run by a fresh interpreter on the package copy under `root` (`_package_copy`)."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)}, cwd=root, timeout=120)


def test_rejects_refused_by_code_older_than_its_files_are_examined_again(tmp_path: Path) -> None:
    """A notebook imports the package; a fix is then deployed (a source file of the package
    changes on disk); the notebook's kept ingest refuses a file with the code it imported. A
    process running the fix must examine that file again. Before, the notebook labelled its
    rejects with the digest of the files on disk, the fix's, so the fix refused the file unread."""
    code = _package_copy(tmp_path / "code")
    home = tmp_path / "home"
    _drop(home / "inbox", "big.png", render_image(1, (64, 64)))
    scan = (f"from asset_pipeline import Catalog, Settings\n"
            f"s = Catalog(settings=Settings.from_env(home={str(home)!r}, inbox_mode='keep', durable=False, "
            f"max_image_pixels=1000)).ingest()\n"
            f"print(s.rejected, s.hashed)\n")
    deploy = (f"import asset_pipeline.examine, asset_pipeline.images\n"  # the notebook's code, imported
              f"assert asset_pipeline.images.__file__.startswith({str(code)!r})\n"
              f"with open({str(code / 'asset_pipeline' / 'images.py')!r}, 'a') as f:\n"
              f"    f.write('# a fix, deployed while the notebook runs\\n')\n")

    def run(script: str) -> tuple[list[str], str]:
        done = _run_on_copy(code, script)
        assert done.returncode == 0, done.stderr
        return done.stdout.split(), done.stderr

    refused, log = run(deploy + scan)
    assert refused == ["1", "1"]
    assert "changed after this process imported it" in log and "restart" in log
    assert run(scan)[0] == ["1", "1"]  # the fix examines it (before: "1 0", refused unread)
    assert run(scan) == (["1", "0"], "")  # and remembers its own verdict


@pytest.mark.parametrize("failure", [MemoryError(), OSError(errno.EIO, "Input/output error")],
                         ids=["MemoryError", "EIO"])
def test_a_reject_caused_outside_the_file_is_not_remembered(tmp_path: Path, monkeypatch, failure) -> None:
    """A decoder that fails for a reason outside the file (memory running out, an I/O error of the
    disk or share) turns into a reject, as any decoder error does. That reject must not be
    remembered: the next scan reads the file again and accepts it (before the fix it was refused
    unread for good). The failure is injected into Pillow's open for the first validation."""
    import PIL.Image

    import asset_pipeline.images as images

    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    _drop(inbox, "x.png", render_image(1, (16, 16)))
    real_open, real_check = PIL.Image.open, images.check_image
    calls = []

    def failing_open(*args, **kwargs):
        raise failure

    def first_check_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            PIL.Image.open = failing_open
        try:
            return real_check(*args, **kwargs)
        finally:
            PIL.Image.open = real_open

    settings = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    monkeypatch.setattr(images, "check_image", first_check_fails)
    assert Catalog(settings=settings).ingest().rejected == 1
    rescan = Catalog(settings=settings).ingest()
    assert (rescan.new_versions, rescan.rejected) == (1, 0), rescan.errors


def _checks_label(root: Path, before: str = "") -> subprocess.CompletedProcess:
    """What a kept inbox's rejects are labelled with, printed by a fresh interpreter running the
    package copy under `root` (`_package_copy`), after running `before`."""
    return _run_on_copy(root, f"import asset_pipeline\nassert asset_pipeline.__file__.startswith({str(root)!r})\n"
                              f"{before}\nfrom asset_pipeline.formats import ValidationLimits\n"
                              "print(ValidationLimits().checks)\n")


@pytest.mark.parametrize("stray", ["editor lock file", "fifo"])
def test_a_stray_entry_in_the_package_leaves_the_checks_alone(tmp_path: Path, stray: str) -> None:
    """The checks digest reads the package's modules. An editor's lock file beside one (Emacs's
    `.#images.py`, a dangling link) made it raise, and with it every kept-inbox ingest, while
    anyone edited an editable install; a FIFO named like a module (`stray.py`) would block its
    read for ever. Neither is code. Run on a copy of the package, in a fresh interpreter."""
    root = _package_copy(tmp_path / "copy")
    before = _checks_label(root)
    if stray == "fifo":
        os.mkfifo(root / "asset_pipeline" / "stray.py")
    else:
        os.symlink("someone@host.4242:1700000000", root / "asset_pipeline" / ".#images.py")
    after = _checks_label(root)
    assert after.returncode == 0, after.stderr[-1000:]
    assert after.stdout == before.stdout and after.stdout.startswith("asset-pipeline ")


def test_a_decoder_upgraded_under_a_running_process_is_labelled_as_the_release_it_runs(tmp_path: Path) -> None:
    """A notebook has Pillow loaded; a newer Pillow is then installed beneath it. The notebook still
    decodes with the old release, so its rejects must carry the old release's name: before, the
    label read the installed metadata (the new release), and a process running the new Pillow
    trusted the old one's verdicts."""
    import PIL

    root = _package_copy(tmp_path / "copy")
    upgrade = tmp_path / "upgrade" / "pillow-99.0.0.dist-info"
    upgrade.mkdir(parents=True)
    (upgrade / "METADATA").write_text("Metadata-Version: 2.1\nName: pillow\nVersion: 99.0.0\n")
    install = f"import sys, importlib; sys.path.insert(0, {str(upgrade.parent)!r}); importlib.invalidate_caches()"
    notebook = _checks_label(root, f"import PIL\n{install}")
    assert notebook.returncode == 0, notebook.stderr[-1000:]
    assert f"pillow {PIL.__version__}," in notebook.stdout
    fresh = _checks_label(root, install)  # Pillow not loaded yet: the installed release is what it will load
    assert fresh.returncode == 0, fresh.stderr[-1000:]
    assert "pillow 99.0.0," in fresh.stdout


def _npy(seed: int) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).standard_normal(64).astype(np.float32))
    return buf.getvalue()


@pytest.mark.parametrize("how", ["os.utime", "touch -r"])
def test_the_hash_cache_is_not_fooled_by_a_restored_mtime(tmp_path: Path, how: str) -> None:
    """Content changed in place to bytes of the same size, then mtime put back (as `touch -r` or
    `rsync -t` do): ctime moved, so the input is read again and its new content is a new version."""
    import shutil

    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    old, new = _npy(1), _npy(2)
    assert len(old) == len(new) and old != new
    _drop(inbox, "vec.npy", old)
    settings = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    Catalog(settings=settings).ingest()
    st = os.stat(inbox / "vec.npy")
    shutil.copy2(inbox / "vec.npy", tmp_path / "reference")
    time.sleep(0.01)
    with open(inbox / "vec.npy", "r+b") as f:  # in place: same inode, same size
        f.write(new)
    if how == "os.utime":
        os.utime(inbox / "vec.npy", ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        subprocess.run(["touch", "-r", str(tmp_path / "reference"), str(inbox / "vec.npy")], check=True)
    after = os.stat(inbox / "vec.npy")
    assert after.st_ino == st.st_ino
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and after.st_ctime_ns != st.st_ctime_ns
    s = Catalog(settings=settings).ingest()
    assert (s.new_versions, s.hashed) == (1, 1)
    cat = Catalog(settings=settings)
    shas = [v["sha256"] for v in cat.list_versions(cat.sql("select id from assets").column(0)[0].as_py())]
    assert shas == [hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest()]


def test_a_kept_inbox_puts_back_a_blob_that_went_missing(tmp_path: Path) -> None:
    """The cache is trusted only while the blob is in the store."""
    home = tmp_path / "home"
    make_samples(home / "inbox")
    settings = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    cat = Catalog(settings=settings)
    cat.ingest()
    victim = cat.sql("select current_sha256 from assets where name = 'images/forest'").column(0)[0].as_py()
    cat.home.store.delete(victim)
    Catalog(settings=settings).ingest()
    assert cat.home.store.exists(victim)


def test_sidecars_pair_with_their_media_across_slices_of_a_large_folder(tmp_path: Path) -> None:
    """A folder is listed in slices (a flat inbox of a million files is never held whole): a media
    file and its sidecar in different slices are still one input, with the sidecar's stamp; an
    orphan sidecar is still an orphan; a sidecar that is a link is paired (the ingest refuses it);
    a subfolder's names never pair with the same names one folder up."""
    inbox = tmp_path / "inbox"
    for i in range(7):
        _drop(inbox, f"{i}.png", b"x")
    _drop(inbox, "sub/0.png", b"y")
    (inbox / "sub" / "1.png").write_bytes(b"y")
    (inbox / "bare.png").write_bytes(b"x")
    (inbox / f"gone.png{SIDECAR_SUFFIX}").write_text("{}")
    (inbox / "linked.png").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", inbox / f"linked.png{SIDECAR_SUFFIX}")
    expected = {**{f"{i}.png": (f"{i}.png{SIDECAR_SUFFIX}", False) for i in range(7)}, "bare.png": (None, False),
                f"gone.png{SIDECAR_SUFFIX}": (None, True), "linked.png": (f"linked.png{SIDECAR_SUFFIX}", False),
                "sub/0.png": (f"sub/0.png{SIDECAR_SUFFIX}", False), "sub/1.png": (None, False)}
    for size in (1, 2, 3, LISTING_SLICE):
        items = list(iter_local(inbox, slice_size=size))
        assert len(items) == len(expected)
        assert {i.rel: (i.sidecar and i.sidecar.relative_to(inbox).as_posix(), i.orphan_sidecar)
                for i in items} == expected, f"slices of {size}"
        for item in items:
            assert item.sidecar_stamp == (FileStamp.read(item.sidecar) if item.sidecar else None)


def test_the_hash_cache_answers_many_files_and_every_path_of_a_hard_link(tmp_path: Path) -> None:
    """Lookups go by slices of inodes per device: files on two devices, more than one slice of
    them, a file under two inbox paths (hard links) found under both, a changed ctime or an
    unknown inode not found."""
    with HashCache(tmp_path / "hashes.sqlite") as cache:
        stamps = [FileStamp(dev, ino, 10, 5, 6) for dev in (1, 2) for ino in range(1_200)]
        cache.remember((st, f"{st.ino:064x}", None, f"a{st.dev}") for st in stamps)
        asked = [(f"{st.dev}/{st.ino}", st) for st in stamps]
        asked += [("hard link", stamps[0]), ("changed", FileStamp(1, 1, 10, 5, 7)),
                  ("new", FileStamp(1, 5_000, 10, 5, 6))]
        found = cache.lookup(asked)
    assert set(found) == {key for key, _ in asked} - {"changed", "new"}
    assert found["hard link"] == found["1/0"] == Known("0" * 64, "", "a1")
    assert found["2/1199"] == Known(f"{1199:064x}", "", "a2")


@pytest.mark.parametrize("asked", [2, 1_200])
def test_remembered_rejects_are_found_by_path_stamps_and_checks(tmp_path: Path, asked: int) -> None:
    """Whether the cache remembers more rejects than it is asked about (one query per slice of
    paths) or fewer (all of them read at once): a reject is found under its path, file and
    sidecar stamps and checks exactly, and nowhere else."""
    side = FileStamp(1, 9_999, 3, 4, 5)
    with HashCache(tmp_path / "hashes.sqlite") as cache:
        remembered = [(f"r{i}", FileStamp(1, i, 10, 5, 6), side if i % 2 else None, Refused(f"bad {i}", "content"))
                      for i in range(600)]
        cache.remember_refused(remembered, "checks-1")
        cache.remember_refused([("other", FileStamp(1, 700, 10, 5, 6), None, Refused("old", None))], "checks-0")
        wanted = [(rel, st, sd) for rel, st, sd, _ in remembered[:asked]]
        wanted += [("r1", FileStamp(1, 1, 10, 5, 6), None),  # the sidecar went: no longer the reject
                   ("r2", FileStamp(1, 2, 10, 5, 7), None),  # ctime moved
                   ("other", FileStamp(1, 700, 10, 5, 6), None),  # refused under other checks
                   ("new", FileStamp(1, 800, 10, 5, 6), None)]
        found = cache.refused(wanted, "checks-1")
    expect = {rel: r for rel, _, _, r in remembered[:asked] if rel not in ("r1", "r2")}
    assert found == expect and len(found) == min(asked, 600) - (asked > 2) - 1


def test_asking_about_a_few_paths_does_not_read_every_remembered_reject(tmp_path: Path) -> None:
    """A sensor's single path, or a small batch, against a cache that remembers many rejects
    (rows of files gone from the inbox are never dropped): the lookup costs what is asked about.
    Counted in SQLite's steps, not in seconds."""
    with HashCache(tmp_path / "hashes.sqlite") as cache:
        cache.remember_refused([(f"old/{i:07d}.png", FileStamp(1, i, 10, 5, 6), None, Refused("bad", "content"))
                                for i in range(200_000)], "checks-1")
        steps = [0]

        def tick() -> int:
            steps[0] += 1
            return 0

        cache._db.set_progress_handler(tick, 100)
        one = cache.refused([("old/0000007.png", FileStamp(1, 7, 10, 5, 6), None)], "checks-1")
        few = steps[0]
        batch = cache.refused([(f"old/{i:07d}.png", FileStamp(1, i, 10, 5, 6), None) for i in range(0, 2_000)],
                              "checks-1")
        cache._db.set_progress_handler(None, 0)
    assert one == {"old/0000007.png": Refused("bad", "content")} and len(batch) == 2_000
    assert few < 100, f"{few * 100} SQLite steps to answer one path"
    assert steps[0] < 2_000, f"{steps[0] * 100} SQLite steps to answer 2,001 paths"


def test_batches_give_the_same_result_as_one_commit(tmp_path: Path) -> None:
    """An inbox streams through in batches of `ingest_batch_files`, each committed on its own."""
    results = {}
    for batch in (3, 10_000):
        home = tmp_path / f"home-{batch}"
        counts = make_samples(home / "inbox")
        cat = Catalog(settings=Settings.from_env(home=home, durable=False, ingest_batch_files=batch))
        s = cat.ingest()
        assert (s.new_versions, s.rejected, s.deduplicated) == \
            (counts["versions"], counts["rejected"], counts["deduplicated"])
        results[batch] = (s.batches, cat.sql("select name, project, current_version, type from assets "
                                             "order by name, project").to_pylist())
        assert integrity.duplicate_ids(cat.tables).passed
    assert results[3][0] > 1 and results[10_000][0] == 1
    assert results[3][1] == results[10_000][1]


def test_a_sidecar_can_name_an_asset_the_previous_batch_created(tmp_path: Path) -> None:
    """A batch's commit overlaps the next batch's examination; an input whose sidecar names an
    asset that the previous batch (still committing) creates is a new version of it, not
    "does not exist"."""
    from asset_pipeline.identity import asset_id_for

    home = tmp_path / "home"
    inbox = home / "inbox"
    _drop(inbox, "1-first.png", render_image(1, (16, 16)), name="hero", project="p1")
    for i in range(2, 6):  # every later batch names the asset the first one makes
        _drop(inbox, f"{i}-retake.png", render_image(i, (16, 16)), asset_id=asset_id_for("p1", "hero"),
              project="p1", change_description=f"take {i}")
    cat = Catalog(settings=Settings.from_env(home=home, durable=False, ingest_batch_files=1))
    s = cat.ingest(only=sorted(f for f in _files(inbox) if f.endswith(".png")))
    assert (s.batches, s.new_versions, s.rejected) == (5, 5, 0), s.errors
    assert [v["change_description"] for v in cat.list_versions(asset_id_for("p1", "hero"))] == \
        ["initial version", "take 2", "take 3", "take 4", "take 5"]


def _ingest_held_at(home: Path, barrier: Path, point: str, inbox: Path | None = None) -> subprocess.Popen:
    """A consuming ingest of `home`'s inbox (or `inbox`) in its own process, returned once it is
    held at the failpoint `point` (released by touching ``<barrier>/<point>.go``); it prints how
    many inputs it consumed."""
    where = f"home={str(home)!r}" + (f", inbox={str(inbox)!r}" if inbox is not None else "")
    code = (f"from asset_pipeline import Catalog, Settings; "
            f"print(Catalog(settings=Settings.from_env({where}, durable=False)).ingest().consumed)")
    env = {**os.environ, "ASSET_PIPELINE_PAUSE_AT": point, "ASSET_PIPELINE_BARRIER": str(barrier)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while arrivals(barrier, point) < 1:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def _folder_swapped_for_a_link_while_held(tmp_path: Path, point: str, name: str, data: bytes) -> tuple[str, Path]:
    """An ingest of ``sub/<name>`` (`data`) and ``b.png`` held at `point`; meanwhile the inbox
    folder ``sub`` is moved elsewhere and a symbolic link to it put in its place. Returns what the
    run printed (inputs consumed) once released, and where the folder went."""
    home, inbox, barrier = tmp_path / "home", tmp_path / "home" / "inbox", tmp_path / "barrier"
    _drop(inbox, f"sub/{name}", data)
    _drop(inbox, "b.png", render_image(2, (16, 16)))
    proc = _ingest_held_at(home, barrier, point)
    elsewhere = tmp_path / "elsewhere"
    os.rename(inbox / "sub", elsewhere)
    os.symlink(elsewhere, inbox / "sub")
    (barrier / f"{point}.go").touch()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    return out, elsewhere


def test_an_input_replaced_while_its_batch_commits_stays_for_the_next_run(tmp_path: Path) -> None:
    """The ingest is held after its commit, before it consumes; meanwhile the generator writes a
    new file under an ingested name. That file is not the one ingested: it stays, and the next run
    makes it a new version."""
    home, inbox, barrier = tmp_path / "home", tmp_path / "home" / "inbox", tmp_path / "barrier"
    _drop(inbox, "a.png", render_image(1, (16, 16)))
    _drop(inbox, "b.png", render_image(2, (16, 16)))
    proc = _ingest_held_at(home, barrier, "before-consume")
    replacement = render_image(3, (16, 16))
    (inbox / "a.png.new").write_bytes(replacement)
    os.replace(inbox / "a.png.new", inbox / "a.png")  # how generators publish: write, then rename
    (barrier / "before-consume.go").touch()
    assert proc.wait(timeout=120) == 0
    assert sorted(_files(inbox)) == ["a.png", "a.png.meta.json"]
    s = Catalog(settings=Settings.from_env(home=home, durable=False)).ingest()
    assert s.new_versions == 1 and _files(inbox) == {}
    cat = Catalog(home)
    a = cat.sql("select id from assets where name = 'a'").column(0)[0].as_py()
    assert cat.list_versions(a)[-1]["sha256"] == hashlib.sha256(replacement).hexdigest()


def test_a_folder_swapped_for_a_link_before_the_consume_is_not_emptied_through_it(tmp_path: Path) -> None:
    """The ingest is held after its commit, before it consumes; meanwhile the inbox folder that
    holds an input is moved elsewhere and a symbolic link to it put in its place. The files it
    held are the ones ingested (same inodes), but nothing is removed through the link: they stay
    where the folder went, and the link is refused on the next run."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    out, elsewhere = _folder_swapped_for_a_link_while_held(tmp_path, "before-consume", "a.png",
                                                    render_image(1, (16, 16)))
    assert out.split() == ["1"]  # b.png only
    assert sorted(p.name for p in elsewhere.iterdir()) == ["a.png", "a.png.meta.json"]
    assert sorted(os.listdir(inbox)) == ["sub"] and (inbox / "sub").is_symlink()
    cat = Catalog(settings=Settings.from_env(home=home, durable=False))
    assert cat.sql("select count(*) from asset_versions").column(0)[0].as_py() == 2
    s = cat.ingest()
    assert (s.new_versions, s.rejected) == (0, 1)
    assert "symbolic link" in cat.sql("select reason from ingest_errors").column(0)[0].as_py()


def test_a_folder_swapped_for_a_link_before_the_quarantine_is_not_moved_through_it(tmp_path: Path) -> None:
    """The ingest is held after it recorded its rejects, before it moves them to quarantine;
    meanwhile the inbox folder that holds a reject is moved elsewhere and a link to it put in its
    place. Nothing is moved out of where the link points: the reject stays where the folder went,
    and the next run refuses the link and quarantines it as a link."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    out, elsewhere = _folder_swapped_for_a_link_while_held(tmp_path, "before-quarantine", "bad.png", b"not an image")
    assert out.split() == ["1"]  # b.png
    assert sorted(p.name for p in elsewhere.iterdir()) == ["bad.png", "bad.png.meta.json"]
    quarantine = home / "quarantine"
    assert not quarantine.exists() or not [p for p in quarantine.rglob("*") if not p.is_dir()]
    s = Catalog(settings=Settings.from_env(home=home, durable=False)).ingest()
    assert (s.new_versions, s.rejected) == (0, 1)
    assert os.listdir(inbox) == [] and sorted(p.name for p in elsewhere.iterdir()) == ["bad.png", "bad.png.meta.json"]
    [moved] = quarantine.rglob("sub")
    assert moved.is_symlink() and os.readlink(moved) == str(elsewhere)


def test_inbox_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="inbox mode"):
        Settings.from_env(home="/tmp/x", inbox_mode="move")


def test_cli_keeps_the_inbox_when_told_and_verify_rehashes(tmp_path: Path, monkeypatch, capsys) -> None:
    from asset_pipeline.cli import main

    home = tmp_path / "home"
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(home))
    monkeypatch.setenv("ASSET_PIPELINE_INBOX_MODE", "keep")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    (tmp_path / "dh" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    import re

    counts = make_samples(home / "inbox")
    assert main(["ingest"]) == 0
    first = capsys.readouterr().out
    inputs = int(re.search(r"from (\d+) inputs", first).group(1))
    assert f"{counts['rejected']} rejected (left in the inbox)" in first
    assert main(["ingest"]) == 0
    assert f"inbox kept: read 0 of {inputs} inputs" in capsys.readouterr().out  # rejects too, from the cache
    assert main(["ingest", "--verify"]) == 0
    assert f"inbox kept: read {inputs} of {inputs} inputs" in capsys.readouterr().out
    monkeypatch.setenv("ASSET_PIPELINE_INBOX_MODE", "consume")
    assert main(["ingest"]) == 0
    assert "inbox consumed:" in capsys.readouterr().out and _files(home / "inbox") == {}


def test_a_rewritten_sidecar_is_read_again_in_a_kept_inbox(tmp_path: Path) -> None:
    """The cache vouches for an input only with the sidecar it was committed with: a rewritten
    sidecar is read again — with the same identity the file still is not hashed; naming another
    project, the content becomes that project's new asset (examined in full)."""
    home, inbox = tmp_path / "home", tmp_path / "home" / "inbox"
    data = render_image(9, (24, 24))
    _drop(inbox, "art.png", data, project="p1")
    settings = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    assert Catalog(settings=settings).ingest().new_assets == 1
    same = Catalog(settings=settings).ingest()
    assert (same.new_versions, same.unchanged, same.hashed) == (0, 1, 0)
    time.sleep(0.01)
    side = {"model": "m", "prompt": "p", "seed": 1, "created_by": "u", "project": "p1", "tags": ["later"]}
    (inbox / ("art.png" + SIDECAR_SUFFIX)).write_text(json.dumps(side))
    retagged = Catalog(settings=settings).ingest()
    assert (retagged.new_versions, retagged.unchanged, retagged.hashed) == (0, 1, 0)
    (inbox / ("art.png" + SIDECAR_SUFFIX)).write_text(json.dumps({**side, "project": "p2"}))
    moved = Catalog(settings=settings).ingest()
    assert (moved.new_assets, moved.hashed) == (1, 1)
    cat = Catalog(settings=settings)
    assert sorted(r["project"] for r in cat.sql("select project from assets").to_pylist()) == ["p1", "p2"]


def test_a_kept_input_equal_to_a_pruned_version_does_not_come_back(tmp_path: Path) -> None:
    """Keep mode: an input that merely stayed in the inbox after retention pruned its version is
    not a new submission — re-scans (with or without the hash cache) leave the history alone."""
    import datetime as dt

    from asset_pipeline.identity import asset_id_for
    from asset_pipeline.lifecycle.actions import sweep
    from asset_pipeline.lifecycle.policies import parse_config
    from asset_pipeline.samples import render_image

    home = tmp_path / "home"
    make_samples(home / "inbox")
    settings = Settings.from_env(home=home, inbox_mode="keep", durable=False)
    cat = Catalog(settings=settings)
    cat.ingest()
    sunset = asset_id_for("research", "images/sunset")
    cat.create_version(sunset, render_image(91, (400, 300)), "a new take")
    config = parse_config({"grace_period_days": 1, "preview_new_policies": False, "policies": [
        {"name": "keep-1", "action": "prune_versions", "select": {"keep_last_versions": 1}}]})
    lifecycle = cat.lifecycle()
    lifecycle.blob_grace = dt.timedelta(0)
    today = dt.datetime.now(dt.UTC).date()
    for day in (today, today + dt.timedelta(days=2)):  # marked, then its bytes go
        sweep(lifecycle, config.policies, config.grace_period_days, day.isoformat(), "t", False, config.guard_rails)
    assert [v["version"] for v in cat.list_versions(sunset)] == [1, 2]
    for verify in (False, True):  # the cache's word, then a full re-hash
        again = Catalog(settings=settings).ingest(verify=verify)
        assert again.new_versions == 0, verify
    assert [v["version"] for v in cat.list_versions(sunset)] == [1, 2] and cat.get(sunset).version == 2
