"""The dbt project and how its manifest is prepared: by dagster-dbt's ``DbtProject`` preparer.

``dagster dev``/``dg dev`` re-parse at load (``prepare_if_dev``); install, CI and the image build run
``dagster-dbt project prepare-and-package --file ticket_assets/services/dbt.py``; the ``ticketops``
commands call :func:`prepare_manifest`, which starts dbt only when a file dbt parses (or the
connection it parses for) changed since the manifest was prepared.
dagster-dbt's preparer runs the ``dbt`` on PATH: the CLI and scripts/test.sh put this
environment's ``bin`` first, the image has it on PATH.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from dagster_dbt import DbtProject

from ticket_assets.core.paths import DBT_MANIFEST, DBT_PROJECT_DIR

# dbt next to this interpreter, for the run-time resource: works from an unactivated venv too.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
assert dbt_project.manifest_path == DBT_MANIFEST, "core.paths.DBT_MANIFEST must follow the DbtProject"

# What dbt's parse depends on besides the files: the profile's connection (dbt stores the database in
# every node and re-parses everything when it changes) and the target. No password: dbt leaves it out
# of its own check, and a digest of it has no place on disk.
_PARSE_ENV = (
    "TICKETOPS_PG_HOST",
    "TICKETOPS_PG_PORT",
    "TICKETOPS_PG_USER",
    "TICKETOPS_PG_DBNAME",
    "TICKETOPS_PG_SSLMODE",
    "TICKETOPS_DBT_TARGET",
)
_PARSED_DIRS = ("models", "macros", "tests", "seeds", "snapshots", "analyses")
_PARSE_KEY = DBT_MANIFEST.parent / "ticketops-parse.key"
PARTIAL_PARSE_DIR = DBT_MANIFEST.parent / "partial_parse"


def _profile_digest(env: Mapping[str, str]) -> str:
    return hashlib.sha256(
        "\0".join(f"{name}={env.get(name, '')}" for name in _PARSE_ENV).encode()
    ).hexdigest()[:16]


def project_fingerprint(env: Mapping[str, str] | None = None) -> str:
    """Digest of every file dbt parses, the dbt version and the connection it parses for."""
    from dbt.version import __version__ as dbt_version

    digest = hashlib.sha256(f"{dbt_version}\0{_profile_digest(env or os.environ)}".encode())
    project = Path(dbt_project.project_dir)
    files = [project / "dbt_project.yml", Path(dbt_project.profiles_dir or project) / "profiles.yml"]
    for folder in _PARSED_DIRS:
        files += sorted(path for path in (project / folder).rglob("*") if path.is_file())
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _manifest_stamp() -> str:
    stat = dbt_project.manifest_path.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def prepare_manifest() -> Path:
    """Parse the project now, as ``prepare-and-package`` does, unless nothing dbt parses changed
    since this function last prepared the manifest (starting dbt costs seconds even when its
    partial parsing then skips every file)."""
    fingerprint = project_fingerprint()
    if dbt_project.manifest_path.exists() and _PARSE_KEY.exists():
        if _PARSE_KEY.read_text() == f"{fingerprint}\n{_manifest_stamp()}":
            return dbt_project.manifest_path
    dbt_project.preparer.prepare(dbt_project)
    _PARSE_KEY.write_text(f"{fingerprint}\n{_manifest_stamp()}")
    return dbt_project.manifest_path


def partial_parse_file(env: Mapping[str, str]) -> Path:
    """Where dbt's partial-parse state for one connection profile is kept between runs.

    dagster-dbt gives every invocation a fresh target directory, so dbt would otherwise find no
    saved state and parse the whole project on every run; one file per profile because dbt
    discards the state whenever the connection differs from the one it was saved for."""
    return PARTIAL_PARSE_DIR / f"{_profile_digest(env)}.msgpack"


def keep_partial_parse(target_path: Path, cache: Path) -> None:
    """Move the state a dbt invocation saved (only written when it parsed something) into the cache;
    atomically, so a concurrent run reads the old state or the new one, never half of one."""
    saved = target_path / "partial_parse.msgpack"
    if not saved.exists():
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = cache.with_suffix(f".{os.getpid()}.tmp")
    shutil.copyfile(saved, staging)
    staging.replace(cache)
