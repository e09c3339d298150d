"""The search notebook runs top to bottom against a real home (tiny test model)."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from asset_pipeline import Catalog
from asset_pipeline.embeddings.job import embed_pending
from asset_pipeline.embeddings.model import TINY_TEST, load_model, parse_model
from asset_pipeline.embeddings.vectors import VectorStore

from .conftest import REPO


def test_search_notebook_executes(ingested: Catalog, settings, monkeypatch) -> None:
    embed_pending(ingested.tables, ingested.home.store, VectorStore(settings.lancedb_dir),
                  load_model(parse_model(TINY_TEST)), num_workers=0)
    monkeypatch.setenv("ASSET_PIPELINE_HOME", str(settings.home))
    monkeypatch.setenv("ASSET_PIPELINE_CLIP_MODEL", TINY_TEST)
    nb = nbformat.read(REPO / "notebooks" / "search.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(Path.cwd())}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(str(o.get("data", {}).get("text/plain", "")) + o.get("text", "") for o in outputs)
    assert "tiny-test (test model, random weights)" in text
    assert "prompts/rocket" in text and "clip_tiny_test" in text
