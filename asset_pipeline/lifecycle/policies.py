"""Retention policies: declared in YAML (``<home>/retention.yaml``) or Dagster run config, and
validated as a whole before anything is touched.

```yaml
grace_period_days: 30          # soft delete → hard delete; below 1 day only with allow_short_grace_period
dry_run: false                 # true: only report what would happen
max_delete_share: 0.10         # a sweep deleting more of the active assets (or bytes) is refused...
allow_mass_delete: false       # ...unless this says so
preview_new_policies: true     # a policy's first sweep with anything to act on is a dry run
policies:
  - name: archive-stale-renders
    action: archive            # archive | delete (soft)
    select:
      unused_for_days: 90      # no download/view since (or since creation when never used)
      older_than_days: 30      # created before
      project: research        # a name or a list
      type: [image, video]
      tags: [draft]            # any of
  - name: keep-last-3
    action: prune_versions     # versions older than the newest N lose their bytes after the grace period
    select: {keep_last_versions: 3, project: research}
```

Guard rails, because retention is the one place the product destroys data:
- a grace period below `MIN_GRACE_PERIOD_DAYS` (1 day) is refused unless
  `allow_short_grace_period: true` (0 days means the next sweep makes a delete unrecoverable);
- a sweep whose deletions (soft deletes by policies plus hard deletes after the grace period)
  exceed `max_delete_share` of the active assets or of their bytes fails before it changes
  anything, naming the numbers, unless `allow_mass_delete: true` (`lifecycle/guard.py`; versions
  pruned by `prune_versions` are not counted: the asset and its newest versions stay);
- a policy (any action) acts only once an earlier run recorded rows for it in an earlier
  partition: until then each sweep runs it as a dry run, so its first effect can be read in
  `lifecycle_actions` before it happens (`preview_new_policies: false` turns this off). A policy
  is known by its name: rename it when its selection changes to have the new one previewed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from asset_pipeline.errors import PolicyError
from asset_pipeline.formats import ASSET_TYPES
from asset_pipeline.location import Location

ACTIONS = ("archive", "delete", "prune_versions")
SELECT_KEYS = {"older_than_days", "unused_for_days", "project", "type", "tags", "status", "keep_last_versions"}
MIN_GRACE_PERIOD_DAYS = 1
DEFAULT_MAX_DELETE_SHARE = 0.10
RESERVED_NAMES = {"api", "grace_period", "refcount"}  # policy column values the audit uses itself
TOP_KEYS = {"policies", "grace_period_days", "dry_run", "archive_storage_class", "blob_grace_hours",
            "allow_short_grace_period", "max_delete_share", "allow_mass_delete", "preview_new_policies"}


@dataclass(frozen=True)
class Policy:
    name: str
    action: str
    older_than_days: int | None = None
    unused_for_days: int | None = None
    project: tuple[str, ...] = ()
    type: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    status: str = "active"
    keep_last_versions: int | None = None  # prune_versions: how many of the newest versions keep their bytes

    def where(self, as_of: datetime) -> tuple[str, list]:
        """A DuckDB predicate over `assets` and its parameters."""
        parts, params = ["status = ?"], [self.status]
        if self.older_than_days is not None:
            parts.append("created_at < ?")
            params.append(as_of - timedelta(days=self.older_than_days))
        if self.unused_for_days is not None:
            parts.append("coalesce(last_accessed, created_at) < ?")
            params.append(as_of - timedelta(days=self.unused_for_days))
        for column, values in (("project", self.project), ("type", self.type)):
            if values:
                parts.append(f"{column} in (select unnest(?))")
                params.append(list(values))
        if self.tags:
            parts.append("list_has_any(tags, ?)")
            params.append(list(self.tags))
        return " and ".join(parts), params


@dataclass(frozen=True)
class GuardRails:
    """What a sweep refuses to do without being told (see the module docstring)."""

    max_delete_share: float = DEFAULT_MAX_DELETE_SHARE
    allow_mass_delete: bool = False
    preview_new_policies: bool = True


@dataclass(frozen=True)
class RetentionConfig:
    policies: tuple[Policy, ...] = ()
    grace_period_days: float = 30
    dry_run: bool = False
    archive_storage_class: str | None = None
    blob_grace_hours: float = 24.0  # a blob stays unneeded this long before it is deleted
    extra: dict[str, Any] = field(default_factory=dict)
    guard_rails: GuardRails = GuardRails()


def _names(value: Any, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"{where} must be a name or a non-empty list of names, got {value!r}")
    return tuple(values)


def _days(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{where} must be a whole number of days ≥ 0, got {value!r}")
    return value


def parse_config(doc: Any, source: str = "retention config") -> RetentionConfig:
    """Validate everything first: one bad policy stops the sweep before it touches anything."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: expected a mapping with 'policies', got {type(doc).__name__}")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise PolicyError(f"{source}: unknown key(s) {sorted(unknown)}")
    for flag in ("dry_run", "allow_short_grace_period", "allow_mass_delete", "preview_new_policies"):
        if not isinstance(doc.get(flag, False), bool):
            raise PolicyError(f"{source}: {flag} must be true or false")
    grace = doc.get("grace_period_days", 30)
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
        raise PolicyError(f"{source}: grace_period_days must be a number ≥ 0, got {grace!r}")
    if grace < MIN_GRACE_PERIOD_DAYS and not doc.get("allow_short_grace_period", False):
        raise PolicyError(f"{source}: grace_period_days {grace} is below the minimum of {MIN_GRACE_PERIOD_DAYS} "
                          "day: a deleted asset would be unrecoverable by the next sweep; set "
                          "allow_short_grace_period: true to accept that")
    share = doc.get("max_delete_share", DEFAULT_MAX_DELETE_SHARE)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise PolicyError(f"{source}: max_delete_share must be a fraction above 0 and at most 1, got {share!r}")
    blob_grace = doc.get("blob_grace_hours", 24)
    if isinstance(blob_grace, bool) or not isinstance(blob_grace, (int, float)) or blob_grace < 0:
        raise PolicyError(f"{source}: blob_grace_hours must be a number ≥ 0, got {blob_grace!r}")
    raw = doc.get("policies", []) or []
    if not isinstance(raw, list):
        raise PolicyError(f"{source}: policies must be a list")
    policies, seen = [], set()
    for i, p in enumerate(raw):
        where = f"{source}: policy #{i + 1}"
        if not isinstance(p, dict):
            raise PolicyError(f"{where} must be a mapping")
        name = p.get("name")
        if not isinstance(name, str) or not name.strip():
            raise PolicyError(f"{where}: 'name' is required")
        where = f"{source}: policy {name!r}"
        if name in RESERVED_NAMES:
            raise PolicyError(f"{where}: the name is reserved for the audit's own rows "
                              f"({', '.join(sorted(RESERVED_NAMES))})")
        if name in seen:
            raise PolicyError(f"{where}: duplicate name")
        seen.add(name)
        if set(p) - {"name", "action", "select"}:
            raise PolicyError(f"{where}: unknown key(s) {sorted(set(p) - {'name', 'action', 'select'})}")
        action = p.get("action")
        if action not in ACTIONS:
            raise PolicyError(f"{where}: 'action' must be one of {', '.join(ACTIONS)}, got {action!r}")
        select = p.get("select") or {}
        if not isinstance(select, dict) or not select:
            raise PolicyError(f"{where}: 'select' needs at least one criterion ({', '.join(sorted(SELECT_KEYS))})")
        if set(select) - SELECT_KEYS:
            raise PolicyError(f"{where}: unknown select key(s) {sorted(set(select) - SELECT_KEYS)}")
        types = _names(select["type"], f"{where}: select.type") if "type" in select else ()
        if set(types) - set(ASSET_TYPES):
            raise PolicyError(f"{where}: select.type {sorted(set(types) - set(ASSET_TYPES))} is not one of "
                              f"{', '.join(ASSET_TYPES)}")
        status = select.get("status", "active")
        if status not in ("active", "archived"):
            raise PolicyError(f"{where}: select.status must be active or archived, got {status!r}")
        if action == "archive" and status == "archived":
            raise PolicyError(f"{where}: archiving already archived assets does nothing")
        keep = select.get("keep_last_versions")
        if (action == "prune_versions") != (keep is not None):
            raise PolicyError(f"{where}: action prune_versions and select.keep_last_versions go together")
        if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
            raise PolicyError(f"{where}: select.keep_last_versions must be a whole number ≥ 1, got {keep!r}")
        policies.append(Policy(
            name=name, action=action,
            older_than_days=_days(select["older_than_days"], f"{where}: select.older_than_days")
            if "older_than_days" in select else None,
            unused_for_days=_days(select["unused_for_days"], f"{where}: select.unused_for_days")
            if "unused_for_days" in select else None,
            project=_names(select["project"], f"{where}: select.project") if "project" in select else (),
            type=types, tags=_names(select["tags"], f"{where}: select.tags") if "tags" in select else (),
            status=status, keep_last_versions=keep,
        ))
    rails = GuardRails(float(share), doc.get("allow_mass_delete", False), doc.get("preview_new_policies", True))
    return RetentionConfig(tuple(policies), float(grace), bool(doc.get("dry_run", False)),
                           doc.get("archive_storage_class"), float(blob_grace), guard_rails=rails)


def load_config(path: Location | Path) -> RetentionConfig:
    """``<home>/retention.yaml``; a missing file means no policies (and a 30-day grace period)."""
    import yaml

    if not path.exists():
        return RetentionConfig()
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(doc, str(path))
