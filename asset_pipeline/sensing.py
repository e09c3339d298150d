"""Which inbox inputs a sensor tick should ingest, and the cursor that remembers the rest.

An input is ready when its sidecar exists (generators write it last), or, without a sidecar,
once it has sat untouched for `orphan_after_s` (then the ingest quarantines it with a reason).
The cursor is a watermark on the input's effective time (newest of file and sidecar) plus the
inputs already requested above it, so a file that becomes ready late is never skipped and a
file is never requested twice.

A tick does not list the whole inbox: the cursor also holds each folder's mtime, and only
folders whose mtime moved (a file was created, renamed in or removed) are listed again, so a
tick costs a stat per folder plus what changed — not what was ingested before. A folder is
taken as settled only once its mtime is older than the timestamp granularity allows a same-tick
change to hide (`SETTLE_NS`), and never while an input in it waits for its sidecar. (A file
rewritten in place leaves its folder's mtime alone: in a kept inbox, `asset-pipeline ingest`
picks that up, with the hash cache.)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from asset_pipeline.inbox import pair_files
from asset_pipeline.sidecar import SIDECAR_SUFFIX

SETTLE_NS = 2_000_000_000


@dataclass
class SensorPlan:
    batches: list[list[str]]   # inbox paths per run request
    cursor: str

    @staticmethod
    def run_key(batch: list[str], listing: dict[str, tuple[int, int]]) -> str:
        text = "\n".join(f"{rel}:{listing[rel][0]}:{listing[rel][1]}" for rel in sorted(batch))
        # (a name that is not UTF-8 is listed with its bad bytes as surrogates: hashed as those bytes)
        return "inbox-" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def folders_in(cursor: str | None) -> dict[str, int]:
    """The folder mtimes a cursor remembers ({} for a first tick or an older cursor)."""
    return dict(json.loads(cursor).get("folders", {})) if cursor else {}


def list_changed(root: Path, folders: dict[str, int], now_ns: int,
                 orphan_after_s: float = 300.0) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    """({inbox path: (size, mtime_ns)} of the files in folders that changed since `folders`,
    the folders' new state). Every remembered folder costs one stat; only changed or new ones
    are listed. A folder is remembered as settled (its mtime) only when that mtime is older than
    SETTLE_NS and no input in it is still waiting for its sidecar; otherwise it is listed again
    next tick."""
    listing: dict[str, tuple[int, int]] = {}
    state: dict[str, int] = {}
    queue = sorted(set(folders) | {""})
    seen: set[str] = set()
    base = str(root)
    while queue:
        rel = queue.pop()
        if rel in seen:
            continue
        seen.add(rel)
        path = os.path.join(base, rel) if rel else base
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone: forgotten
        if folders.get(rel) == st.st_mtime_ns:
            state[rel] = st.st_mtime_ns
            continue
        files: dict[str, tuple[int, int]] = {}
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    try:  # as `list_local`: a link is listed (the ingest refuses it), never followed
                        if entry.is_symlink() or entry.is_file(follow_symlinks=False):
                            est = entry.stat(follow_symlinks=False)
                            files[child] = (est.st_size, est.st_mtime_ns)
                        elif entry.is_dir(follow_symlinks=False):
                            queue.append(child)
                    except FileNotFoundError:
                        continue
        except (FileNotFoundError, NotADirectoryError):
            continue
        listing.update(files)
        waiting = any(now_ns - mtime < orphan_after_s * 1e9 for name, (_, mtime) in files.items()
                      if (name.endswith(SIDECAR_SUFFIX) and name[: -len(SIDECAR_SUFFIX)] not in files)
                      or (not name.endswith(SIDECAR_SUFFIX) and name + SIDECAR_SUFFIX not in files))
        state[rel] = st.st_mtime_ns if now_ns - st.st_mtime_ns > SETTLE_NS and not waiting else -1
    return listing, state


def plan_ingest_requests(listing: dict[str, tuple[int, int]], cursor: str | None, now_ns: int,
                         orphan_after_s: float = 300.0, max_batch: int = 10_000,
                         folders: dict[str, int] | None = None) -> SensorPlan:
    """`listing` is {inbox path: (size, mtime_ns)} of the inbox (sidecars included) — all of it,
    or the changed folders' files (`list_changed`), whose new `folders` state the cursor keeps."""
    state = json.loads(cursor) if cursor else {"watermark": 0, "requested": []}
    watermark, requested = int(state["watermark"]), set(state["requested"])
    ready: list[tuple[int, str]] = []
    waiting: list[int] = []
    for rel, side, _orphan in pair_files(listing):
        effective = max(listing[rel][1], listing[side][1] if side else 0)
        if effective < watermark or f"{rel}@{effective}" in requested:
            continue
        if side is not None or now_ns - effective >= orphan_after_s * 1e9:
            ready.append((effective, rel))
        else:
            waiting.append(effective)
    requested |= {f"{rel}@{eff}" for eff, rel in ready}
    newest = max([e for e, _ in ready] + [watermark])
    new_watermark = max(watermark, min(waiting) - 1 if waiting else newest)
    # Entries below the watermark can never be candidates again: drop them, the cursor stays small.
    keep = sorted(k for k in requested if int(k.rsplit("@", 1)[1]) >= new_watermark)
    rels = [rel for _, rel in sorted(ready)]
    batches = [rels[i:i + max_batch] for i in range(0, len(rels), max_batch)]
    new_state = {"watermark": new_watermark, "requested": keep}
    if folders is not None:
        new_state["folders"] = folders
    return SensorPlan(batches, json.dumps(new_state))
