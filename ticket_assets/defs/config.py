"""Dagster run config derived from the plain config dataclasses: one definition per setting."""

from __future__ import annotations

import dataclasses
import typing

import dagster as dg
from pydantic import create_model

_SCALARS = (bool, int, float, str)


def config_class(
    source: type, name: str, doc: str | None = None, **extra: tuple[type, object]
) -> type[dg.Config]:
    """A ``dg.Config`` with the scalar fields of the dataclass ``source`` and their defaults, plus
    ``extra`` run-only fields (``name=(type, default)``) that are not part of ``source``.

    ``to_plain(config, source)`` turns a value of it back into ``source``; non-scalar fields keep
    their dataclass defaults (Dagster config has no schema for them).
    """
    hints = typing.get_type_hints(source)
    fields = {
        field.name: (hints[field.name], field.default)
        for field in dataclasses.fields(source)
        if hints[field.name] in _SCALARS and field.default is not dataclasses.MISSING
    }
    model = create_model(name, __base__=dg.Config, __doc__=doc or source.__doc__, **fields, **extra)
    model.__module__ = source.__module__
    return model


def to_plain(config: dg.Config, target: type, **overrides: object):
    names = {field.name for field in dataclasses.fields(target)}
    values = {key: value for key, value in config.model_dump().items() if key in names}
    return target(**{**values, **overrides})
