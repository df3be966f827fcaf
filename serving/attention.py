"""Where the caption model looked for each word (Show, Attend and Tell's figure): the photo as the
model saw it, letterboxed, with one smooth heatmap per word over the image area.

Only matplotlib, numpy and PIL: the app draws it for the Predict tab and `train_caption.py` for a few
test photos, without importing each other.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image, ImageOps


@torch.inference_mode()
def caption_attention(
    model, processor, image: Image.Image, num_beams: int = 3, memory: torch.Tensor | None = None
):
    """One photo -> (caption, its words, (words, N) attention weights), from a caption model with
    attention and its processor (image processor + tokenizer). `memory`: the photo's encoder
    features (1, 1 + N, D) when they are at hand (a feature cache), instead of encoding it again."""
    if memory is None:
        inputs = {"pixel_values": processor(images=[image])["pixel_values"].to(model.device)}
    else:
        inputs = {"encoder_hidden_states": memory.to(model.device)}
    sequences = model.generate(**inputs, num_beams=num_beams)  # (1, 1 + L)
    # the weights each word was read with: the caption teacher-forced through the same steps
    attentions = model(**inputs, input_ids=sequences, output_attentions=True).attentions
    words, rows = [], []
    for position, token in enumerate(sequences[0, 1:].tolist()):
        if token in (model.config.eos_token_id, model.config.pad_token_id):
            break
        words.append(processor.tokenizer.decode([token]))
        rows.append(position)
    caption = processor.batch_decode(sequences, skip_special_tokens=True)[0]
    return caption, words, attentions[0, rows].float().cpu().numpy()


def letterbox_box(width: int, height: int, side: int) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a width x height photo inside its `side` x `side` letterbox."""
    scale = side / max(width, height)
    w, h = width * scale, height * scale
    return (side - w) / 2, (side - h) / 2, (side + w) / 2, (side + h) / 2


def attention_figure(
    image: Image.Image, words: list[str], weights: np.ndarray, side: int, columns: int = 4
) -> Figure:
    """`weights` (L, N): each word's attention over the N spatial tokens, a square grid laid over the
    `side` px letterbox. The padding (white, no photo) is shown outside a dashed outline."""
    weights = np.asarray(weights, dtype=np.float32)[: len(words)]
    grid = math.isqrt(weights.shape[1])
    if grid * grid != weights.shape[1]:
        raise ValueError(f"{weights.shape[1]} tokens do not form a square grid")
    boxed = ImageOps.pad(image.convert("RGB"), (side, side), color=(255, 255, 255))
    left, top, right, bottom = letterbox_box(*image.size, side)
    rows = math.ceil((len(words) + 1) / columns)
    figure = Figure(figsize=(2.2 * columns, 2.4 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    axes[0].imshow(boxed)
    axes[0].set_title("photo", fontsize=9)
    for ax, word, row in zip(axes[1:], words, weights, strict=False):
        heat = Image.fromarray(row.reshape(grid, grid)).resize(
            (side, side), Image.Resampling.BICUBIC
        )
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
