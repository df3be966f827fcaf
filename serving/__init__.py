"""Serving the saved models: photo intake, model loading, prediction and the Gradio app.

`app.py` is a thin entry point over this package, and a Hub Space runs both alone: every import here
is third-party or from this package, and the model code comes with each saved model
(`trust_remote_code=True`), photo loading included (its image processor's `load_image`).
"""

from .images import InputError, collect_images
from .models import (
    CaptionModel,
    ModelCache,
    ModelError,
    RatingModel,
    load_model,
    missing_model_hint,
    resolve_model,
)
from .predict import compare_models, predict, predict_batch
from .ui import EXAMPLES, create_app, launch

__all__ = [
    "EXAMPLES",
    "CaptionModel",
    "InputError",
    "ModelCache",
    "ModelError",
    "RatingModel",
    "collect_images",
    "compare_models",
    "create_app",
    "launch",
    "load_model",
    "missing_model_hint",
    "predict",
    "predict_batch",
    "resolve_model",
]
