"""What `Catalog.sql` and `Catalog.search` return: plain data that also displays well in a notebook.

`QueryResult` keeps DuckDB's Arrow table (exact types: nullable integers, timestamps with zone,
lists) and renders as a pandas DataFrame; `.to_pandas()` gives the DataFrame itself. `SearchHits`
is the list of hit dicts it always was, and renders as a grid of thumbnails with name, prompt and
score (`Catalog.show(hits)` does the same for any list of hits).
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

    from asset_pipeline.store import ObjectStore


class QueryResult:
    """A SQL result. Arrow underneath (`.arrow`), a DataFrame on screen (`.to_pandas()`)."""

    def __init__(self, table: pa.Table):
        self.arrow = table

    @property
    def num_rows(self) -> int:
        return self.arrow.num_rows

    @property
    def column_names(self) -> list[str]:
        return self.arrow.column_names

    @property
    def schema(self) -> pa.Schema:
        return self.arrow.schema

    def column(self, i: int | str) -> pa.ChunkedArray:
        return self.arrow.column(i)

    def __getitem__(self, key: int | str) -> pa.ChunkedArray:
        return self.arrow[key]

    def __len__(self) -> int:
        return self.arrow.num_rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.arrow.to_pylist())

    def to_pylist(self) -> list[dict[str, Any]]:
        return self.arrow.to_pylist()

    def to_pandas(self, **kwargs: Any) -> pd.DataFrame:
        """A pandas DataFrame (nullable integers stay integers: Arrow-backed dtypes)."""
        import pandas as pd

        return self.arrow.to_pandas(types_mapper=pd.ArrowDtype, **kwargs)

    def _repr_html_(self) -> str:
        return self.to_pandas()._repr_html_()

    def __repr__(self) -> str:
        return repr(self.to_pandas())


def _card(hit: dict[str, Any], picture: str | None) -> str:
    e = html.escape
    image = (f'<img src="{picture}" alt="{e(str(hit.get("name")))}" style="max-width:160px;max-height:160px">'
             if picture else f'<div style="width:160px;height:90px;display:flex;align-items:center;'
                             f'justify-content:center;background:#eee;color:#555">{e(str(hit.get("type")))}</div>')
    prompt = str(hit.get("prompt") or "")
    return (f'<figure style="margin:4px;width:168px;display:inline-block;vertical-align:top;font-size:12px">'
            f'{image}<figcaption><b>{e(str(hit.get("project")))}/{e(str(hit.get("name")))}</b> '
            f'v{e(str(hit.get("version")))}<br>score {float(hit.get("score", 0.0)):.4f} · {e(str(hit.get("type")))}'
            f'<br><i>{e(prompt[:120])}{"…" if len(prompt) > 120 else ""}</i></figcaption></figure>')


def gallery_html(hits: list[dict[str, Any]], store: ObjectStore | None, model: str | None = None) -> str:
    """A grid of hits: thumbnail (images, video frames), project/name, version, score, prompt."""
    from asset_pipeline.thumbnails import thumbnail_data_uri

    cards = [_card(h, thumbnail_data_uri(store, h["sha256"], h["type"]) if store is not None and h.get("sha256")
                   else None) for h in hits]
    model = model or (hits[0].get("model") if hits else None)
    header = f"<div><small>{len(hits)} hits · model: {html.escape(str(model))}</small></div>" if model else ""
    return f'<div class="asset-pipeline-hits">{header}{"".join(cards) or "<i>no hits</i>"}</div>'


class Gallery:
    """Rich display of a list of hits (what `Catalog.show` returns)."""

    def __init__(self, hits: list[dict[str, Any]], store: ObjectStore | None, model: str | None = None):
        self.hits, self.store, self.model = list(hits), store, model

    def _repr_html_(self) -> str:
        return gallery_html(self.hits, self.store, self.model)

    def __repr__(self) -> str:
        return f"<Gallery of {len(self.hits)} hits>"


class SearchHits(list):
    """Search results, best first: a list of hit dicts that also knows which model answered and
    displays as a thumbnail grid in a notebook."""

    def __init__(self, hits: list[dict[str, Any]], model: str, store: ObjectStore | None = None,
                 model_source: str = ""):
        super().__init__(hits)
        self.model = model                # the label every hit carries in its "model" field
        self.model_source = model_source  # why this model: argument, $ASSET_PIPELINE_CLIP_MODEL, recorded, default
        self._store = store

    def _repr_html_(self) -> str:
        return gallery_html(self, self._store, self.model)
