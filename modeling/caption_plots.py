"""Plots of a caption model's training and samples (matplotlib, written as PNG files)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_caption_history(history: list[dict], path: str | Path) -> Path:
    """Train/validation loss and validation BLEU (of generated captions) per epoch, side by side."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, bleu_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy (teacher forcing)", title="Loss")
    loss_ax.legend()
    bleu_ax.plot(epochs, [h["val_bleu"] for h in history], marker="o", color="tab:green")
    best = max(history, key=lambda h: h["val_bleu"])
    bleu_ax.axvline(
        best["epoch"], color="grey", linestyle=":", label=f"best: epoch {best['epoch']}"
    )
    bleu_ax.set(xlabel="epoch", ylabel="BLEU-4", title="Validation BLEU (greedy captions)")
    bleu_ax.legend()
    for ax in (loss_ax, bleu_ax):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_caption_grid(images, predictions, references, path: str | Path, columns: int = 4) -> Path:
    """Images with the generated caption (bold) above the true one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, prediction, reference in zip(
        axes.flat, images, predictions, references, strict=False
    ):
        ax.imshow(image)
        wrap = lambda text: "\n".join(textwrap.wrap(text, 34)[:2])  # noqa: E731
        ax.set_title(f"{wrap(prediction)}\ntrue: {wrap(reference)}", fontsize=8, loc="left")
        ax.title.set_fontweight("bold")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
