"""`Catalog`: the Python API for notebooks and scripts over one home.

A thin facade: each method hands over to one service — content (`asset_pipeline.content`), search
(`asset_pipeline.embeddings.searcher`), lifecycle (`asset_pipeline.lifecycle.service`), collections
(`asset_pipeline.collections`) and usage (`asset_pipeline.usage.events`) — and adds only what
crosses them: the acting user, usage recorded for what was delivered, and who may see what.
"""

from __future__ import annotations

import os
import weakref
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

from asset_pipeline.collections import Collections, collections_of
from asset_pipeline.content import AssetContent, Content
from asset_pipeline.errors import PermissionDenied
from asset_pipeline.home import Home, require_home
from asset_pipeline.ingest import IngestSummary, Progress
from asset_pipeline.results import Gallery, QueryResult, SearchHits
from asset_pipeline.settings import Settings


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
    """Everything under one home.

    ``Catalog()`` opens ``$ASSET_PIPELINE_HOME`` (default ``./data``) and refuses one that does not
    exist (a typo must not start an empty home); ``Catalog(path)`` or ``Catalog(settings=...)``
    creates the home it names. Assets are named by id or by ``"project/name"``.

    >>> cat = Catalog()
    >>> cat.sql("select project, count(*) n from assets group by project")   # a DataFrame on screen
    >>> cat.get("research/images/sunset").read()
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, settings: Settings | None = None,
                 s3_client: Any = None, user: str | None = None):
        from asset_pipeline.usage.events import UsageBuffer

        if settings is None:
            settings = Settings.from_env(home)
            if home is None:
                require_home(settings)
        self.home = Home(settings, s3_client=s3_client)
        self.tables = self.home.tables
        self.tables.ensure_all()
        self.user = user or _default_user()
        self.content = Content(self.home)
        self._usage = UsageBuffer(self.tables)
        # Buffered usage events become durable when the catalog is collected or the interpreter
        # exits, whichever comes first (Catalog.flush() does it at once).
        weakref.finalize(self, _flush_quietly, self._usage)

    # --- services ----------------------------------------------------------------------------
    @cached_property
    def collections(self) -> Collections:
        return collections_of(self.home)

    @cached_property
    def searcher(self):
        from asset_pipeline.embeddings.searcher import Searcher

        return Searcher(self.content)

    @cached_property
    def lifecycle_service(self):
        from asset_pipeline.lifecycle.service import LifecycleService

        return LifecycleService(self.home)

    def _id(self, ref: str) -> str:
        return self.content.resolve(ref)["id"]

    # --- lifecycle ---------------------------------------------------------------------------
    def lifecycle(self, storage_class: str | None = None):
        """The `Lifecycle` actions over this home's stores (what the retention sweep uses)."""
        return self.lifecycle_service.lifecycle(storage_class)

    def archive(self, asset_id: str) -> None:
        """Move the asset's blobs to the archive store; `get` then says it is archived."""
        self.lifecycle_service.archive(self._id(asset_id), by=self.user)

    def restore(self, asset_id: str) -> None:
        """Bring an archived asset's blobs back and make it active again."""
        self.lifecycle_service.restore(self._id(asset_id), by=self.user)

    def delete(self, asset_id: str) -> None:
        """Soft delete: gone from search and listings; undeletable until the grace period ends,
        after which a sweep removes blobs no other live version references."""
        self.lifecycle_service.delete(self._id(asset_id), by=self.user)

    def undelete(self, asset_id: str) -> None:
        """Undo a soft delete within the grace period."""
        self.lifecycle_service.undelete(self._id(asset_id), by=self.user)

    # --- provenance (issue 14): export, lineage, recall, pHash, storage --------------------------
    def export(self, asset_id: str, path: str | os.PathLike[str], version: int | None = None,
               user_id: str | None = None):
        """Write a copy of the version that declares itself AI-generated (IPTC trainedAlgorithmicMedia
        and the generation facts in XMP; a signed C2PA manifest when a signing certificate is
        configured). Returns an `ExportResult`; once the copy is written it counts as a download."""
        from asset_pipeline.provenance.export import export_copy

        content = self.get(asset_id, version, user_id=user_id)
        s = self.home.settings
        result = export_copy(self.home.store, content.metadata, path, self._signing(),
                             Path(s.c2pa_trust_anchors).read_bytes() if s.c2pa_trust_anchors else None)
        content.delivered()
        return result

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

        return lineage(self.tables, self._id(asset_id))

    def recall(self, model: str, reason: str, by: str | None = None, dry_run: bool = False):
        """Soft-delete every asset `model` produced (audited, grace period, reversible until hard
        delete with `undo_recall`); `dry_run` only lists and records what it would take."""
        from asset_pipeline.provenance.recall import recall

        with self.home.lock("lifecycle"):  # statuses change: never beside a sweep
            return recall(self.lifecycle(), model, reason, by or self.user, dry_run)

    def undo_recall(self, recall_id: str) -> list[str]:
        """Undelete what a recall took, within the grace period; returns the asset ids restored."""
        from asset_pipeline.provenance.recall import undo_recall

        return undo_recall(self.lifecycle(), recall_id, self.lifecycle_service.retention().grace_period_days,
                           self.user)

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
    def create_collection(self, name: str, owner: str, description: str = "") -> str:
        """A new collection owned (and administered) by `owner`; returns its id."""
        return self.collections.create(name, owner, description)

    def add_to_collection(self, collection_id: str, asset_id: str, user: str) -> bool:
        """Needs edit. False when the asset was already in it."""
        return self.collections.add(collection_id, self._id(asset_id), user)

    def remove_from_collection(self, collection_id: str, asset_id: str, user: str) -> bool:
        """Needs edit. False when the asset was not in it."""
        return self.collections.remove(collection_id, self._id(asset_id), user)

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
    def sql(self, query: str, params: list | dict | None = None) -> QueryResult:
        """Run DuckDB SQL over the views of every Delta table (``assets``, ``asset_versions``,
        ``ingest_errors``, ``usage_events``, …) and the usage reports (``daily_usage``,
        ``popular_assets``, ``asset_usage_stats``, ``storage_by_project``) once built.

        The result shows as a table in a notebook; ``.to_pandas()`` is a DataFrame, ``.to_pylist()``
        a list of dicts, ``.arrow`` the Arrow table. Bad SQL raises `QueryError`."""
        from asset_pipeline.sql import query as run_query

        self._usage.flush()  # a query sees the caller's own events
        return run_query(self.tables, self.home.root, query, params)

    # --- reading -----------------------------------------------------------------------------
    def asset(self, asset_id: str) -> dict[str, Any]:
        """The asset's row, by id or ``project/name``."""
        return self.content.resolve(asset_id)

    def find(self, project: str, name: str) -> dict[str, Any]:
        """The asset's row by project and name (`AssetNotFound` when there is none)."""
        return self.content.find(project, name)

    def list_versions(self, asset_id: str) -> list[dict[str, Any]]:
        """Every version, oldest first."""
        return self.content.list_versions(self._id(asset_id))

    def get_version(self, asset_id: str, version: int | None = None) -> dict[str, Any]:
        """One version's row: the latest when `version` is None."""
        return self.content.get_version(self._id(asset_id), version)

    def get(self, asset_id: str, version: int | None = None, user_id: str | None = None,
            collection_id: str | None = None) -> AssetContent:
        """Content and metadata of the current (or the given) version, by id or ``project/name``.

        A download by `user_id` (default: the catalog's user) is recorded once the content's bytes
        are delivered — `read()`, `iter_chunks()` to the end, or `open()` read to the end — not for
        looking at `metadata`. Through `collection_id`, the user needs view on that collection and
        the asset must be in it."""
        asset = self.content.resolve(asset_id)
        user = user_id or self.user
        if collection_id is not None:
            self.collections.require(collection_id, user, "view", "get assets from")
            if not self.collections.contains(collection_id, asset["id"]):
                raise PermissionDenied(f"asset {asset['id']} is not in collection {collection_id}")

        def downloaded(version_no: int) -> None:
            self._usage.record(asset["id"], "download", user, at=None, version=version_no,
                               collection_id=collection_id)

        return self.content.get(asset, version, on_delivered=downloaded)

    def url(self, asset_id: str, version: int | None = None, expires_s: int | None = None) -> str:
        """A presigned download URL (S3 store only); handing it out counts as a download."""
        asset = self.content.resolve(asset_id)
        content = self.content.get(asset, version)
        link = self.home.store.url(content.sha256, expires_s or self.home.settings.presign_expiry_s)
        self._usage.record(asset["id"], "download", self.user, at=None, version=content.version)
        return link

    # --- search ------------------------------------------------------------------------------
    def search(self, text: str | None = None, image: Any = None, query: str | None = None,
               filters: dict[str, Any] | None = None, k: int = 10, include_inactive: bool = False,
               model: str | None = None, user: str | None = None, vector: Any = None) -> SearchHits:
        """Find assets by what they look like or by what was asked for; best first.

        text: words → images/videos/prompts (CLIP text tower). image: a path, bytes, PIL image, an
        asset id or ``project/name`` (its stored vector). vector: an embedding of the model's space
        you already have. query: full-text over prompts. text, image or vector together with query
        runs a hybrid search (vector + full-text, reciprocal-rank fusion).
        filters: project, type, tags (any of), status, created_after, created_before, asset_id.
        Archived and deleted assets are left out unless `include_inactive` or a status filter.

        The model is the one the home's embeddings were built with, unless `model` or
        $ASSET_PIPELINE_CLIP_MODEL says otherwise; `hits.model` and each hit's "model" name it
        (the test model is labelled as such) and `hits.model_source` says why it was chosen.
        `NoEmbeddings` is raised when that model has no table in this home yet.
        With `user`, only assets that user may see (in collections shared with them, or their own).
        The result is a list of dicts that shows as a thumbnail grid in a notebook. The catalog keeps
        the LanceDB table open between searches and re-reads statuses only when `assets` commits.
        """
        visible = sorted(self.collections.visible_asset_ids(user)) if user is not None else None
        return self.searcher.search(text, image, query, filters, k, include_inactive, model, visible, vector)

    def show(self, hits: list[dict[str, Any]]) -> Gallery:
        """Any list of hits as a grid of thumbnails with project/name, version, score and prompt."""
        return Gallery(hits, self.home.store, getattr(hits, "model", None))

    # --- writing -----------------------------------------------------------------------------
    def ingest(self, only: list[str] | None = None, progress: Progress | None = None,
               verify: bool = False) -> IngestSummary:
        """Ingest the inbox without Dagster (the Dagster job runs the same). A consumed inbox
        (the default) loses each input once it is committed; a kept one is left as it is, and
        `verify` re-hashes its inputs instead of trusting the hash cache."""
        return self.home.ingest(only, progress, verify=verify)

    def create_version(self, asset_id: str, content: str | os.PathLike[str] | bytes | BinaryIO,
                       change_description: str, created_by: str | None = None,
                       **generation: Any) -> dict[str, Any]:
        """Store `content` as the next version of `asset_id`; generation fields (model, prompt,
        seed, parameters, tags) default to the current version's. Returns the version row; content
        that already is a version of the asset returns that version instead of a duplicate."""
        return self.content.create_version(self._id(asset_id), content, change_description, created_by, **generation)

    def revert(self, asset_id: str, version: int, created_by: str | None = None) -> dict[str, Any]:
        """Make version `version`'s content current again, as a new version (history is append-only)."""
        return self.content.revert(self._id(asset_id), version, created_by)
