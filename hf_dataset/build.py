"""Shared by every source: records -> `DatasetDict` on disk, written so that nothing half-done survives.

A source yields plain dicts (`product_id`, `image` as encoded bytes, `caption`, `rating`, `rating_count`
and string extras). `write_dataset` streams them through `Dataset.from_generator` (bounded memory),
splits by `split_for(product_id)`, and writes the dataset, its card and its build report into a
staging folder beside the output, renamed into place only when everything is written.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageOps

from .card import write_dataset_card
from .splits import SPLITS, split_for

DEFAULT_MAX_SIDE = 384
JPEG_QUALITY = 90


class BuildError(ValueError):
    """A problem with the user's input or arguments: reported as one line, never as a traceback."""


def base_features(extra_columns: Iterable[str] = ()) -> datasets.Features:
    """The dataset contract (docs/DESIGN.md): fixed columns plus source extras kept as strings."""
    features = {
        "product_id": datasets.Value("string"),
        "image": datasets.Image(),
        "caption": datasets.Value("string"),
        "rating": datasets.Value("float32"),
        "rating_count": datasets.Value("int32"),
    }
    for name in extra_columns:
        features[name] = datasets.Value("string")
    return datasets.Features(features)


def to_rgb(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """Any PIL image as upright 8-bit RGB, a new image: EXIF orientation applied, the first frame of
    an animation, 16/32-bit and float grayscale scaled (Pillow's `convert` clips them), transparency
    over white (product photos' background; `convert` drops it onto black).

    A copy of `modeling/image_processing.to_rgb` (the data layer imports no model code), tested to
    give the same pixels (`tests/test_image_processing.py`).
    """
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            peak = 1.0 if array.max() <= 1.0 else 255.0
        else:
            peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, background + (255,))
        image = Image.alpha_composite(canvas, image)
    return image.convert("RGB")


def encode_image(image: Image.Image, max_side: int = DEFAULT_MAX_SIDE) -> bytes:
    """RGB (`to_rgb`), longest side capped at `max_side`, JPEG q90: cheap to decode when the data
    loader feeds a GPU."""
    image = to_rgb(image)
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _num_shards(split: datasets.Dataset, shard_bytes: int = 500 * 2**20) -> int:
    """~500 MB shards; `split` selects rows of a larger table, so scale that table's size."""
    size = split.data.nbytes * len(split) // max(1, split.data.num_rows)
    return max(1, -(-size // shard_bytes))


def check_output(output: str | os.PathLike, overwrite: bool) -> Path:
    """Fail before any work if `output` would clobber something the user did not ask to replace."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise BuildError(f"output {output} exists and is not a folder")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise BuildError(f"output folder {output} is not empty; pass --overwrite to replace it")
    return output


def _at_least_one(records: Iterable[dict]) -> Iterable[dict]:
    """The records, or a clear error when there are none (datasets cannot save an empty table)."""
    empty = True
    for record in records:
        empty = False
        yield record
    if empty:
        raise BuildError("nothing to write: every record was dropped (see the counts above)")


def source_summary(
    dataset: datasets.DatasetDict,
    dropped: Mapping[str, Mapping[str, int]],
    seconds: float,
    downloads: dict | None = None,
) -> dict:
    """The report entries a source that reads files or URLs adds once its splits are written.

    Args:
        dataset: the written splits (`write_dataset` hands them to its `summarize`).
        dropped: report key -> counts by reason, e.g. `{"dropped": {"missing_file": 2}}`.
        seconds: the time spent reading the records.
        downloads: a downloading source's counts; the seconds then go with them.
    """
    products = {pid for split in dataset.values() for pid in split["product_id"]}
    summary: dict = {"kept_products": len(products)}
    summary.update({key: dict(sorted(counts.items())) for key, counts in dropped.items()})
    if downloads is None:
        summary["seconds"] = round(seconds, 2)
    else:
        summary["downloads"] = {**downloads, "seconds": round(seconds, 2)}
    return summary


def write_dataset(
    records: Callable[[], Iterable[dict]],
    output: str | os.PathLike,
    *,
    features: datasets.Features,
    report: dict,
    card: dict,
    overwrite: bool = False,
    summarize: Callable[[datasets.DatasetDict], dict] | None = None,
) -> datasets.DatasetDict:
    """Write the records returned by `records()` as a `DatasetDict` with a card and a build report.

    Args:
        records: called once; yields dicts with every column of `features`.
        output: the dataset folder (`datasets.load_from_disk(output)` reads it back).
        features: the columns and their types, usually from `base_features`.
        report: the source's counts and parameters; `kept` per split is added here, then it is
            written as `build_report.json`.
        card: text for the dataset card (see `card.write_dataset_card`).
        overwrite: replace a non-empty `output`.
        summarize: computes more report entries from the finished splits.
    """
    output = check_output(output, overwrite).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    # A build killed outright (SIGKILL, power loss) cannot clean up after itself: do it now.
    for stale in output.parent.glob(f".{output.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in output.parent.glob(f".{output.name}.cache-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        with tempfile.TemporaryDirectory(
            dir=output.parent, prefix=f".{output.name}.cache-"
        ) as cache:
            try:
                full = datasets.Dataset.from_generator(
                    lambda: _at_least_one(records()),
                    features=features,
                    cache_dir=cache,
                    fingerprint=uuid.uuid4().hex,  # the generator is not hashable; the cache is private
                )
            except datasets.exceptions.DatasetGenerationError as error:
                if isinstance(error.__cause__, BuildError):  # raised by the source: one line
                    raise error.__cause__ from None
                raise
            split_of = [split_for(pid) for pid in full["product_id"]]
            dataset = datasets.DatasetDict(
                {
                    name: full.select([i for i, s in enumerate(split_of) if s == name])
                    for name in SPLITS
                }
            )
            # One shard per split at least: datasets saves an empty split as 0 shards it cannot load.
            dataset.save_to_disk(
                str(staging), num_shards={name: _num_shards(dataset[name]) for name in SPLITS}
            )
        report = {**report, "kept": {name: len(dataset[name]) for name in SPLITS}}
        report["kept"]["total"] = sum(report["kept"].values())
        if summarize is not None:
            report.update(summarize(dataset))
        (staging / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
        write_dataset_card(staging, datasets.load_from_disk(str(staging)), report, **card)
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return datasets.load_from_disk(str(output))
