"""Render our deploy manifests offline: kustomize overlays without a kustomize binary, and the
Dagster instance config (``dagster.yaml``) that the official Helm chart derives from our values.

Kustomize subset (the only features our kustomizations use): ``resources`` (files and directories
holding a kustomization.yaml), ``namespace``, ``labels`` (metadata labels only), ``images``,
``replicas`` and strategic-merge ``patches`` given by ``path``. Any other field is an error, so the
output never silently differs from ``kubectl kustomize`` (CI compares the two where kubectl exists).

    python deploy/render.py kustomize deploy/k8s/overlays/dev [--image ticketops=REF]
    python deploy/render.py dagster-instance deploy/helm/dagster-values.yaml --namespace ticketops
    python deploy/render.py compare rendered.yaml kubectl-kustomize.yaml
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "replicas", "patches"}

# Lists that strategic merge combines element-wise (patchMergeKey in the Kubernetes OpenAPI);
# every other list is replaced, which is also what the API server does for lists without one.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "topologySpreadConstraints": "topologyKey",
}

CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
}

# kustomize's "legacy" output order: dependencies (config, services, storage) before workloads.
KIND_ORDER = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]


class RenderError(ValueError):
    """A kustomization uses something this renderer does not implement, or is inconsistent."""


# YAML -------------------------------------------------------------------------------------------


def load_documents(path: Path) -> list[Manifest]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def dump_documents(objects: Iterable[Manifest]) -> str:
    return yaml.safe_dump_all(list(objects), sort_keys=False, default_flow_style=False)


def object_id(obj: Manifest) -> tuple[str, str, str, str]:
    meta = obj.get("metadata", {})
    return (obj.get("apiVersion", ""), obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))


# Kustomize --------------------------------------------------------------------------------------


def render_kustomization(directory: Path, image_overrides: Mapping[str, str] | None = None) -> list[Manifest]:
    """Render one kustomization directory; ``image_overrides`` act like ``kustomize edit set image``."""
    kustomization = _read_kustomization(directory)
    objects: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        objects.extend(render_kustomization(target) if target.is_dir() else load_documents(target))
    _reject_duplicates(objects, directory)

    # Same transformer order as kustomize: namespace, labels, patches, replicas, images.
    if "namespace" in kustomization:
        apply_namespace(objects, kustomization["namespace"])
    for label_entry in kustomization.get("labels", []):
        apply_labels(objects, label_entry)
    for patch_entry in kustomization.get("patches", []):
        _apply_patch_file(objects, directory, patch_entry)
    for replica in kustomization.get("replicas", []):
        apply_replicas(objects, replica["name"], int(replica["count"]))
    images = _merge_image_overrides(kustomization.get("images", []), image_overrides or {})
    if images:
        apply_images(objects, images)
    return sort_objects(objects)


def _read_kustomization(directory: Path) -> Manifest:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{directory} has no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text()) or {}
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise RenderError(f"{path}: unsupported kustomization fields {sorted(unsupported)}")
    return kustomization


def _reject_duplicates(objects: list[Manifest], directory: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for obj in objects:
        key = object_id(obj)
        if key in seen:
            raise RenderError(f"{directory}: duplicate resource {key}")
        seen.add(key)


def _apply_patch_file(objects: list[Manifest], directory: Path, entry: Mapping[str, Any]) -> None:
    if set(entry) != {"path"}:
        raise RenderError(f"{directory}: only strategic-merge patches given by 'path' are supported: {entry}")
    for patch in load_documents(directory / entry["path"]):
        kind, name = patch.get("kind"), patch.get("metadata", {}).get("name")
        matches = [o for o in objects if o.get("kind") == kind and o.get("metadata", {}).get("name") == name]
        if len(matches) != 1:
            raise RenderError(
                f"{directory / entry['path']}: patch for {kind}/{name} matches {len(matches)} objects"
            )
        merged = strategic_merge(matches[0], patch)
        matches[0].clear()
        matches[0].update(merged)


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """Strategic-merge ``patch`` onto ``base`` (maps merge, keyed lists merge, other lists replace)."""
    if isinstance(patch, dict):
        if any(key.startswith("$") for key in patch):
            raise RenderError(
                f"patch directives are not supported: {sorted(k for k in patch if k.startswith('$'))}"
            )
        if not isinstance(base, dict):
            return copy.deepcopy(patch)
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(base.get(key), value, key)
        return merged
    if isinstance(patch, list) and isinstance(base, list):
        merge_key = _list_merge_key(field, base + patch)
        if merge_key:
            return _merge_keyed_lists(base, patch, merge_key)
    return copy.deepcopy(patch)


def _list_merge_key(field: str, items: list[Any]) -> str | None:
    if not items or not all(isinstance(item, dict) for item in items):
        return None
    if field == "ports":  # container ports merge on containerPort, Service ports on port
        return "containerPort" if all("containerPort" in item for item in items) else "port"
    return MERGE_KEYS.get(field)


def _merge_keyed_lists(base: list[Manifest], patch: list[Manifest], merge_key: str) -> list[Manifest]:
    merged = copy.deepcopy(base)
    for item in patch:
        position = next(
            (i for i, existing in enumerate(merged) if existing.get(merge_key) == item.get(merge_key)), None
        )
        if position is None:
            merged.append(copy.deepcopy(item))
        else:
            merged[position] = strategic_merge(merged[position], item)
    return merged


def split_image(reference: str) -> tuple[str, str | None, str | None]:
    """``registry:5000/repo/name:tag@sha256:...`` -> (name, tag, digest)."""
    name, _, digest = reference.partition("@")
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        return name[:colon], name[colon + 1 :], digest or None
    return name, None, digest or None


def _merge_image_overrides(images: list[Manifest], overrides: Mapping[str, str]) -> list[Manifest]:
    merged = {entry["name"]: dict(entry) for entry in images}
    for name, reference in overrides.items():
        new_name, tag, digest = split_image(reference)
        entry = {"name": name, "newName": new_name}
        if digest:
            entry["digest"] = digest
        elif tag:
            entry["newTag"] = tag
        merged[name] = entry
    return list(merged.values())


def apply_images(objects: list[Manifest], images: list[Manifest]) -> None:
    by_name = {entry["name"]: entry for entry in images}
    for container in iter_containers(objects):
        name, tag, digest = split_image(container.get("image", ""))
        entry = by_name.get(name)
        if entry is None:
            continue
        new_name = entry.get("newName", name)
        if entry.get("digest"):
            container["image"] = f"{new_name}@{entry['digest']}"
        elif entry.get("newTag"):
            container["image"] = f"{new_name}:{entry['newTag']}"
        else:
            container["image"] = new_name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def iter_containers(node: Any) -> Iterable[Manifest]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from iter_containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from iter_containers(item)


def apply_replicas(objects: list[Manifest], name: str, count: int) -> None:
    matches = [
        o
        for o in objects
        if o.get("metadata", {}).get("name") == name
        and o.get("kind") in {"Deployment", "StatefulSet", "ReplicaSet"}
    ]
    if not matches:
        raise RenderError(f"replicas: no workload named {name}")
    for obj in matches:
        obj.setdefault("spec", {})["replicas"] = count


def apply_labels(objects: list[Manifest], entry: Mapping[str, Any]) -> None:
    # Selectors and pod templates carry their labels in the base: changing a Deployment's
    # selector is rejected by the API server, so overlays only label object metadata.
    if entry.get("includeSelectors") or entry.get("includeTemplates"):
        raise RenderError(
            "labels: only metadata labels (includeSelectors/includeTemplates false) are supported"
        )
    for obj in objects:
        labels = obj.setdefault("metadata", {}).setdefault("labels", {})
        labels.update({str(k): str(v) for k, v in entry["pairs"].items()})


def apply_namespace(objects: list[Manifest], namespace: str) -> None:
    for obj in objects:
        if obj.get("kind") not in CLUSTER_SCOPED_KINDS:
            obj.setdefault("metadata", {})["namespace"] = namespace


def sort_objects(objects: list[Manifest]) -> list[Manifest]:
    def rank(obj: Manifest) -> tuple[int, str, str]:
        kind = obj.get("kind", "")
        position = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
        return position, kind, obj.get("metadata", {}).get("name", "")

    return sorted(objects, key=rank)


def canonical(objects: Iterable[Manifest]) -> dict[tuple[str, str, str, str], str]:
    """Order-insensitive form used to compare our output with ``kubectl kustomize``."""
    return {object_id(obj): json.dumps(obj, sort_keys=True) for obj in objects}


# Dagster instance from Helm values ---------------------------------------------------------------


def dagster_instance_config(values: Mapping[str, Any], namespace: str, release: str = "dagster") -> Manifest:
    """The ``dagster.yaml`` the official chart renders (configmap-instance) for the keys we set.

    Mirrors the chart's templates for storage, run launcher, run coordinator, run monitoring,
    run retries and sensor/schedule threads, so the result can be validated by Dagster itself.
    """
    fullname = release if "dagster" in release else f"{release}-dagster"
    global_values = values.get("global", {})
    daemon = values.get("dagsterDaemon", {})
    storage = {"postgres_db": _postgres_db(values.get("postgresql", {}), release)}
    config: Manifest = {
        "scheduler": {"module": "dagster._core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": storage,
        },
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": storage,
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": storage,
        },
        "run_launcher": _k8s_run_launcher(values, namespace, fullname, global_values),
    }
    if daemon.get("enabled") and daemon.get("runCoordinator", {}).get("enabled"):
        config["run_coordinator"] = _queued_run_coordinator(daemon["runCoordinator"])
    monitoring = daemon.get("runMonitoring", {})
    if daemon.get("enabled") and monitoring.get("enabled"):
        config["run_monitoring"] = _run_monitoring(monitoring)
    retries = daemon.get("runRetries", {})
    if daemon.get("enabled") and retries.get("enabled"):
        config["run_retries"] = {
            "enabled": True,
            **({"max_retries": retries["maxRetries"]} if retries.get("maxRetries") else {}),
        }
    for section in ("sensors", "schedules"):
        threads = daemon.get(section, {})
        if daemon.get("enabled") and threads.get("useThreads"):
            config[section] = {"use_threads": True, **_rename(threads, {"numWorkers": "num_workers"})}
    return config


def _postgres_db(postgresql: Mapping[str, Any], release: str) -> Manifest:
    host = f"{release}-postgresql" if postgresql.get("enabled") else postgresql.get("postgresqlHost", "")
    db: Manifest = {
        "username": postgresql.get("postgresqlUsername"),
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": host,
        "db_name": postgresql.get("postgresqlDatabase"),
        "port": postgresql.get("service", {}).get("port", 5432),
        "params": postgresql.get("postgresqlParams") or {},
    }
    if postgresql.get("postgresqlScheme"):
        db["scheme"] = postgresql["postgresqlScheme"]
    return db


def _k8s_run_launcher(
    values: Mapping[str, Any], namespace: str, fullname: str, global_values: Mapping[str, Any]
) -> Manifest:
    run_launcher = values.get("runLauncher", {})
    if run_launcher.get("type") != "K8sRunLauncher":
        raise RenderError("runLauncher.type must be K8sRunLauncher")
    launcher = run_launcher.get("config", {}).get("k8sRunLauncher", {})
    config: Manifest = {
        "load_incluster_config": launcher.get("loadInclusterConfig", True),
        "job_namespace": launcher.get("jobNamespace") or namespace,
        "image_pull_policy": launcher.get("imagePullPolicy", "Always"),
        "service_account_name": global_values.get("serviceAccountName") or fullname,
        "dagster_home": global_values.get("dagsterHome", "/opt/dagster/dagster_home"),
        "instance_config_map": f"{fullname}-instance",
        "postgres_password_secret": global_values.get("postgresqlSecretName", "dagster-postgresql-secret"),
    }
    if launcher.get("kubeconfigFile"):
        config["kubeconfig_file"] = launcher["kubeconfigFile"]
    if values.get("imagePullSecrets"):
        config["image_pull_secrets"] = values["imagePullSecrets"]
    for key, name in (("envConfigMaps", "env_config_maps"), ("envSecrets", "env_secrets")):
        names = [ref["name"] for ref in launcher.get(key, []) if "name" in ref]
        if names:
            config[name] = names
    renames = {
        "envVars": "env_vars",
        "volumeMounts": "volume_mounts",
        "volumes": "volumes",
        "labels": "labels",
        "resources": "resources",
        "schedulerName": "scheduler_name",
        "securityContext": "security_context",
    }
    config.update(_rename(launcher, renames))
    if launcher.get("failPodOnRunFailure"):
        config["fail_pod_on_run_failure"] = True
    run_k8s = launcher.get("runK8sConfig") or {}
    if run_k8s:
        config["run_k8s_config"] = _rename(
            run_k8s,
            {
                "containerConfig": "container_config",
                "podSpecConfig": "pod_spec_config",
                "podTemplateSpecMetadata": "pod_template_spec_metadata",
                "jobSpecConfig": "job_spec_config",
                "jobMetadata": "job_metadata",
            },
        )
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def _queued_run_coordinator(run_coordinator: Mapping[str, Any]) -> Manifest:
    if run_coordinator.get("type") != "QueuedRunCoordinator":
        raise RenderError("dagsterDaemon.runCoordinator.type must be QueuedRunCoordinator")
    queued = run_coordinator.get("config", {}).get("queuedRunCoordinator", {})
    config = _rename(
        queued,
        {
            "maxConcurrentRuns": "max_concurrent_runs",
            "tagConcurrencyLimits": "tag_concurrency_limits",
            "dequeueIntervalSeconds": "dequeue_interval_seconds",
            "dequeueUseThreads": "dequeue_use_threads",
            "dequeueNumWorkers": "dequeue_num_workers",
        },
    )
    return {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator", "config": config}


def _run_monitoring(monitoring: Mapping[str, Any]) -> Manifest:
    return {
        "enabled": True,
        **_rename(
            monitoring,
            {
                "startTimeoutSeconds": "start_timeout_seconds",
                "cancelTimeoutSeconds": "cancel_timeout_seconds",
                "maxResumeRunAttempts": "max_resume_run_attempts",
                "pollIntervalSeconds": "poll_interval_seconds",
                "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
            },
        ),
    }


def _rename(source: Mapping[str, Any], names: Mapping[str, str]) -> Manifest:
    """Copy the set (non-empty) chart keys to their dagster.yaml names."""
    return {target: source[key] for key, target in names.items() if source.get(key) not in (None, [], {}, "")}


# CLI ---------------------------------------------------------------------------------------------


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        name, sep, reference = pair.partition("=")
        if not sep or not name or not reference:
            raise SystemExit(f"--image expects NAME=REFERENCE, got {pair!r}")
        overrides[name] = reference
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    kustomize = commands.add_parser("kustomize", help="render a kustomization directory to stdout")
    kustomize.add_argument("directory", type=Path)
    kustomize.add_argument("--image", action="append", default=[], metavar="NAME=REFERENCE")
    instance = commands.add_parser("dagster-instance", help="render dagster.yaml from Helm values")
    instance.add_argument("values", type=Path)
    instance.add_argument("--namespace", required=True)
    instance.add_argument("--release", default="dagster")
    compare = commands.add_parser("compare", help="compare two rendered manifests, ignoring order")
    compare.add_argument("ours", type=Path)
    compare.add_argument("theirs", type=Path)
    args = parser.parse_args(argv)

    if args.command == "kustomize":
        sys.stdout.write(dump_documents(render_kustomization(args.directory, _parse_overrides(args.image))))
        return 0
    if args.command == "dagster-instance":
        values = yaml.safe_load(args.values.read_text())
        sys.stdout.write(
            yaml.safe_dump(dagster_instance_config(values, args.namespace, args.release), sort_keys=False)
        )
        return 0
    ours, theirs = canonical(load_documents(args.ours)), canonical(load_documents(args.theirs))
    differing = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    for key in differing:
        print(f"differs: {'/'.join(key)}", file=sys.stderr)
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
