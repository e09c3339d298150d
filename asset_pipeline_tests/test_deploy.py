"""Kubernetes deployment (issue 12): the pod shapes in the job definitions, parsed by dagster-k8s's own
parser and built into the Kubernetes Job it would submit — no cluster needed; and the Helm values
and Dockerfile agree with the project. What cannot run here (helm, kubectl, a Docker engine, a GPU
node) is listed in docs/deploy.md."""

from __future__ import annotations

import json

import pytest
import yaml
from dagster._core.execution.api import create_execution_plan

from asset_pipeline.cli import INSTANCE_YAML
from asset_pipeline.dagster_defs.executors import ExecutorChoiceError
from asset_pipeline.dagster_defs.k8s import GPU_NODE_SELECTOR, K8S_CONFIG_TAG
from asset_pipeline.definitions import build_definitions
from asset_pipeline.settings import Settings

from .conftest import REPO

VALUES = REPO / "deploy" / "helm" / "values.yaml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def k8s_defs():
    return build_definitions(Settings.from_env(home="/tmp/unused-home", executor="k8s"))


def _op_tags(job) -> dict[str, dict[str, str]]:
    """Each op's tags, ops inside graphs included: what a step of that op carries (a step's tags are
    its op's; the run's tags are not passed to step pods)."""
    from dagster._core.definitions.graph_definition import GraphDefinition

    nodes = (job.get_node(h) for h in job.graph.iterate_node_handles())
    return {n.name: dict(n.tags) for n in nodes if not isinstance(n.definition, GraphDefinition)}


def _step_pod(tags: dict[str, str], component: str = "step_worker"):
    """The V1Job dagster-k8s would create for a step with these tags (as its executor does: the
    step's dagster-k8s/config tag through get_user_defined_k8s_config)."""
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

    job_config = DagsterK8sJobConfig(job_image="registry.example.com/asset-pipeline:0.1.0",
                                     dagster_home="/opt/dagster/dagster_home", image_pull_policy="IfNotPresent",
                                     instance_config_map="dagster-instance")
    job = construct_dagster_k8s_job(job_config, args=["dagster", "api", "execute_step"], job_name="dagster-step-embed",
                                    user_defined_k8s_config=get_user_defined_k8s_config(tags), component=component)
    return job.spec.template.spec


@pytest.mark.parametrize("shards", [1, 2])
def test_each_embedding_step_pod_asks_for_one_gpu_on_a_gpu_node(shards: int) -> None:
    defs = build_definitions(Settings.from_env(home="/tmp/unused-home", executor="k8s", embed_shards=shards))
    job = defs.resolve_job_def("embed_job")
    assert job.executor_def.name == "k8s"  # a pod per step: only the embedding steps hold a GPU
    steps = {s.key: dict(s.tags or {}) for s in create_execution_plan(job).steps}
    embedding = (["clip_embeddings"] if shards == 1 else
                 [f"clip_embeddings.embed_shard_{i}" for i in range(shards)])
    for key in embedding:
        pod = _step_pod(steps[key])
        (container,) = pod.containers
        assert container.resources.limits["nvidia.com/gpu"] == "1"
        assert container.resources.requests["nvidia.com/gpu"] == "1"
        assert pod.node_selector == GPU_NODE_SELECTOR
        assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [("nvidia.com/gpu", "Exists",
                                                                             "NoSchedule")]
        assert container.image == "registry.example.com/asset-pipeline:0.1.0"
        # A quantity is a string: the parser would take the number 1 without complaint.
        raw = json.loads(steps[key][K8S_CONFIG_TAG])["container_config"]["resources"]
        assert all(isinstance(q, str) for part in raw.values() for q in part.values())
    for key in set(steps) - set(embedding):  # the index step after the shards, near_duplicates
        pod = _step_pod(steps[key])
        assert not pod.node_selector and not pod.tolerations, key
        assert not (pod.containers[0].resources and pod.containers[0].resources.limits), key


def test_no_other_pod_asks_for_a_gpu(k8s_defs) -> None:
    """Every other step of every job, and every run pod (job tags), is a CPU pod."""
    from dagster_k8s.job import get_user_defined_k8s_config

    for name in ("ingest_job", "embed_job", "usage_job", "usage_intake_job", "lifecycle_job", "provenance_job",
                 "recall_job"):
        job = k8s_defs.resolve_job_def(name)
        run_pod = _step_pod(dict(job.tags), component="run_worker")
        assert not run_pod.node_selector and not run_pod.tolerations, name
        assert "nvidia.com/gpu" not in str(get_user_defined_k8s_config(dict(job.tags)).container_config), name
        for op, tags in _op_tags(job).items():
            if op == "clip_embeddings":
                continue
            config = get_user_defined_k8s_config(tags)
            assert "nvidia.com/gpu" not in json.dumps(config.container_config), (name, op)
            assert not config.pod_spec_config.get("node_selector"), (name, op)
    # The embedding job's own run pod only coordinates: small, and on a CPU node.
    coordinator = _step_pod(dict(k8s_defs.resolve_job_def("embed_job").tags), component="run_worker")
    assert coordinator.containers[0].resources.requests == {"cpu": "250m", "memory": "1Gi"}


def test_executor_choice() -> None:
    executors = {choice: {job: build_definitions(Settings.from_env(home="/tmp/unused-home", executor=choice))
                          .resolve_job_def(job).executor_def.name for job in ("ingest_job", "embed_job", "usage_job")}
                 for choice in ("default", "celery", "k8s")}
    assert executors == {
        "default": {"ingest_job": "in_process", "embed_job": "in_process", "usage_job": "in_process"},
        "celery": {"ingest_job": "celery", "embed_job": "celery", "usage_job": "celery"},
        "k8s": {"ingest_job": "in_process", "embed_job": "k8s", "usage_job": "in_process"},
    }
    with pytest.raises(ExecutorChoiceError, match="ASSET_PIPELINE_EXECUTOR='kubernetes': expected one of default, "
                                                  "celery, k8s"):
        build_definitions(Settings.from_env(home="/tmp/unused-home", executor="kubernetes"))


def test_helm_values_agree_with_the_project() -> None:
    values = yaml.safe_load(VALUES.read_text())
    deployments = values["dagster-user-deployments"]["deployments"]
    # One deployment per code location of workspace.yaml, each with the same image and settings.
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]
    assert [d["dagsterApiGrpcArgs"] for d in deployments] == [
        ["-m", entry["python_module"]["module_name"]] for entry in workspace]
    assert len({d["port"] for d in deployments}) == len(deployments)
    for deployment in deployments:
        assert deployment["env"]["ASSET_PIPELINE_EXECUTOR"] == "k8s"
        assert deployment["env"]["ASSET_PIPELINE_HOME"].startswith("s3://")
        assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
        assert deployment["image"] == deployments[0]["image"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    run_pod = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["containerConfig"]["resources"]
    assert "nvidia.com/gpu" not in json.dumps(run_pod)
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    limits = yaml.safe_load(INSTANCE_YAML)["concurrency"]["runs"]["tag_concurrency_limits"]
    assert queue["tagConcurrencyLimits"] == limits


def test_dockerfile_installs_the_pinned_project() -> None:
    text = DOCKERFILE.read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    for pin in ("torch==2.14.1", "torchvision==0.29.1"):  # the CPU builds must match the project's pins
        assert pin in text and f'"{pin}"' in pyproject
    assert "pip install ." in text and "pip check" in text
    assert 'CMD ["dagster", "api", "grpc"' in text and "asset_pipeline.core_definitions" in text
    # The build imports both code locations (the usage one parses the dbt project into its cache).
    assert 'import asset_pipeline.core_definitions, asset_pipeline.usage_definitions' in text
    assert "COPY --chown=app asset_pipeline ./asset_pipeline" in text  # the dbt project ships inside it
