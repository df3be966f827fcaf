"""`python -m hf_dataset analyze DIR`: look at a saved dataset before training on it.

Per split: counts, the rating distribution, caption lengths and vocabulary, image sizes and the extra
columns. Across splits: the leaks that would make an evaluation dishonest (a product or an identical
image in two splits) and the identical captions a memorising model could copy. And the baselines every
model has to beat: the train-mean rating and the most common train caption.

`analyze(DIR)` writes PNG plots and `analysis.json` into `DIR/analysis` and returns the same dict;
`update_card=True` also embeds them into the dataset card `DIR/README.md`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from metrics import (
    WORD,
    baseline_mae,
    constant_caption_baseline,
    load_metric,
    most_common_caption,
    words,
)

from .build import BuildError
from .splits import SPLITS

REQUIRED_COLUMNS = ("product_id", "image", "caption", "rating", "rating_count")
TOP_K = 20  # most frequent words / extra values kept in analysis.json
NUM_EXAMPLES = 5  # examples kept per leak
CARD_START, CARD_END = "<!-- analysis:start -->", "<!-- analysis:end -->"

LEAK_MEANINGS = {
    "product_ids": "LEAK: the same product in two splits; the model is evaluated on products it trained on.",
    "images": "LEAK: byte-identical images in two splits (SHA-256 of the stored bytes), even under different product ids.",
    "captions": (
        "Information, not an error: different products with the same caption in two splits. "
        "A model that memorises train captions can reproduce these exactly. Expected where captions "
        "are templated (the synthetic source has 8*10*4*4 = 1,280 possible captions) or are "
        "catalogue titles shared by product variants."
    ),
}


def _has_text(caption: str | None) -> bool:
    """The training scripts drop a row whose caption is missing or blank: so do the baselines."""
    return caption is not None and caption.strip() != ""


def _summary(values: np.ndarray) -> dict:
    """count, mean, std, min, quartiles, max of `values` (population std, as numpy computes it)."""
    if len(values) == 0:
        return {"count": 0}
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return {
        "count": int(len(values)),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "q25": float(q25),
        "median": float(median),
        "q75": float(q75),
        "max": float(values.max()),
    }


def _not_null(values: list) -> np.ndarray:
    return np.asarray([v for v in values if v is not None], dtype=np.float64)


def load(dataset_dir: str | os.PathLike) -> datasets.DatasetDict:
    """Load a dataset saved with `save_to_disk`, or raise a one-line `BuildError` saying what is wrong."""
    path = Path(dataset_dir)
    if not path.is_dir():
        raise BuildError(f"dataset folder {path} does not exist")
    if not (path / "dataset_dict.json").is_file():
        raise BuildError(
            f"{path} is not a saved dataset (no dataset_dict.json); "
            "build one with `python -m hf_dataset synthetic --output DIR`"
        )
    dataset = datasets.load_from_disk(str(path))
    for name, split in dataset.items():
        missing = [c for c in REQUIRED_COLUMNS if c not in split.column_names]
        if missing:
            raise BuildError(f"split {name!r} of {path} lacks the columns {', '.join(missing)}")
    return dataset


def _scan_images(
    split: datasets.Dataset, name: str
) -> tuple[list[tuple[int, int]], list[str], int]:
    """(width, height) and SHA-256 of every stored image, reading headers only (no pixel decode)."""
    from tqdm.auto import tqdm

    images = split.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    sizes, hashes, unreadable = [], [], 0
    with tqdm(total=len(images), desc=f"reading {name} images", unit="image", leave=False) as bar:
        for batch in images.iter(batch_size=512):
            for image in batch["image"]:
                data = image["bytes"]
                if data is None:  # stored as a path only (not done by our sources)
                    data = Path(image["path"]).read_bytes()
                hashes.append(hashlib.sha256(data).hexdigest())
                try:
                    with Image.open(io.BytesIO(data)) as opened:
                        sizes.append(opened.size)
                except Exception:
                    unreadable += 1
            bar.update(len(batch["image"]))
    return sizes, hashes, unreadable


def _split_stats(split: datasets.Dataset, name: str, extras: list[str]) -> tuple[dict, dict]:
    """Everything about one split, plus the raw columns the plots and the cross-split checks need."""
    columns = split.select_columns(["product_id", "caption", "rating", "rating_count", *extras])[:]
    ratings = _not_null(columns["rating"])
    counts = _not_null(columns["rating_count"])
    tokens = [words(c or "") for c in columns["caption"]]
    vocabulary = Counter(w for caption in tokens for w in caption)
    lengths = np.asarray([len(t) for t in tokens], dtype=np.float64)
    sizes, hashes, unreadable = _scan_images(split, name)
    widths = np.asarray([w for w, _ in sizes], dtype=np.float64)
    heights = np.asarray([h for _, h in sizes], dtype=np.float64)
    stats = {
        "num_rows": len(split),
        "num_products": len(set(columns["product_id"])),
        "rating": _summary(ratings) | {"missing": len(split) - len(ratings)},
        "rating_count": _summary(counts) | {"missing": len(split) - len(counts)},
        "caption": {
            "length_words": _summary(lengths),
            "num_unique_captions": len(set(columns["caption"])),
            "vocab_size": len(vocabulary),
            "num_tokens": int(lengths.sum()),
            "top_words": vocabulary.most_common(TOP_K),
        },
        "image": {
            "width": _summary(widths),
            "height": _summary(heights),
            "top_sizes": [
                [f"{w}x{h}", n] for (w, h), n in Counter(sizes).most_common(NUM_EXAMPLES)
            ],
            "unreadable": unreadable,
            # several photos of one product are fine; the same bytes under two products are not
            "duplicates_within_split": len(hashes) - len(set(hashes)),
        },
        "extras": {
            column: {
                "num_unique": len(set(v for v in columns[column] if v is not None)),
                "missing": sum(v is None for v in columns[column]),
                "top": Counter(v for v in columns[column] if v is not None).most_common(TOP_K),
            }
            for column in extras
        },
    }
    raw = {
        "ratings": ratings,
        "pairs": [
            (r, c)
            for r, c in zip(columns["rating"], columns["rating_count"], strict=True)
            if r is not None and c is not None
        ],
        "lengths": lengths,
        "vocabulary": vocabulary,
        "tokens": tokens,
        "sizes": sizes,
        "hashes": hashes,
        "product_ids": columns["product_id"],
        "captions": columns["caption"],
        "extras": {column: columns[column] for column in extras},
    }
    return stats, raw


def _oov(train_vocabulary: Counter, tokens: list[list[str]]) -> dict:
    """How many of a split's words (tokens, and distinct types) the train vocabulary lacks."""
    counts = Counter(w for caption in tokens for w in caption)
    missing = {w: n for w, n in counts.items() if w not in train_vocabulary}
    num_tokens, num_oov = sum(counts.values()), sum(missing.values())
    return {
        "tokens": num_tokens,
        "oov_tokens": num_oov,
        "oov_token_rate": num_oov / num_tokens if num_tokens else None,
        "types": len(counts),
        "oov_types": len(missing),
        "oov_type_rate": len(missing) / len(counts) if counts else None,
        "examples": [w for w, _ in Counter(missing).most_common(NUM_EXAMPLES)],
    }


def _across_splits(raw: dict, key: str) -> dict[str, dict[str, list[str]]]:
    """value -> {split: [product ids]} for every value of `raw[split][key]` found in two splits or more."""
    where: dict[str, dict[str, list[str]]] = {}
    for name, columns in raw.items():
        for value, product_id in zip(columns[key], columns["product_ids"], strict=True):
            if value is not None:
                where.setdefault(value, {}).setdefault(name, []).append(product_id)
    return {value: splits for value, splits in where.items() if len(splits) > 1}


def _leakage(raw: dict) -> dict:
    product_ids = _across_splits(raw, "product_ids")
    images = _across_splits(raw, "hashes")
    captions = _across_splits(raw, "captions")

    def pairs(found):
        counter = Counter("/".join(sorted(s, key=SPLITS.index)) for s in found.values())
        return dict(sorted(counter.items()))

    def rows_in(found, split):
        return sum(len(s.get(split, [])) for s in found.values())

    return {
        "product_ids": {
            "is_leak": True,
            "count": len(product_ids),
            "by_splits": pairs(product_ids),
            "examples": [
                {"product_id": pid, "splits": sorted(s, key=SPLITS.index)}
                for pid, s in list(product_ids.items())[:NUM_EXAMPLES]
            ],
            "meaning": LEAK_MEANINGS["product_ids"],
        },
        "images": {
            "is_leak": True,
            "count": len(images),
            "by_splits": pairs(images),
            "examples": [
                {"sha256": digest[:16], "product_ids": {s: ids[:3] for s, ids in where.items()}}
                for digest, where in list(images.items())[:NUM_EXAMPLES]
            ],
            "meaning": LEAK_MEANINGS["images"],
        },
        "captions": {
            "is_leak": False,
            "count": len(captions),
            "by_splits": pairs(captions),
            "test_rows_with_a_train_caption": sum(
                len(s["test"]) for s in captions.values() if "train" in s and "test" in s
            ),
            "test_rows": len(raw["test"]["captions"]) if "test" in raw else 0,
            "examples": [
                {"caption": caption, "product_ids": {s: ids[:3] for s, ids in where.items()}}
                for caption, where in list(captions.items())[:NUM_EXAMPLES]
            ],
            "meaning": LEAK_MEANINGS["captions"],
            "rows_by_split": {name: rows_in(captions, name) for name in raw},
        },
    }


def _baselines(raw: dict) -> dict:
    """The numbers to beat: the train-mean rating (MAE) and the most common train caption (BLEU),
    computed by `metrics` as the training scripts compute them."""
    rating: dict = {"description": "predict the mean train rating for every product"}
    train_ratings = raw.get("train", {}).get("ratings", np.empty(0))
    if len(train_ratings) == 0:
        rating["skipped"] = "no ratings in the train split"
    else:
        rating["train_mean"] = float(train_ratings.mean())
        for name in ("validation", "test"):
            ratings = raw.get(name, {}).get("ratings", np.empty(0))
            rating[f"{name}_mae"] = (
                baseline_mae(ratings, rating["train_mean"]) if len(ratings) else None
            )

    caption: dict = {"description": "predict the most common train caption for every product"}
    train_captions = raw.get("train", {}).get("captions", [])
    found = most_common_caption(train_captions)
    if found is None:
        caption["skipped"] = "no captions in the train split"
    else:
        caption["most_common_train_caption"], caption["train_count"] = found
        metric = load_metric("caption")
        for name in ("validation", "test"):
            references = [c for c in raw.get(name, {}).get("captions", []) if _has_text(c)]
            caption[f"{name}_bleu"] = (
                constant_caption_baseline(train_captions, references, metric)["baseline_bleu"]
                if references
                else None
            )
    return {"rating": rating, "caption": caption}


# ----------------------------------------------------------------------------------------- plots


def _plots(raw: dict, stats: dict, output: Path, has_ratings: bool) -> dict[str, str]:
    """Write the PNGs; returns {plot name: file name}."""
    figures = _Figures(raw, stats, output)
    if has_ratings:
        figures.rating_histogram()
        figures.rating_vs_count()
    figures.caption_length()
    figures.top_words()
    figures.image_sizes()
    figures.extra_columns()
    return figures.written


class _Figures:
    """One method per plot: each draws its figure from the split columns (`raw`) or statistics
    (`stats`) and saves it into `output`, unless there is nothing to draw."""

    COLOURS = {"train": "tab:blue", "validation": "tab:orange", "test": "tab:green"}

    def __init__(self, raw: dict, stats: dict, output: Path):
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt

        self.plt, self.raw, self.stats, self.output = plt, raw, stats, output
        self.written: dict[str, str] = {}

    def save(self, fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(self.output / f"{name}.png", dpi=110)
        self.plt.close(fig)
        self.written[name] = f"{name}.png"

    def label(self, name: str) -> str:
        return f"{name} (n={self.stats[name]['num_rows']:,})"

    def rating_histogram(self) -> None:
        fig, ax = self.plt.subplots(figsize=(7, 4))
        # 0.2-wide bins whose edges fall between the 0.1 steps of averaged star ratings (4.3, 4.4, ...)
        bins = np.arange(0.95, 5.2, 0.2)
        for name, columns in self.raw.items():
            if len(columns["ratings"]):
                ax.hist(
                    columns["ratings"],
                    bins=bins,
                    density=True,
                    histtype="stepfilled" if name == "train" else "step",
                    alpha=0.35 if name == "train" else 1.0,
                    linewidth=1.8,
                    color=self.COLOURS.get(name),
                    label=self.label(name),
                )
        ax.set(xlabel="rating", ylabel="density", title="Rating distribution by split")
        ax.set_xticks([1, 2, 3, 4, 5])
        ax.legend()
        self.save(fig, "rating_histogram")

    def rating_vs_count(self) -> None:
        if not any(columns["pairs"] for columns in self.raw.values()):
            return
        fig, ax = self.plt.subplots(figsize=(7, 4.5))
        for name, columns in self.raw.items():
            if columns["pairs"]:
                r, c = np.asarray(columns["pairs"], dtype=np.float64).T
                ax.scatter(
                    c,
                    r,
                    s=8,
                    alpha=0.4,
                    color=self.COLOURS.get(name),
                    label=self.label(name),
                    rasterized=True,
                )
        ax.set_xscale("log")
        ax.set(
            xlabel="rating count (log scale)",
            ylabel="rating",
            title="Rating vs number of ratings",
        )
        ax.legend(markerscale=2)
        self.save(fig, "rating_vs_count")

    def caption_length(self) -> None:
        fig, ax = self.plt.subplots(figsize=(7, 4))
        lengths = np.concatenate([c["lengths"] for c in self.raw.values()])
        shortest, longest = (int(lengths.min()), int(lengths.max())) if len(lengths) else (0, 1)
        bins = np.arange(shortest - 0.5, longest + 1.5, 1)
        for name, columns in self.raw.items():
            if len(columns["lengths"]):
                ax.hist(
                    columns["lengths"],
                    bins=bins,
                    density=True,
                    histtype="step",
                    linewidth=1.8,
                    color=self.COLOURS.get(name),
                    label=self.label(name),
                )
        ax.set(xlabel="caption length (words)", ylabel="share of captions", title="Caption length")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend()
        self.save(fig, "caption_length")

    def top_words(self) -> None:
        train_top = self.stats.get("train", {}).get("caption", {}).get("top_words", [])
        if not train_top:
            return
        fig, ax = self.plt.subplots(figsize=(7, 5.5))
        names, counts = zip(*reversed(train_top), strict=True)
        ax.barh(names, counts, color="tab:blue")
        vocab = self.stats["train"]["caption"]["vocab_size"]
        ax.set(xlabel="occurrences", title=f"Most frequent train words (vocabulary {vocab:,})")
        self.save(fig, "top_words")

    def image_sizes(self) -> None:
        """One point per distinct (width, height), its area growing with the number of images of
        that size: resized datasets collapse onto a few points (or one line at the size cap)."""
        sizes = Counter(size for columns in self.raw.values() for size in columns["sizes"])
        if not sizes:
            return
        fig, ax = self.plt.subplots(figsize=(6, 5))
        (w, h), n = sizes.most_common(1)[0]
        total = sum(sizes.values())
        points = np.asarray(list(sizes), dtype=np.float64)
        counts = np.asarray(list(sizes.values()), dtype=np.float64)
        ax.scatter(points[:, 0], points[:, 1], s=20 + 400 * counts / counts.max(), alpha=0.5)
        if len(sizes) <= 5:
            for (x, y), c in sizes.items():
                ax.annotate(f"{x}x{y}: {c:,}", (x, y), textcoords="offset points", xytext=(8, 8))
        ax.set(
            xlabel="width (px)",
            ylabel="height (px)",
            title=f"Image sizes: {len(sizes):,} distinct; most common {w}x{h} ({n / total:.0%})",
        )
        self.save(fig, "image_sizes")

    def extra_columns(self) -> None:
        """The 10 most common values of each extra column, one panel each, all splits together."""
        extras = list(next(iter(self.stats.values()))["extras"]) if self.stats else []
        if not extras:
            return
        cols = min(3, len(extras))
        rows = -(-len(extras) // cols)
        fig, axes = self.plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
        for axis, column in zip(axes.flat, extras, strict=False):
            total = Counter()
            for columns in self.raw.values():
                total.update(v for v in columns["extras"][column] if v is not None)
            top = total.most_common(10)
            if top:
                names, counts = zip(*reversed(top), strict=True)
                axis.barh([n if len(n) <= 22 else n[:21] + "…" for n in names], counts)
            shown = f"top 10 of {len(total):,}" if len(total) > 10 else f"{len(total)} values"
            axis.set_title(f"{column} ({shown})", fontsize=10)
            axis.tick_params(labelsize=8)
        for axis in list(axes.flat)[len(extras) :]:
            axis.axis("off")
        fig.suptitle("Extra columns, all splits", fontsize=11)
        self.save(fig, "extra_columns")


# ------------------------------------------------------------------------------------- analyze


def analyze(
    dataset_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    update_card: bool = False,
    plots: bool = True,
) -> dict:
    """Analyse a dataset saved with `save_to_disk` (the docs/DESIGN.md contract) and write the report.

    Args:
        dataset_dir: the dataset folder (`python -m hf_dataset SOURCE --output DIR`).
        output_dir: where the PNG plots and `analysis.json` go (default: `DIR/analysis`).
        update_card: also embed the plots and the summary into the dataset card `DIR/README.md`,
            replacing the section a previous run embedded.
        plots: write the PNG plots (`False`: the numbers only, `plots` is empty).

    Returns:
        The content of `analysis.json`: `splits` (per-split statistics), `oov` (validation and
        test words missing from the train vocabulary), `leakage`, `baselines`, `plots`.

    Raises:
        BuildError: `dataset_dir` is not a saved dataset of this project.
    """
    dataset_dir = Path(dataset_dir)
    dataset = load(dataset_dir)
    output = Path(output_dir) if output_dir is not None else dataset_dir / "analysis"
    output.mkdir(parents=True, exist_ok=True)

    names = [n for n in SPLITS if n in dataset] + [n for n in dataset if n not in SPLITS]
    extras = [c for c in dataset[names[0]].column_names if c not in REQUIRED_COLUMNS]
    stats, raw = {}, {}
    for name in names:
        stats[name], raw[name] = _split_stats(dataset[name], name, extras)
    has_ratings = any(len(columns["ratings"]) for columns in raw.values())

    train_vocabulary = raw["train"]["vocabulary"] if "train" in raw else Counter()
    notes = [] if has_ratings else ["no ratings: every rating is null (a caption-only dataset)"]
    for name, s in stats.items():
        if has_ratings and s["rating"]["missing"]:
            notes.append(
                f"{name}: {s['rating']['missing']:,} of {s['num_rows']:,} ratings are null"
            )
    analysis = {
        "dataset": str(dataset_dir),
        "has_ratings": has_ratings,
        "notes": notes,
        "tokenization": f"lower-cased, split into words by the regex {WORD.pattern} ('t-shirt' is one word)",
        "splits": stats,
        "oov": {
            name: _oov(train_vocabulary, raw[name]["tokens"]) for name in names if name != "train"
        },
        "leakage": _leakage(raw),
        "baselines": _baselines(raw),
    }
    analysis["plots"] = _plots(raw, stats, output, has_ratings) if plots else {}
    (output / "analysis.json").write_text(json.dumps(analysis, indent=2) + "\n")
    if update_card:
        embed_in_card(dataset_dir, analysis, output)
    return analysis


# ---------------------------------------------------------------------------------- text output


def _fmt(value, spec=".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def summary_lines(analysis: dict) -> list[str]:
    """The short table printed by the CLI and embedded in the card (plain text, fixed width)."""
    lines = [
        f"{'split':<11}{'rows':>8}{'products':>10}{'rating mean±std':>17}{'median':>8}"
        f"{'vocab':>7}{'OOV tok':>9}{'OOV type':>10}{'image size':>13}"
    ]
    for name, s in analysis["splits"].items():
        r = s["rating"]
        rating = f"{r['mean']:.2f} ± {r['std']:.2f}" if r["count"] else "no ratings"
        if not s["num_rows"]:
            rating = "empty split"
        oov = analysis["oov"].get(
            name
        )  # none for train: it is the vocabulary OOV is measured against
        oov_tokens = _fmt(oov["oov_token_rate"], ".1%") if oov else "-"
        oov_types = _fmt(oov["oov_type_rate"], ".1%") if oov else "-"
        sizes = s["image"]["top_sizes"]  # the most common size, "+" when there are others
        size = sizes[0][0] + ("+" if len(sizes) > 1 else "") if sizes else "n/a"
        lines.append(
            f"{name:<11}{s['num_rows']:>8,}{s['num_products']:>10,}{rating:>17}"
            f"{_fmt(r.get('median')):>8}{s['caption']['vocab_size']:>7,}"
            f"{oov_tokens:>9}{oov_types:>10}{size:>13}"
        )
    lines += [f"note  {note}" for note in analysis["notes"]]
    leakage = analysis["leakage"]
    for key, what in (("product_ids", "product ids"), ("images", "identical images")):
        found = leakage[key]
        verdict = "LEAK" if found["count"] else "ok"
        where = ", ".join(f"{pair} {n:,}" for pair, n in found["by_splits"].items())
        lines.append(
            f"{verdict:<5} {what} across splits: {found['count']:,}{f' ({where})' if where else ''}"
        )
    within = {
        name: split_stats["image"]["duplicates_within_split"]
        for name, split_stats in analysis["splits"].items()
        if split_stats["image"]["duplicates_within_split"]
    }
    if within:
        counts = ", ".join(f"{name} {n:,}" for name, n in within.items())
        lines.append(f"info  identical images repeated within a split: {counts}")
    captions = leakage["captions"]
    lines.append(
        f"info  identical captions across splits: {captions['count']:,}; "
        f"{captions['test_rows_with_a_train_caption']:,} of {captions['test_rows']:,} test rows "
        "have a caption seen in train (a memorising model can copy these; not an error)"
    )
    rating, caption = analysis["baselines"]["rating"], analysis["baselines"]["caption"]
    if "skipped" in rating:
        lines.append(f"baseline rating: skipped ({rating['skipped']})")
    else:
        lines.append(
            f"baseline rating: train mean {rating['train_mean']:.3f} -> MAE "
            f"validation {_fmt(rating['validation_mae'], '.3f')}, test {_fmt(rating['test_mae'], '.3f')}"
        )
    if "skipped" in caption:
        lines.append(f"baseline caption: skipped ({caption['skipped']})")
    else:
        lines.append(
            f"baseline caption: {caption['most_common_train_caption']!r} for every product -> "
            f"BLEU validation {_fmt(caption['validation_bleu'])}, test {_fmt(caption['test_bleu'])}"
        )
    return lines


def embed_in_card(dataset_dir: Path, analysis: dict, output: Path) -> None:
    """Put the summary and the plots into `DIR/README.md` between the analysis markers (replaced on refresh)."""
    from huggingface_hub import DatasetCard

    card_path = dataset_dir / "README.md"
    if not card_path.is_file():
        raise BuildError(f"{card_path} does not exist; cannot embed the analysis into the card")
    relative = Path(os.path.relpath(output.absolute(), dataset_dir.absolute())).as_posix()
    figures = "\n\n".join(
        f"![{name.replace('_', ' ')}]({relative}/{file})"
        for name, file in analysis["plots"].items()
    )
    table = "\n".join(summary_lines(analysis))
    section = f"""{CARD_START}
## Analysis

Made by `python -m hf_dataset analyze` (all numbers in `{relative}/analysis.json`). Captions are
lower-cased and split into words (`t-shirt` is one word); OOV = the validation and test words
missing from the train vocabulary.

```
{table}
```

{figures}
{CARD_END}"""
    card = DatasetCard.load(card_path)
    text = card.text
    pattern = re.compile(re.escape(CARD_START) + ".*?" + re.escape(CARD_END), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    card.text = text
    card.save(card_path)


def add_arguments(parser) -> None:
    parser.add_argument("dataset", metavar="DIR", help="a dataset folder saved by this project")
    parser.add_argument(
        "--output",
        metavar="REPORT_DIR",
        help="where the plots and analysis.json go (default: DIR/analysis)",
    )
    parser.add_argument(
        "--update_card",
        "--update-card",
        action="store_true",
        help="embed the plots and summary into DIR/README.md (replaces an earlier analysis section)",
    )


def main(args) -> None:
    analysis = analyze(args.dataset, args.output, update_card=args.update_card)
    output = args.output or Path(args.dataset) / "analysis"
    print(f"\nanalysis of {args.dataset} (plots and analysis.json in {output})")
    print("\n".join(summary_lines(analysis)))
    if args.update_card:
        print(f"updated the dataset card {Path(args.dataset) / 'README.md'}")
