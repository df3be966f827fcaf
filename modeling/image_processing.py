"""One image pipeline for training, evaluation and the app, saved with each model.

Photos are read and made RGB in one place, `load_image` / `to_rgb` (16-bit, float, CMYK, palette,
transparency, EXIF orientation, animations); the dataset builder keeps a copy tested to agree
(`hf_dataset/build.py`), since the data layer imports no model code.

Product photos are letterboxed, not cropped or squashed: the longest side is resized to `image_size`
and the rest is padded with white (the usual product-photo background), so the whole garment stays in
view with its true proportions. Training adds only geometry that does not change what a caption or a
rating describes (a mild random crop and a horizontal flip); the evaluation transform is the same
letterbox without them, so train and eval see images the same way. There is no colour jitter on
purpose: colour is part of both the caption and the rating.

A model learns the sharpness of its training photos: one trained on 80 px thumbnails, letterboxed up,
has learned their blur and reads a sharp 224 px photo worse. So the processor records the training
photos' resolution (`training_resolution`) and first shrinks a larger photo to it.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms import v2
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


# Photos are refused above this many pixels before they are decoded: a small PNG can declare
# 12,000 x 12,000 pixels (432 MB of RGB), a decompression bomb.
MAX_PIXELS = 64 * 10**6
# The datasets store photos with their longest side capped at 384 px (`hf_dataset`), so the models
# were trained on such images; photos loaded for inference are shrunk the same way.
MAX_SIDE = 384


class UnreadableImageError(ValueError):
    """A photo that cannot be used (empty, not an image, truncated, too large); the message names it."""


def load_image(
    source: str | os.PathLike | bytes | io.BytesIO | Image.Image,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_side: int | None = MAX_SIDE,
) -> Image.Image:
    """A photo (path, bytes or PIL image) -> upright 8-bit RGB, longest side at most `max_side`.

    Raises `UnreadableImageError` for empty, non-image, truncated and oversized files, checked from
    the header before anything is decoded. Unusual but valid photos are converted by `to_rgb`.
    """
    if isinstance(source, Image.Image):
        return _shrink(to_rgb(source), max_side)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    if isinstance(source, io.BytesIO):
        name, size = name or "the photo", source.getbuffer().nbytes
    elif Path(source).is_file():
        name, size = name or Path(source).name, Path(source).stat().st_size
    else:
        raise UnreadableImageError(f"{name or source} not found")
    if size == 0:
        raise UnreadableImageError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            opened = Image.open(source)  # reads the header only
    except Image.DecompressionBombError as error:  # Pillow's own limit, twice MAX_IMAGE_PIXELS
        raise UnreadableImageError(f"{name} is too large ({error})") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise UnreadableImageError(
            f"{name} is not an image that can be read (JPEG, PNG, WebP, GIF, ...)"
        ) from None
    with opened as image:  # closes the file, animations' included
        width, height = image.size
        if width * height > max_pixels:
            raise UnreadableImageError(
                f"{name} is {width:,} x {height:,} pixels ({width * height / 1e6:.0f} megapixels); "
                f"the limit is {max_pixels / 1e6:.0f} megapixels: resize it and try again"
            )
        try:
            if max_side:  # JPEG only: decode at the smallest scale (1/2 ... 1/8) still >= max_side
                image.draft("RGB", (max_side, max_side))
            image.load()
        except Exception as error:  # truncated or corrupt data shows only while decoding
            raise UnreadableImageError(f"{name} is truncated or corrupt ({error})") from None
        rgb = to_rgb(image)  # a new image: the file can close
    return _shrink(rgb, max_side)


def _shrink(image: Image.Image, max_side: int | None) -> Image.Image:
    if max_side and max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def to_rgb(image: Image.Image, background=(255, 255, 255)) -> Image.Image:
    """Any PIL image as upright 8-bit RGB, a new image: EXIF orientation applied, the first frame of
    an animation, 16/32-bit and float grayscale scaled (Pillow's `convert` clips them), transparency
    over white (product photos' background; `convert` drops it onto black)."""
    if getattr(image, "is_animated", False):
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            peak = 1.0 if array.max() <= 1.0 else 255.0
        else:
            peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, background + (255,))
        image = Image.alpha_composite(canvas, image)
    return image.convert("RGB")


class ProductImageProcessor(BaseImageProcessor):
    r"""Letterbox to a square `image_size`, scale to [0, 1], normalise with the backbone's mean and std.

    Args:
        image_size (`int`, defaults to 224): side of the square the model sees.
        image_mean / image_std (`tuple[float, float, float]`): per-channel normalisation, from the
            backbone's timm data config (`from_timm`).
        interpolation (`str`, defaults to `"bicubic"`): `"bicubic"` or `"bilinear"` resizing.
        train_crop_scale (`tuple[float, float]`, defaults to `(0.8, 1.0)`): area range of the random
            crop used by `train_transform` (resized back to `image_size`).
        training_resolution (`int`, *optional*): the longest side, in pixels, of the photos the
            model was trained from (their median, recorded by training). None (processors saved
            before it existed): photos are letterboxed as they come.
        do_match_training_resolution (`bool`, defaults to `True`): shrink a photo whose longest side
            is larger than `training_resolution` to it (Lanczos) before the letterbox; `False`
            letterboxes every photo as it comes. `preprocess` takes it per call too.
    """

    model_input_names = ["pixel_values"]
    load_image = staticmethod(load_image)  # the one photo loader: training data, the app, pipelines

    def __init__(
        self,
        image_size: int = 224,
        image_mean: tuple[float, float, float] = IMAGENET_MEAN,
        image_std: tuple[float, float, float] = IMAGENET_STD,
        interpolation: str = "bicubic",
        train_crop_scale: tuple[float, float] = (0.8, 1.0),
        training_resolution: int | None = None,
        do_match_training_resolution: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if interpolation not in _RESAMPLE:
            raise ValueError(
                f"interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}"
            )
        self.image_size = int(image_size)
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.interpolation = interpolation
        self.train_crop_scale = list(train_crop_scale)
        if training_resolution is not None and int(training_resolution) < 1:
            raise ValueError(
                f"training_resolution must be a positive size, got {training_resolution}"
            )
        self.training_resolution = None if training_resolution is None else int(training_resolution)
        self.do_match_training_resolution = bool(do_match_training_resolution)

    @classmethod
    def from_timm(
        cls, model: torch.nn.Module, image_size: int | None = None, **kwargs
    ) -> ProductImageProcessor:
        """The backbone's own normalisation (timm data config), at `image_size` or its native size;
        `kwargs`: the other settings (`training_resolution`, ...)."""
        import timm

        config = timm.data.resolve_model_data_config(model)
        interpolation = config.get("interpolation", "bicubic")
        return cls(
            image_size=image_size or config["input_size"][-1],
            image_mean=config["mean"],
            image_std=config["std"],
            interpolation=interpolation if interpolation in _RESAMPLE else "bicubic",
            **kwargs,
        )

    def letterbox(self, image: Image.Image, match_resolution: bool | None = None) -> Image.Image:
        """The photo at the training resolution (unless `match_resolution` or the processor's
        `do_match_training_resolution` says not to), padded with white to a square `image_size`."""
        image = to_rgb(image)
        if match_resolution is None:
            match_resolution = self.do_match_training_resolution
        largest, target = max(image.size), self.training_resolution
        if match_resolution and target and largest > target:
            width, height = (max(1, round(side * target / largest)) for side in image.size)
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        side = self.image_size
        return ImageOps.pad(
            image, (side, side), method=_RESAMPLE[self.interpolation], color=(255, 255, 255)
        )

    def _to_tensor(self, normalize: bool = True):
        """PIL image -> uint8 (3, S, S), then `normalize()` unless told not to."""
        if normalize:
            return lambda image: self.normalize(v2.functional.pil_to_tensor(image))
        return v2.functional.pil_to_tensor

    def normalize(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, S, S) -> float, scaled to [0, 1] and normalised with the backbone's mean and
        std, on whatever device the tensor is. The default transforms end with it; with
        `normalize=False` they stop before it, for the caller to finish on the GPU."""
        scaled = v2.functional.to_dtype(pixel_values, torch.float32, scale=True)
        return v2.functional.normalize(scaled, self.image_mean, self.image_std)

    def eval_transform(self, normalize: bool = True, match_resolution: bool | None = None):
        """PIL image -> (3, image_size, image_size) float tensor, as the model sees it at inference.
        `normalize=False`: uint8 instead, for `normalize()` to finish on the GPU;
        `match_resolution`: as for `letterbox`."""
        to_tensor = self._to_tensor(normalize)
        return lambda image: to_tensor(self.letterbox(image, match_resolution))

    def train_transform(self, normalize: bool = True):
        """`eval_transform` plus a mild random crop and a horizontal flip. `normalize=False` stops at
        uint8, a quarter of the bytes to copy to a GPU; `normalize()` then finishes on the device."""
        augment = v2.Compose(
            [
                v2.RandomResizedCrop(
                    self.image_size,
                    scale=tuple(self.train_crop_scale),
                    ratio=(0.9, 1.1),
                    antialias=True,
                ),
                v2.RandomHorizontalFlip(),
            ]
        )
        to_tensor = self._to_tensor(normalize)
        return lambda image: to_tensor(augment(self.letterbox(image)))

    def preprocess(
        self,
        images,
        return_tensors: str | None = "pt",
        do_match_training_resolution: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Images (one or a list: paths, PIL images, HWC uint8 arrays or CHW uint8 tensors) ->
        `pixel_values` (B, 3, S, S); `do_match_training_resolution` overrides the processor's."""
        if not isinstance(images, list | tuple):
            images = [images]
        transform = self.eval_transform(match_resolution=do_match_training_resolution)
        pixel_values = torch.stack([transform(_as_pil(image)) for image in images])  # (B, 3, S, S)
        return BatchFeature({"pixel_values": pixel_values}, tensor_type=return_tensors)


def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, str | os.PathLike | bytes):
        return load_image(image)
    if isinstance(image, torch.Tensor):
        image = (
            image.permute(1, 2, 0).numpy()
            if image.ndim == 3 and image.shape[0] in (1, 3, 4)
            else image.numpy()
        )
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"array images must be uint8 (0-255), got {array.dtype}")
    return Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array)
