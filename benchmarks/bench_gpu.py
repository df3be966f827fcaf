"""CUDA figures: rating training images/s (end to end vs model only), ViT-S/16 features, decoder tokens/s.

Measured the way timm and NVIDIA report ResNet-50 training: fp16 autocast, `channels_last`, batch 256,
images/s over timed steps after warm-up. "End to end" reads a stored dataset (`save_to_disk`, JPEG,
max side 384) through `train_rating.py`'s own data pipeline (its `attach_transforms` and `collate`):
`ProductImageProcessor`'s train transform in `DataLoader` workers with pinned memory, handing over
uint8 images that are normalised on the GPU (the script's default), next to the same pipeline
normalising in the workers.
"Model only" feeds tensors already on the GPU, the ceiling the pipeline is compared with. All run
with and without `torch.compile`.

On a machine without CUDA `run()` returns None (skipped). `measure()` takes a device, so the test
suite runs the very code `run()` runs on the CPU with tiny models (`tests/test_benchmarks.py`).

    python benchmarks/run.py --only bench_gpu
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import tempfile
import time
from contextlib import nullcontext

import datasets
import torch
from PIL import Image
from torch.utils.data import DataLoader

import train_rating
from hf_dataset import synthetic
from modeling import (
    ProductCaptionConfig,
    ProductCaptionModel,
    ProductImageProcessor,
    ProductRatingConfig,
    ProductRatingModel,
)

from .common import machine


def _autocast(device: torch.device, fp16: bool):
    return torch.autocast(device.type, dtype=torch.float16) if fp16 else nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rating_step(model, optimizer, scaler, device, fp16):
    """One training step as Trainer does it: autocast forward, scaled backward, clip, step."""

    def step(pixel_values, labels):
        with _autocast(device, fp16):
            loss = model(pixel_values=pixel_values, labels=labels).loss
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step


def _rating_model(backbone: str, image_size: int, device, compile_model: bool):
    config = ProductRatingConfig(backbone=backbone, image_size=image_size)
    model = ProductRatingModel(config).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    if compile_model:
        model = torch.compile(model)
    return model, optimizer


def rating_training(
    dataset_dir: str,
    *,
    device: torch.device,
    backbone: str = "resnet50",
    image_size: int = 224,
    batch_size: int = 256,
    steps: int = 50,
    warmup: int = 10,
    num_workers: int = 8,
    fp16: bool = True,
    compile_model: bool = False,
) -> dict:
    """Images/s of rating training: model only (tensors on the device) and end to end (stored
    dataset), with uint8 batches normalised on the device and with float batches from the workers."""
    model, optimizer = _rating_model(backbone, image_size, device, compile_model)
    scaler = torch.amp.GradScaler(device.type, enabled=fp16 and device.type == "cuda")
    step = _rating_step(model, optimizer, scaler, device, fp16)
    timed = dict(device=device, warmup=warmup, steps=steps, batch_size=batch_size)

    # model only: one batch already on the device, reused
    pixels = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    labels = torch.rand(batch_size, device=device) * 4 + 1
    model_only = _images_per_second(step, itertools.repeat((pixels, labels)), **timed)

    # end to end: the stored dataset through the training pipeline, uint8 batches normalised on the
    # device (what train_rating.py does), then float batches normalised in the workers
    processor = ProductImageProcessor(image_size=image_size)
    batches = functools.partial(
        _training_batches,
        dataset_dir,
        processor,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
    )
    uint8_rate = _images_per_second(step, batches(normalize_on_device=True), **timed)
    float_rate = _images_per_second(step, batches(normalize_on_device=False), **timed)
    return {
        "name": f"rating training, {backbone}, {'fp16' if fp16 else 'fp32'}, channels_last"
        + (", torch.compile" if compile_model else ""),
        "batch_size": batch_size,
        "image_size": image_size,
        "num_workers": num_workers,
        "model_only_images_per_s": round(model_only, 1),
        "end_to_end_images_per_s": round(uint8_rate, 1),
        "end_to_end_fraction_of_model_only": round(uint8_rate / model_only, 3),
        "end_to_end_normalised_in_workers_images_per_s": round(float_rate, 1),
    }


def _images_per_second(step, batches, *, device, warmup: int, steps: int, batch_size: int) -> float:
    """`warmup` untimed steps, then images/s over `steps` timed ones."""
    for _ in range(warmup):
        step(*next(batches))
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(*next(batches))
    _sync(device)
    return steps * batch_size / (time.perf_counter() - start)


def _training_batches(
    dataset_dir: str,
    processor: ProductImageProcessor,
    *,
    normalize_on_device: bool,
    batch_size: int,
    num_workers: int,
    device: torch.device,
):
    """Endless (pixel_values, labels) on the device, from train_rating.py's own data pipeline."""
    splits = datasets.load_from_disk(dataset_dir)
    train_rating.attach_transforms(
        splits, processor, weight_by_rating_count=False, normalize=not normalize_on_device
    )
    loader = DataLoader(
        splits["train"],
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        collate_fn=train_rating.collate,
    )
    while True:
        for batch in loader:
            x = batch["pixel_values"].to(device, non_blocking=True)
            if normalize_on_device:  # what train_rating.RatingTrainer does
                x = processor.normalize(x)
            yield x.contiguous(memory_format=torch.channels_last), batch["labels"].to(device)


@torch.inference_mode()
def vit_features(
    *,
    device,
    encoder: str = "vit_small_patch16_224",
    batch_size: int = 512,
    steps: int = 30,
    fp16: bool = True,
) -> dict:
    """Frozen-encoder feature extraction images/s (what the caption feature cache costs)."""
    model = ProductCaptionModel(ProductCaptionConfig(encoder_name=encoder)).to(device).eval()
    pixels = torch.randn(batch_size, 3, 224, 224, device=device)
    with _autocast(device, fp16):
        for _ in range(3):
            model.encode(pixels)  # (B, 1 + N, D) token features
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model.encode(pixels)
        _sync(device)
    return {
        "name": f"{encoder} feature extraction, {'fp16' if fp16 else 'fp32'}",
        "batch_size": batch_size,
        "images_per_s": round(steps * batch_size / (time.perf_counter() - start), 1),
    }


def caption_decoder(
    *,
    device,
    encoder: str = "vit_small_patch16_224",
    batch_size: int = 256,
    seq_len: int = 16,
    steps: int = 30,
    fp16: bool = True,
) -> dict:
    """Decoder training tokens/s from cached encoder features (the frozen-encoder training loop)."""
    config = ProductCaptionConfig(encoder_name=encoder, vocab_size=2000)
    model = ProductCaptionModel(config).to(device).train()
    with torch.no_grad():  # the cache: token features computed once
        features = model.encode(
            torch.randn(batch_size, 3, 224, 224, device=device)
        )  # (B, 1 + N, D)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=fp16 and device.type == "cuda")
    input_ids = torch.randint(4, config.vocab_size, (batch_size, seq_len), device=device)

    def step():
        with _autocast(device, fp16):
            loss = model(encoder_hidden_states=features, input_ids=input_ids, labels=input_ids).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return {
        "name": f"caption decoder training from cached {encoder} features, {'fp16' if fp16 else 'fp32'}",
        "batch_size": batch_size,
        "tokens_per_s": round(steps * batch_size * seq_len / (time.perf_counter() - start), 1),
    }


def half_precision_models(device: torch.device, tiny: bool = False) -> dict:
    """Both models loaded in half precision (`from_pretrained(dtype=...)`: fp16 on CUDA, bf16 on a
    CPU), fed fp32 photos as a user would, through the pipelines and `generate()` (its fast path
    and the mixin): images/s, and whether every output is a number."""
    from transformers import pipeline

    from .random_models import save_random_models

    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    batch = 4 if tiny else 64
    photos = [Image.new("RGB", (300, 400), (200, 30 * i % 255, 40)) for i in range(batch)]
    out = {"name": f"both models loaded in {str(dtype)[6:]}", "dtype": str(dtype)}
    with tempfile.TemporaryDirectory() as tmp:
        folders = save_random_models(tmp, tiny=tiny)
        rate = pipeline(model=str(folders["rating"]), trust_remote_code=True, dtype=dtype,
                        device=device)  # fmt: skip
        start = time.perf_counter()
        ratings = [r["rating"] for r in rate(photos, batch_size=batch)]
        out["rating_images_per_s"] = batch / (time.perf_counter() - start)
        out["ratings_finite"] = all(map(math.isfinite, ratings))
        caption = pipeline(model=str(folders["caption"]), trust_remote_code=True, dtype=dtype,
                           device=device)  # fmt: skip
        for name, kwargs in (("beam3", {"num_beams": 3}),
                             ("beam3_no_repeat_2", {"num_beams": 3, "no_repeat_ngram_size": 2})):  # fmt: skip
            start = time.perf_counter()
            texts = caption(photos, batch_size=batch, generate_kwargs=kwargs)
            out[f"caption_{name}_images_per_s"] = batch / (time.perf_counter() - start)
            out[f"caption_{name}_all_strings"] = all(isinstance(t[0]["generated_text"], str)
                                                     for t in texts)  # fmt: skip
    return out


def run(quick: bool = False) -> list[dict] | None:
    if not torch.cuda.is_available():
        return None
    torch.backends.cudnn.benchmark = True
    return measure(torch.device("cuda"), quick=quick)


def measure(device: torch.device, quick: bool = False, tiny: bool = False) -> list[dict]:
    """Every figure on `device`; `tiny`: timm's test models and a few steps (the CPU test)."""
    workers = 0 if tiny else min(16, len(os.sched_getaffinity(0)))
    steps = 2 if tiny else 10 if quick else 50
    fp16 = device.type == "cuda"
    rating = dict(backbone="test_resnet", image_size=32, batch_size=2, warmup=1) if tiny else {}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # Stored at the dataset contract's 384 px cap; ~3k training images, reshuffled every epoch.
        num_products = 20 if tiny else 600 if quick else 4096
        synthetic.build(f"{tmp}/data", num_products=num_products, image_size=384)
        for compile_model in (False,) if tiny else (False, True):
            results.append(
                rating_training(
                    f"{tmp}/data",
                    device=device,
                    steps=steps,
                    num_workers=workers,
                    fp16=fp16,
                    compile_model=compile_model,
                    **rating,
                )
            )
    encoder = dict(encoder="test_vit", batch_size=2) if tiny else {}
    results.append(vit_features(device=device, steps=steps, fp16=fp16, **encoder))
    decoder = dict(encoder="test_vit", batch_size=2, seq_len=4) if tiny else {}
    results.append(caption_decoder(device=device, steps=steps, fp16=fp16, **decoder))
    results.append(half_precision_models(device, tiny=tiny))
    info = machine()
    for result in results:
        result["machine"] = info
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
