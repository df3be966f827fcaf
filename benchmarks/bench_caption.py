"""Caption model performance: the two design choices that make training and inference fast on a CPU.

1. Feature cache: with a frozen encoder, one decoder epoch from cached features vs one epoch that
   re-encodes every image (decode, letterbox, ViT-Small at 224 px) as the original project did.
2. Batched generation: greedy and beam search over a whole batch (beams vectorised) vs a Python loop
   over single images.

Both sides of each ratio run in the same process, one after the other, on the same images. Each is
measured for the default decoder (`ProductCaptionConfig`: LSTM 256, attention 128) and for Show,
Attend and Tell's wider one (LSTM 512, attention 256), since the ratios depend on the decoder's size.

    uv run python benchmarks/bench_caption.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling import ProductCaptionConfig, ProductCaptionModel, ProductImageProcessor  # noqa: E402

DECODERS = {
    "default": {},  # ProductCaptionConfig's sizes
    "wide": {"embed_dim": 256, "hidden_dim": 512, "attention_dim": 256},
}


def _timed(fn, repeats: int = 1) -> float:
    """Best of `repeats` wall-clock runs after one warm-up run (the machine is shared: the minimum is
    the least disturbed)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _images(n: int):
    from hf_dataset import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        synthetic.build(Path(tmp) / "data", num_products=int(n / 0.65) + 10, seed=0, image_size=224)
        import datasets

        split = datasets.load_from_disk(str(Path(tmp) / "data"))["train"]
        split = split.select(range(n))
        return [row["image"].copy() for row in split], list(split["caption"])


def _config(decoder: dict) -> ProductCaptionConfig:
    # vocabulary of the size the real product titles give (fashion_products: ~1,000 words)
    return ProductCaptionConfig(encoder_name="vit_small_patch16_224", vocab_size=1000, **decoder)


def bench_feature_cache(images, batch_size: int, repeats: int, decoder: dict) -> dict:
    torch.manual_seed(0)
    config = _config(decoder)
    model = ProductCaptionModel(config).train()
    processor = ProductImageProcessor.from_timm(model.encoder, 224)
    transform = processor.eval_transform()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    captions = torch.randint(4, 1000, (len(images), 12))
    captions[:, 0] = config.bos_token_id

    def decoder_step(memory, ids):
        loss = model(encoder_hidden_states=memory, input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    with torch.no_grad():
        cache = torch.cat(
            [
                model.encode(torch.stack([transform(im) for im in images[i : i + batch_size]]))
                for i in range(0, len(images), batch_size)
            ]
        ).half()  # what the training script stores

    def epoch_from_cache():
        for i in range(0, len(images), batch_size):
            decoder_step(cache[i : i + batch_size].float(), captions[i : i + batch_size])

    def epoch_reencoding():
        for i in range(0, len(images), batch_size):
            pixels = torch.stack([transform(im) for im in images[i : i + batch_size]])
            decoder_step(model.encode(pixels), captions[i : i + batch_size])

    cached = _timed(epoch_from_cache, repeats)
    reencoded = _timed(epoch_reencoding, repeats)
    return {
        "images": len(images),
        "epoch_from_cache_s": round(cached, 3),
        "epoch_reencoding_s": round(reencoded, 3),
        "cache_speedup": round(reencoded / cached, 1),
    }


def bench_generation(n: int, num_beams: int, repeats: int, decoder: dict) -> dict:
    torch.manual_seed(0)
    config = _config(decoder)
    model = ProductCaptionModel(config).eval()
    with torch.no_grad():  # every caption runs to max_length, whatever the random weights say
        model.decoder.lm_head.bias[config.eos_token_id] = -1e4
    memory = torch.randn(n, 1 + 196, model.feature_dim)  # ViT-Small tokens at 224 px (+ pooled)
    out = {}
    for name, beams in (("greedy", 1), (f"beam{num_beams}", num_beams)):
        batched = model.generate(encoder_hidden_states=memory, num_beams=beams)
        looped = [
            model.generate(encoder_hidden_states=memory[i : i + 1], num_beams=beams)
            for i in range(n)
        ]
        assert all(torch.equal(looped[i][0], batched[i, : looped[i].shape[1]]) for i in range(n))
        t_batched = _timed(
            lambda b=beams: model.generate(encoder_hidden_states=memory, num_beams=b), repeats
        )
        t_loop = _timed(
            lambda b=beams: [
                model.generate(encoder_hidden_states=memory[i : i + 1], num_beams=b)
                for i in range(n)
            ],
            repeats,
        )
        out[name] = {
            "images": n,
            "batched_s": round(t_batched, 3),
            "per_sample_loop_s": round(t_loop, 3),
            "speedup": round(t_loop / t_batched, 1),
        }
    return out


def run(quick: bool = False) -> dict:
    """Every figure with one thread (steady on a shared machine), then, unless `quick`, with all
    cores (torch's default): batching and big matmuls use extra cores, a per-image loop barely can."""
    n_images = 32 if quick else 96
    images, _ = _images(n_images)
    repeats = 1 if quick else 2
    out = {
        "name": "caption: feature cache and batched generation (vit_small_patch16_224, 224 px)",
        "device": "cpu",
    }
    all_cores = torch.get_num_threads()
    for threads in [1] if quick or all_cores == 1 else [1, all_cores]:
        torch.set_num_threads(threads)
        for name, decoder in DECODERS.items():
            sizes = {
                k: getattr(_config(decoder), k)
                for k in ("embed_dim", "hidden_dim", "attention_dim")
            }
            out[f"{name}_decoder_{threads}_threads"] = {
                **sizes,
                "torch_threads": threads,
                "feature_cache": bench_feature_cache(images, 64, repeats, decoder),
                "generation": bench_generation(32 if quick else 64, 3, repeats, decoder),
            }
    torch.set_num_threads(all_cores)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer images, one repeat (seconds)")
    print(json.dumps(run(parser.parse_args().quick), indent=2))
