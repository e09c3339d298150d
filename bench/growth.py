"""Costs that should not grow with the data, each measured at two sizes in one run:

- `ModelSpec.model_id` of a local checkpoint (64 MB vs 512 MB), a second access;
- the embedding job's dataset item of a video blob: peak RSS for a short vs a 16x longer clip;
- `Catalog.archive` + `restore` of one asset with 200 vs 5,000 other blobs in the store;
- `Catalog.record_usage` of an asset id that does not exist, with 10k vs 200k assets;
- an unchanged ingest's blob check (the `blobs_exist` check's function after a run that
  committed nothing) with 200 vs 5,000 blobs.

    python bench/growth.py                       # this checkout
    PYTHONPATH=/path/to/older/checkout python bench/growth.py   # the same numbers for other code

Each measurement runs in its own process, rounds interleave the two sizes, every round is
printed and medians end each line. The script uses only calls that older versions have too, so
running it against the code before and after a change gives the before/after numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

SETUP = "import json, os, sys, time, resource, tempfile\nfrom pathlib import Path\n"

MODEL_ID = """
from asset_pipeline.embeddings.model import parse_model
ckpt = Path(work) / f"clip-{size}.pt"
if not ckpt.exists():
    with open(ckpt, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(size):
            f.write(block)
parse_model(f"ViT-B-32:{ckpt}").model_id   # first access (hashes: expected once)
t = time.perf_counter()
parse_model(f"ViT-B-32:{ckpt}").model_id
result = (time.perf_counter() - t) * 1000
unit = "ms, 2nd access"
"""

VIDEO = """
import io
import av  # imported before the measurement: only the frames' own memory counts
from asset_pipeline.embeddings import job
from asset_pipeline.store import LocalObjectStore
store = LocalObjectStore(Path(work) / f"video-{size}")
made = Path(work) / f"video-{size}.sha"
if not made.exists():  # encoded in another process: its memory must not hide the measurement's
    import subprocess
    subprocess.run([sys.executable, "-c", "import io, sys; from pathlib import Path; "
                    "from asset_pipeline.samples import _mp4; from asset_pipeline.store import LocalObjectStore; "
                    f"s = LocalObjectStore(Path({str(store.root)!r})); "
                    f"sha = s.put_stream(io.BytesIO(_mp4(frames={size}, size=(1280, 720), fps=24)))[0]; "
                    f"Path({str(made)!r}).write_text(sha)"], check=True)
sha = made.read_text()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if hasattr(job, "_seekable"):  # how the dataset item reads a video blob, in this code
    with job._seekable(store, sha) as f:
        frames = job.video_frames(f)
else:
    with store.open(sha) as f:
        frames = job.video_frames(io.BytesIO(f.read()))
result = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
unit = f"MiB peak RSS growth ({len(frames)} frames kept)"
"""

ARCHIVE = """
import io, hashlib
from asset_pipeline import Catalog, Settings
home = Path(work) / f"archive-{size}"
s = Settings.from_env(home=home, inbox=str(home / "inbox"), durable=False)
if not (home / "ready").exists():
    inbox = Path(s.inbox)
    inbox.mkdir(parents=True)
    from asset_pipeline.samples import render_image
    for i in range(size):
        (inbox / f"{i}.json").write_text(json.dumps({"prompt": f"p{i}"}))
        (inbox / f"{i}.json.meta.json").write_text(json.dumps({"model": "m", "prompt": f"p{i}", "seed": i,
                                                               "created_by": "b", "project": "g"}))
    Catalog(settings=s).ingest()
    (home / "ready").touch()
cat = Catalog(settings=s)
victim = cat.sql("select id from assets order by id limit 1").column(0)[0].as_py()
t = time.perf_counter()
cat.archive(victim)
cat.restore(victim)
result = (time.perf_counter() - t) * 1000
unit = "ms archive + restore"
"""

USAGE = """
import pyarrow as pa
from asset_pipeline import Catalog, Settings
from asset_pipeline.tables import ASSETS, Tables
home = Path(work) / f"usage-{size}"
s = Settings.from_env(home=home, durable=False)
if not (home / "ready").exists():
    ids = [f"a_{i:09d}" for i in range(size)]
    cols = {f.name: pa.nulls(size, f.type) for f in ASSETS}
    cols.update(id=pa.array(ids), status=pa.array(["active"] * size))
    Tables(s.tables_dir).append("assets", pa.table(cols, schema=ASSETS))
    (home / "ready").touch()
cat = Catalog(settings=s)
cat.record_usage("a_000000001", "view", "bench")  # the first event of a session
t = time.perf_counter()
for _ in range(5):  # an id that does not exist (a typo, a purged asset) is looked up every time
    try:
        cat.record_usage("a_nope", "view", "bench")
    except Exception:
        pass
result = (time.perf_counter() - t) * 1000 / 5
unit = "ms record_usage of an unknown id"
"""

CHECK = """
from asset_pipeline import Catalog, Settings, integrity
home = Path(work) / f"check-{size}"
s = Settings.from_env(home=home, inbox=str(home / "inbox"), durable=False)
if not (home / "ready").exists():
    inbox = Path(s.inbox)
    inbox.mkdir(parents=True)
    for i in range(size):
        (inbox / f"{i}.json").write_text(json.dumps({"prompt": f"p{i}"}))
        (inbox / f"{i}.json.meta.json").write_text(json.dumps({"model": "m", "prompt": f"p{i}", "seed": i,
                                                               "created_by": "b", "project": "g"}))
    Catalog(settings=s).ingest()
    (home / "ready").touch()
cat = Catalog(settings=s)
t = time.perf_counter()
outcome = integrity.missing_blobs(cat.tables, cat.home.store, run_id="a-run-that-committed-nothing")
result = (time.perf_counter() - t) * 1000
unit = f"ms blob check after an unchanged run ({outcome.checked} looked up)"
"""

CASES = [("ModelSpec.model_id, local checkpoint", MODEL_ID, (64, 512), "MB"),
         ("video keyframes for the embedding job", VIDEO, (48, 1536), "frames"),
         ("Catalog.archive + restore of one asset", ARCHIVE, (200, 5000), "blobs in store"),
         ("Catalog.record_usage, unknown asset id", USAGE, (10_000, 200_000), "assets"),
         ("blob check after an unchanged ingest", CHECK, (200, 5000), "blobs")]


def measure(code: str, size: int, work: Path) -> tuple[float, str]:
    script = SETUP + f"work, size = {str(work)!r}, {size}\n" + textwrap.dedent(code) + \
        "\nprint(json.dumps([result, unit]))\n"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    value, unit = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(value), unit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import asset_pipeline

    print(f"code: {Path(asset_pipeline.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="growth-bench-") as tmp:
        work = Path(tmp)
        for label, code, sizes, what in CASES:
            values: dict[int, list[float]] = {size: [] for size in sizes}
            unit = ""
            for r in range(args.rounds):
                line = []
                for size in sizes:
                    value, unit = measure(code, size, work)
                    values[size].append(value)
                    line.append(f"{size:,} {what}: {value:9.1f}")
                print(f"  round {r + 1}  {label:<42}" + "   ".join(line), flush=True)
            med = "   ".join(f"{size:,} {what}: {statistics.median(v):9.1f}" for size, v in values.items())
            print(f"  median   {label:<42}{med}   ({unit})", flush=True)


if __name__ == "__main__":
    main()
