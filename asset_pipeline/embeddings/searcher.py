"""The search service behind `Catalog.search`: picks the home's model, loads it once, queries its
LanceDB table and has the `assets` table decide status (rows learn of status changes only at the
next embedding run). The table stays open between searches and the statuses of inactive assets
are cached until the `assets` table commits (`embeddings.session`), so a query costs the query."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from asset_pipeline.content import Content
from asset_pipeline.embeddings import search as s
from asset_pipeline.embeddings.choice import ModelChoice, choose_model
from asset_pipeline.embeddings.model import TEST_LABEL, TINY_TEST, LoadedModel, ModelSpec, load_model
from asset_pipeline.embeddings.vectors import asset_ids_in
from asset_pipeline.errors import AssetNotFound, NoEmbeddings, SearchError
from asset_pipeline.results import SearchHits


def label(spec: ModelSpec) -> str:
    """How hits name a model; the test model always says its weights are random."""
    return f"{TINY_TEST} ({TEST_LABEL})" if spec.is_test_model else spec.model_id


class Searcher:
    """Search over one home's embeddings; keeps loaded models for the next query."""

    def __init__(self, content: Content):
        from asset_pipeline.embeddings.session import SearchSession

        self.content = content
        self.location = content.home.root / "lancedb"
        self.session = SearchSession(self.location, content.tables)
        self._models: dict[str, LoadedModel] = {}

    @property
    def vectors(self):
        """A LanceDB connection for callers that need one (opened on each access)."""
        return self.content.home.vectors

    def choose(self, model: str | None = None) -> ModelChoice:
        return choose_model(self.location, explicit=model)

    def _load(self, spec: ModelSpec) -> LoadedModel:
        if spec.name not in self._models:
            self._models[spec.name] = load_model(spec)
        return self._models[spec.name]

    def _image_vector(self, table: Any, loaded: LoadedModel, image: Any) -> np.ndarray:
        if not isinstance(image, (str, Path)) or Path(image).is_file():
            try:
                return s.image_vector(loaded, image)
            except (OSError, ValueError) as exc:
                raise SearchError(f"cannot read the query image: {exc}") from exc
        try:
            asset = self.content.resolve(str(image))
        except AssetNotFound as exc:
            raise SearchError(f"image {str(image)!r} is not a file, an asset id or project/name") from exc
        rows = (table.search().where(asset_ids_in([asset["id"]])).select(["version", "vector"]).limit(None)
                .to_arrow().to_pylist())
        if not rows:
            raise SearchError(f"asset {asset['id']} has no embedding for this model yet: run the embeddings job "
                              "(asset-pipeline embed, or dagster job embed_job)")
        return np.asarray(max(rows, key=lambda r: r["version"])["vector"], dtype=np.float32)

    def search(self, text: str | None = None, image: Any = None, query: str | None = None,
               filters: dict[str, Any] | None = None, k: int = 10, include_inactive: bool = False,
               model: str | None = None, visible: list[str] | None = None, vector: Any = None) -> SearchHits:
        """See `Catalog.search`. `visible`: only these asset ids (a user's view); None: all."""
        if sum(x is not None for x in (text, image, vector)) > 1:
            raise SearchError("give one of text=, image= or vector= (add query= for a hybrid search)")
        if text is None and image is None and vector is None and not query:
            raise SearchError("search needs text=, image=, vector= or query=")
        choice = self.choose(model)
        store = self.content.home.store
        hits = SearchHits([], label(choice.spec), store, choice.source)
        if visible is not None:
            if not visible:
                return hits
            filters = {**(filters or {}), "asset_id": visible}
        # The index pre-filters on status only when many assets are inactive: a status filter on
        # a million rows costs the query a scan of that column (3 ms of 12 measured at 1M), while
        # the live statuses below drop the few inactive hits afterwards for free.
        prefilter = self.session.status.inactive_share() > s.PREFILTER_INACTIVE_SHARE
        where = s.where_clause(filters, include_inactive, default_status=prefilter)
        table = self.session.table(choice.spec.model_id)
        if table is None:
            raise NoEmbeddings(f"no embeddings for model {choice.describe()} in {self.location}: run "
                               f"asset-pipeline embed (or the embed_job) first")
        loaded = self._load(choice.spec) if text is not None or image is not None else None
        if text is not None:
            vector = loaded.encode_texts([text])[0].numpy()
        elif image is not None:
            vector = self._image_vector(table.sync, loaded, image)
        elif vector is not None:
            vector = np.asarray(vector, dtype=np.float32)
        wanted = (filters or {}).get("status") or (None if include_inactive else "active")
        keep = None
        if wanted:
            wanted = {wanted} if isinstance(wanted, str) else set(wanted)
            status = self.session.status

            def keep(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
                live = status.of([h["asset_id"] for h in found])
                return [h | {"status": live[h["asset_id"]]} for h in found if live[h["asset_id"]] in wanted]
        hits.extend(s.run_search(table, vector=vector, query=query, where=where, k=k, keep=keep,
                                 model_label=hits.model))
        return hits
