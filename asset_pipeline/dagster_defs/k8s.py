"""Kubernetes pod shapes, as `dagster-k8s/config` tags (read by dagster-k8s's run launcher for a
run's pod and by its `k8s_job_executor` for a step's pod).

Only the image embedding asks for a GPU; every other run and step gets the CPU pod that the Helm
values (`deploy/helm/values.yaml`) give by default. The tags are plain data here so that they are
part of the definitions wherever they run (they mean nothing to other executors) and a test can
parse them with dagster-k8s's own parser.
"""

from __future__ import annotations

import json

K8S_CONFIG_TAG = "dagster-k8s/config"

# The GPU node pool: NVIDIA's GPU operator / device plugin labels GPU nodes with
# nvidia.com/gpu.present=true, and managed clusters taint them nvidia.com/gpu:NoSchedule so that
# nothing else lands there. A cluster that labels its pool differently changes these two values.
GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

# One GPU per embedding pod. Extended resources such as nvidia.com/gpu are quantities given as
# strings: the tag parser also accepts the number 1 without a word, and it is not what the
# Kubernetes API documents. Requests equal limits for the GPU (Kubernetes requires it).
GPU_STEP_K8S_CONFIG: dict = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "16Gi", "nvidia.com/gpu": "1"},
        },
    },
    "pod_spec_config": {"node_selector": GPU_NODE_SELECTOR, "tolerations": GPU_TOLERATIONS},
}

# The run pod of a job whose steps run in pods of their own only coordinates: keep it small.
COORDINATOR_K8S_CONFIG: dict = {
    "container_config": {"resources": {"requests": {"cpu": "250m", "memory": "1Gi"},
                                       "limits": {"memory": "2Gi"}}},
}


def k8s_tags(config: dict) -> dict[str, str]:
    """The `dagster-k8s/config` tag for `config` (a JSON string: tags are strings)."""
    return {K8S_CONFIG_TAG: json.dumps(config, sort_keys=True)}
