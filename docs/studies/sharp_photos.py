"""The catalogue captioner on sharp photos: as they come, shrunk to the training resolution, retrieval.

    make catalog CATALOG_EXCLUDE=../shared/data/fashion_products/metadata.csv CATALOG_OUT=outputs/catalog_excl
    uv run --no-sync python docs/studies/sharp_photos.py --model outputs/catalog_excl/caption \\
        --dataset outputs/catalog_excl/dataset

`../shared/data/fashion_products` holds 2,221 sharp 224 px photos of catalogue products that
`fashion_catalog` has as 60x80 thumbnails. A model trained on the catalogue without those products
(`CATALOG_EXCLUDE`) captions the sharp photos, read by its own image processor:
- `as_they_come`: letterboxed from 224 px (`do_match_training_resolution=False`);
- `matched`: first shrunk to the training photos' resolution (the processor's default);
and the retrieval baseline (the title of the train photo nearest in the pretrained encoder's pooled
feature, as in `train_caption.py`) on the same photos, read both ways. The model's own
`generation_config.json` (beam size, repetition guard) generates. Results go to `--out` as JSON.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import AutoModel, AutoProcessor

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # benchmarks/ lives at the repository root

from benchmarks.common import machine  # noqa: E402
from metrics import load_metric  # noqa: E402
from modeling import ProductCaptionModel  # noqa: E402
from modeling.backbone import parse_pretrained  # noqa: E402
from training.baselines import nearest_neighbour_captions  # noqa: E402
from training.captions import cached_features, load_caption_dataset, pooled_features  # noqa: E402
from training.script import UserError, run_script  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "fashion_products"
OUT = REPO / "benchmarks" / "results" / "sharp_photos.json"
WAYS = {"as_they_come": False, "matched": True}  # name -> do_match_training_resolution


def read_photos(folder: Path, dataset) -> tuple[list[Path], list[str]]:
    """The folder's photo paths and titles; refused if the model's dataset holds one of them."""
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    ids = {row["product_id"] for row in rows}
    seen = {pid for split in dataset.values() for pid in split["product_id"]} & ids
    if seen:
        raise UserError(
            f"the model's dataset holds {len(seen)} of these products (e.g. {sorted(seen)[0]}): "
            f"build it with --exclude {folder / 'metadata.csv'}"
        )
    return [folder / "images" / row["filename"] for row in rows], [row["caption"] for row in rows]


def pixel_batches(paths, image_processor, match: bool, batch_size: int):
    """(B, 3, S, S) batches of the photos, loaded and letterboxed by the model's image processor."""
    transform = image_processor.eval_transform(match_resolution=match)
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        yield torch.stack([transform(image_processor.load_image(path)) for path in chunk])


@torch.no_grad()
def captions(model, processor, paths, match: bool, batch_size: int) -> list[str]:
    out = []
    batches = pixel_batches(paths, processor.image_processor, match, batch_size)
    for pixels in tqdm(batches, total=-(-len(paths) // batch_size), desc=f"captioning, {match=}"):
        out += processor.batch_decode(model.generate(pixel_values=pixels))
    return out


class Retrieval:
    """The title of the train photo nearest in the pretrained encoder's pooled feature (the
    encoder before training), with the train side from the training run's feature cache."""

    def __init__(self, config, image_processor, dataset, args):
        saved = json.loads((Path(args.model) / "training_args.json").read_text())
        pretrained = parse_pretrained(saved["pretrained_encoder"])
        self.encoder = ProductCaptionModel(config).eval()
        self.encoder.load_pretrained_encoder(pretrained)
        accelerator = Accelerator(mixed_precision=saved["mixed_precision"])
        features = cached_features(  # the training run's cache where it is still there
            self.encoder, image_processor, dataset, accelerator, pretrained,
            cache_dir=args.cache_dir or saved["cache_dir"], splits=("train",),
        )  # fmt: skip
        self.train = pooled_features(self.encoder, features, splits=("train",))["train"]
        self.captions = list(dataset["train"]["caption"])
        self.image_processor, self.batch_size = image_processor, args.batch_size

    @torch.no_grad()
    def __call__(self, paths, match: bool) -> list[str]:
        batches = pixel_batches(paths, self.image_processor, match, self.batch_size)
        queries = torch.cat([self.encoder.encode(pixels)[:, 0] for pixels in batches])
        return nearest_neighbour_captions(self.train, self.captions, queries)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="caption model trained without these products")
    p.add_argument("--dataset", required=True, help="the dataset it was trained on")
    p.add_argument(
        "--cache_dir", default=None, help="its feature cache (default: the training run's)"
    )
    p.add_argument("--photos", type=Path, default=PHOTOS, help="metadata.csv + images/")
    p.add_argument("--limit", type=int, default=None, help="only the first N photos (a smoke run)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)

    started = time.perf_counter()
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(args.model, trust_remote_code=True)
    resolution = processor.image_processor.training_resolution
    if not resolution:
        raise UserError(f"{args.model}'s image processor records no training_resolution")
    dataset, _ = load_caption_dataset(args.dataset)
    paths, references = read_photos(args.photos, dataset)
    paths, references = paths[: args.limit], references[: args.limit]
    retrieval = Retrieval(model.config, processor.image_processor, dataset, args)
    metric, results = load_metric("caption"), {}
    for name, match in WAYS.items():
        for kind, predicted in (
            ("model", captions(model, processor, paths, match, args.batch_size)),
            ("retrieval", retrieval(paths, match)),
        ):
            scores = metric.compute(predictions=predicted, references=references)
            results[f"{kind}_{name}"] = {**scores, "examples": predicted[:5]}
            print(f"{kind:9} {name:12} BLEU {scores['bleu']:.2f}")
    report = {
        "model": args.model,
        "photos": str(args.photos),
        "num_photos": len(paths),
        "training_resolution": resolution,
        "image_size": processor.image_processor.image_size,
        "generation": model.generation_config.to_diff_dict(),
        "references": references[:5],
        "results": results,
        "machine": machine(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    run_script(main)
