"""The hash cache: (device, inode, size, mtime_ns, ctime_ns) → sha256 of files in a kept inbox.

A watch folder that other tools own is re-scanned without re-reading what did not change: an
input whose stamp and whose sidecar's stamp match the cache, and whose content the tables still
hold as a version of the asset it was committed to, costs two stats (from the listing) and a
lookup — nothing is opened. With only the media's stamp matching (the sidecar was rewritten),
the sidecar is read again but the file is not hashed. ctime is part of the key because the
kernel moves it on every write and nothing can move it back, so restoring mtime (`touch -r`,
`rsync -t`, `os.utime`) after changing the content does not fool it. `--verify` re-hashes
everything and rewrites the entries.

Rejects are remembered too (a table of their own, keyed by inbox path): a kept inbox shows its
bad files to every scan, and re-reading and re-validating each of them per scan made the scan's
cost grow with what was refused before. An entry holds only while the file's and sidecar's
stamps and the `checks` that refused it (the validation limits, a digest of this package's code
and its decoders' releases) are unchanged, since a changed setting or an upgrade may admit the
file. Only rejections that the input's own bytes decided are remembered (see
`ingest._rememberable`), never one that depends on the tables (a sidecar naming an asset that may
exist by the next scan) or on a failure outside the file.

One SQLite file per host under ``<home>/cache/`` (device and inode numbers mean nothing on another
machine); SQLite's own locking lets concurrent ingests share it. Entries are written only for
inputs whose commit succeeded, so the cache never claims more than the tables hold. Only the
ingest's main process opens it (never a forked worker).
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from asset_pipeline.filestamp import FileStamp

_SCHEMA = """create table if not exists inputs (
    dev integer not null, ino integer not null, size integer not null, mtime_ns integer not null,
    ctime_ns integer not null, sha256 text not null, sidecar text not null, asset_id text not null,
    primary key (dev, ino)) without rowid"""
_REJECTS_SCHEMA = """create table if not exists rejects (
    rel text not null primary key, dev integer not null, ino integer not null, size integer not null,
    mtime_ns integer not null, ctime_ns integer not null, sidecar text not null, checks text not null,
    reason text not null, field text) without rowid"""
_LOOKUP_SLICE = 500  # inodes or paths per query, far under SQLite's limit of parameters


def _slices(values: list) -> Iterator[tuple[list, str]]:
    """`values` in slices of `_LOOKUP_SLICE`, each with its ``?, ?, …`` placeholders."""
    for start in range(0, len(values), _LOOKUP_SLICE):
        part = values[start:start + _LOOKUP_SLICE]
        yield part, ", ".join("?" * len(part))


@dataclass(frozen=True)
class Known:
    """What the cache remembers of an input: its content's hash, its sidecar's stamp (a
    `FileStamp.key`, '' without one) and the asset it was committed to."""

    sha256: str
    sidecar: str
    asset_id: str


@dataclass(frozen=True)
class Refused:
    """A reject the cache remembers: why the input was refused, and the field at fault."""

    reason: str
    field: str | None


def cache_file(home: Path) -> Path:
    """``<home>/cache/hashes-<host>.sqlite``."""
    return Path(home) / "cache" / f"hashes-{socket.gethostname()}.sqlite"


class HashCache:
    """Lookups and writes in batches; one connection, closed with `close()` (or `with`)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")  # a lost entry only costs a re-hash
        self._db.execute(_SCHEMA)
        self._db.execute(_REJECTS_SCHEMA)
        self._db.execute("create index if not exists rejects_by_checks on rejects (checks)")

    def lookup(self, stamps: Iterable[tuple[str, FileStamp]]) -> dict[str, Known]:
        """{key: Known} for the (key, stamp) pairs whose stamp the cache holds exactly: one query
        per device and `_LOOKUP_SLICE` inodes (a query per file cost a re-scan of 20,000 inputs
        0.15 s; `ino in (...)` under one `dev` is a search of the key, where a row-value
        `(dev, ino) in (values ...)` scans the whole table)."""
        by_file: dict[tuple[int, int], list[tuple[str, FileStamp]]] = {}
        for key, st in stamps:  # hard links: one file under several inbox paths
            by_file.setdefault((st.dev, st.ino), []).append((key, st))
        inodes: dict[int, list[int]] = {}
        for dev, ino in by_file:
            inodes.setdefault(dev, []).append(ino)
        found: dict[str, Known] = {}
        for dev, numbers in inodes.items():
            numbers.sort()  # slices of neighbouring keys: each query reads fewer pages of the index
            for part, marks in _slices(numbers):
                query = ("select ino, size, mtime_ns, ctime_ns, sha256, sidecar, asset_id from inputs "
                         f"where dev = ? and ino in ({marks})")
                for ino, size, mtime_ns, ctime_ns, sha256, sidecar, asset_id in self._db.execute(query, [dev, *part]):
                    for key, st in by_file[(dev, ino)]:
                        if st.size == size and st.mtime_ns == mtime_ns and st.ctime_ns == ctime_ns:
                            found[key] = Known(sha256, sidecar, asset_id)
        return found

    def remember(self, entries: Iterable[tuple[FileStamp, str, FileStamp | None, str]]) -> int:
        """Record (stamp, sha256, sidecar stamp, asset id) of committed inputs in one transaction;
        a file's older entry is replaced."""
        rows = [(st.dev, st.ino, st.size, st.mtime_ns, st.ctime_ns, sha, side.key if side else "", asset)
                for st, sha, side, asset in entries]
        if rows:
            self._db.execute("begin")
            self._db.executemany("insert or replace into inputs values (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("commit")
        return len(rows)

    def refused(self, inputs: Iterable[tuple[str, FileStamp, FileStamp | None]], checks: str) -> dict[str, Refused]:
        """{inbox path: Refused} for the (path, stamp, sidecar stamp) inputs the cache remembers
        refusing under these `checks`, with both stamps exactly as they were then. A batch that
        outnumbers the rejects remembered under `checks` reads those in one query (by the index
        on `checks`, never more rows than asked about); otherwise one query per slice of paths.
        (Rows of paths that left the inbox stay: neither way reads them all.)"""
        wanted = {rel: (st, side) for rel, st, side in inputs}
        found: dict[str, Refused] = {}
        if not wanted:
            return found
        columns = "rel, dev, ino, size, mtime_ns, ctime_ns, sidecar, reason, field"
        rows: list[tuple] | None = None
        if len(wanted) > _LOOKUP_SLICE:  # a batch: when it outnumbers what is remembered, read that at once
            rows = self._db.execute(f"select {columns} from rejects where checks = ? limit ?",
                                    [checks, len(wanted) + 1]).fetchall()
            if len(rows) > len(wanted):
                rows = None
        if rows is None:  # by path (the primary key): costs what is asked, however many are remembered
            rows = []
            for part, marks in _slices(sorted(wanted)):
                rows += self._db.execute(f"select {columns} from rejects where checks = ? and rel in ({marks})",
                                         [checks, *part]).fetchall()
        for rel, *stamp, side, reason, field in rows:
            if rel not in wanted:
                continue
            st, want_side = wanted[rel]
            if tuple(stamp) == (st.dev, st.ino, st.size, st.mtime_ns, st.ctime_ns) \
                    and side == (want_side.key if want_side else ""):
                found[rel] = Refused(reason, field)
        return found

    def remember_refused(self, entries: Iterable[tuple[str, FileStamp, FileStamp | None, Refused]],
                         checks: str) -> int:
        """Record (path, stamp, sidecar stamp, Refused) of rejects whose rows are committed, in one
        transaction; a path's older entry is replaced."""
        rows = [(rel, st.dev, st.ino, st.size, st.mtime_ns, st.ctime_ns, side.key if side else "", checks,
                 refused.reason, refused.field) for rel, st, side, refused in entries]
        if rows:
            self._db.execute("begin")
            self._db.executemany("insert or replace into rejects values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("commit")
        return len(rows)

    def forget_refused(self, rels: Iterable[str]) -> int:
        """Drop the remembered rejects of these inbox paths (accepted since)."""
        paths = sorted(set(rels))
        gone = 0
        for part, marks in _slices(paths):
            gone += self._db.execute(f"delete from rejects where rel in ({marks})", part).rowcount
        return gone

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
