"""Usage events from application logs: JSONL or Parquet files dropped in ``<home>/usage_inbox``.

Good rows land in `usage_events` (one commit per run); each bad row, and each row naming an asset
that does not exist, gets a `usage_errors` row with the file, line and field. A processed file
moves to ``usage_inbox/.done/<name>.<content hash>`` only after its rows are committed, so a crash
re-reads it and a rotated file of the same name never overwrites an earlier one.

Event ids come from the row's content (and how many identical rows precede it in the same file),
never from the file name or line: a re-read, a re-delivered file or a log re-exported with more
lines adds nothing twice, and a new file that reuses a rotated name loses nothing. Rows are merged
on (day, event_id), so two intake runs over the same files at once add each event once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from asset_pipeline.failpoints import failpoint
from asset_pipeline.location import FileEntry, Location
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


def pending_files(inbox: Location) -> list[FileEntry]:
    """Log files waiting in the usage inbox (hidden files and `.done/` left out)."""
    return inbox.list(SUFFIXES)


def _records(name: str, data: bytes) -> list[tuple[int, dict | None, str]]:
    """(line number, record or None, raw text) for every row of the file."""
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(pa.BufferReader(data)).to_pylist()
        except Exception as exc:  # an unreadable Parquet file is one bad "row"
            return [(0, None, f"unreadable parquet: {exc}")]
        return [(i + 1, r, json.dumps(r, default=str)[:500]) for i, r in enumerate(rows)]
    out = []
    for i, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
            out.append((i, doc if isinstance(doc, dict) else None, line.strip()[:500]))
        except json.JSONDecodeError:
            out.append((i, None, line.strip()[:500]))
    return out


def _content_ids(records: list[tuple[int, dict | None, str]], file_sha: str) -> list[str]:
    """One id per row from what it says: its canonical JSON plus how many identical rows came
    before it in this file (two identical lines in one file are two events). A row that is not
    an object is identified by its text, or by the file's content when the file was unreadable."""
    seen: dict[str, int] = {}
    ids = []
    for line, doc, raw in records:
        text = json.dumps(doc, sort_keys=True, default=str) if doc is not None else (raw if line else file_sha)
        k = seen.get(text, 0)
        seen[text] = k + 1
        ids.append(hashlib.sha256(f"{text}\x00{k}".encode()).hexdigest()[:32])
    return ids


def ingest_usage_files(tables: Tables, inbox: Location) -> IntakeSummary:
    files = [f.name for f in pending_files(inbox)]
    summary = IntakeSummary(files=files)
    if not files:
        return summary
    data = {name: (inbox / name).read_bytes() for name in files}
    by_file = {name: _records(name, data[name]) for name in files}
    # Only the ids these rows name are looked up (not every id of the catalog).
    named = sorted({d["asset_id"] for records in by_file.values() for _, d, _ in records
                    if isinstance(d, dict) and isinstance(d.get("asset_id"), str)})
    known = set(tables.read_keyed("assets", "id", named, columns=["id"])["id"].to_pylist())
    good, now = [], datetime.now(UTC)
    hashes = {}
    for name, records in by_file.items():
        hashes[name] = hashlib.sha256(data[name]).hexdigest()
        for (line, doc, raw), row_id in zip(records, _content_ids(records, hashes[name])):
            try:
                if doc is None:
                    raise InvalidEvent("row is not a JSON object" if line else raw, "row")
                event = make_event(doc.get("asset_id"), doc.get("action"), doc.get("user_id"), doc.get("context"),
                                   doc.get("at"), doc.get("version"), doc.get("collection_id"), source=name)
                if event["asset_id"] not in known:
                    summary.unknown_assets += 1
                    raise InvalidEvent(f"asset_id {event['asset_id']!r} does not exist", "asset_id")
            except InvalidEvent as exc:
                summary.bad_rows += 1
                summary.errors.append({"error_id": row_id, "source": name, "line": line, "field": exc.field,
                                       "reason": exc.reason, "raw": raw, "recorded_at": now})
                continue
            event["event_id"] = row_id
            good.append(event)
    failpoint("usage-merge")
    if good:
        result = tables.merge("usage_events", good, keys=("day", "event_id"), update=False)
        summary.events = int(result.get("num_target_rows_inserted", 0))
    tables.merge("usage_errors", summary.errors, keys=("error_id",), update=False)
    failpoint("usage-before-done")
    done = inbox / ".done"
    for name in files:
        stem, dot, suffix = name.rpartition(".")
        try:  # same content twice is the same name: nothing to keep apart
            (inbox / name).move_to(done / f"{stem}.{hashes[name][:16]}{dot}{suffix}")
        except FileNotFoundError:
            pass  # a concurrent intake moved it already
    return summary
