"""`Catalog`: the Python API for notebooks and scripts — content and versions, SQL, search,
usage, lifecycle and collections over one home."""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa

from asset_pipeline.errors import AssetNotFound, AssetUnavailable, InputRejected, ObjectMissing
from asset_pipeline.examine import Examined
from asset_pipeline.formats import FormatInfo, inspect_file
from asset_pipeline.hashing import hash_file
from asset_pipeline.home import Home
from asset_pipeline.inbox import InboxItem
from asset_pipeline.ingest import IngestSummary, Progress, commit_versions, new_run_id, verify_blobs
from asset_pipeline.settings import Settings
from asset_pipeline.sidecar import Sidecar
from asset_pipeline.sql import connect


@dataclass
class AssetContent:
    """An asset version's metadata and a handle on its bytes (read lazily, streamed)."""

    asset_id: str
    version: int
    sha256: str
    metadata: dict[str, Any]
    _home: Home

    def open(self) -> BinaryIO:
        """A streaming reader; prefer it over `read()` for large models."""
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

    def read(self) -> bytes:
        with self.open() as f:
            return f.read()

    def iter_chunks(self, size: int = 1024 * 1024) -> Iterator[bytes]:
        with self.open() as f:
            while chunk := f.read(size):
                yield chunk


def _default_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _flush_quietly(buffer) -> None:
    if buffer.pending:
        try:
            buffer.flush()
        except Exception as exc:  # at exit there is no caller left to raise to
            import sys

            print(f"asset_pipeline: could not write {buffer.pending} usage events at exit: {exc}", file=sys.stderr)


class Catalog:
    """Everything under one home. ``Catalog()`` opens ``$ASSET_PIPELINE_HOME`` (default ``./data``).

    >>> cat = Catalog()
    >>> cat.sql("select project, count(*) n from assets group by project")
    >>> cat.get(asset_id).read()
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, settings: Settings | None = None,
                 s3_client: Any = None, user: str | None = None):
        from asset_pipeline.usage.events import UsageBuffer

        self.home = Home(settings or Settings.from_env(home), s3_client=s3_client)
        self.tables = self.home.tables
        self.tables.ensure_all()
        self.user = user or _default_user()
        self._usage = UsageBuffer(self.tables)
        # Buffered usage events become durable when the catalog is collected or the interpreter
        # exits, whichever comes first (Catalog.flush() does it at once).
        weakref.finalize(self, _flush_quietly, self._usage)

    # --- lifecycle ---------------------------------------------------------------------------
    def lifecycle(self, storage_class: str | None = None):
        from datetime import timedelta

        from asset_pipeline.lifecycle.actions import Lifecycle

        retention = self._retention()
        return Lifecycle(self.tables, self.home.store,
                         self.home.archive_store(storage_class or retention.archive_storage_class),
                         self.home.settings.lancedb_dir, blob_grace=timedelta(hours=retention.blob_grace_hours),
                         exclusive=lambda: self.home.lock("lifecycle"))

    def _retention(self):
        from asset_pipeline.lifecycle.policies import load_config

        return load_config(self.home.settings.retention_file)

    def archive(self, asset_id: str) -> None:
        """Move the asset's blobs to the archive store; `get` then says it is archived."""
        self.lifecycle(self._retention().archive_storage_class).archive(asset_id, by=self.user)

    def restore(self, asset_id: str) -> None:
        """Bring an archived asset's blobs back and make it active again."""
        self.lifecycle().restore(asset_id, by=self.user)

    def delete(self, asset_id: str) -> None:
        """Soft delete: gone from search and listings; undeletable until the grace period ends,
        after which a sweep removes blobs no other live version references."""
        self.lifecycle().delete(asset_id, by=self.user)

    def undelete(self, asset_id: str) -> None:
        """Undo a soft delete within the grace period."""
        self.lifecycle().undelete(asset_id, self._retention().grace_period_days, by=self.user)

    # --- provenance (issue 14): export, lineage, recall, pHash, storage --------------------------
    def export(self, asset_id: str, path: str | os.PathLike[str], version: int | None = None):
        """Write a copy of the version that declares itself AI-generated (IPTC trainedAlgorithmicMedia
        and the generation facts in XMP; a signed C2PA manifest when a signing certificate is
        configured). Returns an `ExportResult`; records a download like `get`."""
        from asset_pipeline.provenance.export import export_copy

        content = self.get(asset_id, version)
        s = self.home.settings
        return export_copy(self.home.store, content.metadata, path, self._signing(),
                           Path(s.c2pa_trust_anchors).read_bytes() if s.c2pa_trust_anchors else None)

    def _signing(self):
        from asset_pipeline.provenance.credentials import SigningConfig

        s = self.home.settings
        if not (s.c2pa_sign_cert and s.c2pa_sign_key):
            return None
        return SigningConfig.from_files(s.c2pa_sign_cert, s.c2pa_sign_key, s.c2pa_sign_alg, s.c2pa_tsa_url)

    def produced_by(self, model: str, since: datetime | str | None = None) -> list[dict[str, Any]]:
        """Assets with a version made by `model` (as checkpoint or as LoRA/adapter), newest first."""
        from asset_pipeline.provenance.lineage import produced_by

        if isinstance(since, str):
            since = datetime.fromisoformat(since)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return produced_by(self.tables, model, since)

    def lineage(self, asset_id: str) -> dict[str, Any]:
        """Models, adapters, inputs (resolved to assets where they are ones) of every version, and
        the assets made from this one."""
        from asset_pipeline.provenance.lineage import lineage

        return lineage(self.tables, asset_id)

    def recall(self, model: str, reason: str, by: str | None = None, dry_run: bool = False):
        """Soft-delete every asset `model` produced (audited, grace period, reversible until hard
        delete with `undo_recall`); `dry_run` only lists and records what it would take."""
        from asset_pipeline.provenance.recall import recall

        with self.home.lock("lifecycle"):  # statuses change: never beside a sweep
            return recall(self.lifecycle(), model, reason, by or self.user, dry_run)

    def undo_recall(self, recall_id: str) -> list[str]:
        """Undelete what a recall took, within the grace period; returns the asset ids restored."""
        from asset_pipeline.provenance.recall import undo_recall

        return undo_recall(self.lifecycle(), recall_id, self._retention().grace_period_days, self.user)

    def similar_images(self, max_distance: int = 8) -> list[dict[str, Any]]:
        """Pairs of live images' current versions whose pHashes differ in at most `max_distance` bits."""
        from asset_pipeline.provenance.phash import phash_pairs

        return phash_pairs(self.tables, max_distance)

    def storage(self, by: str = "project") -> list[dict[str, Any]]:
        """Stored bytes per project or per creator (``by="created_by"``); a blob shared by several
        assets is split equally among them (see `asset_pipeline.storage_attribution`)."""
        from asset_pipeline.storage_attribution import attributed_bytes

        return attributed_bytes(self.tables, by)

    # --- collections -------------------------------------------------------------------------
    @property
    def collections(self):
        from asset_pipeline.collections import Collections

        return Collections(self.tables)

    def create_collection(self, name: str, owner: str, description: str = "") -> str:
        """A new collection owned (and administered) by `owner`; returns its id."""
        return self.collections.create(name, owner, description)

    def add_to_collection(self, collection_id: str, asset_id: str, user: str) -> bool:
        """Needs edit. False when the asset was already in it."""
        return self.collections.add(collection_id, asset_id, user)

    def remove_from_collection(self, collection_id: str, asset_id: str, user: str) -> bool:
        """Needs edit. False when the asset was not in it."""
        return self.collections.remove(collection_id, asset_id, user)

    def share(self, collection_id: str, user_id: str, permission: str, by: str) -> None:
        """Grant (or change) `user_id`'s permission: view, edit or admin. Needs admin."""
        self.collections.share(collection_id, user_id, permission, by)

    def unshare(self, collection_id: str, user_id: str, by: str) -> bool:
        """Revoke `user_id`'s share. Needs admin."""
        return self.collections.unshare(collection_id, user_id, by)

    def delete_collection(self, collection_id: str, user: str) -> None:
        """Delete the collection (its assets stay in the catalog). Needs admin."""
        self.collections.delete(collection_id, user)

    def collection_assets(self, collection_id: str, user: str) -> list[dict[str, Any]]:
        """The collection's live assets with metadata (deleted assets left out). Needs view."""
        return self.collections.assets(collection_id, user)

    def collections_for(self, user: str) -> list[dict[str, Any]]:
        """Collections `user` owns or has been shared, each with the user's permission."""
        return self.collections.visible_to(user)

    # --- usage -------------------------------------------------------------------------------
    def record_usage(self, asset_id: str, action: str, user_id: str, context: dict | None = None,
                     at: datetime | str | None = None, collection_id: str | None = None) -> dict[str, Any]:
        """Record a view, download, embed or transform (through a collection, if given). Buffered:
        `flush()` (or 10,000 events, or exit) writes them to `usage_events` in one commit."""
        return self._usage.record(asset_id, action, user_id, context, at, collection_id=collection_id)

    def flush(self) -> int:
        """Make buffered usage events durable now; returns how many were written."""
        return self._usage.flush()

    # --- SQL ---------------------------------------------------------------------------------
    def sql(self, query: str, params: list | dict | None = None) -> pa.Table:
        """Run DuckDB SQL over the views of every Delta table (``assets``, ``asset_versions``,
        ``ingest_errors``, ``usage_events``, …) and the usage reports (``daily_usage``,
        ``popular_assets``, ``asset_usage_stats``, ``storage_by_project``) once built."""
        from asset_pipeline.usage.reports import attach_reports

        self._usage.flush()  # a query sees the caller's own events
        con = connect(self.tables)
        try:
            attach_reports(con, self.home.root)
            return con.sql(query, params=params).to_arrow_table()
        finally:
            con.close()

    # --- reading -----------------------------------------------------------------------------
    def asset(self, asset_id: str) -> dict[str, Any]:
        rows = self.tables.read("assets", where="id = ?", params=[asset_id]).to_pylist()
        if not rows:
            raise AssetNotFound(f"no asset with id {asset_id!r}")
        return rows[0]

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

    def get(self, asset_id: str, version: int | None = None, user_id: str | None = None,
            collection_id: str | None = None) -> AssetContent:
        """Content and metadata of the current (or the given) version; records a download by
        `user_id` (default: the catalog's user). Through `collection_id`, the user needs view on
        that collection and the asset must be in it."""
        if collection_id is not None:
            from asset_pipeline.collections import PermissionDenied

            self.collections.require(collection_id, user_id or self.user, "view", "get assets from")
            if not self.collections.contains(collection_id, asset_id):
                raise PermissionDenied(f"asset {asset_id} is not in collection {collection_id}")
        asset = self.asset(asset_id)
        if asset["status"] == "archived":
            raise AssetUnavailable(f"asset {asset_id} is archived; restore it with Catalog.restore({asset_id!r})")
        if asset["status"] == "deleted":
            raise AssetUnavailable(f"asset {asset_id} is deleted; undelete it within the grace period with "
                                   f"Catalog.undelete({asset_id!r})")
        row = self.get_version(asset_id, version if version is not None else asset["current_version"])
        meta = {**row, "name": asset["name"], "project": asset["project"], "status": asset["status"],
                "current_version": asset["current_version"]}
        self._usage.record(asset_id, "download", user_id or self.user, at=None, version=row["version"],
                           collection_id=collection_id)
        return AssetContent(asset_id, row["version"], row["sha256"], meta, self.home)

    def url(self, asset_id: str, version: int | None = None, expires_s: int | None = None) -> str:
        """A presigned download URL (S3 store only)."""
        content = self.get(asset_id, version)
        return self.home.store.url(content.sha256, expires_s or self.home.settings.presign_expiry_s)

    # --- search ------------------------------------------------------------------------------
    def search(self, text: str | None = None, image: Any = None, query: str | None = None,
               filters: dict[str, Any] | None = None, k: int = 10, include_inactive: bool = False,
               model: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
        """Find assets by what they look like or by what was asked for; best first.

        text: words → images/videos/prompts (CLIP text tower). image: a path, bytes, PIL image or an
        asset id (its stored vector). query: full-text over prompts. text or image together with
        query runs a hybrid search (vector + full-text, reciprocal-rank fusion).
        filters: project, type, tags (any of), status, created_after, created_before, asset_id.
        Archived and deleted assets are left out unless `include_inactive` or a status filter.
        Each hit: asset_id, version, score, type, prompt, name, project, tags, status, created_at,
        model (the test model is labelled as such). `model` defaults to $ASSET_PIPELINE_CLIP_MODEL.
        With `user`, only assets that user may see (in collections shared with them, or their own).
        """
        from asset_pipeline.embeddings import search as s
        from asset_pipeline.embeddings.model import parse_model

        if text is not None and image is not None:
            raise s.SearchError("give text= or image=, not both (add query= for a hybrid search)")
        if text is None and image is None and not query:
            raise s.SearchError("search needs text=, image= or query=")
        if user is not None:
            visible = sorted(self.collections.visible_asset_ids(user))
            if not visible:
                return []
            filters = {**(filters or {}), "asset_id": visible}
        where = s.where_clause(filters, include_inactive)
        spec = parse_model(model)
        loaded = self._load_model(spec) if text is not None or image is not None else None
        model_id = loaded.model_id if loaded else spec.model_id
        table = self.home.vectors.open(model_id)
        vector = None
        if text is not None:
            vector = loaded.encode_texts([text])[0].numpy()
        elif image is not None:
            vector = self._stored_vector(table, image) if self._is_asset_id(image) else s.image_vector(loaded, image)
        hits = s.run_search(table, vector=vector, query=query, where=where, k=k * 2, model_label=(
            loaded.label if loaded else spec.name))
        wanted = (filters or {}).get("status") or (None if include_inactive else "active")
        if wanted:
            # Rows learn of status changes at the next embedding run; the assets table has the last word.
            wanted = {wanted} if isinstance(wanted, str) else set(wanted)
            live = self._statuses([h["asset_id"] for h in hits])
            hits = [h | {"status": live.get(h["asset_id"])} for h in hits if live.get(h["asset_id"]) in wanted]
        return hits[:k]

    def _load_model(self, spec):
        from asset_pipeline.embeddings.model import load_model

        cache = self.__dict__.setdefault("_models", {})
        if spec.name not in cache:
            cache[spec.name] = load_model(spec)
        return cache[spec.name]

    def _is_asset_id(self, image: Any) -> bool:
        return isinstance(image, str) and not Path(image).exists() and image.startswith("a_")

    def _stored_vector(self, table: Any, asset_id: str):
        import numpy as np

        self.asset(asset_id)  # AssetNotFound for unknown ids
        if table is not None:
            rows = (table.search().where(f"asset_id = '{asset_id}'").select(["version", "vector"]).limit(None)
                    .to_arrow().to_pylist())
            if rows:
                return np.asarray(max(rows, key=lambda r: r["version"])["vector"], dtype=np.float32)
        from asset_pipeline.errors import AssetPipelineError

        raise AssetPipelineError(f"asset {asset_id} has no embedding for this model yet: run the embeddings job "
                                 "(dagster job embed_job, or asset-pipeline embed)")

    def _statuses(self, asset_ids: list[str]) -> dict[str, str]:
        if not asset_ids:
            return {}
        rows = self.tables.read("assets", where="id in (select unnest(?))", params=[asset_ids],
                                columns=["id", "status"]).to_pylist()
        return {r["id"]: r["status"] for r in rows}

    # --- writing -----------------------------------------------------------------------------
    def ingest(self, only: list[str] | None = None, progress: Progress | None = None) -> IngestSummary:
        """Ingest the inbox without Dagster (the Dagster job does the same, step by step)."""
        return self.home.ingest(only, progress)

    def _commit_one(self, asset_id: str, sha: str, size: int, info: FormatInfo, sidecar: Sidecar,
                    source: str, force: bool, path: Path | None = None, written: bool = False) -> dict[str, Any]:
        asset = self.asset(asset_id)
        item = InboxItem(source, path or Path(source), None, size, int(datetime.now(UTC).timestamp() * 1e9))
        acc = Examined(item, sidecar, info, sha, size, (size, item.mtime_ns), asset_id, asset["name"], asset["project"],
                       written=written)
        new_rows, _ = commit_versions([acc], self.tables, new_run_id(), force=force)
        verify_blobs(new_rows, [acc], self.home.store)
        if new_rows:
            return new_rows[0]
        return next(v for v in reversed(self.list_versions(asset_id)) if v["sha256"] == sha)

    def _sidecar_from(self, row: dict[str, Any], **changes: Any) -> Sidecar:
        import json

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
        """Store `content` as the next version of `asset_id`; generation fields (model, prompt,
        seed, parameters, tags) default to the current version's. Returns the version row; content
        that already is a version of the asset returns that version instead of a duplicate."""
        latest = self.get_version(asset_id)
        with tempfile.TemporaryDirectory(prefix="asset-pipeline-version-") as tmp:
            if isinstance(content, (str, os.PathLike)):
                path = Path(content)
            else:
                path = Path(tmp) / "content"
                with open(path, "wb") as out:
                    if isinstance(content, bytes):
                        out.write(content)
                    else:
                        while chunk := content.read(1024 * 1024):
                            out.write(chunk)
            try:
                info = inspect_file(path)
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
