"""Split-conformal calibration of the rating interval on a held-out split.

For a score s_i = how far outside an uncalibrated interval the true rating i lies, the margin is the
ceil((n + 1) * coverage)-th smallest score of the n calibration products; widening the interval by it
covers a new product with probability >= coverage, whatever the model (exchangeability is the only
assumption). Two scores are fitted and the narrower interval kept:

    absolute:  |y - rating|                                  -> rating +- margin
    quantile:  max(low - y, y - high) on the quantile head   -> [low - margin, high + margin]  (CQR)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from modeling.modeling_rating import conformal_interval


def conformal_margin(scores: np.ndarray, coverage: float) -> float:
    """The split-conformal quantile of `scores` at `coverage`; inf when too few scores for it."""
    scores = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(scores) + 1) * coverage)  # 1-based
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


def interval_scores(method: str, labels, predictions, bounds=None) -> np.ndarray:
    labels, predictions = np.asarray(labels, np.float64), np.asarray(predictions, np.float64)
    if method == "absolute":
        return np.abs(labels - predictions)
    bounds = np.asarray(bounds, np.float64)
    return np.maximum(bounds[:, 0] - labels, labels - bounds[:, 1])


def apply(method: str, margin: float, predictions, bounds, limits) -> np.ndarray:
    """(N, 2) intervals, through the model's own `conformal_interval`."""
    predictions = torch.as_tensor(np.asarray(predictions), dtype=torch.float64)
    if bounds is not None:
        bounds = torch.as_tensor(np.asarray(bounds), dtype=torch.float64)
    return conformal_interval(predictions, bounds, method, margin, limits).numpy()


def coverage_and_width(labels, intervals: np.ndarray) -> dict[str, float]:
    labels = np.asarray(labels, np.float64)
    inside = (intervals[:, 0] <= labels) & (labels <= intervals[:, 1])
    return {
        "coverage": float(inside.mean()),
        "width": float((intervals[:, 1] - intervals[:, 0]).mean()),
    }


def calibrate(labels, predictions, bounds, coverage: float, limits) -> dict:
    """Fit both methods on a calibration split; returns `config.interval` for the narrower one (mean
    width on this split) under "chosen", and each method's margin and width under its name."""
    methods = ["absolute"] + (["quantile"] if bounds is not None else [])
    fitted = {}
    for method in methods:
        margin = conformal_margin(interval_scores(method, labels, predictions, bounds), coverage)
        if not math.isfinite(margin):
            raise ValueError(
                f"{len(labels)} calibration products are too few for a {coverage:.0%} interval"
            )
        intervals = apply(method, margin, predictions, bounds, limits)
        fitted[method] = {"margin": margin, **coverage_and_width(labels, intervals)}
    best = min(methods, key=lambda m: fitted[m]["width"])
    chosen = {"method": best, "coverage": coverage, "margin": fitted[best]["margin"]}
    return {"chosen": chosen, **fitted}


def evaluate(calibration: dict, labels, predictions, bounds, limits) -> dict[str, float]:
    """Empirical coverage and mean width of every fitted method on another split."""
    results = {}
    for method in ("absolute", "quantile"):
        if method in calibration:
            intervals = apply(method, calibration[method]["margin"], predictions, bounds, limits)
            results[method] = coverage_and_width(labels, intervals)
    return results
