"""The ticket's language, one implementation for import, retrieval and drafting.

Detection uses lingua (n-gram models shipped inside the wheel, nothing downloaded) restricted
to the languages the platform routes, so it never answers Portuguese for a Spanish ticket and
loads four models instead of seventy-five. The detector is built once, on first use; lingua
then loads each language's model lazily.

English is the platform's default: lower-cased keyword tickets ("password reset vpn") carry
little evidence, so another language is returned only when lingua is confident about it.
Text without a single letter of a supported language (empty, digits, Chinese) is ``None``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

DEFAULT_LANGUAGE = "en"
LANGUAGES: dict[str, Language] = {
    "en": Language.ENGLISH,
    "fr": Language.FRENCH,
    "de": Language.GERMAN,
    "es": Language.SPANISH,
}
# Below this confidence a non-English answer is taken as noise; measured on the shared
# IT-service dataset (English keywords) and the EN/FR/DE/ES samples, see BENCHMARKS.md.
MIN_CONFIDENCE = 0.6
# The first sentences decide the language; long e-mail threads only cost time (~4 µs/char).
MAX_CHARS = 300

_CODES = {language: code for code, language in LANGUAGES.items()}


@functools.cache
def _detector() -> LanguageDetector:
    return LanguageDetectorBuilder.from_languages(*LANGUAGES.values()).build()


def _decide(confidences: Sequence) -> str | None:
    best = confidences[0] if confidences else None
    if best is None or best.value == 0.0:  # no letter of any supported language
        return None
    code = _CODES[best.language]
    return code if code == DEFAULT_LANGUAGE or best.value >= MIN_CONFIDENCE else DEFAULT_LANGUAGE


def detect_language(text: str | None) -> str | None:
    """ISO 639-1 code ('en', 'fr', 'de', 'es') of ``text``; None when it has nothing to judge."""
    if not text or not text.strip():
        return None
    return _decide(_detector().compute_language_confidence_values(text[:MAX_CHARS]))


def detect_languages(texts: Sequence[str | None]) -> list[str | None]:
    """``detect_language`` for many texts, spread over lingua's worker threads."""
    wanted = [i for i, text in enumerate(texts) if text and text.strip()]
    results: list[str | None] = [None] * len(texts)
    if not wanted:
        return results
    batch = _detector().compute_language_confidence_values_in_parallel([texts[i][:MAX_CHARS] for i in wanted])
    for i, confidences in zip(wanted, batch, strict=True):
        results[i] = _decide(confidences)
    return results
