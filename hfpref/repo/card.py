"""Dataset cards: the README.md of a dataset folder, rendered from its provenance (``hfpref.json``).

The card is a Jinja template in ``cards/`` (source tree) or ``hfpref/cards/`` (installed wheel), rendered
with ``huggingface_hub``'s ``DatasetCard.from_template``. Everything it says comes from the folder's
:class:`~hfpref.repo.provenance.Provenance`, so a section whose facts are unknown (an imported dataset
has no generator) is left out, and an unknown cost reads "unknown", never $0. Without a license the
card says ``other`` and claims no rights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfpref.errors import ConfigError

if TYPE_CHECKING:
    from huggingface_hub import DatasetCard

    from hfpref.repo.provenance import ConfigEntry, InputStatistics, Provenance, SourceStatistics

TEMPLATE = "dataset_card.md.j2"
REPO_PLACEHOLDER = "your-username/your-dataset"
NO_LICENSE = "other"

CONFIG_TAGS = {
    "dpo": "dpo",
    "sft": "sft",
    "kto": "kto",
    "grpo": "grpo",
    "step_dpo": "step-dpo",
    "stepwise": "process-supervision",
}
CONSUMERS = {
    "dpo": "TRL DPOTrainer, NeMo RL, Axolotl",
    "sft": "TRL SFTTrainer",
    "kto": "TRL KTOTrainer",
    "grpo": "GRPO/RLOO rewards, reward modelling",
    "step_dpo": "TRL DPOTrainer (Step-DPO)",
    "stepwise": "stepwise supervision (PRM)",
}
_SIZES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]


def templates_dir() -> Path:
    """The folder holding the card templates: ``hfpref/cards`` in a wheel, ``<repo>/cards`` in a checkout."""
    here = Path(__file__).resolve().parent.parent  # hfpref/
    for candidate in (here / "cards", here.parent / "cards"):
        if (candidate / TEMPLATE).is_file():
            return candidate
    raise ConfigError(f"card template {TEMPLATE} not found in {here / 'cards'} or {here.parent / 'cards'}")


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` bucket for ``rows`` examples."""
    return next((label for limit, label in _SIZES if rows < limit), "100M<n<1B")


def card_configs(configs: Mapping[str, ConfigEntry], default: str) -> list[dict[str, Any]]:
    """The ``configs:`` YAML list: one entry per config, ``data_files`` per split, ``default: true`` once.

    A config whose provenance has a ``sha256`` (of its files) gets it in its ``description``: datasets
    caches a local folder by its name and card, not its files, so without it ``load_dataset(folder)``
    would return the old rows of a folder rewritten with new ones.
    """
    entries = []
    for name, info in configs.items():
        entry: dict[str, Any] = {
            "config_name": name,
            "data_files": [{"split": split, "path": f"{name}/{split}-*"} for split in info.splits or {}],
        }
        if info.sha256:
            entry["description"] = f"{name} rows, content sha256 {info.sha256[:16]}"
        if name == default:
            entry["default"] = True
        entries.append(entry)
    return entries


def _number(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _section(info: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any] | None:
    """A generation/judge section for the template: model lines, known parameters, texts; None if unknown."""
    if not info:
        return None
    return {
        "model_lines": _model_lines(info.get("models", [])),
        "params": [(key, info[key]) for key in keys if info.get(key) is not None],
        "system_prompt": info.get("system_prompt"),
        "prompt": info.get("prompt"),
        "inferred": info.get("inferred", False),
    }


def _reasoning(prov: Provenance) -> str | None:
    """The curation line on the models' reasoning (``curate.reasoning``); None when not recorded."""
    mode = (prov.curate or {}).get("reasoning")
    if mode == "drop":
        return "dropped (the completions are written without the models' reasoning)"
    if mode != "inline":
        return None
    count = prov.input.completions_with_reasoning if prov.input else None
    had = "" if count is None else f"; {count:,} completions had reasoning"
    return (
        "inline (a completion with reasoning is written as "
        f"`<think>\\n{{reasoning}}\\n</think>\\n\\n{{completion}}`{had}; the step configs carry none)"
    )


def _summary(prov: Provenance) -> str:
    names = ", ".join(f"`{name}`" for name in prov.configs)
    made = prov.input
    if made is None:
        return f"Preference data in the configs {names}."
    return (
        f"Preference data made with hfpref from {made.prompts:,} prompts and "
        f"{made.completions:,} scored completions, in the configs {names}."
    )


def _input_summary(made: InputStatistics | None) -> str:
    if made is None:
        return ""
    return (
        f"Input: {made.rows:,} rows, {made.prompts:,} distinct prompts, {made.completions:,} "
        f"completions ({made.null_completions:,} missing or failed, {made.null_scores:,} without a "
        "usable score)."
    )


def _judge_stats(made: InputStatistics | None, extra: Mapping[str, Any] | None) -> list[str]:
    lines = []
    if made is not None and made.mean_score is not None:
        lines.append(f"Mean score {_number(made.mean_score)}, standard deviation {_number(made.score_std)}")
        lines.append(f"Rows whose usable completions all tie: {made.tied_rows:,}")
    for key, value in (extra or {}).items():
        lines.append(f"{key.removesuffix('_usd').replace('_', ' ')}: {_value(key, value)}")
    return lines


def _value(key: str, value: Any) -> str:
    """One judge statistic for a reader: unknown stays unknown, costs in USD, rates as numbers."""
    if key.endswith("cost_usd"):
        return _cost(value)
    if value is None:
        return "unknown"
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_value(k, v)}" for k, v in value.items())
    if isinstance(value, float):
        return _number(value)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _source_stats(stats: SourceStatistics | None) -> dict[str, Any] | None:
    """The source records section of an imported dataset: records read and used, the records skipped and
    why, and distributions (count, mean, spread, histogram) of source values such as rewards."""
    if stats is None:
        return None
    distributions = []
    for name, dist in stats.distributions.items():
        if not dist.get("count"):
            continue
        summary = (
            f"{dist['count']:,} values, mean {_number(dist['mean'])}, standard deviation "
            f"{_number(dist['std'])}, min {dist['min']:g}, max {dist['max']:g}"
        )
        histogram = [(label, f"{count:,}") for label, count in dist.get("histogram", [])]
        distributions.append({"name": name, "summary": summary, "histogram": histogram})
    return {
        "summary": f"Records read: {stats.records:,}; used: {stats.used:,}.",
        "skipped": [(reason, f"{count:,}") for reason, count in stats.skipped.items()],
        "distributions": distributions,
    }


def _figures(figures: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """The figures drawn (path, title, caption, the numbers under it) and those not drawn, and why."""
    from hfpref.repo.figure_data import FIGURES, IMAGES, figure_notes

    if not figures:
        return [], []
    notes = figure_notes(figures)
    drawn = [
        {"path": f"{IMAGES}/{f.file}", "title": f.title, "caption": f.caption, "notes": notes[name]}
        for name, f in FIGURES.items()
        if name in figures
    ]
    return drawn, [(FIGURES[name].title, why) for name, why in figures.get("missing", {}).items()]


def license_text(provenance: Provenance, license_: str | None) -> str:
    """The card's license paragraph: the license, or that none was chosen and no rights are claimed."""
    if license_:
        text = f"`{license_}`."
    else:
        text = (
            "No license was chosen when this dataset was made: the card says `other`, and its authors "
            "claim no rights over it."
        )
    if provenance.generation or provenance.judge:
        text += " The terms of the models that wrote and judged the data may also apply."
    if provenance.source:
        text += " The license of the source data applies to what was taken from it."
    return text


def _cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:,.4f}"


def _model_lines(models: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for model in models:
        extras = [f"weight {model['weight']:g}"] if model.get("weight") is not None else []
        if model.get("completions") is not None:
            extras.append(f"{model['completions']:,} completions")
        lines.append(f"`{model['id']}`" + (f" ({', '.join(extras)})" if extras else ""))
    return lines


def _config_rows(configs: Mapping[str, ConfigEntry]) -> list[dict[str, Any]]:
    rows = []
    for name, info in configs.items():
        splits = info.splits or {}
        stats = info.statistics or {}
        rows.append(
            {
                "name": name,
                "train": f"{splits.get('train', 0):,}",
                "test": f"{splits.get('test', 0):,}",
                "columns": ", ".join(info.columns or []),
                "consumer": CONSUMERS.get(name, ""),
                "stats": ", ".join(_stat_parts(stats)),
                "dropped": {reason: f"{count:,}" for reason, count in stats.get("dropped", {}).items()},
            }
        )
    return rows


def _stat_parts(stats: Mapping[str, Any]) -> list[str]:
    labels = {
        "prompts": "prompts",
        "mean_score_chosen": "mean chosen score",
        "mean_score_rejected": "mean rejected score",
        "mean_margin": "mean margin",
        "mean_score": "mean score",
        "desirable": "desirable",
        "undesirable": "undesirable",
        "mean_completions": "completions per prompt",
        "mean_step_index": "mean step index",
        "steps": "steps",
        "correct_steps": "share of correct steps",
    }
    parts = []
    for key, label in labels.items():
        value = stats.get(key)
        if value is None:
            continue
        parts.append(f"{label} {value:,}" if isinstance(value, int) else f"{label} {_number(value)}")
    return parts


def _usage_snippets(configs: Sequence[str], repo: str) -> list[str]:
    base = "Qwen/Qwen2.5-0.5B-Instruct"
    lines = []
    if "dpo" in configs:
        lines.append(f"hfpref train --dataset {repo} --model {base}")
        lines.append(f"trl dpo --dataset_name {repo} --dataset_config dpo --model_name_or_path {base}")
    if "step_dpo" in configs:
        lines.append(f"hfpref train --dataset {repo} --model {base} --config-name step_dpo")
    for method in ("kto", "sft"):
        if method in configs:
            lines.append(
                f"hfpref train --dataset {repo} --model {base} --method {method} --config-name {method}"
            )
    return lines


def _limitations(prov: Provenance) -> list[str]:
    judge = prov.judge or {}
    generation = prov.generation or {}
    notes = []
    judges = [m["id"] for m in judge.get("models", [])]
    if judges:
        notes.append(
            "Scores come from LLM judges, not people. Judges make mistakes and have known biases "
            "(position, length, style); nobody checked the labels by hand."
        )
        shared = sorted(set(judges) & {m["id"] for m in generation.get("models", [])})
        if shared:
            notes.append(
                f"{', '.join(f'`{m}`' for m in shared)} both wrote and judged completions: expect self-preference."
            )
    truncated = prov.usage.truncated if prov.usage else None
    if truncated:
        notes.append(f"{truncated:,} completions stopped at the token limit (finish_reason `length`).")
    if generation:
        notes.append(
            "Completions are model outputs: they can be wrong or unsafe, and the terms of the providers "
            "of the models above may apply to them."
        )
    notes.extend(prov.limitations or [])
    return notes


def render_card(provenance: Provenance, *, repo_id: str | None = None) -> DatasetCard:
    """Render the card of a folder from its provenance (what its ``hfpref.json`` records).

    Reads ``configs`` (with ``splits`` row counts, ``columns`` and optional ``statistics``), ``default_config``,
    ``license``, ``pretty_name``, ``tags``, ``summary`` and, when known, ``source`` (imported data: a
    dict shown as a list), ``source_statistics`` (records read, used and skipped, and distributions:
    see :func:`hfpref.importers.base.distribution`), ``generation``, ``judge``, ``curate``, ``input``,
    ``usage``, ``limitations`` (a list of notes) and ``figures`` (their statistics: each figure drawn
    in ``images/`` is linked, with its caption and numbers, and the card says why the others are not). A ``generation`` or ``judge`` section marked
    ``inferred`` was read from the data's columns, and the card says that its settings were not
    recorded. ``repo_id`` fills the usage snippets.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    configs = provenance.configs
    default = provenance.default_config or next(iter(configs))
    license_ = provenance.license
    tags = list(
        dict.fromkeys(
            ["hfpref", *(provenance.tags or []), *(CONFIG_TAGS[c] for c in configs if c in CONFIG_TAGS)]
        )
    )
    largest = max(sum((info.splits or {}).values()) for info in configs.values())
    card_data = DatasetCardData(
        license=license_ or NO_LICENSE,
        pretty_name=provenance.pretty_name,
        size_categories=[size_category(largest)],
        task_categories=["text-generation"],
        tags=tags,
        configs=card_configs(configs, default),
    )
    generation = provenance.generation or {}
    judge = provenance.judge or {}
    usage = provenance.usage
    figures, figures_missing = _figures(provenance.figures)
    context = {
        "title": provenance.pretty_name or "Preference dataset",
        "summary": provenance.summary or _summary(provenance),
        "repo": repo_id or REPO_PLACEHOLDER,
        "default_config": default,
        "configs": _config_rows(configs),
        "snippets": _usage_snippets(list(configs), repo_id or REPO_PLACEHOLDER),
        "generation": _section(generation, ("n", "temperature", "top_p", "max_tokens", "seed")),
        "judge": _section(judge, ("mode", "aggregate", "scale", "swap")),
        "curate": provenance.curate,
        "reasoning": _reasoning(provenance),
        "input_summary": _input_summary(provenance.input),
        "judge_stats": _judge_stats(provenance.input, judge.get("statistics")),
        "usage": {
            "prompt_tokens": f"{usage.prompt_tokens:,}",
            "completion_tokens": f"{usage.completion_tokens:,}",
            "cost": _cost(usage.cost_usd),
            "batch": None
            if not usage.batch_completions
            else f"{usage.batch_completions:,} completions in {usage.batches:,} batch(es), at the batch price",
        }
        if usage is not None
        else None,
        "source": [(key, _value(key, value)) for key, value in (provenance.source or {}).items()],
        "source_stats": _source_stats(provenance.source_statistics),
        "figures": figures,
        "figures_missing": figures_missing,
        "limitations": _limitations(provenance),
        "license_text": license_text(provenance, license_),
    }
    return DatasetCard.from_template(card_data, template_path=str(templates_dir() / TEMPLATE), **context)


def merge_card(remote: DatasetCard, ours: DatasetCard, *, keep_remote_license: bool) -> DatasetCard:
    """Our card with the YAML keys the remote card has and ours lacks kept.

    Ours win for every key we write, except: ``tags`` are united; remote ``configs`` entries for configs
    we do not write are kept (without ``default``); the remote license is kept when
    ``keep_remote_license`` (we wrote ``other`` only because none was given).
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    data = remote.data.to_dict()
    for key, value in ours.data.to_dict().items():
        if key == "configs":
            names = {entry["config_name"] for entry in value}
            kept = [
                {k: v for k, v in entry.items() if k != "default"}
                for entry in data.get("configs", [])
                if entry.get("config_name") not in names
            ]
            value = value + kept
        elif key == "tags":
            value = list(dict.fromkeys([*value, *data.get("tags", [])]))
        elif key == "license" and keep_remote_license and data.get("license"):
            continue
        data[key] = value
    merged = DatasetCard(str(ours))
    merged.data = DatasetCardData(**data)
    return merged


def check_license(license_: str | None) -> str | None:
    """A license id is one token (``apache-2.0``, ``cc-by-4.0``); None means none was given."""
    if license_ is not None and (not license_.strip() or any(ch.isspace() for ch in license_.strip())):
        raise ConfigError(f"license: expected a license id such as apache-2.0 or cc-by-4.0, got {license_!r}")
    return license_.strip() if license_ else None
