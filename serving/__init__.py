"""Serving the saved models: photo intake, model loading, prediction and the Gradio app.

`app.py` is a thin entry point over this package, and a Hub Space runs both alone: every import here
is third-party or from this package, and the model code comes with each saved model
(`trust_remote_code=True`), photo loading included (its image processor's `load_image`).

    images.py     uploads and zip archives -> the photos to predict
    models.py     finding, loading and keeping the models
    cards.py      what a model says about itself: training data, metrics, its card for the page
    prediction.py one photo, a batch, a comparison: plain functions
    render.py     stars and the rating in words, latency, histogram, summaries, the banner
    attention.py  where the models looked: per-word maps and the rating's occlusion map, one image
    ui.py         the Gradio page, one builder per tab

The names below load their module on first use, so `import serving.attention` does not start gradio.
"""

import importlib

_EXPORTS = {
    "InputError": "images", "collect_images": "images",
    "CaptionModel": "models", "ModelCache": "models", "ModelError": "models", "RatingModel": "models",
    "load_model": "models", "missing_model_hint": "models", "resolve_model": "models",
    "compare_models": "prediction", "predict": "prediction", "predict_batch": "prediction",
    "EXAMPLES": "images", "create_app": "ui", "launch": "ui",
}  # fmt: skip
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
