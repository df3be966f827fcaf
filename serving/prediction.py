"""Prediction as plain functions (tests and scripts call them directly; the UI wraps them)."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from PIL import Image

from .attention import caption_details
from .images import MAX_PIXELS, InputError, Source, collect_images
from .models import CaptionModel, RatingModel, ServedModel

MAX_BEAMS = 8
BATCH_SIZE = 16  # images per forward pass in Batch and Compare
MAX_THUMBNAILS, THUMBNAIL_SIDE = 200, 160  # the Batch tab's gallery: the first 200, small
COMPARE_COLUMNS = ["file", "rating A", "rating B", "rating B - A", "caption A", "caption B",
                   "same caption", "error"]  # fmt: skip


def check_beams(num_beams) -> int:
    if not isinstance(num_beams, int | float) or num_beams not in range(1, MAX_BEAMS + 1):
        raise InputError(
            f"the beam size must be a whole number from 1 to {MAX_BEAMS}, got {num_beams}"
        )
    return int(num_beams)


def predict(
    image: str | Path | io.BytesIO,
    rating_model: RatingModel | None,
    caption_model: CaptionModel | None,
    num_beams: int = 3,
    max_pixels: int = MAX_PIXELS,
    rating_map: bool = False,
) -> dict:
    """One photo -> the data, for the page and the API alike:

        rating         float in [1, 5], or None without a rating model
        interval       [low, high] at `coverage` (0.9: 90% of true ratings inside), or None
        caption        the product title, or None without a caption model
        caption_score  its mean log-probability per word, end included (<= 0; higher: surer)
        words          [{"word", "probability"}] in the title's order
        latency_ms     decode, rating (rating_map), caption, total: each step's own time

    plus what the figure is drawn from: `attention` (the photo, the words, their (L, N) weights, the
    model's side) for a caption model with attention, `rating_map` ((S, S) occlusion map, when asked and
    the model has it).
    """
    num_beams = check_beams(num_beams)
    reader = _reader(rating_model, caption_model)
    start = time.perf_counter()
    picture = reader.load_image(image, max_pixels=max_pixels)
    latency = {"decode": _ms(start)}
    result = {"rating": None, "interval": None, "coverage": None, "caption": None,
              "caption_score": None, "words": [], "num_beams": num_beams, "attention": None,
              "rating_map": None}  # fmt: skip
    if rating_model is not None:
        tick = time.perf_counter()
        ratings, intervals = rating_model.rate([picture])
        result["rating"] = ratings[0]
        if intervals is not None:
            result["interval"], result["coverage"] = intervals[0], rating_model.coverage
        latency["rating"] = _ms(tick)
        if rating_map:
            tick = time.perf_counter()
            result["rating_map"] = rating_model.rating_map(picture)
            latency["rating_map"] = _ms(tick)
    if caption_model is not None:
        tick = time.perf_counter()
        with caption_model.autocast():
            details = caption_details(
                caption_model.model, caption_model.processor, picture, num_beams
            )
        latency["caption"] = _ms(tick)
        result["caption"] = details["caption"]
        scores = details["log_probs"]
        result["caption_score"] = sum(scores) / len(scores) if scores else None
        result["words"] = [{"word": w, "probability": math.exp(lp)}
                           for w, lp in zip(details["words"], scores, strict=False)]  # fmt: skip
        if details["weights"] is not None:
            result["attention"] = {"photo": picture, "words": details["words"],
                                   "weights": details["weights"],
                                   "side": caption_model.image_processor.image_size}  # fmt: skip
    if result["attention"] is None and result["rating_map"] is not None:
        result["attention"] = {"photo": picture, "words": [], "weights": None, "side": None}
    latency["total"] = _ms(start)
    result["latency_ms"] = latency
    return result


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def predict_batch(
    files: Iterable[str | Path],
    rating_model: RatingModel | None,
    caption_model: CaptionModel | None,
    num_beams: int = 3,
    max_pixels: int = MAX_PIXELS,
    progress: Callable | None = None,
    thumbnails: list | None = None,
) -> pd.DataFrame:
    """Photos and zip files of photos -> a table with one row per photo: file, rating, caption, error.

    Both models run on BATCH_SIZE images at a time (one forward pass, one batched beam search). A
    `thumbnails` list gets (small image, row index) for every photo that could be read.
    """
    num_beams = check_beams(num_beams)
    reader = _reader(rating_model, caption_model)
    items = _collect(files)

    def columns(images):
        rows = [{} for _ in images]
        if rating_model is not None:
            ratings, intervals = rating_model.rate(images)
            for i, row in enumerate(rows):
                row["rating"] = ratings[i]
                if intervals is not None:
                    row["rating_low"], row["rating_high"] = intervals[i]
        if caption_model is not None:
            for row, caption in zip(rows, caption_model(images, num_beams=num_beams), strict=True):
                row["caption"] = caption
        return rows

    rows = _in_chunks(items, columns, reader, max_pixels, progress, thumbnails)
    served = [c for c, m in (("rating", rating_model), ("caption", caption_model)) if m is not None]
    if rating_model is not None and rating_model.coverage is not None:
        served[1:1] = ["rating_low", "rating_high"]  # the interval beside the rating
    return pd.DataFrame(rows, columns=["file", *served, "error"])


def compare_models(
    files: Iterable[str | Path],
    models: dict[str, RatingModel | CaptionModel | None],
    num_beams: int = 3,
    max_pixels: int = MAX_PIXELS,
    progress: Callable | None = None,
) -> pd.DataFrame:
    """Run up to four models (`models` keys: "rating A", "rating B", "caption A", "caption B") on the
    same photos -> one row per photo with each model's output, and the rating difference B - A."""
    num_beams = check_beams(num_beams)
    models = {name: model for name, model in models.items() if model is not None}
    if not models:
        raise InputError("give at least one model to compare")
    items = _collect(files)

    def columns(images):
        outputs = {
            name: model(images) if model.task == "rating" else model(images, num_beams=num_beams)
            for name, model in models.items()
        }
        return [{name: values[i] for name, values in outputs.items()} for i in range(len(images))]

    reader = next(iter(models.values()))
    table = pd.DataFrame(_in_chunks(items, columns, reader, max_pixels, progress))
    for name in models:
        if name not in table:
            table[name] = None  # every photo failed: keep the column
    if "rating A" in models and "rating B" in models:
        table["rating B - A"] = table["rating B"] - table["rating A"]
    if "caption A" in models and "caption B" in models:
        table["same caption"] = (table["caption A"] == table["caption B"]) & (table["error"] == "")
    return table[[c for c in COMPARE_COLUMNS if c in table]]


def _reader(*models: ServedModel | None) -> ServedModel:
    """The model whose image processor reads the photos: every saved model carries the same loader."""
    for model in models:
        if model is not None:
            return model
    raise InputError("no model to predict with")


def _collect(files: Iterable[str | Path] | None) -> list[tuple[str, Source]]:
    items = collect_images(files or [])
    if not items:
        raise InputError("no files given: upload photos or a zip of photos")
    return items


def _in_chunks(
    items: list[tuple[str, Source]],
    columns: Callable[[list[Image.Image]], list[dict]],
    reader: ServedModel,
    max_pixels: int,
    progress: Callable | None,
    thumbnails: list | None = None,
) -> list[dict]:
    """Read `items` BATCH_SIZE at a time and run `columns` on each chunk of images; a file that
    cannot be used gets a row with its error instead of stopping the others."""
    rows = []
    for start in range(0, len(items), BATCH_SIZE):
        chunk_rows, images, good = [], [], []
        for name, source in items[start : start + BATCH_SIZE]:
            row = {"file": name, "error": ""}
            try:
                if isinstance(source, InputError):
                    raise source
                if callable(source):
                    source = source()
                images.append(reader.load_image(source, name, max_pixels))
                good.append(row)
                if thumbnails is not None and len(thumbnails) < MAX_THUMBNAILS:
                    small = images[-1].copy()
                    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
                    thumbnails.append((small, start + len(chunk_rows)))
            except InputError as error:
                row["error"] = str(error)
            chunk_rows.append(row)
        if images:
            for row, values in zip(good, columns(images), strict=True):
                row.update(values)
        rows += chunk_rows
        if progress is not None:
            progress(len(rows) / len(items), desc=f"{len(rows)} of {len(items)} images")
    if all(row["error"] for row in rows):
        raise InputError(
            f"none of the {len(rows)} files could be used; the first: {rows[0]['error']}"
        )
    return rows
