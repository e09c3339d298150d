"""Collections and sharing, with permissions enforced on every call.

Levels: view (list the collection, get its assets) < edit (add and remove assets) < admin (share,
unshare, delete the collection). The owner is admin. Every check happens before anything is
written, so a denied call changes nothing. Names and user ids are data: they are only ever
passed as query parameters or Arrow values, never spliced into SQL.

A write checks and writes under the home's collections lock (`exclusive`), so no other write
lands between its check and its own: an `unshare` waits for an `add` already allowed, and an
`add` cannot put a membership row into a collection that a `delete` has just removed.

These permissions protect collections, not the catalog: `Catalog.get` without a collection,
`Catalog.sql` and the files under the home are open to whoever can call or read them, and user
ids are not authenticated (README, "What permissions protect, and what they do not").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from asset_pipeline.errors import AssetNotFound, AssetUnavailable, CollectionNotFound, InvalidRequest, PermissionDenied
from asset_pipeline.failpoints import failpoint
from asset_pipeline.locks import USER_LOCK_TIMEOUT_S
from asset_pipeline.sql import connect
from asset_pipeline.tables import Tables

if TYPE_CHECKING:
    from asset_pipeline.home import Home

LEVELS = {"view": 1, "edit": 2, "admin": 3}


def _user(value: Any, field: str = "user") -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field} must be a non-empty string, got {value!r}")
    return value


def collections_of(home: Home) -> Collections:
    """A home's collections, whose writes take its `collections` lock (waiting as a user's call
    does: up to USER_LOCK_TIMEOUT_S)."""
    return Collections(home.tables, exclusive=lambda: home.lock("collections", timeout_s=USER_LOCK_TIMEOUT_S))


class Collections:
    def __init__(self, tables: Tables, exclusive: Callable[[], AbstractContextManager]):
        self.tables = tables
        self.exclusive = exclusive  # the home's collections lock: one write's check and write at a time

    # --- reads -------------------------------------------------------------------------------
    def get(self, collection_id: str) -> dict:
        rows = self.tables.read("collections", where="id = ?", params=[collection_id]).to_pylist()
        if not rows:
            raise CollectionNotFound(f"no collection with id {collection_id!r}")
        return rows[0]

    def permission(self, collection_id: str, user: str) -> str | None:
        """The user's level on the collection (None: no access)."""
        collection = self.get(collection_id)
        if collection["owner"] == user:
            return "admin"
        rows = self.tables.read("collection_shares", where="collection_id = ? and user_id = ?",
                                params=[collection_id, user], columns=["permission"]).to_pylist()
        return rows[0]["permission"] if rows else None

    def require(self, collection_id: str, user: str, needed: str, action: str) -> dict:
        _user(user)
        collection = self.get(collection_id)
        level = self.permission(collection_id, user)
        if level is None or LEVELS[level] < LEVELS[needed]:
            have = f"has {level}" if level else "has no access"
            raise PermissionDenied(f"user {user!r} cannot {action} collection {collection['name']!r} "
                                   f"({collection_id}): needs {needed}, {have}")
        return collection

    def visible_to(self, user: str) -> list[dict]:
        """Collections the user owns or has any share on, with the user's permission."""
        _user(user)
        con = connect(self.tables, ["collections", "collection_shares"])
        try:
            rows = con.sql("""
                select c.*, case when c.owner = $u then 'admin' else s.permission end as permission
                from collections c left join collection_shares s on s.collection_id = c.id and s.user_id = $u
                where c.owner = $u or s.user_id is not null
                order by c.created_at, c.id""", params={"u": user}).to_arrow_table().to_pylist()
        finally:
            con.close()
        return rows

    def assets(self, collection_id: str, user: str) -> list[dict]:
        """The collection's live assets with their metadata (deleted assets are left out)."""
        self.require(collection_id, user, "view", "list")
        con = connect(self.tables, ["assets", "collection_assets"])
        try:
            return con.sql("""
                select a.*, ca.added_by, ca.added_at from collection_assets ca join assets a on a.id = ca.asset_id
                where ca.collection_id = ? and a.status <> 'deleted' order by ca.added_at, a.id""",
                           params=[collection_id]).to_arrow_table().to_pylist()
        finally:
            con.close()

    def contains(self, collection_id: str, asset_id: str) -> bool:
        return self.tables.read("collection_assets", where="collection_id = ? and asset_id = ?",
                                params=[collection_id, asset_id], columns=["asset_id"]).num_rows > 0

    def visible_asset_ids(self, user: str) -> set[str]:
        """Assets the user may see: those in collections they can view, and those they created."""
        ids = {c["id"] for c in self.visible_to(user)}
        seen = set()
        if ids:
            seen = set(self.tables.read("collection_assets", where="collection_id in (select unnest(?))",
                                        params=[sorted(ids)], columns=["asset_id"])["asset_id"].to_pylist())
        own = self.tables.read("assets", where="created_by = ?", params=[user], columns=["id"])["id"].to_pylist()
        return seen | set(own)

    # --- writes ------------------------------------------------------------------------------
    @contextmanager
    def _allowed(self, collection_id: str, user: str, needed: str, action: str) -> Iterator[dict]:
        """The collection, once `require` passed, with the lock held until the write is done."""
        with self.exclusive():
            collection = self.require(collection_id, user, needed, action)
            failpoint("collection-allowed")  # tests hold a writer here, between its check and its write
            yield collection

    def create(self, name: str, owner: str, description: str = "") -> str:
        _user(owner, "owner")
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest(f"collection name must be a non-empty string, got {name!r}")
        collection_id = "c_" + uuid.uuid4().hex[:24]
        self.tables.append("collections", [{"id": collection_id, "name": name, "description": description or "",
                                            "owner": owner, "created_at": datetime.now(UTC)}])
        return collection_id

    def add(self, collection_id: str, asset_id: str, user: str) -> bool:
        with self._allowed(collection_id, user, "edit", "add assets to"):
            rows = self.tables.read("assets", where="id = ?", params=[asset_id], columns=["status"]).to_pylist()
            if not rows:
                raise AssetNotFound(f"no asset with id {asset_id!r}")
            if rows[0]["status"] == "deleted":
                raise AssetUnavailable(f"asset {asset_id} is deleted and cannot be added to a collection")
            result = self.tables.merge("collection_assets", [{"collection_id": collection_id, "asset_id": asset_id,
                                                              "added_by": user, "added_at": datetime.now(UTC)}],
                                       keys=("collection_id", "asset_id"), update=False)
        return int(result.get("num_target_rows_inserted", 0)) > 0

    def remove(self, collection_id: str, asset_id: str, user: str) -> bool:
        with self._allowed(collection_id, user, "edit", "remove assets from"):
            if not self.contains(collection_id, asset_id):
                return False
            return self.tables.delete_matching("collection_assets", [{"collection_id": collection_id,
                                                                       "asset_id": asset_id}],
                                               ("collection_id", "asset_id")) > 0

    def share(self, collection_id: str, user_id: str, permission: str, by: str) -> None:
        if permission not in LEVELS:
            raise InvalidRequest(f"permission must be one of {', '.join(LEVELS)}, got {permission!r}")
        _user(user_id, "user_id")
        with self._allowed(collection_id, by, "admin", "share") as collection:
            if user_id == collection["owner"]:
                raise InvalidRequest(f"{user_id!r} owns collection {collection_id}: the owner is always admin")
            self.tables.merge("collection_shares", [{"collection_id": collection_id, "user_id": user_id,
                                                     "permission": permission, "granted_by": by,
                                                     "granted_at": datetime.now(UTC)}],
                              keys=("collection_id", "user_id"))

    def unshare(self, collection_id: str, user_id: str, by: str) -> bool:
        with self._allowed(collection_id, by, "admin", "unshare"):
            return self.tables.delete_matching("collection_shares", [{"collection_id": collection_id,
                                                                       "user_id": user_id}],
                                               ("collection_id", "user_id")) > 0

    def delete(self, collection_id: str, user: str) -> None:
        with self._allowed(collection_id, user, "admin", "delete"):
            key = [{"collection_id": collection_id}]
            self.tables.delete_matching("collection_assets", key, ("collection_id",))
            self.tables.delete_matching("collection_shares", key, ("collection_id",))
            self.tables.delete_matching("collections", [{"id": collection_id}], ("id",))

    def stats(self) -> list[dict]:
        con = connect(self.tables, ["collections", "collection_assets", "collection_shares", "assets"])
        try:
            return con.sql("""
                select c.id as collection_id, c.name, c.owner,
                       count(distinct ca.asset_id) as assets,
                       count(distinct ca.asset_id) filter (where a.status <> 'deleted') as live_assets,
                       cast(coalesce(sum(a.size_bytes) filter (where a.status <> 'deleted'), 0) as bigint) as bytes,
                       (select count(*) from collection_shares s where s.collection_id = c.id) as shares,
                       now() as computed_at
                from collections c left join collection_assets ca on ca.collection_id = c.id
                left join assets a on a.id = ca.asset_id
                group by c.id, c.name, c.owner order by c.name""").to_arrow_table().to_pylist()
        finally:
            con.close()
