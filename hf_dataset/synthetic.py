"""Procedurally drawn fashion products: the built-in dataset for the demo and the tests.

Each product has four visible attributes: a garment (8 silhouettes), a colour (10), a pattern (4) and a
detail (4). Its caption is fully determined by them, for example "red striped t-shirt with a pocket".
Its rating is a documented function of the same attributes plus Gaussian noise:

    rating = clip(BASE + COLOUR_EFFECT[colour] + GARMENT_EFFECT[garment]
                  + PATTERN_EFFECT[pattern] + DETAIL_EFFECT[detail] + N(0, NOISE_STD^2), 1, 5)

so the best any model can do is E[rating | attributes] (`expected_rating`), and the R^2 of that oracle
is written to the build report as `oracle_r2`. `rating_count` is drawn independently (log-normal).

Product `i` of seed `s` is drawn from its own random generator seeded by `(s, i)`, so the same seed
gives byte-identical images, and building 2N products repeats the first N exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import datasets
import numpy as np
from PIL import Image, ImageDraw

from metrics import r2_score

from .build import encode_image

BASE = 3.4
NOISE_STD = 0.3

# name -> (RGB, rating effect)
COLOURS = {
    "red": ((200, 30, 40), 0.3),
    "blue": ((35, 75, 190), 0.5),
    "green": ((40, 150, 60), -0.4),
    "yellow": ((240, 205, 40), -0.8),
    "black": ((30, 30, 30), 0.8),
    "white": ((246, 246, 246), 0.2),
    "pink": ((240, 135, 185), -0.2),
    "purple": ((120, 50, 160), 0.0),
    "orange": ((245, 130, 30), -0.6),
    "grey": ((128, 128, 128), -0.3),
}
COLOUR_EFFECT = {name: effect for name, (_, effect) in COLOURS.items()}

# Silhouettes as polygons in a unit box (x right, y down). "chest" anchors a pocket or logo, "waist"
# is where a belt goes, "buttons" is the vertical span of a button placket.
# fmt: off
GARMENTS = {
    "t-shirt": {
        "polygon": [(0.3, 0.05), (0.4, 0.05), (0.45, 0.11), (0.55, 0.11), (0.6, 0.05), (0.7, 0.05),
                    (0.96, 0.26), (0.86, 0.4), (0.76, 0.32), (0.76, 0.96), (0.24, 0.96), (0.24, 0.32),
                    (0.14, 0.4), (0.04, 0.26)],
        "chest": (0.62, 0.34), "waist": 0.62, "buttons": (0.18, 0.8), "effect": 0.2,
    },
    "sweater": {
        "polygon": [(0.3, 0.05), (0.4, 0.05), (0.45, 0.1), (0.55, 0.1), (0.6, 0.05), (0.7, 0.05),
                    (0.9, 0.2), (1.0, 0.82), (0.88, 0.84), (0.77, 0.36), (0.77, 0.96), (0.23, 0.96),
                    (0.23, 0.36), (0.12, 0.84), (0.0, 0.82), (0.1, 0.2)],
        "chest": (0.62, 0.32), "waist": 0.62, "buttons": (0.16, 0.8), "effect": 0.4,
    },
    "tank top": {
        "polygon": [(0.32, 0.04), (0.4, 0.04), (0.42, 0.22), (0.58, 0.22), (0.6, 0.04), (0.68, 0.04),
                    (0.7, 0.3), (0.76, 0.36), (0.76, 0.96), (0.24, 0.96), (0.24, 0.36), (0.3, 0.3)],
        "chest": (0.6, 0.42), "waist": 0.66, "buttons": (0.3, 0.85), "effect": -0.5,
    },
    "dress": {
        "polygon": [(0.37, 0.03), (0.45, 0.09), (0.55, 0.09), (0.63, 0.03), (0.67, 0.1), (0.64, 0.36),
                    (0.9, 0.97), (0.1, 0.97), (0.36, 0.36), (0.33, 0.1)],
        "chest": (0.57, 0.2), "waist": 0.36, "buttons": (0.12, 0.32), "effect": 0.6,
    },
    "skirt": {
        "polygon": [(0.3, 0.18), (0.7, 0.18), (0.92, 0.82), (0.08, 0.82)],
        "chest": (0.62, 0.45), "waist": 0.22, "buttons": (0.3, 0.75), "effect": -0.1,
    },
    "trousers": {
        "polygon": [(0.26, 0.03), (0.74, 0.03), (0.8, 0.97), (0.56, 0.97), (0.5, 0.36), (0.44, 0.97),
                    (0.2, 0.97)],
        "chest": (0.64, 0.2), "waist": 0.07, "buttons": (0.12, 0.3), "effect": 0.3,
    },
    "shorts": {
        "polygon": [(0.2, 0.2), (0.8, 0.2), (0.9, 0.72), (0.57, 0.74), (0.5, 0.46), (0.43, 0.74),
                    (0.1, 0.72)],
        "chest": (0.66, 0.36), "waist": 0.24, "buttons": (0.28, 0.44), "effect": -0.6,
    },
    "hoodie": {
        "polygon": [(0.35, 0.16), (0.33, 0.05), (0.4, -0.03), (0.6, -0.03), (0.67, 0.05), (0.65, 0.16), (0.9, 0.22),
                    (1.0, 0.84), (0.88, 0.86), (0.77, 0.38), (0.77, 0.96), (0.23, 0.96), (0.23, 0.38),
                    (0.12, 0.86), (0.0, 0.84), (0.1, 0.22)],
        "chest": (0.62, 0.34), "waist": 0.64, "buttons": (0.2, 0.8), "effect": 0.5,
    },
}
# fmt: on
GARMENT_EFFECT = {name: spec["effect"] for name, spec in GARMENTS.items()}
PATTERN_EFFECT = {"plain": 0.2, "striped": 0.1, "polka dot": -0.3, "checked": 0.0}
# detail -> (caption phrase, rating effect)
DETAILS = {
    "pocket": ("a pocket", 0.15),
    "star logo": ("a star logo", -0.15),
    "buttons": ("buttons", 0.05),
    "belt": ("a belt", -0.05),
}
DETAIL_EFFECT = {name: effect for name, (_, effect) in DETAILS.items()}
# fmt: off
CATEGORY = {
    "t-shirt": "tops", "sweater": "tops", "tank top": "tops", "hoodie": "tops",
    "dress": "dresses", "skirt": "bottoms", "trousers": "bottoms", "shorts": "bottoms",
}
# fmt: on
STORES = ["Northwind Apparel", "Loom & Line", "Urban Thread", "Cotton Field Co", "Maple Outfitters"]
EXTRA_COLUMNS = ["store", "category", "garment", "colour", "pattern", "detail"]


def caption_for(colour: str, pattern: str, garment: str, detail: str) -> str:
    """The caption of a product: at least 5 words, every one of them visible in the image."""
    return f"{colour} {pattern} {garment} with {DETAILS[detail][0]}"


def rating_signal(colour: str, pattern: str, garment: str, detail: str) -> float:
    """The noiseless, unclipped rating: BASE plus one additive effect per attribute."""
    return (
        BASE
        + COLOUR_EFFECT[colour]
        + GARMENT_EFFECT[garment]
        + PATTERN_EFFECT[pattern]
        + DETAIL_EFFECT[detail]
    )


def expected_rating(
    signal: float, noise_std: float = NOISE_STD, low: float = 1.0, high: float = 5.0
) -> float:
    """E[clip(signal + N(0, noise_std^2), low, high)]: the best possible prediction (the oracle)."""
    a, b = (low - signal) / noise_std, (high - signal) / noise_std
    cdf = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))  # noqa: E731
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)  # noqa: E731
    inside = signal * (cdf(b) - cdf(a)) - noise_std * (pdf(b) - pdf(a))
    return low * cdf(a) + high * (1.0 - cdf(b)) + inside


def _pattern_layer(
    size: int, box: tuple[float, float, float, float], rgb, pattern: str, rng
) -> Image.Image:
    """A full-canvas texture in the garment colour with the pattern drawn in a contrasting shade."""
    texture = Image.new("RGB", (size, size), rgb)
    if pattern == "plain":
        return texture
    draw = ImageDraw.Draw(texture)
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    ink = (255, 255, 255) if luminance < 110 else tuple(int(c * 0.35) for c in rgb)
    x0, y0, x1, y1 = box
    step = max(4, int((x1 - x0) * rng.uniform(0.09, 0.13)))
    width = max(2, step // 3)
    if pattern == "striped":
        for y in range(int(y0), int(y1) + step, step):
            draw.rectangle([0, y, size, y + width - 1], fill=ink)
    elif pattern == "checked":
        for t in range(int(min(x0, y0)), int(max(x1, y1)) + step, step):
            draw.rectangle([0, t, size, t + width - 1], fill=ink)
            draw.rectangle([t, 0, t + width - 1, size], fill=ink)
    elif pattern == "polka dot":
        r = max(2, step // 4)
        for row, y in enumerate(range(int(y0), int(y1) + step, step)):
            offset = step // 2 if row % 2 else 0
            for x in range(int(x0) + offset, int(x1) + step, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    return texture


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        radius = r if k % 2 == 0 else r * 0.45
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def draw_product(
    garment: str, colour: str, pattern: str, detail: str, size: int, rng
) -> Image.Image:
    """Draw one product photo: garment at a random position, scale and small rotation, tinted background."""
    spec = GARMENTS[garment]
    rgb = tuple(int(np.clip(c + rng.integers(-12, 13), 0, 255)) for c in COLOURS[colour][0])
    scale = rng.uniform(0.62, 0.86) * size
    x0 = rng.uniform(0.04 * size, size - scale - 0.04 * size)
    y0 = rng.uniform(0.04 * size, size - scale - 0.04 * size)
    to_px = lambda p: (x0 + p[0] * scale, y0 + p[1] * scale)  # noqa: E731
    polygon = [to_px(p) for p in spec["polygon"]]
    box = (x0, y0, x0 + scale, y0 + scale)

    # The garment lives on its own RGBA layer so the whole drawing can be rotated at once.
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=255)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    layer.paste(_pattern_layer(size, box, rgb, pattern, rng), (0, 0), mask)
    draw = ImageDraw.Draw(layer)
    outline = tuple(int(c * 0.55) for c in rgb) + (255,)
    draw.polygon(polygon, outline=outline, width=max(1, size // 112))

    accent = (250, 250, 250, 255) if sum(rgb) < 380 else (25, 25, 25, 255)
    cx, cy = to_px(spec["chest"])
    unit = scale / 10
    if detail == "pocket":
        draw.rectangle(
            [cx - unit * 0.8, cy - unit * 0.7, cx + unit * 0.8, cy + unit * 0.9],
            fill=tuple(rgb) + (255,),
            outline=accent,
            width=max(1, size // 112),
        )
    elif detail == "star logo":
        draw.polygon(_star(cx, cy, unit * 1.0), fill=accent)
    elif detail == "buttons":
        top, bottom = spec["buttons"]
        for t in np.linspace(top, bottom, 4):
            bx, by = to_px((0.5, t))
            r = unit * 0.28
            draw.ellipse([bx - r, by - r, bx + r, by + r], fill=accent)
    elif detail == "belt":
        # A band across the canvas, cut to the garment's shape, with a buckle in the middle.
        bx, wy = to_px((0.5, spec["waist"]))
        band = Image.new("L", (size, size), 0)
        ImageDraw.Draw(band).rectangle([0, wy - unit * 0.4, size, wy + unit * 0.4], fill=255)
        band = Image.fromarray(np.minimum(np.asarray(band), np.asarray(mask)))
        layer.paste(Image.new("RGBA", (size, size), accent), (0, 0), band)
        draw.rectangle(
            [bx - unit * 0.5, wy - unit * 0.5, bx + unit * 0.5, wy + unit * 0.5],
            outline=(200, 170, 40, 255),
            width=max(1, size // 80),
        )

    angle = rng.uniform(-12.0, 12.0)
    layer = layer.rotate(
        angle, resample=Image.Resampling.BILINEAR, center=(x0 + scale / 2, y0 + scale / 2)
    )
    tint = tuple(int(v) for v in rng.integers(222, 256, size=3))
    background = Image.new("RGBA", (size, size), tint + (255,))
    return Image.alpha_composite(background, layer).convert("RGB")


def product(index: int, seed: int, image_size: int) -> dict:
    """Product `index` of `seed`: attributes, image, caption, rating and rating count."""
    rng = np.random.default_rng([seed, index])
    garment = str(rng.choice(list(GARMENTS)))
    colour = str(rng.choice(list(COLOURS)))
    pattern = str(rng.choice(list(PATTERN_EFFECT)))
    detail = str(rng.choice(list(DETAILS)))
    signal = rating_signal(colour, pattern, garment, detail)
    rating = float(np.clip(signal + rng.normal(0.0, NOISE_STD), 1.0, 5.0))
    rating_count = int(1 + math.floor(math.exp(rng.normal(3.0, 1.2))))
    image = draw_product(garment, colour, pattern, detail, image_size, rng)
    return {
        "product_id": f"SYN{seed}-{index:07d}",
        "image": {"bytes": encode_image(image, max_side=image_size), "path": None},
        "caption": caption_for(colour, pattern, garment, detail),
        "rating": rating,
        "rating_count": rating_count,
        "store": STORES[int(rng.integers(len(STORES)))],
        "category": CATEGORY[garment],
        "garment": garment,
        "colour": colour,
        "pattern": pattern,
        "detail": detail,
    }


def generate(num_products: int, seed: int, image_size: int) -> Iterator[dict]:
    for index in range(num_products):
        yield product(index, seed, image_size)


def oracle_report(dataset) -> dict:
    """R^2 of the best possible predictor E[rating | attributes], overall and per split."""
    per_split, all_true, all_pred = {}, [], []
    for name, split in dataset.items():
        columns = split.select_columns(["rating", "colour", "pattern", "garment", "detail"])[:]
        y_true = np.asarray(columns["rating"], dtype=np.float64)
        y_pred = np.asarray(
            [
                expected_rating(rating_signal(*attrs))
                for attrs in zip(
                    columns["colour"],
                    columns["pattern"],
                    columns["garment"],
                    columns["detail"],
                    strict=True,
                )
            ],
            dtype=np.float64,
        )
        per_split[name] = round(r2_score(y_true, y_pred), 4) if len(y_true) > 1 else None
        all_true.append(y_true)
        all_pred.append(y_pred)
    y_true, y_pred = np.concatenate(all_true), np.concatenate(all_pred)
    return {
        "oracle_r2": round(r2_score(y_true, y_pred), 4),
        "oracle_r2_by_split": per_split,
        "oracle_mae": round(float(np.mean(np.abs(y_true - y_pred))), 4),
    }


def rating_model_description() -> dict:
    """The generating process, spelled out for the build report and the dataset card."""
    return {
        "formula": "clip(base + colour + garment + pattern + detail + N(0, noise_std^2), 1, 5)",
        "base": BASE,
        "noise_std": NOISE_STD,
        "colour": COLOUR_EFFECT,
        "garment": GARMENT_EFFECT,
        "pattern": PATTERN_EFFECT,
        "detail": DETAIL_EFFECT,
        "rating_count": "1 + floor(exp(N(3.0, 1.2^2))), independent of the rating",
    }


def build(
    output,
    *,
    num_products: int = 1000,
    seed: int = 0,
    image_size: int = 224,
    overwrite: bool = False,
):
    """Draw `num_products` products and write them as a dataset (see `build.write_dataset`)."""
    from tqdm.auto import tqdm

    from .build import BuildError, base_features, write_dataset

    if num_products < 1:
        raise BuildError(f"--num_products must be a positive integer, got {num_products}")
    if not 32 <= image_size <= 1024:
        raise BuildError(f"--image_size must be between 32 and 1024 pixels, got {image_size}")
    if seed < 0:
        raise BuildError(f"--seed must be a non-negative integer, got {seed}")

    def records():
        progress = tqdm(
            generate(num_products, seed, image_size),
            total=num_products,
            desc="drawing products",
            unit="product",
        )
        yield from progress

    report = {
        "source": "synthetic",
        "num_products": num_products,
        "seed": seed,
        "image_size": image_size,
        "dropped": {},
        "rating_model": rating_model_description(),
    }
    card = {
        "pretty_name": "Synthetic fashion products",
        "summary": (
            "Procedurally drawn fashion product photos (8 garments, 10 colours, 4 patterns, 4 details) "
            "with a caption fully determined by what is drawn and a star rating that is a documented "
            "function of the visible attributes plus Gaussian noise. Built by `python -m hf_dataset "
            f"synthetic --num_products {num_products} --seed {seed}`; the same seed gives the same bytes."
        ),
        "source": (
            "Drawn with PIL by `hf_dataset/synthetic.py`. The rating formula, its noise and the best "
            "achievable R^2 (`oracle_r2`, the R^2 of E[rating | attributes]) are in the build report below."
        ),
        "license": "apache-2.0",
        "tags": ["synthetic"],
    }
    return write_dataset(
        records,
        output,
        features=base_features(EXTRA_COLUMNS),
        report=report,
        card=card,
        overwrite=overwrite,
        summarize=oracle_report,
    )


def add_arguments(parser) -> None:
    parser.add_argument(
        "--output",
        required=True,
        help="dataset folder to write (load it with datasets.load_from_disk)",
    )
    parser.add_argument(
        "--num_products",
        "--num-products",
        type=int,
        default=1000,
        help="how many products to draw (default: 1000)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed; the same seed gives byte-identical images (default: 0)",
    )
    parser.add_argument(
        "--image_size",
        "--image-size",
        type=int,
        default=224,
        help="image side in pixels (default: 224)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a non-empty output folder"
    )


def main(args) -> datasets.DatasetDict:
    return build(
        args.output,
        num_products=args.num_products,
        seed=args.seed,
        image_size=args.image_size,
        overwrite=args.overwrite,
    )
