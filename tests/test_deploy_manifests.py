"""Offline validation of the deployment: Dockerfile, kustomize overlays, Helm values, workflows.

Runs the same tools as ``deploy/check.sh`` (hadolint, kubernetes-validate against pinned
Kubernetes schemas, yamllint, check-jsonschema's vendored GitHub workflow schema), checks the
manifests for consistency (selectors, Secret keys, probes, thread settings), and proves the
Dagster side: the Helm values produce a ``dagster.yaml`` that Dagster loads into a real
DagsterInstance with a K8sRunLauncher on PostgreSQL, the code location resolves with the k8s
executor, and the step Jobs it would launch are valid Kubernetes objects sized by their tags.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import kubernetes_validate
import psycopg
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
sys.path.insert(0, str(DEPLOY))

import dagster_instance  # noqa: E402  (deploy/dagster_instance.py is a script, not a package module)

KUBERNETES_VERSION = "1.33.0"
OVERLAYS = sorted(p.name for p in (DEPLOY / "k8s" / "overlays").iterdir() if p.is_dir())
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
HELM_VALUES = DEPLOY / "helm" / "dagster-values.yaml"
SECRETS_TEMPLATE = DEPLOY / "k8s" / "base" / "secrets.template.yaml"
BIN = Path(sys.executable).parent


def run_tool(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` (kustomize v5) renders; skips where kubectl is absent."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: the overlays are rendered with `kubectl kustomize`")
    result = run_tool("kubectl", "kustomize", directory)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(DEPLOY / "k8s" / "overlays" / overlay))


def rendered(overlay: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered(overlay)))


def iter_containers(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from iter_containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_containers(item)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in pod_spec(workload)["containers"] if c["name"] == name)


def parse_cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


# Kubernetes manifests -----------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_objects_are_valid_kubernetes(overlay: str) -> None:
    objects = rendered(overlay)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_secret_template_is_valid_and_holds_placeholders_only() -> None:
    secrets = load_documents(SECRETS_TEMPLATE)
    for secret in secrets:
        kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
        assert secret["kind"] == "Secret"
        for key, value in secret["stringData"].items():
            assert "CHANGE_ME" in value, f"{secret['metadata']['name']}.{key} is not a placeholder"


def test_strict_validation_rejects_mistakes() -> None:
    """The validator is only worth running if it catches typos and wrong types."""
    api = find(rendered("dev"), "Deployment", "ticketops-api")
    typo = copy.deepcopy(api)
    container(typo, "api")["readinessProbes"] = container(typo, "api").pop("readinessProbe")
    wrong_type = copy.deepcopy(api)
    wrong_type["spec"]["replicas"] = "two"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_namespaced_labelled_and_uses_the_overlay_image(overlay: str) -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "overlays" / overlay / "kustomization.yaml").read_text())
    image = kustomization["images"][0]
    objects = rendered(overlay)
    assert {o["metadata"]["namespace"] for o in objects} == {kustomization["namespace"]}
    assert all(o["metadata"]["labels"]["environment"] == overlay for o in objects)
    expected = f"{image['newName']}:{image['newTag']}"
    app_images = [c["image"] for o in objects for c in iter_containers(o) if "ticketops" in c["image"]]
    assert app_images and set(app_images) == {expected}
    # No workload is left with the base's placeholder image name.
    assert all(c["image"] != image["name"] for o in objects for c in iter_containers(o))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_probes_threads_and_autoscaling(overlay: str) -> None:
    objects = rendered(overlay)
    api = find(objects, "Deployment", "ticketops-api")
    main = container(api, "api")
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Thread counts follow this container's own CPU limit, whatever the overlay sets it to.
    env = {e["name"]: e for e in main["env"]}
    for name in ("TICKETOPS_EMBED_THREADS", "OMP_NUM_THREADS"):
        field_ref = env[name]["valueFrom"]["resourceFieldRef"]
        assert field_ref == {"containerName": "api", "resource": "limits.cpu", "divisor": "1"}
    limits, requests = main["resources"]["limits"], main["resources"]["requests"]
    assert parse_cpu(limits["cpu"]) >= 1 and parse_cpu(requests["cpu"]) <= parse_cpu(limits["cpu"])
    assert "memory" in limits and "memory" in requests

    hpa = find(objects, "HorizontalPodAutoscaler", "ticketops-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # A deploy never scales the API below the HPA's floor.
    assert api["spec"]["replicas"] == hpa["spec"]["minReplicas"]


def test_prod_gives_the_api_more_capacity_than_dev() -> None:
    dev, prod = rendered("dev"), rendered("prod")
    dev_api, prod_api = (container(find(o, "Deployment", "ticketops-api"), "api") for o in (dev, prod))
    assert parse_cpu(prod_api["resources"]["limits"]["cpu"]) > parse_cpu(
        dev_api["resources"]["limits"]["cpu"]
    )
    dev_hpa, prod_hpa = (find(o, "HorizontalPodAutoscaler", "ticketops-api")["spec"] for o in (dev, prod))
    assert (
        prod_hpa["minReplicas"] > dev_hpa["minReplicas"] and prod_hpa["maxReplicas"] > dev_hpa["maxReplicas"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay: str) -> None:
    """Selectors find pods, and every ConfigMap/Secret/PVC a pod names exists."""
    objects = rendered(overlay)
    secret_keys = {s["metadata"]["name"]: set(s["stringData"]) for s in load_documents(SECRETS_TEMPLATE)}
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    workloads = [o for o in objects if o["kind"] in {"Deployment", "StatefulSet"}]
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]

    def selects_a_pod(selector: dict[str, str]) -> bool:
        return any(selector.items() <= labels.items() for labels in pod_labels)

    for workload in workloads:
        assert (
            workload["spec"]["selector"]["matchLabels"].items()
            <= workload["spec"]["template"]["metadata"]["labels"].items()
        )
        spec = pod_spec(workload)
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secret_keys
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secret_keys[ref["name"]], f"{ref} missing from the secrets template"
    for obj in objects:
        if obj["kind"] == "Service":
            assert selects_a_pod(obj["spec"]["selector"]), obj["metadata"]["name"]
        if obj["kind"] in {"PodDisruptionBudget", "NetworkPolicy"}:
            selector = obj["spec"].get("selector", obj["spec"].get("podSelector"))
            assert selects_a_pod(selector["matchLabels"]), obj["metadata"]["name"]


def test_configmap_points_clients_at_the_in_cluster_services() -> None:
    objects = rendered("prod")
    data = find(objects, "ConfigMap", "ticketops-config")["data"]
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    for key in ("QDRANT_URL", "MLFLOW_TRACKING_URI"):
        url = urlparse(data[key])
        assert url.hostname in services, f"{key} points at {url.hostname}"
        assert url.port in {p["port"] for p in services[url.hostname]["spec"]["ports"]}
    assert data["HF_HUB_OFFLINE"] == "1"
    assert data["TICKETOPS_API_WORKERS"] == "1"  # scale with pods, not workers per pod
    # Empty strings count as "set" for the platform's settings: optional keys are omitted instead.
    assert all(value != "" for value in data.values())


# Image overrides, as CD sets them ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({"newName": "ghcr.io/acme/ticketops", "newTag": "0123abc"}, "ghcr.io/acme/ticketops:0123abc"),
        (
            {"newName": "registry:5000/ticketops", "digest": "sha256:" + "a" * 64},
            "registry:5000/ticketops@sha256:" + "a" * 64,
        ),
    ],
)
def test_image_override_reaches_every_app_container(
    tmp_path: Path, image: dict[str, str], expected: str
) -> None:
    """What `kustomize edit set image ticketops=...` (deploy.yml) writes into a copy of prod."""
    shutil.copytree(DEPLOY / "k8s", tmp_path / "k8s")
    prod = tmp_path / "k8s" / "overlays" / "prod"
    kustomization = yaml.safe_load((prod / "kustomization.yaml").read_text())
    kustomization["images"] = [
        {"name": "ticketops", **image} if entry["name"] == "ticketops" else entry
        for entry in kustomization["images"]
    ]
    (prod / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
    objects = kustomize(prod)
    assert container(find(objects, "Deployment", "ticketops-api"), "api")["image"] == expected
    assert container(find(objects, "Deployment", "mlflow"), "mlflow")["image"] == expected


# Dockerfile, YAML style, workflows --------------------------------------------------------------


def test_hadolint_passes_and_catches_bad_practice(tmp_path: Path) -> None:
    ok = run_tool(BIN / "hadolint", "--failure-threshold", "info", DEPLOY / "docker" / "Dockerfile")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    caught = run_tool(BIN / "hadolint", "--failure-threshold", "info", bad)
    assert caught.returncode != 0 and "DL3007" in caught.stdout


def test_dockerfile_builds_a_pinned_non_root_cpu_image() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "multi-stage"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, re.M), (
        "base pinned to a patch release"
    )
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1].split(":")[0] not in {"0", "root"}
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD", text, re.M)
    for label in ("title", "source", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}" in text
    torch = re.search(
        r"--index-url https://download\.pytorch\.org/whl/cpu \"torch==\$\{TORCH_VERSION\}\"", text
    )
    assert torch and text.index(torch.group(0)) < text.index("pip install -r /tmp/requirements.txt")
    assert "ARG TORCH_VERSION=2.13.0" in text
    assert "dagster-dbt project prepare-and-package" in text and "HF_HUB_OFFLINE=1" in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".ticketops", "tests"} <= set(ignored)


def test_yamllint_passes() -> None:
    result = run_tool(
        sys.executable, "-m", "yamllint", "--strict", "-c", DEPLOY / "yamllint.yaml", DEPLOY, REPO / ".github"
    )
    assert result.returncode == 0, result.stdout


def test_workflows_match_the_github_schema() -> None:
    assert {w.name for w in WORKFLOWS} >= {"ci.yml", "cd.yml"}
    result = run_tool(BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_actions_are_pinned() -> None:
    uses = [m for w in WORKFLOWS for m in re.findall(r"uses:\s*(\S+)", w.read_text())]
    assert uses
    for action in uses:
        if action.startswith("./"):
            continue  # reusable workflow in this repository
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+\.\d+\.\d+|[0-9a-f]{40})", action), (
            f"unpinned action {action}"
        )


def test_ci_tests_against_postgres_with_cpu_torch_and_validates_deploy() -> None:
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    test_job = ci["jobs"]["test"]
    assert test_job["services"]["postgres"]["image"] == "postgres:16"
    assert test_job["env"]["DATABASE_URL"].startswith("postgresql://")
    steps = "\n".join(s.get("run", "") for s in test_job["steps"])
    torch_at = steps.index("download.pytorch.org/whl/cpu")
    assert '"torch==${TORCH_VERSION}"' in steps and ci["env"]["TORCH_VERSION"] == "2.13.0"
    assert torch_at < steps.index('pip install -e ".[dev]"') < steps.index("pytest")
    deploy_steps = "\n".join(s.get("run", "") for s in ci["jobs"]["deploy-manifests"]["steps"])
    assert "deploy/check.sh" in deploy_steps


def test_cd_builds_once_and_deploys_dev_before_prod() -> None:
    cd = yaml.safe_load((REPO / ".github" / "workflows" / "cd.yml").read_text())
    jobs = cd["jobs"]
    build_uses = [s["uses"] for s in jobs["build"]["steps"] if "uses" in s]
    assert any(u.startswith("docker/build-push-action@") for u in build_uses)
    assert jobs["deploy-dev"]["with"]["environment"] == "dev"
    assert (
        "deploy-dev" in jobs["deploy-prod"]["needs"] and jobs["deploy-prod"]["with"]["environment"] == "prod"
    )
    assert {jobs[j]["with"]["overlay"] for j in ("deploy-dev", "deploy-prod")} == set(OVERLAYS)


def test_check_requirements_match_pyproject_dev_pins() -> None:
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    lines = (DEPLOY / "requirements-check.txt").read_text().splitlines()
    tools = [line for line in lines if line and not line.startswith("#") and not line.startswith("pyyaml")]
    assert tools and set(tools) <= set(dev)


def test_check_script_passes() -> None:
    result = run_tool("bash", DEPLOY / "check.sh", env={"PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "all deploy checks passed" in result.stdout


# Dagster on Kubernetes ----------------------------------------------------------------------------


def _with_database(url: str, dbname: str) -> str:
    return urlunparse(urlparse(url)._replace(path=f"/{dbname}"))


@pytest.fixture(scope="module")
def dagster_db(pg_server_url: str) -> Iterator[str]:
    """A database of its own for Dagster's run/event storage."""
    dbname = f"ticketops_dagster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'create database "{dbname}"')
    yield _with_database(pg_server_url, dbname)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{dbname}" with (force)')


@pytest.fixture(scope="module")
def helm_values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text())


@pytest.fixture(scope="module")
def k8s_instance(helm_values: dict[str, Any], dagster_db: str, tmp_path_factory: pytest.TempPathFactory):
    """A real DagsterInstance from the dagster.yaml the chart renders, on a real PostgreSQL.

    Only two things differ from the cluster: storage uses the test database, and the launcher
    reads a kubeconfig for an unreachable API server instead of the in-cluster service account
    (the launcher builds its client without contacting the server).
    """
    from dagster import DagsterInstance

    home = tmp_path_factory.mktemp("dagster_home")
    kubeconfig = home / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "offline", "user": {"token": "unused"}}],
                "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
                "current-context": "offline",
            }
        )
    )
    config = dagster_instance.dagster_instance_config(helm_values, namespace="ticketops")
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        config[storage]["config"] = {"postgres_url": dagster_db}
    launcher = config["run_launcher"]["config"]
    launcher.update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    instance = DagsterInstance.from_config(str(home))
    yield instance
    instance.dispose()


def test_helm_values_render_a_valid_dagster_instance_config(helm_values: dict[str, Any]) -> None:
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config_schema

    config = dagster_instance.dagster_instance_config(helm_values, namespace="ticketops")
    result = validate_config(dagster_instance_config_schema(), config)
    assert result.success, [e.message for e in result.errors]
    assert config["run_storage"]["config"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}


def test_instance_uses_k8s_launcher_queue_limits_and_monitoring(
    k8s_instance, helm_values: dict[str, Any]
) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_k8s import K8sRunLauncher
    from dagster_postgres import PostgresRunStorage

    from ticket_assets.defs.k8s import TRAINING_RUN_TAGS

    launcher = k8s_instance.run_launcher
    assert isinstance(launcher, K8sRunLauncher)
    assert launcher.job_namespace == "ticketops"
    assert "ticketops-config" in launcher.env_config_maps and "ticketops-secrets" in launcher.env_secrets
    assert launcher.labels["app.kubernetes.io/part-of"] == "ticketops"
    assert isinstance(k8s_instance.run_storage, PostgresRunStorage)
    assert k8s_instance.run_monitoring_enabled

    coordinator = k8s_instance.run_coordinator
    assert isinstance(coordinator, QueuedRunCoordinator)
    limits = {
        (limit["key"], limit.get("value")): limit["limit"]
        for limit in coordinator.get_run_queue_config().tag_concurrency_limits
    }
    ((tag_key, tag_value),) = TRAINING_RUN_TAGS.items()
    assert limits[(tag_key, tag_value)] == 1
    queued = helm_values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert coordinator.get_run_queue_config().max_concurrent_runs == queued["maxConcurrentRuns"]


def _summarize_location(defs: Any) -> dict[str, Any]:
    executor = defs.executor
    resolved = executor.config_schema.resolve_config({}) if executor is not None else None
    op_tags = {
        op.name: dict(op.tags)
        for assets_def in defs.resolve_asset_graph().assets_defs
        if assets_def.is_executable
        for op in assets_def.node_def.iterate_op_defs()
    }
    return {
        "executor": executor.name if executor is not None else None,
        "executor_config": resolved.value if resolved is not None and resolved.success else None,
        "executor_errors": [e.message for e in resolved.errors]
        if resolved is not None and not resolved.success
        else [],
        "op_tags": op_tags,
    }


@pytest.fixture(scope="module")
def k8s_code_location(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``ticket_assets.definitions`` as a code server / run pod loads it with TICKETOPS_EXECUTOR=k8s.

    The executor is chosen when the module executes, so it is re-executed under that environment
    (its asset modules stay imported); its original globals are put back afterwards.
    """
    import importlib

    from ticket_assets.settings import reset_settings_cache

    data_dir = tmp_path_factory.mktemp("k8s_location")
    with pytest.MonkeyPatch.context() as env:
        # As in the image, the environment's console scripts (dbt, dagster) are on PATH.
        env.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        module = importlib.import_module("ticket_assets.definitions")
        original = dict(module.__dict__)
        env.setenv("TICKETOPS_EXECUTOR", "k8s")
        env.setenv("TICKETOPS_DATA_DIR", str(data_dir))
        env.setenv("DAGSTER_HOME", str(data_dir))
        env.setenv("DATABASE_URL", pg_url)
        reset_settings_cache()
        try:
            summary = _summarize_location(importlib.reload(module).defs)
        finally:
            module.__dict__.update(original)
    reset_settings_cache()
    return summary


def test_definitions_resolve_with_the_k8s_executor(k8s_code_location: dict[str, Any]) -> None:
    from ticket_assets.defs.k8s import K8S_EXECUTOR_CONFIG

    assert k8s_code_location["executor"] == "k8s", (
        "Definitions(executor=k8s_executor_or_default()) is not wired"
    )
    assert not k8s_code_location["executor_errors"]
    config = k8s_code_location["executor_config"]["config"]
    assert config["max_concurrent"] == K8S_EXECUTOR_CONFIG["max_concurrent"]
    assert config["tag_concurrency_limits"] == K8S_EXECUTOR_CONFIG["tag_concurrency_limits"]


def test_executor_choice_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster import multi_or_in_process_executor
    from pydantic import ValidationError

    from ticket_assets.defs.k8s import k8s_executor_or_default
    from ticket_assets.settings import Settings

    monkeypatch.delenv("TICKETOPS_EXECUTOR", raising=False)
    assert k8s_executor_or_default(Settings()) is multi_or_in_process_executor
    monkeypatch.setenv("TICKETOPS_EXECUTOR", " K8S ")
    assert k8s_executor_or_default(Settings()).name == "k8s"
    monkeypatch.setenv("TICKETOPS_EXECUTOR", "celery")
    with pytest.raises(ValidationError, match="TICKETOPS_EXECUTOR"):
        Settings()


def _step_job_manifest(
    instance, executor_config: dict[str, Any], op_tags: dict[str, str], step_key: str
) -> dict[str, Any]:
    """The Kubernetes Job k8s_job_executor would create for one step.

    Follows K8sStepHandler: run launcher config, then the executor's step_k8s_config, then the
    step's dagster-k8s/config tag, merged by dagster_k8s's own K8sContainerContext.
    """
    import kubernetes
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )

    launcher = instance.run_launcher
    run = DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()))
    context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=False)
    context = context.merge(
        K8sContainerContext(
            run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor_config.get("step_k8s_config", {}))
        )
    )
    context = context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(op_tags)))
    job_config = context.get_k8s_job_config("ghcr.io/ticketops/ticketops:test", launcher)
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{uuid.uuid4().hex[:20]}",
        user_defined_k8s_config=context.run_k8s_config,
        component="step_worker",
        labels={"dagster/op": step_key},
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def test_step_jobs_are_valid_and_sized_by_their_tags(k8s_instance, k8s_code_location: dict[str, Any]) -> None:
    from ticket_assets.defs.k8s import (
        HEAVY_RESOURCES,
        K8S_CONFIG_TAG,
        LIGHT_RESOURCES,
        STEP_WEIGHT_TAG,
        TRAINING_RESOURCES,
    )

    op_tags = k8s_code_location["op_tags"]
    heavy = [op for op, tags in op_tags.items() if tags.get(STEP_WEIGHT_TAG) == "heavy"]
    assert heavy, "no asset carries HEAVY_STEP_TAGS (embeddings and training should)"
    # Training gets the memory its fit cap needs; the other heavy steps (embeddings) the heavy size.
    assert "ticket_classifier" in heavy
    untagged = [op for op, tags in op_tags.items() if K8S_CONFIG_TAG not in tags]
    executor_config = k8s_code_location["executor_config"]["config"]

    for op in heavy + untagged[:1]:
        manifest = _step_job_manifest(k8s_instance, executor_config, op_tags[op], op)
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        (step_container,) = manifest["spec"]["template"]["spec"]["containers"]
        expected = (
            TRAINING_RESOURCES
            if op == "ticket_classifier"
            else HEAVY_RESOURCES
            if op in heavy
            else LIGHT_RESOURCES
        )
        assert step_container["resources"] == expected, op
        threads = [e for e in step_container["env"] if e["name"] == "TICKETOPS_EMBED_THREADS"]
        assert len(threads) == 1 and threads[0]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
        assert {"configMapRef": {"name": "ticketops-config"}} in step_container["envFrom"]
        assert manifest["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_run_pod_job_is_valid_kubernetes(k8s_instance, helm_values: dict[str, Any]) -> None:
    """With the default executor all steps share the run pod: its config must be valid and sized."""
    run_job = _step_job_manifest(k8s_instance, {}, {}, "run")
    kubernetes_validate.validate(run_job, KUBERNETES_VERSION, strict=True)
    (run_container,) = run_job["spec"]["template"]["spec"]["containers"]
    launcher_values = helm_values["runLauncher"]["config"]["k8sRunLauncher"]
    assert run_container["resources"] == launcher_values["resources"]
    assert run_job["spec"]["backoffLimit"] == launcher_values["runK8sConfig"]["jobSpecConfig"]["backoffLimit"]
    assert "TICKETOPS_EXECUTOR=k8s" in launcher_values["envVars"]
    assert {"name": "TICKETOPS_EXECUTOR", "value": "k8s"} in run_container["env"]
