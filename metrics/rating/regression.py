"""R^2 and the train-mean baseline of a rating regression.

Kept beside `rating.py`: `evaluate.load("metrics/rating")` copies a module's imports from its own
folder, so the module still loads alone. `metrics` re-exports these for the rest of the project.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def r2_score(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """1 - SS_residual / SS_total, SS_total around `y_true`'s own mean; NaN when `y_true` is constant."""
    y_true = np.asarray(y_true, dtype=np.float64)
    residual = float(np.sum((y_true - np.asarray(y_pred, dtype=np.float64)) ** 2))
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return 1.0 - residual / total if total > 0 else float("nan")


def baseline_mae(y_true: ArrayLike, train_mean: float) -> float:
    """The MAE of predicting `train_mean` for every rating: the number a rating model has to beat."""
    return float(np.mean(np.abs(np.asarray(y_true, dtype=np.float64) - float(train_mean))))
