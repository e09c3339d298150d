"""S3 benchmark: the project against an S3 endpoint (moto's server, as its own process on
127.0.0.1), beside the plain boto3 baseline, in one run.

    python bench/s3.py                           # 300 x 256 KB PNG + 2 x 64 MB models, 3 rounds
    python bench/s3.py --small 100 --rounds 2    # a quick look

Contenders, interleaved in every round (medians printed at the end, every round on the way):
- boto3 `upload_file` of every input (8 threads, the same transfer settings the store uses);
- `asset-pipeline ingest` into a home on S3 (tables, blobs and all), through the CLI and Dagster;
- `asset-pipeline ingest` of the same corpus into a local home.
Then Delta on S3 vs local: the latency of a one-row commit, and a scan of a 1,000,000-row table
through the catalog's DuckDB views.
moto keeps everything in its own process's memory, so absolute rates say more about moto than
about S3; the ratios against boto3 on the same endpoint are the point.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent
CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
         "AWS_DEFAULT_REGION": "us-east-1"}


def start_moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def build_corpus(root: Path, small: int, small_kb: int, large: int, large_mb: int) -> int:
    from PIL import Image
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    side = int((small_kb * 1024 / 3) ** 0.5)
    for i in range(small):
        path = root / "images" / f"img{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path, compress_level=1)
        _sidecar(path, i)
    for j in range(large):
        path = root / "models" / f"model{j}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(save({"w": rng.standard_normal(large_mb * 1024 * 1024 // 4, dtype=np.float32)}))
        _sidecar(path, 100_000 + j)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _sidecar(path: Path, seed: int) -> None:
    path.with_name(path.name + ".meta.json").write_text(json.dumps(
        {"model": "bench", "prompt": f"input {seed}", "seed": seed, "created_by": "bench", "project": "bench"}))


def boto3_upload(client, bucket: str, corpus: Path) -> float:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_threshold=64 * 1024 * 1024, multipart_chunksize=16 * 1024 * 1024,
                            max_concurrency=4)
    files = [p for p in corpus.rglob("*") if p.is_file()]
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.upload_file(str(p), bucket, f"plain/{p.relative_to(corpus)}", Config=config),
                      files))
    return time.perf_counter() - start


def farm(corpus: Path, inbox: Path) -> Path:
    """An inbox the default (consuming) ingest may empty: hard links to the corpus files."""
    subprocess.run(["cp", "-al", str(corpus), str(inbox)], check=True)
    return inbox


def cli_ingest(home: str, corpus: Path, env: dict[str, str]) -> float:
    if not home.startswith("s3://"):  # the CLI refuses a missing home folder (asset-pipeline init makes one)
        Path(home).mkdir(parents=True, exist_ok=True)
    dagster_home = Path(tempfile.mkdtemp(prefix="bench-dagster-"))
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / "asset-pipeline"), "ingest", str(corpus)], capture_output=True, text=True,
                          env={**env, "ASSET_PIPELINE_HOME": home, "DAGSTER_HOME": str(dagster_home)})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ingest into {home} failed:\n{proc.stdout}{proc.stderr}")
    shutil.rmtree(dagster_home, ignore_errors=True)
    return elapsed


def delta_numbers(root: str, access, rows: int) -> tuple[float, float]:
    """(median ms of a one-row append, median ms of count+sum over `rows` rows read the way the
    catalog reads a table)."""
    import pyarrow as pa
    from deltalake import write_deltalake

    from asset_pipeline.location import Location
    from asset_pipeline.sql import connect
    from asset_pipeline.tables import Tables

    options = access.delta_options() if access else None
    uri = f"{root}/commits"
    write_deltalake(uri, pa.table({"x": [0]}), storage_options=options)
    commits = []
    for i in range(15):
        start = time.perf_counter()
        write_deltalake(uri, pa.table({"x": [i]}), mode="append", storage_options=options)
        commits.append((time.perf_counter() - start) * 1000)
    tables = Tables(Location.parse(f"{root}/tables", access))
    n = rows
    data = pa.table({"asset_id": pa.array([f"a_{i:08d}" for i in range(n)]), "action": ["view"] * n,
                     "size": np.arange(n, dtype=np.int64)})
    write_deltalake(tables.uri("usage_errors"), data, storage_options=options)  # any table name the catalog knows
    scans = []
    for _ in range(5):
        start = time.perf_counter()
        con = connect(tables, ["usage_errors"])
        con.sql("select count(*), sum(size) from usage_errors").fetchall()
        con.close()
        scans.append((time.perf_counter() - start) * 1000)
    return statistics.median(commits), statistics.median(scans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--small-kb", type=int, default=256)
    parser.add_argument("--large", type=int, default=2)
    parser.add_argument("--large-mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--delta-only", nargs=2, metavar=("ENDPOINT", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.delta_only:  # run by the benchmark itself, in a child whose environment holds the endpoint
        endpoint, workdir = args.delta_only
        from asset_pipeline.location import S3Access

        s3_commit, s3_scan = delta_numbers("s3://bench-delta/d", S3Access(endpoint, "us-east-1"), args.rows)
        local_commit, local_scan = delta_numbers(workdir, None, args.rows)
        print(f"Delta one-row commit, median of 15: S3 {s3_commit:.1f} ms, local {local_commit:.1f} ms")
        print(f"scan of {args.rows:,} rows (count + sum through the catalog's DuckDB view), median of 5: "
              f"S3 {s3_scan:.1f} ms, local {local_scan:.1f} ms")
        return

    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    moto, endpoint = start_moto()
    env = {**os.environ, **CREDS, "AWS_ENDPOINT_URL": endpoint}
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id=CREDS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=CREDS["AWS_SECRET_ACCESS_KEY"])
        corpus = work / "corpus"
        size = build_corpus(corpus, args.small, args.small_kb, args.large, args.large_mb)
        mb = size / 1e6
        print(f"corpus: {args.small} x {args.small_kb} KB + {args.large} x {args.large_mb} MB = {mb:.0f} MB "
              f"(with sidecars); endpoint {endpoint} (moto)")
        results: dict[str, list[float]] = {"boto3 upload_file": [], "ingest, S3 home": [], "ingest, local home": []}
        for r in range(args.rounds):
            bucket = f"bench-{r}-{os.getpid()}"
            client.create_bucket(Bucket=bucket)
            # Each ingest consumes an inbox of its own: hard links to the corpus, made outside the timing.
            round_times = {
                "boto3 upload_file": boto3_upload(client, bucket, corpus),
                "ingest, S3 home": cli_ingest(f"s3://{bucket}/home", farm(corpus, work / f"inbox-s3-{r}"), env),
                "ingest, local home": cli_ingest(str(work / f"home-{r}"), farm(corpus, work / f"inbox-local-{r}"), env),
            }
            for k, v in round_times.items():
                results[k].append(v)
            base = round_times["boto3 upload_file"]
            print(f"round {r + 1}: " + "; ".join(f"{k} {v:.2f} s ({base / v:.2f}x boto3)"
                                                 for k, v in round_times.items()))
        base = statistics.median(results["boto3 upload_file"])
        print(f"\n{'contender':<22} {'median s':>9} {'MB/s':>8} {'vs boto3':>9}")
        for k, v in results.items():
            m = statistics.median(v)
            print(f"{k:<22} {m:>9.2f} {mb / m:>8.1f} {base / m:>8.2f}x")
        client.create_bucket(Bucket="bench-delta")
        print()
        subprocess.run([sys.executable, __file__, "--rows", str(args.rows), "--delta-only", endpoint,
                        str(work / "delta")], env=env, check=True)
    finally:
        moto.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
