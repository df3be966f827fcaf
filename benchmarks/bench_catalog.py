"""`make catalog` on a subset, phase by phase: where the recipe's time goes, next to the matmul peak.

    uv run --no-sync python benchmarks/bench_catalog.py [--products 4000] [--epochs 2] [--precision bf16]
    uv run --no-sync python benchmarks/bench_catalog.py --from_run outputs/catalog

Builds the first `--products` products of `../shared/data/fashion_catalog` with the folder source,
trains the recipe (the Makefile's `CATALOG_ARGS`, `--epochs` epochs) in a temporary folder with a
fresh feature cache, and reads the run's `timings.json` and history. Each phase's work is counted
with torch's `FlopCounterMode` (matmuls and convolutions) on one batch: per photo, the frozen encoder
for the cache, a training step forward and backward, a caption generated with the saved
`generation_config.json`. Each phase is then given in GFLOP/s and as a share of this machine's
matmul peak in the run's precision (`bench_bf16.bench_matmul`, 2048 x 2048). `--from_run` gives
the same table for a finished `make catalog` folder, from the timings it wrote.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `python benchmarks/bench_catalog.py` from the repo root

import train_caption  # noqa: E402
from benchmarks.bench_bf16 import bench_matmul, cpu_flags  # noqa: E402
from benchmarks.common import machine  # noqa: E402
from hf_dataset import folder  # noqa: E402
from modeling import ProductCaptionModel, ProductCaptionProcessor  # noqa: E402
from training.captions import CaptionRows, load_caption_dataset, make_collate  # noqa: E402

CATALOG = HERE.parent.parent / "shared" / "data" / "fashion_catalog"
QUICK = ["--image_size", "64", "--per_device_train_batch_size", "16"]  # seconds, not minutes


def recipe_args(precision: str | None) -> list[str]:
    """The Makefile's `CATALOG_ARGS`, as `make catalog` passes them (its precision unless given)."""
    overrides = [f"CATALOG_PRECISION={precision}"] if precision else []
    printed = subprocess.run(
        ["make", "-s", "--no-print-directory", *overrides,
         "--eval", "print-catalog-args: ; @echo $(CATALOG_ARGS)", "print-catalog-args"],
        cwd=HERE.parent, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return shlex.split(printed)


def grouped_conv_backward_flop(grad_out, x, w, bias, stride, padding, dilation, transposed,
                               output_padding, groups, output_mask, out_shape=None, **kwargs):  # fmt: skip
    """torch's `convolution_backward` count, with a grouped convolution's weight gradient divided
    by its groups: torch counts it as a dense one's (a depthwise 3x3 over 1,152 channels 1,152x)."""
    args = (grad_out, x, w, bias, stride, padding, dilation, transposed, output_padding, groups)
    total = flop_counter.conv_backward_flop(*args, output_mask, out_val=out_shape)
    if groups == 1 or not output_mask[1]:
        return total
    weight = flop_counter.conv_backward_flop(*args, [False, True, False], out_val=out_shape)
    return total - weight + weight // groups


def gflop(fn) -> float:
    mapping = {torch.ops.aten.convolution_backward: grouped_conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def work_per_photo(output_dir: Path, cache_dir: Path, dataset, batch: int = 16) -> dict:
    """GFLOP per photo of each phase's work, counted on `batch` real rows of the run."""
    model = ProductCaptionModel.from_pretrained(output_dir)
    processor = ProductCaptionProcessor.from_pretrained(output_dir)
    side = processor.image_processor.image_size
    pixels = torch.randn(batch, 3, side, side)
    features = load_file(next(cache_dir.glob("train-*.safetensors")))["features"][:batch]
    captions = list(dataset["train"]["caption"][:batch])
    rows = CaptionRows(processor.tokenizer(captions)["input_ids"], features, frozen=True)
    inputs = make_collate(model.config.pad_token_id)([rows[i] for i in range(batch)])
    inputs.pop("index")

    def train_step():
        model.train()
        model(**inputs).loss.backward()

    model.eval()
    with torch.no_grad():
        cache = gflop(lambda: model.frozen_features(pixels))
        loss = gflop(lambda: model(**inputs))
        generate = gflop(lambda: model.generate(frozen_features=inputs["frozen_features"]))
        # validation's captions are greedy; the test's take the saved generation_config (beams)
        greedy = gflop(
            lambda: model.generate(frozen_features=inputs["frozen_features"], num_beams=1)
        )
    return {
        "feature_cache": cache / batch,
        "train_step": gflop(train_step) / batch,
        "validation_loss": loss / batch,
        "generate": generate / batch,
        "generate_greedy": greedy / batch,
    }


def phase_table(timings, history, sizes, per_photo, build_seconds, peaks, training_args) -> list:
    """One row per phase: seconds, photos, GFLOP/s and the share of the matmul peak in the phase's
    precision (the run's; fp32 for a cache filled by ONNX Runtime)."""
    precision = "bf16" if training_args["mixed_precision"] == "bf16" else "fp32"
    engine = training_args.get("cache_engine", "torch")
    peak = {phase: peaks[precision] for phase in ("train_epochs", "validation_per_epoch", "test")}
    peak["feature_cache"] = peaks["fp32" if engine == "onnxruntime" else precision]
    train_seconds = sum(h["train_seconds"] for h in history)
    val_seconds = sum(h["seconds"] - h["train_seconds"] for h in history)
    epochs = len(history)
    cached = sum(sizes.values())
    work = {  # phase -> (seconds, photos, GFLOP)
        "dataset_build": (build_seconds, cached, 0.0),
        "data_and_model": (timings["data_and_model"], 0, 0.0),
        "feature_cache": (timings["feature_cache"], cached, cached * per_photo["feature_cache"]),
        # the retrieval baseline's pooled features, accelerate's prepare, trackers
        "prepare": (timings["prepare"], 0, 0.0),
        "train_epochs": (
            train_seconds,
            epochs * sizes["train"],
            epochs * sizes["train"] * per_photo["train_step"],
        ),
        "validation_per_epoch": (
            val_seconds,
            epochs * sizes["validation"],
            epochs
            * sizes["validation"]
            * (per_photo["validation_loss"] + per_photo["generate_greedy"]),
        ),
        # three repetition guards tried on validation, then the test split
        "test": (
            timings["test"],
            3 * sizes["validation"] + sizes["test"],
            (3 * sizes["validation"] + sizes["test"]) * per_photo["generate"],
        ),
        "outputs": (timings["outputs"], 0, 0.0),
    }
    if build_seconds is None:  # a finished run's folder: its dataset was built apart, not timed
        del work["dataset_build"]
    total = sum(seconds for seconds, _, _ in work.values())
    rows = []
    for phase, (seconds, photos, flop) in work.items():
        rate = flop / seconds if seconds and flop else None
        rows.append(
            {
                "phase": phase,
                "seconds": round(seconds, 1),
                "share": seconds / total,
                "photos": photos,
                "gflop_per_s": rate,
                "share_of_peak": rate / peak[phase] if rate else None,
            }
        )
    return rows


def run(
    quick: bool = False,
    products: int = 4000,
    epochs: int = 2,
    precision: str | None = None,
    keep_in: Path | None = None,
) -> dict | None:
    """The recipe on the first `products` catalogue products, in a temporary folder (`keep_in`:
    in that folder, kept, laid out as `make catalog`'s: dataset/, caption/, cache/)."""
    if not (CATALOG / "metadata.csv").is_file():
        return None  # the catalogue is not beside this checkout
    products, epochs = (60, 1) if quick else (products, epochs)
    recipe = [*recipe_args(precision), "--num_train_epochs", str(epochs), *(QUICK if quick else [])]
    workdir = (
        contextlib.nullcontext(keep_in)
        if keep_in
        else tempfile.TemporaryDirectory(prefix="bench_catalog_")
    )
    with workdir as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        folder.build(
            CATALOG / "metadata.csv", tmp / "dataset", max_products=products, overwrite=True
        )
        build_seconds = time.perf_counter() - started
        argv = ["--dataset", str(tmp / "dataset"), "--output_dir", str(tmp / "caption"),
                "--cache_dir", str(tmp / "cache"), "--report_to", "none", *recipe]  # fmt: skip
        train_caption.main(argv)
        result = of_run(tmp, quick, build_seconds)
    name = f"make catalog on {products} products, {epochs} epoch(s), phase by phase"
    return {**result, "name": name, "recipe_args": recipe}


def of_run(run_dir: Path, quick: bool = False, build_seconds: float | None = None) -> dict:
    """The phase table of a finished `make catalog` run (its `caption/` folder, with the dataset
    and feature cache beside it), next to this machine's matmul peak measured now; with
    `build_seconds` (the dataset build, which make catalog does not time) a row for that too."""
    run_dir = Path(run_dir)
    caption = run_dir / "caption"
    timings = json.loads((caption / "timings.json").read_text())
    history = json.loads((caption / "training_history.json").read_text())
    args = json.loads((caption / "training_args.json").read_text())
    dataset, _ = load_caption_dataset(args["dataset"])
    sizes = {split: len(rows) for split, rows in dataset.items()}
    per_photo = work_per_photo(caption, Path(args["cache_dir"]), dataset)
    peaks = bench_matmul(2 if quick else 5, n=512 if quick else 2048)
    peaks = {k: v["gflops"] for k, v in peaks.items()}
    precision = args["mixed_precision"]
    return {
        "name": f"make catalog ({run_dir}), phase by phase",
        "machine": machine(),
        "cpu_bf16_flags": cpu_flags(),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "rows": sizes,
        "epochs": len(history),
        "matmul_peak_gflops": peaks,
        "gflop_per_photo": per_photo,
        "cache_engine": args.get("cache_engine", "torch"),
        "phases": phase_table(timings, history, sizes, per_photo, build_seconds, peaks, args),
        "total_seconds": round((build_seconds or 0.0) + sum(timings.values()), 1),
        "test_bleu": json.loads((caption / "eval_results.json").read_text())["bleu"],
    }


def print_phases(result: dict) -> None:
    print(f"{result['name']}: {result['precision']}, {result['threads']} threads, "
          f"matmul peak {result['matmul_peak_gflops']}")  # fmt: skip
    print(f"{'phase':22} {'seconds':>8} {'share':>6} {'photos':>8} {'GFLOP/s':>8} {'of peak':>8}")
    for row in result["phases"]:
        rate = f"{row['gflop_per_s']:8.1f}" if row["gflop_per_s"] else f"{'-':>8}"
        peak = f"{row['share_of_peak']:8.1%}" if row["share_of_peak"] else f"{'-':>8}"
        print(f"{row['phase']:22} {row['seconds']:8.1f} {row['share']:6.1%} {row['photos']:8} "
              f"{rate} {peak}")  # fmt: skip
    print(f"total {result['total_seconds']} s, test BLEU {result['test_bleu']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="60 products, 1 epoch, 64 px")
    parser.add_argument("--products", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--precision", choices=("no", "bf16"), default=None,
                        help="default: the Makefile's (bf16 where the CPU has it)")  # fmt: skip
    parser.add_argument("--from_run", type=Path, default=None,
                        help="a finished `make catalog` folder (e.g. outputs/catalog): its own "
                        "phase table from its timings.json, nothing trained")  # fmt: skip
    parser.add_argument("--output", type=Path, default=None, help="write the result as JSON")
    args = parser.parse_args()
    if args.from_run:
        if not (args.from_run / "caption" / "timings.json").is_file():
            sys.exit(f"{args.from_run}/caption/timings.json not found: pass a make catalog folder")
        result = of_run(args.from_run)
    else:
        result = run(args.quick, args.products, args.epochs, args.precision)
    if result is None:
        sys.exit(f"no catalogue at {CATALOG}")
    print_phases(result)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
