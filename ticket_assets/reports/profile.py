"""Profile of the training set: class balance, text length, gaps, duplicates, language, volume.

Works on any frame shaped like ``marts.training_set`` (missing optional columns are tolerated,
e.g. an imported dataset without urgency or dates). Everything is computed with polars in a few
passes, so 100k rows take well under a second; the figure is drawn without pyplot's global state
so it is safe inside a Dagster run or a web worker.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MISSING_LABEL = "(missing)"
HISTOGRAM_BINS = 30
MARKDOWN_WEEKS = 12
MAX_BARS = 20  # topic bars drawn; the tail beyond is one "N other labels" bar
LABEL_CHARS = 32  # longer labels are shortened on the axes (the markdown tables keep them whole)


@dataclass(frozen=True)
class CategoryShare:
    value: str | None
    count: int
    share: float


@dataclass(frozen=True)
class LengthStats:
    """Text length in words (whitespace-separated tokens)."""

    p50_words: float
    p90_words: float
    max_words: int
    mean_words: float
    # Histogram up to the 99th percentile (longer texts fall in the last bin) so a few very long
    # tickets do not squash the bulk of the distribution into one bar.
    histogram_edges: list[float] = field(default_factory=list)
    histogram_counts: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TrainingSetProfile:
    n_rows: int
    topic_balance: list[CategoryShare]
    urgency_balance: list[CategoryShare]
    language_mix: list[CategoryShare]
    split_counts: dict[str, int]
    text_length: LengthStats
    missing_values: dict[str, int]
    exact_duplicates: int  # rows beyond the first per text_hash
    near_duplicates: int  # rows beyond the first per normalised text (includes exact ones)
    weekly_volume: list[tuple[date, int]]  # (Monday of the week, tickets)

    def summary(self) -> dict[str, int | float]:
        """Flat numbers for run metadata and alerting thresholds."""
        n_test = self.split_counts.get("test", 0)
        return {
            "n_rows": self.n_rows,
            "n_topics": sum(1 for item in self.topic_balance if item.value is not None),
            "labelled_urgency_share": _share(
                sum(item.count for item in self.urgency_balance if item.value is not None), self.n_rows
            ),
            "test_share": _share(n_test, self.n_rows),
            "exact_duplicates": self.exact_duplicates,
            "near_duplicates": self.near_duplicates,
            "p50_words": self.text_length.p50_words,
            "p90_words": self.text_length.p90_words,
            "max_words": self.text_length.max_words,
        }


def profile_training_set(df: pl.DataFrame) -> TrainingSetProfile:
    """Profile a frame with at least a ``text`` column (the columns of ``marts.training_set``)."""
    if "text" not in df.columns:
        raise ValueError("the frame needs a 'text' column")
    # The string scans dominate; one lazy select lets polars run them on all cores at once.
    text = pl.col("text").fill_null("")
    scans = (
        df.lazy()
        .select(
            text.str.count_matches(r"\S+").cast(pl.Int64).implode().alias("words"),
            _near_duplicate_key(text).n_unique().alias("near_unique"),
            pl.struct(_missing_exprs(df.schema)).alias("missing"),
        )
        .collect()
    )
    return TrainingSetProfile(
        n_rows=df.height,
        topic_balance=_category_shares(df, "topic"),
        urgency_balance=_category_shares(df, "urgency"),
        language_mix=_category_shares(df, "language"),
        split_counts=_split_counts(df),
        text_length=_length_stats(scans.item(0, "words").to_numpy()),
        missing_values={name: int(count) for name, count in scans.item(0, "missing").items()},
        exact_duplicates=_exact_duplicates(df),
        near_duplicates=df.height - scans.item(0, "near_unique"),
        weekly_volume=_weekly_volume(df),
    )


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def _category_shares(df: pl.DataFrame, column: str) -> list[CategoryShare]:
    """Counts per value, most frequent first; an absent column counts as all missing."""
    if df.height == 0:
        return []
    if column not in df.columns:
        return [CategoryShare(None, df.height, 1.0)]
    counts = (
        df.get_column(column)
        .cast(pl.String)
        .value_counts(name="count")
        .sort(["count", column], descending=[True, False], nulls_last=True)
    )
    return [CategoryShare(value, count, _share(count, df.height)) for value, count in counts.iter_rows()]


def _split_counts(df: pl.DataFrame) -> dict[str, int]:
    if "split" not in df.columns:
        return {}
    counts = df.get_column("split").fill_null(MISSING_LABEL).value_counts(name="count").sort("split")
    return dict(counts.iter_rows())


def _length_stats(words: np.ndarray) -> LengthStats:
    if words.size == 0:
        return LengthStats(0.0, 0.0, 0, 0.0)
    upper = max(float(np.quantile(words, 0.99)), 1.0)
    counts, edges = np.histogram(np.clip(words, 0, upper), bins=HISTOGRAM_BINS, range=(0.0, upper))
    return LengthStats(
        p50_words=float(np.quantile(words, 0.5)),
        p90_words=float(np.quantile(words, 0.9)),
        max_words=int(words.max()),
        mean_words=round(float(words.mean()), 2),
        histogram_edges=[float(edge) for edge in edges],
        histogram_counts=[int(count) for count in counts],
    )


def _missing_exprs(schema: pl.Schema) -> list[pl.Expr]:
    """Nulls per column; for text columns a blank string is missing too."""
    exprs = []
    for name, dtype in schema.items():
        missing = pl.col(name).is_null()
        if dtype == pl.String:
            missing = missing | pl.col(name).str.contains(r"^\s*$")
        exprs.append(missing.sum().alias(name))
    return exprs


def _exact_duplicates(df: pl.DataFrame) -> int:
    """Rows beyond the first per text_hash (per text when the frame carries no hash)."""
    key = "text_hash" if "text_hash" in df.columns else "text"
    return df.height - df.get_column(key).n_unique()


def _near_duplicate_key(text: pl.Expr) -> pl.Expr:
    """Case, punctuation, digits and spacing removed: 'Ticket #123: VPN down!' ~ 'ticket 456 vpn down'."""
    return text.str.to_lowercase().str.replace_all(r"[^\p{L}]+", " ").str.strip_chars()


def _weekly_volume(df: pl.DataFrame) -> list[tuple[date, int]]:
    time_column = next((name for name in ("event_at", "created_at") if name in df.columns), None)
    if time_column is None or df.height == 0:
        return []
    weeks = (
        df.select(pl.col(time_column).dt.truncate("1w").dt.date().alias("week"))
        .drop_nulls()
        .group_by("week")
        .len()
        .sort("week")
    )
    return [(week, int(count)) for week, count in weeks.iter_rows()]


# Rendering ---------------------------------------------------------------------------------


def _label(value: str | None) -> str:
    return MISSING_LABEL if value is None else value


def _short(label: str) -> str:
    # Cut in the middle: labels of one export often share a long prefix, and equal shortened
    # labels would merge into one bar on a categorical axis.
    if len(label) <= LABEL_CHARS:
        return label
    head = (LABEL_CHARS - 1) // 2
    return label[:head] + "…" + label[-(LABEL_CHARS - 1 - head) :]


def render_png(profile: TrainingSetProfile, *, dpi: int = 100) -> bytes:
    """One 2x2 figure: topic balance, urgency balance, text-length histogram, weekly volume."""
    buffer = io.BytesIO()
    render_figure(profile, dpi=dpi).savefig(buffer, format="png")
    return buffer.getvalue()


def render_figure(profile: TrainingSetProfile, *, dpi: int = 100) -> Figure:
    """The profile figure, sized so every label fits: at most ``MAX_BARS`` topic bars (the rest
    summed into one), long labels shortened, taller when there are many topics. Constrained layout
    keeps tick labels and titles inside the canvas."""
    n_bars = min(len(profile.topic_balance), MAX_BARS)
    height = max(8.0, 4.5 + 0.28 * n_bars)
    figure = Figure(figsize=(12, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    (topics_ax, urgency_ax), (length_ax, volume_ax) = figure.subplots(2, 2)
    figure.suptitle(f"Training set profile: {profile.n_rows:,} tickets")

    _bar_panel(topics_ax, profile.topic_balance, "Topics", horizontal=True)
    _bar_panel(urgency_ax, profile.urgency_balance, "Urgency", horizontal=False)

    length = profile.text_length
    length_ax.set_title(f"Text length (words): p50 {length.p50_words:g}, p90 {length.p90_words:g}")
    if length.histogram_counts:
        length_ax.stairs(length.histogram_counts, length.histogram_edges, fill=True, color="tab:blue")
        length_ax.set_xlabel("words (last bin includes longer texts)")
        length_ax.set_ylabel("tickets")
    else:
        _empty(length_ax)

    volume_ax.set_title("Tickets per week")
    if profile.weekly_volume:
        weeks, counts = zip(*profile.weekly_volume, strict=True)
        volume_ax.plot(weeks, counts, marker="o", markersize=3)
        volume_ax.set_ylabel("tickets")
        volume_ax.tick_params(axis="x", labelrotation=30)
    else:
        _empty(volume_ax, "no timestamps")
    return figure


def _bar_panel(ax, balance: list[CategoryShare], title: str, *, horizontal: bool) -> None:
    ax.set_title(title)
    if not balance or all(item.value is None for item in balance):
        _empty(ax, "no labels")
        return
    if len(balance) > MAX_BARS:  # a long tail as one bar: dozens of labels would overlap
        rest = balance[MAX_BARS - 1 :]
        balance = [
            *balance[: MAX_BARS - 1],
            CategoryShare(
                f"{len(rest)} other labels", sum(i.count for i in rest), sum(i.share for i in rest)
            ),
        ]
    labels = [_short(_label(item.value)) for item in balance]
    counts = [item.count for item in balance]
    if horizontal:
        ax.barh(labels[::-1], counts[::-1], color="tab:blue")
        ax.set_xlabel("tickets")
    else:
        ax.bar(labels, counts, color="tab:orange")
        ax.set_ylabel("tickets")


def _empty(ax, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def to_markdown(profile: TrainingSetProfile) -> str:
    """Markdown tables for run metadata (Dagster renders them in the asset's materialisation)."""
    length = profile.text_length
    sections = [
        f"**{profile.n_rows:,} tickets** · exact duplicates {profile.exact_duplicates:,}"
        f" · near duplicates {profile.near_duplicates:,}",
        _table(
            ["split", "tickets", "share"],
            [
                [name, f"{count:,}", f"{_share(count, profile.n_rows):.1%}"]
                for name, count in profile.split_counts.items()
            ],
        ),
        _shares_table("topic", profile.topic_balance),
        _shares_table("urgency", profile.urgency_balance),
        _shares_table("language", profile.language_mix),
        _table(
            ["words p50", "words p90", "words max", "words mean"],
            [
                [
                    f"{length.p50_words:g}",
                    f"{length.p90_words:g}",
                    f"{length.max_words:,}",
                    f"{length.mean_words:g}",
                ]
            ],
        ),
        _table(
            ["column", "missing", "share"],
            [
                [name, f"{count:,}", f"{_share(count, profile.n_rows):.1%}"]
                for name, count in profile.missing_values.items()
            ],
        ),
        _table(
            ["week", "tickets"],
            [[week.isoformat(), f"{count:,}"] for week, count in profile.weekly_volume[-MARKDOWN_WEEKS:]],
        ),
    ]
    return "\n\n".join(section for section in sections if section)


def _shares_table(name: str, balance: list[CategoryShare]) -> str:
    return _table(
        [name, "tickets", "share"],
        [[_label(item.value), f"{item.count:,}", f"{item.share:.1%}"] for item in balance],
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return ""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)
