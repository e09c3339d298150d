"""Which store must hold each referenced blob, decided per hash by one DuckDB aggregation.

The answer stays an Arrow table and is compared with the stores' listings by DuckDB: at a million
versions, turning every hash into a Python string and building sets of them cost more than the
query itself (seconds per sweep). Only the hashes whose copies must change — copies to make,
copies no one needs — ever become Python rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from asset_pipeline.sql import connect
from asset_pipeline.tables import Tables

STORES = ("hot", "archive")

# Per hash: its size, and whether the hot store / the archive must hold it. An undeletable
# soft-deleted version keeps its bytes hot; a pruned version (keep-last-N) keeps nothing; a
# hard-deleted asset's versions keep nothing.
_QUERY = """
    with purged as (select distinct asset_id as id from lifecycle_actions
                    where action = 'hard_delete' and not dry_run),
         pruned as (select distinct asset_id, version from lifecycle_actions
                    where action = 'version_purged' and not dry_run),
         v as (select v.sha256, v.size_bytes, a.status, a.id in (select id from purged) as gone,
                      p.version is not null as pruned
               from asset_versions v join assets a on a.id = v.asset_id
               left join pruned p on p.asset_id = v.asset_id and p.version = v.version {scope})
    select sha256, any_value(size_bytes) as size,
           coalesce(bool_or(not pruned and (status = 'active' or (status = 'deleted' and not gone))), false) as in_hot,
           coalesce(bool_or(not pruned and status = 'archived'), false) as in_archive
    from v group by sha256"""


def placement_sql(scope: str = "") -> str:
    """The per-hash placement query (sha256, size, in_hot, in_archive) over the views `assets`,
    `asset_versions` and `lifecycle_actions`, for callers that join it with more (the replica)."""
    return _QUERY.format(scope=scope)


@dataclass(frozen=True)
class Placement:
    """One row per referenced hash: sha256, size, in_hot, in_archive (never null)."""

    table: pa.Table

    @classmethod
    def read(cls, tables: Tables, only: Iterable[str] | None = None) -> Placement:
        """From the tables as they are now. With `only`, just those hashes (every version that
        shares one of them counts, so their answer is the same as in a full read)."""
        con = connect(tables, ["assets", "asset_versions", "lifecycle_actions"])
        try:
            scope = ""
            if only is not None:
                con.register("scope", pa.table({"sha256": pa.array(sorted(only), pa.string())}))
                scope = "where v.sha256 in (select sha256 from scope)"
            return cls(con.sql(placement_sql(scope)).to_arrow_table())
        finally:
            con.close()

    def _in(self, shas: Collection[str]) -> pa.ChunkedArray:
        """Per row: is the hash one of `shas` (a few: Arrow's is_in is slow for a million)?"""
        return pc.fill_null(pc.is_in(self.table["sha256"], value_set=pa.array(list(shas), pa.string())), False)

    def mismatches(self, present: dict[str, pa.Array]) -> list[dict]:
        """The referenced hashes whose copies differ from what the stores must hold, given each
        store's listing: rows of sha256, in_hot, in_archive, has_hot, has_archive (sorted by
        hash). One DuckDB join of the listings against every hash; in a converged home only the
        blobs this sweep changed come back as Python rows."""
        con = duckdb.connect()
        try:
            con.register("placement", self.table)
            for store in STORES:
                con.register(f"listed_{store}", pa.table({"sha256": present[store]}))
            return con.sql("""
                select * from (select sha256, in_hot, in_archive,
                                      coalesce(sha256 in (select sha256 from listed_hot), false) as has_hot,
                                      coalesce(sha256 in (select sha256 from listed_archive), false) as has_archive
                               from placement)
                where in_hot <> has_hot or in_archive <> has_archive
                order by sha256""").to_arrow_table().to_pylist()
        finally:
            con.close()

    def needs(self, store: str, shas: Collection[str]) -> set[str]:
        """Those of `shas` that `store` must hold."""
        return set(pc.filter(self.table["sha256"], pc.and_(self.table[f"in_{store}"], self._in(shas))).to_pylist())

    def sizes(self, shas: Collection[str]) -> dict[str, int]:
        """Blob sizes, looked up for the given hashes only: no dict of a million entries."""
        if not shas:
            return {}
        picked = self.table.filter(self._in(shas))
        return dict(zip(picked["sha256"].to_pylist(), picked["size"].to_pylist()))
