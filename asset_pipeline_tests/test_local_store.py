import hashlib
import io
from pathlib import Path

import pytest

from asset_pipeline.errors import ConfigError
from asset_pipeline.store import LocalObjectStore, key_for
from asset_pipeline.store.fanout import fanout_levels

from .conftest import run_python


def _file(tmp_path: Path, data: bytes, name: str = "f.bin") -> tuple[Path, str]:
    p = tmp_path / name
    p.write_bytes(data)
    return p, hashlib.sha256(data).hexdigest()


def test_put_places_blob_under_its_hash_and_dedups(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "home")
    src, sha = _file(tmp_path, b"hello world" * 1000)
    assert store.put_file(src, sha) is True
    assert (tmp_path / "home" / "objects" / sha[:2] / sha).read_bytes() == src.read_bytes()
    assert store.put_file(src, sha) is False  # second put writes nothing
    assert store.exists(sha) and store.size(sha) == 11000
    assert store.read_bytes(sha) == src.read_bytes()
    assert list(store.iter_hashes()) == [sha]
    assert store.delete(sha) is True and not store.exists(sha) and store.delete(sha) is False


def test_put_stream_hashes_while_writing(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    data = b"x" * (3 * 1024 * 1024 + 17)
    sha, size, written = store.put_stream(io.BytesIO(data))
    assert (sha, size, written) == (hashlib.sha256(data).hexdigest(), len(data), True)
    assert store.put_stream(io.BytesIO(data))[2] is False
    assert not any(store.tmp_dir.iterdir())


def test_key_layout_rejects_non_hashes() -> None:
    sha = "ab" * 32
    assert key_for(sha) == f"objects/ab/ab/{sha}"
    assert key_for(sha, levels=1) == f"objects/ab/{sha}"
    with pytest.raises(ValueError, match="not a sha256"):
        key_for("../../etc/passwd")


def test_a_new_store_makes_one_folder_level_and_records_it(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "home")
    objects = tmp_path / "home" / "objects"
    shas = [store.put_stream(io.BytesIO(str(i).encode()))[0] for i in range(600)]
    folders = {p for p in objects.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert len(folders) <= 256 and all((objects / s[:2] / s).is_file() for s in shas)
    assert not any(p.is_dir() for f in folders for p in f.iterdir())  # no second level
    assert (objects / ".fanout").read_text() == "1\n"
    again = LocalObjectStore(tmp_path / "home")
    assert again.levels == 1 and all(again.exists(s) for s in shas)
    assert list(again.iter_hashes()) == sorted(shas)


def test_a_store_made_with_two_folder_levels_keeps_them(tmp_path: Path) -> None:
    """A store written before `.fanout` existed: its blobs stay where they are and are found."""
    old = b"stored by an older version"
    old_sha = hashlib.sha256(old).hexdigest()
    blob = tmp_path / "objects" / old_sha[:2] / old_sha[2:4] / old_sha
    blob.parent.mkdir(parents=True)
    blob.write_bytes(old)
    store = LocalObjectStore(tmp_path)
    assert store.levels == 2 and store.exists(old_sha) and store.read_bytes(old_sha) == old
    new_sha = store.put_stream(io.BytesIO(b"stored now"))[0]
    assert (tmp_path / "objects" / new_sha[:2] / new_sha[2:4] / new_sha).read_bytes() == b"stored now"
    assert list(store.iter_hashes()) == sorted([old_sha, new_sha])
    assert (tmp_path / "objects" / ".fanout").read_text() == "2\n"


def test_a_recorded_fanout_wins_and_a_bad_one_is_named(tmp_path: Path) -> None:
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / ".fanout").write_text("2\n")
    assert LocalObjectStore(tmp_path).levels == 2  # an empty store that recorded two levels
    for bad, shown in (("3\n", "'3'"), ("", "''")):
        (tmp_path / "objects" / ".fanout").write_text(bad)
        with pytest.raises(ConfigError, match=rf"objects/\.fanout: the store's fan-out must be 1 or 2, found {shown}"):
            LocalObjectStore(tmp_path)


def test_a_store_without_fanout_is_read_by_what_it_holds(tmp_path: Path) -> None:
    """No `.fanout`: an `objects/` this process did not make is an older version's (two levels,
    even while it holds no blob yet: that version may still write to it), unless a blob file
    sits right under a fan-out folder (a one-level store whose marker was lost)."""
    (tmp_path / "old" / "objects" / ".tmp").mkdir(parents=True)  # an older version's empty store
    assert LocalObjectStore(tmp_path / "old").levels == 2
    one = LocalObjectStore(tmp_path / "one")
    sha = one.put_stream(io.BytesIO(b"one level"))[0]
    (tmp_path / "one" / "objects" / ".fanout").unlink()  # e.g. copied with `cp -r objects/*`
    again = LocalObjectStore(tmp_path / "one")
    assert again.levels == 1 and again.exists(sha) and list(again.iter_hashes()) == [sha]
    assert (tmp_path / "one" / "objects" / ".fanout").read_text() == "1\n"


def test_a_store_whose_fanout_cannot_be_written_still_opens(tmp_path: Path) -> None:
    """A store this process cannot write to (here: its temp folder's name is taken by a file)
    gets the answer its blobs give, and nothing is recorded."""
    old = b"stored by an older version"
    sha = hashlib.sha256(old).hexdigest()
    (tmp_path / "objects" / sha[:2] / sha[2:4]).mkdir(parents=True)
    (tmp_path / "objects" / sha[:2] / sha[2:4] / sha).write_bytes(old)
    (tmp_path / "objects" / ".tmp").write_bytes(b"")
    assert fanout_levels(tmp_path / "objects", tmp_path / "objects" / ".tmp") == 2
    assert not (tmp_path / "objects" / ".fanout").exists()


def test_a_stray_file_named_like_a_fanout_folder_holds_no_blobs(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    sha = store.put_stream(io.BytesIO(b"a blob"))[0]
    (tmp_path / "objects" / ("00" if sha[:2] != "00" else "01")).write_bytes(b"not a folder")
    assert list(store.iter_hashes()) == [sha]


def test_missing_blob_raises_file_not_found(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    with pytest.raises(FileNotFoundError):
        store.open("0" * 64)
    with pytest.raises(FileNotFoundError):
        store.size("0" * 64)


def test_crash_in_the_middle_of_a_blob_write_leaves_no_blob_under_the_key(tmp_path: Path) -> None:
    # 150 MB: the copy runs in 64 MB chunks, and the failpoint kills the process after the first.
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for i in range(150):
            f.write(bytes([i % 251]) * (1024 * 1024))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    code = (f"from pathlib import Path; from asset_pipeline.store import LocalObjectStore;"
            f"LocalObjectStore(Path({str(tmp_path / 'home')!r})).put_file(Path({str(src)!r}), {sha!r})")
    proc = run_python(code, env={"ASSET_PIPELINE_CRASH_AT": "blob-write"})
    assert proc.returncode == 137, proc.stderr
    leftovers = list((tmp_path / "home" / "objects" / ".tmp").iterdir())
    assert leftovers and leftovers[0].stat().st_size < src.stat().st_size  # partial, and only in .tmp
    store = LocalObjectStore(tmp_path / "home")
    assert not store.exists(sha)
    assert not list(store.tmp_dir.iterdir())  # its writer is dead: the next open removes it
    assert store.put_file(src, sha) is True
    assert store.size(sha) == src.stat().st_size


def test_racing_writers_of_the_same_content_report_exactly_one_write(tmp_path: Path) -> None:
    """Ingest workers store what they hashed without coordinating: the dedup count must still be exact."""
    import threading

    store = LocalObjectStore(tmp_path / "home")
    data = bytes(range(256)) * 32768  # 8 MiB: long enough for the writes to overlap
    sha = hashlib.sha256(data).hexdigest()
    start = threading.Barrier(8)
    results: list[bool] = []

    def put() -> None:
        start.wait()
        results.append(store.put_bytes(data, sha))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1 and len(results) == 8
    assert store.read_bytes(sha) == data
    assert list((tmp_path / "home" / "objects" / ".tmp").iterdir()) == []


def test_an_input_removed_after_it_was_hashed_is_not_adopted_or_copied(tmp_path: Path) -> None:
    """Adopting a consumed input through the descriptor it was hashed through, after its last name
    went: the store says it changed (the caller then leaves it not ready) instead of "cannot
    share, copy instead" — a copy would read whatever file now has that name."""
    import os

    from asset_pipeline.filestamp import FileStamp
    from asset_pipeline.store.local import InputChanged

    src = tmp_path / "render.png"
    src.write_bytes(b"hashed bytes" * 100)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    store = LocalObjectStore(tmp_path / "home")
    store._can_clone = False  # a reflink filesystem clones the open file; this is about the hard link
    fd = os.open(src, os.O_RDONLY)
    try:
        src.unlink()
        with pytest.raises(InputChanged, match="removed after it was hashed"):
            store.adopt(fd, sha, FileStamp.of(os.fstat(fd)), give_inode=True)
    finally:
        os.close(fd)
    assert not store.exists(sha) and os.listdir(store.tmp_dir) == []


def test_a_consumed_input_is_linked_under_its_key_only_while_unwritten(tmp_path: Path) -> None:
    """Consume mode's hard link: the input's own inode, read-only, under its key — and nothing
    published when the input was written after it was hashed."""
    import os
    import stat

    from asset_pipeline.filestamp import FileStamp
    from asset_pipeline.store.local import InputChanged

    store = LocalObjectStore(tmp_path / "home")
    store._can_clone = False  # a reflink filesystem clones instead; this is about the hard link

    def appended(src: Path) -> None:  # the generator writes on after the hash
        with open(src, "ab") as f:
            f.write(b"more")

    def rewritten_in_place(src: Path) -> None:  # same size, mtime put back: only the ctime tells
        st = os.stat(src)
        src.write_bytes(src.read_bytes().upper())
        os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))

    for change in (appended, rewritten_in_place):
        src, sha = _file(tmp_path, b"hashed bytes" * 100)
        stamp = FileStamp.of(os.stat(src))
        change(src)
        fd = os.open(src, os.O_RDONLY)
        try:
            with pytest.raises(InputChanged, match="changed after it was hashed"):
                store.adopt(fd, sha, stamp, give_inode=True)
        finally:
            os.close(fd)
        assert not store.exists(sha), change.__name__

    src, sha = _file(tmp_path, b"final bytes" * 100)
    twin, _ = _file(tmp_path, b"final bytes" * 100, "twin.bin")
    for path, expected in ((src, (True, "linked")), (twin, (False, "present"))):
        fd = os.open(path, os.O_RDONLY)
        try:
            assert store.adopt(fd, sha, FileStamp.of(os.fstat(fd)), give_inode=True) == expected
        finally:
            os.close(fd)
    blob = os.stat(store.path(sha))
    assert blob.st_ino == os.stat(src).st_ino and stat.S_IMODE(blob.st_mode) == 0o444
    assert store.read_bytes(sha) == b"final bytes" * 100 and os.listdir(store.tmp_dir) == []
