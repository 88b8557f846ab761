"""Out-of-scope detector calibration on vectors and texts with a known answer."""

from __future__ import annotations

import numpy as np

from ticket_assets.ml.scope import fit_out_of_scope, unseen_share


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_threshold_flags_about_the_chosen_share_of_new_in_domain_tickets_and_foreign_ones() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 32))
    domain = _unit(centres[rng.integers(8, size=6000)] + 0.35 * rng.normal(size=(6000, 32)))
    foreign = _unit(rng.normal(size=(500, 32)))  # unrelated directions
    words = ["printer", "vpn", "password", "laptop", "mailbox", "screen", "badge", "drive"]
    texts = [" ".join(rng.choice(words, size=6)) for _ in range(5000)]
    detector = fit_out_of_scope(domain[:5000], texts, quantile=0.95)
    new_in_domain = detector.score(domain[5000:], [" ".join(rng.choice(words, size=6)) for _ in range(1000)])
    assert 0.01 <= np.mean(new_in_domain > 1.0) <= 0.10
    assert np.mean(detector.score(foreign, texts[:500]) > 1.0) >= 0.95  # by meaning
    foreign_words = ["recipe flour oven sugar eggs whisk"] * 1000
    assert np.mean(detector.score(domain[5000:], foreign_words) > 1.0) == 1.0  # by wording


def test_unseen_share_counts_words_outside_the_vocabulary() -> None:
    vocabulary = frozenset({"vpn", "drops"})
    assert unseen_share(["VPN drops", "vpn drops at night", "!!"], vocabulary).tolist() == [0.0, 0.5, 1.0]


def test_the_meaning_signal_names_the_nearest_training_tickets() -> None:
    rng = np.random.default_rng(1)
    reference = _unit(rng.normal(size=(400, 16)))
    ids = [f"t-{i}" for i in range(len(reference))]
    detector = fit_out_of_scope(reference, None, k=5, ids=ids)
    query = _unit(reference[[7, 123]] + 0.01 * rng.normal(size=(2, 16)))
    scores, nearest = detector.score_and_neighbours(query, ["", ""], 3)
    expected = [[ids[j] for j in np.argsort(-(reference @ q))[:3]] for q in query]
    assert nearest == expected and [row[0] for row in nearest] == ["t-7", "t-123"]
    assert np.allclose(scores, detector.score(query, ["", ""]))  # the same score as without names
    # Leave-one-out (calibration) drops the row itself: its best match is then another ticket.
    loo = detector.scores(reference[:50], exclude_self=True)
    assert np.all(loo > detector.scores(reference[:50]))
    unnamed = fit_out_of_scope(reference, None, k=5)
    assert unnamed.score_and_neighbours(query, ["", ""], 3)[1] == [[], []]
