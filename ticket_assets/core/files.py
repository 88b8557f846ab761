"""Files that readers in other processes pick up while they are being replaced."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def write_json_atomically(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` to ``path`` so a reader sees the old content or the new, never a torn file.

    The temporary file is synced before the rename: after a crash the pointer names a complete
    version or the previous one (os.replace is atomic on POSIX).
    """
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".tmp-", suffix=".json", delete=False
    ) as tmp:
        json.dump(record, tmp)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


# A published version's pointer (KB snapshots, ticket index versions): readers open what it names.
POINTER_NAME = "CURRENT"


def read_pointer(directory: Path) -> dict[str, Any] | None:
    """The pointer's record, or None before the first publish."""
    try:
        return json.loads((directory / POINTER_NAME).read_text())
    except FileNotFoundError:
        return None


def write_pointer(directory: Path, record: dict[str, Any]) -> None:
    """Publish: point readers at ``record``'s version (stamped with the time), atomically."""
    write_json_atomically(directory / POINTER_NAME, {**record, "published_at": time.time()})
