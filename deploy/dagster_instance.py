"""The Dagster instance config (``dagster.yaml``) that the official Helm chart derives from our values.

helm is not installed where the offline checks run, so this mirrors the chart's configmap-instance
template for the keys we set; deploy/check.sh and the tests then let Dagster itself validate and
load the result (CI also renders the real chart online with ``helm template``).

    python deploy/dagster_instance.py deploy/helm/dagster-values.yaml --namespace ticketops
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]


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
        raise ValueError("runLauncher.type must be K8sRunLauncher")
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
        raise ValueError("dagsterDaemon.runCoordinator.type must be QueuedRunCoordinator")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("values", type=Path)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--release", default="dagster")
    args = parser.parse_args(argv)
    values = yaml.safe_load(args.values.read_text())
    sys.stdout.write(
        yaml.safe_dump(dagster_instance_config(values, args.namespace, args.release), sort_keys=False)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
