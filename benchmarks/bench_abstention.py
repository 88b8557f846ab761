"""Answer abstention: the relevance floor under which /v1/answer says no article covers a ticket.

Embeds the labelled questions of ``tests/data/kb_questions.yaml`` (covered by a KB article / not
covered, English and French) with the serving embedder, searches the real KB index exactly as the
API does (top 4, language preference, no topic) and scores each question two ways:

- dense (the method before): the best passage's cosine;
- hybrid (shipped): ``(1 - w) * cosine + w * lexical coverage`` (``ticket_assets/rag/relevance.py``).

A floor is the highest value at which at most 5 % of the covered questions it is set on abstain.
Reported on questions NOT used to set it: stratified k-fold cross-validation (by covered/uncovered
x language), repeated over seeds; within each fold the hybrid's weight and floor are both chosen on
the training folds only. The shipped weight and floor are then set on all questions.

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
from ticket_assets.rag.relevance import hybrid_relevance  # noqa: E402
from ticket_assets.settings import Settings  # noqa: E402

QUESTIONS = ROOT / "tests" / "data" / "kb_questions.yaml"
MAX_COVERED_ABSTAIN = 0.05
STRICT_COVERED_ABSTAIN = 0.03  # a stricter floor, so that held-out covered questions stay under 5 %
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
FOLDS, SEEDS = 10, 5


def calibrate(covered: np.ndarray, max_abstain: float = MAX_COVERED_ABSTAIN) -> float:
    """The highest floor (a covered score, minus a hair) leaving at most ``max_abstain`` of the
    covered questions below it."""
    ordered = np.sort(covered)
    allowed = int(np.floor(max_abstain * len(ordered)))  # questions that may abstain
    return float(ordered[allowed]) - 1e-6


def fit(
    dense: np.ndarray, coverage: np.ndarray, y: np.ndarray, weights, max_abstain: float = MAX_COVERED_ABSTAIN
) -> tuple[float, float]:
    """(weight, floor) abstaining on the most uncovered questions at <= ``max_abstain`` covered;
    ties: the smaller weight."""
    best = None
    for w in weights:
        score = hybrid_relevance(dense, coverage, w)
        floor = calibrate(score[y == 1], max_abstain)
        abstained = float(np.mean(score[y == 0] < floor))
        if best is None or abstained > best[0] + 1e-12:
            best = (abstained, w, floor)
    assert best is not None
    return best[1], best[2]


def cross_validated(
    dense, coverage, y, fr, weights, max_abstain: float = MAX_COVERED_ABSTAIN
) -> tuple[np.ndarray, list[float]]:
    """Per question, the share of seeds in which it abstained while held out; chosen weights."""
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
            w, floor = fit(dense[train], coverage[train], y[train], weights, max_abstain)
            chosen.append(w)
            abstained[test] += hybrid_relevance(dense[test], coverage[test], w) < floor
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
    dense, coverage, hit = [], [], []
    search_s = coverage_s = 0.0
    for (item, label), question, vector in zip(items, questions, vectors, strict=True):
        t0 = time.perf_counter()
        found = kb.search(vector, 4, language=detect_language(question))
        t1 = time.perf_counter()
        coverage.append(kb.coverage(question))
        coverage_s += time.perf_counter() - t1
        search_s += t1 - t0
        dense.append(max(p.score for p in found))
        if label:
            hit.append(bool(set(item["articles"]) & {p.article_id for p in found[:3]}))
    dense_a, coverage_a = np.array(dense), np.array(coverage)
    print(f"right article in top 3 (covered): {np.mean(hit):.1%}")
    print(
        f"per question: search {search_s / len(y) * 1000:.2f} ms, coverage {coverage_s / len(y) * 1000:.3f} ms"
    )

    cv_dense, _ = cross_validated(dense_a, coverage_a, y, fr, (0.0,))
    cv_hybrid, chosen = cross_validated(dense_a, coverage_a, y, fr, WEIGHTS)
    strict_dense, _ = cross_validated(dense_a, coverage_a, y, fr, (0.0,), STRICT_COVERED_ABSTAIN)
    strict_hybrid, _ = cross_validated(dense_a, coverage_a, y, fr, WEIGHTS, STRICT_COVERED_ABSTAIN)
    sd, sh = rates(strict_dense, y, fr), rates(strict_hybrid, y, fr)
    w, floor = fit(dense_a, coverage_a, y, WEIGHTS)
    dense_floor = calibrate(dense_a[y == 1])
    shipped = rates(hybrid_relevance(dense_a, coverage_a, w) < floor, y, fr)
    old = rates(dense_a < 0.43, y, fr)
    cvd, cvh = rates(cv_dense, y, fr), rates(cv_hybrid, y, fr)
    weights_seen = {c: chosen.count(c) for c in sorted(set(chosen))}
    for name, r in [
        ("dense, CV", cvd),
        ("hybrid, CV", cvh),
        ("dense, CV, 3 %", sd),
        ("hybrid, CV, 3 %", sh),
        (f"hybrid w={w} floor={floor:.3f}, all", shipped),
        ("dense 0.43, all", old),
    ]:
        print(
            f"{name:32s} covered abstain {r['covered']:.1%} (en {r['covered_en']:.1%} fr {r['covered_fr']:.1%}); "
            f"uncovered abstain {r['uncovered']:.1%} (en {r['uncovered_en']:.1%} fr {r['uncovered_fr']:.1%})"
        )
    print(f"weights chosen in the folds: {weights_seen}; dense floor on all: {dense_floor:.3f}")
    ratio = cvh["uncovered"] / cvd["uncovered"]
    print(f"ratio hybrid / dense (uncovered abstained, CV): {ratio:.2f}x")
    score = hybrid_relevance(dense_a, coverage_a, w)
    misses = [(s, q) for s, q, label in zip(score, questions, y, strict=True) if label == 0 and s >= floor]
    lost = [(s, q) for s, q, label in zip(score, questions, y, strict=True) if label == 1 and s < floor]
    for s, q in sorted(misses, reverse=True):
        print(f"  uncovered, answered  {s:.3f}  {q}")
    for s, q in sorted(lost):
        print(f"  covered, abstained   {s:.3f}  {q}")
    if args.write:
        load = os.getloadavg()
        pct = lambda v: f"{v * 100:.1f} %"  # noqa: E731
        section = f"""## Answer abstention (`benchmarks/bench_abstention.py`)

```bash
.venv/bin/python benchmarks/bench_abstention.py --write BENCHMARKS.md
```

`tests/data/kb_questions.yaml`: {int(y.sum())} paraphrased questions a KB article answers ({int((y & ~fr).sum())} EN,
{int((y & fr).sum())} FR, each naming its articles) and {int((1 - y).sum())} that no article answers
({int(((1 - y) & ~fr).sum())} EN, {int(((1 - y) & fr).sum())} FR: badge readers, payroll, Concur, the
projector, attachments over 10 MB, Outlook stuck updating ...). Each is embedded with the serving embedder and
searched as `/v1/answer` does (top 4, language preference). Two relevance scores: **dense**, the best
passage's cosine (the method before), and **hybrid** (shipped, `ticket_assets/rag/relevance.py`):
`(1 − w) × cosine + w × coverage`, coverage being the IDF-weighted share of the ticket's words (accents
folded, EN/FR stop words and suffixes stripped) that the best-covering article holds. A floor is the highest
value at which ≤ 5 % of the covered questions it is set on abstain. Machine: 2 cores shared with other
jobs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} during the run.

Held-out figures: {FOLDS}-fold cross-validation stratified by covered × language, {SEEDS} seeds, each
question scored only by a floor (and, for hybrid, a weight from {list(WEIGHTS)}) set on the other folds.

| method | covered abstained (EN / FR) | uncovered abstained | EN / FR |
|---|---:|---:|---|
| dense floor, cross-validated | {pct(cvd["covered"])} ({pct(cvd["covered_en"])} / {pct(cvd["covered_fr"])}) | {pct(cvd["uncovered"])} | {pct(cvd["uncovered_en"])} / {pct(cvd["uncovered_fr"])} |
| **hybrid, cross-validated** | {pct(cvh["covered"])} ({pct(cvh["covered_en"])} / {pct(cvh["covered_fr"])}) | **{pct(cvh["uncovered"])}** | {pct(cvh["uncovered_en"])} / {pct(cvh["uncovered_fr"])} |
| dense floor at ≤ 3 % on the training folds, cross-validated | {pct(sd["covered"])} ({pct(sd["covered_en"])} / {pct(sd["covered_fr"])}) | {pct(sd["uncovered"])} | {pct(sd["uncovered_en"])} / {pct(sd["uncovered_fr"])} |
| hybrid at ≤ 3 % on the training folds, cross-validated | {pct(sh["covered"])} ({pct(sh["covered_en"])} / {pct(sh["covered_fr"])}) | {pct(sh["uncovered"])} | {pct(sh["uncovered_en"])} / {pct(sh["uncovered_fr"])} |
| dense 0.43 (before), on all questions | {pct(old["covered"])} | {pct(old["uncovered"])} | {pct(old["uncovered_en"])} / {pct(old["uncovered_fr"])} |
| hybrid as shipped (w = {w}, floor {floor:.3f}), on all questions (in-sample) | {pct(shipped["covered"])} | {pct(shipped["uncovered"])} | {pct(shipped["uncovered_en"])} / {pct(shipped["uncovered_fr"])} |

Ratio hybrid / dense, uncovered abstained on held-out questions: **{ratio:.2f}x** (same run, same folds;
{sh["uncovered"] / max(sd["uncovered"], 1e-9):.2f}x at the stricter floors).
Weights chosen in the {FOLDS * SEEDS} training splits: {", ".join(f"{k}: {v}" for k, v in weights_seen.items())}.
Shipped: `TICKETOPS_ANSWER_LEXICAL_WEIGHT={w}`, `TICKETOPS_ANSWER_MIN_RELEVANCE={floor:.3f}` (set on all
questions; `w = 0` restores the dense score). Right article in the top 3 for covered questions:
{pct(float(np.mean(hit)))}. Cost on the hot path: coverage {coverage_s / len(y) * 1000:.3f} ms per ticket
against {search_s / len(y) * 1000:.2f} ms for the KB search itself (ratio
{coverage_s / max(search_s, 1e-9):.3f}).

Uncovered questions the shipped floor still answers (highest first): {"; ".join(f'"{q}" ({s:.2f})' for s, q in sorted(misses, reverse=True)[:6])}.

**Target (≥ 90 % of uncovered abstain with ≤ 5 % of covered) not met**: held out, the hybrid abstains on
{pct(cvh["uncovered"])} of uncovered questions at {pct(cvh["covered"])} of covered ones (a floor set at 5 %
on the training folds lands a little higher on unseen covered questions); keeping held-out covered
questions under 5 % (floors set at 3 %) it abstains on {pct(sh["uncovered"])}. The remaining misses are near
misses in wording too (a desk phone, a certificate warning, an expense claim stuck in approval share most
of their words with real articles). Also tried in exploratory runs on the same questions (10-fold
cross-validation, not kept in the script) and not shipped: per-language
floors (dense: 72 % held out), the coverage of the dense-best article instead of the best-covering one,
the share of words unknown to the KB, the top-1 vs top-20 gap, z-scores and logistic regressions over
all of these (≤ 88 % held out, at 7–8 % of covered abstaining). Closing the gap needs a multilingual
embedder or a cross-encoder re-ranker, neither of which is available offline here.
"""
        write_section(args.write, "abstention", section)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
