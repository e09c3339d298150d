"""A run's fixed cost: an ingest of an empty inbox through `asset-pipeline ingest` and through
`dagster asset materialize -m asset_pipeline.core_definitions --select group:ingest`, beside the floors
every Dagster run pays: `python -c "import dagster"`, and `dagster asset materialize` of a one-asset
project whose asset does nothing (same in-process executor, same instance) — what Dagster itself
costs before any of this project's code runs — and a bare interpreter, in one run. One more
contender is a watch folder's sensor tick: `asset-pipeline ingest` of a kept inbox (keep mode)
holding the project's samples, all of them ingested before (read from the hash cache).

    python bench/fixed_cost.py                   # 5 interleaved rounds
    python bench/fixed_cost.py --rounds 10
    PYTHONPATH=/path/to/other/checkout python bench/fixed_cost.py   # the same for other code

Each round runs every contender once, in turn (a shared machine drifts); every round is printed
with wall seconds and CPU seconds (user + sys, from GNU time: on a busy machine CPU time moves
less than wall time), medians end the table. The home and the Dagster instance exist before the
first round, as they do for a user.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent
NOOP_DEFINITIONS = """import dagster as dg


@dg.asset
def noop() -> None:
    return None


defs = dg.Definitions(assets=[noop], executor=dg.in_process_executor)
"""


def run(cmd: str, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a shell command, measured by GNU time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        proc = subprocess.run(["/usr/bin/time", "-f", "%e %U %S", "-o", out.name, "bash", "-c", cmd], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"failed: {cmd}\n{proc.stderr[-2000:]}")
        wall, user, system = (float(x) for x in out.read().split()[-3:])
    return wall, user + system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    import asset_pipeline

    with tempfile.TemporaryDirectory(prefix="fixed-cost-") as tmp:
        work = Path(tmp)
        (work / "dh").mkdir()
        (work / "dh" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        (work / "inbox").mkdir()
        env = {**os.environ, "ASSET_PIPELINE_HOME": str(work / "home"), "ASSET_PIPELINE_INBOX": str(work / "inbox"),
               "DAGSTER_HOME": str(work / "dh"), "DAGSTER_DISABLE_TELEMETRY": "1"}
        python, cli, dagster = (shlex.quote(str(BIN / n)) for n in ("python", "asset-pipeline", "dagster"))
        subprocess.run(f"{cli} init", shell=True, env=env, check=True, capture_output=True)
        watched, kept_home = shlex.quote(str(work / "watched")), shlex.quote(str(work / "kept-home"))
        subprocess.run(f"{cli} make-samples {watched}", shell=True, env=env, check=True, capture_output=True)
        (work / "kept-home").mkdir()
        keep = f"ASSET_PIPELINE_HOME={kept_home} ASSET_PIPELINE_INBOX_MODE=keep {cli} ingest {watched}"
        noop = work / "noop_definitions.py"
        noop.write_text(NOOP_DEFINITIONS)
        contenders = [
            ("python -c pass", f"{python} -c pass"),
            ("python -c 'import dagster'", f"{python} -c 'import dagster'"),
            ("dagster asset materialize (a no-op asset)",
             f"{dagster} asset materialize -f {shlex.quote(str(noop))} --select noop"),
            ("asset-pipeline ingest (empty inbox)", f"{cli} ingest {shlex.quote(str(work / 'inbox'))}"),
            ("dagster asset materialize --select group:ingest",
             f"{dagster} asset materialize -m asset_pipeline.core_definitions --select 'group:ingest'"),
            ("asset-pipeline ingest (kept inbox, unchanged)", keep),
        ]
        for _, cmd in contenders[2:]:  # first runs create the instance's storage: not what a user pays each time
            run(cmd, env)
        print(f"code: {Path(asset_pipeline.__file__).parent}; {os.cpu_count()} cores")
        times: dict[str, list[tuple[float, float]]] = {label: [] for label, _ in contenders}
        for r in range(args.rounds):
            for label, cmd in contenders:
                wall, cpu = run(cmd, env)
                times[label].append((wall, cpu))
                print(f"  round {r + 1}  {label:<50}{wall:>7.2f} s wall{cpu:>7.2f} s CPU", flush=True)
        print()
        for label, values in times.items():
            wall = statistics.median(v[0] for v in values)
            cpu = statistics.median(v[1] for v in values)
            print(f"  median   {label:<50}{wall:>7.2f} s wall{cpu:>7.2f} s CPU")


if __name__ == "__main__":
    main()
