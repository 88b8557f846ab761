"""The label contract: one normalisation key per label, and the spelling people see.

Machines (training, the model's classes, the prediction log, feedback joins, drift) compare keys:
``normalize_label('HR  Support') == 'hr_support'``. People see display names: the original
spelling of the export (``'HR Support'``), kept in ``raw.tickets`` and carried through dbt
(``topic_display``) into the model's ``LabelMap``. The dbt macro ``normalise_label`` applies the
same rule in SQL (a test keeps the two in step).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

URGENCY_LEVELS: list[str] = ["low", "medium", "high", "critical"]  # most urgent last

_LABEL_SEPARATORS = re.compile(r"[\s_-]+")

# Priority words seen in help-desk exports (Zendesk, ServiceNow, Jira) mapped onto our four
# levels. Keys are already normalised with ``normalize_label``; anything else is kept as-is.
URGENCY_ALIASES: dict[str, str] = {
    "p1": "critical",
    "p2": "high",
    "p3": "medium",
    "p4": "low",
    "p5": "low",
    "sev1": "critical",
    "sev2": "high",
    "sev3": "medium",
    "sev4": "low",
    "1": "critical",
    "2": "high",
    "3": "medium",
    "4": "low",
    "5": "low",
    "urgent": "critical",
    "blocker": "critical",
    "highest": "critical",
    "critique": "critical",
    "urgente": "critical",
    "major": "high",
    "haute": "high",
    "elevee": "high",
    "élevée": "high",
    "normal": "medium",
    "moderate": "medium",
    "moyenne": "medium",
    "minor": "low",
    "trivial": "low",
    "lowest": "low",
    "planning": "low",
    "basse": "low",
    "faible": "low",
}


def normalize_label(value: str | None) -> str | None:
    """'Hardware ' -> 'hardware', 'HR  Support' -> 'hr_support', 'Internal - Project' -> 'internal_project'."""
    if value is None:
        return None
    label = _LABEL_SEPARATORS.sub("_", value.strip().lower()).strip("_")
    return label or None


def normalize_urgency(value: str | None) -> str | None:
    """Map common priority words (P1, urgent, normal ...) onto URGENCY_LEVELS; keep others normalised."""
    label = normalize_label(value)
    if label is None:
        return None
    return URGENCY_ALIASES.get(label, label)


def display_label(value: str | None) -> str | None:
    """The spelling people see: the original label with surrounding and repeated spaces removed."""
    if value is None:
        return None
    label = " ".join(value.split())
    return label or None


_MACHINE_KEY = re.compile(r"[a-z0-9]+(?:_[a-z0-9]+)+|[a-z][a-z0-9]*")


def readable_label(name: str | None) -> str | None:
    """What a person reads: a display name as it is, a machine key (``access_password``, which is
    what a data set without display names gives) as words (``Access password``)."""
    if name is None or not _MACHINE_KEY.fullmatch(name):
        return name
    words = name.replace("_", " ")
    return words[0].upper() + words[1:]


@dataclass(frozen=True)
class LabelMap:
    """Keys <-> display names of one label set (e.g. a model's topics)."""

    display: Mapping[str, str] = field(default_factory=dict)  # key -> display name

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str | None, str | None]]) -> LabelMap:
        """From (key, original spelling) pairs: each key shows its most frequent spelling
        (ties: the alphabetically first), a key with no spelling shows itself."""
        spellings: dict[str, Counter[str]] = {}
        for key, original in pairs:
            if key is None:
                continue
            counter = spellings.setdefault(key, Counter())
            shown = display_label(original)
            if shown is not None and normalize_label(shown) == key:
                counter[shown] += 1
        return cls(
            {
                key: min(counts, key=lambda s: (-counts[s], s)) if counts else key
                for key, counts in sorted(spellings.items())
            }
        )

    def name(self, key: str | None) -> str | None:
        """Display name of ``key`` (the key itself when unknown)."""
        if key is None:
            return None
        return self.display.get(key, key)

    def key(self, value: str | None) -> str | None:
        """The key of a display name or of any spelling of a label."""
        return normalize_label(value)

    def as_dict(self) -> dict[str, str]:
        return dict(self.display)


DEFAULT_LABEL_NAMES_PATH = Path(__file__).with_name("label_names.yaml")


class LabelNamesError(ValueError):
    """The display-name file cannot be read or has the wrong shape (one line, names the file)."""


@dataclass(frozen=True)
class LabelNames:
    """What people read for a label key of a target (``topic``, ``urgency``, a routing target), in a
    language: the one mechanism behind drafts, the API's ``*_name`` fields and the console.

    Order: a name of the shipped file (``label_names.yaml``) in the ticket's language, except that in
    English the export's own spelling (``display``, e.g. a model's ``topic_display``) wins when it
    is not a bare key; then that spelling; then the file's English name; then the key in words.
    """

    names: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | str | None = None) -> LabelNames:
        import yaml  # only here: the rest of the label contract is standard library

        source = Path(path) if path is not None else DEFAULT_LABEL_NAMES_PATH
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise LabelNamesError(f"label names {source}: {exc}") from None
        ok = isinstance(data, dict) and all(
            isinstance(keys, dict)
            and all(isinstance(by_lang, dict) and all(isinstance(v, str) for v in by_lang.values())
                    for by_lang in keys.values())
            for keys in data.values()
        )  # fmt: skip
        if not ok:
            raise LabelNamesError(f"label names {source}: expected target -> label key -> {{language: name}}")
        return cls({str(t): {str(k): dict(v) for k, v in keys.items()} for t, keys in data.items()})

    def name(
        self,
        target: str,
        key: str | None,
        display: Mapping[str, str] | None = None,
        language: str | None = None,
    ) -> str | None:
        if key is None:
            return None
        shipped = self.names.get(target, {}).get(key, {})
        spelled = (display or {}).get(key)
        if spelled is not None and _MACHINE_KEY.fullmatch(spelled):
            spelled = None  # a data set without display names spells its labels as keys
        language = language or "en"
        if language != "en" and shipped.get(language):
            return shipped[language]
        return spelled or shipped.get("en") or readable_label(key)

    def names_of(
        self,
        target: str,
        keys: Iterable[str],
        display: Mapping[str, str] | None = None,
        language: str | None = None,
    ) -> dict[str, str]:
        return {key: str(self.name(target, key, display, language)) for key in keys}


@dataclass(frozen=True)
class LabelMatch:
    """How a file's labels map onto a model's keys."""

    keys: list[str | None]  # one per input value, None where it did not map
    unmapped: dict[str, int]  # original spelling -> rows whose label the model does not know
    matched_rows: int


def match_labels(
    values: Iterable[str | None],
    model_keys: Iterable[str],
    normalise: Callable[[str | None], str | None] = normalize_label,
) -> LabelMatch:
    """Normalise ``values`` and report the labels the model has no class for."""
    known = set(model_keys)
    keys: list[str | None] = []
    unmapped: Counter[str] = Counter()
    matched = 0
    for value in values:
        key = normalise(value)
        keys.append(key)
        if key is None:
            continue
        if key in known:
            matched += 1
        else:
            unmapped[display_label(value) or key] += 1
    return LabelMatch(keys=keys, unmapped=dict(unmapped.most_common()), matched_rows=matched)


# Routing targets (assignment group, queue, service...) besides topic and urgency: a target's name
# is a lower-case identifier that does not shadow a column of the training set.
TARGET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED_TARGET_NAMES = frozenset(
    {
        "ticket_id", "text", "title", "body", "topic", "topic_display", "urgency", "channel", "department",
        "language", "created_at", "event_at", "text_hash", "text_length", "split", "split_rule", "labels",
        "source", "requester", "extra", "routing",
    }
)  # fmt: skip


def is_target_name(name: str) -> bool:
    return bool(TARGET_NAME.match(name)) and name not in RESERVED_TARGET_NAMES


def check_target_name(name: str) -> str:
    """``name`` if it can name a routing target, else a ValueError saying why."""
    if not TARGET_NAME.match(name):
        raise ValueError(
            f"label target name {name!r}: use lower-case letters, digits and _ (e.g. assignment_group)"
        )
    if name in RESERVED_TARGET_NAMES:
        raise ValueError(f"label target name {name!r} is a built-in column; pick another name")
    return name
