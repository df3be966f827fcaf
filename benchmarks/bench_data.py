"""Data pipeline: decode + transform images/s on one core, stored images (max side 384) vs originals.

The dataset stores every image re-encoded with its longest side capped at 384 px, because the data
loader decodes every image every epoch. This measures what that buys: the same products as
original-size JPEGs (1500 px, a typical Amazon `hi_res` photo) against the stored ones, through the
same training transform at 224 px, on one thread (per core). A third figure: the stored images with
the transform stopping at uint8, as `train_rating.py` runs it by default (the scaling and normalising
then happen on the training device).
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
from PIL import Image

from hf_dataset.build import encode_image
from hf_dataset.synthetic import draw_product
from modeling.image_processing import ProductImageProcessor

from .common import machine


def _images(n: int, side: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        image = draw_product("dress", "blue", "striped", "pocket", side, rng)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _rate(blobs: list[bytes], transform, seconds: float) -> float:
    """Images/s decoding and transforming `blobs` in a loop for about `seconds`."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for blob in blobs:
            transform(Image.open(io.BytesIO(blob)))
            done += 1
    return done / (time.perf_counter() - start)


def run(quick: bool = False) -> dict:
    n, seconds = (8, 1.0) if quick else (32, 4.0)
    originals = _images(n, 1500)
    stored = [encode_image(Image.open(io.BytesIO(b)), max_side=384) for b in originals]
    processor = ProductImageProcessor(image_size=224)
    transform = processor.train_transform()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core
    try:
        original_rate = _rate(originals, transform, seconds)
        stored_rate = _rate(stored, transform, seconds)
        uint8_rate = _rate(stored, processor.train_transform(normalize=False), seconds)
    finally:
        torch.set_num_threads(threads)
    return {
        "name": "data: decode + train transform (224 px), one core",
        "machine": machine(),
        "images": n,
        "original_side_px": 1500,
        "original_kb_per_image": round(sum(map(len, originals)) / n / 1024, 1),
        "stored_side_px": 384,
        "stored_kb_per_image": round(sum(map(len, stored)) / n / 1024, 1),
        "original_images_per_s": round(original_rate, 1),
        "stored_images_per_s": round(stored_rate, 1),
        "speedup": round(stored_rate / original_rate, 2),
        "stored_uint8_out_images_per_s": round(uint8_rate, 1),
        "uint8_out_speedup": round(uint8_rate / stored_rate, 2),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
