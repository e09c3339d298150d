"""Ingest benchmark: the project's ingest beside `openssl dgst -sha256` (1 and 2 processes),
`cp -r`, `cp -r + sync` and `dvc add`, on the same corpus, in one run.

    python bench/ingest.py                      # 5,000 x 200 KB PNG + 5 x 200 MB models (about 2 GB)
    python bench/ingest.py --size-gb 10         # the same mix scaled to about 10 GB
    python bench/ingest.py --small 500 --large 2 --large-mb 50   # a quick look

Contenders: the CLI (`asset-pipeline ingest DIR`, through Dagster, durable: syncfs before the
commit) consuming an inbox on the store's filesystem (hard links, no copy); the library call
(`Catalog.ingest`, not durable) the same way; the CLI copying from an inbox on another filesystem
(`--other-fs`, default /dev/shm when it is one); and a kept inbox (copies, hash cache). Each
consumed inbox is a hard-link farm of the corpus (`cp -al`, made outside the timing), so every
contender reads the same page-cached inodes. Re-runs: the kept inbox re-scanned unchanged beside
DVC's unchanged re-add.

What validation costs: the ingest decodes what it accepts (full image decode within the pixel
limit, image ends, A/V demux, safetensors offsets); the contender "header-only validation" is the
same library ingest with the validation as it was before (bench/header_only_formats.py:
`img.verify()` and headers), so the difference between the two is the price of full decoding.

Prints every round (each round runs every contender once, in turn: a shared machine's speed
drifts by minutes), then medians: wall seconds, MB/s, ratio to `cp -r`, peak RSS of the largest
process. Then the ingest's time beyond the two-process `openssl` hash of the same bytes
(start-up, listing, validation, links, commit), and the floor when validation, not hashing,
bounds it: (hash + validation CPU) over the cores + the fixed cost of an empty run. Nothing is
deleted while timing (deleting gigabytes makes the filesystem discard blocks and slows whatever
runs next) unless `--discard` asks for it, as a 10 GB corpus needs: each run's output is then
removed and synced to disk between runs, outside the timing. DVC is installed into
bench/.work/dvc-venv when `dvc` is not on PATH (--no-dvc skips it).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
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


def ingest_cmd(home: Path, inbox: Path, durable: bool, mode: str = "consume", header_only: bool = False) -> list[str]:
    """The library call (no Dagster), in a fresh interpreter; `header_only` swaps in the
    validation from before full decoding (forked workers inherit the swap)."""
    code = ((HEADER_ONLY if header_only else "") + "import sys; from asset_pipeline import Catalog, Settings; "
            f"s = Catalog(settings=Settings.from_env(home={str(home)!r}, inbox={str(inbox)!r}, durable={durable}, "
            f"inbox_mode={mode!r})).ingest(); print(s.new_versions, s.rejected, file=sys.stderr); "
            "sys.exit(1 if s.rejected else 0)")
    return [sys.executable, "-c", code]


def cli_cmd(home: Path, inbox: Path, dagster_home: Path, mode: str = "consume") -> str:
    """`asset-pipeline ingest DIR` through Dagster, as a user runs it (an existing Dagster instance,
    a home folder made beforehand as `asset-pipeline init` would: the CLI refuses a missing home or
    inbox folder)."""
    home.mkdir(parents=True, exist_ok=True)
    inbox.mkdir(parents=True, exist_ok=True)
    script = Path(sys.executable).with_name("asset-pipeline")
    return (f"ASSET_PIPELINE_HOME={shlex.quote(str(home))} ASSET_PIPELINE_INBOX_MODE={mode} "
            f"DAGSTER_HOME={shlex.quote(str(dagster_home))} "
            f"{shlex.quote(str(script))} ingest {shlex.quote(str(inbox))}")


def examination_ms(root: Path, sample: int = 200) -> tuple[float, float]:
    """(CPU milliseconds per input of the whole examination — sidecar, embedded metadata, format
    check, pHash, C2PA and the hash — and of the hash alone), measured in this process on the
    first `sample` inputs under `root`."""
    from asset_pipeline.examine import examine
    from asset_pipeline.inbox import iter_local

    items = list(itertools.islice(iter_local(root), sample))
    for item in items[:5]:
        examine(item)
    start = time.process_time()
    for item in items:
        examine(item)
    whole = (time.process_time() - start) / max(1, len(items)) * 1000
    start = time.process_time()
    for item in items:
        hashlib.sha256(item.path.read_bytes()).hexdigest()
    return whole, (time.process_time() - start) / max(1, len(items)) * 1000


def published_ms(root: Path, scratch: Path, sample: int = 2000, warm: int = 300) -> float:
    """CPU milliseconds per input of the examination plus what publishing a consumed input costs
    (the store's checks, its read-only mode and the hard link of the very inode that was hashed)
    — the work every accepted input needs before its commit — measured in this process on a
    hard-link copy of the first `warm + sample` inputs under `root` into a new store under
    `scratch` (same filesystem). The first `warm` inputs make most of the store's fan-out
    folders and are not timed, as a long ingest pays those once."""
    from asset_pipeline.examine import examine
    from asset_pipeline.inbox import iter_local
    from asset_pipeline.store.local import LocalObjectStore

    shutil.rmtree(scratch, ignore_errors=True)
    inbox = scratch / "inbox"
    for item in itertools.islice(iter_local(root), warm + sample):
        for rel in (item.rel, item.rel + ".meta.json"):
            if (root / rel).exists():
                (inbox / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(root / rel, inbox / rel)
    store = LocalObjectStore(scratch / "store")
    items = list(iter_local(inbox))
    for item in items[:warm]:
        examine(item, store=store, give_inode=True)
    start = time.process_time()
    for item in items[warm:]:
        examine(item, store=store, give_inode=True)
    spent = (time.process_time() - start) / max(1, len(items) - warm) * 1000
    shutil.rmtree(scratch, ignore_errors=True)
    return spent


def validation_ms(corpus: Path, sample: int = 200) -> float:
    """CPU milliseconds per small file of what an ingest does besides hashing (sidecar, embedded
    metadata, format check, pHash, C2PA), measured in this process on a sample of the corpus."""
    whole, hashing = examination_ms(corpus / "images", sample)
    return whole - hashing


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
    ap.add_argument("--size-gb", type=float, help="scale the default mix to about this many GB")
    ap.add_argument("--other-fs", type=Path, help="a folder on another filesystem for the copy-mode inbox "
                                                   "(default: /dev/shm when it is one; 'none' skips)")
    ap.add_argument("--no-dvc", action="store_true")
    ap.add_argument("--repeat", "--rounds", type=int, default=3, help="rounds; medians are printed")
    ap.add_argument("--skip-memory", action="store_true", help="leave out peak memory for a 16 MB vs a 1 GB file")
    ap.add_argument("--discard", action="store_true", help="remove each run's output once it is timed (a 10 GB "
                                                          "corpus then needs about 4x its size free, not 7x a round)")
    args = ap.parse_args()
    if args.size_gb:
        scale = args.size_gb * 1e9 / (args.small * args.small_kb * 1024 + args.large * args.large_mb * 1024**2)
        args.small, args.large = max(1, round(args.small * scale)), max(1, round(args.large * scale))

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
    needed = total * (4 if args.discard else 7 * rounds + 4)
    if free < needed:
        raise SystemExit(f"needs about {needed / 1e9:.0f} GB free under {WORK} (every run keeps its output until "
                         f"the end unless --discard), has {free / 1e9:.0f} GB")
    other = args.other_fs
    if other is None and Path("/dev/shm").is_dir() and os.stat("/dev/shm").st_dev != os.stat(WORK).st_dev:
        other = Path("/dev/shm")
    if other is not None and str(other) == "none":
        other = None
    if other is not None and shutil.disk_usage(other).free < total * 1.2:
        print(f"(not enough room in {other} for a copy-mode inbox: skipped)")
        other = None
    counter = itertools.count()
    made: list[Path] = []  # what the run being timed writes to: removed after it with --discard

    def fresh(name: str) -> Path:
        made.append(runs / f"{name}-{next(counter)}")
        return made[-1]

    def discard() -> None:
        if args.discard:
            for path in made + leftovers:
                shutil.rmtree(path, ignore_errors=True)
            leftovers.clear()
        made.clear()

    def scratch(name: str) -> Path:  # outside the timed rounds only
        path = WORK / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def farm() -> Path:
        """A consumable inbox: hard links to the corpus files (made outside the timing)."""
        inbox = fresh("inbox")
        subprocess.run(["cp", "-al", str(corpus), str(inbox)], check=True)
        (inbox / ".complete.json").unlink(missing_ok=True)
        return inbox

    def elsewhere() -> Path:
        inbox = Path(tempfile.mkdtemp(prefix="ingest-bench-inbox-", dir=other))
        subprocess.run(f"cp -r {shlex.quote(str(corpus))}/. {shlex.quote(str(inbox))}", shell=True, check=True)
        (inbox / ".complete.json").unlink(missing_ok=True)
        leftovers.append(inbox)
        return inbox

    leftovers: list[Path] = []
    dvc = dvc_binary(args.no_dvc)
    dagster_home = scratch("dagster-home")
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    run(cli_cmd(scratch("home-init"), scratch("empty-inbox"), dagster_home))  # the instance exists, as for a user

    def dvc_repo() -> Path:
        repo = fresh("dvc-repo")
        repo.mkdir()
        shutil.copytree(corpus, repo / "corpus")  # dvc add works in place; give it its own copy
        subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
        return repo

    by_size = f"find {corpus} -type f -printf '%s\\t%p\\0' | sort -zrn | cut -zf2-"
    # (label, make command + working folder). Each round runs every contender once, in turn,
    # so a slow minute of a shared machine hits all of them alike; medians over the rounds.
    cli_label = "asset-pipeline ingest (CLI, consume, durable)"
    contenders: list[tuple[str, object]] = [
        ("openssl dgst -sha256 (1 process)",
         lambda: (f"find {corpus} -type f -print0 | xargs -0 openssl dgst -sha256 > /dev/null", None)),
        ("openssl dgst -sha256 (2 processes)",
         lambda: (f"{by_size} | xargs -0 -P 2 -n 8 openssl dgst -sha256 > /dev/null", None)),
        ("cp -r", lambda: (["cp", "-r", str(corpus), str(fresh("cp"))], None)),
        ("cp -r + sync", lambda: (f"cp -r {corpus} {fresh('cp')} && sync", None)),
        (cli_label, lambda: (cli_cmd(fresh("home"), farm(), dagster_home), None)),
        ("Catalog.ingest (library, consume)", lambda: (ingest_cmd(fresh("home"), farm(), False), None)),
        ("Catalog.ingest (library, consume), header-only validation",
         lambda: (ingest_cmd(fresh("home"), farm(), False, header_only=True), None)),
        ("asset-pipeline ingest (CLI, keep: copies)",
         lambda: (cli_cmd(fresh("home"), corpus, dagster_home, "keep"), None)),
    ]
    if other is not None:
        contenders.append((f"asset-pipeline ingest (CLI, consume, inbox on {other}: copies)",
                           lambda: (cli_cmd(fresh("home"), elsewhere(), dagster_home), None)))
    if dvc:
        contenders.append(("dvc add", lambda: ([dvc, "add", "-q", "corpus"], dvc_repo())))
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in contenders}

    def report(label: str, result: tuple[float, float], r: int) -> None:
        times.setdefault(label, []).append(result)
        print(f"  round {r + 1}  {label:<62}{result[0]:>8.2f} s{mb / result[0]:>8.0f} MB/s{result[1]:>8.0f} MiB",
              flush=True)

    for r in range(rounds):
        print(f"round {r + 1}/{rounds} ...", flush=True)
        warm()
        for label, make in contenders:
            cmd, cwd = make()
            report(label, run(cmd, cwd=cwd), r)
            discard()
    # Unchanged re-runs, interleaved too: a kept inbox re-scanned (hash cache) and DVC's re-add.
    kept_home = fresh("home")
    run(cli_cmd(kept_home, corpus, dagster_home, "keep"))
    repo = None
    if dvc:
        repo = dvc_repo()
        run([dvc, "add", "-q", "corpus"], cwd=repo)
    made.clear()  # kept for the re-runs
    for r in range(rounds):
        report("asset-pipeline ingest (CLI, keep), unchanged re-run", run(cli_cmd(kept_home, corpus, dagster_home,
                                                                                  "keep")), r)
        if repo is not None:
            report("dvc add, unchanged re-run", run([dvc, "add", "-q", "corpus"], cwd=repo), r)
        report("empty inbox (CLI: the run's fixed cost)", run(cli_cmd(fresh("home"), scratch("empty-inbox"),
                                                                      dagster_home)), r)

    def median(label: str) -> tuple[float, float]:
        ordered = sorted(times[label])
        return ordered[len(ordered) // 2]

    cp = median("cp -r")[0]
    cp_sync = median("cp -r + sync")[0]
    print(f"\nmedians over {rounds} rounds (busy machines drift: see every round above)")
    print(f"{'what':<64}{'seconds':>9}{'MB/s':>9}{'vs cp -r':>10}{'peak RSS MiB':>14}")
    for label in times:
        wall, rss = median(label)
        print(f"{label:<64}{wall:>9.2f}{mb / wall:>9.0f}{cp / wall:>9.2f}x{rss:>14.0f}")
    cli = median(cli_label)[0]
    openssl2 = median("openssl dgst -sha256 (2 processes)")[0]
    print(f"(CLI consume, durable, vs cp -r + sync: {cp_sync / cli:.2f}x"
          + (f"; vs dvc add: {median('dvc add')[0] / cli:.2f}x" if dvc else "") + ")")
    paired = [c[0] / i[0] for c, i in zip(times["cp -r"], times[cli_label])]
    print(f"(CLI consume vs cp -r within each round: {', '.join(f'{x:.2f}x' for x in paired)})")
    print(f"(CLI consume beyond the 2-process openssl hash: {cli - openssl2:+.2f} s)")
    decode = [f[0] / h[0] for f, h in zip(times["Catalog.ingest (library, consume)"],
                                          times["Catalog.ingest (library, consume), header-only validation"])]
    print(f"(full decoding vs header-only validation, time ratio within each round: "
          f"{', '.join(f'{x:.2f}x' for x in decode)})")
    small_ms = validation_ms(corpus)
    fixed = median("empty inbox (CLI: the run's fixed cost)")[0]
    cores = os.cpu_count() or 1
    floor = max(openssl2, (openssl2 * 2 + args.small * small_ms / 1000) / cores) + fixed
    print(f"(validation besides hashing: {small_ms:.2f} ms CPU per small file; floor = (hash + validation CPU) / "
          f"{cores} cores + fixed cost {fixed:.2f} s = {floor:.2f} s; the CLI took {cli:.2f} s, "
          f"{cli / floor:.2f}x the floor)")

    if args.skip_memory:
        for path in leftovers:
            shutil.rmtree(path, ignore_errors=True)
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
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(runs, ignore_errors=True)  # last: deleting gigabytes slows whatever runs next


if __name__ == "__main__":
    main()
