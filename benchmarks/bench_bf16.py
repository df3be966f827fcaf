"""bf16 on the CPU, side by side with fp32: where `torch.autocast("cpu", dtype=torch.bfloat16)` pays.

On a CPU with AVX-512 BF16 (or AMX) oneDNN runs bf16 matmuls and convolutions at several times the
fp32 rate; without them bf16 is emulated and slower. Measured, alternating fp32 and bf16 in one run:

1. a 2048x2048 matmul (the machine's peak in each precision, GFLOP/s);
2. feature extraction for the caption cache, `channels_last` as `training.captions.encode_split`
   runs it: `tf_efficientnet_lite0` at 128 px, batch 128 (the catalogue recipe), and
   `vit_small_patch16_224` at 224 px, batch 32 (the caption family's default encoder);
3. one decoder training step from cached features at the recipe's shapes (16 tokens of 1,280
   features, vocabulary 3,600, batch 64, 12 tokens);
4. greedy generation for a batch of 64 from cached features;
5. one rating training step (ResNet-50 at 224 px, batch 16, forward, backward and AdamW), the step
   `train_rating.py --bf16 true` takes;
6. the app's single photo (`serving.predict`: decode, rating, caption with 3 beams) with the
   scripts' default architectures (random weights, ResNet-50 and ViT-S/16 + LSTM, 224 px), the
   models loaded as `app.py` and `app.py --bf16` load them;
7. with `--dataset` (the catalogue): the feature cache's own path, `training.captions.encode_split`
   over real photos, in each precision, next to its photo decoding and resizing alone: where the
   cache fill's time goes.

    uv run python benchmarks/bench_bf16.py [--quick] [--threads N] [--dataset outputs/catalog/dataset]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine  # noqa: E402
from modeling import ProductCaptionConfig, ProductCaptionModel  # noqa: E402


def cpu_flags() -> list[str]:
    """The bf16-related instruction sets this CPU reports (empty: bf16 is emulated)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted({f for f in flags if f.startswith("amx") or f == "avx512_bf16"})


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def alternate(fns: dict, rounds: int) -> dict[str, float]:
    """Best seconds of each function over `rounds`, the functions run in turn in every round
    (after one warm-up each), so a busy neighbour slows both sides alike."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_matmul(rounds: int, n: int = 2048, precisions=("fp32", "bf16")) -> dict:
    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    fns = {"fp32": lambda: a32 @ b32, "bf16": lambda: a16 @ b16}
    best = alternate({k: fns[k] for k in precisions}, rounds)
    flops = 2 * n**3
    return {k: {"gflops": flops / s / 1e9} for k, s in best.items()}


def training_steps(model, optimizer, inputs: dict) -> dict:
    """One training step (forward, backward, optimizer) on `inputs`, in fp32 and in bf16."""

    def step(bf16):
        def fn():
            with autocast(bf16):
                loss = model(**inputs).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        return fn

    return {"fp32": step(False), "bf16": step(True)}


def bench_features(rounds: int, batch: int, encoder="tf_efficientnet_lite0", size=128) -> dict:
    config = ProductCaptionConfig(encoder_name=encoder, image_size=size)
    model = ProductCaptionModel(config).eval()
    model.encoder.to(memory_format=torch.channels_last)
    pixels = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)

    def encode(bf16):
        def fn():
            with torch.inference_mode(), autocast(bf16):
                return model.encode(pixels)

        return fn

    best = alternate({"fp32": encode(False), "bf16": encode(True)}, rounds)
    with torch.inference_mode():
        ref = model.encode(pixels).float()
        with autocast(True):
            low = model.encode(pixels).float()
    cosine = torch.nn.functional.cosine_similarity(ref.flatten(1), low.flatten(1)).min().item()
    out = {k: {"images_per_s": batch / s} for k, s in best.items()}
    out["min_cosine_bf16_vs_fp32"] = cosine
    return out


def bench_decoder(rounds: int, batch: int, vocab: int = 3600, length: int = 12) -> dict:
    torch.manual_seed(0)
    config = ProductCaptionConfig(
        encoder_name="tf_efficientnet_lite0", image_size=128, vocab_size=vocab
    )
    model = ProductCaptionModel(config).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    memory = torch.randn(batch, 17, model.feature_dim)
    ids = torch.randint(4, vocab, (batch, length))
    ids[:, 0] = config.bos_token_id

    def generate(bf16):
        def fn():
            with torch.no_grad(), autocast(bf16):
                model.generate(encoder_hidden_states=memory, max_new_tokens=length)

        return fn

    inputs = {"encoder_hidden_states": memory, "input_ids": ids, "labels": ids}
    train = alternate(training_steps(model, optimizer, inputs), rounds)
    model.eval()
    gen = alternate({"fp32": generate(False), "bf16": generate(True)}, rounds)
    return {
        "train_step": {k: {"samples_per_s": batch / s} for k, s in train.items()},
        "greedy": {k: {"captions_per_s": batch / s} for k, s in gen.items()},
    }


def bench_rating_step(rounds: int, batch: int, size: int) -> dict:
    from modeling import ProductRatingConfig, ProductRatingModel

    torch.manual_seed(0)
    model = ProductRatingModel(ProductRatingConfig(backbone="resnet50", image_size=size)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    inputs = {
        "pixel_values": torch.randn(batch, 3, size, size),
        "labels": torch.rand(batch) * 4 + 1,
    }
    best = alternate(training_steps(model, optimizer, inputs), rounds)
    return {k: {"images_per_s": batch / s} for k, s in best.items()}


def bench_app(rounds: int, tiny: bool) -> dict:
    import tempfile

    import serving
    from benchmarks.random_models import save_random_models

    with tempfile.TemporaryDirectory() as tmp:
        folders = save_random_models(tmp, tiny=tiny, never_stop=True)
        served = {
            bf16: [serving.load_model(t, folders[t], bf16=bf16) for t in ("rating", "caption")]
            for bf16 in (False, True)
        }  # `app.py` and `app.py --bf16`

    def photo(bf16):
        return lambda: serving.predict(serving.EXAMPLES[0], *served[bf16], num_beams=3)

    best = alternate({"fp32": photo(False), "bf16": photo(True)}, rounds)
    return {k: {"ms": s * 1000} for k, s in best.items()}


def bench_cache_path(dataset_path, rounds: int, rows: int, encoder: str, size: int,
                     batch: int = 128) -> dict:  # fmt: skip
    """Images/s of `encode_split` (decode, resize, encode, one process) in fp32 and bf16, and of its
    loader alone (decode and resize)."""
    from modeling import ProductImageProcessor
    from training.captions import encode_split, image_batches, load_caption_dataset
    from training.feature_engines import torch_encode

    split = load_caption_dataset(dataset_path, ["train"])[0]["train"].select(range(rows))
    model = ProductCaptionModel(ProductCaptionConfig(encoder_name=encoder, image_size=size))
    processor = ProductImageProcessor.from_timm(model.encoder, size)

    def fill(bf16):
        def run():
            with torch_encode(model, "cpu", lambda: autocast(bf16)) as encode:
                encode_split(encode, processor, split, batch, "encode")

        return run

    def decode():
        for _ in image_batches(split, processor, batch):
            pass

    best = alternate({"fp32": fill(False), "bf16": fill(True), "decode_and_resize": decode}, rounds)
    return {k: {"images_per_s": rows / s} for k, s in best.items()}


def ratios(section: dict, unit: str) -> float:
    return section["bf16"][unit] / section["fp32"][unit]


def run(quick: bool = False, threads: int | None = None, dataset: str | None = None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    cache = {}
    if dataset:
        cache = {
            f"cache_path_{encoder}_{size}px": bench_cache_path(dataset, 3, 512, encoder, size)
            for encoder, size in (("tf_efficientnet_lite0", 128), ("tf_efficientnet_lite0", 224),
                                  ("vit_small_patch16_224", 224))
        }  # fmt: skip
    rounds = 2 if quick else 5
    matmul = bench_matmul(rounds, n=512 if quick else 2048)
    features = bench_features(rounds, batch=8 if quick else 128)
    vit = (bench_features(rounds, 2, "test_vit", 32) if quick
           else bench_features(rounds, 32, "vit_small_patch16_224", 224))  # fmt: skip
    decoder = bench_decoder(rounds, batch=8 if quick else 64, vocab=200 if quick else 3600)
    rating = bench_rating_step(rounds, batch=2 if quick else 16, size=64 if quick else 224)
    app = bench_app(rounds, tiny=quick)
    return {
        "name": "bf16 autocast vs fp32 on the CPU",
        "machine": machine(),
        "cpu_bf16_flags": cpu_flags(),
        "matmul": matmul,
        "feature_extraction_lite0_128px": features,
        "feature_extraction_vit_small_224px": vit,
        "decoder": decoder,
        "rating_train_step_resnet50": rating,
        "app_single_photo_beam3": app,
        **cache,
        "bf16_over_fp32": {
            "matmul": ratios(matmul, "gflops"),
            "feature_extraction": ratios(features, "images_per_s"),
            "feature_extraction_vit_small": ratios(vit, "images_per_s"),
            "decoder_train_step": ratios(decoder["train_step"], "samples_per_s"),
            "greedy_generation": ratios(decoder["greedy"], "captions_per_s"),
            "rating_train_step": ratios(rating, "images_per_s"),
            "app_single_photo": app["fp32"]["ms"] / app["bf16"]["ms"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument(
        "--dataset", default=None, help="time the feature cache on this dataset too"
    )
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.threads, args.dataset), indent=2))


if __name__ == "__main__":
    main()
