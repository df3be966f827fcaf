"""Evaluate any saved model on any saved dataset split and write the metrics as JSON.

    python evaluate_models.py --model outputs/rating --dataset data/synthetic --split test \\
        --output outputs/rating/test_results.json

The model's `config.model_type` picks the evaluation:
- `product_rating`: mae, rmse, r2, baseline_mae (predicting the dataset's train-split mean), num_samples;
- `product_caption`: beam-search captions scored with bleu, word_overlap, jaccard, length_similarity,
  num_samples, next to the same scores of a constant caption (the most common train caption).
`--update-card` writes the new metrics into the model folder's card (README.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from model_cards import update_model_card
from modeling import ProductCaptionModel, ProductCaptionProcessor, ProductImageProcessor
from modeling.metrics import constant_caption_baseline, load_metric


class ScriptError(Exception):
    """A problem with the user's input: printed as one line, without a traceback."""


def rated(split: datasets.Dataset) -> tuple[datasets.Dataset, int]:
    """The rows that have a rating, and how many were dropped."""
    ratings = (
        split.select_columns(["rating"])[:]["rating"] if "rating" in split.column_names else []
    )
    keep = [i for i, rating in enumerate(ratings) if rating is not None]
    return split.select(keep, keep_in_memory=True), len(split) - len(keep)


def evaluate_rating(model_dir: str, dataset: datasets.DatasetDict, split: str, args) -> dict:
    """MAE, RMSE, R^2 of a ProductRatingModel, and the MAE of predicting the train-split mean."""
    data, dropped = rated(dataset[split])
    print(f"{split}: {len(data)} rated products ({dropped} without a rating dropped)")
    if len(data) == 0:
        raise ScriptError(f"the {split} split has no rated products to evaluate on")
    train_mean = None
    if "train" in dataset:
        train_ratings = [
            r for r in dataset["train"].select_columns(["rating"])[:]["rating"] if r is not None
        ]
        train_mean = float(np.mean(train_ratings)) if train_ratings else None

    model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).to(args.device).eval()
    processor = AutoImageProcessor.from_pretrained(model_dir, trust_remote_code=True)
    transform = processor.eval_transform()  # the same letterbox the model was validated with
    data.set_transform(
        lambda batch: {
            "pixel_values": [transform(image) for image in batch["image"]],
            "labels": batch["rating"],
        },
        columns=["image", "rating"],
    )
    loader = torch.utils.data.DataLoader(
        data, batch_size=args.batch_size, num_workers=args.num_workers
    )
    predictions, references = [], []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"rating {split}", unit="batch"):
            output = model(pixel_values=batch["pixel_values"].to(args.device))
            predictions.append(output.predictions.float().cpu())
            references.append(batch["labels"].float())
    results = load_metric("rating").compute(
        predictions=torch.cat(predictions).numpy(),
        references=torch.cat(references).numpy(),
        train_mean=train_mean,
    )
    if train_mean is not None:
        results["train_mean"] = train_mean
    return results


@torch.inference_mode()
def evaluate_caption(model_dir: str, dataset: datasets.DatasetDict, split: str, args) -> dict:
    """Beam-search captions for every image of `split`, scored with the caption metrics; plus the
    constant baseline (the most common train caption) when the dataset has a train split."""
    from transformers import PreTrainedTokenizerFast

    data = dataset[split]
    if "caption" not in data.column_names:
        raise ScriptError(
            f"the {split} split has no 'caption' column (columns: {', '.join(data.column_names)})"
        )
    data = data.filter(lambda c: c is not None and c.strip() != "", input_columns="caption")
    model = ProductCaptionModel.from_pretrained(model_dir).to(args.device).eval()
    processor = (
        ProductCaptionProcessor(  # this package's classes, not the folder's copy of the code
            ProductImageProcessor.from_pretrained(model_dir),
            PreTrainedTokenizerFast.from_pretrained(model_dir),
        )
    )
    predictions = []
    for start in tqdm(
        range(0, len(data), args.batch_size), desc=f"captioning {split}", unit="batch"
    ):
        images = data[start : start + args.batch_size]["image"]
        pixel_values = processor(images=images)["pixel_values"].to(args.device)
        ids = model.generate(
            pixel_values, num_beams=args.num_beams, length_penalty=args.length_penalty
        )
        predictions += processor.batch_decode(ids.cpu())
    references = list(data["caption"])
    results = load_metric("caption").compute(predictions=predictions, references=references)
    if "train" in dataset and "caption" in dataset["train"].column_names:
        results.update(constant_caption_baseline(dataset["train"]["caption"], references))
    results.update(num_beams=args.num_beams, length_penalty=args.length_penalty)
    return results


# config.model_type -> (evaluation, model card task); each evaluation returns JSON-serialisable metrics
EVALUATORS = {
    "product_rating": (evaluate_rating, "rating"),
    "product_caption": (evaluate_caption, "caption"),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="saved model folder (or Hub id)")
    parser.add_argument("--dataset", required=True, help="dataset folder (load_from_disk)")
    parser.add_argument("--split", default="test", help="split to evaluate")
    parser.add_argument("--output", default=None, help="JSON file to write the metrics to")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--num_beams", type=int, default=3, help="caption models: beam size")
    parser.add_argument("--length_penalty", type=float, default=1.0, help="caption models")
    parser.add_argument(
        "--update-card",
        "--update_card",
        dest="update_card",
        action="store_true",
        help="write these metrics into the model folder's card (README.md)",
    )
    parser.add_argument("--num_workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device"
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    dataset_dir = Path(args.dataset)
    if not dataset_dir.is_dir():
        raise ScriptError(f"dataset folder not found: {dataset_dir}")
    try:
        dataset = datasets.load_from_disk(str(dataset_dir))
    except FileNotFoundError as error:
        raise ScriptError(f"{dataset_dir} is not a saved dataset ({error})") from None
    if not isinstance(dataset, datasets.DatasetDict) or args.split not in dataset:
        raise ScriptError(f"{dataset_dir} has no split {args.split!r}")
    try:
        config = AutoConfig.from_pretrained(args.model, trust_remote_code=True)
    except (OSError, ValueError) as error:
        raise ScriptError(
            f"cannot load a model from {args.model}: {str(error).splitlines()[0]}"
        ) from None
    if config.model_type not in EVALUATORS:
        raise ScriptError(
            f"no evaluation for model_type {config.model_type!r} (known: {', '.join(EVALUATORS)})"
        )

    evaluator, task = EVALUATORS[config.model_type]
    metrics = evaluator(args.model, dataset, args.split, args)
    results = {
        "model": str(args.model),
        "model_type": config.model_type,
        "dataset": str(dataset_dir),
        "split": args.split,
        **metrics,
    }
    print(json.dumps(metrics, indent=2))
    if args.output:
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {output}")
    if args.update_card:
        if not Path(args.model, "README.md").is_file():
            raise ScriptError(
                f"--update-card: {args.model} has no model card (README.md) to update"
            )
        update_model_card(args.model, metrics, task=task, dataset=dataset_dir, split=args.split)
        print(f"updated the model card {Path(args.model) / 'README.md'}")
    return results


if __name__ == "__main__":
    try:
        main()
    except ScriptError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
