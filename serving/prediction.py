"""Prediction as plain functions (tests and scripts call them directly; the UI wraps them)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from PIL import Image

from .attention import caption_attention
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
) -> dict:
    """One photo -> `{"rating": float | None, "caption": str | None, "latency_ms": {...}, ...}`.

    `latency_ms` has `decode`, `rating`, `caption` (each model's own time) and `total`; with an
    attention caption model, `attention` holds the photo, the caption's words and their weights
    (`serving.attention.attention_figure` draws them).
    """
    num_beams = check_beams(num_beams)
    reader = _reader(rating_model, caption_model)
    start = time.perf_counter()
    picture = reader.load_image(image, max_pixels=max_pixels)
    latency = {"decode": (time.perf_counter() - start) * 1000}
    rating = caption = None
    if rating_model is not None:
        tick = time.perf_counter()
        rating = rating_model([picture])[0]
        latency["rating"] = (time.perf_counter() - tick) * 1000
    attention = None
    if caption_model is not None:
        tick = time.perf_counter()
        if caption_model.model.config.attention:  # the same caption, and where it looked per word
            with caption_model.autocast():
                caption, words, weights = caption_attention(
                    caption_model.model, caption_model.processor, picture, num_beams
                )
            attention = {"photo": picture, "words": words, "weights": weights,
                         "side": caption_model.image_processor.image_size}  # fmt: skip
        else:
            caption = caption_model([picture], num_beams=num_beams)[0]
        latency["caption"] = (time.perf_counter() - tick) * 1000
    latency["total"] = (time.perf_counter() - start) * 1000
    return {"rating": rating, "caption": caption, "latency_ms": latency, "num_beams": num_beams,
            "attention": attention}  # fmt: skip


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
        n = len(images)
        ratings = rating_model(images) if rating_model else [None] * n
        captions = caption_model(images, num_beams=num_beams) if caption_model else [None] * n
        return [{"rating": r, "caption": c} for r, c in zip(ratings, captions, strict=True)]

    rows = _in_chunks(items, columns, reader, max_pixels, progress, thumbnails)
    table = pd.DataFrame(rows, columns=["file", "rating", "caption", "error"])
    return table.drop(
        columns=[c for c, m in (("rating", rating_model), ("caption", caption_model)) if m is None]
    )


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
