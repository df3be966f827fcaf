"""Rating metrics as an `evaluate` module: `evaluate.load("metrics/rating")`.

Kept in the repository and loaded by path, because the Hub's metric scripts cannot be downloaded
offline. Plain numpy, so the numbers mean exactly what the formulas below say.
"""

import datasets
import evaluate
import numpy as np

from .regression import baseline_mae, r2_score

_DESCRIPTION = """Regression metrics for star ratings: mean absolute error, root mean squared error and the
coefficient of determination R^2, plus the MAE of the constant predictor `train_mean` when it is given,
so every result says whether the model beats predicting the mean."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted ratings.
    references (`list[float]`): true ratings.
    train_mean (`float`, optional): the mean training rating; adds `baseline_mae`, the MAE of always
        predicting it (the baseline a useful model must beat).
Returns:
    mae: mean |prediction - reference|.
    rmse: sqrt(mean (prediction - reference)^2).
    r2: 1 - SS_residual / SS_total (SS_total around the references' own mean; NaN when the references
        are all equal). 0 is the references' mean, negative is worse than it.
    baseline_mae: mean |train_mean - reference| (only with `train_mean`).
    num_samples: how many pairs were scored.
Examples:
    >>> metric = evaluate.load("metrics/rating")
    >>> metric.compute(predictions=[3.0, 4.0], references=[3.0, 5.0], train_mean=4.0)
    {'mae': 0.5, 'rmse': 0.7071067811865476, 'r2': 0.5, 'baseline_mae': 1.0, 'num_samples': 2}
"""


class Rating(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references, train_mean=None):
        y_pred = np.asarray(predictions, dtype=np.float64)
        y_true = np.asarray(references, dtype=np.float64)
        if len(y_true) == 0:
            raise ValueError("no samples to score")
        errors = y_pred - y_true
        result = {
            "mae": float(np.mean(np.abs(errors))),
            "rmse": float(np.sqrt(np.mean(errors**2))),
            "r2": r2_score(y_true, y_pred),
        }
        if train_mean is not None:
            result["baseline_mae"] = baseline_mae(y_true, train_mean)
        result["num_samples"] = len(y_true)
        return result
