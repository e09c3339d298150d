"""Model recall: take down everything a model (or adapter) produced in one audited step.

A recall soft-deletes every active or archived asset with a version made by the model, through
the lifecycle: audit rows in `lifecycle_actions` (policy ``recall:<model>``, partition the recall
id), then the status. The grace period then runs as for any delete — until the sweep hard-deletes
them, `undo_recall` (or `undelete` per asset) brings them back. A dry run records what it would
take and touches nothing. Each request is a row in `recalls` with its reason and requester.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asset_pipeline.errors import LifecycleError, RecallError
from asset_pipeline.failpoints import failpoint
from asset_pipeline.lifecycle.actions import Lifecycle, action_id
from asset_pipeline.provenance.lineage import produced_by
from asset_pipeline.tables import Tables


@dataclass
class RecallResult:
    recall_id: str
    model: str
    reason: str
    dry_run: bool
    taken: list[dict[str, Any]] = field(default_factory=list)        # assets deleted (or that would be)
    already_deleted: list[str] = field(default_factory=list)
    bytes: int = 0

    @property
    def asset_ids(self) -> list[str]:
        return [a["asset_id"] for a in self.taken]


def _required(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RecallError(f"recall needs a non-empty '{name}', got {value!r}")
    return value.strip()


def recall(lifecycle: Lifecycle, model: str, reason: str, by: str, dry_run: bool = False,
           run_id: str = "api") -> RecallResult:
    """Soft-delete every asset produced by `model` (see the module docstring)."""
    tables: Tables = lifecycle.tables
    model, reason, by = _required(model, "model"), _required(reason, "reason"), _required(by, "by")
    now = datetime.now(UTC)
    recall_id = "r_" + action_id(now.isoformat(), model, reason, by, dry_run)[:20]
    found = produced_by(tables, model)
    take = [a for a in found if a["status"] in ("active", "archived")]
    result = RecallResult(recall_id, model, reason, dry_run, take,
                          [a["asset_id"] for a in found if a["status"] == "deleted"],
                          sum(a["bytes"] for a in take))
    policy = f"recall:{model}"
    if not dry_run:  # archived bytes come back hot first: a recalled asset stays undeletable
        for asset in (a for a in take if a["status"] == "archived"):
            for v in lifecycle._versions("a.id = ?", [asset["asset_id"]]):
                if v["status"] != "pruned":
                    lifecycle._copy(v["sha256"], lifecycle.archive_store, lifecycle.hot_store)
    lifecycle.apply("delete", result.asset_ids, policy=policy, partition=recall_id, run_id=run_id, by=by,
                    dry_run=dry_run)
    tables.append("recalls", [{
        "recall_id": recall_id, "model": model, "reason": reason, "by": by, "dry_run": dry_run,
        "assets": len(take), "asset_ids": result.asset_ids, "bytes": result.bytes, "requested_at": now,
        "run_id": run_id}])
    return result


def undo_recall(lifecycle: Lifecycle, recall_id: str, grace_period_days: float, by: str) -> list[str]:
    """Undelete the assets a recall took that are still deleted (within the grace period)."""
    rows = lifecycle.tables.read("recalls", where="recall_id = ?", params=[recall_id]).to_pylist()
    if not rows:
        raise RecallError(f"no recall with id {recall_id!r}")
    if rows[0]["dry_run"]:
        raise RecallError(f"recall {recall_id} was a dry run: it took nothing")
    restored = []
    for asset_id in rows[0]["asset_ids"] or []:
        failpoint("undo-recall-asset")
        try:  # the undelete checks the status under the lifecycle lock, not a read made before it
            lifecycle.undelete(asset_id, grace_period_days, by=by)
        except LifecycleError:
            if lifecycle._asset(asset_id)["status"] != "deleted":
                continue  # not deleted (any more): someone restored it; nothing of this undo's to do
            raise
        restored.append(asset_id)
    return restored
