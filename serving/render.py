"""What the page shows: the rating in stars and words, the latency, the batch histogram and summaries,
the synthetic-data banner. Ratings are shown with one decimal everywhere (`rating_text`): the models
are a few tenths of a star off on average, so a second decimal would claim more than they know.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .cards import TrainingData

matplotlib.use("Agg")  # figures are rendered to images on a server, never shown in a window


def rating_text(rating: float) -> str:
    return f"{rating:.1f}"


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def rating_words(
    rating: float,
    interval: list[float] | None,
    coverage: float | None,
    no_interval_reason: str = "this model has none",
    scale: float = 5.0,
) -> str:
    """ "estimated average customer rating 3.9 of 5 (90% interval 3.5-4.3)"."""
    text = f"estimated average customer rating {rating_text(rating)} of {scale:g}"
    if interval is None or coverage is None:
        return f"{text} (no interval: {no_interval_reason})"
    low, high = interval
    return f"{text} ({coverage:.0%} interval {rating_text(low)}-{rating_text(high)})"


def trained_on(task: str, training: TrainingData, many: bool = False) -> str:
    """The line under an answer: which data the model that gave it learnt from."""
    what = ("Rating" if task == "rating" else "Title") + ("s" if many else "")
    return f"{what} from a model trained on {training.describe()}."


def stars_html(rating: float | None, words: str = "", note: str = "") -> str:
    """Five stars filled in proportion to the rating, the number, the rating in words and a note."""
    if rating is None:
        return ""
    filled = 100 * rating / 5
    stars = "★★★★★"
    lines = "".join(
        f'<div class="{cls}" style="opacity:{opacity}">{html.escape(text)}</div>'
        for cls, text, opacity in (("rating-words", words, 1), ("trained-on", note, 0.75))
        if text
    )
    return (
        f'<div class="rating" title="{rating_text(rating)} out of 5">'
        '<div style="display:flex;align-items:center;gap:.6rem">'
        '<span style="position:relative;display:inline-block;font-size:2.6rem;line-height:1">'
        f'<span style="color:#d1d5db">{stars}</span>'
        f'<span style="position:absolute;left:0;top:0;width:{filled:.1f}%;overflow:hidden;'
        f'white-space:nowrap;color:#f59e0b">{stars}</span></span>'
        f'<span class="rating-value" style="font-size:1.8rem;font-weight:600">{rating_text(rating)}</span>'
        f'<span style="opacity:.7">/ 5</span></div>{lines}</div>'
    )


def latency_text(result: dict, drawn_ms: float | None = None) -> str:
    """Each step the person waited for, and their total: the models' own steps, and the drawing of
    the maps (`drawn_ms`, done after `predict` returns)."""
    ms = dict(result["latency_ms"])
    parts = [f"photo {ms['decode']:.0f} ms"]
    if "rating" in ms:
        parts.append(f"rating {ms['rating']:.0f} ms")
    if "rating_map" in ms:
        parts.append(f"why-this-rating map {ms['rating_map']:.0f} ms")
    if "caption" in ms:
        beams = result["num_beams"]
        parts.append(f"title {ms['caption']:.0f} ms ({plural(beams, 'beam')})")
    total = ms["total"]
    if drawn_ms is not None:
        parts.append(f"drawing the maps {drawn_ms:.0f} ms")
        total += drawn_ms
    return f"You waited **{total:.0f} ms**: {' · '.join(parts)}"


def rating_histogram(ratings: pd.Series) -> Figure | None:
    ratings = ratings.dropna()
    if ratings.empty:
        return None
    figure = Figure(figsize=(6, 3.2), layout="constrained")  # not pyplot: handlers run in threads
    axes = figure.subplots()
    axes.hist(ratings, bins=np.arange(1.0, 5.01, 0.25), color="#f59e0b", edgecolor="white")
    mean = ratings.mean()
    axes.axvline(mean, color="#374151", linestyle="--", label=f"mean {rating_text(mean)}")
    axes.set(xlim=(1, 5), xlabel="predicted rating (stars)", ylabel="photos")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))  # photos come in whole numbers
    axes.set_title(f"Predicted ratings of {plural(len(ratings), 'photo')}")
    axes.legend()
    return figure


def thumbnail_caption(row: pd.Series) -> str:
    """A Batch thumbnail's caption: the full file name, its rating and its title, as far as they exist."""
    parts = [str(row["file"])]
    if "rating" in row and pd.notna(row["rating"]):
        parts.append(f"★ {rating_text(row['rating'])}")
    if "caption" in row and isinstance(row["caption"], str):
        parts.append(row["caption"])
    return " · ".join(parts)


def summarize_batch(table: pd.DataFrame, seconds: float, served: dict | None = None) -> str:
    failed = int((table["error"] != "").sum())
    done = len(table) - failed
    text = f"**{plural(done, 'photo')}** predicted in {seconds:.1f} s ({seconds / len(table):.2f} s per photo)"
    if failed:
        text += f"; **{failed}** of {plural(len(table), 'file')} skipped: see the error column"
    if "rating" in table and table["rating"].notna().any():
        text += f". Mean rating **{rating_text(table['rating'].mean())}**"
    lines = [text + "."]
    for task, model in (served or {}).items():
        if model is not None:
            lines.append(trained_on(task, model.training, many=True))
    return "  \n".join(lines)


def summarize_comparison(table: pd.DataFrame) -> str:
    """How far apart the two rating models are, and how often the two caption models agree."""
    lines = [f"{plural(len(table), 'photo')}."]
    if "rating B - A" in table:
        both = table[["rating A", "rating B"]].dropna().astype(float)
        gap = (both["rating B"] - both["rating A"]).abs()
        line = f"Ratings: mean |B - A| **{gap.mean():.2f}** stars, largest {gap.max():.2f}"
        if len(both) > 1 and both.std().min() > 0:  # a correlation needs spread in both
            line += f", correlation {both['rating A'].corr(both['rating B']):.2f}"
        lines.append(line + ".")
    if "same caption" in table:
        lines.append(f"Captions: **{table['same caption'].mean():.0%}** identical.")
    return " ".join(lines)


def shown_source(source: str) -> str:
    """A model folder as a person typed it: relative to the working folder when inside it."""
    try:
        return str(Path(source).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return source


def synthetic_banner(served: dict) -> str:
    """The banner for models trained on synthetic data (empty when none is): which, and what it means."""
    synthetic = [(task, m) for task, m in served.items() if m is not None and m.training.synthetic]
    if not synthetic:
        return ""
    names = {m.training.name or "unknown data" for _, m in synthetic}
    which = " and ".join(f"the {task} model" for task, _ in synthetic)
    verb = "was" if len(synthetic) == 1 else "were"
    data = " / ".join(sorted(names))
    return (
        '<div id="synthetic-banner" role="note">'
        f"<strong>Trained on synthetic drawings.</strong> {which.capitalize()} {verb} trained on "
        f"{html.escape(data)}: procedurally drawn products, not photos of real ones. On a real "
        "photo the answers say nothing about the product.</div>"
    )


def error_html(message: str) -> str:
    return (
        f'<div class="app-error" role="alert"><strong>Error:</strong> {html.escape(message)}</div>'
    )
