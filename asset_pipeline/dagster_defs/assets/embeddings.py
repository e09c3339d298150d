"""Group `embeddings`: open_clip vectors in LanceDB (a GPU-tagged batch job) and near-duplicates."""

import dagster as dg

from asset_pipeline.dagster_defs.metadata import markdown_table
from asset_pipeline.dagster_defs.resources import ClipEmbedder, PipelineHome
from asset_pipeline.embeddings.job import embed_pending
from asset_pipeline.embeddings.near_duplicates import near_duplicate_pairs
from asset_pipeline.embeddings.vectors import VectorStore

GROUP = "embeddings"
GPU_TAGS = {"asset_pipeline/compute": "gpu"}  # route to GPU workers (run coordinator / executor config)


@dg.asset(group_name=GROUP, deps=["asset_versions", "assets"], kinds={"lancedb", "pytorch"}, op_tags=GPU_TAGS)
def clip_embeddings(context: dg.AssetExecutionContext, pipeline: PipelineHome, embedder: ClipEmbedder) -> \
        dg.MaterializeResult:
    """One open_clip vector per image/video/prompt version, in the LanceDB table of the model.
    Incremental: only versions this model has not embedded yet are read."""
    home = pipeline.open()
    choice = embedder.choose(home.settings.lancedb_dir)
    context.log.info(f"embedding model: {choice.describe()}")
    model = embedder.load(choice.spec)  # ModelUnavailable fails this asset only, with a message that says the fix
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
        "model_source": choice.source,
        "seconds": round(s.seconds, 3),
    })


@dg.asset(group_name=GROUP, deps=[clip_embeddings], kinds={"deltalake"})
def near_duplicates(context: dg.AssetExecutionContext, pipeline: PipelineHome, embedder: ClipEmbedder) -> \
        dg.MaterializeResult:
    """Pairs of live images whose embeddings' cosine similarity passes the threshold."""
    home = pipeline.open()
    spec = embedder.choose(home.settings.lancedb_dir).spec
    table = VectorStore(home.settings.lancedb_dir).open(spec.model_id)
    pairs = near_duplicate_pairs(table, spec.model_id, embedder.near_duplicate_threshold)
    home.tables.replace("near_duplicates", pairs)
    return dg.MaterializeResult(metadata={
        "pairs": len(pairs), "threshold": embedder.near_duplicate_threshold,
        "model": spec.name if not spec.is_test_model else "tiny-test (test model, random weights)",
        "preview": markdown_table([{k: p[k] for k in ("asset_a", "asset_b", "similarity")} for p in pairs[:20]]),
    })
