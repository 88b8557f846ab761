"""Synthetic generator: reproducible, realistic in shape, and drifting exactly where a scenario says."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ticket_assets.sources.frame import TICKET_SCHEMA
from ticket_assets.sources.synthetic import SCENARIOS, SYNTHETIC_TOPICS, URGENCY_LEVELS, generate_tickets
from ticket_assets.sources.text import text_hash

N = 6000
START = date(2025, 3, 3)
DAYS = 60
SCENARIO_START = START + timedelta(days=30)
CONTENT = [
    "title",
    "body",
    "topic",
    "urgency",
    "channel",
    "department",
    "requester",
    "language",
    "created_at",
]


@pytest.fixture(scope="module")
def base() -> pl.DataFrame:
    return generate_tickets(N, seed=7, start=START, days=DAYS)


def _scenario(name: str) -> pl.DataFrame:
    return generate_tickets(N, seed=7, scenario=name, start=START, days=DAYS, scenario_start=SCENARIO_START)


def _before(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(
        pl.col("created_at")
        < datetime(SCENARIO_START.year, SCENARIO_START.month, SCENARIO_START.day, tzinfo=UTC)
    )


def _after(df: pl.DataFrame) -> pl.DataFrame:
    return df.filter(
        pl.col("created_at")
        >= datetime(SCENARIO_START.year, SCENARIO_START.month, SCENARIO_START.day, tzinfo=UTC)
    )


def _shares(df: pl.DataFrame, column: str) -> dict[str, float]:
    counts = df[column].value_counts()
    return {value: count / df.height for value, count in counts.iter_rows()}


def _total_variation(a: dict[str, float], b: dict[str, float]) -> float:
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def test_same_arguments_give_identical_frames_and_other_seeds_differ(base: pl.DataFrame) -> None:
    assert_frame_equal(base, generate_tickets(N, seed=7, start=START, days=DAYS))
    other = generate_tickets(N, seed=8, start=START, days=DAYS)
    assert other["text_hash"].to_list() != base["text_hash"].to_list()
    assert other["ticket_id"][0] == "syn-8-base-0"


def test_frame_follows_the_ticket_contract(base: pl.DataFrame) -> None:
    assert base.schema == pl.Schema(TICKET_SCHEMA)
    assert base.height == N
    assert base["ticket_id"].n_unique() == N
    assert base["ticket_id"][5] == "syn-7-base-5"
    assert base["body"].null_count() == 0
    # text_hash is the documented function of title and body.
    sample = base.sample(200, seed=1)
    assert sample["text_hash"].to_list() == [
        text_hash(t, b) for t, b in sample.select("title", "body").iter_rows()
    ]
    assert all(isinstance(json.loads(extra), dict) for extra in sample["extra"])


def test_labels_cover_the_topics_and_urgency_levels(base: pl.DataFrame) -> None:
    assert len(SYNTHETIC_TOPICS) >= 10
    assert set(base["topic"].unique()) == set(SYNTHETIC_TOPICS)
    assert set(base["urgency"].unique()) == set(URGENCY_LEVELS)
    shares = _shares(base, "topic")
    # Mildly imbalanced: no topic dominates, none is negligible.
    assert 0.02 < min(shares.values()) < max(shares.values()) < 0.25
    assert set(base["channel"].unique()) == {"email", "portal", "phone", "chat"}


def test_french_share_and_duplicates(base: pl.DataFrame) -> None:
    french = _shares(base, "language")["fr"]
    assert 0.06 < french < 0.10
    french_rows = base.filter(pl.col("language") == "fr")
    assert french_rows["body"].str.contains(r"(?i)\b(je|merci|bonjour|mon|est)\b").mean() > 0.9

    extra_schema = pl.Struct({"duplicate_of": pl.String, "near_duplicate_of": pl.String})
    extra = base.select("ticket_id", "text_hash", pl.col("extra").str.json_decode(extra_schema)).unnest(
        "extra"
    )
    exact = extra.filter(pl.col("duplicate_of").is_not_null())
    assert 0.02 < exact.height / N < 0.04
    # An exact duplicate repeats its source's text under a new id.
    hash_of = dict(extra.select("ticket_id", "text_hash").iter_rows())
    assert all(
        hash_of[source] == digest for source, digest in exact.select("duplicate_of", "text_hash").iter_rows()
    )
    # A near duplicate is the same request re-sent with different wording around it.
    near = extra.filter(pl.col("near_duplicate_of").is_not_null())
    assert near.height > N * 0.01
    differs = [
        hash_of[source] != digest
        for source, digest in near.select("near_duplicate_of", "text_hash").iter_rows()
    ]
    assert np.mean(differs) > 0.8


def test_timestamps_follow_office_patterns(base: pl.DataFrame) -> None:
    created = base["created_at"]
    assert created.min() >= datetime(START.year, START.month, START.day, tzinfo=UTC)
    assert created.max() < datetime(START.year, START.month, START.day, tzinfo=UTC) + timedelta(days=DAYS + 3)
    weekend = created.dt.weekday().is_in([6, 7]).mean()
    office_hours = created.dt.hour().is_between(8, 17).mean()
    assert weekend < 0.08
    assert office_hours > 0.8


def test_requester_names_do_not_carry_the_topic(base: pl.DataFrame) -> None:
    """Cramér's V between first name and topic stays at the level of chance."""
    table = base.select(pl.col("requester").str.split(" ").list.first().alias("first"), "topic")
    counts = (
        table.group_by("first", "topic").len().pivot(on="topic", index="first", values="len").fill_null(0)
    )
    observed = counts.drop("first").to_numpy().astype(float)
    expected = observed.sum(1, keepdims=True) * observed.sum(0, keepdims=True) / observed.sum()
    chi2 = ((observed - expected) ** 2 / expected).sum()
    cramers_v = np.sqrt(chi2 / (observed.sum() * (min(observed.shape) - 1)))
    assert cramers_v < 0.1
    # Names do appear in bodies (introductions, phone notes, signatures).
    assert base["body"].str.contains(r"this is|here from|Phone call from|My name is").mean() > 0.1


def test_urgency_is_learnable_from_the_wording(base: pl.DataFrame) -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    text = (base["title"].fill_null("") + " " + base["body"]).to_list()
    urgency = np.array(base["urgency"].to_list())
    features = TfidfVectorizer(min_df=2).fit_transform(text)
    train, test = slice(0, 4500), slice(4500, N)
    model = LogisticRegression(max_iter=300).fit(features[train], urgency[train])
    accuracy = (model.predict(features[test]) == urgency[test]).mean()
    majority = max(np.unique(urgency[test], return_counts=True)[1]) / len(urgency[test])
    assert accuracy > majority + 0.3
    # Control: the same model on shuffled labels learns nothing.
    shuffled = np.random.default_rng(0).permutation(urgency)
    control = LogisticRegression(max_iter=300).fit(features[train], shuffled[train])
    assert (control.predict(features[test]) == shuffled[test]).mean() < majority + 0.05


def test_critical_wording_sits_on_critical_tickets(base: pl.DataFrame) -> None:
    outage = base.filter(
        pl.col("body").str.contains(r"outage|nobody can work|Production is down|customers are impacted")
    )
    assert outage.height > 100
    assert (outage["urgency"] == "critical").mean() > 0.95
    relaxed = base.filter(pl.col("body").str.contains(r"No rush|Not urgent at all|next week is fine"))
    assert (relaxed["urgency"] == "low").mean() > 0.95


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios_leave_the_past_untouched(base: pl.DataFrame, name: str) -> None:
    shifted = _scenario(name)
    assert shifted["ticket_id"][0] == f"syn-7-{name}-0"
    assert_frame_equal(_before(shifted).select(CONTENT), _before(base).select(CONTENT))
    assert not _after(shifted).select(CONTENT).equals(_after(base).select(CONTENT))


def test_new_topic_surge_adds_a_topic_after_the_start(base: pl.DataFrame) -> None:
    shifted = _scenario("new_topic_surge")
    assert "mfa_rollout" not in _before(shifted)["topic"].to_list()
    assert _shares(_after(shifted), "topic")["mfa_rollout"] > 0.15
    assert _total_variation(_shares(_before(shifted), "topic"), _shares(_after(shifted), "topic")) > 0.15
    # Without a scenario the two halves look alike.
    assert _total_variation(_shares(_before(base), "topic"), _shares(_after(base), "topic")) < 0.05


def test_urgency_mix_raises_high_and_critical(base: pl.DataFrame) -> None:
    def urgent_share(df: pl.DataFrame) -> float:
        return df["urgency"].is_in(["high", "critical"]).mean()

    shifted = _scenario("urgency_mix")
    assert urgent_share(_after(shifted)) - urgent_share(_before(shifted)) > 0.2
    assert abs(urgent_share(_after(base)) - urgent_share(_before(base))) < 0.05
    assert _total_variation(_shares(_before(shifted), "topic"), _shares(_after(shifted), "topic")) < 0.05


def test_vocabulary_shift_changes_products_not_topics(base: pl.DataFrame) -> None:
    shifted = _scenario("vocabulary_shift")
    new_names = r"Gmail|Google|Zscaler|Okta"
    old_names = r"Outlook|AnyConnect|OneDrive|SharePoint"
    assert _before(shifted)["body"].str.contains(new_names).sum() == 0
    assert _after(shifted)["body"].str.contains(new_names).mean() > 0.2
    assert _after(shifted)["body"].str.contains(old_names).mean() < 0.01
    assert _total_variation(_shares(_before(shifted), "topic"), _shares(_after(shifted), "topic")) < 0.05


def test_edge_arguments() -> None:
    assert generate_tickets(0, seed=1).is_empty()
    with pytest.raises(ValueError, match="unknown scenario"):
        generate_tickets(10, seed=1, scenario="no_such_scenario")
    one_day = generate_tickets(50, seed=1, start=date(2025, 6, 2), days=1)
    assert one_day["created_at"].dt.date().min() == date(2025, 6, 2)
