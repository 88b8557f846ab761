"""The training-set profile: counts checked against hand-built frames, the PNG decoded for real."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from matplotlib.image import imread

from ticket_assets.reports import profile_training_set, render_png, to_markdown

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def frame() -> pl.DataFrame:
    monday = datetime(2025, 3, 3, 9, tzinfo=UTC)  # a Monday
    texts = [
        "VPN drops every hour #12!",
        "vpn drops every hour 45",  # near duplicate of the first (case, digits, punctuation)
        "Printer jam on floor three",
        "Printer jam on floor three",  # exact duplicate (same text_hash)
        "Laptop will not boot after the update this morning",
        "Mailbox full",
        "Need access to the finance share",
        "Screen flickers",
        "Password expired while travelling abroad last week",
        "New keyboard please",
    ]
    return pl.DataFrame(
        {
            "ticket_id": [f"T{i}" for i in range(10)],
            "text": texts,
            "title": ["VPN", None, "Printer", "Printer", "", "Mail", None, "Screen", "Password", "   "],
            "topic": [
                "network",
                "network",
                "hardware",
                "hardware",
                "hardware",
                "email",
                "access",
                "hardware",
                "access",
                "hardware",
            ],  # fmt: skip
            "urgency": ["high", "high", "low", "low", None, "medium", None, "low", "critical", None],
            "language": ["en"] * 8 + ["fr", None],
            "text_hash": ["h0", "h1", "h2", "h2", "h4", "h5", "h6", "h7", "h8", "h9"],
            "event_at": [monday + timedelta(days=day) for day in (0, 1, 2, 7, 8, 9, 10, 16, 17, 20)],
            "split": ["train"] * 8 + ["test"] * 2,
        }
    )


def test_profile_counts(frame: pl.DataFrame) -> None:
    profile = profile_training_set(frame)

    assert profile.n_rows == 10
    assert [(item.value, item.count) for item in profile.topic_balance] == [
        ("hardware", 5), ("access", 2), ("network", 2), ("email", 1),
    ]  # fmt: skip
    assert profile.topic_balance[0].share == pytest.approx(0.5)
    assert dict((item.value, item.count) for item in profile.urgency_balance) == {
        "low": 3, "high": 2, None: 3, "medium": 1, "critical": 1,
    }  # fmt: skip
    assert [item.value for item in profile.urgency_balance[:2]] == ["low", None]  # missing last among ties
    assert {item.value: item.count for item in profile.language_mix} == {"en": 8, "fr": 1, None: 1}
    assert profile.split_counts == {"test": 2, "train": 8}

    words = np.array([len(text.split()) for text in frame.get_column("text")])
    assert profile.text_length.p50_words == pytest.approx(np.quantile(words, 0.5))
    assert profile.text_length.p90_words == pytest.approx(np.quantile(words, 0.9))
    assert profile.text_length.max_words == words.max()
    assert sum(profile.text_length.histogram_counts) == 10

    # title: 2 nulls + 1 empty + 1 blank; urgency: 3 nulls
    assert profile.missing_values["title"] == 4
    assert profile.missing_values["urgency"] == 3
    assert profile.missing_values["text"] == 0
    assert profile.exact_duplicates == 1
    assert profile.near_duplicates == 2  # the exact pair plus the VPN pair

    assert profile.weekly_volume == [(date(2025, 3, 3), 3), (date(2025, 3, 10), 4), (date(2025, 3, 17), 3)]
    summary = profile.summary()
    assert summary["n_topics"] == 4 and summary["test_share"] == pytest.approx(0.2)
    assert summary["labelled_urgency_share"] == pytest.approx(0.7)


def test_render_png_is_a_decodable_2x2_figure(frame: pl.DataFrame) -> None:
    png = render_png(profile_training_set(frame), dpi=50)
    assert png.startswith(PNG_SIGNATURE)
    image = imread(io.BytesIO(png), format="png")
    assert image.shape[:2] == (400, 600)  # 12 x 8 inches at 50 dpi
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas


def test_figure_keeps_every_label_inside_with_many_long_topics() -> None:
    """Forty topics with long names: the tail is one bar, labels are shortened, nothing is clipped."""
    from matplotlib.text import Text

    from ticket_assets.reports.profile import MAX_BARS, render_figure

    topics = [f"Department of very long label names number {i:02d}" for i in range(40)]
    frame = pl.DataFrame(
        {"text": [f"ticket {i}" for i in range(400)], "topic": [topics[i % 40] for i in range(400)]}
    )
    figure = render_figure(profile_training_set(frame))
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)  # lays the figure out as savefig does
    canvas = figure.bbox
    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text()]
    outside = [
        t.get_text()
        for t in texts
        if not (
            (box := t.get_window_extent(renderer)).x0 >= canvas.x0 - 1
            and box.x1 <= canvas.x1 + 1
            and box.y0 >= canvas.y0 - 1
            and box.y1 <= canvas.y1 + 1
        )
    ]
    assert not outside, outside
    topic_ax = figure.axes[0]
    labels = [tick.get_text() for tick in topic_ax.get_yticklabels()]
    assert len(labels) == MAX_BARS and "21 other labels" in labels
    assert all(len(label) <= 32 for label in labels)


def test_markdown_tables(frame: pl.DataFrame) -> None:
    markdown = to_markdown(profile_training_set(frame))
    assert "| hardware | 5 | 50.0% |" in markdown
    assert "| (missing) | 3 | 30.0% |" in markdown
    assert "| title | 4 | 40.0% |" in markdown
    assert "| 2025-03-10 | 4 |" in markdown
    assert "exact duplicates 1 · near duplicates 2" in markdown


def test_dataset_without_urgency_dates_or_hash() -> None:
    """An imported dataset (ticket_id, text, topic only) still profiles and renders."""
    frame = pl.DataFrame(
        {
            "ticket_id": ["a", "b", "c", "d"],
            "text": ["reset password", "reset password", "new laptop", None],
            "topic": ["Access", "Access", "Hardware", "Hardware"],
        }
    )
    profile = profile_training_set(frame)
    assert profile.urgency_balance == profile.language_mix
    assert [(item.value, item.count, item.share) for item in profile.urgency_balance] == [(None, 4, 1.0)]
    assert profile.weekly_volume == []
    assert profile.split_counts == {}
    assert profile.exact_duplicates == 1  # falls back to the text itself
    assert profile.missing_values == {"ticket_id": 0, "text": 1, "topic": 0}
    assert profile.summary()["labelled_urgency_share"] == 0.0
    assert render_png(profile, dpi=30).startswith(PNG_SIGNATURE)


def test_empty_frame() -> None:
    profile = profile_training_set(pl.DataFrame({"text": []}, schema={"text": pl.String}))
    assert profile.n_rows == 0 and profile.topic_balance == [] and profile.text_length.max_words == 0
    assert render_png(profile, dpi=30).startswith(PNG_SIGNATURE)


def test_requires_text_column() -> None:
    with pytest.raises(ValueError, match="text"):
        profile_training_set(pl.DataFrame({"topic": ["a"]}))
