"""What the page shows: stars, latency, the batch histogram and summaries, each model's card."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from huggingface_hub import snapshot_download
from matplotlib.figure import Figure

from .models import CaptionModel, RatingModel

matplotlib.use("Agg")  # figures are rendered to images on a server, never shown in a window


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


def thumbnail_caption(row: pd.Series) -> str:
    """A Batch thumbnail's caption: the file, its rating and its title, as far as they exist."""
    parts = [str(row["file"])]
    if "rating" in row and pd.notna(row["rating"]):
        parts.append(f"★ {row['rating']:.2f}")
    if "caption" in row and isinstance(row["caption"], str):
        parts.append(row["caption"])
    return " · ".join(parts)


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
    shown = set()
    if card.is_file():
        text = re.sub(r"\A---\n.*?\n---\n", "", card.read_text(encoding="utf-8"), flags=re.S)
        info["card"] = _inline_images(text, folder, shown).strip()
    results = folder / "eval_results.json"
    if results.is_file():
        for key, value in _flatten(json.loads(results.read_text())).items():
            info["metrics"].append([key, round(value, 4) if isinstance(value, float) else value])
    plots = sorted(folder.glob("*.png")) + sorted(folder.glob("plots/*.png"))
    info["plots"] = [p for p in plots if p.resolve() not in shown]  # the card shows the others
    return info


def _inline_images(text: str, folder: Path, shown: set[Path]) -> str:
    """The card's relative image links as data URIs, so they load in the page (a link to a file in
    the model folder is not a URL the browser can reach); links to missing files are dropped."""

    def inline(match: re.Match) -> str:
        path = (folder / match.group(2)).resolve()
        if not path.is_file() or path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            return ""
        shown.add(path)
        kind = "png" if path.suffix.lower() == ".png" else "jpeg"
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/{kind};base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\((?!https?://|data:)([^)\s]+)\)", inline, text)


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, int | float | str | bool):
            flat[f"{prefix}{key}"] = value
    return flat
