"""Text features and label conventions shared by training, evaluation and prediction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

# Ordered from least to most urgent; label sets outside this order fall back (see most_urgent_label).
URGENCY_ORDER: tuple[str, ...] = ("low", "medium", "high", "critical")

# Upper bounds (characters) of the text-length slices used in evaluation and drift reports.
LENGTH_BUCKETS: tuple[tuple[str, int], ...] = (
    ("short", 100),
    ("medium", 300),
    ("long", 1000),
)


class TextFeatures:
    """Word 1-2-gram + char_wb 2-5-gram TF-IDF, one sparse matrix.

    Word n-grams carry topic vocabulary; char_wb n-grams make the features robust to typos and
    inflection. Fitting uses scikit-learn's ``TfidfVectorizer``; ``transform`` is a direct
    implementation of the same arithmetic (analyse -> count -> sublinear tf -> idf -> l2 norm):
    scikit-learn's per-call validation and FeatureUnion plumbing cost ~1.5 ms for one ticket,
    this costs ~0.2 ms, and a test keeps the two numerically identical. A training set is
    transformed the same way (``transform_many``, in processes) after ``fit`` on a sample.
    """

    def __init__(
        self,
        word_ngrams: tuple[int, int] = (1, 2),
        char_ngrams: tuple[int, int] = (2, 5),
        min_df: int = 2,
        max_features: int | None = 300_000,
    ) -> None:
        common = {"sublinear_tf": True, "min_df": min_df, "max_features": max_features, "dtype": np.float32}
        self.vectorizers: list[TfidfVectorizer] = [
            TfidfVectorizer(ngram_range=word_ngrams, **common),
            TfidfVectorizer(analyzer="char_wb", ngram_range=char_ngrams, **common),
        ]
        self._analyzers: list[Callable[[str], list[int]]] | None = None

    @property
    def n_features(self) -> int:
        return sum(len(v.vocabulary_) for v in self.vectorizers)

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        adjusted_min_df = [_feasible_min_df(v, len(texts)) for v in self.vectorizers]
        parts = []
        for vectorizer, min_df in zip(self.vectorizers, adjusted_min_df, strict=True):
            vectorizer.set_params(min_df=min_df)
            parts.append(vectorizer.fit_transform(texts))
            # Every pruned n-gram is kept in stop_words_ for introspection only; it would make the
            # pickled model many times larger.
            vectorizer.stop_words_ = None
        return sp.hstack(parts, format="csr", dtype=np.float32)

    def fit(self, texts: Sequence[str]) -> TextFeatures:
        """Vocabulary and idf only (of a sample, at scale; ``transform_many`` then covers every text)."""
        for vectorizer in self.vectorizers:
            vectorizer.set_params(min_df=_feasible_min_df(vectorizer, len(texts)))
            vectorizer.fit(texts)
            vectorizer.stop_words_ = None
        return self

    def transform_many(self, texts: Sequence[str], n_jobs: int = 1, chunk: int = 20_000) -> sp.csr_matrix:
        """``transform`` for a training set, in ``n_jobs`` processes: analysing text is pure Python
        (it holds the GIL), so threads would not overlap."""
        if n_jobs <= 1 or len(texts) <= chunk:
            return self.transform(texts)
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=n_jobs)(
            delayed(self.transform)(texts[start : start + chunk]) for start in range(0, len(texts), chunk)
        )
        return sp.vstack(parts, format="csr", dtype=np.float32)

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        columns_of = self._get_column_functions()
        data: list[np.ndarray] = []
        indices: list[np.ndarray] = []
        indptr = [0]
        for text in texts:
            offset = row_nnz = 0
            for vectorizer, columns_fn in zip(self.vectorizers, columns_of, strict=True):
                columns, values = _tfidf_row(vectorizer, columns_fn(text))
                indices.append(columns + offset)
                data.append(values)
                offset += len(vectorizer.vocabulary_)
                row_nnz += len(columns)
            indptr.append(indptr[-1] + row_nnz)
        return sp.csr_matrix(
            (
                np.concatenate(data) if data else np.zeros(0, np.float32),
                np.concatenate(indices) if indices else np.zeros(0, np.int64),
                np.asarray(indptr),
            ),
            shape=(len(texts), self.n_features),
            dtype=np.float32,
        )

    def _get_column_functions(self) -> list[Callable[[str], list[int]]]:
        """Per vectorizer: text -> vocabulary columns of its n-grams, repeats included."""
        if self._analyzers is None:
            self._analyzers = [_column_function(v) for v in self.vectorizers]
        return self._analyzers

    def __getstate__(self) -> dict[str, object]:
        # Analyzers are closures, rebuilt on first use after unpickling.
        return {**self.__dict__, "_analyzers": None}


def _feasible_min_df(vectorizer: TfidfVectorizer, n_docs: int) -> int | float:
    """A tiny training set (tests, first runs) cannot demand that n-grams occur in 2+ documents
    when it has fewer than that: keep min_df meaningful but satisfiable."""
    min_df = vectorizer.get_params()["min_df"]
    return min(min_df, max(1, n_docs // 2)) if isinstance(min_df, int) else min_df


# Words whose char_wb columns are remembered per process. Help-desk text repeats its words, so
# nearly every word is a hit: a ticket costs one lookup per word instead of one per n-gram.
# Bounded: past this many distinct words, new ones are analysed each time and not remembered.
_WORD_CACHE_MAX = 500_000


def _column_function(vectorizer: TfidfVectorizer) -> Callable[[str], list[int]]:
    vocabulary = vectorizer.vocabulary_
    analyze = vectorizer.build_analyzer()
    if vectorizer.analyzer != "char_wb":
        return lambda text: [vocabulary[token] for token in analyze(text) if token in vocabulary]
    # char_wb n-grams never cross whitespace: a text's n-grams are its words' n-grams, in order.
    preprocess = vectorizer.build_preprocessor()
    cache: dict[str, tuple[int, ...]] = {}

    def columns(text: str) -> list[int]:
        out: list[int] = []
        for word in preprocess(text).split():
            cached = cache.get(word)
            if cached is None:
                cached = tuple(vocabulary[g] for g in analyze(word) if g in vocabulary)
                if len(cache) < _WORD_CACHE_MAX:
                    cache[word] = cached
            out.extend(cached)
        return out

    return columns


def _tfidf_row(vectorizer: TfidfVectorizer, columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    if not columns:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    # np.unique over the ~1,000 columns of a ticket: ~5x cheaper than a Counter and two fromiter.
    columns, counts = np.unique(np.asarray(columns, dtype=np.int64), return_counts=True)
    values = (np.log(counts) + 1.0) * vectorizer.idf_[columns]  # sublinear tf x idf
    values /= np.sqrt(np.dot(values, values))
    return columns, values.astype(np.float32)


def most_urgent_label(
    labels: Iterable[str], counts: Counter[str] | None = None, fallback: str | None = None
) -> str:
    """The label whose recall the promotion gate protects.

    Known levels (low < medium < high < critical, case-insensitive): the highest one present.
    Otherwise ``fallback`` when it is one of the labels, else the rarest label (ties by name) —
    in an unknown scheme the rarest level is the most likely to be the escalation one.
    """
    labels = sorted(set(labels))
    if not labels:
        raise ValueError("no labels")
    rank = {level: i for i, level in enumerate(URGENCY_ORDER)}
    if all(label.lower() in rank for label in labels):
        return max(labels, key=lambda label: rank[label.lower()])
    if fallback is not None and fallback in labels:
        return fallback
    counts = counts or Counter()
    return min(labels, key=lambda label: (counts.get(label, 0), label))


def length_bucket(n_chars: int) -> str:
    for name, upper in LENGTH_BUCKETS:
        if n_chars < upper:
            return name
    return "very_long"


def length_buckets(texts: Sequence[str]) -> list[str]:
    return [length_bucket(len(text)) for text in texts]
