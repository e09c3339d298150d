"""Many small files: tiny PNGs with sidecars through `asset-pipeline ingest`, beside `dvc add` of
the same files, in one run; files/s, peak memory, and unchanged re-runs.

    python bench/small_files.py                          # 20,000 and 200,000 inputs, 3 rounds
    python bench/small_files.py --files 20000 --rounds 5
    python bench/small_files.py --files 1000000 --rounds 1 --no-dvc    # memory stays bounded

Each input is an 8x8 PNG (unique pixels, written directly as PNG chunks) and its sidecar, 500 to
a folder. Contenders, each round, in turn: the CLI consuming an inbox (a hard-link farm of the
corpus made outside the timing, as a generator's fresh files would be), the library call doing
the same, `dvc add` on its own copy, and the CLI on an empty inbox (the run's fixed cost).
Then unchanged re-runs, interleaved: a kept inbox re-scanned (hash cache) beside DVC's re-add.
Every round is printed; medians end the table, with the floor that validation sets: each input's
examination CPU (hash + validation, measured on a sample) over all cores, plus the fixed cost;
and that floor again with each input's publication (store checks, read-only mode, hard link).
Peak memory is the largest process's RSS (GNU time).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import WORK, cli_cmd, dvc_binary, examination_ms, ingest_cmd, published_ms, run  # noqa: E402 - the bench's own helpers

PER_FOLDER = 500


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tiny_png(i: int) -> bytes:
    """An 8x8 RGB PNG whose pixels encode `i` (every file's content differs)."""
    raw = b"".join(b"\x00" + bytes((i >> (8 * (c % 4)) & 0xFF) ^ (y * 8 + c) for c in range(24)) for y in range(8))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 1)) + _chunk(b"IEND", b""))


def build(root: Path, n: int) -> None:
    marker = root / f".complete-{n}"
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    for i in range(n):
        folder = root / f"{i // PER_FOLDER:05d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"{i:07d}.png").write_bytes(tiny_png(i))
        (folder / f"{i:07d}.png.meta.json").write_text(json.dumps({
            "model": "bench-model", "prompt": f"tiny output {i}", "seed": i, "created_by": "bench",
            "project": "small"}))
    marker.touch()


def warm(root: Path) -> None:
    """Read every file of the corpus once, so the page cache holds it before the first round: the
    inboxes are hard-link farms of these very inodes, and without this the first contender of
    round 1 alone reads a corpus built long before from the disk (at 200,000 inputs on a
    virtual disk, 2.6x slower)."""
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                f.read()


def one_size(n: int, rounds: int, dvc: str | None, dagster_home: Path) -> None:
    corpus = WORK / f"small-{n}"
    runs = WORK / "small-runs"
    counter = itertools.count()
    print(f"\n{n:,} inputs ({2 * n:,} files): building ...", flush=True)
    build(corpus, n)
    warm(corpus)
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()

    def fresh(name: str) -> Path:
        return runs / f"{name}-{next(counter)}"

    def farm() -> Path:  # outside the timing: cp -al of the corpus
        inbox = fresh("inbox")
        subprocess.run(["cp", "-al", str(corpus), str(inbox)], check=True)
        return inbox

    def dvc_repo() -> Path:
        repo = fresh("dvc")
        repo.mkdir()
        subprocess.run(["cp", "-r", str(corpus), str(repo / "corpus")], check=True)
        subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
        return repo

    run(cli_cmd(fresh("home"), fresh("empty"), dagster_home))  # the Dagster instance exists, as for a user
    cli_label = "asset-pipeline ingest (CLI, consume)"
    rerun_label = "asset-pipeline ingest (CLI, keep), unchanged re-run"
    contenders = [(cli_label, lambda: (cli_cmd(fresh("home"), farm(), dagster_home), None)),
                  ("Catalog.ingest (library, consume)", lambda: (ingest_cmd(fresh("home"), farm(), True), None))]
    if dvc:
        contenders.append(("dvc add", lambda: ([dvc, "add", "-q", "corpus"], dvc_repo())))
    fixed_label = "empty inbox (CLI: the run's fixed cost)"
    contenders.append((fixed_label, lambda: (cli_cmd(fresh("home"), fresh("empty"), dagster_home), None)))
    times: dict[str, list[tuple[float, float]]] = {}

    def rate(label: str, seconds: float) -> str:
        return f"{'':>16}" if label == fixed_label else f"{n / seconds:>9.0f} inputs/s"

    def report(label: str, result: tuple[float, float], r: int) -> None:
        times.setdefault(label, []).append(result)
        print(f"  round {r + 1}  {label:<52}{result[0]:>8.2f} s{rate(label, result[0])}{result[1]:>8.0f} MiB",
              flush=True)

    for r in range(rounds):
        for label, make in contenders:
            cmd, cwd = make()
            report(label, run(cmd, cwd=cwd), r)
    kept = fresh("home")
    run(cli_cmd(kept, corpus, dagster_home, "keep"))
    repo = None
    if dvc:
        repo = dvc_repo()
        run([dvc, "add", "-q", "corpus"], cwd=repo)
    for r in range(rounds):
        report(rerun_label, run(cli_cmd(kept, corpus, dagster_home, "keep")), r)
        if repo is not None:
            report("dvc add, unchanged re-run", run([dvc, "add", "-q", "corpus"], cwd=repo), r)
    print(f"  medians over {rounds} rounds:")

    def median(label: str, i: int = 0) -> float:
        return statistics.median(v[i] for v in times[label])

    for label in times:
        print(f"  {'median':<9}{label:<52}{median(label):>8.2f} s{rate(label, median(label))}"
              f"{median(label, 1):>8.0f} MiB")
    if dvc:
        print(f"  (CLI vs dvc add, inputs/s: {median('dvc add') / median(cli_label):.2f}x; unchanged re-run "
              f"vs DVC's: {median('dvc add, unchanged re-run') / median(rerun_label):.2f}x)")
    # The floor with validation on: every input's examination (hash + validation) spread over
    # all cores, plus the run's fixed cost; nothing else (listing, links, commits) counted.
    whole_ms, hash_ms = examination_ms(corpus)
    cores = os.cpu_count() or 1
    floor = median(fixed_label) + n * whole_ms / 1000 / cores
    print(f"  (examination: {whole_ms:.3f} ms CPU per input, of which the hash {hash_ms:.3f} ms; floor = "
          f"fixed cost {median(fixed_label):.2f} s + {n:,} x {whole_ms:.3f} ms / {cores} cores = {floor:.2f} s; "
          f"the CLI took {median(cli_label) / floor:.2f}x the floor"
          + (f"; 2x dvc add's inputs/s needs <= {median('dvc add') / 2:.2f} s" if dvc else "") + ")")
    # The same floor with what publishing each consumed input costs (store checks, read-only
    # mode, the hard link): work no ingest that stores what it accepted can skip.
    stored_ms = published_ms(corpus, runs / "published")
    stored_floor = median(fixed_label) + n * stored_ms / 1000 / cores
    print(f"  (examination and publication: {stored_ms:.3f} ms CPU per input; floor = fixed cost "
          f"{median(fixed_label):.2f} s + {n:,} x {stored_ms:.3f} ms / {cores} cores = {stored_floor:.2f} s; "
          f"the CLI took {median(cli_label) / stored_floor:.2f}x this floor)")
    shutil.rmtree(runs, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, nargs="+", default=[20_000, 200_000], help="inputs (each + a sidecar)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-dvc", action="store_true")
    args = ap.parse_args()

    WORK.mkdir(exist_ok=True)
    dvc = dvc_binary(args.no_dvc)
    dagster_home = WORK / "small-dagster-home"
    shutil.rmtree(dagster_home, ignore_errors=True)
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    for n in args.files:
        one_size(n, args.rounds, dvc, dagster_home)
    print(f"\n({os.cpu_count()} cores; corpora kept under {WORK} for the next run)")


if __name__ == "__main__":
    main()
