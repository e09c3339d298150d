"""Which inbox inputs a sensor tick should ingest, and the cursor that remembers the rest.

An input is ready when its sidecar exists (generators write it last), or, without a sidecar,
once it has sat untouched for `orphan_after_s` (then the ingest quarantines it with a reason).
The cursor is a watermark on the input's effective time (newest of file and sidecar) plus the
inputs already requested above it, so a file that becomes ready late is never skipped and a
file is never requested twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from asset_pipeline.inbox import pair_files


@dataclass
class SensorPlan:
    batches: list[list[str]]   # inbox paths per run request
    cursor: str

    @staticmethod
    def run_key(batch: list[str], listing: dict[str, tuple[int, int]]) -> str:
        text = "\n".join(f"{rel}:{listing[rel][0]}:{listing[rel][1]}" for rel in sorted(batch))
        return "inbox-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def plan_ingest_requests(listing: dict[str, tuple[int, int]], cursor: str | None, now_ns: int,
                         orphan_after_s: float = 300.0, max_batch: int = 10_000) -> SensorPlan:
    """`listing` is {inbox path: (size, mtime_ns)} of the whole inbox (sidecars included)."""
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
    return SensorPlan(batches, json.dumps({"watermark": new_watermark, "requested": keep}))
