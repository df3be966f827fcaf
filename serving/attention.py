"""Where the models looked: the caption model for each word (Show, Attend and Tell's figure) and,
when the rating model has one, its occlusion map; drawn as one composed image, the photo first.

`compose_maps` is numpy and PIL only, and fast (a 10-word title in a few milliseconds), so the Predict
tab can draw it for every photo. `attention_figure` is the matplotlib version `train_caption.py` saves
for a few test photos (matplotlib loads only when it is called).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

# matplotlib's "inferno" at 11 evenly spaced points, interpolated to 256 colours: the same colour
# scale as the training plots, without importing matplotlib
_INFERNO = [(0, 0, 4), (22, 11, 57), (66, 10, 104), (106, 23, 110), (147, 38, 103), (188, 55, 84),
            (221, 81, 58), (243, 120, 25), (252, 165, 10), (246, 215, 70), (252, 255, 164)]  # fmt: skip
INFERNO = np.stack(
    [
        np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, 11), c)
        for c in zip(*_INFERNO, strict=True)
    ],
    axis=1,
).astype(np.float32)  # (256, 3)

PANEL, LABEL_HEIGHT, GAP, ALPHA = 176, 30, 6, 0.55  # px; the heatmap's opacity over the photo


@torch.inference_mode()
def caption_details(
    model, processor, image: Image.Image, num_beams: int = 3, memory: torch.Tensor | None = None
) -> dict:
    """One photo -> {"caption", "words", "log_probs" (one per word, and the end), "weights"}: the
    caption a caption model generates (its generation_config.json's settings, the repetition guard
    included), each word's log-probability, and, for a model with attention, the (words, N) weights
    each word was read with. The photo is encoded once (or `memory`, its (1, 1 + N, D) features)."""
    if memory is None:
        pixel_values = processor(images=[image])["pixel_values"].to(model.device)
        memory = model.encode(pixel_values.to(model.dtype))
    inputs = {"encoder_hidden_states": memory.to(model.device)}
    sequences = model.generate(**inputs, num_beams=num_beams)  # (1, 1 + L)
    # the caption teacher-forced through the same steps: the weights and scores each word was read with
    attention = bool(model.config.attention)
    output = model(**inputs, input_ids=sequences, output_attentions=attention)
    log_probs = output.logits[0].float().log_softmax(dim=-1)  # (1 + L, V): row t scores token t + 1
    special = set(processor.tokenizer.all_special_ids)  # not in the title (e.g. [UNK])
    words, rows, scores = [], [], []
    for position, token in enumerate(sequences[0, 1:].tolist()):
        if token == model.config.pad_token_id:
            break
        scores.append(log_probs[position, token].item())
        if token == model.config.eos_token_id:
            break
        if token not in special:  # one map per word of the title as shown
            words.append(processor.tokenizer.decode([token]))
            rows.append(position)
    caption = processor.batch_decode(sequences, skip_special_tokens=True)[0]
    weights = output.attentions[0, rows].float().cpu().numpy() if attention else None
    return {"caption": caption, "words": words, "log_probs": scores, "weights": weights}


def caption_attention(
    model, processor, image: Image.Image, num_beams: int = 3, memory: torch.Tensor | None = None
):
    """One photo -> (caption, its words, (words, N) attention weights), from a caption model with
    attention and its processor (what `train_caption.py` plots)."""
    details = caption_details(model, processor, image, num_beams, memory)
    return details["caption"], details["words"], details["weights"]


def letterbox_box(width: int, height: int, side: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a width x height photo inside its `side` x `side` letterbox."""
    scale = side / max(width, height)
    w, h = width * scale, height * scale
    return (side - w) / 2, (side - h) / 2, (side + w) / 2, (side + h) / 2


def word_grids(weights: np.ndarray) -> list[np.ndarray]:
    """(L, N) attention weights -> L square (g, g) grids (N = g * g spatial tokens)."""
    weights = np.asarray(weights, dtype=np.float32)
    grid = math.isqrt(weights.shape[1])
    if grid * grid != weights.shape[1]:
        raise ValueError(f"{weights.shape[1]} tokens do not form a square grid")
    return list(weights.reshape(len(weights), grid, grid))


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)  # Pillow's own font: no system fonts needed on a Space


def compose_maps(
    photo: Image.Image,
    maps: list[tuple[str, np.ndarray]],
    columns: int = 3,
    panel: int = PANEL,
) -> Image.Image:
    """The photo, then one panel per (label, map): each map (any shape, laid over the whole square
    letterbox the models see) scaled to its own range, coloured, over the letterboxed photo, with
    its label above. A thin grey outline marks the photo inside the white padding.

    Three columns stay readable when a phone shrinks the image to ~370 px (~115 px a panel)."""
    boxed = ImageOps.pad(photo.convert("RGB"), (panel, panel), color=(255, 255, 255))
    base = np.asarray(boxed, dtype=np.float32)  # (P, P, 3)
    box = letterbox_box(*photo.size, panel)
    count = 1 + len(maps)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    cell_w, cell_h = panel + GAP, LABEL_HEIGHT + panel + GAP
    canvas = Image.new("RGB", (columns * cell_w - GAP, rows * cell_h - GAP), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(22)
    for index, (label, heat) in enumerate([("photo", None), *maps]):
        x, y = (index % columns) * cell_w, (index // columns) * cell_h
        tile = boxed if heat is None else Image.fromarray(_overlay(base, heat, panel))
        canvas.paste(tile, (x, y + LABEL_HEIGHT))
        left, top, right, bottom = box
        draw.rectangle(
            (x + left, y + LABEL_HEIGHT + top, x + right - 1, y + LABEL_HEIGHT + bottom - 1),
            outline=(156, 163, 175),
        )
        draw.text((x + 2, y + 3), _fit(draw, label, font, panel - 4), fill=(17, 24, 39), font=font)
    return canvas


def _overlay(base: np.ndarray, heat: np.ndarray, panel: int) -> np.ndarray:
    """`heat` (h, w) resized to the panel (bicubic), scaled to [0, 1], coloured and blended."""
    heat = np.asarray(heat, dtype=np.float32)
    resized = np.asarray(
        Image.fromarray(heat, mode="F").resize((panel, panel), Image.Resampling.BICUBIC)
    )
    low, high = float(heat.min()), float(heat.max())
    scaled = (resized - low) / (high - low) if high > low else np.zeros_like(resized)
    colour = INFERNO[np.clip(scaled * 255, 0, 255).astype(np.uint8)]  # (P, P, 3)
    return (base * (1 - ALPHA) + colour * ALPHA).astype(np.uint8)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """`text`, shortened with an ellipsis to fit `width` px."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def attention_figure(
    image: Image.Image, words: list[str], weights: np.ndarray, side: int, columns: int = 4
):
    """A matplotlib Figure of the same maps (for `train_caption.py`'s plots): `weights` (L, N), each
    word's attention over the N spatial tokens, a square grid laid over the `side` px letterbox. The
    padding (white, no photo) is shown outside a dashed outline."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    grids = word_grids(np.asarray(weights, dtype=np.float32)[: len(words)])
    boxed = ImageOps.pad(image.convert("RGB"), (side, side), color=(255, 255, 255))
    left, top, right, bottom = letterbox_box(*image.size, side)
    rows = math.ceil((len(words) + 1) / columns)
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    axes[0].imshow(boxed)
    axes[0].set_title("photo", fontsize=9)
    for ax, word, grid in zip(axes[1:], words, grids, strict=False):
        heat = Image.fromarray(grid).resize((side, side), Image.Resampling.BICUBIC)
        ax.imshow(boxed)
        ax.imshow(np.asarray(heat), cmap="inferno", alpha=0.55, extent=(0, side, side, 0))
        ax.set_title(word, fontsize=10, fontweight="bold")
    for ax in axes[: len(words) + 1]:
        outline = Rectangle((left, top), right - left, bottom - top, fill=False, ls="--", lw=0.8,
                            ec="#6b7280")  # fmt: skip
        ax.add_patch(outline)
    for ax in axes:
        ax.set_axis_off()
    return figure
