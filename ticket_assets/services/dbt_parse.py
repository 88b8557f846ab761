"""What dbt's parse depends on, and where its partial-parse state is kept between runs.

No Dagster and no dbt imported here: the dbt worker (dbt_worker.py) and the commands check the
project's state before anything heavy loads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path

from ticket_assets.core.paths import DBT_MANIFEST, DBT_PROJECT_DIR

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
PARTIAL_PARSE_DIR = DBT_MANIFEST.parent / "partial_parse"


def _profile_digest(env: Mapping[str, str]) -> str:
    return hashlib.sha256(
        "\0".join(f"{name}={env.get(name, '')}" for name in _PARSE_ENV).encode()
    ).hexdigest()[:16]


def project_fingerprint(env: Mapping[str, str] | None = None) -> str:
    """Digest of every file dbt parses, the dbt version and the connection it parses for."""
    digest = hashlib.sha256(f"{version('dbt-core')}\0{_profile_digest(env or os.environ)}".encode())
    project = DBT_PROJECT_DIR  # also the profiles directory (services/dbt.py)
    files = [project / "dbt_project.yml", project / "profiles.yml"]
    for folder in _PARSED_DIRS:
        files += sorted(path for path in (project / folder).rglob("*") if path.is_file())
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


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
