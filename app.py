"""Gradio app for the fashion product models: a photo in, its star rating and product title out.

    python app.py                                  # the models `make demo` trains
    python app.py --rating_model outputs/rating --caption_model user/product-caption
    python app.py --host 0.0.0.0 --port 8080       # reachable from other machines

Each model is looked up in this order: the command-line flag, the environment variable
(`RATING_MODEL`, `CAPTION_MODEL`: how a Hub Space names its models), `models/rating` and
`models/caption` next to this file (where `python -m model_cards publish-space` copies local folders),
then `outputs/demo/rating` and `outputs/demo/caption` (what `make demo` trains). A flag or
variable may be a local folder or a Hub id. With one model the app serves that one alone.

Tabs: Predict (one photo), Batch (many photos or a zip; a table, a CSV and a histogram), Compare (two
models of a kind side by side) and Model info (each model's card, metrics and plots). The Predict,
Batch and Compare buttons are also API endpoints (`/predict`, `/batch`, `/compare`) for `gradio_client`.

This file is self-contained on purpose: a Space runs it alone. The model code comes with each saved
model (`trust_remote_code=True`), so nothing from this repository's packages is imported here.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import os
import re
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import gradio as gr
import matplotlib
import numpy as np
import pandas as pd
import torch
from huggingface_hub import snapshot_download
from matplotlib.figure import Figure
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

matplotlib.use("Agg")  # figures are rendered to images on a server, never shown in a window

HERE = Path(__file__).resolve().parent
TASKS = ("rating", "caption")
MODEL_TYPES = {"rating": "product_rating", "caption": "product_caption"}
ENV_VARS = {"rating": "RATING_MODEL", "caption": "CAPTION_MODEL"}
DEFAULT_FOLDERS = {
    "rating": ("models/rating", "outputs/demo/rating"),
    "caption": ("models/caption", "outputs/demo/caption"),
}
TRAIN_HINTS = {
    "rating": "python train_rating.py --dataset DIR --output_dir outputs/demo/rating",
    "caption": "accelerate launch train_caption.py --dataset DIR --output_dir outputs/demo/caption",
}

# Photos are refused above this many pixels before they are decoded: a 12,000 x 12,000 image is
# 432 MB of RGB, and a small PNG can declare one (a decompression bomb).
MAX_MEGAPIXELS = 64
MAX_PIXELS = MAX_MEGAPIXELS * 10**6
# The datasets store images with their longest side capped at 384 px (JPEG q90), so the models were
# trained on such images. Uploads are shrunk the same way, which also makes big photos cheap.
MAX_SIDE = 384
MAX_BEAMS = 8
MAX_BATCH_IMAGES = 1000
BATCH_SIZE = 16  # images per forward pass in Batch and Compare
MAX_FILE_SIZE = "200mb"  # per uploaded file (a zip of photos can be large)
MAX_MEMBER_BYTES = 50 * 2**20  # per photo inside a zip
EXAMPLES = sorted((HERE / "examples").glob("*.jpg"))
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # a GPU Space uses its GPU

# Comparing a typed Hub id runs that repository's code (trust_remote_code=True). On your own machine
# that is your call; on a public Space any visitor could make it run any code, so a Space compares
# only local folders and the models it serves, unless its owner sets ALLOW_HUB_MODELS=1.
ALLOW_TYPED_HUB_IDS = "SPACE_ID" not in os.environ or os.environ.get("ALLOW_HUB_MODELS") == "1"


class InputError(ValueError):
    """Something wrong with what the user gave (a file, a setting): shown in the page as one line."""


class ModelError(RuntimeError):
    """A model that cannot be found or loaded, or is not the kind asked for."""


# ---------------------------------------------------------------------------------------------------
# Images: every check happens here, before and while decoding, with a message that names the file.


def load_image(
    source: str | Path | io.BytesIO, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """A photo file (path or bytes) -> an RGB image with its longest side at most `MAX_SIDE`.

    Raises `InputError` for empty, non-image, truncated and oversized files. Unusual but valid images
    are converted, not refused: grayscale, palette, CMYK, 16-bit (scaled to 8 bits), transparency
    (composited on white), EXIF rotation, animations (first frame).
    """
    name = name or Path(str(source)).name
    if isinstance(source, io.BytesIO):
        size = source.getbuffer().nbytes
    elif Path(source).is_file():
        size = Path(source).stat().st_size
    else:
        raise InputError(f"{name} not found")
    if size == 0:
        raise InputError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            opened = Image.open(source)  # reads the header only
    except Image.DecompressionBombError as error:  # Pillow's own limit, twice MAX_IMAGE_PIXELS
        raise InputError(f"{name} is too large ({error})") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(
            f"{name} is not an image this app can read (JPEG, PNG, WebP, GIF, ...)"
        ) from None

    with opened as image:  # closes the file, animations' included
        width, height = image.size
        if width * height > max_pixels:
            raise InputError(
                f"{name} is {width:,} x {height:,} pixels ({width * height / 1e6:.0f} megapixels); "
                f"the limit is {max_pixels / 1e6:.0f} megapixels: resize it and try again"
            )
        try:
            if getattr(image, "is_animated", False):
                image.seek(0)  # an animated GIF or WebP: its first frame
            # JPEG only: decode at the smallest scale (1/2, 1/4, 1/8) still >= MAX_SIDE, much faster
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))
            image.load()
        except Exception as error:  # truncated or corrupt data shows only while decoding
            raise InputError(f"{name} is truncated or corrupt ({error})") from None
        rgb = to_rgb(ImageOps.exif_transpose(image))  # a new image: the file can close
    rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return rgb


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL mode as 8-bit RGB. Pillow's own `convert` clips 16-bit values to white and drops alpha
    onto black; product photos want 16-bit scaled down and transparency on a white background."""
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit integer or float grayscale
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


def collect_images(files: Iterable[str | Path]) -> list[tuple[str, str | Callable | InputError]]:
    """Uploaded files -> (name, source) for every photo, the members of zip files included.

    A zip member's source is a function that reads it into memory when its turn comes (members are
    never extracted, so no path inside an archive can write anywhere); folders and hidden files such
    as macOS's `__MACOSX/._*` are skipped. A file that cannot be opened gets its error as source.
    """
    items = []
    for file in files:
        path = Path(file)
        if path.suffix.lower() != ".zip":
            items.append((path.name, str(path)))
            continue
        try:
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    parts = Path(info.filename).parts
                    if info.is_dir() or any(p.startswith((".", "__MACOSX")) for p in parts):
                        continue
                    name = f"{path.name}/{info.filename}"
                    items.append((name, functools.partial(_read_member, path, info, name)))
                    if len(items) > MAX_BATCH_IMAGES:
                        break  # refused below; no need to list a million members
        except (zipfile.BadZipFile, OSError) as error:
            items.append(
                (path.name, InputError(f"{path.name} is not a readable zip file ({error})"))
            )
    if len(items) > MAX_BATCH_IMAGES:
        raise InputError(
            f"{len(items):,} images in one batch; the limit is {MAX_BATCH_IMAGES:,}: split them up"
        )
    return items


def _read_member(archive: Path, info: zipfile.ZipInfo, name: str) -> io.BytesIO:
    try:
        with zipfile.ZipFile(archive) as zipped, zipped.open(info) as member:
            data = member.read(MAX_MEMBER_BYTES + 1)  # the header's size may lie: never read more
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as error:
        raise InputError(f"{name} could not be read from the zip file ({error})") from None
    if len(data) > MAX_MEMBER_BYTES:
        raise InputError(f"{name} is larger than {MAX_MEMBER_BYTES // 2**20} MB")
    return io.BytesIO(data)


# ---------------------------------------------------------------------------------------------------
# Models: loaded once with `from_pretrained` (local folder or Hub id), always in eval mode.


class _ServedModel:
    """A model (folder or Hub id) and its processor, loaded once, the model in eval mode."""

    task: str
    processor_class: type

    def __init__(self, source: str):
        self.source = str(source)
        self.model = _load(AutoModel, self.source, self.task).eval().to(DEVICE)
        self.processor = _load(self.processor_class, self.source, self.task)


class RatingModel(_ServedModel):
    """A `product_rating` model and its image processor. Call it on RGB images to get ratings in [1, 5]."""

    task, processor_class = "rating", AutoImageProcessor

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image]) -> list[float]:
        pixel_values = self.processor(images)["pixel_values"].to(DEVICE)  # (B, 3, S, S)
        return self.model(pixel_values=pixel_values).predictions.tolist()  # (B,)


class CaptionModel(_ServedModel):
    """A `product_caption` model and its processor (image processor + tokenizer). Call it on RGB images
    to get product titles; `num_beams=1` is greedy decoding."""

    task, processor_class = "caption", AutoProcessor

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image], num_beams: int = 3) -> list[str]:
        pixel_values = self.processor(images=images)["pixel_values"].to(DEVICE)  # (B, 3, S, S)
        ids = self.model.generate(pixel_values=pixel_values, num_beams=num_beams)  # (B, 1 + L)
        return self.processor.batch_decode(ids, skip_special_tokens=True)


MODEL_CLASSES = {"rating": RatingModel, "caption": CaptionModel}


def _load(auto_class, source: str, task: str):
    """`auto_class.from_pretrained(source)` with the model's own code; any failure is one line."""
    looks_like_a_path = source.startswith((".", "/", "~")) or source.count("/") > 1  # not a Hub id
    if looks_like_a_path and not Path(source).exists():
        raise ModelError(f"could not load the {task} model {source}: no such folder")
    try:
        if auto_class is AutoModel:  # check the kind before loading any weights
            model_type = AutoConfig.from_pretrained(source, trust_remote_code=True).model_type
            if model_type != MODEL_TYPES[task]:
                raise ModelError(
                    f"{source} is a {model_type!r} model, not a {task} model ({MODEL_TYPES[task]!r})"
                )
        return auto_class.from_pretrained(source, trust_remote_code=True)
    except ModelError:
        raise
    except Exception as error:  # unknown Hub id, offline, corrupt files, ...: all one line
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = lines[0] if lines else type(error).__name__
        raise ModelError(f"could not load the {task} model {source}: {reason}") from None


def load_model(task: str, source: str | Path) -> RatingModel | CaptionModel:
    return MODEL_CLASSES[task](str(source))


def resolve_model(task: str, flag: str | None = None) -> str | None:
    """Where the `task` model comes from: the flag, its environment variable, then the default folders."""
    if flag:
        return flag
    if os.environ.get(ENV_VARS[task]):
        return os.environ[ENV_VARS[task]]
    for folder in DEFAULT_FOLDERS[task]:
        if (HERE / folder / "config.json").is_file():
            return str(HERE / folder)
    return None


def missing_model_hint(task: str) -> str:
    folders = " or ".join(f"`{f}`" for f in DEFAULT_FOLDERS[task])
    return (
        f"No {task} model: none given (`--{task}_model PATH_OR_ID` or `{ENV_VARS[task]}`) and none in "
        f"{folders}. Train the demo's with `make demo`, or your own with `{TRAIN_HINTS[task]}`."
    )


class ModelCache:
    """Models for the Compare tab, loaded on demand and kept by (task, source). The served models are
    always there; of the others, the `capacity` most recently used are kept."""

    def __init__(self, served: Iterable[RatingModel | CaptionModel], capacity: int = 4):
        self.served = {(m.task, m.source): m for m in served}
        self.capacity = capacity
        self._loaded: OrderedDict[tuple[str, str], RatingModel | CaptionModel] = OrderedDict()
        self._lock = threading.Lock()  # one load at a time; a model is loaded once

    def get(self, task: str, source: str) -> RatingModel | CaptionModel:
        key = (task, source)
        if key in self.served:
            return self.served[key]
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            if not ALLOW_TYPED_HUB_IDS and not Path(source).is_dir():
                raise ModelError(
                    f"{source}: this Space compares only local folders and the models it serves "
                    "(loading a Hub id would run that repository's code)"
                )
            model = load_model(task, source)
            self._loaded[key] = model
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
            return model


# ---------------------------------------------------------------------------------------------------
# Prediction: plain functions (tests and scripts call them directly; the UI wraps them).


def _check_beams(num_beams) -> int:
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
    """One photo -> `{"rating": float | None, "caption": str | None, "latency_ms": {...}}`.

    `latency_ms` has `decode`, `rating`, `caption` (each model's own time) and `total`.
    """
    num_beams = _check_beams(num_beams)
    start = time.perf_counter()
    picture = load_image(image, max_pixels=max_pixels)
    latency = {"decode": (time.perf_counter() - start) * 1000}
    rating = caption = None
    if rating_model is not None:
        tick = time.perf_counter()
        rating = rating_model([picture])[0]
        latency["rating"] = (time.perf_counter() - tick) * 1000
    if caption_model is not None:
        tick = time.perf_counter()
        caption = caption_model([picture], num_beams=num_beams)[0]
        latency["caption"] = (time.perf_counter() - tick) * 1000
    latency["total"] = (time.perf_counter() - start) * 1000
    return {"rating": rating, "caption": caption, "latency_ms": latency, "num_beams": num_beams}


def _in_chunks(
    items: list[tuple[str, str | Callable | InputError]],
    columns: Callable[[list[Image.Image]], list[dict]],
    max_pixels: int,
    progress: Callable | None,
) -> list[dict]:
    """Decode `items` BATCH_SIZE at a time and run `columns` on each chunk of images; a file that
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
                images.append(load_image(source, name, max_pixels))
                good.append(row)
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


def predict_batch(
    files: Iterable[str | Path],
    rating_model: RatingModel | None,
    caption_model: CaptionModel | None,
    num_beams: int = 3,
    max_pixels: int = MAX_PIXELS,
    progress: Callable | None = None,
) -> pd.DataFrame:
    """Photos and zip files of photos -> a table with one row per photo: file, rating, caption, error.

    Both models run on BATCH_SIZE images at a time (one forward pass, one batched beam search).
    """
    num_beams = _check_beams(num_beams)
    items = collect_images(files or [])
    if not items:
        raise InputError("no files given: upload photos or a zip of photos")

    def columns(images):
        n = len(images)
        ratings = rating_model(images) if rating_model else [None] * n
        captions = caption_model(images, num_beams=num_beams) if caption_model else [None] * n
        return [{"rating": r, "caption": c} for r, c in zip(ratings, captions, strict=True)]

    rows = _in_chunks(items, columns, max_pixels, progress)
    table = pd.DataFrame(rows, columns=["file", "rating", "caption", "error"])
    return table.drop(
        columns=[c for c, m in (("rating", rating_model), ("caption", caption_model)) if m is None]
    )


COMPARE_COLUMNS = ["file", "rating A", "rating B", "rating B - A", "caption A", "caption B",
                   "same caption", "error"]  # fmt: skip


def compare_models(
    files: Iterable[str | Path],
    models: dict[str, RatingModel | CaptionModel | None],
    num_beams: int = 3,
    max_pixels: int = MAX_PIXELS,
    progress: Callable | None = None,
) -> pd.DataFrame:
    """Run up to four models (`models` keys: "rating A", "rating B", "caption A", "caption B") on the
    same photos -> one row per photo with each model's output, and the rating difference B - A."""
    num_beams = _check_beams(num_beams)
    models = {name: model for name, model in models.items() if model is not None}
    if not models:
        raise InputError("give at least one model to compare")
    items = collect_images(files or [])
    if not items:
        raise InputError("no files given: upload photos or a zip of photos")

    def columns(images):
        outputs = {
            name: model(images) if model.task == "rating" else model(images, num_beams=num_beams)
            for name, model in models.items()
        }
        return [{name: values[i] for name, values in outputs.items()} for i in range(len(images))]

    table = pd.DataFrame(_in_chunks(items, columns, max_pixels, progress))
    for name in models:
        if name not in table:
            table[name] = None  # every photo failed: keep the column
    if "rating A" in models and "rating B" in models:
        table["rating B - A"] = table["rating B"] - table["rating A"]
    if "caption A" in models and "caption B" in models:
        table["same caption"] = (table["caption A"] == table["caption B"]) & (table["error"] == "")
    return table[[c for c in COMPARE_COLUMNS if c in table]]


# ---------------------------------------------------------------------------------------------------
# Rendering: stars, latency, histogram, model cards.


def stars_html(rating: float | None) -> str:
    """Five stars filled in proportion to the rating, and the number."""
    if rating is None:
        return ""
    filled = 100 * rating / 5
    stars = "★★★★★"
    return (
        f'<div class="rating" title="{rating:.2f} out of 5" style="display:flex;align-items:center;gap:.6rem">'
        '<span style="position:relative;display:inline-block;font-size:2.6rem;line-height:1">'
        f'<span style="color:#d1d5db">{stars}</span>'
        f'<span style="position:absolute;left:0;top:0;width:{filled:.1f}%;overflow:hidden;'
        f'white-space:nowrap;color:#f59e0b">{stars}</span></span>'
        f'<span class="rating-value" style="font-size:1.8rem;font-weight:600">{rating:.2f}</span>'
        '<span style="opacity:.7">/ 5</span></div>'
    )


def latency_text(result: dict) -> str:
    ms = result["latency_ms"]
    parts = [f"decode {ms['decode']:.0f} ms"]
    if "rating" in ms:
        parts.append(f"rating {ms['rating']:.0f} ms")
    if "caption" in ms:
        beams = result["num_beams"]
        parts.append(f"caption {ms['caption']:.0f} ms ({beams} beam{'s' if beams > 1 else ''})")
    return f"Latency: {' · '.join(parts)} · **total {ms['total']:.0f} ms**"


def rating_histogram(ratings: pd.Series) -> Figure | None:
    ratings = ratings.dropna()
    if ratings.empty:
        return None
    figure = Figure(figsize=(6, 3.2), layout="constrained")  # not pyplot: handlers run in threads
    axes = figure.subplots()
    axes.hist(ratings, bins=np.arange(1.0, 5.01, 0.25), color="#f59e0b", edgecolor="white")
    axes.axvline(
        ratings.mean(), color="#374151", linestyle="--", label=f"mean {ratings.mean():.2f}"
    )
    axes.set(xlim=(1, 5), xlabel="predicted rating (stars)", ylabel="photos")
    axes.set_title(f"Predicted ratings of {len(ratings)} photos")
    axes.legend()
    return figure


def summarize_batch(table: pd.DataFrame, seconds: float) -> str:
    failed = int((table["error"] != "").sum())
    text = f"**{len(table) - failed}** photos predicted in {seconds:.1f} s ({seconds / len(table):.2f} s/photo)"
    if failed:
        text += f", **{failed}** skipped"
    if "rating" in table:
        text += f"; mean rating **{table['rating'].mean():.2f}**"
    return text


def summarize_comparison(table: pd.DataFrame) -> str:
    """How far apart the two rating models are, and how often the two caption models agree."""
    lines = [f"{len(table)} photos."]
    if "rating B - A" in table:
        both = table[["rating A", "rating B"]].dropna().astype(float)
        gap = (both["rating B"] - both["rating A"]).abs()
        line = f"Ratings: mean |B - A| **{gap.mean():.3f}** stars, largest {gap.max():.3f}"
        if len(both) > 1 and both.std().min() > 0:  # a correlation needs spread in both
            line += f", correlation {both['rating A'].corr(both['rating B']):.3f}"
        lines.append(line + ".")
    if "same caption" in table:
        lines.append(f"Captions: **{table['same caption'].mean():.0%}** identical.")
    return " ".join(lines)


def model_folder(source: str) -> Path | None:
    """The folder holding a model's card, metrics and plots: the source itself, or (Hub id) those
    files downloaded into the Hub cache."""
    if Path(source).is_dir():
        return Path(source)
    try:
        return Path(
            snapshot_download(
                source, allow_patterns=["README.md", "*.json", "*.png", "plots/*.png"]
            )
        )
    except Exception:  # offline, private, deleted: the info tab says it has nothing to show
        return None


def model_info(model: RatingModel | CaptionModel) -> dict:
    """What the Model info tab shows: the card's text, the metrics as rows, the plots as paths."""
    folder = model_folder(model.source)
    info = {"card": "", "metrics": [], "plots": []}
    if folder is None:
        return info
    card = folder / "README.md"
    if card.is_file():
        text = re.sub(r"\A---\n.*?\n---\n", "", card.read_text(encoding="utf-8"), flags=re.S)
        # the plots are shown in a gallery below; relative image links would not load in the page
        info["card"] = re.sub(r"!\[[^\]]*\]\((?!https?://)[^)]*\)\n?", "", text).strip()
    results = folder / "eval_results.json"
    if results.is_file():
        for key, value in _flatten(json.loads(results.read_text())).items():
            info["metrics"].append([key, round(value, 4) if isinstance(value, float) else value])
    info["plots"] = sorted(folder.glob("*.png")) + sorted(folder.glob("plots/*.png"))
    return info


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, int | float | str | bool):
            flat[f"{prefix}{key}"] = value
    return flat


# ---------------------------------------------------------------------------------------------------
# The app.


def shown_in_page(fn):
    """A bad input or an unloadable model becomes a message in the page (gr.Error), not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (InputError, ModelError) as error:
            raise gr.Error(str(error), print_exception=False) from None

    return wrapper


def create_app(
    rating_model: RatingModel | str | Path | None = None,
    caption_model: CaptionModel | str | Path | None = None,
    max_megapixels: float = MAX_MEGAPIXELS,
) -> gr.Blocks:
    """The Gradio Blocks app for these models (loaded objects, or folders / Hub ids to load)."""
    if isinstance(rating_model, str | Path):
        rating_model = load_model("rating", rating_model)
    if isinstance(caption_model, str | Path):
        caption_model = load_model("caption", caption_model)
    if rating_model is None and caption_model is None:
        raise ModelError("the app needs at least one model")
    max_pixels = int(max_megapixels * 10**6)
    cache = ModelCache([m for m in (rating_model, caption_model) if m is not None])

    @shown_in_page
    def on_predict(image: dict | None, num_beams: float):
        # Called with preprocess=False: `image` is the upload's FileData, untouched (gradio has checked
        # that the path is one of its uploads), so that load_image does every check and the decoding.
        if not image or not image.get("path"):
            raise InputError("no photo: upload, paste or take one first")
        result = predict(image["path"], rating_model, caption_model, num_beams, max_pixels)
        return (
            result["rating"],
            result["caption"],
            stars_html(result["rating"]),
            latency_text(result),
        )

    @shown_in_page
    def on_batch(files: list[str] | None, num_beams: float, progress=gr.Progress()):  # noqa: B008 (gradio fills it in)
        start = time.perf_counter()
        table = predict_batch(files, rating_model, caption_model, num_beams, max_pixels, progress)
        seconds = time.perf_counter() - start
        failed = int((table["error"] != "").sum())
        if failed:
            gr.Warning(f"{failed} of {len(table)} files skipped: see the error column")
        csv_path = Path(tempfile.mkdtemp(prefix="batch-")) / "predictions.csv"
        table.to_csv(csv_path, index=False, float_format="%.4f", quoting=csv.QUOTE_MINIMAL)
        histogram = rating_histogram(table["rating"]) if rating_model is not None else None
        return summarize_batch(table, seconds), table.round({"rating": 2}), str(csv_path), histogram

    @shown_in_page
    def on_compare(
        files,
        rating_a,
        rating_b,
        caption_a,
        caption_b,
        num_beams,
        progress=gr.Progress(),  # noqa: B008
    ):
        chosen = {
            "rating A": rating_a,
            "rating B": rating_b,
            "caption A": caption_a,
            "caption B": caption_b,
        }
        models = {
            name: cache.get(name.split()[0], source.strip())
            for name, source in chosen.items()
            if source and source.strip()
        }
        table = compare_models(files, models, num_beams, max_pixels, progress)
        return summarize_comparison(table), table.round(3)

    served = {"rating": rating_model, "caption": caption_model}
    status = " · ".join(
        f"{task.capitalize()} model: `{m.source}`" if m else f"⚠️ {missing_model_hint(task)}"
        for task, m in served.items()
    )
    beam_slider = functools.partial(
        gr.Slider, 1, MAX_BEAMS, value=3, step=1, label="Caption beam size",
        info="1 = greedy; more beams search more titles (slower)", visible=caption_model is not None,
    )  # fmt: skip

    with gr.Blocks(title="Fashion product rating & captioning", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# Fashion product rating & captioning\n"
            "From a photo of a fashion product, predict its **star rating** and write its **product title**.\n\n"
            + status
        )
        with gr.Tab("Predict"):
            with gr.Row():
                with gr.Column():
                    image = gr.Image(
                        label="Product photo",
                        sources=["upload", "clipboard", "webcam"],
                        type="filepath",
                        image_mode=None,
                        height=360,
                        elem_id="photo",
                    )
                    beams = beam_slider()
                    predict_button = gr.Button(
                        "Predict", variant="primary", elem_id="predict-button"
                    )
                    if EXAMPLES:
                        gr.Examples(
                            [[str(p)] for p in EXAMPLES],
                            inputs=[image],
                            label="Examples: synthetic products drawn for this app",
                            elem_id="examples",
                        )
                with gr.Column():
                    stars = gr.HTML(
                        label="Rating", elem_id="rating-stars", visible=rating_model is not None
                    )
                    rating = gr.Number(label="Rating", visible=False)
                    caption = gr.Textbox(
                        label="Product title",
                        elem_id="caption",
                        interactive=False,
                        visible=caption_model is not None,
                    )
                    latency = gr.Markdown(elem_id="latency")
        predict_button.click(
            on_predict,
            inputs=[image, beams],
            outputs=[rating, caption, stars, latency],
            api_name="predict",
            api_description="One photo -> (rating, caption, stars HTML, latency text).",
            preprocess=False,  # gr.Image would open the file before load_image checks it
            concurrency_limit=2,
            concurrency_id="predict",
        )

        with gr.Tab("Batch"):
            files = gr.File(
                label="Product photos, or a .zip of them",
                file_count="multiple",
                type="filepath",
                elem_id="batch-files",
            )
            batch_beams = beam_slider()
            batch_button = gr.Button("Predict all", variant="primary")
            batch_summary = gr.Markdown()
            columns = ["file"] + [t for t in TASKS if served[t] is not None] + ["error"]
            batch_table = gr.DataFrame(
                pd.DataFrame(columns=columns),
                label="Predictions",
                wrap=True,
                interactive=False,
                column_widths=[{"file": "30%", "rating": "8%"}.get(c, "31%") for c in columns],
            )
            with gr.Row():
                histogram = gr.Plot(label="Rating histogram", visible=rating_model is not None)
                csv_file = gr.File(label="Download the table (CSV)")
        batch_button.click(
            on_batch,
            inputs=[files, batch_beams],
            outputs=[batch_summary, batch_table, csv_file, histogram],
            api_name="batch",
            api_description="Photos or zips -> (summary, table file/rating/caption/error, CSV, histogram).",
            concurrency_limit=1,
            concurrency_id="heavy",  # batches and comparisons share one slot: each is many images
        )

        with gr.Tab("Compare"):
            gr.Markdown(
                "Two rating models and/or two caption models on the same photos. Type a model folder or "
                "a Hub id; each is loaded once and kept. Leave a box empty to skip it."
            )
            compare_files = gr.File(
                label="Product photos, or a .zip of them",
                file_count="multiple",
                type="filepath",
                elem_id="compare-files",
            )
            with gr.Row():
                rating_a = gr.Textbox(
                    label="Rating model A", value=rating_model.source if rating_model else ""
                )
                rating_b = gr.Textbox(label="Rating model B", placeholder="folder or Hub id")
            with gr.Row():
                caption_a = gr.Textbox(
                    label="Caption model A", value=caption_model.source if caption_model else ""
                )
                caption_b = gr.Textbox(label="Caption model B", placeholder="folder or Hub id")
            compare_beams = gr.Slider(1, MAX_BEAMS, value=3, step=1, label="Caption beam size")
            compare_button = gr.Button("Compare", variant="primary")
            compare_summary = gr.Markdown()
            compare_table = gr.DataFrame(
                pd.DataFrame(columns=["file", "rating A", "rating B", "caption A", "caption B"]),
                label="Side by side",
                wrap=True,
                interactive=False,
            )
        compare_button.click(
            on_compare,
            inputs=[compare_files, rating_a, rating_b, caption_a, caption_b, compare_beams],
            outputs=[compare_summary, compare_table],
            api_name="compare",
            api_description="Photos + up to four model folders/ids -> (summary, side-by-side table).",
            concurrency_limit=1,
            concurrency_id="heavy",
        )

        with gr.Tab("Model info"):
            for task, model in served.items():
                if model is None:
                    continue
                info = model_info(model)
                with gr.Tab(f"{task.capitalize()} model"):
                    gr.Markdown(f"`{model.source}`")
                    if info["metrics"]:
                        gr.DataFrame(
                            pd.DataFrame(info["metrics"], columns=["metric", "value"]),
                            label="Evaluation (eval_results.json)",
                            interactive=False,
                        )
                    if info["plots"]:
                        gr.Gallery(
                            [(str(p), p.stem.replace("_", " ")) for p in info["plots"]],
                            label="Training curves and evaluation plots",
                            columns=3,
                            height=480,
                            object_fit="contain",
                        )
                    gr.Markdown(info["card"] or "This model folder has no model card (README.md).")
    demo.queue(max_size=256, default_concurrency_limit=2)
    return demo


def launch(demo: gr.Blocks, host: str, port: int, share: bool = False, **kwargs):
    """Serve the app; `kwargs` go to `Blocks.launch` (tests pass `prevent_thread_lock=True`)."""
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=MAX_FILE_SIZE,
        theme=gr.themes.Soft(),
        **kwargs,
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve the rating and caption models in a Gradio app (also the Hub Space entry point).",
        epilog=(
            "Each model comes from its flag, else its environment variable (RATING_MODEL, CAPTION_MODEL), "
            "else models/rating or models/caption next to app.py, else the folders `make demo` trains "
            "(outputs/demo/rating, outputs/demo/caption)."
        ),
    )
    parser.add_argument(
        "--rating_model", metavar="PATH_OR_ID", help="rating model folder or Hub id"
    )
    parser.add_argument(
        "--caption_model", metavar="PATH_OR_ID", help="caption model folder or Hub id"
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="address to listen on; 0.0.0.0 for other machines (default: 127.0.0.1, or $GRADIO_SERVER_NAME)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
        help="default: 7860",
    )
    parser.add_argument(
        "--share", action="store_true", help="also serve a temporary public gradio.live link"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: one per core); 1 is steadier on a CPU other jobs share",
    )
    parser.add_argument(
        "--max_megapixels",
        type=float,
        default=MAX_MEGAPIXELS,
        help=f"refuse larger photos before decoding them (default: {MAX_MEGAPIXELS})",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {}
    for task in TASKS:
        source = resolve_model(task, getattr(args, f"{task}_model"))
        if source is None:
            print(missing_model_hint(task).replace("`", ""), file=sys.stderr)
            continue
        print(f"loading the {task} model from {source}", file=sys.stderr)
        try:
            models[task] = load_model(task, source)
        except ModelError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    if not models:
        print("error: no model to serve (see above)", file=sys.stderr)
        return 1
    demo = create_app(
        models.get("rating"), models.get("caption"), max_megapixels=args.max_megapixels
    )
    launch(demo, args.host, args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
