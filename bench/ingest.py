"""Ingest benchmark: the project's ingest beside `openssl dgst -sha256`, `cp -r` and `dvc add`,
on the same corpus, in one run.

    python bench/ingest.py                      # 5,000 x 200 KB PNG + 5 x 200 MB models (about 2 GB)
    python bench/ingest.py --small 500 --large 2 --large-mb 50   # a quick look

Prints wall seconds, MB/s, ratios against `cp -r`, peak memory (RSS) of each process, a no-change
re-run, and peak memory for one small vs one large file (it must not grow with file size).
What validation costs: "asset-pipeline ingest" decodes what it accepts (full image decode within
the pixel limit, image ends, A/V demux, safetensors offsets); the contender "header-only
validation" is the same ingest with the validation as it was before (bench/header_only_formats.py:
`img.verify()` and headers), so the difference between the two is the price of full decoding.
Every round's times are printed as well as the medians (--skip-memory leaves out the last part,
which writes a 1 GB file).
The page cache is warmed before timing, so numbers compare CPU and copy paths, not the disk.
Each round runs every contender once, in turn, and medians over the rounds are printed (on a
shared machine speed drifts by minutes). Nothing is deleted while timing: deleting gigabytes makes
the filesystem discard blocks and slows whatever runs next, so the runs' outputs stay until the end
(about 7 x the corpus per round, checked before starting).
DVC is installed into bench/.work/dvc-venv when `dvc` is not on PATH (--no-dvc skips it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parent / ".work"


def build_corpus(root: Path, small: int, small_kb: int, large: int, large_mb: int) -> int:
    marker = root / ".complete.json"
    spec = {"small": small, "small_kb": small_kb, "large": large, "large_mb": large_mb}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != marker.name)
    shutil.rmtree(root, ignore_errors=True)
    from PIL import Image
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    side = int((small_kb * 1024 / 3) ** 0.5)
    for i in range(small):
        sub = root / "images" / f"{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(sub / f"img{i:05d}.png",
                                                                                   compress_level=1)
        _sidecar(sub / f"img{i:05d}.png", i)
    (root / "models").mkdir(parents=True, exist_ok=True)
    for j in range(large):
        path = root / "models" / f"model{j}.safetensors"
        n = large_mb * 1024 * 1024 // 4
        path.write_bytes(save({"w": rng.standard_normal(n, dtype=np.float32)}))
        _sidecar(path, 100_000 + j)
    marker.write_text(json.dumps(spec))
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != marker.name)


def _sidecar(path: Path, seed: int) -> None:
    path.with_name(path.name + ".meta.json").write_text(json.dumps({
        "model": "bench-model", "prompt": f"benchmark output {seed}", "seed": seed, "created_by": "bench",
        "project": "bench", "tags": ["bench"]}))


def run(cmd: list[str] | str, cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB of the largest process in it), starting with no dirty pages."""
    subprocess.run(["sync"], check=True)
    rss_file = WORK / "rss.txt"
    shell = cmd if isinstance(cmd, str) else " ".join(shlex.quote(c) for c in cmd)
    # GNU time measures the command alone (not this process's inherited RSS, as wait4 after fork would)
    wrapped = ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), "bash", "-c", shell]
    start = time.perf_counter()
    proc = subprocess.run(wrapped, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {shell}\n{proc.stderr.decode()[-2000:]}")
    return wall, int(rss_file.read_text().split()[-1]) / 1024


_BASELINE = Path(__file__).with_name("header_only_formats.py")
HEADER_ONLY = ("import importlib.util, sys, asset_pipeline.examine as ex; "
               f"spec = importlib.util.spec_from_file_location('header_only', {str(_BASELINE)!r}); "
               "old = sys.modules['header_only'] = importlib.util.module_from_spec(spec); "
               "spec.loader.exec_module(old); "
               "ex.inspect_file = lambda src, limits=None: old.inspect_file(src); ")


def ingest_cmd(home: Path, inbox: Path, durable: bool, header_only: bool = False) -> list[str]:
    """The ingest in a fresh interpreter; `header_only` swaps in the validation from before full
    decoding (forked workers inherit the swap)."""
    code = ((HEADER_ONLY if header_only else "") + "import sys; from asset_pipeline import Catalog, Settings; "
            f"s = Catalog(settings=Settings.from_env(home={str(home)!r}, inbox={str(inbox)!r}, durable={durable}))"
            ".ingest(); print(s.new_versions, s.rejected, file=sys.stderr); "
            "sys.exit(1 if s.rejected else 0)")
    return [sys.executable, "-c", code]


def dvc_binary(skip: bool) -> str | None:
    if skip:
        return None
    found = shutil.which("dvc")
    if found:
        return found
    venv = WORK / "dvc-venv"
    if not (venv / "bin" / "dvc").exists():
        print("installing dvc into bench/.work/dvc-venv ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "dvc==3.67.1"], check=True,
                       stderr=subprocess.DEVNULL)
    return str(venv / "bin" / "dvc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=5000)
    ap.add_argument("--small-kb", type=int, default=200)
    ap.add_argument("--large", type=int, default=5)
    ap.add_argument("--large-mb", type=int, default=200)
    ap.add_argument("--no-dvc", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is printed")
    ap.add_argument("--skip-memory", action="store_true", help="leave out peak memory for a 16 MB vs a 1 GB file")
    args = ap.parse_args()

    WORK.mkdir(exist_ok=True)
    corpus = WORK / "corpus"
    print("building corpus ...", flush=True)
    total = build_corpus(corpus, args.small, args.small_kb, args.large, args.large_mb)
    mb = total / 1e6
    files = sum(1 for p in corpus.rglob("*") if p.is_file()) - 1
    print(f"corpus: {files} files ({args.small} x {args.small_kb} KB + {args.large} x {args.large_mb} MB, "
          f"with sidecars), {mb:.0f} MB; {os.cpu_count()} cores")

    def warm() -> None:  # the runs write many times the corpus, which can push it out of the page cache
        run(f"find {corpus} -type f -print0 | xargs -0 cat > /dev/null")

    runs = WORK / "runs"  # every timed run writes to a new folder here; removed only at the end
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    free = shutil.disk_usage(WORK).free
    rounds = args.repeat
    if free < total * (7 * rounds + 4):
        raise SystemExit(f"needs about {total * (7 * rounds + 4) / 1e9:.0f} GB free under {WORK} "
                         f"(every run keeps its output until the end), has {free / 1e9:.0f} GB")
    counter = itertools.count()

    def fresh(name: str) -> Path:
        return runs / f"{name}-{next(counter)}"

    def scratch(name: str) -> Path:  # outside the timed rounds only
        path = WORK / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    dvc = dvc_binary(args.no_dvc)
    home_for_rerun = fresh("home")

    def dvc_repo() -> Path:
        repo = fresh("dvc-repo")
        repo.mkdir()
        shutil.copytree(corpus, repo / "corpus")  # dvc add works in place; give it its own copy
        subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
        return repo

    # (label, make command + working folder). Each round runs every contender once, in turn,
    # so a slow minute of a shared machine hits all of them alike; medians over the rounds.
    contenders: list[tuple[str, object]] = [
        ("openssl dgst -sha256 (1 process)",
         lambda: (f"find {corpus} -type f -print0 | xargs -0 openssl dgst -sha256 > /dev/null", None)),
        ("cp -r", lambda: (["cp", "-r", str(corpus), str(fresh("cp"))], None)),
        ("cp -r + sync", lambda: (f"cp -r {corpus} {fresh('cp')} && sync", None)),
        ("asset-pipeline ingest", lambda: (ingest_cmd(fresh("home"), corpus, False), None)),
        ("asset-pipeline ingest, header-only validation",
         lambda: (ingest_cmd(fresh("home"), corpus, False, header_only=True), None)),
        ("asset-pipeline ingest (durable: syncfs before commit)",
         lambda: (ingest_cmd(fresh("home"), corpus, True), None)),
    ]
    if dvc:
        contenders.append(("dvc add", lambda: ([dvc, "add", "-q", "corpus"], dvc_repo())))
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in contenders}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds} ...", flush=True)
        warm()
        for label, make in contenders:
            cmd, cwd = make()
            times[label].append(run(cmd, cwd=cwd))
            wall, rss = times[label][-1]
            print(f"  {label:<54}{wall:>8.2f} s{mb / wall:>8.0f} MB/s{rss:>8.0f} MiB", flush=True)
    if dvc:
        repo = dvc_repo()
        run([dvc, "add", "-q", "corpus"], cwd=repo)
        times["dvc add, unchanged re-run"] = [run([dvc, "add", "-q", "corpus"], cwd=repo) for _ in range(rounds)]
    run(ingest_cmd(home_for_rerun, corpus, True))
    warm()
    times["asset-pipeline ingest, unchanged re-run"] = [
        run(ingest_cmd(home_for_rerun, corpus, True)) for _ in range(rounds)]

    def median(label: str) -> tuple[float, float]:
        ordered = sorted(times[label])
        return ordered[len(ordered) // 2]

    cp = median("cp -r")[0]
    cp_sync = median("cp -r + sync")[0]
    print(f"\n{'what':<48}{'seconds':>9}{'MB/s':>9}{'vs cp -r':>10}{'peak RSS MiB':>14}")
    for label in times:
        wall, rss = median(label)
        print(f"{label:<48}{wall:>9.2f}{mb / wall:>9.0f}{cp / wall:>9.2f}x{rss:>14.0f}")
    durable = median("asset-pipeline ingest (durable: syncfs before commit)")[0]
    print(f"(durable ingest vs cp -r + sync: {cp_sync / durable:.2f}x)")
    paired = [c[0] / i[0] for c, i in zip(times["cp -r"], times["asset-pipeline ingest"])]
    print(f"(ingest vs cp -r within each round: {', '.join(f'{x:.2f}x' for x in paired)})")
    decode = [f[0] / h[0] for f, h in zip(times["asset-pipeline ingest"],
                                          times["asset-pipeline ingest, header-only validation"])]
    print(f"(full decoding vs header-only validation, time ratio within each round: "
          f"{', '.join(f'{x:.2f}x' for x in decode)})")
    if args.skip_memory:
        shutil.rmtree(runs, ignore_errors=True)
        return

    print("\npeak memory against file size (one file each, fresh store):")
    for size_mb in (16, 1024):
        inbox = scratch(f"one-{size_mb}")
        inbox.mkdir()
        path = inbox / "big.safetensors"
        with open(path, "wb") as f:
            header = json.dumps({"w": {"dtype": "F32", "shape": [size_mb * 262144],
                                       "data_offsets": [0, size_mb * 1048576]}}).encode()
            f.write(len(header).to_bytes(8, "little") + header)
            block = np.random.default_rng(size_mb).bytes(1048576)
            for _ in range(size_mb):
                f.write(block)
        _sidecar(path, size_mb)
        wall, rss = run(ingest_cmd(scratch("home-one"), inbox, False))
        print(f"  {size_mb:>5} MB file: {wall:6.2f} s, peak RSS {rss:.0f} MiB")
        shutil.rmtree(inbox, ignore_errors=True)
    shutil.rmtree(WORK / "home-one", ignore_errors=True)
    shutil.rmtree(runs, ignore_errors=True)  # last: deleting gigabytes slows whatever runs next


if __name__ == "__main__":
    main()
