"""transformers' `GenerationMixin` against the caption model's fast path for plain greedy and beam
search (`ProductCaptionModel._fast_search`), side by side.

Captions/s from the same encoder features (decoding only), batch 64 and batch 1, greedy and beam 3,
fp32 and bf16 autocast, for two decoders: the `make demo` model when it is there (real caption
lengths) and a catalogue-shaped one (Lite0 features at 192 px: 36 tokens of 1280, a 3,633-word head,
random weights, so every caption runs to `max_new_tokens`). The two alternate, best of `repeats`,
and must give the same token ids (`same_captions`).

    uv run python benchmarks/bench_generate.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformers import GenerationMixin  # noqa: E402

from benchmarks.common import machine  # noqa: E402
from modeling import ProductCaptionConfig, ProductCaptionModel  # noqa: E402

DEMO_MODEL = Path("outputs/demo/caption")


def _catalog_shaped() -> tuple[ProductCaptionModel, torch.Tensor]:
    torch.manual_seed(0)
    config = ProductCaptionConfig(
        encoder_name="test_efficientnet", image_size=32, vocab_size=3633, max_length=17
    )
    model = ProductCaptionModel(config).eval()
    # the decoder as the catalogue recipe builds it: features of width 1280
    model.decoder = type(model.decoder)(config, 1280).eval()
    return model, torch.randn(64, 1 + 36, 1280)


def _demo() -> tuple[ProductCaptionModel, torch.Tensor] | None:
    if not (DEMO_MODEL / "model.safetensors").is_file():
        return None
    import datasets
    from transformers import AutoProcessor

    model = ProductCaptionModel.from_pretrained(DEMO_MODEL).eval()
    processor = AutoProcessor.from_pretrained(DEMO_MODEL, trust_remote_code=True)
    rows = datasets.load_from_disk("outputs/demo/dataset")["test"].select(range(64))
    with torch.no_grad():
        memory = model.encode(processor(images=list(rows["image"]))["pixel_values"])
    return model, memory


def _search(model, engine: str, memory, num_beams: int, max_new_tokens: int):
    """`model.generate` (a plain config: the fast path), or the mixin's own loop for the same config."""
    if engine == "fast":
        return model.generate(
            encoder_hidden_states=memory, num_beams=num_beams, max_new_tokens=max_new_tokens
        )
    bos = torch.full((len(memory), 1), model.config.bos_token_id)
    return GenerationMixin.generate(
        model,
        input_ids=bos,
        encoder_hidden_states=memory,
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
    )


def _captions_per_second(model, engine, memory, batch, num_beams, max_new_tokens, precision):
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    start = time.perf_counter()
    with autocast:
        for i in range(0, len(memory), batch):
            _search(model, engine, memory[i : i + batch], num_beams, max_new_tokens)
    return len(memory) / (time.perf_counter() - start)


def compare(model, memory, max_new_tokens: int, repeats: int, quick: bool) -> dict:
    out = {}
    for precision in ["fp32"] if quick else ["fp32", "bf16"]:
        for num_beams in (1, 3):
            fast = _search(model, "fast", memory, num_beams, max_new_tokens)
            mixin = _search(model, "mixin", memory, num_beams, max_new_tokens)
            same = sum(map(torch.equal, fast, mixin)) if fast.shape == mixin.shape else 0
            for batch in (64, 1):
                images = memory if batch == 64 else memory[: 8 if quick else 32]
                best = {"fast": 0.0, "mixin": 0.0}
                for _ in range(repeats):  # alternating, so both see the same machine
                    for engine in best:
                        rate = _captions_per_second(
                            model, engine, images, batch, num_beams, max_new_tokens, precision
                        )
                        best[engine] = max(best[engine], rate)
                key = f"{precision}_beams{num_beams}_batch{batch}"
                out[key] = {
                    "fast_captions_per_s": best["fast"],
                    "mixin_captions_per_s": best["mixin"],
                    "fast_over_mixin": best["fast"] / best["mixin"],
                    "same_captions": f"{same}/{len(memory)}",
                }
    return out


def run(quick: bool = False) -> dict:
    torch.set_num_threads(1)  # steady on a shared 2-core machine; both engines alike
    repeats = 1 if quick else 3
    out = {
        "name": "caption generation: GenerationMixin vs the fast path (plain greedy / beam)",
        "machine": machine(),
    }
    model, memory = _catalog_shaped()
    if quick:
        model, memory = model, memory[:8]
    out["catalog_shaped_16_tokens"] = compare(model, memory, 16, repeats, quick)
    demo = None if quick else _demo()
    if demo is not None:
        out["demo_model"] = compare(*demo, 31, repeats, quick)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fp32, 8 images, one repeat")
    parser.add_argument("--output", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    result = run(quick=args.quick)
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
