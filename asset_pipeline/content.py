"""Assets and their versions: lookup (by id or ``project/name``), content, new versions, reverts.

A download is something a user received. `AssetContent` is only a handle: the download callback
runs once its bytes have been delivered — `read()` returned, `iter_chunks()` was consumed to the
end, or a stream from `open()` was read to its size — so printing metadata, a failed read or an
aborted copy records nothing.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

from asset_pipeline.errors import AssetNotFound, AssetUnavailable, InputRejected, ObjectMissing, PolicyError
from asset_pipeline.examine import Examined
from asset_pipeline.formats import FormatInfo, inspect_file
from asset_pipeline.hashing import hash_file
from asset_pipeline.home import Home
from asset_pipeline.identity import asset_id_for
from asset_pipeline.inbox import InboxItem
from asset_pipeline.ingest import commit_versions, new_run_id, verify_blobs
from asset_pipeline.sidecar import Sidecar


class _DeliveringReader(io.RawIOBase):
    """A blob stream that calls `on_complete` once the caller has read `size` bytes from it."""

    def __init__(self, raw: BinaryIO, size: int, on_complete: Callable[[], None]):
        super().__init__()
        self._raw, self._left, self._on_complete = raw, size, on_complete
        if size == 0:
            self._complete()

    def _complete(self) -> None:
        callback, self._on_complete = self._on_complete, None
        if callback is not None:
            callback()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._left -= n
        if self._left <= 0:
            self._complete()
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


@dataclass
class AssetContent:
    """An asset version's metadata and a handle on its bytes (read lazily, streamed)."""

    asset_id: str
    version: int
    sha256: str
    metadata: dict[str, Any]
    _home: Home = field(repr=False)
    _on_delivered: Callable[[], None] | None = field(default=None, repr=False)

    def delivered(self) -> None:
        """Count the download now (once): for callers that deliver the bytes another way (an export)."""
        callback, self._on_delivered = self._on_delivered, None
        if callback is not None:
            callback()

    def _open_blob(self) -> BinaryIO:
        try:
            return self._home.store.open(self.sha256)
        except FileNotFoundError as exc:
            pruned = self._home.tables.read(
                "lifecycle_actions", where="action = 'prune_version' and not dry_run and asset_id = ? and version = ?",
                params=[self.asset_id, self.version], columns=["policy"])["policy"].to_pylist()
            if pruned:  # keep-last-N retention (issue 14) released this version's bytes
                raise AssetUnavailable(f"asset {self.asset_id} v{self.version} was pruned by retention policy "
                                       f"{pruned[0]!r} (keeps only the newest versions); its content is gone") from exc
            raise ObjectMissing(f"asset {self.asset_id} v{self.version}: blob {self.sha256} is missing "
                                "from the object store") from exc

    def open(self) -> BinaryIO:
        """A streaming reader; prefer it over `read()` for large models. The download counts once
        the stream has been read to the end."""
        return _DeliveringReader(self._open_blob(), int(self.metadata.get("size_bytes") or 0), self.delivered)

    def read(self) -> bytes:
        with self._open_blob() as f:
            data = f.read()
        self.delivered()
        return data

    def iter_chunks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        """Chunks of the content; the download counts when the caller asks past the last one."""
        with self._open_blob() as f:
            while chunk := f.read(size):
                yield chunk
        self.delivered()


class Content:
    """Asset rows, version rows and blobs of one home."""

    def __init__(self, home: Home):
        self.home = home
        self.tables = home.tables

    # --- lookup ------------------------------------------------------------------------------
    def asset(self, asset_id: str) -> dict[str, Any]:
        rows = self.tables.read("assets", where="id = ?", params=[asset_id]).to_pylist()
        if not rows:
            raise AssetNotFound(f"no asset with id {asset_id!r}")
        return rows[0]

    def find(self, project: str, name: str) -> dict[str, Any]:
        """The asset named `name` in `project` (its id is derived from the two)."""
        rows = self.tables.read("assets", where="id = ?", params=[asset_id_for(project, name)]).to_pylist()
        if not rows:
            raise AssetNotFound(f"no asset named {name!r} in project {project!r}")
        return rows[0]

    def resolve(self, ref: str) -> dict[str, Any]:
        """An asset by id or by ``project/name`` (project names may hold a '/': every split is tried)."""
        candidates = [ref] + [asset_id_for(ref[:i], ref[i + 1:]) for i, c in enumerate(ref) if c == "/"]
        rows = self.tables.read_keyed("assets", "id", candidates).to_pylist()
        exact = [r for r in rows if r["id"] == ref]
        if exact or len(rows) == 1:
            return (exact or rows)[0]
        if rows:
            names = ", ".join(sorted(f"{r['project']}/{r['name']} ({r['id']})" for r in rows))
            raise AssetNotFound(f"{ref!r} names several assets: {names}; use an id")
        raise AssetNotFound(f"no asset with id or project/name {ref!r}" if "/" in ref else f"no asset with id {ref!r}")

    def list_versions(self, asset_id: str) -> list[dict[str, Any]]:
        """Every version, oldest first."""
        rows = self.tables.read("asset_versions", where="asset_id = ?", params=[asset_id]).to_pylist()
        if not rows:
            self.asset(asset_id)  # raises AssetNotFound for unknown ids
        return sorted(rows, key=lambda r: r["version"])

    def get_version(self, asset_id: str, version: int | None = None) -> dict[str, Any]:
        """One version's row: the latest when `version` is None."""
        versions = self.list_versions(asset_id)
        if version is None:
            return versions[-1]
        for row in versions:
            if row["version"] == version:
                return row
        raise AssetNotFound(f"asset {asset_id!r} has no version {version} (versions 1..{versions[-1]['version']})")

    def get(self, asset: dict[str, Any], version: int | None = None,
            on_delivered: Callable[[int], None] | None = None) -> AssetContent:
        """A handle on a live asset's version; `on_delivered(version)` runs once its bytes are read."""
        asset_id = asset["id"]
        if asset["status"] == "archived":
            raise AssetUnavailable(f"asset {asset_id} is archived; restore it with Catalog.restore({asset_id!r}) "
                                   f"or asset-pipeline restore {asset_id}")
        if asset["status"] == "deleted":
            raise AssetUnavailable(self.deleted_message(asset))
        row = self.get_version(asset_id, version if version is not None else asset["current_version"])
        meta = {**row, "name": asset["name"], "project": asset["project"], "status": asset["status"],
                "current_version": asset["current_version"]}
        delivered = (lambda: on_delivered(row["version"])) if on_delivered else None
        return AssetContent(asset_id, row["version"], row["sha256"], meta, self.home, delivered)

    def deleted_message(self, asset: dict[str, Any]) -> str:
        """What happened to a deleted asset and when: purged for good, or undeletable until when."""
        from asset_pipeline.lifecycle.actions import hard_delete_record
        from asset_pipeline.lifecycle.policies import load_config

        asset_id, deleted_at = asset["id"], asset["deleted_at"]
        purged = hard_delete_record(self.tables, asset_id)
        if purged is not None:
            return (f"asset {asset_id} was deleted on {deleted_at:%Y-%m-%d %H:%M} UTC and hard-deleted on "
                    f"{purged['acted_at']:%Y-%m-%d %H:%M} UTC by the retention sweep {purged['partition_key']} "
                    "after its grace period: its content is gone and it cannot be undeleted")
        try:
            grace = load_config(self.home.settings.retention_file).grace_period_days
            deadline = f" before {deleted_at + timedelta(days=grace):%Y-%m-%d %H:%M} UTC"
        except PolicyError:
            deadline = " within the grace period"
        return (f"asset {asset_id} was deleted on {deleted_at:%Y-%m-%d %H:%M} UTC; undelete it{deadline} with "
                f"Catalog.undelete({asset_id!r}) or asset-pipeline undelete {asset_id}")

    # --- writing -----------------------------------------------------------------------------
    def _commit_one(self, asset_id: str, sha: str, size: int, info: FormatInfo, sidecar: Sidecar,
                    source: str, force: bool, path: Path | None = None, written: bool = False) -> dict[str, Any]:
        asset = self.asset(asset_id)
        item = InboxItem(source, path or Path(source), None, size, int(datetime.now(UTC).timestamp() * 1e9))
        acc = Examined(item, sidecar, info, sha, size, None, asset_id, asset["name"], asset["project"],
                       written=written)
        new_rows, _ = commit_versions([acc], self.tables, new_run_id(), force=force)
        verify_blobs(new_rows, [acc], self.home.store)
        if new_rows:
            return new_rows[0]
        return next(v for v in reversed(self.list_versions(asset_id)) if v["sha256"] == sha)

    def _sidecar_from(self, row: dict[str, Any], **changes: Any) -> Sidecar:
        fields = {
            "model": row["model"], "prompt": row["prompt"], "seed": row["seed"], "created_by": row["created_by"],
            "project": self.asset(row["asset_id"])["project"], "parameters": json.loads(row["parameters"] or "{}"),
            "tags": list(row["tags"] or []), "created_at": datetime.now(UTC),
        }
        fields.update({k: v for k, v in changes.items() if v is not None})
        return Sidecar(**fields)

    def create_version(self, asset_id: str, content: str | os.PathLike[str] | bytes | BinaryIO,
                       change_description: str, created_by: str | None = None,
                       **generation: Any) -> dict[str, Any]:
        """Store `content` as the next version of `asset_id` (see `Catalog.create_version`)."""
        latest = self.get_version(asset_id)
        with tempfile.TemporaryDirectory(prefix="asset-pipeline-version-") as tmp:
            if isinstance(content, (str, os.PathLike)):
                path = Path(content)
                if not path.is_file():
                    raise InputRejected(f"{path}: no such file", "content")
            else:
                path = Path(tmp) / "content"
                with open(path, "wb") as out:
                    if isinstance(content, bytes):
                        out.write(content)
                    else:
                        while chunk := content.read(1024 * 1024):
                            out.write(chunk)
            try:
                info = inspect_file(path, self.home.settings.validation_limits())
            except InputRejected as exc:
                raise InputRejected(f"{path}: {exc.reason}", exc.field) from exc
            sha, size = hash_file(path)
            written = self.home.store.put_file(path, sha)
            self.home.store.flush()
            sidecar = self._sidecar_from(latest, created_by=created_by, change_description=change_description,
                                         **generation)
            return self._commit_one(asset_id, sha, size, info, sidecar, "api:create_version", force=False,
                                    path=path, written=written)

    def revert(self, asset_id: str, version: int, created_by: str | None = None) -> dict[str, Any]:
        """Make version `version`'s content current again, as a new version (history is append-only)."""
        old = self.get_version(asset_id, version)
        if not self.home.store.exists(old["sha256"]):
            raise ObjectMissing(f"cannot revert {asset_id} to v{version}: blob {old['sha256']} is missing")
        info = FormatInfo(old["type"], old["format"], old["width"], old["height"], old["duration_s"])
        sidecar = self._sidecar_from(old, created_by=created_by, change_description=f"revert to v{version}")
        return self._commit_one(asset_id, old["sha256"], old["size_bytes"], info, sidecar,
                                f"api:revert:v{version}", force=True)
