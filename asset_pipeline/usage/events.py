"""Usage events: validated, buffered, and written to the day-partitioned `usage_events` Delta table
in batches — one commit per flush, never one file per event."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from asset_pipeline.errors import AssetNotFound, InvalidEvent
from asset_pipeline.tables import Tables

ACTIONS = ("view", "download", "embed", "transform")
FLUSH_EVERY = 10_000
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(days=1)  # an event may be stamped this far ahead of our clock, no further


def parse_time(value: Any, field: str = "at") -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidEvent(f"'{field}' is not a possible Unix time: {value!r}", field) from exc
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidEvent(f"'{field}' is not an ISO 8601 time: {value!r}", field) from exc
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    raise InvalidEvent(f"'{field}' must be a time, got {type(value).__name__}", field)


def make_event(asset_id: Any, action: Any, user_id: Any, context: Any = None, at: Any = None,
               version: Any = None, collection_id: Any = None, source: str = "api") -> dict:
    """A validated event row (the asset's existence is checked by the caller, in bulk)."""
    if not isinstance(asset_id, str) or not asset_id:
        raise InvalidEvent("'asset_id' must be a non-empty string", "asset_id")
    if action not in ACTIONS:
        raise InvalidEvent(f"'action' must be one of {', '.join(ACTIONS)}; got {action!r}", "action")
    if not isinstance(user_id, str) or not user_id.strip():
        raise InvalidEvent("'user_id' must be a non-empty string", "user_id")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise InvalidEvent(f"'version' must be a positive integer, got {version!r}", "version")
    if context is not None and not isinstance(context, (dict, str)):
        raise InvalidEvent("'context' must be an object", "context")
    if collection_id is not None and (not isinstance(collection_id, str) or not collection_id.strip()):
        raise InvalidEvent(f"'collection_id' must be a non-empty string, got {collection_id!r}", "collection_id")
    now = datetime.now(UTC)
    when = parse_time(at) if at is not None else now
    when = when.astimezone(UTC)
    if when > now + CLOCK_SKEW:
        raise InvalidEvent(f"'at' is in the future: {when.isoformat()} (usage is recorded when it happens; a "
                           "backfill places events in the past)", "at")
    if when < EARLIEST:
        raise InvalidEvent(f"'at' is before 1970: {when.isoformat()}", "at")
    return {
        "event_id": uuid.uuid4().hex, "asset_id": asset_id, "version": version, "action": action,
        "user_id": user_id.strip(), "collection_id": collection_id,
        "context": context if isinstance(context, str) or context is None else json.dumps(context, sort_keys=True),
        "at": when, "day": when.date(), "source": source, "recorded_at": datetime.now(UTC),
    }


@dataclass
class UsageBuffer:
    """Events wait in memory until `flush()` (or FLUSH_EVERY of them): one Delta commit per flush."""

    tables: Tables
    flush_every: int = FLUSH_EVERY

    def __post_init__(self) -> None:
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._collections: set[str] = set()

    def _check_asset(self, asset_id: str) -> None:
        if asset_id in self._known:
            return
        self._known = set(self.tables.read("assets", columns=["id"])["id"].to_pylist())
        if asset_id not in self._known:
            raise AssetNotFound(f"no asset with id {asset_id!r}: usage was not recorded")

    def _check_collection(self, collection_id: str | None) -> None:
        from asset_pipeline.collections import CollectionNotFound

        if collection_id is None or collection_id in self._collections:
            return
        self._collections = set(self.tables.read("collections", columns=["id"])["id"].to_pylist())
        if collection_id not in self._collections:
            raise CollectionNotFound(f"no collection with id {collection_id!r}: usage was not recorded")

    def record(self, asset_id: str, action: str, user_id: str, context: Any = None, at: Any = None,
               version: int | None = None, collection_id: str | None = None) -> dict:
        event = make_event(asset_id, action, user_id, context, at, version, collection_id)
        self._check_asset(asset_id)
        self._check_collection(collection_id)
        with self._lock:
            self._rows.append(event)
            full = len(self._rows) >= self.flush_every
        if full:
            self.flush()
        return event

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            try:
                self.tables.append("usage_events", rows)
            except BaseException:
                with self._lock:
                    self._rows[:0] = rows  # keep them for the next flush
                raise
        return len(rows)

    @property
    def pending(self) -> int:
        return len(self._rows)
