"""The card's figures, drawn with matplotlib's Agg renderer from :func:`hfpref.repo.figure_data.figure_statistics`.

matplotlib is imported only here, when a figure is drawn (``import hfpref`` and ``hfpref --help`` never
load it). Figures are deterministic: the same statistics give the same PNG bytes. Every figure is
drawn under matplotlib's default settings plus :data:`STYLE` (a user's ``matplotlibrc`` changes
nothing), with DejaVu Sans (shipped with matplotlib), a fixed size (800 pixels wide, the width the
Hub shows a card at) and no ``Software`` or date metadata in the file.
"""

from __future__ import annotations

import itertools
import os
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpref.repo.figure_data import FIGURES, IMAGES
from hfpref.repo.measures import bin_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH_IN, DPI = 8.0, 100  # 800 pixels wide
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "svg.hashsalt": "hfpref",
}
BLUE, ORANGE, GREY = "#4C72B0", "#DD8452", "#8C8C8C"
LABEL_CHARS = 30  # longer model ids are shortened in the middle


def _short(name: str) -> str:
    if len(name) <= LABEL_CHARS:
        return name
    keep = LABEL_CHARS - 1
    return f"{name[: keep // 2]}…{name[-(keep - keep // 2) :]}"


def _new(height: float, rows: int = 1, cols: int = 1, **grid: Any) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    return figure, figure.subplots(rows, cols, squeeze=False, gridspec_kw=grid or None)


def _scores(stats: Mapping[str, Any]) -> Figure:
    models = stats["models"]
    cols = 1 if len(models) <= 3 else 2
    rows = -(-len(models) // cols)
    figure, axes = _new(0.6 + 1.7 * rows, rows, cols)
    centres = [(b + 0.5) / 10 for b in range(10)]
    top = max(100 * c / m["scored"] for m in models for c in m["histogram"])
    for k, ax in enumerate(axes.flat):
        if k >= len(models):
            ax.set_visible(False)
            continue
        model = models[k]
        shares = [100 * c / model["scored"] for c in model["histogram"]]
        ax.bar(centres, shares, width=0.09, color=BLUE)
        ax.axvline(model["mean"], color=ORANGE, linestyle="--", linewidth=1.5)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, min(100.0, top * 1.15))
        ax.set_title(f"{_short(model['id'])}  (n={model['scored']:,}, mean {model['mean']:.2f})", loc="left")
        ax.set_ylabel("% of scored")
        ax.set_xlabel("judge score" if k >= len(models) - cols else "")
    figure.suptitle(FIGURES["scores"].title + " (dashed: mean)", fontweight="bold")
    return figure


def _wins(stats: Mapping[str, Any]) -> Figure:
    models, counts = [_short(m) for m in stats["models"]], stats["counts"]
    size = len(models)
    figure, axes = _new(max(3.5, 1.8 + 0.5 * size))
    ax = axes[0, 0]
    image = ax.imshow(counts, cmap="Blues", vmin=0, aspect="auto")
    top = max(max(row) for row in counts) or 1
    for i in range(size):
        for j in range(size):
            colour = "white" if counts[i][j] > top / 2 else "black"
            ax.text(j, i, f"{counts[i][j]:,}", ha="center", va="center", color=colour)
    ax.set_xticks(range(size), models, rotation=20, ha="right")
    ax.set_yticks(range(size), models)
    ax.set_xlabel("rejected model")
    ax.set_ylabel("chosen model")
    ax.spines[:].set_visible(False)
    figure.colorbar(image, ax=ax, label="pairs", shrink=0.9)
    ax.set_title(f"{FIGURES['wins'].title} ({stats['pairs']:,} pairs)")
    return figure


def _judge(stats: Mapping[str, Any]) -> Figure:
    items = stats["items"][::-1]  # top to bottom in the order of the card
    figure, axes = _new(1.0 + 0.6 * len(items))
    ax = axes[0, 0]
    ys = range(len(items))
    colours = [
        ORANGE if item["name"] in ("human_agreement", "first_position", "kappa") else BLUE for item in items
    ]
    ax.barh(ys, [item["rate"] for item in items], height=0.55, color=colours)
    for y, item in zip(ys, items, strict=True):
        if item.get("low") is not None:
            ax.errorbar(
                item["rate"],
                y,
                xerr=[[item["rate"] - item["low"]], [item["high"] - item["rate"]]],
                color="black",
                capsize=4,
                linewidth=1.2,
            )
        if item["name"] in ("position", "first_position"):  # the records' and the calibration's
            ax.plot([0.5, 0.5], [y - 0.4, y + 0.4], color="black", linestyle=":", linewidth=1.5)
        right = item.get("high") if item.get("high") is not None else max(item["rate"], 0.0)
        ax.text(right + 0.02, y, f"{item['rate']:.3f}", va="center")
    ax.set_yticks(list(ys), [textwrap.fill(item["label"], 34) for item in items])
    ax.set_xlim(min(0.0, *(item["rate"] for item in items)) - 0.02, 1.12)
    ax.axvline(0, color=GREY, linewidth=0.8)
    ax.set_xlabel("rate, with its 95% interval\nblue: this dataset's judge records; orange: the calibration")
    ax.set_title(FIGURES["judge"].title)
    return figure


def _margins(stats: Mapping[str, Any]) -> Figure:
    edges, counts = stats["edges"], stats["counts"]
    figure, axes = _new(3.4)
    ax = axes[0, 0]
    centres = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    widths = [0.92 * (b - a) for a, b in itertools.pairwise(edges)]
    ax.bar(centres, counts, width=widths, color=BLUE)
    ax.axvline(stats["mean"], color=ORANGE, linestyle="--", linewidth=1.5, label=f"mean {stats['mean']:.3f}")
    ax.axvline(
        stats["median"], color="black", linestyle=":", linewidth=1.5, label=f"median {stats['median']:.3f}"
    )
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("margin of the pair (chosen minus rejected)")
    ax.set_ylabel("pairs")
    ax.legend(frameon=False)
    ax.set_title(f"{FIGURES['margins'].title} ({stats['pairs']:,} pairs)")
    return figure


def _usage(stats: Mapping[str, Any]) -> Figure:
    from matplotlib.ticker import EngFormatter

    models = stats["models"][::-1]
    with_cost = any(m["cost_usd"] is not None for m in models)
    figure, axes = _new(1.4 + 0.45 * len(models), 1, 2 if with_cost else 1)
    ys = list(range(len(models)))
    names = [_short(m["id"]) for m in models]
    ax = axes[0, 0]
    prompt = [m["prompt_tokens"] for m in models]
    ax.barh(ys, prompt, height=0.6, color=GREY)
    ax.barh(ys, [m["completion_tokens"] for m in models], left=prompt, height=0.6, color=BLUE)
    ax.set_yticks(ys, names)
    ax.xaxis.set_major_formatter(EngFormatter())
    ax.set_xlabel("tokens")
    ax.set_title("Tokens (grey: prompt, blue: completion)")
    if with_cost:
        cost_ax = axes[0, 1]
        costs = [m["cost_usd"] or 0.0 for m in models]
        cost_ax.barh(ys, costs, height=0.6, color=ORANGE)
        top = max(costs) or 1.0
        for y, m in zip(ys, models, strict=True):
            text = "unknown" if m["cost_usd"] is None else f"${m['cost_usd']:,.4f}"
            cost_ax.text((m["cost_usd"] or 0.0) + top * 0.02, y, text, va="center")
        cost_ax.set_xlim(0, top * 1.35)
        cost_ax.set_yticks(ys, [])
        cost_ax.set_xlabel("USD")
        cost_ax.set_title("Cost")
    figure.suptitle(FIGURES["usage"].title, fontweight="bold")
    return figure


def _calibration(stats: Mapping[str, Any]) -> Figure:
    bins = stats["reliability"]["bins"]
    figure, axes = _new(5.6, 2, 1, height_ratios=[3, 1])
    ax, counts_ax = axes[0, 0], axes[1, 0]
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot(
        [b["mean_score"] for b in bins], [b["observed"] for b in bins], marker="o", color=BLUE, label="judge"
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share human-preferred")
    ax.legend(frameon=False, loc="upper left")
    ece = stats["reliability"]["ece"]
    ax.set_title(f"{FIGURES['calibration'].title} ({stats['pairs']:,} pairs, ECE {ece:.3f})")
    labels = bin_labels()
    counts_ax.bar(
        [(k + 0.5) / 10 for k in range(10)],
        [next((b["count"] for b in bins if b["bin"] == label), 0) for label in labels],
        width=0.09,
        color=GREY,
    )
    counts_ax.set_xlim(0, 1)
    counts_ax.set_xlabel("judge score of a completion")
    counts_ax.set_ylabel("completions")
    return figure


DRAW: dict[str, Callable[[Mapping[str, Any]], Figure]] = {
    "scores": _scores,
    "wins": _wins,
    "judge": _judge,
    "margins": _margins,
    "usage": _usage,
    "calibration": _calibration,
}


def draw(name: str, stats: Mapping[str, Any], path: Path) -> None:
    """Draw figure ``name`` of ``stats`` (its part of :func:`figure_statistics`) as a PNG at ``path``,
    written whole or not at all."""
    import matplotlib

    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(STYLE)
        figure = DRAW[name](stats)
        tmp = path.with_name(f".{path.name}.tmp")
        figure.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    os.replace(tmp, path)


def draw_figures(folder: Path, stats: Mapping[str, Any]) -> list[str]:
    """Draw every figure ``stats`` has into ``folder/images/``, remove the figures it no longer has, and
    return the paths drawn, relative to ``folder`` (as the card links them)."""
    images = folder / IMAGES
    drawn: list[str] = []
    for name, figure in FIGURES.items():
        path = images / figure.file
        if name in stats:
            images.mkdir(exist_ok=True)
            draw(name, stats[name], path)
            drawn.append(f"{IMAGES}/{figure.file}")
        else:
            path.unlink(missing_ok=True)
    if images.is_dir() and not any(images.iterdir()):
        images.rmdir()
    return drawn


def figure_files() -> Sequence[str]:
    """Every figure path a folder may have, relative to it (``push`` deletes those the folder lost)."""
    return [f"{IMAGES}/{figure.file}" for figure in FIGURES.values()]
