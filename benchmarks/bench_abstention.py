"""Answer abstention: the relevance floor under which /v1/answer says no article covers a ticket.

Embeds the labelled questions of ``tests/data/kb_questions.yaml`` (covered by a KB article / not
covered, English and French) with the serving embedder, searches the real KB index exactly as the
API does (top 4, language preference, no topic) and scores each question two ways:

- dense (the method before): the best passage's cosine;
- hybrid (the method before): ``(1 - w) * cosine + w * lexical coverage``;
- article (shipped): the best over articles of ``(1 - w) * cosine + w * coverage of the ticket's k
  rarest words`` (``ticket_assets/rag/relevance.py``).

A floor is the highest value at which at most 5 % of the covered questions it is set on abstain
(or, "unseen" rule, the k-th lowest covered score with k = floor(5 % x (n + 1)): a new covered
question falls below it with probability k / (n + 1) <= 5 %). Reported on questions NOT used to
set it: stratified k-fold cross-validation (by covered/uncovered x language), repeated over seeds;
within each fold every parameter (weight, k, floor) is chosen on the training folds only. The
shipped parameters are then set on all questions.

    .venv/bin/python benchmarks/bench_abstention.py [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from ticket_assets.core.language import detect_language  # noqa: E402
from ticket_assets.ml.embed import get_embedder  # noqa: E402
from ticket_assets.rag.index import KnowledgeBase, build_snapshot, embed_chunks, publish  # noqa: E402
from ticket_assets.rag.kb import KB_DIR, chunk_article, load_articles  # noqa: E402
from ticket_assets.rag.relevance import article_relevance, hybrid_relevance  # noqa: E402
from ticket_assets.settings import Settings  # noqa: E402

QUESTIONS = ROOT / "tests" / "data" / "kb_questions.yaml"
MAX_COVERED_ABSTAIN = 0.05
STRICT_COVERED_ABSTAIN = 0.03  # a stricter floor, so that held-out covered questions stay under 5 %
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
TOP_TERMS = (2, 3, 4, 5, 0)  # the article score's k rarest words; 0: all of them
FOLDS, SEEDS = 10, 5


def calibrate(covered: np.ndarray, max_abstain: float = MAX_COVERED_ABSTAIN) -> float:
    """The highest floor (a covered score, minus a hair) leaving at most ``max_abstain`` of the
    covered questions below it."""
    ordered = np.sort(covered)
    allowed = int(np.floor(max_abstain * len(ordered)))  # questions that may abstain
    return float(ordered[allowed]) - 1e-6


def calibrate_unseen(covered: np.ndarray, max_abstain: float = MAX_COVERED_ABSTAIN) -> float:
    """The k-th lowest covered score, k = floor(max_abstain * (n + 1)): an unseen covered question
    scores below it with probability k / (n + 1) <= ``max_abstain`` (exchangeable scores)."""
    ordered = np.sort(covered)
    k = max(int(np.floor(max_abstain * (len(ordered) + 1))), 1)
    return float(ordered[k - 1]) - 1e-6


def fit(grid, y: np.ndarray, rows, max_abstain: float = MAX_COVERED_ABSTAIN, rule=calibrate):
    """(parameter, floor) abstaining on the most uncovered ``rows`` at <= ``max_abstain`` covered;
    ``grid`` is [(parameter, score per question)]; ties: the first."""
    best = None
    for param, score in grid:
        floor = rule(score[rows & (y == 1)], max_abstain)
        abstained = float(np.mean(score[rows & (y == 0)] < floor))
        if best is None or abstained > best[0] + 1e-12:
            best = (abstained, param, floor, score)
    assert best is not None
    return best[1], best[2], best[3]


def cross_validated(grid, y, fr, max_abstain: float = MAX_COVERED_ABSTAIN, rule=calibrate):
    """Per question, the share of seeds in which it abstained while held out; chosen parameters."""
    abstained = np.zeros(len(y))
    chosen = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        fold = np.empty(len(y), dtype=int)
        for group in {(a, b) for a, b in zip(y, fr, strict=True)}:
            members = np.flatnonzero((y == group[0]) & (fr == group[1]))
            rng.shuffle(members)
            fold[members] = np.arange(len(members)) % FOLDS
        for k in range(FOLDS):
            train, test = fold != k, fold == k
            param, floor, score = fit(grid, y, train, max_abstain, rule)
            chosen.append(param)
            abstained[test] += score[test] < floor
    return abstained / SEEDS, chosen


def open_kb(settings: Settings, embedder) -> KnowledgeBase:
    chunks = [chunk for article in load_articles(KB_DIR) for chunk in chunk_article(article)]
    publish(build_snapshot(chunks, embed_chunks(chunks, embedder), embedder.model_id, settings), settings)
    return KnowledgeBase.open(settings)


def rates(abstained: np.ndarray, y: np.ndarray, fr: np.ndarray) -> dict[str, float]:
    return {
        "covered": float(np.mean(abstained[y == 1])),
        "uncovered": float(np.mean(abstained[y == 0])),
        "uncovered_en": float(np.mean(abstained[(y == 0) & ~fr])),
        "uncovered_fr": float(np.mean(abstained[(y == 0) & fr])),
        "covered_en": float(np.mean(abstained[(y == 1) & ~fr])),
        "covered_fr": float(np.mean(abstained[(y == 1) & fr])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the BENCHMARKS.md section")
    args = parser.parse_args()

    data = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    items = [(item, 1) for item in data["covered"]] + [(item, 0) for item in data["uncovered"]]
    questions = [item["q"] for item, _ in items]
    y = np.array([label for _, label in items])
    fr = np.array([item["lang"] == "fr" for item, _ in items])
    cache = os.environ.get("TICKETOPS_MODEL_CACHE_DIR") or str(
        Path(tempfile.gettempdir()) / "ticketops-model-cache"
    )
    settings = Settings(
        _env_file=None,
        data_dir=Path(tempfile.mkdtemp(prefix="abstain-")),
        qdrant_url=None,
        model_cache_dir=cache,
    )
    print(f"{len(y)} questions ({int(y.sum())} covered, {int((1 - y).sum())} uncovered; {int(fr.sum())} FR)")
    embedder = get_embedder(settings)
    kb = open_kb(settings, embedder)
    vectors = embedder.encode(questions)
    dense, coverage, hit, article = [], [], [], []
    search_s = coverage_s = article_s = 0.0
    for (item, label), question, vector in zip(items, questions, vectors, strict=True):
        t0 = time.perf_counter()
        found = kb.search(vector, 4, language=detect_language(question))
        t1 = time.perf_counter()
        coverage.append(kb.coverage(question))
        t2 = time.perf_counter()
        kb.relevance(vector, question, 0.3, 3)  # the served call, timed
        t3 = time.perf_counter()
        search_s, coverage_s, article_s = search_s + t1 - t0, coverage_s + t2 - t1, article_s + t3 - t2
        cosines = kb.article_cosines(vector)
        lexical = {k: kb._loaded.lexical.article_coverage(question, k) for k in TOP_TERMS}
        article.append(
            {(w, k): article_relevance(cosines, lexical[k], w) for w in WEIGHTS for k in TOP_TERMS}
        )
        dense.append(max(p.score for p in found))
        if label:
            hit.append(bool(set(item["articles"]) & {p.article_id for p in found[:3]}))
    dense_a, coverage_a = np.array(dense), np.array(coverage)
    n = len(y)
    print(f"right article in top 3 (covered): {np.mean(hit):.1%}")
    print(
        f"per question: search {search_s / n * 1000:.2f} ms, coverage {coverage_s / n * 1000:.3f} ms, "
        f"article relevance {article_s / n * 1000:.3f} ms"
    )
    grids = {
        "dense": [(0.0, dense_a)],
        "hybrid": [(w, hybrid_relevance(dense_a, coverage_a, w)) for w in WEIGHTS],
        "article": [(p, np.array([a[p] for a in article])) for p in article[0]],
    }
    runs = {
        (name, rule): cross_validated(grid, y, fr, limit, fn)
        for name, grid in grids.items()
        for rule, limit, fn in [
            ("5", MAX_COVERED_ABSTAIN, calibrate),
            ("3", STRICT_COVERED_ABSTAIN, calibrate),
            ("unseen", MAX_COVERED_ABSTAIN, calibrate_unseen),
        ]
    }
    r = {key: rates(abstained, y, fr) for key, (abstained, _) in runs.items()}
    everyone = np.ones(n, dtype=bool)
    (w, k), floor, score = fit(grids["article"], y, everyone, rule=calibrate_unseen)
    shipped = rates(score < floor, y, fr)
    before = rates(hybrid_relevance(dense_a, coverage_a, 0.3) < 0.475, y, fr)  # as served before
    for (name, rule), v in r.items():
        print(
            f"{name:8s} floor rule {rule:6s} covered abstain {v['covered']:.1%} (en {v['covered_en']:.1%} fr "
            f"{v['covered_fr']:.1%}); uncovered abstain {v['uncovered']:.1%} (en {v['uncovered_en']:.1%} fr {v['uncovered_fr']:.1%})"
        )
    print(f"shipped article w={w} k={k} floor={floor:.3f}: {shipped}")
    chosen = runs[("article", "unseen")][1]
    params_seen = {c: chosen.count(c) for c in sorted(set(chosen))}
    print(f"article parameters chosen in the folds (unseen rule): {params_seen}")
    misses = [(v, q) for v, q, label in zip(score, questions, y, strict=True) if label == 0 and v >= floor]
    lost = [(v, q) for v, q, label in zip(score, questions, y, strict=True) if label == 1 and v < floor]
    for v, q in sorted(misses, reverse=True):
        print(f"  uncovered, answered  {v:.3f}  {q}")
    for v, q in sorted(lost):
        print(f"  covered, abstained   {v:.3f}  {q}")
    if args.write:
        load = os.getloadavg()
        pct = lambda v: f"{v * 100:.1f} %"  # noqa: E731
        row = lambda name, v, bold=False: (  # noqa: E731
            f"| {name} | {pct(v['covered'])} ({pct(v['covered_en'])} / {pct(v['covered_fr'])}) | "
            + (f"**{pct(v['uncovered'])}**" if bold else pct(v["uncovered"]))
            + f" | {pct(v['uncovered_en'])} / {pct(v['uncovered_fr'])} |"
        )
        gap = r[("article", "unseen")]
        met = gap["uncovered"] >= 0.9 and gap["covered"] <= 0.05
        section = f"""## Answer abstention (`benchmarks/bench_abstention.py`)

```bash
.venv/bin/python benchmarks/bench_abstention.py --write BENCHMARKS.md
```

`tests/data/kb_questions.yaml`: {int(y.sum())} paraphrased questions a KB article answers ({int((y & ~fr).sum())} EN,
{int((y & fr).sum())} FR, each naming its articles) and {int((1 - y).sum())} that no article answers
({int(((1 - y) & ~fr).sum())} EN, {int(((1 - y) & fr).sum())} FR: badge readers, payroll, Concur, the
projector, attachments over 10 MB, Outlook stuck updating ...). Each is embedded with the serving embedder and
searched as `/v1/answer` does (top 4, language preference). Three relevance scores
(`ticket_assets/rag/relevance.py`): **dense**, the best passage's cosine; **hybrid** (served before),
`(1 − w) × cosine + w × coverage`, coverage being the largest IDF-weighted share of the ticket's words
(accents folded, EN/FR stop words and suffixes stripped) that one article holds; **article** (shipped),
the best over articles of `(1 − w) × the article's best cosine + w × the share of the ticket's k rarest
words it holds`: one article must both read like the ticket and name what it is about. Floors: "5 %",
the highest value at which ≤ 5 % of the covered questions it is set on abstain; "3 %", the same at 3 %;
"unseen", the j-th lowest covered score with j = ⌊5 % × (n + 1)⌋, below which an unseen covered
question falls with probability j / (n + 1) ≤ 5 % (the "5 %" floor lands above 5 % on unseen
questions). Machine: 2 cores shared with other jobs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} during the run.

Held-out figures: {FOLDS}-fold cross-validation stratified by covered × language, {SEEDS} seeds, same folds
for every method; each question scored only by parameters set on the other folds (floor; hybrid: w from
{list(WEIGHTS)}; article: w and k from {list(TOP_TERMS)}, 0 = all words).

| method, floor rule (cross-validated) | covered abstained (EN / FR) | uncovered abstained | EN / FR |
|---|---:|---:|---|
{row("dense, 5 %", r[("dense", "5")])}
{row("hybrid, 5 %", r[("hybrid", "5")])}
{row("article, 5 %", r[("article", "5")])}
{row("dense, unseen", r[("dense", "unseen")])}
{row("hybrid, unseen", r[("hybrid", "unseen")])}
{row("**article, unseen** (shipped rule)", r[("article", "unseen")], True)}
{row("hybrid, 3 %", r[("hybrid", "3")])}
{row("article, 3 %", r[("article", "3")])}
{row("hybrid as served before (w = 0.3, floor 0.475), on all questions", before)}
{row(f"article as shipped (w = {w}, k = {k}, floor {floor:.3f}), on all questions (in-sample)", shipped)}

Parameters chosen in the {FOLDS * SEEDS} training splits (article, unseen floors): {", ".join(f"w = {a}, k = {b}: {c}" for (a, b), c in params_seen.items())}.
Shipped: `TICKETOPS_ANSWER_LEXICAL_WEIGHT={w}`, `TICKETOPS_ANSWER_COVERAGE_TERMS={k}`,
`TICKETOPS_ANSWER_MIN_RELEVANCE={floor:.3f}` (set on all questions, unseen rule; `w = 0` restores the
dense score). Right article in the top 3 for covered questions: {pct(float(np.mean(hit)))}. Cost on the
hot path: the article relevance (one unfiltered query returning every chunk's article id, then the word
shares) {article_s / n * 1000:.3f} ms per ticket against {search_s / n * 1000:.2f} ms for the KB search itself
(ratio {article_s / max(search_s, 1e-9):.2f}); the hybrid's coverage alone was {coverage_s / n * 1000:.3f} ms.

Uncovered questions the shipped floor still answers (highest first): {"; ".join(f'"{q}" ({v:.2f})' for v, q in sorted(misses, reverse=True)[:6])}.

**Target (≥ 90 % of uncovered abstain with ≤ 5 % of covered) {"met" if met else "not met"}**: held out, with
floors that keep unseen covered questions under 5 %, the article score abstains on {pct(gap["uncovered"])} of
uncovered questions at {pct(gap["covered"])} of covered ones, against {pct(r[("hybrid", "unseen")]["uncovered"])} at
{pct(r[("hybrid", "unseen")]["covered"])} for the hybrid (at the "5 %" floors, which overshoot 5 % on unseen
questions: {pct(r[("article", "5")]["uncovered"])} vs {pct(r[("hybrid", "5")]["uncovered"])}). The gain is a few
questions (same folds), most of it French. The remaining misses are near misses in wording (an attachment
limit, a desk phone, an expense claim in approval share their rare words with real articles). Also tried
in exploratory runs on the same questions (10-fold cross-validation, not kept in the script) and not
better held out: per-language floors, the share of words unknown to the KB, the top-1 vs top-20 gap,
z-scores and logistic regressions (≤ 88 % at 7–8 % covered); the best cosine against each KB sentence,
heading or title instead of the chunk (sentences: 38 %, titles 45 %, alone; ≤ 85 % blended with
coverage), IDF² weights, stem-prefix matches, word-embedding soft matches of the ticket's words and
longer EN/FR stop lists (all within a point or two of the article score, or below). Closing the gap needs
a multilingual embedder or a cross-encoder re-ranker, neither of which is available offline here.
"""
        write_section(args.write, "abstention", section)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
