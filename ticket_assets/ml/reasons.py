"""Why the linear TF-IDF model chose a class: the words that pushed the score up the most.

For the chosen class ``c`` and a ticket's TF-IDF row ``x``, a word n-gram's contribution is
``x_j * coef_cj`` of the linear SVM; the largest positive ones are the reasons. Only word n-grams
are named (character n-grams mean little to a person). One sparse row, a few hundred products.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


class TermReasons:
    """Top contributing word n-grams of a fitted ``LinearSVC`` over ``TextFeatures``."""

    def __init__(self, vectorizer: Any, svc: Any) -> None:
        self.n_word = len(vectorizer.vectorizers[0].vocabulary_)
        self._vocabulary = vectorizer.vectorizers[0].vocabulary_
        self._svc = svc
        self._terms: np.ndarray | None = None

    def terms(self, tfidf_row: sp.csr_matrix, label: str, top: int = 3) -> list[str]:
        classes = list(self._svc.classes_)
        coef = self._svc.coef_
        if coef.shape[0] == 1:  # binary: one row, positive = classes_[1]
            sign = 1.0 if label == classes[1] else -1.0
            weights = sign * coef[0]
        else:
            weights = coef[classes.index(label)]
        columns = tfidf_row.indices
        word = columns < self.n_word
        columns, values = columns[word], tfidf_row.data[word]
        contribution = values * weights[columns]
        order = np.argsort(-contribution)[:top]
        terms = self._term_array()
        return [str(terms[columns[i]]) for i in order if contribution[i] > 0]

    def _term_array(self) -> np.ndarray:
        if self._terms is None:  # built once per process (the vocabulary maps term -> column)
            terms = np.empty(self.n_word, dtype=object)
            for term, column in self._vocabulary.items():
                terms[column] = term
            self._terms = terms
        return self._terms
