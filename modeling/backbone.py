"""timm backbones for both model families, and the three ways to get their pretrained weights.

A model's `__init__` always builds its backbone with random weights (`create_backbone`): building a
model must never download anything, and `from_pretrained` overwrites every weight anyway. Pretrained
weights are loaded on purpose, once, by the training scripts (`load_backbone_weights`):

- `true`: timm's own weights from the Hugging Face Hub (needs internet),
- `false`: keep the random initialisation,
- a path: a timm weights file (`.safetensors`, `.pth`, `.bin`) or a folder holding one (timm's Hub
  layout, `model.safetensors` or `pytorch_model.bin`), for machines without internet. It may also be
  one of this project's own models or training checkpoints with the same backbone: a caption model's
  encoder or a rating model's backbone is taken from it (e.g. a caption encoder trained end to end,
  then frozen for decoder-only training from the feature cache).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def create_backbone(name: str, **kwargs) -> torch.nn.Module:
    """A randomly initialised timm model without its classifier (`num_classes=0`)."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ValueError(f"unknown timm backbone {name!r}.{hint} See timm.list_models().")
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def parse_pretrained(value: bool | str | None) -> bool | Path:
    """`true`/`false` (any case) or a path to local weights, as given on a command line."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if value.strip().lower() in ("true", "1", "yes"):
        return True
    if value.strip().lower() in ("false", "0", "no", ""):
        return False
    path = Path(value).expanduser()
    if path.is_dir():
        found = [path / f for f in _WEIGHT_FILES if (path / f).is_file()]
        if not found:
            raise FileNotFoundError(
                f"no timm weights ({', '.join(_WEIGHT_FILES)}) in folder {path}"
            )
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained backbone weights not found: {path} (expected true, false or a path)"
        )
    return path


def load_backbone_weights(
    backbone: torch.nn.Module, name: str, pretrained: bool | str | Path, **kwargs
) -> bool:
    """Load pretrained weights into `backbone` in place; returns whether any were loaded.

    timm does the loading (a local file is read once, with timm's own reader, and passed on as
    `pretrained_cfg_overlay=dict(state_dict=...)`), so its checks and its removal of the classifier
    apply exactly as for a Hub download.
    """
    pretrained = parse_pretrained(pretrained) if not isinstance(pretrained, Path) else pretrained
    if pretrained is False:
        return False
    overlay = {}
    if pretrained is not True:
        weights = timm.models.load_state_dict(str(pretrained))
        if inner := _project_model_weights(backbone, weights):
            backbone.load_state_dict(inner)
            return True
        _check_names(backbone, name, pretrained, weights)
        overlay = {"state_dict": weights}
    source = timm.create_model(
        name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay, **kwargs
    )
    backbone.load_state_dict(source.state_dict())
    return True


# where this project's models keep their timm model: ProductCaptionModel, ProductRatingModel
_PROJECT_PREFIXES = ("encoder.", "backbone.")


def _project_model_weights(backbone: torch.nn.Module, weights: dict) -> dict | None:
    """The backbone's weights if `weights` are a saved caption or rating model (or a checkpoint of
    one) whose timm model has exactly `backbone`'s parameter names, else None."""
    wanted = backbone.state_dict().keys()
    for prefix in _PROJECT_PREFIXES:
        inner = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
        if inner.keys() == wanted:
            return inner
    return None


def _check_names(backbone: torch.nn.Module, name: str, path: Path, weights: dict) -> None:
    """timm loads weights non-strictly (it only logs unexpected keys) once the classifier is
    dropped, so a file of another model would silently leave random weights: refuse it instead."""
    wanted = set(backbone.state_dict())
    matched = len(wanted & set(weights))
    if matched < len(wanted) / 2:
        raise ValueError(
            f"{path} does not hold {name!r} weights: only {matched} of its {len(wanted)} "
            "parameter names are in the file"
        )
