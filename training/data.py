"""Opening and checking a dataset folder written by `python -m hf_dataset`, the same way in every script."""

from __future__ import annotations

import io
import statistics
from collections.abc import Sequence
from pathlib import Path

import datasets
from PIL import Image

from .script import UserError

SPLITS = ("train", "validation", "test")


def load_saved(path: Path) -> datasets.Dataset | datasets.DatasetDict:
    """`datasets.load_from_disk(path)`, a missing folder or a folder that is not a saved dataset
    being a UserError (one line)."""
    if not path.is_dir():
        raise UserError(f"dataset folder not found: {path}")
    try:
        return datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise UserError(f"{path} is not a saved dataset (load_from_disk failed: {error})") from None


def load_splits(
    path: str | Path, required_columns: Sequence[str], splits: Sequence[str] = SPLITS
) -> datasets.DatasetDict:
    """The DatasetDict saved at `path`, checked to have `splits`, each with `required_columns`.

    Raises UserError (one line) for a missing folder, a folder that is not a saved DatasetDict, a
    missing split or a missing column.
    """
    path = Path(path)
    dataset = load_saved(path)
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


def has_caption(caption: str | None) -> bool:
    # A module-level function, not a lambda in a script: `datasets` hashes a filter's code and module
    # into the filtered split's fingerprint, which the feature cache's key holds, so the key must
    # not depend on whether a script or an importer ran the filter.
    return caption is not None and caption.strip() != ""


def drop_empty_captions(dataset: datasets.DatasetDict) -> dict[str, int]:
    """Drops (in place) the rows of every split whose caption is missing or blank; returns the
    number dropped per split."""
    dropped = {}
    for split in dataset:
        before = len(dataset[split])
        # in memory: a cache file would be written into the dataset's own folder (which may be
        # read-only or shared, and whose `train/*.arrow` files `load_dataset` reads as data)
        dataset[split] = dataset[split].filter(
            has_caption, input_columns="caption", keep_in_memory=True
        )
        dropped[split] = before - len(dataset[split])
    return dropped


def photo_resolution(split: datasets.Dataset, sample: int = 2000) -> int:
    """The median longest side, in pixels, of a split's photos: the resolution a model trained on
    them has learned (the image processor's `training_resolution`). Read from the headers of up to
    `sample` photos spread evenly over the split."""
    step = max(1, len(split) // sample)
    photos = split.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    sides = []
    for row in photos.select(range(0, len(split), step)):
        source = (
            io.BytesIO(row["image"]["bytes"]) if row["image"]["bytes"] else row["image"]["path"]
        )
        with Image.open(source) as image:  # the header only
            sides.append(max(image.size))
    return round(statistics.median(sides))
