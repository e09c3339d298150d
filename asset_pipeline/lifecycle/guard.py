"""The mass-delete guard: a sweep that would delete more than a share of the catalog stops first.

A careless policy (`older_than_days: 0`) selects everything; the grace period only delays the
damage. So before a sweep changes anything, its deletions — soft deletes by policies and hard
deletes of assets past their grace period — are counted against the active assets, by number
and by bytes (all versions). Above `max_delete_share` of either, the sweep fails with the numbers
unless the configuration says `allow_mass_delete: true`. Archiving is not counted: it keeps the
bytes and `restore` brings them back.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from asset_pipeline.errors import MassDeleteRefused
from asset_pipeline.lifecycle.policies import GuardRails
from asset_pipeline.progress import human_bytes
from asset_pipeline.sql import connect
from asset_pipeline.tables import Tables


@dataclass(frozen=True)
class DeleteTally:
    assets: int          # assets the sweep would delete (soft or hard)
    bytes: int           # bytes of all their versions
    active_assets: int
    active_bytes: int

    def over(self, share: float) -> bool:
        return self.assets > 0 and (self.assets > share * self.active_assets or self.bytes > share * self.active_bytes)


def tally(tables: Tables, ids: list[str]) -> DeleteTally:
    """One scan of `assets` and one join with `asset_versions`, never a per-asset grouping of the
    whole catalog; the ids join as an Arrow table (a list parameter of 10^5 strings costs DuckDB
    seconds). An id that is not in `assets` counts for nothing."""
    con = connect(tables, ["assets", "asset_versions"])
    try:
        con.register("acted_ids", pa.table({"id": pa.array(ids, pa.string())}))
        con.execute("""create temp table counted as
                       select id, status = 'active' as active, id in (select id from acted_ids) as acted
                       from assets where status = 'active' or id in (select id from acted_ids)""")
        row = con.execute("""
            select (select count(*) filter (where acted) from counted),
                   coalesce(sum(v.size_bytes) filter (where c.acted), 0),
                   (select count(*) filter (where active) from counted),
                   coalesce(sum(v.size_bytes) filter (where c.active), 0)
            from counted c join asset_versions v on v.asset_id = c.id""").fetchone()
    finally:
        con.close()
    return DeleteTally(*(int(v) for v in row))


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "all"


def check_mass_delete(tables: Tables, by_policy: dict[str, list[str]], expired: list[str], rails: GuardRails,
                      partition: str) -> str | None:
    """Raise MassDeleteRefused when the deletions exceed the share (unless allowed); returns the
    refusal's text when it was allowed or there is nothing to refuse it for, None when within."""
    soft = [i for ids in by_policy.values() for i in ids]
    t = tally(tables, soft + expired)
    if not t.over(rails.max_delete_share):
        return None
    policies = ", ".join(f"{name!r} {len(ids)}" for name, ids in by_policy.items() if ids) or "none"
    message = (f"retention sweep {partition}: it would delete {t.assets} assets ({len(soft)} soft deletes by "
               f"policies — {policies}; {len(expired)} hard deletes past the grace period), "
               f"{_share(t.assets, t.active_assets)} of the {t.active_assets} active assets, holding "
               f"{human_bytes(t.bytes)}, {_share(t.bytes, t.active_bytes)} of {human_bytes(t.active_bytes)}; "
               f"the limit is {rails.max_delete_share:.0%} of either (max_delete_share)")
    if not rails.allow_mass_delete:
        raise MassDeleteRefused(f"refused {message}. Nothing was changed: set allow_mass_delete: true in the "
                                "retention config to let it proceed")
    return message
