"""A small distributed Dagster deployment for tests: the instance on Postgres (the repo's
deploy/dagster-postgres.yaml), dagster-celery workers on a Redis broker (deploy/celery-worker.yaml),
and runs launched by `dagster job execute` in a process of their own — each party with its own
working folder, temp folder and DAGSTER_HOME, as if on its own host. What they share is what a real
deployment shares: the home (a folder or S3) and the instance's database.

Usage (see test_distributed.py)::

    with dagster_cluster(tmp_path, env, redis_url) as cluster:
        run = cluster.run("embed_job")
        assert run.success and run.step_workers["clip_embeddings"].startswith("gpu@")
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from asset_pipeline.dagster_defs.executors import CELERY_DEFAULT_QUEUE, GPU_QUEUE

from .servers import REPO, CeleryWorker, WorkerSpec, celery_workers, tail, venv_script

INSTANCE_YAML = REPO / "deploy" / "dagster-postgres.yaml"
WORKER_YAML = REPO / "deploy" / "celery-worker.yaml"
RUN_TAG = "asset_pipeline_tests/run"


def resolve_env(node: Any, env: Mapping[str, str]) -> Any:
    """`node` with every ``{env: NAME}`` replaced by env[NAME]: the instance file as the processes
    given `env` see it, for the test process, whose own environment does not carry those values."""
    if isinstance(node, dict):
        if set(node) == {"env"}:
            value = env[node["env"]]
            return int(value) if value.isdigit() else value  # a port, as IntSource would read it
        return {k: resolve_env(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve_env(v, env) for v in node]
    return node


@dataclass
class RunOutcome:
    """What the UI would show of one run: status, which worker ran each step, materialization
    metadata, check results, and the launcher's output for failures."""

    run_id: str
    status: str
    step_workers: dict[str, str]
    metadata: dict[str, dict[str, Any]]
    checks: dict[str, bool]
    step_pids: dict[str, int]
    step_log_keys: dict[str, str]
    output: str = ""

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    launcher_home: Path
    workers: list[CeleryWorker] = field(default_factory=list)

    @contextlib.contextmanager
    def instance(self):
        """The same instance (Postgres) as every party, opened from this test process."""
        import dagster as dg
        from dagster._core.instance.ref import InstanceRef

        folder = self.root / "reader_home"
        folder.mkdir(exist_ok=True)
        resolved = resolve_env(yaml.safe_load(INSTANCE_YAML.read_text()), {**self.env, "DAGSTER_HOME": str(folder)})
        (folder / "dagster.yaml").write_text(yaml.safe_dump(resolved))
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(folder))) as instance:
            yield instance

    def run(self, job: str, tags: Mapping[str, str] | None = None, run_config: Mapping | None = None,
            timeout_s: float = 600) -> RunOutcome:
        """`dagster job execute` of `job` from the launcher's folder (the run's own process submits
        each step to Celery and waits), then the run as recorded in the instance."""
        marker = uuid.uuid4().hex
        cmd = [venv_script("dagster"), "job", "execute", "-m", "asset_pipeline.definitions", "-j", job,
               "--tags", json.dumps({**(tags or {}), RUN_TAG: marker})]
        if run_config:
            config = self.root / f"run-config-{marker}.yaml"
            config.write_text(yaml.safe_dump(dict(run_config)))
            cmd += ["-c", str(config)]
        cwd = self.launcher_home.parent
        try:
            proc = subprocess.run(cmd, env={**self.env, "DAGSTER_HOME": str(self.launcher_home),
                                            "TMPDIR": str(cwd / "tmp")},
                                  cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as e:
            said = "".join(s.decode(errors="replace") if isinstance(s, bytes) else s
                           for s in (e.stdout or "", e.stderr or ""))[-6000:]
            workers = "\n".join(f"--- worker {w.name}:\n{tail(w.log, 30)}" for w in self.workers)
            raise AssertionError(f"{job} did not finish in {timeout_s:.0f}s; the launcher said:\n{said}\n"
                                 f"{workers}") from e
        return self.outcome(marker, proc.stdout + proc.stderr)

    def worker(self, name: str) -> CeleryWorker:
        return next(w for w in self.workers if w.name == name)

    def outcome(self, marker: str, output: str = "") -> RunOutcome:
        """The run launched with `marker` in its tags."""
        import dagster as dg

        with self.instance() as instance:
            runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_TAG: marker}))
        if not runs:
            raise AssertionError(f"no run was recorded; the launcher said:\n{output[-6000:]}")
        return self.outcome_of(runs[0].run_id, output)

    def outcome_of(self, run_id: str, output: str = "") -> RunOutcome:
        """A run as its event log tells it: the engine events of dagster-celery name the worker of
        each step, STEP_START events carry the step's process id, LOGS_CAPTURED the log file key."""
        from dagster._core.events import DagsterEventType

        with self.instance() as instance:
            run = instance.get_run_by_id(run_id)
            workers: dict[str, str] = {}
            pids: dict[str, int] = {}
            log_keys: dict[str, str] = {}
            metadata: dict[str, dict[str, Any]] = {}
            checks: dict[str, bool] = {}
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type == DagsterEventType.ENGINE_EVENT and entry.step_key:
                    meta = event.engine_event_data.metadata
                    if "Celery worker" in meta:
                        workers[entry.step_key] = meta["Celery worker"].value
                if event.event_type == DagsterEventType.STEP_START and entry.step_key:
                    pids[entry.step_key] = event.pid
                if event.event_type == DagsterEventType.LOGS_CAPTURED:
                    for step in event.event_specific_data.step_keys:
                        log_keys[step] = event.event_specific_data.file_key
                if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
                    m = event.step_materialization_data.materialization
                    metadata[m.asset_key.to_user_string()] = {k: v.value for k, v in m.metadata.items()}
                if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
                    evaluation = event.event_specific_data
                    checks[evaluation.check_name] = evaluation.passed
            return RunOutcome(run.run_id, run.status.value, workers, metadata, checks, pids, log_keys, output)


@contextlib.contextmanager
def dagster_cluster(root: Path, env: Mapping[str, str], broker: str,
                    workers: Mapping[str, WorkerSpec] | None = None) -> Iterator[Cluster]:
    """Start the workers (each with its own folders) for a launcher that uses `env` too. By
    default a CPU worker `cpu` on the default queue and a GPU worker `gpu` on the `gpu` queue with
    the solo pool (as docs/deploy.md says to run one), so the embedding step always lands on `gpu`
    and everything else on `cpu`.

    `env` must carry the instance's DAGSTER_PG_* and the home's variables; this adds the executor
    choice and the broker, and puts the environment's own bin folder first on PATH (dagster-celery
    starts `celery` by name)."""
    bin_dir = str(Path(venv_script("dagster")).parent)
    full_env = {**env, "ASSET_PIPELINE_EXECUTOR": "celery", "ASSET_PIPELINE_CELERY_BROKER": broker,
                "DAGSTER_DISABLE_TELEMETRY": "1", "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")])}
    launcher_home = root / "launcher" / "dagster_home"
    (root / "launcher" / "tmp").mkdir(parents=True, exist_ok=True)
    launcher_home.mkdir(parents=True, exist_ok=True)
    (launcher_home / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    # The instance's schema is made once, before the workers start: two workers creating it in a
    # fresh database at once collide (one exits on 'type "secondary_indexes" already exists'), as
    # a deployment runs `dagster instance migrate` once before its pods.
    subprocess.run([venv_script("dagster"), "instance", "migrate"], check=True, capture_output=True, timeout=300,
                   env={**full_env, "DAGSTER_HOME": str(launcher_home)}, cwd=root / "launcher")
    workers = workers if workers is not None else {"cpu": WorkerSpec((CELERY_DEFAULT_QUEUE,)),
                                                   "gpu": WorkerSpec((GPU_QUEUE,), pool="solo")}
    with celery_workers(workers, full_env, root, WORKER_YAML, INSTANCE_YAML, broker) as started:
        yield Cluster(root, full_env, launcher_home, started)
