"""Answer abstention: the relevance floor under which /v1/answer says no article covers a ticket.

Embeds the labelled questions of ``tests/data/kb_questions.yaml`` (covered by a KB article / not
covered, English and French) with the serving embedder, searches the real KB index exactly as the
API does (top 4, language preference, no topic), and takes the best passage's cosine score. The
threshold is the highest one at which at most 5 % of covered questions abstain; reported: answer
rate on covered, abstention on uncovered, and the same for the obvious alternative (always answer).

    .venv/bin/python benchmarks/bench_abstention.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ticket_assets.core.language import detect_language  # noqa: E402
from ticket_assets.ml.embed import get_embedder  # noqa: E402
from ticket_assets.rag.index import KnowledgeBase, build_snapshot, embed_chunks, publish  # noqa: E402
from ticket_assets.rag.kb import KB_DIR, chunk_article, load_articles  # noqa: E402
from ticket_assets.settings import Settings  # noqa: E402

QUESTIONS = ROOT / "tests" / "data" / "kb_questions.yaml"
MAX_COVERED_ABSTAIN = 0.05


def best_scores(kb: KnowledgeBase, embedder, questions: list[str]) -> tuple[np.ndarray, list[list[str]]]:
    vectors = embedder.encode(questions)
    scores, articles = [], []
    for question, vector in zip(questions, vectors, strict=True):
        found = kb.search(vector, 4, language=detect_language(question))
        scores.append(max(p.score for p in found))
        articles.append([p.article_id for p in found])
    return np.array(scores), articles


def calibrate(covered: np.ndarray, max_abstain: float = MAX_COVERED_ABSTAIN) -> float:
    """The highest threshold (a covered score, minus a hair) leaving at most ``max_abstain`` of the
    covered questions below it."""
    ordered = np.sort(covered)
    allowed = int(np.floor(max_abstain * len(ordered)))  # questions that may abstain
    return float(ordered[allowed]) - 1e-6


def open_kb(settings: Settings, embedder) -> KnowledgeBase:
    chunks = [chunk for article in load_articles(KB_DIR) for chunk in chunk_article(article)]
    publish(build_snapshot(chunks, embed_chunks(chunks, embedder), embedder.model_id, settings), settings)
    return KnowledgeBase.open(settings)


def main() -> None:
    data = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp(prefix="abstain-")), qdrant_url=None)
    embedder = get_embedder(settings)
    kb = open_kb(settings, embedder)
    covered, found = best_scores(kb, embedder, [item["q"] for item in data["covered"]])
    uncovered, _ = best_scores(kb, embedder, [item["q"] for item in data["uncovered"]])
    threshold = calibrate(covered)
    hit = np.mean(
        [bool(set(item["articles"]) & set(f[:3])) for item, f in zip(data["covered"], found, strict=True)]
    )
    langs = {"en": [], "fr": []}
    for item, score in zip(data["uncovered"], uncovered, strict=True):
        langs[item["lang"]].append(score < threshold)
    print(f"embedder {embedder.model_id}; {len(covered)} covered, {len(uncovered)} uncovered questions")
    print(
        f"covered best score: min {covered.min():.3f} p5 {np.quantile(covered, 0.05):.3f} median {np.median(covered):.3f}"
    )
    print(
        f"uncovered best score: median {np.median(uncovered):.3f} p90 {np.quantile(uncovered, 0.9):.3f} max {uncovered.max():.3f}"
    )
    print(f"threshold {threshold:.3f}")
    print(f"covered: answered {np.mean(covered >= threshold):.1%} (hit@3 of the right article {hit:.1%})")
    print(
        f"uncovered: abstained {np.mean(uncovered < threshold):.1%} (en {np.mean(langs['en']):.1%}, fr {np.mean(langs['fr']):.1%})"
    )
    print("always answer (no floor): covered answered 100.0%, uncovered abstained 0.0%")
    for item, score in sorted(zip(data["uncovered"], uncovered, strict=True), key=lambda x: -x[1])[:6]:
        print(f"  highest uncovered {score:.3f}  {item['q']}")
    for item, score in sorted(zip(data["covered"], covered, strict=True), key=lambda x: x[1])[:4]:
        print(f"  lowest covered {score:.3f}  {item['q']}")


if __name__ == "__main__":
    main()
