"""The measures the figures, the card and ``hfpref report`` share: proportions with their Wilson
intervals, Cohen's and Fleiss' kappa, and score histograms.

Pure functions over counts and labels: the statistics of a dataset folder
(:mod:`hfpref.repo.figure_data`) and of a judge calibration (:mod:`hfpref.stages.calibrate`) are
computed with the same code, so the card, the terminal and the figures cannot disagree.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Hashable, Sequence
from typing import Any

Z95 = 1.959963984540054  # the two-sided 95% quantile of the normal distribution
SCORE_BINS = 10  # score histograms: [0, 0.1), [0.1, 0.2) … [0.9, 1.0]


def proportion(hits: int, total: int) -> dict[str, Any] | None:
    """``hits`` of ``total`` as a rate with its 95% Wilson score interval (``low``, ``high``); None for
    no trials. Wilson's interval stays inside [0, 1] and is honest for small counts and rates near 0
    or 1, where the normal approximation is not."""
    if total <= 0:
        return None
    rate = hits / total
    centre = (rate + Z95**2 / (2 * total)) / (1 + Z95**2 / total)
    half = Z95 * math.sqrt(rate * (1 - rate) / total + Z95**2 / (4 * total**2)) / (1 + Z95**2 / total)
    return {
        "hits": hits,
        "total": total,
        "rate": round(rate, 4),
        "low": round(max(0.0, centre - half), 4),
        "high": round(min(1.0, centre + half), 4),
    }


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items (None without items, or when chance
    agreement is total: both raters gave one and the same label to everything)."""
    n = len(first)
    if n == 0 or n != len(second):
        return None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    counts_a, counts_b = collections.Counter(first), collections.Counter(second)
    expected = sum(counts_a[label] * counts_b[label] for label in counts_a) / n**2
    return None if expected == 1 else round((observed - expected) / (1 - expected), 4)


def fleiss_kappa(ratings: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa of items each labelled by the same number (at least two) of raters; None without
    items or when chance agreement is total."""
    if not ratings or len(ratings[0]) < 2 or any(len(item) != len(ratings[0]) for item in ratings):
        return None
    raters, items = len(ratings[0]), len(ratings)
    totals: collections.Counter[Hashable] = collections.Counter()
    agreement = 0.0
    for item in ratings:
        counts = collections.Counter(item)
        totals.update(counts)
        agreement += (sum(c * c for c in counts.values()) - raters) / (raters * (raters - 1))
    observed = agreement / items
    expected = sum((c / (items * raters)) ** 2 for c in totals.values())
    return None if expected == 1 else round((observed - expected) / (1 - expected), 4)


def kappa(labels: Sequence[Sequence[Hashable]]) -> dict[str, Any] | None:
    """The agreement of a panel beyond chance, from each item's labels (one per rater, every rater
    labelling every item): Cohen's kappa for two raters, Fleiss' for more; None for one rater."""
    if not labels or len(labels[0]) < 2:
        return None
    if len(labels[0]) == 2:
        value = cohen_kappa([item[0] for item in labels], [item[1] for item in labels])
        return {"kind": "Cohen's kappa", "value": value, "items": len(labels)}
    return {"kind": "Fleiss' kappa", "value": fleiss_kappa(labels), "items": len(labels)}


def score_bin(score: float) -> int:
    """The histogram bin of a score in [0, 1] (1.0 falls in the last bin)."""
    return min(int(score * SCORE_BINS), SCORE_BINS - 1)


def bin_labels() -> list[str]:
    """The labels of the score bins: ``0.0-0.1`` … ``0.9-1.0``."""
    return [f"{b / SCORE_BINS:.1f}-{(b + 1) / SCORE_BINS:.1f}" for b in range(SCORE_BINS)]


def mean_interval(count: int, mean: float, std: float) -> tuple[float, float]:
    """The 95% normal interval of a mean of ``count`` values with standard deviation ``std``, in [0, 1]."""
    half = Z95 * std / math.sqrt(count) if count > 1 else 0.0
    return round(max(0.0, mean - half), 4), round(min(1.0, mean + half), 4)
