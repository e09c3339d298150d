"""What a catalog keeps open between searches, so a query costs the query and nothing else.

Opening LanceDB (connect, list the tables, open one, read its manifest) and reading the assets'
statuses from Delta cost more than an ANN query at a million rows. A `SearchSession` opens each
model's table once, with LanceDB checking for newer table versions on every read (rows another
process embedded are seen at once), and keeps the ids of assets that are not active — re-read
only when the `assets` table has a new commit, which on a local home costs one stat of its log
folder per search.

Vector queries go through LanceDB's async API on the session's own event loop thread: one hand-off
per query, where the sync API makes six (each a trip to LanceDB's background loop). The loop runs
in its own thread so a caller inside a running loop (a notebook) can search too.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from asset_pipeline.location import Location
from asset_pipeline.tables import Tables

RECENT_NS = 2_000_000_000  # a log folder younger than this may change again within its mtime tick
REMOTE_REFRESH_S = 2.0     # how often a remote (non-local) home's assets log is asked for commits


class LiveStatus:
    """{asset_id: status} of assets that are not active, as the `assets` table now has them."""

    def __init__(self, tables: Tables):
        self.tables = tables
        self._table = None
        self._version = -2
        self._log_mtime = -1
        self._checked = 0.0
        self._inactive: dict[str, str] = {}
        self._rows = 0

    def _log_dir(self) -> Path | None:
        uri = str(self.tables.uri("assets"))
        return None if "://" in uri else Path(uri) / "_delta_log"

    def _maybe_changed(self) -> bool:
        """Cheap: has the assets table possibly gained a commit since the last look?"""
        log = self._log_dir()
        if log is None:
            if time.monotonic() - self._checked < REMOTE_REFRESH_S:
                return False
            self._checked = time.monotonic()
            return True
        try:
            mtime = os.stat(log).st_mtime_ns
        except FileNotFoundError:
            return self._version != -1
        changed = mtime != self._log_mtime or time.time_ns() - mtime < RECENT_NS
        self._log_mtime = mtime
        return changed

    def refresh(self) -> None:
        if not self._maybe_changed():
            return
        if self._table is None:
            self._table = self.tables.open("assets")
            if self._table is None:
                self._version, self._inactive, self._rows = -1, {}, 0
                return
        else:
            self._table.update_incremental()
        version = self._table.version()
        if version != self._version:
            rows = self.tables.read("assets", where="status <> 'active'", columns=["id", "status"])
            self._inactive = dict(zip(rows["id"].to_pylist(), rows["status"].to_pylist()))
            self._rows = self._table.count()  # from the log's file statistics: no data read
            self._version = version

    def inactive_share(self) -> float:
        """Share of the assets that are archived or deleted (0.0 while there are none)."""
        self.refresh()
        return len(self._inactive) / self._rows if self._rows else 0.0

    def of(self, asset_ids: list[str]) -> dict[str, str]:
        """Status of each id ('active' unless the table says otherwise)."""
        self.refresh()
        return {i: self._inactive.get(i, "active") for i in asset_ids}


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)


class OpenTable:
    """One model's table: the sync handle (full-text, hybrid, maintenance) and an async handle
    for nearest-neighbour queries, run on the session's loop."""

    def __init__(self, sync: Any, run: Any, async_table: Any):
        self.sync, self._run, self._async = sync, run, async_table

    def nearest(self, vector: np.ndarray, where: str | None, limit: int, columns: list[str]) -> list[dict]:
        """Rows of the `limit` nearest vectors (cosine, `_distance` included), with the
        catalog's ANN settings (`embeddings.search`)."""
        from asset_pipeline.embeddings import search as s

        async def query() -> Any:
            q = (self._async.vector_search(np.asarray(vector, dtype=np.float32)).column("vector")
                 .distance_type("cosine").nprobes(s.ANN_NPROBES).ef(max(s.ANN_EF, limit * s.ANN_REFINE))
                 .refine_factor(s.ANN_REFINE).limit(limit).select([*columns, "_distance"]))
            if where:
                q = q.where(where)
            return await q.to_arrow()

        return self._run(query()).to_pylist()


class SearchSession:
    """The LanceDB database of one home, its open tables and the assets' live statuses."""

    def __init__(self, vectors: Location, tables: Tables):
        self.vectors = vectors
        self.status = LiveStatus(tables)
        self._db = self._adb = None
        self._tables: dict[str, OpenTable] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, coro: Any) -> Any:
        """Run a coroutine on the session's loop thread (started on first use, stopped with the
        session) and wait for it."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="asset-pipeline-search", daemon=True)
            thread.start()
            self._loop = loop
            weakref.finalize(self, _stop, loop, thread)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def table(self, model_id: str) -> OpenTable | None:
        """The open table of `model_id`'s vectors, None while nothing was embedded with it."""
        from asset_pipeline.embeddings.vectors import table_name

        if model_id in self._tables:
            return self._tables[model_id]
        import lancedb

        # timedelta(0): every read checks for a newer table version (one manifest lookup).
        fresh = timedelta(0)
        where = self.vectors
        options = where.s3.lance_options() if where.is_s3 else None
        if self._db is None:
            self._db = lancedb.connect(where.uri, read_consistency_interval=fresh, storage_options=options)
        name = table_name(model_id)
        if name not in self._db.list_tables().tables:
            return None  # looked up again next time: the embedding job may create it meanwhile
        if self._adb is None:
            self._adb = self._run(lancedb.connect_async(where.uri, read_consistency_interval=fresh,
                                                        storage_options=options))
        async_table = self._run(self._adb.open_table(name))
        self._tables[model_id] = OpenTable(self._db.open_table(name), self._run, async_table)
        return self._tables[model_id]
