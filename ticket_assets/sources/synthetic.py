"""Synthetic IT support tickets with labelled topic and urgency, plus drift scenarios.

Design:
- Every random draw happens up front, with numpy, in a fixed order that does not depend on the
  scenario. A scenario only changes which probability table a row's uniforms are read through
  after ``scenario_start``, so rows before that date are identical to the base run: drift is
  exactly where the scenario says it is.
- Text is assembled from pre-expanded ``(title, body)`` variants (templates x slot fillers) picked
  by index, so building a million tickets is array indexing plus polars string concatenation.
- Urgency is written into the text (impact, outage, deadline, VIP cues) rather than only drawn
  as a label, so a model can learn it; ~15% of tickets carry no cue, as in real life.
"""

from __future__ import annotations

import itertools
import json
import random
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

import numpy as np
import polars as pl

from ticket_assets.core.labels import URGENCY_LEVELS
from ticket_assets.sources import synthetic_content as content
from ticket_assets.sources.frame import UTC_DATETIME, conform
from ticket_assets.sources.scenarios import SCENARIOS, Scenario
from ticket_assets.sources.text import text_hash_series

__all__ = [
    "DEFAULT_START",
    "SCENARIOS",
    "SYNTHETIC_TOPICS",
    "URGENCY_LEVELS",
    "Scenario",
    "generate_tickets",
]

SYNTHETIC_TOPICS: list[str] = list(content.BASE_TOPIC_WEIGHTS)
# Topics that only scenarios introduce come after the base ones so base indices never move.
_ALL_TOPICS: list[str] = SYNTHETIC_TOPICS + [t for t in content.TEMPLATES_EN if t not in SYNTHETIC_TOPICS]
_LANGS = ["en", "fr"]

# A fixed default keeps generate_tickets(n, seed) reproducible from one day to the next.
DEFAULT_START = date(2025, 1, 6)

FRENCH_SHARE = 0.08
DUPLICATE_SHARE = 0.03
NEAR_DUPLICATE_SHARE = 0.02
TYPO_SHARE = 0.12
ESCALATION_SHARE = 0.01  # tickets replaced by content.ESCALATION_CASES (ransomware, outages ...)
VIP_SHARE = 0.02  # on top of the Executive Office, whose requesters are all VIPs
CUE_RATE = np.array([0.80, 0.75, 0.85, 0.95])  # P(urgency wording present | urgency)
VIP_URGENCY_TILT = np.array([0.4, 0.8, 1.6, 2.2])
VARIANTS_PER_TEMPLATE = 48
DETAIL_SHARE = 0.75  # tickets that mention an asset tag, a time, an extension ...

# Office-hours shape: Monday peak, quiet weekends, a lunch dip.
_WEEKDAY_WEIGHTS = np.array([1.25, 1.15, 1.10, 1.05, 0.90, 0.12, 0.08])
_HOUR_WEIGHTS = np.array(
    [
        0.2,
        0.1,
        0.1,
        0.1,
        0.1,
        0.2,
        0.5,
        1.5,
        4.0,
        7.0,
        8.0,
        7.0,
        4.5,
        5.5,
        7.0,
        6.5,
        5.0,
        3.0,
        1.5,
        1.0,
        0.7,
        0.5,
        0.4,
        0.3,
    ]
)


# Per-row fields that make up a ticket's content: near-duplicates copy these from their source
# (same person, same problem) but keep their own greeting, closing and typos.
_CONTENT_FIELDS = (
    "after", "topic", "urgency", "lang", "dept", "vip", "channel", "variant", "first", "last",
    "cue_on", "cue", "cue_first", "prefix_on", "prefix", "vip_cue_on", "vip_cue", "note_on", "note", "untitled",
    "detail_on", "detail", "detail_number", "detail_minute",
)  # fmt: skip


# --- variant tables -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """Strings grouped by a key; rows pick ``offset[key] + floor(u * count[key])``."""

    values: np.ndarray  # object array of str
    offset: np.ndarray
    count: np.ndarray

    def pick(self, key: np.ndarray, uniform: np.ndarray) -> np.ndarray:
        count = self.count[key]
        return self.offset[key] + np.minimum((uniform * count).astype(np.int64), np.maximum(count - 1, 0))


def _table(groups: list[list[str]]) -> _Table:
    count = np.array([len(g) for g in groups], dtype=np.int64)
    offset = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
    values = np.array([s for g in groups for s in g] or [""], dtype=object)
    return _Table(values, offset, count)


def _expand(
    template: tuple[str, str], slots: Mapping[str, list[str]], rng: random.Random
) -> list[tuple[str, str]]:
    title, body = template
    names = sorted({name for _, name, _, _ in string.Formatter().parse(title + " " + body) if name})
    combos = list(itertools.product(*(slots[name] for name in names)))
    if len(combos) > VARIANTS_PER_TEMPLATE:
        combos = rng.sample(combos, VARIANTS_PER_TEMPLATE)
    filled = []
    for combo in combos:
        values = dict(zip(names, combo, strict=True))
        filled.append((_capitalise(title.format(**values)), _capitalise(body.format(**values))))
    return filled


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


@lru_cache(maxsize=8)
def _variant_tables(scenario_name: str | None) -> tuple[_Table, _Table]:
    """Title and body tables keyed by (language, product set, topic).

    Product set 1 holds the scenario's product names (identical to set 0 without any), so the
    same uniform picks the same template and fillers, only with the new names.
    """
    scenario = SCENARIOS[scenario_name] if scenario_name else None
    titles: list[list[str]] = []
    bodies: list[list[str]] = []
    for lang in _LANGS:
        templates = content.TEMPLATES_EN if lang == "en" else content.TEMPLATES_FR
        base_slots = content.SLOTS_EN if lang == "en" else content.SLOTS_FR
        for product_set in (0, 1):
            products = dict(content.PRODUCTS)
            if product_set == 1 and scenario is not None:
                products.update(scenario.products)
            slots = {**base_slots, **products}
            for topic in _ALL_TOPICS:
                # Reseeded per language and topic: where slot sizes match, both product sets
                # sample the same fillers, so only the product names differ.
                rng = random.Random(f"{lang}:{topic}")
                pairs = [pair for template in templates[topic] for pair in _expand(template, slots, rng)]
                titles.append([t for t, _ in pairs])
                bodies.append([b for _, b in pairs])
    return _table(titles), _table(bodies)


def _phrase_table(per_lang: Mapping[str, list[list[str]]]) -> _Table:
    """Phrases keyed by (language, level)."""
    return _table([group for lang in _LANGS for group in per_lang[lang]])


_CUES = _phrase_table(content.URGENCY_CUES)
_OPENERS = _table([content.OPENERS[lang] for lang in _LANGS])
_CLOSERS = _table([content.CLOSERS[lang] for lang in _LANGS])
_VIP_CUES = _table([content.VIP_CUES[lang] for lang in _LANGS])
_FOLLOW_UPS = _table([content.FOLLOW_UPS[lang] for lang in _LANGS])
_INTRODUCTIONS = _table([content.INTRODUCTIONS[lang] for lang in _LANGS])
_DETAILS = _table([content.DETAILS[lang] for lang in _LANGS])
_CLOSER_TAKES_NAME = np.array([c.endswith(",") for c in _CLOSERS.values])
_DEPARTMENTS = list(content.DEPARTMENTS)
_EXECUTIVE = _DEPARTMENTS.index("Executive Office")


# --- sampling -------------------------------------------------------------------------------


def _categorical(uniform: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Inverse-CDF sampling; ``probabilities`` is one row (k,) or one row per sample (n, k)."""
    cdf = np.cumsum(probabilities, axis=-1)
    cdf = cdf / cdf[..., -1:]
    if cdf.ndim == 1:
        return np.minimum(np.searchsorted(cdf, uniform, side="right"), len(cdf) - 1)
    return np.minimum((uniform[:, None] >= cdf[:, :-1]).sum(axis=1), cdf.shape[1] - 1)


def _topic_weights(overrides: Mapping[str, float]) -> np.ndarray:
    weights = {**content.BASE_TOPIC_WEIGHTS, **overrides}
    return np.array([weights.get(topic, 0.0) for topic in _ALL_TOPICS])


def _timestamps(rng: np.random.Generator, n: int, start: date, days: int) -> np.ndarray:
    """Microseconds since the epoch, sorted, following weekday and office-hour patterns."""
    weekdays = (np.arange(days) + start.weekday()) % 7
    day = rng.choice(days, size=n, p=_WEEKDAY_WEIGHTS[weekdays] / _WEEKDAY_WEIGHTS[weekdays].sum())
    hour = rng.choice(24, size=n, p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    second = rng.integers(0, 3600, size=n)
    origin = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    return np.sort((origin + day * 86_400 + hour * 3_600 + second) * 1_000_000)


def _draw(rng: np.random.Generator, n: int, start: date, days: int) -> dict[str, np.ndarray]:
    """Every random number the generator uses, in a fixed order independent of the scenario."""
    u = {name: rng.random(n) for name in (
        "topic", "urgency", "variant", "lang", "vip", "channel", "cue_on", "cue", "cue_first",
        "prefix_on", "prefix", "vip_cue_on", "vip_cue", "note_on", "note", "untitled",
        "opener_on", "opener", "intro_on", "intro", "closer_on", "closer", "signature",
        "typo_on", "follow_up_on", "follow_up", "duplicate", "near_duplicate", "source",
    )}  # fmt: skip
    u["created"] = _timestamps(rng, n, start, days)
    u["dept"] = rng.choice(len(_DEPARTMENTS), size=n, p=np.array(list(content.DEPARTMENTS.values())))
    u["first"] = rng.integers(0, len(content.FIRST_NAMES), size=n)
    u["last"] = rng.integers(0, len(content.LAST_NAMES), size=n)
    u["typo_count"] = rng.integers(1, 4, size=n)
    u["typo_pos"] = rng.random((n, 3))
    u["typo_kind"] = rng.integers(0, 4, size=(n, 3))
    u["gap_minutes"] = rng.integers(2, 4_320, size=n)
    u["detail_on"] = rng.random(n)
    u["detail"] = rng.random(n)
    u["detail_number"] = rng.integers(0, 100_000, size=n)
    u["detail_minute"] = rng.integers(8 * 60, 18 * 60, size=n)  # a time during office hours
    return u


def _resolve_rows(
    u: dict[str, np.ndarray], scenario: Scenario | None, scenario_start: date
) -> dict[str, np.ndarray]:
    """Turn uniforms into per-row choices (indices into the phrase tables)."""
    n = len(u["topic"])
    rows: dict[str, np.ndarray] = {"created": u["created"].copy()}
    start_us = int(
        datetime(scenario_start.year, scenario_start.month, scenario_start.day, tzinfo=UTC).timestamp()
    )
    after = (u["created"] >= start_us * 1_000_000) if scenario is not None else np.zeros(n, dtype=bool)
    rows["after"] = after

    topic = _categorical(u["topic"], _topic_weights({}))
    if scenario is not None and scenario.topic_weights:
        topic = np.where(after, _categorical(u["topic"], _topic_weights(scenario.topic_weights)), topic)
    rows["topic"] = topic
    rows["lang"] = (u["lang"] < FRENCH_SHARE).astype(np.int64)
    rows["dept"] = u["dept"]
    rows["vip"] = (u["dept"] == _EXECUTIVE) | (u["vip"] < VIP_SHARE)

    urgency_probs = np.array([content.TOPIC_URGENCY[t] for t in _ALL_TOPICS])[topic]
    urgency_probs = urgency_probs * np.where(rows["vip"][:, None], VIP_URGENCY_TILT, 1.0)
    if scenario is not None:
        urgency_probs = urgency_probs * np.where(after[:, None], np.array(scenario.urgency_tilt), 1.0)
    urgency = _categorical(u["urgency"], urgency_probs)
    rows["urgency"] = urgency
    rows["channel"] = _categorical(u["channel"], np.array(content.CHANNEL_BY_URGENCY)[urgency])

    titles, _ = _variant_tables(scenario.name if scenario else None)
    has_products = scenario is not None and bool(scenario.products)
    product_set = (after & has_products).astype(np.int64)
    rows["variant"] = titles.pick((rows["lang"] * 2 + product_set) * len(_ALL_TOPICS) + topic, u["variant"])
    rows["first"], rows["last"] = u["first"], u["last"]

    rows["cue_on"] = u["cue_on"] < CUE_RATE[urgency]
    rows["cue"] = _CUES.pick(rows["lang"] * len(URGENCY_LEVELS) + urgency, u["cue"])
    rows["cue_first"] = u["cue_first"] < 0.25
    rows["prefix_on"] = (urgency == len(URGENCY_LEVELS) - 1) & (u["prefix_on"] < 0.3)
    rows["prefix"] = np.minimum((u["prefix"] * len(content.TITLE_PREFIXES)).astype(np.int64), 2)
    rows["vip_cue_on"] = rows["vip"] & (u["vip_cue_on"] < 0.8)
    rows["vip_cue"] = _VIP_CUES.pick(rows["lang"], u["vip_cue"])
    note_rate = scenario.note_rate if scenario is not None else 0.0
    rows["note_on"] = after & (u["note_on"] < note_rate)
    rows["note"] = u["note"]
    rows["untitled"] = (rows["channel"] == content.CHANNELS.index("chat")) & (u["untitled"] < 0.7)

    rows["opener_on"] = u["opener_on"]
    rows["opener"] = u["opener"]
    rows["intro_on"] = u["intro_on"] < 0.25
    rows["intro"] = u["intro"]
    rows["closer_on"] = u["closer_on"] < 0.75
    rows["closer"] = u["closer"]
    rows["signature"] = u["signature"] < 0.5
    rows["typo_on"] = u["typo_on"] < TYPO_SHARE
    rows["typo_count"], rows["typo_pos"], rows["typo_kind"] = u["typo_count"], u["typo_pos"], u["typo_kind"]
    rows["follow_up_on"] = np.zeros(n, dtype=bool)
    rows["follow_up"] = u["follow_up"]
    rows["detail_on"] = u["detail_on"] < DETAIL_SHARE
    rows["detail"] = u["detail"]
    rows["detail_number"], rows["detail_minute"] = u["detail_number"], u["detail_minute"]
    _apply_duplicates(rows, u)
    # Derived only now, from the copied language and channel: a near-duplicate's own greeting must
    # match what it copied, and must not depend on the scenario state of the row it replaced.
    rows["opener_on"] = rows["opener_on"] < np.where(
        rows["channel"] == content.CHANNELS.index("portal"), 0.3, 0.85
    )
    for key, table in (
        ("opener", _OPENERS),
        ("intro", _INTRODUCTIONS),
        ("closer", _CLOSERS),
        ("follow_up", _FOLLOW_UPS),
        ("detail", _DETAILS),
    ):
        rows[key] = table.pick(rows["lang"], rows[key])
    return rows


def _apply_duplicates(rows: dict[str, np.ndarray], u: dict[str, np.ndarray]) -> None:
    """Re-submissions: exact copies (new id, minutes later) and near copies (hours/days later).

    Sources are always original rows drawn from earlier indices, so copies never chain and a
    copy made before ``scenario_start`` only ever repeats a ticket from before it.
    """
    n = len(u["topic"])
    index = np.arange(n)
    exact = (u["duplicate"] < DUPLICATE_SHARE) & (index > 0)
    near = ~exact & (u["near_duplicate"] < NEAR_DUPLICATE_SHARE) & (index > 0)
    original = ~(exact | near)
    last_original = np.maximum.accumulate(np.where(original, index, -1))
    source = last_original[np.minimum((u["source"] * index).astype(np.int64), np.maximum(index - 1, 0))]
    exact &= source >= 0
    near &= source >= 0
    rows["duplicate_of"] = np.where(exact, source, -1)
    rows["near_duplicate_of"] = np.where(near, source, -1)

    copy_all = [key for key in rows if key not in ("created", "duplicate_of", "near_duplicate_of")]
    for key in copy_all:
        rows[key][exact] = rows[key][source[exact]]
    for key in _CONTENT_FIELDS:
        rows[key][near] = rows[key][source[near]]
    rows["follow_up_on"][near] = u["follow_up_on"][near] < 0.6
    minutes = np.where(exact, u["gap_minutes"] % 240 + 2, u["gap_minutes"] + 60)
    copies = exact | near
    rows["created"][copies] = rows["created"][source[copies]] + minutes[copies] * 60_000_000


# --- text assembly --------------------------------------------------------------------------

_KEYBOARD_NEIGHBOURS = {
    "a": "qsz", "e": "wrd", "i": "uok", "o": "ipl", "n": "bm", "t": "ry", "s": "adw", "r": "et", "l": "kp",
}  # fmt: skip


def _add_typos(text: str, count: int, positions: np.ndarray, kinds: np.ndarray) -> str:
    """Swap, drop, double or mistype letters at a few positions (letters only)."""
    chars = list(text)
    for k in range(count):
        i = int(positions[k] * (len(chars) - 1))
        if i + 1 >= len(chars) or not chars[i].isalpha() or not chars[i + 1].isalpha():
            continue
        kind = kinds[k]
        if kind == 0:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif kind == 1:
            del chars[i]
        elif kind == 2:
            chars.insert(i, chars[i])
        else:
            neighbours = _KEYBOARD_NEIGHBOURS.get(chars[i].lower())
            if neighbours:
                chars[i] = neighbours[int(positions[k] * 1000) % len(neighbours)]
    return "".join(chars)


def _gather(
    values: list[str] | np.ndarray | pl.Series, index: np.ndarray, present: np.ndarray | None = None
) -> pl.Expr:
    """Strings picked by index (null where not ``present``) as a polars expression: no Python objects per row."""
    lookup = values if isinstance(values, pl.Series) else pl.Series(list(values), dtype=pl.String)
    picked = pl.lit(lookup.gather(index))
    return picked if present is None else pl.when(pl.lit(pl.Series(present))).then(picked)


def _assemble(rows: dict[str, np.ndarray], scenario: Scenario | None) -> pl.DataFrame:
    titles, bodies = _variant_tables(scenario.name if scenario else None)
    lang, channel = rows["lang"], rows["channel"]
    phone = channel == content.CHANNELS.index("phone")
    intro_on = rows["intro_on"] & ~phone
    signature = rows["closer_on"] & rows["signature"] & _CLOSER_TAKES_NAME[rows["closer"]]
    notes = (
        _table([list(scenario.notes.get(lang_, [])) for lang_ in _LANGS]) if scenario else _table([[], []])
    )
    note_on = rows["note_on"] & (notes.count[lang] > 0)

    parts = pl.select(
        requester=pl.concat_str(
            [_gather(content.FIRST_NAMES, rows["first"]), _gather(content.LAST_NAMES, rows["last"])],
            separator=" ",
        ),
        department=_gather(_DEPARTMENTS, rows["dept"]),
        # Greeting: a phone transcript header, a self-introduction, a plain opener, or nothing.
        header=pl.when(pl.lit(pl.Series(phone)))
        .then(_gather([content.PHONE_INTRO[lang_] for lang_ in _LANGS], lang))
        .when(pl.lit(pl.Series(intro_on)))
        .then(_gather(_INTRODUCTIONS.values, rows["intro"]))
        .when(pl.lit(pl.Series(rows["opener_on"])))
        .then(_gather(_OPENERS.values, rows["opener"])),
        follow_up=_gather(_FOLLOW_UPS.values, rows["follow_up"], rows["follow_up_on"]),
        core=_gather(bodies.values, rows["variant"]),
        detail=_detail(rows),
        note=_gather(notes.values, notes.pick(lang, rows["note"]), note_on),
        vip_cue=_gather(_VIP_CUES.values, rows["vip_cue"], rows["vip_cue_on"]),
        cue=_gather(_CUES.values, rows["cue"], rows["cue_on"]),
        cue_first=pl.lit(pl.Series(rows["cue_first"])),
        closer=_gather(_CLOSERS.values, rows["closer"], rows["closer_on"]),
        signature=_gather(content.FIRST_NAMES, rows["first"], signature),
        title_core=_gather(titles.values, rows["variant"]),
        prefix=_gather(content.TITLE_PREFIXES, rows["prefix"], rows["prefix_on"]),
        untitled=pl.lit(pl.Series(rows["untitled"])),
        email=pl.lit(pl.Series(channel == content.CHANNELS.index("email"))),
    ).with_columns(
        pl.col("header")
        .str.replace("{name}", pl.col("requester"), literal=True)
        .str.replace("{dept}", pl.col("department"), literal=True)
    )
    cue_then_core = pl.concat_str(
        ["follow_up", "cue", "core", "detail", "note", "vip_cue"], separator=" ", ignore_nulls=True
    )
    core_then_cue = pl.concat_str(
        ["follow_up", "core", "detail", "note", "vip_cue", "cue"], separator=" ", ignore_nulls=True
    )
    closing = pl.concat_str(["closer", "signature"], separator=" ", ignore_nulls=True)
    frame = parts.with_columns(
        main=pl.when("cue_first").then(cue_then_core).otherwise(core_then_cue),
        closing=pl.when(pl.col("closer").is_null()).then(None).otherwise(closing),
    ).select(
        "requester",
        "department",
        pl.when("untitled")
        .then(None)
        .otherwise(pl.concat_str(["prefix", "title_core"], ignore_nulls=True))
        .alias("title"),
        # Emails keep their paragraph breaks; forms, chats and call notes are one block.
        pl.when("email")
        .then(pl.concat_str(["header", "main", "closing"], separator="\n\n", ignore_nulls=True))
        .otherwise(pl.concat_str(["header", "main", "closing"], separator=" ", ignore_nulls=True))
        .alias("body"),
    )
    return frame.with_columns(body=_with_typos(frame["body"], rows))


def _detail(rows: dict[str, np.ndarray]) -> pl.Expr:
    """A detail sentence with its numbers filled in (null for tickets without one)."""
    number, minute = rows["detail_number"], rows["detail_minute"]

    def padded(values: np.ndarray, width: int) -> pl.Expr:
        return pl.lit(pl.Series(values)).cast(pl.String).str.zfill(width)

    return (
        _gather(_DETAILS.values, rows["detail"], rows["detail_on"])
        .str.replace("{n5}", padded(number, 5), literal=True)
        .str.replace("{n4}", padded(number % 10_000, 4), literal=True)
        .str.replace("{hh}", padded(minute // 60, 2), literal=True)
        .str.replace("{mm}", padded(minute % 60, 2), literal=True)
    )


def _with_typos(body: pl.Series, rows: dict[str, np.ndarray]) -> pl.Series:
    typo_rows = np.flatnonzero(rows["typo_on"])
    if not len(typo_rows):
        return body
    counts, positions, kinds = rows["typo_count"], rows["typo_pos"], rows["typo_kind"]
    edited = [
        _add_typos(text, counts[i], positions[i], kinds[i])
        for i, text in zip(typo_rows, body.gather(typo_rows).to_list(), strict=True)
    ]
    return body.scatter(typo_rows, pl.Series(edited, dtype=pl.String))


# Routing target ``assignment_group``: the team a topic goes to, with department exceptions (the
# Executive Office has its own desk; Engineering installs and elevates its own tools) and 5 % of
# tickets routed elsewhere, as real queues are. Drawn from its own random stream so adding it
# changed no other field of any ticket.
TOPIC_GROUPS: dict[str, str] = {
    "access_password": "service_desk",
    "hardware": "deskside",
    "email_calendar": "collaboration",
    "vpn_network": "network",
    "software_install": "service_desk",
    "printer": "deskside",
    "hr_onboarding": "service_desk",
    "storage": "infrastructure",
    "purchase": "procurement_it",
    "meeting_room_av": "deskside",
    "security_phishing": "security_ops",
    "admin_rights": "identity_access",
    "mfa_rollout": "identity_access",
}
ASSIGNMENT_GROUPS: list[str] = sorted({*TOPIC_GROUPS.values(), "vip_support", "engineering_it"})
GROUP_NOISE = 0.05


def assignment_groups(topics: list[str], departments: list[str], seed: int) -> list[str]:
    rng = np.random.default_rng([seed, 0x6A])
    noisy = rng.random(len(topics)) < GROUP_NOISE
    other = rng.integers(0, len(ASSIGNMENT_GROUPS), len(topics))
    groups = []
    for i, (topic, department) in enumerate(zip(topics, departments, strict=True)):
        group = TOPIC_GROUPS.get(topic, "service_desk")
        if department == "Executive Office" and group in ("service_desk", "deskside"):
            group = "vip_support"
        elif department == "Engineering" and topic in ("software_install", "admin_rights"):
            group = "engineering_it"
        groups.append(ASSIGNMENT_GROUPS[other[i]] if noisy[i] else group)
    return groups


def generate_tickets(
    n: int,
    seed: int,
    scenario: str | None = None,
    start: date | None = None,
    days: int = 90,
    scenario_start: date | None = None,
) -> pl.DataFrame:
    """``n`` labelled tickets created over ``[start, start + days)``; identical for identical arguments.

    ``scenario`` (a key of ``SCENARIOS``) shifts the distribution from ``scenario_start`` on
    (default: the middle of the window). Ticket ids are ``syn-{seed}-{scenario or 'base'}-{i}``.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if days < 1:
        raise ValueError("days must be >= 1")
    if scenario is not None and scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {sorted(SCENARIOS)}")
    spec = SCENARIOS[scenario] if scenario else None
    start = start or DEFAULT_START
    scenario_start = scenario_start or start + timedelta(days=days // 2)
    if n == 0:
        return conform(pl.DataFrame())

    rng = np.random.default_rng(seed)
    rows = _resolve_rows(_draw(rng, n, start, days), spec, scenario_start)
    text = _assemble(rows, spec)
    ids = pl.select(
        pl.format(f"syn-{seed}-{scenario or 'base'}-{{}}", pl.int_range(n, dtype=pl.Int64))
    ).to_series()
    duplicate_of, near_duplicate_of = rows["duplicate_of"], rows["near_duplicate_of"]
    frame = pl.select(
        ticket_id=pl.lit(ids),
        source=pl.lit(f"synthetic:seed={seed}" + (f":scenario={scenario}" if scenario else "")),
        title=pl.lit(text["title"]),
        body=pl.lit(text["body"]),
        topic=_gather(_ALL_TOPICS, rows["topic"]),
        urgency=_gather(URGENCY_LEVELS, rows["urgency"]),
        channel=_gather(content.CHANNELS, rows["channel"]),
        department=pl.lit(text["department"]),
        requester=pl.lit(text["requester"]),
        language=_gather(_LANGS, rows["lang"]),
        created_at=pl.lit(pl.Series(rows["created"], dtype=pl.Int64)).cast(UTC_DATETIME),
        extra=pl.struct(
            scenario=pl.lit(scenario, dtype=pl.String),
            shifted=pl.lit(pl.Series(rows["after"])),
            vip=pl.lit(pl.Series(rows["vip"])),
            duplicate_of=_gather(ids, np.maximum(duplicate_of, 0), duplicate_of >= 0),
            near_duplicate_of=_gather(ids, np.maximum(near_duplicate_of, 0), near_duplicate_of >= 0),
        ).struct.json_encode(),
    )
    linked = np.zeros(n, dtype=bool)  # duplicates and their sources keep their shared text
    for of in (duplicate_of, near_duplicate_of):
        linked[of >= 0] = True
        linked[of[of >= 0]] = True
    frame = _with_escalation_cases(frame, seed, ~linked)
    # After the escalation cases, which change topics: groups follow the final topic.
    groups = assignment_groups(frame["topic"].to_list(), frame["department"].to_list(), seed)
    frame = frame.with_columns(
        text_hash=text_hash_series(frame["title"], frame["body"]),
        labels=pl.Series([json.dumps({"assignment_group": g}) for g in groups], dtype=pl.String),
    )
    return conform(frame)


def _with_escalation_cases(frame: pl.DataFrame, seed: int, eligible: np.ndarray) -> pl.DataFrame:
    """Replace ``ESCALATION_SHARE`` of the tickets by escalation cases, labelled with the urgency the
    escalation rules give them. A separate random stream: every other ticket stays as it was."""
    rng = np.random.default_rng([seed, 0xE5C])
    rows = np.flatnonzero((rng.random(frame.height) < ESCALATION_SHARE) & eligible)
    if rows.size == 0:
        return frame
    cases = [content.ESCALATION_CASES[i] for i in rng.integers(len(content.ESCALATION_CASES), size=rows.size)]
    columns = {
        "escalation": [c[0] for c in cases],
        "topic": [c[1] for c in cases],
        "urgency": [c[2] for c in cases],
    }
    columns |= {
        "language": [c[3] for c in cases],
        "title": [c[4] for c in cases],
        "body": [c[5] for c in cases],
    }
    out = frame.with_columns(
        frame[name].clone().scatter(rows, pl.Series(values, dtype=pl.String))
        for name, values in columns.items()
        if name != "escalation"
    )
    extra = out["extra"].to_list()
    for row, case in zip(rows.tolist(), cases, strict=True):
        extra[row] = extra[row][:-1] + f',"escalation":"{case[0]}"}}'
    return out.with_columns(extra=pl.Series(extra, dtype=pl.String))
