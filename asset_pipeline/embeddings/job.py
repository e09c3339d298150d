"""The incremental batch embedding job.

Only versions that the current model has not embedded yet are read. Blobs are streamed from the
object store and decoded/preprocessed by DataLoader workers while the model runs on the previous
batch; rows are appended to LanceDB in large batches, each an atomic commit keyed on
(asset_id, version), so a crash mid-run loses at most the batch in flight and a re-run adds
nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

import pyarrow as pa

from asset_pipeline.embeddings.choice import record_model
from asset_pipeline.embeddings.model import LoadedModel
from asset_pipeline.embeddings.vectors import IndexReport, VectorStore, asset_ids_in, schema
from asset_pipeline.failpoints import failpoint
from asset_pipeline.sql import connect
from asset_pipeline.store import ObjectStore
from asset_pipeline.tables import Tables

VISUAL = ("image", "video")
EMBEDDABLE = ("image", "video", "prompt")
VIDEO_FRAMES = 3


@dataclass
class EmbedSummary:
    model: str
    device: str
    table: str
    pending: int = 0
    embedded: int = 0
    images: int = 0         # images and video frames through the image tower
    texts: int = 0
    failed: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    status_updates: int = 0
    index: IndexReport | None = None

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def pending_versions(tables: Tables, table: Any) -> list[dict]:
    """Embeddable versions of live assets that `table` (one model's) does not hold yet."""
    con = connect(tables, ["assets", "asset_versions"])
    try:
        con.register("embedded", VectorStore.embedded_keys(table))
        return con.sql(f"""
            select v.asset_id, v.version, v.sha256, v.type, v.format, v.prompt, v.tags, v.created_at,
                   a.project, a.name, a.status
            from asset_versions v join assets a on a.id = v.asset_id
            anti join embedded e on e.asset_id = v.asset_id and e.version = v.version
            where v.type in {EMBEDDABLE!r} and a.status <> 'deleted'
            order by v.asset_id, v.version""").to_arrow_table().to_pylist()
    finally:
        con.close()


def video_frames(data: BinaryIO, count: int = VIDEO_FRAMES) -> list[Any]:
    """Up to `count` evenly spaced keyframes (evenly spaced frames for keyframe-poor clips).

    `data` is a seekable file: the container is read twice, never held in memory — once to list
    packets (no decoding), once to decode just the chosen frames — so memory stays at a frame
    or two whatever the video's length."""
    import av

    with av.open(data) as container:
        packets = [(p.pts, p.is_keyframe) for p in container.demux(container.streams.video[0])
                   if p.pts is not None and p.size]
    keys = sorted(pts for pts, key in packets if key)
    pool = keys if len(keys) >= count else sorted(pts for pts, _ in packets)
    if not pool:
        raise ValueError("video has no decodable frames")
    step = len(pool) / min(count, len(pool))
    wanted = {pool[int(i * step)] for i in range(min(count, len(pool)))}
    data.seek(0)
    frames: dict[int, Any] = {}
    with av.open(data) as container:
        stream = container.streams.video[0]
        if pool is keys:
            stream.codec_context.skip_frame = "NONKEY"
        for frame in container.decode(stream):
            if frame.pts in wanted and frame.pts not in frames:
                frames[frame.pts] = frame.to_image()
                if len(frames) == len(wanted):
                    break
    if not frames:
        raise ValueError("video has no decodable frames")
    return [frames[pts] for pts in sorted(frames)]


@contextmanager
def _seekable(store: ObjectStore, sha256: str) -> Iterator[BinaryIO]:
    """The blob as a seekable file: a local blob as it is, a streamed (S3) one spooled to a
    temporary file first — never read whole into memory."""
    with store.open(sha256) as f:
        if f.seekable():
            yield f
            return
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(f, spool, 1024 * 1024)
            spool.seek(0)
            yield spool


class VisualDataset:
    """Map-style dataset: blob → PIL image(s) → preprocessed tensor [frames, C, H, W]."""

    def __init__(self, items: list[dict], store: ObjectStore, preprocess: Any):
        self.items, self.store, self.preprocess = items, store, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        import torch
        from PIL import Image

        item = self.items[i]
        try:
            with _seekable(self.store, item["sha256"]) as f:
                if item["type"] == "video":
                    images = video_frames(f)
                else:
                    with Image.open(f) as img:
                        images = [img.convert("RGB")]
            return i, torch.stack([self.preprocess(im) for im in images]), None
        except Exception as exc:  # one bad blob must not stop the batch
            return i, None, f"{type(exc).__name__}: {exc}"


def _collate(samples: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, list[int], list[tuple[int, str]]]:
    import torch

    ok = [(i, t) for i, t, err in samples if t is not None]
    failed = [(i, err) for i, t, err in samples if t is None]
    tensors = torch.cat([t for _, t in ok]) if ok else None
    return [i for i, _ in ok], tensors, [t.shape[0] for _, t in ok], failed


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # decoding workers must not fight the model for cores


def _prompt_text(store: ObjectStore, item: dict) -> str:
    """A prompt asset's text: the JSON's "prompt" field when there is one, else its sidecar prompt."""
    try:
        doc = json.loads(store.read_bytes(item["sha256"]))
        if isinstance(doc, dict) and isinstance(doc.get("prompt"), str):
            return doc["prompt"]
    except (ValueError, FileNotFoundError):
        pass
    return item["prompt"] or ""


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: a fixed share of all versions, chosen by a hash of (asset,
    version), so shards never overlap and separate runs or pods can embed them at once."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    def holds(self, asset_id: str, version: int) -> bool:
        if self.count == 1:
            return True
        digest = hashlib.sha256(f"{asset_id}:{version}".encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"


def embed_pending(tables: Tables, store: ObjectStore, vectors: VectorStore, model: LoadedModel,
                  batch_size: int = 64, num_workers: int = 2, append_rows: int = 4096,
                  shard: Shard = Shard(), index: bool = True) -> EmbedSummary:
    """Embed the versions of `shard` that the model's table lacks and append them. With `index`
    (a single, unsharded run) the statuses are synced and the indexes refreshed here too; a
    fanned-out job leaves that to one step after all shards (`refresh_index`)."""
    import torch

    table = vectors.open_or_create(model.model_id, model.dim)
    summary = EmbedSummary(model.label, model.device, table.name)
    if index:
        summary.status_updates = sync_status(tables, table)
    items = [it for it in pending_versions(tables, table) if shard.holds(it["asset_id"], it["version"])]
    summary.pending = len(items)
    now = datetime.now(UTC)
    buffer: list[dict] = []
    flushed = 0

    def emit(item: dict, vector: list[float]) -> None:
        nonlocal flushed
        buffer.append({**{k: item[k] for k in ("asset_id", "version", "sha256", "name", "type", "project", "tags",
                                               "prompt", "status", "created_at")},
                       "vector": vector, "model_id": model.model_id, "embedded_at": now})
        if len(buffer) >= append_rows:
            failpoint("embed-append")
            summary.embedded += vectors.add(table, pa.Table.from_pylist(buffer, schema=schema(model.dim)))
            buffer.clear()
            flushed += 1
            failpoint("embed-batch")

    start = time.perf_counter()
    visual = [it for it in items if it["type"] in VISUAL]
    if visual:
        if multiprocessing.current_process().daemon or not _worker_sockets_fit():
            # A daemonic process may not start children (a Celery prefork pool's worker, say), and
            # loader workers hand tensors over Unix sockets under the temp folder: decode in this
            # process rather than fail or hang. GPU workers should run with --pool=solo.
            num_workers = 0
        loader = torch.utils.data.DataLoader(
            VisualDataset(visual, store, model.preprocess), batch_size=batch_size, num_workers=num_workers,
            collate_fn=_collate, worker_init_fn=_worker_init, pin_memory=model.device.startswith("cuda"),
            prefetch_factor=4 if num_workers else None, persistent_workers=False)
        with warnings.catch_warnings():
            # Starting the iterator forks the loader's workers. They only decode blobs and never use
            # LanceDB, whose fork warning is about its own runtime in a forked child.
            warnings.filterwarnings("ignore", category=RuntimeWarning, message="lancedb fork support is experimental")
            batches = iter(loader)
        for indices, tensors, counts, failed in batches:
            summary.failed += [{"asset_id": visual[i]["asset_id"], "version": visual[i]["version"], "error": e}
                               for i, e in failed]
            if tensors is None:
                continue
            embedded = model.encode_images(tensors)
            summary.images += tensors.shape[0]
            offset = 0
            for i, n in zip(indices, counts):
                vec = torch.nn.functional.normalize(embedded[offset:offset + n].mean(0), dim=-1)
                offset += n
                emit(visual[i], vec.tolist())
    texts = [it for it in items if it["type"] == "prompt"]
    for lo in range(0, len(texts), batch_size):
        chunk = texts[lo:lo + batch_size]
        for item, vec in zip(chunk, model.encode_texts([_prompt_text(store, it) for it in chunk])):
            emit(item, vec.tolist())
        summary.texts += len(chunk)
    if buffer:
        failpoint("embed-append")
        summary.embedded += vectors.add(table, pa.Table.from_pylist(buffer, schema=schema(model.dim)))
    summary.seconds = time.perf_counter() - start
    if index:
        summary.index = vectors.maintain(table)
    record_model(vectors.location, model.spec, table.name)  # search and later runs default to this model
    return summary


# A Unix socket path holds at most 107 bytes; multiprocessing puts its sockets at
# <temp dir>/pymp-XXXXXXXX/listener-XXXXXXXX (about 33 bytes below the temp dir).
_SOCKET_PATH_MAX, _SOCKET_SUFFIX = 107, 33


def _worker_sockets_fit() -> bool:
    """Whether DataLoader workers can hand batches back: with a temp dir path too long for a
    socket, a worker's batch cannot be sent and the loader would wait for it forever."""
    return len(os.fsencode(tempfile.gettempdir())) + _SOCKET_SUFFIX <= _SOCKET_PATH_MAX


def refresh_index(tables: Tables, vectors: VectorStore, model_id: str, dim: int) -> tuple[int, IndexReport]:
    """After every shard has appended: statuses synced once, indexes built or refreshed once."""
    table = vectors.open_or_create(model_id, dim)
    return sync_status(tables, table), vectors.maintain(table)


def sync_status(tables: Tables, table: Any) -> int:
    """Copy asset status changes (archive, delete, restore) onto the embedding rows; rows of
    deleted assets are removed so they can never be returned."""
    con = connect(tables, ["assets"])
    try:
        con.register("rows", table.search().select(["asset_id", "status"]).limit(None).to_arrow())
        changes = con.sql("""select distinct r.asset_id, a.status from rows r join assets a on a.id = r.asset_id
                             where a.status is distinct from r.status""").fetchall()
    finally:
        con.close()
    by_status: dict[str, list[str]] = {}
    for asset_id, status in changes:
        by_status.setdefault(status, []).append(asset_id)
    for status, ids in by_status.items():
        where = asset_ids_in(ids)
        if status == "deleted":
            table.delete(where)
        else:
            table.update(where=where, values={"status": status})
    return len(changes)
