"""The catalogue recipe's training steps, timed: batch sizes alternated on the cached features.

    uv run --no-sync python benchmarks/bench_train_step.py --dataset outputs/catalog/dataset \
        --cache_dir outputs/catalog/feature_cache [--batch_sizes 64 128] [--photos 2560] [--rounds 3]

Builds the model and optimiser as `make catalog` does (the Makefile's `CATALOG_ARGS`, through
`train_caption`'s own functions), reads the run's feature cache (a cold cache is filled first), and
runs `train_caption.train_one_epoch` over the same `--photos` train photos at each batch size, the
sizes alternated in `--rounds` rounds after one warm-up pass each. Prints photos/s and ms per step;
the medians go to `--output` as JSON. Other flags go to train_caption (`--group_by_length true`);
two CPU processes, each with half the batch:

    ACCELERATE_USE_CPU=1 uv run --no-sync accelerate launch --multi_gpu --num_processes 2 \
        benchmarks/bench_train_step.py ... --batch_sizes 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from accelerate import PartialState

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `python benchmarks/bench_train_step.py` from the repo root

import train_caption  # noqa: E402
from benchmarks.bench_catalog import QUICK, recipe_args  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from modeling.backbone import parse_pretrained  # noqa: E402
from training.captions import CaptionRows, cached_features, make_collate  # noqa: E402


def recipe(dataset: Path, cache_dir: Path, precision: str | None, extra: list[str]):
    """The recipe's model arguments, training arguments and accelerator."""
    with tempfile.TemporaryDirectory() as output_dir:
        argv = [*recipe_args(precision), *extra, "--dataset", str(dataset),
                "--output_dir", output_dir, "--cache_dir", str(cache_dir), "--report_to", "none"]  # fmt: skip
        model_args, args = train_caption.parse_args(argv)
        accelerator, _ = train_caption.start(args)
    return model_args, args, accelerator


def timed_pass(parts, args, accelerator, batch_size: int, photos: int) -> float:
    """Seconds for one `train_one_epoch` over the first `photos` train photos at `batch_size`."""
    model_args, dataset, tokenizer, token_ids, features, resolution, pretrained = parts
    quiet = lambda *_: None  # noqa: E731  (the weights line once, in main)
    model, _ = train_caption.build_model(model_args, tokenizer, resolution, pretrained, quiet)
    model.to(accelerator.device)
    rows = CaptionRows(token_ids["train"][:photos], features["train"][:photos], frozen=True)
    loader = train_caption.make_train_loader(rows, batch_size, args, accelerator.num_processes,
                                             collate_fn=make_collate(tokenizer.pad_token_id))  # fmt: skip
    optimizer, scheduler, loader = train_caption.make_optimizer(model, loader, args, accelerator)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    started = time.perf_counter()
    train_caption.train_one_epoch(
        model, loader, optimizer, scheduler, accelerator, 1, args.max_grad_norm
    )
    return time.perf_counter() - started


def run(
    dataset: Path,
    cache_dir: Path,
    batch_sizes,
    photos: int,
    rounds: int,
    precision: str | None = None,
    quick: bool = False,
    train_args: Sequence[str] = (),
) -> dict:
    """The medians of `rounds` alternated timed passes per batch size (after one warm-up each).
    `train_args`: more of train_caption's flags (`--group_by_length true`). Under `accelerate launch`
    every process takes its share of the photos, and `batch_sizes` are per process."""
    extra = [*(QUICK if quick else []), *train_args]
    model_args, args, accelerator = recipe(dataset, cache_dir, precision, extra)
    log = accelerator.print
    dataset, tokenizer, token_ids = train_caption.read_data(model_args, args, log)
    resolution = train_caption.photo_resolution(dataset["train"])
    pretrained = parse_pretrained(model_args.pretrained_encoder)
    model, processor = train_caption.build_model(model_args, tokenizer, resolution, pretrained, log)
    features = cached_features(
        model, processor.image_processor, dataset, accelerator, pretrained,
        cache_dir=cache_dir, batch_size=args.per_device_eval_batch_size,
        engine=args.cache_engine,
    )  # fmt: skip
    parts = (model_args, dataset, tokenizer, token_ids, features, resolution, pretrained)
    photos = min(photos, len(token_ids["train"]))
    steps = {b: -(-photos // (b * accelerator.num_processes)) for b in batch_sizes}  # per process

    seconds = {b: [] for b in batch_sizes}
    for round_ in range(rounds + 1):  # round 0 warms up
        for b in batch_sizes:
            took = timed_pass(parts, args, accelerator, b, photos)
            log(f"round {round_} batch {b}: {photos / took:.1f} photos/s, "
                f"{1000 * took / steps[b]:.1f} ms/step" + (" (warm-up)" if round_ == 0 else ""))  # fmt: skip
            if round_:
                seconds[b].append(took)
    return {
        "machine": machine(),
        "precision": accelerator.mixed_precision,
        "processes": accelerator.num_processes,
        "threads": torch.get_num_threads(),
        "train_args": list(train_args),
        "photos": photos,
        "rounds": rounds,
        "batch_sizes": {
            str(b): {
                "photos_per_s": photos / statistics.median(s),
                "ms_per_step": 1000 * statistics.median(s) / steps[b],
                "seconds": s,
            }
            for b, s in seconds.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, required=True, help="make catalog's dataset folder")
    parser.add_argument("--cache_dir", type=Path, required=True, help="its feature cache")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--photos", type=int, default=2560, help="train photos per timed pass")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", choices=("no", "bf16"), default=None,
                        help="default: the Makefile's (bf16 where the CPU has it)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="bench_catalog's quick sizes (64 px)")
    parser.add_argument("--output", type=Path, default=None, help="write the result as JSON")
    cli, train_args = parser.parse_known_args()
    result = run(cli.dataset, cli.cache_dir, cli.batch_sizes, cli.photos, cli.rounds,
                 cli.precision, cli.quick, train_args)  # fmt: skip
    if not PartialState().is_main_process:  # under accelerate launch: one report
        return
    sizes = result["batch_sizes"]
    first = sizes[str(cli.batch_sizes[0])]["photos_per_s"]
    for b, row in sizes.items():
        print(f"batch {b}: {row['photos_per_s']:.1f} photos/s "
              f"({row['photos_per_s'] / first:.2f}x batch {cli.batch_sizes[0]})")  # fmt: skip
    if cli.output:
        cli.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
