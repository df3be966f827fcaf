"""Evaluate any saved model of this project on any saved dataset split, and write the metrics as JSON.

    python evaluate_models.py --model outputs/caption --dataset data/synthetic --split test --output caption_test.json

The model folder's `config.json` says which family it is (`model_type`); each family has its evaluator.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import datasets
import evaluate
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig

import modeling  # noqa: F401  (registers the model families with the Auto classes)

REPO = Path(__file__).resolve().parent


class UserError(ValueError):
    """Bad arguments or data: reported as one line, without a traceback."""


@torch.no_grad()
def evaluate_caption(
    model_dir: str, split: datasets.Dataset, args, train: datasets.Dataset | None
) -> dict:
    """Beam-search captions for every image of `split`, scored with the caption metrics; plus the
    constant baseline (the most common train caption) when the dataset has a train split."""
    from transformers import PreTrainedTokenizerFast

    from modeling import ProductCaptionModel, ProductCaptionProcessor, ProductImageProcessor

    if "caption" not in split.column_names:
        raise UserError(f"split has no 'caption' column (columns: {', '.join(split.column_names)})")
    split = split.filter(lambda c: c is not None and c.strip() != "", input_columns="caption")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = ProductCaptionModel.from_pretrained(model_dir).to(device).eval()
    processor = (
        ProductCaptionProcessor(  # this package's classes, not the folder's copy of the code
            ProductImageProcessor.from_pretrained(model_dir),
            PreTrainedTokenizerFast.from_pretrained(model_dir),
        )
    )
    predictions = []
    for start in tqdm(range(0, len(split), args.batch_size), desc="captioning"):
        images = split[start : start + args.batch_size]["image"]
        pixel_values = processor(images=images)["pixel_values"].to(device)
        ids = model.generate(
            pixel_values, num_beams=args.num_beams, length_penalty=args.length_penalty
        )
        predictions += processor.batch_decode(ids.cpu())
    references = list(split["caption"])
    metric = evaluate.load(str(REPO / "metrics" / "caption"))
    results = metric.compute(predictions=predictions, references=references)
    if train is not None and "caption" in train.column_names:
        most_common = Counter(c for c in train["caption"] if c and c.strip()).most_common(1)[0][0]
        baseline = metric.compute(
            predictions=[most_common] * len(references), references=references
        )
        results.update({f"baseline_{k}": v for k, v in baseline.items() if k != "num_samples"})
        results["baseline_caption"] = most_common
    results.update(num_beams=args.num_beams, length_penalty=args.length_penalty)
    return results


EVALUATORS = {"product_caption": evaluate_caption}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="a saved model folder (save_pretrained)")
    p.add_argument(
        "--dataset", required=True, help="a DatasetDict folder (python -m hf_dataset ...)"
    )
    p.add_argument("--split", default="test")
    p.add_argument("--output", default=None, help="JSON file for the metrics (default: print only)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_beams", type=int, default=3, help="caption models: beam size")
    p.add_argument("--length_penalty", type=float, default=1.0, help="caption models")
    args = p.parse_args(argv)

    if not (Path(args.model) / "config.json").is_file():
        raise UserError(f"no saved model at {args.model} (config.json missing)")
    model_type = AutoConfig.from_pretrained(args.model).model_type
    if model_type not in EVALUATORS:
        raise UserError(
            f"{args.model}: model_type {model_type!r} is not one of {sorted(EVALUATORS)}"
        )
    try:
        dataset = datasets.load_from_disk(args.dataset)
    except FileNotFoundError as err:
        raise UserError(f"no dataset at {args.dataset}") from err
    if args.split not in dataset:
        raise UserError(
            f"dataset {args.dataset} has no split {args.split!r} (splits: {', '.join(dataset)})"
        )
    train = dataset["train"] if "train" in dataset else None
    results = {
        "model": args.model,
        "model_type": model_type,
        "dataset": args.dataset,
        "split": args.split,
    }
    results |= EVALUATORS[model_type](args.model, dataset[args.split], args, train)
    text = json.dumps(results, indent=2)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    print(text)
    return results


if __name__ == "__main__":
    try:
        main()
    except UserError as err:
        sys.exit(f"error: {err}")
