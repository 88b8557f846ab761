"""The train/serve text contract: the one string the model sees for a ticket.

dbt builds it for training (``stg_tickets.text``, dbt_project/macros/cleaning.sql) and the API builds
it per request with :func:`model_text`; tests/test_dbt_project.py checks the two agree.
"""

from __future__ import annotations

import re

# Mirrors dbt's clean_text macro: drop zero-width characters, collapse control/space runs, trim.
_ZERO_WIDTH = re.compile(r"[\u200b-\u200d\u2060\ufeff]")
_SPACE_RUN = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")


def clean_text(value: str | None) -> str:
    return _SPACE_RUN.sub(" ", _ZERO_WIDTH.sub("", value or "")).strip()


def model_text(title: str | None, body: str) -> str:
    """``concat_ws('. ', title, nullif(body, ''))`` over cleaned parts, as in ``stg_tickets``."""
    return ". ".join(part for part in (clean_text(title), clean_text(body)) if part)
