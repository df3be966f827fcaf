"""The served models: found (flag, environment, default folders), loaded once, kept for comparisons."""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor

from .cards import TrainingData, training_data
from .images import HERE, MAX_PIXELS, PhotoError

TASKS = ("rating", "caption")
MODEL_TYPES = {"rating": "product_rating", "caption": "product_caption"}
ENV_VARS = {"rating": "RATING_MODEL", "caption": "CAPTION_MODEL"}
# the first that exists wins: a Space's copy, then a model trained on real photos (`make catalog`),
# then the synthetic demo's (`make demo`)
DEFAULT_FOLDERS = {
    "rating": ("models/rating", "outputs/demo/rating"),
    "caption": ("models/caption", "outputs/catalog/caption", "outputs/demo/caption"),
}
TRAIN_HINTS = {
    "rating": "python train_rating.py --dataset DIR --output_dir outputs/demo/rating",
    "caption": "accelerate launch train_caption.py --dataset DIR --output_dir outputs/demo/caption",
}
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # a GPU Space uses its GPU

# Comparing a typed Hub id runs that repository's code (trust_remote_code=True). On your own machine
# that is your call; on a public Space any visitor could make it run any code, so a Space compares
# only local folders and the models it serves, unless its owner sets ALLOW_HUB_MODELS=1.
ALLOW_TYPED_HUB_IDS = "SPACE_ID" not in os.environ or os.environ.get("ALLOW_HUB_MODELS") == "1"


class ModelError(RuntimeError):
    """A model that cannot be found or loaded, or is not the kind asked for."""


class ServedModel:
    """A model (folder or Hub id) and its processor, loaded once, the model in eval mode; `bf16`: it
    runs under bf16 autocast (faster on CPUs with AVX-512 BF16 or AMX and on GPUs, BENCHMARKS.md)."""

    task: str
    processor_class: type

    def __init__(self, source: str, bf16: bool = False):
        self.source = str(source)
        self.bf16 = bf16
        self.model = _load(AutoModel, self.source, self.task).eval().to(DEVICE)
        self.processor = _load(self.processor_class, self.source, self.task)
        self.image_processor = getattr(self.processor, "image_processor", self.processor)
        if not hasattr(self.image_processor, "load_image"):
            raise ModelError(
                f"{self.source} was saved by an older version of this project (its image processor "
                "has no load_image): save it again with the current code"
            )
        self._training: TrainingData | None = None

    @property
    def training(self) -> TrainingData:
        """What the model was trained on, from its card (read once)."""
        if self._training is None:
            self._training = training_data(self.source)
        return self._training

    def describe(self) -> str:
        """`the rating model outputs/demo/rating, trained on synthetic fashion products (...)`"""
        return f"the {self.task} model {self.source}, trained on {self.training.describe()}"

    def autocast(self) -> torch.autocast:
        return torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=self.bf16)

    def load_image(
        self, source: str | io.BytesIO, name: str | None = None, max_pixels: int = MAX_PIXELS
    ) -> Image.Image:
        """A photo read as this model's own image processor reads it (checks, RGB, size cap)."""
        try:
            return self.image_processor.load_image(source, name=name, max_pixels=max_pixels)
        except ValueError as error:  # the processor's UnreadableImageError names the file
            raise PhotoError(str(error)) from None


class RatingModel(ServedModel):
    """A `product_rating` model and its image processor. Call it on RGB images to get ratings in [1, 5]."""

    task, processor_class = "rating", AutoImageProcessor

    def __call__(self, images: list[Image.Image]) -> list[float]:
        return self.rate(images)[0]

    @torch.inference_mode()
    def rate(self, images: list[Image.Image]) -> tuple[list[float], list[list[float]] | None]:
        """Ratings (B,) and their calibrated [low, high] intervals (B, 2), None without calibration."""
        pixel_values = self.processor(images)["pixel_values"].to(DEVICE)  # (B, 3, S, S)
        with self.autocast():
            output = self.model(pixel_values=pixel_values)
        interval = getattr(output, "interval", None)  # absent from models saved before intervals
        return output.predictions.float().tolist(), (
            None if interval is None else interval.float().tolist()
        )

    @property
    def coverage(self) -> float | None:
        """The interval's nominal coverage (0.9: 90% of true ratings inside), None without one."""
        calibration = getattr(self.model.config, "interval", None)
        return calibration.get("coverage") if calibration else None

    @property
    def no_interval_reason(self) -> str:
        if not hasattr(self.model.config, "interval"):
            return "this model was saved before intervals existed"
        return "this model was trained without one"

    def rating_map(self, image: Image.Image) -> np.ndarray | None:
        """The rating's occlusion map over the model's letterboxed square, (S, S) in [0, 1]; None when
        the model's code has no `rating_map` (saved before it existed)."""
        if not hasattr(self.model, "rating_map"):
            return None
        pixel_values = self.processor([image])["pixel_values"].to(DEVICE)
        with self.autocast():
            return self.model.rating_map(pixel_values)[0].float().cpu().numpy()


class CaptionModel(ServedModel):
    """A `product_caption` model and its processor (image processor + tokenizer). Call it on RGB images
    to get product titles; `num_beams=1` is greedy decoding."""

    task, processor_class = "caption", AutoProcessor

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image], num_beams: int = 3) -> list[str]:
        pixel_values = self.processor(images=images)["pixel_values"].to(DEVICE)  # (B, 3, S, S)
        with self.autocast():
            ids = self.model.generate(pixel_values=pixel_values, num_beams=num_beams)  # (B, 1 + L)
        return self.processor.batch_decode(ids, skip_special_tokens=True)


MODEL_CLASSES = {"rating": RatingModel, "caption": CaptionModel}


def _load(auto_class, source: str, task: str):
    """`auto_class.from_pretrained(source)` with the model's own code; any failure is one line."""
    looks_like_a_path = source.startswith((".", "/", "~")) or source.count("/") > 1  # not a Hub id
    if looks_like_a_path and not Path(source).exists():
        raise ModelError(f"could not load the {task} model {source}: no such folder")
    if Path(source).is_dir() and not (Path(source) / "config.json").is_file():
        raise ModelError(f"{source} is {_what_folder(Path(source))}, not a saved {task} model")
    try:
        if auto_class is AutoModel:  # check the kind before loading any weights
            model_type = AutoConfig.from_pretrained(source, trust_remote_code=True).model_type
            if model_type != MODEL_TYPES[task]:
                raise ModelError(
                    f"{source} is a {model_type!r} model, not a {task} model ({MODEL_TYPES[task]!r})"
                )
        return auto_class.from_pretrained(source, trust_remote_code=True)
    except ModelError:
        raise
    except Exception as error:  # unknown Hub id, offline, corrupt files, ...: all one line
        lines = [line for line in str(error).splitlines() if line.strip()]
        reason = lines[0] if lines else type(error).__name__
        raise ModelError(f"could not load the {task} model {source}: {reason}") from None


def _what_folder(folder: Path) -> str:
    """A folder without config.json in a few words (transformers' own message is a paragraph)."""
    if any((folder / name).is_file() for name in ("dataset_dict.json", "dataset_info.json")):
        return "a dataset folder"
    if any(folder.glob("checkpoint-*/config.json")):
        return "a training folder without a final model (only checkpoint-* folders)"
    return "a folder without config.json"


def load_model(task: str, source: str | Path, bf16: bool = False) -> RatingModel | CaptionModel:
    return MODEL_CLASSES[task](str(source), bf16=bf16)


def resolve_model(task: str, flag: str | None = None) -> str | None:
    """Where the `task` model comes from: the flag, its environment variable, then the default folders."""
    if flag:
        return flag
    if os.environ.get(ENV_VARS[task]):
        return os.environ[ENV_VARS[task]]
    for folder in DEFAULT_FOLDERS[task]:
        if (HERE / folder / "config.json").is_file():
            return str(HERE / folder)
    return None


def missing_model_hint(task: str) -> str:
    folders = " or ".join(f"`{f}`" for f in DEFAULT_FOLDERS[task])
    return (
        f"No {task} model: none given (`--{task}_model PATH_OR_ID` or `{ENV_VARS[task]}`) and none in "
        f"{folders}. Train the demo's with `make demo`, or your own with `{TRAIN_HINTS[task]}`."
    )


class ModelCache:
    """Models for the Compare tab, loaded on demand and kept by (task, source). The served models are
    always there; of the others, the `capacity` most recently used are kept, in the served ones'
    precision."""

    def __init__(self, served: Iterable[RatingModel | CaptionModel], capacity: int = 4):
        self.served = {(m.task, m.source): m for m in served}
        self.bf16 = any(m.bf16 for m in self.served.values())
        self.capacity = capacity
        self._loaded: OrderedDict[tuple[str, str], RatingModel | CaptionModel] = OrderedDict()
        self._lock = threading.Lock()  # one load at a time; a model is loaded once

    def get(self, task: str, source: str) -> RatingModel | CaptionModel:
        key = (task, source)
        if key in self.served:
            return self.served[key]
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            if not ALLOW_TYPED_HUB_IDS and not Path(source).is_dir():
                raise ModelError(
                    f"{source}: this Space compares only local folders and the models it serves "
                    "(loading a Hub id would run that repository's code)"
                )
            model = load_model(task, source, bf16=self.bf16)
            self._loaded[key] = model
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
            return model
