"""Usage events from application logs: JSONL or Parquet files dropped in ``<home>/usage_inbox``.

Good rows land in `usage_events` (one commit per run); each bad row, and each row naming an asset
that does not exist, gets a `usage_errors` row with the file, line and field. A processed file
moves to ``usage_inbox/.done/`` only after its rows are committed, so a crash re-reads it; its
event ids are derived from (file, line), so the re-read adds nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from asset_pipeline.tables import Tables
from asset_pipeline.usage.events import InvalidEvent, make_event

SUFFIXES = (".jsonl", ".ndjson", ".parquet")


@dataclass
class IntakeSummary:
    files: list[str] = field(default_factory=list)
    events: int = 0
    bad_rows: int = 0
    unknown_assets: int = 0
    errors: list[dict] = field(default_factory=list)


def pending_files(inbox: Path) -> list[Path]:
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.iterdir() if p.is_file() and p.suffix in SUFFIXES and not p.name.startswith("."))


def _records(path: Path) -> list[tuple[int, dict | None, str]]:
    """(line number, record or None, raw text) for every row of the file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:  # an unreadable Parquet file is one bad "row"
            return [(0, None, f"unreadable parquet: {exc}")]
        return [(i + 1, r, json.dumps(r, default=str)[:500]) for i, r in enumerate(rows)]
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                out.append((i, doc if isinstance(doc, dict) else None, line.strip()[:500]))
            except json.JSONDecodeError:
                out.append((i, None, line.strip()[:500]))
    return out


def ingest_usage_files(tables: Tables, inbox: Path, files: list[Path] | None = None) -> IntakeSummary:
    files = pending_files(inbox) if files is None else files
    summary = IntakeSummary(files=[f.name for f in files])
    if not files:
        return summary
    known = set(tables.read("assets", columns=["id"])["id"].to_pylist())
    existing = set(tables.read("usage_events", where="source in (select unnest(?))",
                               params=[[f.name for f in files]], columns=["event_id"])["event_id"].to_pylist())
    good, now = [], datetime.now(UTC)
    for path in files:
        for line, doc, raw in _records(path):
            try:
                if doc is None:
                    raise InvalidEvent("row is not a JSON object" if line else raw, "row")
                event = make_event(doc.get("asset_id"), doc.get("action"), doc.get("user_id"), doc.get("context"),
                                   doc.get("at"), doc.get("version"), doc.get("collection_id"), source=path.name)
                if event["asset_id"] not in known:
                    summary.unknown_assets += 1
                    raise InvalidEvent(f"asset_id {event['asset_id']!r} does not exist", "asset_id")
            except InvalidEvent as exc:
                summary.bad_rows += 1
                summary.errors.append({"error_id": hashlib.sha256(f"{path.name}\x00{line}".encode()).hexdigest()[:32],
                                       "source": path.name, "line": line, "field": exc.field, "reason": exc.reason,
                                       "raw": raw, "recorded_at": now})
                continue
            event["event_id"] = hashlib.sha256(f"{path.name}\x00{line}".encode()).hexdigest()[:32]
            if event["event_id"] not in existing:
                good.append(event)
    summary.events = tables.append("usage_events", good)
    tables.merge("usage_errors", summary.errors, keys=("error_id",), update=False)
    done = inbox / ".done"
    done.mkdir(exist_ok=True)
    for path in files:
        shutil.move(path, done / path.name)
    return summary
