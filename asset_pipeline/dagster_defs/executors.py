"""Where a job's steps execute, chosen by `Settings.executor` (ASSET_PIPELINE_EXECUTOR).

- ``default``: every job runs its steps in the run's own process. Each job is a chain of steps
  where a step needs the previous one's result; the parallel work happens inside a step (worker
  processes for hashing, DataLoader workers for decoding), so a subprocess per step would only
  import the world again (about 2 s a step) and buy no parallelism. One machine.
- ``celery``: every step of every job is a task on dagster-celery workers (Redis broker and result
  backend at ASSET_PIPELINE_CELERY_BROKER). Workers may be on other hosts: steps share nothing but
  the home and the Dagster instance (Postgres, deploy/dagster-postgres.yaml).
- ``k8s``: runs are pods (dagster-k8s's run launcher, deploy/helm/values.yaml); the embedding job
  runs each step in a pod of its own (``k8s_job_executor``) so only the embedding step holds a GPU
  node; the other jobs keep their steps in their run's pod.

The integrations are imported only when chosen: a laptop on the default pays nothing for them.
"""

from __future__ import annotations

import dagster as dg

from asset_pipeline.settings import Settings

EXECUTORS = ("default", "celery", "k8s")
# Celery routes a step by this op tag; workers subscribe with `-q`. Steps without it go to the
# default queue `dagster`; the embedding step goes to `gpu`, served by the GPU workers only.
CELERY_QUEUE_TAG = "dagster-celery/queue"
CELERY_DEFAULT_QUEUE = "dagster"
GPU_QUEUE = "gpu"
# Jobs whose steps need different machines: per-step pods pay for themselves there.
PER_STEP_POD_JOBS = frozenset({"embed_job"})


class ExecutorChoiceError(ValueError):
    """ASSET_PIPELINE_EXECUTOR names no executor this project knows."""


def check_choice(settings: Settings) -> str:
    if settings.executor not in EXECUTORS:
        raise ExecutorChoiceError(f"ASSET_PIPELINE_EXECUTOR={settings.executor!r}: expected one of "
                                  f"{', '.join(EXECUTORS)}")
    return settings.executor


def celery_executor(settings: Settings) -> dg.ExecutorDefinition:
    """dagster-celery with the broker (and result backend) of the settings. Workers read the same
    URL from deploy/celery-worker.yaml; if the two disagree, steps wait for workers that never come."""
    from dagster_celery import celery_executor as base

    return base.configured({"broker": settings.celery_broker, "backend": settings.celery_broker},
                           name="celery")


def job_executor(job_name: str, settings: Settings) -> dg.ExecutorDefinition:
    """The executor of `job_name` under the settings' choice."""
    choice = check_choice(settings)
    if choice == "celery":
        return celery_executor(settings)
    if choice == "k8s" and job_name in PER_STEP_POD_JOBS:
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    return dg.in_process_executor


def default_executor(settings: Settings) -> dg.ExecutorDefinition:
    """The executor of jobs without one of their own (`dagster asset materialize`, the UI's
    ad-hoc materializations): Celery when chosen, else the run's own process."""
    return celery_executor(settings) if check_choice(settings) == "celery" else dg.in_process_executor
