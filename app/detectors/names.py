"""Near names: a reference with a typo ("checkout-confg") and the object that exists ("checkout-config").

Damerau-Levenshtein (a swap of two neighbours counts as one edit) from rapidfuzz, a maintained C-backed
library. A correction is proposed only when exactly one candidate is that close: two plausible targets
mean we would be guessing, and no fix beats a wrong fix.
"""

from __future__ import annotations

from collections.abc import Iterable

from rapidfuzz.distance import DamerauLevenshtein

MAX_DISTANCE = 2


def max_distance_for(name: str) -> int:
    """Short names tolerate one edit only: "db" and "dc" are different things, not a typo."""
    return 1 if len(name) <= 5 else MAX_DISTANCE


def nearest(name: str, candidates: Iterable[str]) -> str | None:
    """The unique candidate within a small edit distance of ``name`` (never ``name`` itself), else None."""
    limit = max_distance_for(name)
    close = sorted({c for c in candidates
                    if c != name and DamerauLevenshtein.distance(name, c, score_cutoff=limit) <= limit})
    return close[0] if len(close) == 1 else None
