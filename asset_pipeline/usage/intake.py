"""Usage events from application logs: JSONL or Parquet files dropped in ``<home>/usage_inbox``.

Good rows land in `usage_events` (one commit per run); each bad row, and each row naming an asset
that does not exist, gets a `usage_errors` row with the file, line and field. A processed file
moves to ``usage_inbox/.done/<name>.<content hash>`` only after its rows are committed, so a crash
re-reads it and a rotated file of the same name never overwrites an earlier one.

Only the very file that was read moves: a log rotated under the same name, or lines appended,
between the read and the move stay in the inbox for the next run (locally the file is first
renamed to a claim name in the inbox and checked to be the inode, size and mtime read; on S3 the
copy and the delete are conditional on the ETag read). Whatever crashes, every file is either in
the inbox, still to be read, or in `.done` with its rows committed.

Event ids come from the row's content (and how many identical rows precede it in the same file),
never from the file name or line: a re-read, a re-delivered file or a log re-exported with more
lines adds nothing twice, and a new file that reuses a rotated name loses nothing. Rows are merged
on (day, event_id), so two intake runs over the same files at once add each event once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from asset_pipeline.failpoints import failpoint
from asset_pipeline.location import FileEntry, Location
from asset_pipeline.names import NAME_MAX, fit_name, shown
from asset_pipeline.tables import Tables
from asset_pipeline.usage.events import InvalidEvent, make_event

SUFFIXES = (".jsonl", ".ndjson", ".parquet")
# The mark a claim adds to a file's stem: shorter than the `.<hash16>` of a `.done` name, so a name
# that fits there fits as a claim.
_CLAIM = re.compile(r"\.claim-[0-9a-f]{8}$")


@dataclass
class IntakeSummary:
    files: list[str] = field(default_factory=list)
    events: int = 0
    bad_rows: int = 0
    unknown_assets: int = 0
    errors: list[dict] = field(default_factory=list)
    # Logs whose rows are committed but which stay in the usage inbox, to be read again (adding
    # nothing twice): changed since they were read, or they could not be moved (the reason).
    left: list[str] = field(default_factory=list)


def pending_files(inbox: Location) -> list[FileEntry]:
    """Log files waiting in the usage inbox (hidden files and `.done/` left out). Locally listed
    with os.scandir: a name that is not UTF-8 comes as surrogates (pyarrow's listing raised on
    it); its rows and its `.done` copy carry it shown with the bad bytes escaped (`log_name`)."""
    if inbox.is_s3:
        return inbox.list(SUFFIXES)
    try:
        with os.scandir(inbox.path) as entries:
            found = [FileEntry(e.name, (st := e.stat(follow_symlinks=False)).st_size, st.st_mtime_ns)
                     for e in entries if not e.name.startswith(".") and e.name.endswith(SUFFIXES)
                     and e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    return sorted(found, key=lambda e: e.name)


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
    listed = [f.name for f in pending_files(inbox)]
    failpoint("usage-listed")
    read: dict[str, tuple[bytes, str]] = {}
    for name in listed:
        try:
            read[name] = read_identified(inbox / name)
        except FileNotFoundError:
            continue  # moved by an intake running beside this one
    files = list(read)
    summary = IntakeSummary(files=[shown(name) for name in files])
    if not files:
        return summary
    data = {name: read[name][0] for name in files}
    by_file = {name: _records(name, data[name]) for name in files}
    # Only the ids these rows name are looked up (not every id of the catalog).
    named = sorted({d["asset_id"] for records in by_file.values() for _, d, _ in records
                    if isinstance(d, dict) and isinstance(d.get("asset_id"), str)})
    known = set(tables.read_keyed("assets", "id", named, columns=["id"])["id"].to_pylist())
    good, now = [], datetime.now(UTC)
    hashes = {}
    for name, records in by_file.items():
        hashes[name] = hashlib.sha256(data[name]).hexdigest()
        source = log_name(name)
        for (line, doc, raw), row_id in zip(records, _content_ids(records, hashes[name])):
            try:
                if doc is None:
                    raise InvalidEvent("row is not a JSON object" if line else raw, "row")
                event = make_event(doc.get("asset_id"), doc.get("action"), doc.get("user_id"), doc.get("context"),
                                   doc.get("at"), doc.get("version"), doc.get("collection_id"),
                                   source=source)
                if event["asset_id"] not in known:
                    summary.unknown_assets += 1
                    raise InvalidEvent(f"asset_id {event['asset_id']!r} does not exist", "asset_id")
            except InvalidEvent as exc:
                summary.bad_rows += 1
                summary.errors.append({"error_id": row_id, "source": source, "line": line, "field": exc.field,
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
        source = log_name(name)
        # same content twice is the same name: nothing to keep apart
        try:
            if retire(inbox / name, done / _marked(source, hashes[name][:16]), read[name][1]) is False:
                summary.left.append(f"{source}: changed since it was read")
        except OSError as exc:  # its rows are committed; it stays to be read again (adding nothing)
            summary.left.append(f"{source}: {exc}")
            logging.getLogger(__name__).warning("usage log %s stays in the inbox: %s", source, exc)
    return summary


def _marked(name: str, mark: str) -> str:
    """`<stem>.<mark><suffix>`, the stem cut short (with a digest) where the whole would not fit a
    file name."""
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    extra = len(f".{mark}{dot}{suffix}".encode())
    return f"{fit_name(stem, NAME_MAX - extra)}.{mark}{dot}{suffix}"


def log_name(name: str) -> str:
    """The name the application gave the file (a claim left in the inbox keeps its mark), as
    text: bytes that are not UTF-8 shown escaped (`\\xNN`)."""
    stem, dot, suffix = shown(name).rpartition(".")
    return f"{_CLAIM.sub('', stem)}{dot}{suffix}" if dot else shown(name)


def read_identified(file: Location) -> tuple[bytes, str]:
    """The file's bytes and which file they came from: the (device, inode, size, mtime) of the
    descriptor read, locally; the ETag of the object read, on S3."""
    if not file.is_s3:  # the stamp before the read, and the size read: lines appended meanwhile show
        with open(file.path, "rb") as f:
            st = os.fstat(f.fileno())
            data = f.read()
        return data, _identity(st, len(data))
    from botocore.exceptions import ClientError

    try:
        got = file.s3.boto3.get_object(Bucket=file.bucket, Key=file.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(file.uri) from exc
        raise
    return got["Body"].read(), got["ETag"]


def retire(file: Location, dest: Location, read_as: str) -> bool | None:
    """Move a processed file to `dest` only if it still is the file read (`read_as`, from
    `read_identified`): True once moved; None when it is gone (another intake moved it); False
    when it is another file now (rotated in under the same name, or appended to), which then
    stays in the inbox to be read — under a claim name (`<stem>.claim-<hex><suffix>`; its rows
    still name the log as written).

    Logs must be complete when they land (written elsewhere and renamed in, or rotated): a writer
    that still appends through an open descriptor follows the file wherever it is renamed. Lines
    appended just before the move are caught by a second check after it."""
    if file.is_s3:
        return _retire_object(file, dest, read_as)
    claimed = file.path.with_name(_marked(log_name(file.name), f"claim-{uuid.uuid4().hex[:8]}"))
    try:  # the claim is still a pending file: a crash from here on leaves it to be read again
        os.rename(file.path, claimed)
    except FileNotFoundError:
        return None
    failpoint("usage-claimed")
    if not _still(claimed, read_as):
        return _changed_or_gone(claimed)
    failpoint("usage-checked")
    dest.path.parent.mkdir(parents=True, exist_ok=True)
    if dest.path.is_file() and not dest.path.is_symlink():  # the same bytes are archived (the name is their hash)
        if not _still(claimed, read_as):  # appended since the check: it stays to be read
            return _changed_or_gone(claimed)
        os.unlink(claimed)
        return True
    # A rename, not a hard link: it needs only the folder's write permission (a link of another
    # user's log is refused under fs.protected_hardlinks) and works on file systems without links.
    os.rename(claimed, dest.path)
    if _still(dest.path, read_as):
        return True
    os.rename(dest.path, claimed)  # appended between the check and the move: back, to be read again
    return False


def _changed_or_gone(claimed: os.PathLike[str]) -> bool | None:
    """`retire`'s answer for a claim that is no longer the file read: False while it is there
    (another file now, left to be read), None once it is gone (another intake retired it)."""
    return False if os.path.lexists(claimed) else None


def _still(path: os.PathLike[str], read_as: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:  # another intake read the claim and retired it meanwhile
        return False
    return _identity(st, st.st_size) == read_as


def _identity(st: os.stat_result, size: int) -> str:
    """Which local file a log's bytes are: device, inode, size (the bytes read) and mtime."""
    return f"{st.st_dev}:{st.st_ino}:{size}:{st.st_mtime_ns}"


def _retire_object(file: Location, dest: Location, etag: str) -> bool | None:
    """Copy, then delete, each only if the object still has the ETag read. (An S3 emulator that
    ignores the copy's condition may copy newer bytes under the old hash; the delete's condition
    still keeps the newer object in the inbox.)"""
    from botocore.exceptions import ClientError

    client = file.s3.boto3
    try:
        client.copy_object(Bucket=dest.bucket, Key=dest.key, CopySource={"Bucket": file.bucket, "Key": file.key},
                           CopySourceIfMatch=etag)
        client.delete_object(Bucket=file.bucket, Key=file.key, IfMatch=etag)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("NoSuchKey", "404"):
            return None
        if code in ("PreconditionFailed", "412"):
            return False
        raise
    return True
