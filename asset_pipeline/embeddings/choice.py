"""Which embedding model a home uses: the one its LanceDB tables were built with, unless told otherwise.

The embedding job records the model it embedded with in ``<home>/lancedb/model.json``. Search, the
notebook, the embedding job and its sensor read that record, so after ``asset-pipeline quickstart``
(which embeds with the tiny test model when nothing is configured) everything agrees without the
user exporting anything. An explicit choice wins: a function argument or the embedder's run
config, then ``$ASSET_PIPELINE_CLIP_MODEL``; the default model comes last.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from asset_pipeline.embeddings.model import DEFAULT_MODEL, ENV_VAR, ModelSpec, parse_model
from asset_pipeline.location import Location

RECORD_FILE = "model.json"


@dataclass(frozen=True)
class ModelChoice:
    """A model and where the choice came from (printed beside results, so users know why)."""

    spec: ModelSpec
    source: str  # "argument", "$ASSET_PIPELINE_CLIP_MODEL", "recorded in the home", "default"

    def describe(self) -> str:
        return f"{self.spec.name} ({self.source})"


def _location(lancedb: Location | Path | str) -> Location:
    return lancedb if isinstance(lancedb, Location) else Location.parse(lancedb, what="lancedb folder")


def recorded_model(lancedb: Location | Path | str) -> str | None:
    """The model the home's tables were last built with, or None before the first embedding run."""
    try:
        return json.loads((_location(lancedb) / RECORD_FILE).read_text())["model"]
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None  # a damaged record is not a choice; the next embedding run rewrites it


def record_model(lancedb: Location | Path | str, spec: ModelSpec, table: str) -> None:
    """Remember the model (as configured, so a checkpoint path stays a path) and its table; the
    write replaces the record as a whole (a temp file renamed locally, one PUT on S3)."""
    (_location(lancedb) / RECORD_FILE).write_text(json.dumps(
        {"model": spec.name, "model_id": spec.model_id, "table": table,
         "recorded_at": datetime.now(UTC).isoformat()}, indent=2) + "\n")


def choose_model(lancedb: Location | Path | str, explicit: str | None = None, configured: str | None = None,
                 env: dict[str, str] | None = None) -> ModelChoice:
    """explicit argument > $ASSET_PIPELINE_CLIP_MODEL > configured (resource config) > the home's
    record > the default. `env` defaults to the process environment (read, never written)."""
    env = os.environ if env is None else env
    for value, source in ((explicit, "argument"), (env.get(ENV_VAR), f"${ENV_VAR}"),
                          (configured, "configured"), (recorded_model(lancedb), "recorded in the home")):
        if value:
            return ModelChoice(parse_model(value), source)
    return ModelChoice(parse_model(DEFAULT_MODEL), "default")
