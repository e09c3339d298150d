"""Embedding benchmark: the pipeline's images/s beside a bare open_clip batch loop, same model,
same images, same batch size, in one run.

    python bench/embed.py                        # ViT-B-32 (random weights: same compute), 128 images
    python bench/embed.py --images 512 --device cuda --batch-size 128

Weights cannot be downloaded here, so the model is created with open_clip's own factory and
random weights; speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import json

    import open_clip

    from asset_pipeline import Catalog, Settings
    from asset_pipeline.embeddings.job import embed_pending
    from asset_pipeline.embeddings.model import LoadedModel, ModelSpec, resolve_device
    from asset_pipeline.embeddings.vectors import VectorStore
    from asset_pipeline.samples import render_image

    device = resolve_device(args.device)
    work = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    inbox = work / "inbox"
    paths = []
    for i in range(args.images):
        p = inbox / f"img{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(render_image(1000 + i, (512, 384)))
        p.with_name(p.name + ".meta.json").write_text(json.dumps(
            {"model": "bench", "prompt": f"image {i}", "seed": i, "created_by": "bench", "project": "bench"}))
        paths.append(p)
    # A kept inbox: the bare loop below reads the same files after the ingest.
    cat = Catalog(settings=Settings.from_env(home=work, inbox=str(inbox), durable=False, inbox_mode="keep"))
    cat.ingest()

    model, _, preprocess = open_clip.create_model_and_transforms(args.model, pretrained=None, device=device)
    model.eval()
    tokenizer = open_clip.get_tokenizer(args.model)
    print(f"{args.model} (random weights) on {device}, {torch.get_num_threads()} torch threads, "
          f"{args.images} images 512x384 PNG, batch {args.batch_size}")

    # Warm-up (first-call allocations, cudnn autotune) for both runs alike.
    with torch.no_grad():
        model.encode_image(torch.stack([preprocess(__import__("PIL.Image").Image.open(paths[0]).convert("RGB"))]
                                       * min(4, args.batch_size)).to(device))

    # 1. The bare loop: decode + preprocess, then encode, one batch after the other.
    from PIL import Image

    start = time.perf_counter()
    with torch.no_grad():
        for lo in range(0, len(paths), args.batch_size):
            batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[lo:lo + args.batch_size]])
            torch.nn.functional.normalize(model.encode_image(batch.to(device)).float(), dim=-1).cpu()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    bare = time.perf_counter() - start

    # 2. The pipeline: pending query, blobs from the store, DataLoader workers, LanceDB appends.
    loaded = LoadedModel(ModelSpec(args.model, None, f"{args.model} (random weights, benchmark)"), model,
                         preprocess, tokenizer, device, "fp32", 512, f"{args.model}:bench")
    vectors = VectorStore(work / "lancedb")
    start = time.perf_counter()
    summary = embed_pending(cat.tables, cat.home.store, vectors, loaded, args.batch_size, args.workers)
    total = time.perf_counter() - start

    print(f"\n{'what':<52}{'seconds':>9}{'images/s':>10}{'vs bare':>9}")
    print(f"{'bare open_clip loop (decode + encode)':<52}{bare:>9.2f}{args.images / bare:>10.2f}{1.0:>8.2f}x")
    print(f"{'pipeline, embedding loop (' + str(args.workers) + ' loader workers)':<52}{summary.seconds:>9.2f}"
          f"{summary.images_per_s:>10.2f}{bare / summary.seconds:>8.2f}x")
    print(f"{'pipeline, end to end (pending query, LanceDB, indexes)':<52}{total:>9.2f}"
          f"{args.images / total:>10.2f}{bare / total:>8.2f}x")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
