"""Group `embeddings`: open_clip vectors in LanceDB (a GPU-tagged batch job) and near-duplicates."""

import dagster as dg

from asset_pipeline.dagster_defs.executors import CELERY_QUEUE_TAG, GPU_QUEUE
from asset_pipeline.dagster_defs.k8s import GPU_STEP_K8S_CONFIG, k8s_tags
from asset_pipeline.dagster_defs.metadata import markdown_table, schema_metadata, table_metadata
from asset_pipeline.dagster_defs.resources import ClipEmbedder, PipelineHome
from asset_pipeline.embeddings.job import Shard, embed_pending, refresh_index
from asset_pipeline.embeddings.near_duplicates import near_duplicate_pairs, prefiltered_pairs
from asset_pipeline.provenance.phash import PHASH_MAX_DISTANCE, hashed_image_ids, phash_pairs

GROUP = "embeddings"
GPU_TAGS = {"asset_pipeline/compute": "gpu"}  # route to GPU workers (run coordinator / executor config)
# Where an embedding step itself runs: on Celery, the `gpu` queue (GPU workers); on Kubernetes
# (k8s_job_executor), a pod with one GPU on a GPU node. Other executors ignore both tags. Only the
# steps that embed carry them (each shard's step); the index step after them is a CPU step.
GPU_OP_TAGS = {**GPU_TAGS, CELERY_QUEUE_TAG: GPU_QUEUE, **k8s_tags(GPU_STEP_K8S_CONFIG)}


def _lock(home, model_id: str, part: str):
    """Runs that embed the same shard of the same model take turns: LanceDB appends of the same
    rows from two writers at once would both land (measured: three writers, 3× the rows)."""
    from asset_pipeline.embeddings.vectors import table_name

    return home.lock(f"embed-{table_name(model_id)}-{part}")


def _embed(context, pipeline: PipelineHome, embedder: ClipEmbedder, shard: Shard, index: bool):
    home = pipeline.open()
    choice = embedder.choose(home.vectors.location)  # the home's recorded model unless told otherwise
    context.log.info(f"embedding model: {choice.describe()}")
    model = embedder.load(choice.spec)  # ModelUnavailable fails this asset only, with a message that says the fix
    if model.spec.is_test_model:
        context.log.warning("embedding with the tiny random-weight test model: results are meaningless")
    with _lock(home, model.model_id, shard.name):
        s = embed_pending(home.tables, home.store, home.vectors, model, embedder.batch_size, embedder.num_workers,
                          shard=shard, index=index)
    if s.failed:
        context.log.warning(f"{len(s.failed)} versions could not be decoded: {s.failed[:5]}")
    return {"rows_embedded": s.embedded, "pending": s.pending, "images_per_s": round(s.images_per_s, 2),
            "images": s.images, "texts": s.texts, "failed": len(s.failed), "device": s.device, "model": s.model,
            "lancedb_table": s.table, "seconds": round(s.seconds, 3), "shard": shard.name,
            "model_source": choice.source,
            **({"table_rows": s.index.rows, "dagster/row_count": s.index.rows, "ann_index": s.index.ann,
                "status_updates": s.status_updates} if s.index else {})}


def build_clip_embeddings(shards: int = 1) -> dg.AssetsDefinition:
    """One open_clip vector per image/video/prompt version, in the LanceDB table of the model.

    One step when `shards` is 1. Otherwise a fan-out: `shards` steps (pods on Kubernetes, workers
    with Celery) each embed a fixed share of the new versions into the same table at once, and one
    step after them syncs statuses and builds or refreshes the ANN index once. The steps pass
    nothing to each other but what they write to the home."""
    description = ("One open_clip vector per image/video/prompt version, in the LanceDB table of the model. "
                   "Incremental: only versions this model has not embedded yet are read.")
    if shards <= 1:
        @dg.asset(name="clip_embeddings", group_name=GROUP, deps=["asset_versions", "assets"],
                  kinds={"lancedb", "pytorch"}, op_tags=GPU_OP_TAGS, description=description)
        def clip_embeddings(context: dg.AssetExecutionContext, pipeline: PipelineHome,
                            embedder: ClipEmbedder) -> dg.MaterializeResult:
            return dg.MaterializeResult(metadata=_embed(context, pipeline, embedder, Shard(), index=True))

        return clip_embeddings

    def shard_op(i: int) -> dg.OpDefinition:
        @dg.op(name=f"embed_shard_{i}", ins={"versions": dg.In(dg.Nothing), "assets": dg.In(dg.Nothing)},
               out=dg.Out(dg.Nothing), tags=GPU_OP_TAGS,
               description=f"Embed shard {i} of {shards} of the new versions.")
        def embed_shard(context: dg.OpExecutionContext, pipeline: PipelineHome, embedder: ClipEmbedder):
            yield dg.Output(None, metadata=_embed(context, pipeline, embedder, Shard(i, shards), index=False))

        return embed_shard

    @dg.op(ins={f"shard_{i}": dg.In(dg.Nothing) for i in range(shards)}, out=dg.Out(dg.Nothing),
           description="After every shard: statuses synced and indexes built or refreshed, once.")
    def index_embeddings(context: dg.OpExecutionContext, pipeline: PipelineHome, embedder: ClipEmbedder):
        home = pipeline.open()
        spec = embedder.choose(home.vectors.location).spec
        table = home.vectors.open(spec.model_id)
        if table is None:
            yield dg.Output(None, metadata={"table_rows": 0, "ann_index": "none (no rows)"})
            return
        dim = table.schema.field("vector").type.list_size
        with _lock(home, spec.model_id, "index"):
            updates, report = refresh_index(home.tables, home.vectors, spec.model_id, dim)
        yield dg.Output(None, metadata={"table_rows": report.rows, "dagster/row_count": report.rows,
                                        "ann_index": report.ann,
                                        "status_updates": updates, "shards": shards, "lancedb_table": table.name})

    shard_ops = [shard_op(i) for i in range(shards)]

    @dg.graph_asset(name="clip_embeddings", group_name=GROUP, description=description, kinds={"lancedb", "pytorch"},
                    ins={"asset_versions": dg.AssetIn(dagster_type=dg.Nothing),
                         "assets": dg.AssetIn(dagster_type=dg.Nothing)})
    def clip_embeddings(asset_versions, assets):
        return index_embeddings(**{f"shard_{i}": op(versions=asset_versions, assets=assets)
                                   for i, op in enumerate(shard_ops)})

    return clip_embeddings


def build_near_duplicates(clip_embeddings: dg.AssetsDefinition) -> dg.AssetsDefinition:
    @dg.asset(name="near_duplicates", group_name=GROUP, deps=[clip_embeddings], kinds={"deltalake"},
              metadata=schema_metadata("near_duplicates"))
    def near_duplicates(context: dg.AssetExecutionContext, pipeline: PipelineHome,
                        embedder: ClipEmbedder) -> dg.MaterializeResult:
        """Pairs of live images whose embeddings' cosine similarity passes the threshold."""
        return _near_duplicates(pipeline, embedder)

    return near_duplicates


def _near_duplicates(pipeline: PipelineHome, embedder: ClipEmbedder) -> dg.MaterializeResult:
    home = pipeline.open()
    spec = embedder.choose(home.vectors.location).spec
    found: dict[str, int] = {}

    def pair_up() -> list[dict]:
        table = home.vectors.open(spec.model_id)  # opened under the lock: the embeddings as they are now
        # pHash pre-filter (issue 14): hashed images are paired by a banded Hamming join in DuckDB and
        # only those candidates are compared by embedding; images without a pHash go through ANN search.
        candidates = phash_pairs(home.tables, PHASH_MAX_DISTANCE)
        hashed = hashed_image_ids(home.tables)
        by_phash = prefiltered_pairs(table, spec.model_id, candidates, embedder.near_duplicate_threshold)
        by_ann = near_duplicate_pairs(table, spec.model_id, embedder.near_duplicate_threshold, skip=hashed)
        found.update(candidates=len(candidates), by_phash=len(by_phash), by_ann=len(by_ann))
        merged = {(p["asset_a"], p["asset_b"]): p for p in by_ann + by_phash}
        return sorted(merged.values(), key=lambda p: (-p["similarity"], p["asset_a"], p["asset_b"]))

    pairs = home.recompute("near_duplicates", pair_up)
    return dg.MaterializeResult(metadata={
        "pairs": len(pairs), "threshold": embedder.near_duplicate_threshold,
        "phash_candidates": found["candidates"], "pairs_from_phash": found["by_phash"],
        "pairs_from_ann": found["by_ann"],
        "model": spec.name if not spec.is_test_model else "tiny-test (test model, random weights)",
        **table_metadata(home.tables, "near_duplicates"),
        "preview": markdown_table(pairs[:20], ("asset_a", "asset_b", "similarity"), home=home,
                                  pictures={"a": ("asset_a", "version_a"), "b": ("asset_b", "version_b")}),
    })
