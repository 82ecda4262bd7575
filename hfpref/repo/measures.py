"""The measures the figures, the card and ``hfpref report`` share: proportions with their Wilson
intervals, Cohen's and Fleiss' kappa, and score histograms.

Pure functions over counts and labels: the statistics of a dataset folder
(:mod:`hfpref.repo.figure_data`) and of a judge calibration (:mod:`hfpref.stages.calibrate`) are
computed with the same code, so the card, the terminal and the figures cannot disagree.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
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


def pair_counts(labels: Iterable[Sequence[Hashable]]) -> collections.Counter[tuple[Hashable, Hashable]]:
    """For each item's labels (one per rater, in a fixed order of raters) and each two raters j < k:
    how often rater j said one label and rater k another. Summed over items (or over parts of the
    items, as the rows of a judged dataset keep them), the counts give :func:`kappa_of_counts` exactly."""
    counts: collections.Counter[tuple[Hashable, Hashable]] = collections.Counter()
    for item in labels:
        counts.update(itertools.combinations(item, 2))
    return counts


def kappa_of_counts(counts: Mapping[tuple[Hashable, Hashable], int], raters: int) -> dict[str, Any] | None:
    """The agreement of a panel of ``raters`` beyond chance, from :func:`pair_counts` of items every
    rater labelled: Cohen's kappa for two raters (``counts`` is their contingency table), Fleiss' for
    more (observed agreement: the share of rater pairs that agree; chance: from each label's share of
    all labels). ``value`` is None when chance agreement is total (one label for everything); the
    result is None for fewer than two raters or no items."""
    total = sum(counts.values())
    if raters < 2 or not total:
        return None
    observed = sum(n for (a, b), n in counts.items() if a == b) / total
    first: collections.Counter[Hashable] = collections.Counter()
    second: collections.Counter[Hashable] = collections.Counter()
    for (a, b), n in counts.items():
        first[a] += n
        second[b] += n
    if raters == 2:
        kind, expected = "Cohen's kappa", sum(first[c] * second[c] for c in first) / total**2
    else:  # each label's share of all labels: every item's labels counted raters - 1 times on each side
        shares = first + second
        kind, expected = "Fleiss' kappa", sum((n / (2 * total)) ** 2 for n in shares.values())
    value = None if expected == 1 else round((observed - expected) / (1 - expected), 4)
    return {"kind": kind, "value": value, "items": total // (raters * (raters - 1) // 2)}


def table_kappa(table: Sequence[int], raters: int) -> dict[str, Any] | None:
    """:func:`kappa_of_counts` of :func:`pair_counts` kept as a flat square table: the count of
    (label a, label b) at ``a * size + b``, for labels numbered 0 .. size - 1."""
    size = math.isqrt(len(table))
    return kappa_of_counts({divmod(k, size): n for k, n in enumerate(table)}, raters)


def kappa(labels: Sequence[Sequence[Hashable]]) -> dict[str, Any] | None:
    """The agreement of a panel beyond chance, from each item's labels (one per rater, every rater
    labelling every item): Cohen's kappa for two raters, Fleiss' for more; None for one rater."""
    if not labels:
        return None
    return kappa_of_counts(pair_counts(labels), len(labels[0]))


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
