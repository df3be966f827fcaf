"""`evaluate` metric modules kept in the repository (one folder each: `rating/rating.py`, ...).

The Hub's metric scripts cannot be downloaded offline, so these are loaded by path:
`evaluate.load(metric_path("rating"))`, or `load_metric("rating")`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent


def metric_path(name: str) -> str:
    """The folder of metric `name`, as `evaluate.load` wants it."""
    path = METRICS_DIR / name
    if not (path / f"{name}.py").is_file():
        known = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())
        raise ValueError(f"unknown metric {name!r}; available: {', '.join(known)}")
    return str(path)


def load_metric(name: str, **kwargs):
    """`evaluate.load` on the metric kept in this repository."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


def constant_caption_baseline(train_captions: Iterable[str], references: list[str]) -> dict:
    """The caption metrics of writing the most common train caption for every image, as
    `baseline_<metric>` keys plus `baseline_caption`: the number every caption model has to beat."""
    most_common = Counter(c for c in train_captions if c and c.strip()).most_common(1)[0][0]
    scores = load_metric("caption").compute(
        predictions=[most_common] * len(references), references=references
    )
    baseline = {f"baseline_{k}": v for k, v in scores.items() if k != "num_samples"}
    return {**baseline, "baseline_caption": most_common}
