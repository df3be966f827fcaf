"""Opening and checking a dataset folder written by `python -m hf_dataset`, the same way in every script."""

from __future__ import annotations

import types
from collections.abc import Sequence
from pathlib import Path

import datasets

from .script import UserError

SPLITS = ("train", "validation", "test")


def load_splits(
    path: str | Path, required_columns: Sequence[str], splits: Sequence[str] = SPLITS
) -> datasets.DatasetDict:
    """The DatasetDict saved at `path`, checked to have `splits`, each with `required_columns`.

    Raises UserError (one line) for a missing folder, a folder that is not a saved DatasetDict, a
    missing split or a missing column.
    """
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"dataset folder not found: {path}")
    try:
        dataset = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise UserError(f"{path} is not a saved dataset (load_from_disk failed: {error})") from None
    if not isinstance(dataset, datasets.DatasetDict):
        raise UserError(f"{path} must be a DatasetDict with splits {', '.join(splits)}")
    missing = [split for split in splits if split not in dataset]
    if missing:
        raise UserError(
            f"dataset {path} has no split {', '.join(map(repr, missing))} "
            f"(splits: {', '.join(dataset)})"
        )
    for split in splits:
        columns = dataset[split].column_names
        for column in required_columns:
            if column not in columns:
                raise UserError(
                    f"dataset {path} has no {column!r} column in its {split} split "
                    f"(columns: {', '.join(columns)})"
                )
    return dataset


def rated(split: datasets.Dataset) -> tuple[datasets.Dataset, int]:
    """The rows that have a rating, and how many were dropped."""
    ratings = split.select_columns(["rating"])[:]["rating"]
    keep = [i for i, rating in enumerate(ratings) if rating is not None]
    return split.select(keep, keep_in_memory=True), len(split) - len(keep)


# The caption filter exactly as train_caption.py wrote it inline until the scripts shared this
# package, compiled from that text. `datasets` hashes a filter's code (columns included), qualified
# name and module into the filtered split's fingerprint, and the caption feature cache's key holds
# that fingerprint: compiled this way, with the module a script run has (`__main__`), the filter
# hashes as it did in `python train_caption.py` runs, so the caches those runs wrote stay valid.
_SCRIPT_FILTER_SOURCE = """
def load_caption_dataset(path):
    for split in dataset:
        dataset[split] = dataset[split].filter(
            lambda caption: caption is not None and caption.strip() != "", input_columns="caption"
        )
"""


def nonempty_caption_filter():
    """`caption -> caption is not None and caption.strip() != ""`, hashed by `datasets` as the
    filter of earlier `train_caption.py` runs was (see `_SCRIPT_FILTER_SOURCE`)."""
    module = compile(_SCRIPT_FILTER_SOURCE, "train_caption.py", "exec")
    (function,) = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    (code,) = [c for c in function.co_consts if isinstance(c, types.CodeType)]
    return types.FunctionType(code, {"__name__": "__main__"})


def drop_empty_captions(dataset: datasets.DatasetDict) -> dict[str, int]:
    """Drops (in place) the rows of every split whose caption is missing or blank; returns the
    number dropped per split."""
    keep = nonempty_caption_filter()
    dropped = {}
    for split in dataset:
        before = len(dataset[split])
        dataset[split] = dataset[split].filter(keep, input_columns="caption")
        dropped[split] = before - len(dataset[split])
    return dropped
