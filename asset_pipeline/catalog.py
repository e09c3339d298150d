"""`Catalog`: the Python API for notebooks and scripts over one home.

A thin facade: each method hands over to one service — content (`asset_pipeline.content`), search
(`asset_pipeline.embeddings.searcher`), lifecycle (`asset_pipeline.lifecycle.service`), collections
(`asset_pipeline.collections`) and usage (`asset_pipeline.usage.events`) — and adds only what
crosses them: the acting user, usage recorded for what was delivered, and who may see what.
"""

from __future__ import annotations

import os
import weakref
from datetime import datetime
from functools import cached_property
from typing import Any, BinaryIO

from asset_pipeline.collections import Collections
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
        return Collections(self.tables)

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
        return run_query(self.tables, self.home.settings.home, query, params)

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
               model: str | None = None, user: str | None = None) -> SearchHits:
        """Find assets by what they look like or by what was asked for; best first.

        text: words → images/videos/prompts (CLIP text tower). image: a path, bytes, PIL image, an
        asset id or ``project/name`` (its stored vector). query: full-text over prompts. text or image
        together with query runs a hybrid search (vector + full-text, reciprocal-rank fusion).
        filters: project, type, tags (any of), status, created_after, created_before, asset_id.
        Archived and deleted assets are left out unless `include_inactive` or a status filter.

        The model is the one the home's embeddings were built with, unless `model` or
        $ASSET_PIPELINE_CLIP_MODEL says otherwise; `hits.model` and each hit's "model" name it
        (the test model is labelled as such) and `hits.model_source` says why it was chosen.
        `NoEmbeddings` is raised when that model has no table in this home yet.
        With `user`, only assets that user may see (in collections shared with them, or their own).
        The result is a list of dicts that shows as a thumbnail grid in a notebook.
        """
        visible = sorted(self.collections.visible_asset_ids(user)) if user is not None else None
        return self.searcher.search(text, image, query, filters, k, include_inactive, model, visible)

    def show(self, hits: list[dict[str, Any]]) -> Gallery:
        """Any list of hits as a grid of thumbnails with project/name, version, score and prompt."""
        return Gallery(hits, self.home.store, getattr(hits, "model", None))

    # --- writing -----------------------------------------------------------------------------
    def ingest(self, only: list[str] | None = None, progress: Progress | None = None) -> IngestSummary:
        """Ingest the inbox without Dagster (the Dagster job does the same, step by step)."""
        return self.home.ingest(only, progress)

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
