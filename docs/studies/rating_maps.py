"""Which "why this rating" map to serve: a sanity check on synthetic products.

    python docs/studies/rating_maps.py --model outputs/demo/rating --dataset outputs/demo/dataset

On the synthetic data the rating is a known function of the product's colour, pattern, garment and
detail, drawn on a flat background: nothing off the product can carry it. A map that explains the
rating should therefore put its mass on the product. For each test photo this finds the product mask
(pixels that differ from the background tint) and scores three maps by the share of their mass on it
(against the mask's share of the photo, what a map blind to the photo scores) and by how often their
peak lands on it; plus each map's time per photo:

    occlusion    |rating change| when a patch is painted in the background colour: the served
                 map, `ProductRatingModel.rating_map`
    gradcam      |sum_c w_c A_c|, w_c the rating's mean gradient on the last feature map
    gradcam_relu the textbook Grad-CAM: only the positive part (what raises the score)

Writes benchmarks/results/rating_maps.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import AutoImageProcessor, AutoModel

import modeling  # noqa: F401  (registered: AutoModel takes this repository's code, not the folder's)


def gradcam(model, pixels: torch.Tensor, relu: bool = False) -> torch.Tensor:
    with torch.enable_grad():
        features = model.forward_features(pixels).detach().requires_grad_(True)
        (gradients,) = torch.autograd.grad(model.forward_head(features)[0].sum(), features)
    cam = (gradients.mean(dim=(2, 3), keepdim=True) * features.detach()).sum(1, keepdim=True)
    cam = F.relu(cam) if relu else cam.abs()
    cam = F.interpolate(cam, size=pixels.shape[-2:], mode="bilinear")[:, 0]
    return cam / cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]


def product_mask(letterboxed: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8 -> bool (S, S): pixels that differ from the corner's background tint."""
    tint = letterboxed[0, 0].astype(np.int16)
    return np.abs(letterboxed.astype(np.int16) - tint).max(axis=-1) > 12


def score(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    mass = (maps * masks).sum(axis=(1, 2)) / maps.sum(axis=(1, 2)).clip(1e-12)
    peaks = maps.reshape(len(maps), -1).argmax(axis=1)
    on_product = masks.reshape(len(masks), -1)[np.arange(len(masks)), peaks]
    return {"mass_on_product": float(mass.mean()), "peak_on_product": float(on_product.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="outputs/demo/rating", help="a rating model folder")
    parser.add_argument("--dataset", default="outputs/demo/dataset", help="a synthetic dataset")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--patch", type=int, default=None, help="occlusion patch side (default S/8)"
    )
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--output", default="benchmarks/results/rating_maps.json")
    args = parser.parse_args()

    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    processor = AutoImageProcessor.from_pretrained(args.model, trust_remote_code=True)
    photos = list(datasets.load_from_disk(args.dataset)[args.split]["image"])
    letterboxed = np.stack([np.asarray(processor.letterbox(p.convert("RGB"))) for p in photos])
    masks = np.stack([product_mask(image) for image in letterboxed])
    pixels = processor(photos)["pixel_values"]

    methods = {"occlusion": lambda m, x: m.rating_map(x, patch=args.patch),
               "gradcam": gradcam, "gradcam_relu": lambda m, x: gradcam(m, x, relu=True)}  # fmt: skip
    results = {}
    for name, method in methods.items():
        start, maps = time.perf_counter(), []
        for batch in tqdm(pixels.split(args.batch_size), desc=name, unit="batch"):
            with torch.no_grad():  # as the pipeline calls it; Grad-CAM turns gradients on inside
                maps.append(method(model, batch))
        seconds = time.perf_counter() - start
        maps = torch.cat(maps).float().numpy()
        results[name] = {**score(maps, masks), "ms_per_photo": 1000 * seconds / len(photos)}
    area = float(masks.mean())
    report = {
        "model": args.model, "dataset": args.dataset, "split": args.split,
        "num_photos": len(photos), "image_size": int(pixels.shape[-1]),
        "occlusion_patch": args.patch or int(pixels.shape[-1]) // 8, "product_share_of_photo": area,
        "methods": results, "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }  # fmt: skip
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{len(photos)} photos; the product covers {area:.1%} of each photo on average")
    for name, r in results.items():
        print(f"{name:13s} mass on product {r['mass_on_product']:.1%}, peak on product "
              f"{r['peak_on_product']:.1%}, {r['ms_per_photo']:.1f} ms/photo")  # fmt: skip


if __name__ == "__main__":
    main()
