"""What a model says about itself: its training data (from its card), its metrics with human names,
its card cleaned up for the page.

Everything here reads the files a training run writes beside the weights (README.md with its YAML
front matter, eval_results.json, plots); a Hub model's come from the Hub cache. A model without a
card is "training data unknown", never a guess.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import metadata_load, snapshot_download

SYNTHETIC_TAG = "synthetic-data"  # model_cards/card.py tags models trained on synthetic data so


def model_folder(source: str) -> Path | None:
    """The folder holding a model's card, metrics and plots: the source itself, or (Hub id) those
    files downloaded into the Hub cache."""
    if Path(source).is_dir():
        return Path(source)
    try:
        return Path(
            snapshot_download(
                source, allow_patterns=["README.md", "*.json", "*.png", "plots/*.png"]
            )
        )
    except Exception:  # offline, private, deleted: nothing to show, and the page says so
        return None


@dataclass(frozen=True)
class TrainingData:
    """What a model was trained on, as its card says: the dataset's name and whether it is synthetic."""

    name: str | None = None  # None: the card does not say (or there is no card)
    synthetic: bool = False

    def describe(self) -> str:
        """One line: "synthetic fashion products (synthetic data)", or "training data unknown"."""
        if self.name is None:
            return "training data unknown" + (" (synthetic data)" if self.synthetic else "")
        return self.name + (" (synthetic data)" if self.synthetic else "")


def training_data(source: str) -> TrainingData:
    """A model's training data from its card's front matter: the `synthetic-data` tag and the dataset
    of the `model-index` results (what `model_cards` writes, and what the Hub shows)."""
    folder = model_folder(source)
    card = folder / "README.md" if folder is not None else None
    if card is None or not card.is_file():
        return TrainingData()
    try:
        meta = metadata_load(card) or {}
    except Exception:  # front matter that is not YAML: as if there were none
        return TrainingData()
    tags = meta.get("tags") or []
    names = [
        result.get("dataset", {}).get("name")
        for entry in meta.get("model-index") or []
        for result in entry.get("results") or []
    ]
    name = next((n for n in names if n), None)
    return TrainingData(name=name, synthetic=SYNTHETIC_TAG in tags)


# ---------------------------------------------------------------------------------------------------
# Metrics: the headline a person reads, the rest in the raw JSON

# eval_results.json key -> (name for people, how to show the value). Keys not listed here (the
# validation split, checkpoints, runtimes, throughput, decoding settings) stay in the raw JSON.
HEADLINE = {
    "rating": {
        "mae": ("MAE: mean absolute error (stars)", "{:.3f}"),
        "baseline_mae": ("MAE of the train-mean baseline (stars)", "{:.3f}"),
        "rmse": ("RMSE: root mean squared error (stars)", "{:.3f}"),
        "r2": ("R^2", "{:.3f}"),
        "oracle_r2": ("best achievable R^2 on this data", "{:.3f}"),
        "interval_coverage": ("interval coverage: true ratings inside it", "{:.1%}"),
        "interval_nominal_coverage": ("interval coverage asked for", "{:.0%}"),
        "interval_width": ("mean interval width (stars)", "{:.2f}"),
        "num_samples": ("test photos", "{:,}"),
    },
    "caption": {
        "bleu": ("BLEU-4 (0-100)", "{:.1f}"),
        "baseline_bleu": ("BLEU-4 of the most common training title", "{:.1f}"),
        "retrieval_bleu": ("BLEU-4 of the nearest training photo's title", "{:.1f}"),
        "bleu_unseen_titles": ("BLEU-4 on titles not seen in training", "{:.1f}"),
        "word_overlap": ("word overlap", "{:.3f}"),
        "jaccard": ("Jaccard word similarity", "{:.3f}"),
        "length_similarity": ("length similarity", "{:.3f}"),
        "test_titles_in_train": ("test titles also in training", "{:.0%}"),
        "copied_train_titles": ("generated titles copied from training", "{:.0%}"),
        "num_samples": ("test photos", "{:,}"),
    },
}


def headline_metrics(task: str, results: dict) -> list[list[str]]:
    """[name, value] rows of the metrics a person compares, in a fixed order, values formatted."""
    rows = []
    for key, (name, fmt) in HEADLINE[task].items():
        value = results.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.append([name, fmt.format(value)])
    return rows


# ---------------------------------------------------------------------------------------------------
# The card as the page shows it


def format_setting(value: str) -> str:
    """A hyperparameter as people write it: `SchedulerType.COSINE` -> `cosine`, `15.0` -> `15`,
    `True` / `False` -> `true` / `false` (the spelling of the command-line flags), `None` -> `none`."""
    text = value.strip()
    enum = re.fullmatch(r"[A-Z]\w*\.([A-Z][A-Z0-9_]*)", text)
    if enum:
        return enum.group(1).lower()
    if text in ("True", "False", "None"):
        return text.lower()
    if re.fullmatch(r"-?\d+\.0+", text):
        return text.split(".")[0]
    return text


def format_hyperparameters(card: str) -> str:
    """The card's hyperparameter table (rows `| `name` | value |`) with people's spellings."""

    def row(match: re.Match) -> str:
        return f"{match.group(1)}{format_setting(match.group(2))} |"

    return re.sub(r"^(\| `[^`|]+` \| )([^|\n]*?) \|$", row, card, flags=re.M)


def model_info(model) -> dict:
    """What the Model info tab shows for a served model (`source`, `task`): the card's text
    (hyperparameters formatted, images inlined), the headline metrics, the raw eval_results.json,
    the plots the card does not show, and the training data."""
    folder = model_folder(model.source)
    info = {"card": "", "metrics": [], "raw": None, "plots": [], "training": TrainingData()}
    if folder is None:
        return info
    info["training"] = training_data(model.source)
    card = folder / "README.md"
    shown = set()
    if card.is_file():
        text = re.sub(r"\A---\n.*?\n---\n", "", card.read_text(encoding="utf-8"), flags=re.S)
        info["card"] = format_hyperparameters(_inline_images(text, folder, shown)).strip()
    results = folder / "eval_results.json"
    if results.is_file():
        info["raw"] = json.loads(results.read_text())
        info["metrics"] = headline_metrics(model.task, info["raw"])
    plots = sorted(folder.glob("*.png")) + sorted(folder.glob("plots/*.png"))
    info["plots"] = [p for p in plots if p.resolve() not in shown]  # the card shows the others
    return info


def _inline_images(text: str, folder: Path, shown: set[Path]) -> str:
    """The card's relative image links as data URIs, so they load in the page (a link to a file in
    the model folder is not a URL the browser can reach); links to missing files are dropped."""

    def inline(match: re.Match) -> str:
        path = (folder / match.group(2)).resolve()
        if not path.is_file() or path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            return ""
        shown.add(path)
        kind = "png" if path.suffix.lower() == ".png" else "jpeg"
        data = base64.b64encode(path.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/{kind};base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\((?!https?://|data:)([^)\s]+)\)", inline, text)
