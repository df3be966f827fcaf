"""Evaluate any saved model on any saved dataset split and write the metrics as JSON.

    python evaluate_models.py --model outputs/rating --dataset data/synthetic --split test \\
        --output outputs/rating/test_results.json

The model's `config.model_type` picks the evaluation:
- `product_rating`: mae, rmse, r2, baseline_mae (predicting the dataset's train-split mean), num_samples,
  and for a model with an interval its empirical coverage and mean width (interval_coverage,
  interval_width, next to interval_nominal_coverage);
- `product_caption`: beam-search captions scored with bleu, word_overlap, jaccard, length_similarity,
  num_samples, next to the same scores of a constant caption (the most common train caption).
`--update_card` writes the new metrics into the model folder's card (README.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor
from transformers.hf_argparser import string_to_bool

from metrics import constant_caption_baseline, load_metric
from model_cards import update_model_card
from training.captions import CaptionRows, generate_captions, make_collate
from training.data import drop_empty_captions, load_splits, rated
from training.intervals import coverage_and_width
from training.script import UserError, first_line, run_script


def load(model_dir: str, processor_class, device: str):
    """The saved model and its processor, for either family, as the app loads them: the Auto
    classes with `trust_remote_code=True` (the folder's `auto_map`, model and tokenizer alike).
    Where this package is imported transformers takes its registered classes instead."""
    model = AutoModel.from_pretrained(model_dir, trust_remote_code=True).to(device).eval()
    return model, processor_class.from_pretrained(model_dir, trust_remote_code=True)


def match_resolution(image_processor, args) -> None:
    """`--match_training_resolution`: on (the processor's default) or off; older processors have
    no training resolution to match."""
    image_processor.do_match_training_resolution = args.match_training_resolution


def evaluate_rating(model_dir: str, dataset: datasets.DatasetDict, split: str, args) -> dict:
    """MAE, RMSE, R^2 of a ProductRatingModel, and the MAE of predicting the train-split mean."""
    data, dropped = rated(dataset[split])
    print(f"{split}: {len(data)} rated products ({dropped} without a rating dropped)")
    if len(data) == 0:
        raise UserError(f"the {split} split has no rated products to evaluate on")
    train_mean = None
    if "train" in dataset:
        train_ratings = [
            r for r in dataset["train"].select_columns(["rating"])[:]["rating"] if r is not None
        ]
        train_mean = float(np.mean(train_ratings)) if train_ratings else None

    model, processor = load(model_dir, AutoImageProcessor, args.device)
    match_resolution(processor, args)
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
    predictions, intervals, references = [], [], []
    with torch.inference_mode():
        for batch in tqdm(loader, desc=f"rating {split}", unit="batch"):
            output = model(pixel_values=batch["pixel_values"].to(args.device))
            predictions.append(output.predictions.float().cpu())
            if output.interval is not None:
                intervals.append(output.interval.float().cpu())
            references.append(batch["labels"].float())
    references = torch.cat(references)
    results = load_metric("rating").compute(
        predictions=torch.cat(predictions).numpy(),
        references=references.numpy(),
        train_mean=train_mean,
    )
    if train_mean is not None:
        results["train_mean"] = train_mean
    if intervals:  # models saved before intervals existed have none
        measured = coverage_and_width(references.numpy(), torch.cat(intervals).numpy())
        results.update(
            interval_nominal_coverage=model.config.interval["coverage"],
            interval_method=model.config.interval["method"],
            interval_coverage=measured["coverage"],
            interval_width=measured["width"],
        )
    return results


@torch.inference_mode()
def evaluate_caption(model_dir: str, dataset: datasets.DatasetDict, split: str, args) -> dict:
    """Beam-search captions for every image of `split`, scored with the caption metrics; plus the
    constant baseline (the most common train caption) when the dataset has a train split."""
    data = datasets.DatasetDict({split: dataset[split]})
    drop_empty_captions(data)
    data = data[split]
    model, processor = load(model_dir, AutoProcessor, args.device)
    match_resolution(processor.image_processor, args)
    references = list(data["caption"])
    rows = CaptionRows(  # the training script's rows and generation loop, one process
        processor.tokenizer(references, truncation=True)["input_ids"],
        images=data.select_columns(["image"]),
        transform=processor.image_processor.eval_transform(),
    )
    loader = DataLoader(
        rows,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        collate_fn=make_collate(processor.tokenizer.pad_token_id),
    )
    predictions = generate_captions(
        model, loader, None, processor, f"captioning {split}",
        num_beams=args.num_beams, length_penalty=args.length_penalty,
    )  # fmt: skip
    results = load_metric("caption").compute(predictions=predictions, references=references)
    if "train" in dataset and "caption" in dataset["train"].column_names:
        results.update(constant_caption_baseline(dataset["train"]["caption"], references))
    guard = model.generation_config.no_repeat_ngram_size or 0  # from generation_config.json
    results.update(
        num_beams=args.num_beams, length_penalty=args.length_penalty, no_repeat_ngram_size=guard
    )
    return results


# config.model_type -> (evaluation, model card task, columns the split needs); each evaluation
# returns JSON-serialisable metrics
EVALUATORS = {
    "product_rating": (evaluate_rating, "rating", ["image", "rating"]),
    "product_caption": (evaluate_caption, "caption", ["image", "caption"]),
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
        "--update_card",
        "--update-card",
        "--update_card",
        dest="update_card",
        action="store_true",
        help="write these metrics into the model folder's card (README.md)",
    )
    parser.add_argument(
        "--match_training_resolution",
        type=string_to_bool,
        default=True,
        help="shrink a photo larger than the model's training photos to their resolution first "
        "(the image processor's training_resolution); false: photos as they come",
    )
    parser.add_argument("--num_workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device"
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    dataset_dir = Path(args.dataset)
    try:
        config = AutoConfig.from_pretrained(args.model, trust_remote_code=True)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load a model from {args.model}: {first_line(error)}") from None
    if config.model_type not in EVALUATORS:
        raise UserError(
            f"no evaluation for model_type {config.model_type!r} (known: {', '.join(EVALUATORS)})"
        )
    evaluator, task, columns = EVALUATORS[config.model_type]
    dataset = load_splits(dataset_dir, columns, [args.split])
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
            raise UserError(f"--update_card: {args.model} has no model card (README.md) to update")
        update_model_card(args.model, metrics, task=task, dataset=dataset_dir, split=args.split)
        print(f"updated the model card {Path(args.model) / 'README.md'}")
    return results


if __name__ == "__main__":
    run_script(main)
