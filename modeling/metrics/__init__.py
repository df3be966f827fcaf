"""`evaluate` metric modules kept in the repository (one folder each: `rating/rating.py`, ...).

The Hub's metric scripts cannot be downloaded offline, so these are loaded by path:
`evaluate.load(metric_path("rating"))`, or `load_metric("rating")`.
"""

from __future__ import annotations

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
