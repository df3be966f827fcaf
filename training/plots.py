"""PNG plots of the training scripts: curves from a log history, the views of a rating model's
errors, a caption model's history, and one image grid (titled rating samples or captioned images).

Only the training and evaluation scripts use this module (the model files never import it, so a saved
model does not need matplotlib). Every function writes one PNG through `_save` and returns its path.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path, dpi: int = 120) -> Path:
    """The one way a figure becomes a file: parent folders made, tight layout, closed after."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_curves(
    log_history: Iterable[Mapping],
    path,
    series: Mapping[str, str],
    *,
    x: str = "epoch",
    ylabel: str = "",
    title: str = "",
    hlines: Mapping[str, float] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """One line per entry of `series` (legend label -> key), from logs such as Trainer's `log_history`.

    Each log is a dict; a log contributes a point to a line when it has both `x` and that line's key,
    so train and evaluation logs can be mixed in one list. `hlines` draws labelled reference levels;
    `colors` (legend label -> colour) groups lines, the rest take matplotlib's cycle.
    """
    log_history = list(log_history)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, key in series.items():
        points = [(log[x], log[key]) for log in log_history if x in log and key in log]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3, label=label,
                    color=(colors or {}).get(label))  # fmt: skip
    for label, value in (hlines or {}).items():
        ax.axhline(value, linestyle="--", color="grey", linewidth=1)
        ax.annotate(
            label, (0.01, value), xycoords=("axes fraction", "data"), va="bottom", fontsize=8
        )
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return _save(fig, path)


def plot_loss_curves(
    log_history: Iterable[Mapping],
    path,
    *,
    train_key: str = "loss",
    eval_key: str = "eval_loss",
    x: str = "epoch",
    title: str = "Loss",
) -> Path:
    """Training and validation loss against `x` (Trainer logs `loss` and `eval_loss` by default)."""
    return plot_curves(
        log_history,
        path,
        {"train": train_key, "validation": eval_key},
        x=x,
        ylabel="loss",
        title=title,
    )


def plot_predicted_vs_true(y_true, y_pred, path, *, low=1.0, high=5.0, title="") -> Path:
    """Scatter of predicted against true ratings; the diagonal is a perfect model."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(y_true, y_pred, s=8, alpha=0.5)
    ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(low - 0.1, high + 0.1)
    ax.set_ylim(low - 0.1, high + 0.1)
    ax.set_xlabel("true rating")
    ax.set_ylabel("predicted rating")
    ax.set_title(title or "Predicted vs true")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_residuals(y_true, y_pred, path, *, title="") -> Path:
    """Histogram of prediction - truth."""
    residuals = np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(residuals, bins=min(40, max(5, len(residuals) // 5)))
    ax.axvline(0.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("predicted - true rating")
    ax.set_ylabel("products")
    ax.set_title(title or f"Residuals (mean {residuals.mean():+.3f}, std {residuals.std():.3f})")
    return _save(fig, path)


def plot_confusion_matrix(y_true, y_pred, path, *, low=1, high=5, title="") -> Path:
    """Counts of rounded true (rows) against rounded predicted (columns) ratings."""
    classes = np.arange(low, high + 1)
    true = np.clip(np.rint(np.asarray(y_true, dtype=float)), low, high).astype(int) - low
    pred = np.clip(np.rint(np.asarray(y_pred, dtype=float)), low, high).astype(int) - low
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (true, pred), 1)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    image = ax.imshow(counts, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if counts[i, j] > counts.max() / 2 else "black"
            ax.text(j, i, counts[i, j], ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted (rounded)")
    ax.set_ylabel("true (rounded)")
    accuracy = np.trace(counts) / max(1, counts.sum())
    ax.set_title(title or f"Rounded ratings (exact {accuracy:.0%})")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_image_grid(
    images, titles, path, *, columns: int = 4, title: str = "", bold: bool = False
) -> Path:
    """Images (PIL) in a grid, each with its title ("true 4.3 / predicted 4.2", or a caption above
    the true one), wrapped to fit its cell."""
    images, titles = list(images), list(titles)
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, text in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image)
        ax.set_title(text, fontsize=8, loc="left", fontweight="bold" if bold else "normal")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi=110)


def _wrap(text: str, width: int = 34, lines: int = 2) -> str:
    return "\n".join(textwrap.wrap(text, width)[:lines])


def plot_caption_grid(images, predictions, references, path, columns: int = 4) -> Path:
    """Images with the generated caption (bold) above the true one."""
    titles = [
        f"{_wrap(prediction)}\ntrue: {_wrap(reference)}"
        for prediction, reference in zip(predictions, references, strict=False)
    ]
    return plot_image_grid(images, titles, path, columns=columns, bold=True)


def plot_caption_history(history: list[dict], path) -> Path:
    """Train/validation loss and validation BLEU (of generated captions) per epoch, side by side."""
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
    return _save(fig, path)
