"""Group `embeddings`: open_clip vectors in LanceDB (a GPU-tagged batch job) and near-duplicates."""

import dagster as dg

from asset_pipeline.dagster_defs.executors import CELERY_QUEUE_TAG, GPU_QUEUE
from asset_pipeline.dagster_defs.k8s import GPU_STEP_K8S_CONFIG, k8s_tags
from asset_pipeline.dagster_defs.metadata import markdown_table
from asset_pipeline.dagster_defs.resources import ClipEmbedder, PipelineHome
from asset_pipeline.embeddings.job import embed_pending
from asset_pipeline.embeddings.near_duplicates import near_duplicate_pairs, prefiltered_pairs
from asset_pipeline.embeddings.vectors import VectorStore
from asset_pipeline.provenance.phash import PHASH_MAX_DISTANCE, hashed_image_ids, phash_pairs

GROUP = "embeddings"
GPU_TAGS = {"asset_pipeline/compute": "gpu"}  # route to GPU workers (run coordinator / executor config)
# Where the embedding step itself runs: on Celery, the `gpu` queue (GPU workers); on Kubernetes
# (k8s_job_executor), a pod with one GPU on a GPU node. Other executors ignore both tags.
GPU_OP_TAGS = {**GPU_TAGS, CELERY_QUEUE_TAG: GPU_QUEUE, **k8s_tags(GPU_STEP_K8S_CONFIG)}


@dg.asset(group_name=GROUP, deps=["asset_versions", "assets"], kinds={"lancedb", "pytorch"}, op_tags=GPU_OP_TAGS)
def clip_embeddings(context: dg.AssetExecutionContext, pipeline: PipelineHome, embedder: ClipEmbedder) -> \
        dg.MaterializeResult:
    """One open_clip vector per image/video/prompt version, in the LanceDB table of the model.
    Incremental: only versions this model has not embedded yet are read."""
    home = pipeline.open()
    model = embedder.load()  # ModelUnavailable fails this asset only, with a message that says how to fix it
    if model.spec.is_test_model:
        context.log.warning("embedding with the tiny random-weight test model: results are meaningless")
    s = embed_pending(home.tables, home.store, VectorStore(home.settings.lancedb_dir), model,
                      embedder.batch_size, embedder.num_workers)
    if s.failed:
        context.log.warning(f"{len(s.failed)} versions could not be decoded: {s.failed[:5]}")
    return dg.MaterializeResult(metadata={
        "rows_embedded": s.embedded, "pending": s.pending, "images_per_s": round(s.images_per_s, 2),
        "images": s.images, "texts": s.texts, "failed": len(s.failed), "device": s.device, "model": s.model,
        "lancedb_table": s.table, "table_rows": s.index.rows if s.index else 0,
        "ann_index": s.index.ann if s.index else "none", "status_updates": s.status_updates,
        "seconds": round(s.seconds, 3),
    })


@dg.asset(group_name=GROUP, deps=[clip_embeddings], kinds={"deltalake"})
def near_duplicates(context: dg.AssetExecutionContext, pipeline: PipelineHome, embedder: ClipEmbedder) -> \
        dg.MaterializeResult:
    """Pairs of live images whose embeddings' cosine similarity passes the threshold."""
    home = pipeline.open()
    spec = embedder.spec()
    table = VectorStore(home.settings.lancedb_dir).open(spec.model_id)
    # pHash pre-filter (issue 14): hashed images are paired by a banded Hamming join in DuckDB and
    # only those candidates are compared by embedding; images without a pHash go through ANN search.
    candidates = phash_pairs(home.tables, PHASH_MAX_DISTANCE)
    hashed = hashed_image_ids(home.tables)
    by_phash = prefiltered_pairs(table, spec.model_id, candidates, embedder.near_duplicate_threshold)
    by_ann = near_duplicate_pairs(table, spec.model_id, embedder.near_duplicate_threshold, skip=hashed)
    merged = {(p["asset_a"], p["asset_b"]): p for p in by_ann + by_phash}
    pairs = sorted(merged.values(), key=lambda p: (-p["similarity"], p["asset_a"], p["asset_b"]))
    home.tables.replace("near_duplicates", pairs)
    return dg.MaterializeResult(metadata={
        "pairs": len(pairs), "threshold": embedder.near_duplicate_threshold,
        "phash_candidates": len(candidates), "pairs_from_phash": len(by_phash), "pairs_from_ann": len(by_ann),
        "model": spec.name if not spec.is_test_model else "tiny-test (test model, random weights)",
        "preview": markdown_table([{k: p[k] for k in ("asset_a", "asset_b", "similarity")} for p in pairs[:20]]),
    })
