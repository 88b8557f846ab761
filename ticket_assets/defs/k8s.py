"""Kubernetes execution settings for the Dagster layer.

Where a step runs, and with which resources, depends on the executor:

* Default executor (``TICKETOPS_EXECUTOR`` unset, a Settings field): the K8sRunLauncher starts one pod per run and
  every step runs inside it, so the run-level resources in ``deploy/helm/dagster-values.yaml``
  (``runLauncher.config.k8sRunLauncher.resources``) apply and the step tags below are ignored.
* ``TICKETOPS_EXECUTOR=k8s``: ``k8s_job_executor`` starts one Kubernetes Job per step. Steps get
  ``LIGHT_RESOURCES`` by default; embeddings (``HEAVY_STEP_TAGS``) get ``HEAVY_RESOURCES`` and
  training (``TRAINING_STEP_TAGS``) ``TRAINING_RESOURCES`` from their ``dagster-k8s/config`` op
  tag, and at most one heavy step runs at a time within a run.

Thread counts are not set here: the Helm values give every run and step container
``TICKETOPS_EMBED_THREADS``/``OMP_NUM_THREADS`` from its own CPU limit (resourceFieldRef), so they
follow whatever resources a step ends up with.

Run-level tags (``TRAINING_RUN_TAGS``) feed the QueuedRunCoordinator's tag concurrency limits in
the Helm values: put them on the retraining job or on the RunRequests that launch it.
"""

from __future__ import annotations

from typing import Any

from dagster import ExecutorDefinition, multi_or_in_process_executor

from ticket_assets.settings import Settings

K8S_CONFIG_TAG = "dagster-k8s/config"
# Op-level tag the k8s executor limits on (tag_concurrency_limits below).
STEP_WEIGHT_TAG = "ticketops/step-weight"
# Run-level tag the run queue limits on (deploy/helm/dagster-values.yaml).
WORKLOAD_TAG = "ticketops/workload"


def container_resources(
    cpu_request: str, cpu_limit: str, memory_request: str, memory_limit: str
) -> dict[str, Any]:
    return {
        "requests": {"cpu": cpu_request, "memory": memory_request},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


# Embedding and training are CPU-bound torch/sklearn work: CPU request == limit so the threads
# get the cores they are sized for (oversubscribed torch collapses).
HEAVY_RESOURCES = container_resources("2", "2", "3Gi", "4Gi")
# Training peaks at 9.3 GiB at its 300k-row fit cap (BENCHMARKS.md "Training at scale"); larger data
# is sampled down to that cap, so this bound holds at any size.
TRAINING_RESOURCES = container_resources("2", "2", "10Gi", "12Gi")
# dbt, ingestion, checks and reports: mostly waiting on PostgreSQL.
LIGHT_RESOURCES = container_resources("250m", "1", "1Gi", "2Gi")


def step_tags(weight: str, resources: dict[str, Any]) -> dict[str, Any]:
    """Op tags sizing one step's Kubernetes Job (used only by the k8s executor)."""
    return {K8S_CONFIG_TAG: {"container_config": {"resources": resources}}, STEP_WEIGHT_TAG: weight}


HEAVY_STEP_TAGS = step_tags("heavy", HEAVY_RESOURCES)
TRAINING_STEP_TAGS = step_tags("heavy", TRAINING_RESOURCES)
TRAINING_RUN_TAGS = {WORKLOAD_TAG: "training"}

K8S_EXECUTOR_CONFIG: dict[str, Any] = {
    # Step pods per run; the run queue bounds runs, this bounds one run's fan-out.
    "max_concurrent": 4,
    "tag_concurrency_limits": [{"key": STEP_WEIGHT_TAG, "value": "heavy", "limit": 1}],
    # Steps without a dagster-k8s/config tag get the light size.
    "step_k8s_config": {"container_config": {"resources": LIGHT_RESOURCES}},
}


def k8s_executor_or_default(settings: Settings) -> ExecutorDefinition:
    """``k8s_job_executor`` when ``TICKETOPS_EXECUTOR=k8s``, else Dagster's default executor
    (the settings reject any other value)."""
    if settings.executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(K8S_EXECUTOR_CONFIG)
    return multi_or_in_process_executor
