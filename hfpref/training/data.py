"""The training data: a dataset folder from ``hfpref curate`` or the Hub repo it was pushed to, as the
train (and eval) split of one config with the columns its TRL trainer reads.

``load_dataset(DATASET, CONFIG)`` reads both; ``dpo`` (also on the ``step_dpo`` config), ``kto`` and
``sft`` have their own column sets, and other columns (scores, models, step indices) are dropped. A
plain TRL-format dataset without named configs (only ``default``) trains as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from hfpref.errors import HubError, InputError
from hfpref.repo.parquet import check_parquet
from hfpref.training.options import METHOD_OF_CONFIG

if TYPE_CHECKING:
    from datasets import Dataset

# Accepted column sets per method, first match wins; other columns are dropped before training.
COLUMNS: dict[str, tuple[tuple[str, ...], ...]] = {
    "dpo": (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
    "kto": (("prompt", "completion", "label"),),
    "sft": (("prompt", "completion"), ("messages",), ("text",)),
}


class TrainingData(NamedTuple):
    train: Dataset
    eval: Dataset | None
    config_name: str


def load_training_data(
    dataset: str,
    config_name: str | None,
    method: str,
    *,
    train_split: str = "train",
    test_split: str = "test",
) -> TrainingData:
    """The train (and test) split of the config (None: the method's, or ``default``), method columns only.

    ``train_split`` / ``test_split`` are TRL's ``dataset_train_split`` / ``dataset_test_split``.
    """
    from datasets import get_dataset_config_names, load_dataset

    local = Path(dataset)
    if local.is_file():
        raise InputError(
            f"--dataset {dataset} is a file; give a dataset folder (as `hfpref curate` writes) or a Hub repo id"
        )
    for shard in sorted(local.rglob("*.parquet")) if local.is_dir() else ():
        check_parquet(shard)  # one line for a corrupt shard, before datasets logs its own
    try:
        names = get_dataset_config_names(dataset)
        wanted = config_name or method
        if wanted not in names and config_name is None and names == ["default"]:
            wanted = "default"
        if wanted not in names:
            hint = f"; write it with `hfpref curate --formats {wanted}`" if wanted in METHOD_OF_CONFIG else ""
            raise InputError(
                f"dataset {dataset} has no config {wanted!r} (configs: {', '.join(names)}){hint}"
            )
        splits = load_dataset(dataset, wanted)
    except FileNotFoundError as exc:
        raise InputError(
            f"dataset {dataset} not found: give a folder or a Hub dataset repo id ({exc})"
        ) from None
    except ValueError as exc:
        raise InputError(f"dataset {dataset}: {exc}") from None
    except OSError as exc:
        raise HubError(f"could not read dataset {dataset} from the Hub: {exc}") from None
    if train_split not in splits or len(splits[train_split]) == 0:
        raise InputError(
            f"dataset {dataset} config {wanted!r} has no {train_split} rows (splits: {list(splits)})"
        )
    train = _select_columns(splits[train_split], dataset, wanted, method)
    test = _select_columns(splits[test_split], dataset, wanted, method) if test_split in splits else None
    return TrainingData(train, test, wanted)


def _select_columns(ds: Dataset, dataset: str, config_name: str, method: str) -> Dataset:
    for columns in COLUMNS[method]:
        if set(columns) <= set(ds.column_names):
            if method == "kto" and getattr(ds.features["label"], "dtype", None) != "bool":
                raise InputError(f"dataset {dataset} config {config_name!r}: kto needs a bool label column")
            return ds.select_columns(list(columns))
    expected = " or ".join("(" + ", ".join(c) + ")" for c in COLUMNS[method])
    raise InputError(
        f"dataset {dataset} config {config_name!r} has columns ({', '.join(ds.column_names)}); "
        f"{method} training needs {expected}"
    )
