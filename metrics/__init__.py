"""The project's metrics and the baselines every model is scored against.

One folder per `evaluate` module (`rating/rating.py`, `caption/caption.py`). The Hub's metric scripts
cannot be downloaded offline, so these are loaded by path: `evaluate.load(metric_path("rating"))`, or
`load_metric("rating")`. What the rest of the project shares with them (the caption words, R^2, the
train-mean MAE) lives beside each module, because `evaluate` copies only a module's own folder, and
is re-exported here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .caption.text import WORD, words
from .rating.regression import baseline_mae, r2_score

if TYPE_CHECKING:
    import evaluate

METRICS_DIR = Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    """The folder of metric `name`, as `evaluate.load` wants it."""
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        known = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(known)}")
    return str(path)


def load_metric(name: str, **kwargs) -> evaluate.EvaluationModule:
    """`evaluate.load` on the metric kept in this repository."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


def most_common_caption(captions: Iterable[str | None]) -> tuple[str, int] | None:
    """The most common caption and how often it occurs, or None when there is none. Missing and
    blank captions are skipped: the training scripts drop those rows."""
    found = Counter(c for c in captions if c and c.strip()).most_common(1)
    return found[0] if found else None


def constant_caption_baseline(
    train_captions: Iterable[str | None],
    references: list[str],
    metric: evaluate.EvaluationModule | None = None,
) -> dict:
    """The caption metrics of writing the most common train caption for every image, as
    `baseline_<metric>` keys plus `baseline_caption`: the number every caption model has to beat.
    `metric` is the loaded caption metric (default: `load_metric("caption")`)."""
    found = most_common_caption(train_captions)
    if found is None:
        raise ValueError("no train caption to repeat: every one is missing or blank")
    caption = found[0]
    metric = metric if metric is not None else load_metric("caption")
    scores = metric.compute(predictions=[caption] * len(references), references=references)
    baseline = {f"baseline_{k}": v for k, v in scores.items() if k != "num_samples"}
    return {**baseline, "baseline_caption": caption}


__all__ = [
    "WORD",
    "baseline_mae",
    "constant_caption_baseline",
    "load_metric",
    "metric_path",
    "most_common_caption",
    "r2_score",
    "words",
]
